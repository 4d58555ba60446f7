"""What the engine learned from its staff: the associations of `matcher.learning` over the stored
verdicts and outcomes, less the silenced ones, and the thesaurus it reads (the shipped file and the
科协's own entries, merged).

Both follow the store: `learning_version` moves on at every verdict, outcome, decision, own-thesaurus
version and change to a demand's words (triggers, whoever writes), and `data_version` at every
change to the experts (and at a restore). `current()` compares the two with what it learned from and
learns again when either moved: one small query when nothing did. The demands' phrases and the
experts' concept words are kept between rounds, so a new verdict tokenises only what is new.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from matcher.learning import VERDICT_EVIDENCE, Judgment, Learned, LearnParams, judgments, learn
from matcher.models import Demand, Expert, expert_digest
from matcher.ranking.state import IndexState
from matcher.store import Store
from matcher.thesaurus import Thesaurus
from matcher.understand import Understander

log = logging.getLogger(__name__)

#: A concept word: a Chinese word of two characters or more, or a Latin word with two letters.
_CONCEPT = re.compile(r"[\u3400-\u9fff\uf900-\ufaff].|[a-z].*[a-z]")
#: The section accepted proposals are written under in the 科协's own thesaurus.
OWN_SECTION = "本会"


def concept_texts(expert: Expert) -> list[str]:
    """What an expert writes to say what they do: research fields, document titles and keywords."""
    out = list(expert.research_fields)
    for d in expert.documents:
        out.append(d.title)
        out.extend(d.keywords)
    return [t for t in out if t]


def expert_shares(index: IndexState) -> Callable[[str], float]:
    """share(term): the share of the index's live experts whose texts hold `term` (made once per
    index structure: one sparse product over the units)."""

    def make() -> np.ndarray:
        counts = index.words_.counts()
        owner = np.asarray(index.unit_expert_[: counts.shape[0]])
        n = len(index.expert_ids_)
        alive_units = index.expert_alive_[owner] & index.words_.alive_[: counts.shape[0]]
        rows = np.flatnonzero(alive_units)
        spread = sp.csr_matrix((np.ones(len(rows)), (owner[rows], rows)), shape=(n, counts.shape[0]))
        held = (spread @ counts).tocsc()
        held.data[:] = 1
        return np.asarray(held.sum(axis=0)).ravel() / max(index.n_experts, 1)

    shares = index.cached("expert_shares", make)
    vocab = index.words_.vocabulary_

    def share(term: str) -> float:
        j = vocab.get(term)
        return float(shares[j]) if j is not None and j < len(shares) else 0.0

    return share


class Learning:
    """The engine's learned state (module docstring)."""

    def __init__(self, store: Store, understander: Understander, shipped: Thesaurus,
                 index: Callable[[], IndexState | None], params: LearnParams | None = None) -> None:
        self.store = store
        self.understander = understander
        self.shipped = shipped
        self.index = index
        self.params = params or LearnParams()
        self._lock = threading.RLock()
        self._busy = threading.local()
        self._stamp: tuple[int, int] | None = None
        self._learned: Learned | None = None
        self._raw: Learned | None = None  # before silencing: what the proposals page lists
        self._own_version = 0
        self._pinned: tuple[Learned | None] | None = None
        self._phrases: dict[tuple[str, str], list[str]] = {}
        self._concepts: dict[str, list[str]] = {}  # expert digest -> concept words

    # -- the thesaurus the understanding stage reads ----------------------------------------------
    def own_thesaurus(self) -> Thesaurus:
        """The 科协's own thesaurus as it stands (empty when none was written)."""
        current = self.store.own_thesaurus()
        return Thesaurus.parse(current.text, name="本会词表") if current else Thesaurus(name="本会词表")

    def _follow_thesaurus(self) -> None:
        current = self.store.own_thesaurus()
        version = current.version if current else 0
        if version == self._own_version:
            return
        own = Thesaurus.parse(current.text, name="本会词表") if current else Thesaurus(name="本会词表")
        merged = Thesaurus([*self.shipped.entries(), *own.entries()], name=self.shipped.name) if len(own) \
            else self.shipped
        self.understander.use_thesaurus(merged)
        self._own_version = version

    # -- what was learned ---------------------------------------------------------------------------
    def pin(self, learned: Learned | None) -> None:
        """Use `learned` instead of what the store teaches (the simulation of `matcher eval`); None
        pins nothing learned at all. `unpin()` goes back to the store."""
        self._pinned = (learned,)

    def unpin(self) -> None:
        self._pinned = None

    def reader(self) -> Callable[[], Learned | None]:
        """`current`, held weakly: what the understander reads with (it must not keep this, and
        through it the live index, alive once the engine is dropped)."""
        method = weakref.WeakMethod(self.current)

        def read() -> Learned | None:
            current = method()
            return current() if current is not None else None

        return read

    def current(self) -> Learned | None:
        """The associations the understanding stage uses now (module docstring)."""
        if self._pinned is not None:
            return self._pinned[0]
        self._follow()
        return self._learned

    def associations(self) -> Learned:
        """Everything the stored verdicts teach now, silenced pairs included (the proposals)."""
        self._follow()
        return self._raw or Learned()

    @classmethod
    def following(cls, live: Any, store: Store, understander: Understander, thesaurus: Thesaurus,
                  settings: Any) -> Learning:
        """The engine's learning, reading the library through the live index `live` (reached without
        the engine: no cycle keeps a dropped engine's index) and lending its associations to the
        understanding stage. While this thread builds or swaps the index (`live.lock` held here),
        the library cannot be read: what was learned before stands."""
        made = cls(store, understander, thesaurus,
                   lambda: None if live.lock.held_here() else live.current().index,
                   LearnParams(fdr=settings.learned_fdr, max_phrase_share=settings.learned_max_phrase_share))
        understander.learned = made.reader()
        return made

    def refresh(self) -> None:
        """Follow the store now (the thesaurus and the associations)."""
        self._follow()

    def _follow(self) -> None:
        stamp = (self.store.learning_version, self.store.data_version)
        if stamp == self._stamp or getattr(self._busy, "on", False) or self.store.in_transaction:
            # While learning, what was learned before stands (no recursion); inside a write
            # transaction too: learning reads every verdict, and must not hold the writers' lock
            # while it does (the next understanding outside the transaction learns).
            return
        with self._lock:
            stamp = (self.store.learning_version, self.store.data_version)
            if stamp == self._stamp:
                return
            self._busy.on = True
            try:
                self._follow_thesaurus()
                raw = self._from_store()
                if raw is None:  # the live index is being built by this thread: not now
                    return
                self._raw = raw
                self._learned = self._raw.without(self.silenced())
            finally:
                self._busy.on = False
            self._stamp = stamp

    def silenced(self) -> set[tuple[str, str]]:
        """(phrase, concept) pairs not to use: rejected proposals, and accepted ones (they are in the
        own thesaurus now, and count there)."""
        return set(self.store.decisions())

    def _from_store(self) -> Learned | None:
        """What the stored verdicts teach; None when the library's index cannot be read now (this
        thread is building it: what was learned before stands until the next look)."""
        found = judgments(self.store.verdict_evidence(tuple(VERDICT_EVIDENCE)), self.store.outcome_evidence())
        if not found:
            return Learned()
        index = self.index()
        if index is None:
            return None
        demands = {d.id: d for d in self.store.get_demands({j.demand_id for j in found})}
        experts = {e.id: e for e in self.store.get_experts({j.expert_id for j in found})}
        learned = self.learn_from(found, demands, experts, index)
        log.info("learned %d associations from %d verdicts on %d demands", len(learned), len(found),
                 learned.demands)
        return learned

    def learn_from(self, found: Sequence[Judgment], demands: Mapping[str, Demand],
                   experts: Mapping[str, Expert],
                   index: IndexState) -> Learned:
        """Associations from `found`, reading the demands' phrases and the experts' concept words
        (those missing from the mappings are left out)."""
        phrases = {d: self.phrases(demands[d]) for d in {j.demand_id for j in found} if d in demands}
        concepts = {e: self.concepts(experts[e]) for e in {j.expert_id for j in found} if e in experts}
        return learn(found, phrases, concepts, share=expert_shares(index), params=self.params)

    def phrases(self, demand: Demand) -> list[str]:
        key = (demand.text, " ".join([demand.title, *demand.keywords]))
        got = self._phrases.get(key)
        if got is None:
            got = self._phrases[key] = self.understander.phrases(*key)
        return got

    def concepts(self, expert: Expert) -> list[str]:
        key = expert_digest(expert)
        got = self._concepts.get(key)
        if got is None:
            words = {t for text in concept_texts(expert) for t in self.understander.tokenize(text)}
            got = self._concepts[key] = sorted(t for t in words if t not in self.understander.generic
                                               and _CONCEPT.search(t))
        return got

    def forget(self) -> None:
        """Drop the cached phrases and concept words (they are made again when next needed)."""
        with self._lock:
            self._phrases.clear()
            self._concepts.clear()
