"""Ranking: expert units, query weighting, several signals fused, filters, and explanations.

An expert is scored through the pieces of their record ("units"): each paper, patent and project,
their research fields, their bio. Signals (each an array over experts):

  docs      word BM25 over units, aggregated per expert as a decaying sum of the expert's best
            `doc_top_k` units (1, 1/2, 1/4 …): one strong document counts most, breadth a little;
  profile   word BM25 over the expert's whole record concatenated (the classic baseline);
  fields    word BM25 over research fields + keywords only (the expert's declared expertise);
  chars     character 2-3-gram TF-IDF cosine, best unit per expert: robust to segmentation errors;
  semantic  LSA (TruncatedSVD of unit TF-IDF) cosine between the query and the expert centroid;
  prior     log-scaled activity (number of documents), off by default.

Fusion is a normalised weighted sum: each signal is divided by its best value for this query,
so the weights in `Settings` are comparable across signals and queries (documented; see the README's
ablation table). Query terms are weighted: keywords and title terms count `query_keyword_boost`
times, generic words (corpora/generic_terms.txt) `generic_term_weight` times, and a synonym of a
query term (corpora/synonyms.txt) is added at half weight.

Incremental updates. `ExpertIndex.updated(upserts, removed, tokenize)` returns a new index in which
changed experts are re-indexed and removed ones masked out, tokenising only the changed experts.
The lexical signals (docs, profile, fields, chars) are then equal to those of a fresh `fit` on the
same experts up to float32 rounding (`matcher.index` keeps exact statistics). The semantic signal is
the one approximation: new documents are projected onto the LSA basis fitted before. `drift` is
the share of documents added or removed since that fit; above a threshold the owner calls
`compacted()`, which refits from the stored counts (no tokenising). Each expert carries a digest of
its record, so `diff(experts)` tells which experts a store holds that the index does not reflect.
An index is saved as a base folder plus, after updates, a small `delta-*` folder (`save_delta`).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import re
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import scipy.sparse as sp

from matcher.errors import IndexStateError
from matcher.index import FORMAT_VERSION, LsaSpace, TermIndex, char_ngrams
from matcher.models import Evidence, Expert, Explanation, expert_digest
from matcher.text import Synonyms, normalize
from matcher.tokens import as_source

Tokenize = Callable[[str], list[str]]
_WORD_TFIDF_SUMS = "word_tfidf.norm_sums.npy"
# An index with at least this many units scores the character n-grams on a second thread while
# the words are scored: both are mostly scipy/numpy work that releases the GIL.
PARALLEL_MIN_UNITS = 200_000
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _scoring_pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="matcher-score")
        return _POOL


SIGNALS: tuple[str, ...] = ("docs", "profile", "fields", "chars", "semantic", "prior")


Pieces = tuple[tuple[str, int], ...]  # (text, how many times it counts)


@dataclass(frozen=True, slots=True)
class Unit:
    """One searchable piece of an expert's record."""

    expert: int  # position of the expert in the fitted order
    field: str  # research_fields | bio | paper | patent | project | achievement
    text: str  # what staff see as evidence (a title, the fields)
    words: Pieces  # texts tokenised for the word signals, with their multiplicity
    chars: Pieces  # texts whose character n-grams are indexed


def expert_units(expert: Expert, position: int, *, char_abstracts: bool = False) -> list[Unit]:
    """The units of one expert. Title and keywords are the densest statement of a document and
    count twice (BM25F-lite). Character n-grams cover titles, keywords and fields (and abstracts
    with `char_abstracts`): n-grams of every abstract would be most of the index's memory at
    100,000 experts for a signal whose job is catching segmentation slips in technical terms."""
    units: list[Unit] = []
    fields = "、".join(expert.research_fields)
    if fields:
        units.append(Unit(position, "research_fields", fields, ((fields, 1),), ((fields, 1),)))
    if expert.bio:
        units.append(Unit(position, "bio", expert.bio, ((expert.bio, 1),),
                          ((expert.bio, 1),) if char_abstracts else ()))
    for doc in expert.documents:
        kw = " ".join(doc.keywords)
        words = tuple((t, m) for t, m in ((doc.title, 2), (kw, 2), (doc.abstract, 1)) if t)
        if not words:
            continue
        chars = tuple((t, m) for t, m in ((doc.title, 2), (kw, 2), (doc.abstract if char_abstracts else "", 1))
                      if t)
        units.append(Unit(position, doc.kind, doc.title or kw or doc.abstract[:80], words, chars))
    return units


def _piece_counts(
    pieces: Sequence[Pieces], featurize_many: Callable[[list[str]], list[list[str]]], vocab: dict[str, int],
) -> sp.csr_matrix:
    """(units x features) counts, each distinct piece of text featurised once; `vocab` grows.

    A unit's row is the sum of its pieces' rows times their multiplicity: one sparse product
    instead of counting every token of every unit in Python (a tenth of the build at 3,000 experts).
    """
    distinct: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    mult: list[int] = []
    for u, parts in enumerate(pieces):
        for text, m in parts:
            rows.append(u)
            cols.append(distinct.setdefault(text, len(distinct)))
            mult.append(m)
    feats = featurize_many(list(distinct))
    lens = np.fromiter((len(f) for f in feats), dtype=np.int64, count=len(feats))
    ids = np.fromiter((vocab.setdefault(t, len(vocab)) for f in feats for t in f), dtype=np.int32,
                      count=int(lens.sum()))
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    per_piece = sp.csr_matrix((np.ones(len(ids), dtype=np.float32), ids, indptr),
                              shape=(len(feats), len(vocab)))
    per_piece.sum_duplicates()
    assemble = sp.csr_matrix((np.asarray(mult, dtype=np.float32), (rows, cols)),
                             shape=(len(pieces), len(feats)))
    out = sp.csr_matrix(assemble @ per_piece, dtype=np.float32)
    out.sort_indices()
    return out


def _stack(blocks: list[sp.csr_matrix], n_cols: int) -> sp.csr_matrix:
    widened = [sp.csr_matrix((b.data, b.indices, b.indptr), shape=(b.shape[0], n_cols)) for b in blocks]
    return sp.vstack(widened, format="csr") if widened else sp.csr_matrix((0, n_cols), dtype=np.float32)


def _chars_of(text: str) -> list[str]:
    return char_ngrams(normalize(text), 1, 3)


def _chars_many(texts: list[str]) -> list[list[str]]:
    return [_chars_of(t) for t in texts]


def _expand(parts: Pieces, feats: Mapping[str, Sequence[str]]) -> list[str]:
    return [t for text, m in parts for _ in range(m) for t in feats[text]]


def _prior(n_documents: np.ndarray) -> np.ndarray:
    return np.log1p(n_documents) / max(float(np.log1p(n_documents).max(initial=0.0)), 1e-9)


def declared_text(expert: Expert) -> str:
    """Research fields, tags and document keywords: what the expert says they do."""
    kws = [k for d in expert.documents for k in d.keywords]
    return " ".join([*expert.research_fields, *kws])


@dataclass(frozen=True, slots=True)
class Query:
    """A weighted query: {term: weight} plus the plain token list (for the BM25 reference)."""

    text: str
    tokens: tuple[str, ...]
    weights: Mapping[str, float]

    @classmethod
    def build(
        cls,
        text: str,
        tokenize: Tokenize,
        *,
        emphasis: str = "",
        keyword_boost: float = 2.0,
        generic: frozenset[str] = frozenset(),
        generic_weight: float = 0.3,
        synonyms: Synonyms | None = None,
    ) -> Query:
        tokens = tokenize(text)
        weights: dict[str, float] = {}
        counts = Counter(tokens)
        emphasised = set(tokenize(emphasis)) if emphasis else set()
        for term, tf in counts.items():
            w = 1.0 + math.log(tf)
            if term in emphasised:
                w *= keyword_boost
            if term in generic:
                w *= generic_weight
            weights[term] = w
        if synonyms is not None and len(synonyms):
            for term, w in list(weights.items()):
                for eq in synonyms.equivalents(term):
                    weights[eq] = max(weights.get(eq, 0.0), 0.5 * w)
        return cls(text=text, tokens=tuple(tokens), weights=weights)


@dataclass(frozen=True, slots=True)
class Scored:
    """Fused scores for one query, with the per-signal arrays kept for explanations."""

    total: np.ndarray
    signals: Mapping[str, np.ndarray]
    unit_scores: np.ndarray


@dataclass(frozen=True, slots=True)
class _Layout:
    unit_alive: np.ndarray  # float32 0/1 per unit (its expert is live)
    doc: np.ndarray  # document id per unit (units of equal content share one)
    by_doc: np.ndarray  # units ordered by document …
    doc_ptr: np.ndarray  # … document d's units are by_doc[doc_ptr[d]:doc_ptr[d + 1]]
    by_expert: np.ndarray  # units ordered by expert …
    expert_ptr: np.ndarray  # … expert e's units are by_expert[expert_ptr[e]:expert_ptr[e + 1]]
    all_alive: bool  # every unit's expert is live (no masking needed)

    @classmethod
    def of(cls, unit_expert: np.ndarray, unit_hash: np.ndarray, expert_alive: np.ndarray) -> _Layout:
        _, doc = np.unique(unit_hash, return_inverse=True)
        doc = doc.astype(np.int64).ravel()
        by_doc = np.argsort(doc, kind="stable")
        doc_ptr = np.concatenate([[0], np.cumsum(np.bincount(doc, minlength=int(doc.max(initial=-1)) + 1))])
        by_expert = np.argsort(unit_expert, kind="stable")
        expert_ptr = np.concatenate([[0], np.cumsum(np.bincount(unit_expert, minlength=len(expert_alive)))])
        unit_alive = expert_alive[unit_expert].astype(np.float32)
        return cls(unit_alive, doc, by_doc, doc_ptr, by_expert, expert_ptr, bool(unit_alive.all()))


def best_first(scores: np.ndarray, *, chunk: int = 64) -> Iterator[int]:
    """Positions of the positive scores, best first (ties by position), sorted lazily: a page of
    ten needs a partial sort of a few dozen, not a sort of 100,000 experts."""
    pos = np.flatnonzero(scores > 0)
    vals = -scores[pos]
    done = 0
    while done < len(pos):
        take = min(len(pos), done + chunk)
        if take < len(pos):
            # Every score tied with the take-th best comes along, so the order is exactly a full
            # sort's (by score, then position) and consistent from one round to the next.
            kth = np.partition(vals, take - 1)[take - 1]
            part = np.flatnonzero(vals <= kth)
            part = part[np.lexsort((pos[part], vals[part]))][:take]
        else:
            part = np.lexsort((pos, vals))
        for j in part[done:]:
            yield int(pos[j])
        done = take
        chunk *= 8


def _top_candidates(scores: np.ndarray, m: int) -> np.ndarray:
    """Positions of positive scores that include the `m` best (and everything tied with them);
    possibly more. A threshold from a strided sample replaces a partial sort of the whole array,
    which took 7 ms at a million units; a threshold that finds too few falls back to it."""
    n = len(scores)
    if n <= 16 * m:
        return np.flatnonzero(scores > 0)
    sample = scores[:: max(1, n // (64 * m))]
    want = min(len(sample), max(1, int(3 * m * len(sample) / n)))
    threshold = float(np.partition(sample, len(sample) - want)[len(sample) - want])
    if threshold > 0:
        cand = np.flatnonzero(scores >= threshold)
        if len(cand) >= m:
            return cand
    positive = np.flatnonzero(scores > 0)
    if len(positive) <= m:
        return positive
    kth = np.partition(scores[positive], len(positive) - m)[len(positive) - m]
    return positive[scores[positive] >= kth]


def _top_units(score_arrays: Sequence[np.ndarray | None], depth: int) -> np.ndarray:
    """The union of the `depth` best-scoring units of each array (positive scores only)."""
    picked = []
    for arr in score_arrays:
        if arr is None:
            continue
        picked.append(_top_candidates(arr, depth))
    return np.unique(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def _unit_hash(u: Unit) -> int:
    """A 63-bit fingerprint of what a unit indexes: equal content, one document."""
    h = hashlib.blake2b(digest_size=8)
    for text, m in u.words:
        h.update(f"{m}\x1f{text}\x1e".encode("utf-8", "surrogatepass"))
    return int.from_bytes(h.digest(), "little") >> 1


class ExpertIndex:
    """Every signal over one set of experts. `fit(experts, tokenize)`, then `score(query)`."""

    #: Signals kept in the index only when their fusion weight is not zero (or `build_all`): each
    #: costs as much memory as the document index itself, and the defaults do not use them.
    OPTIONAL: tuple[str, ...] = ("profile", "fields")

    def __init__(
        self,
        *,
        k1: float = 1.2,
        b: float = 0.75,
        knn_k: int = 100,
        lsa_dims: int = 128,
        weights: Mapping[str, float] | None = None,
        char_abstracts: bool = False,
        build_all: bool = False,
        lsa_sample: int = 60_000,
        max_postings: int = 0,
        semantic_exhaustive: int = 0,
        diversify_slots: int = 0,
    ) -> None:
        self.k1 = k1
        self.b = b
        self.knn_k = knn_k
        self.lsa_dims = lsa_dims
        self.weights = dict(weights or {"docs": 1.0, "profile": 0.6, "fields": 0.5, "chars": 0.4, "semantic": 0.3})
        self.char_abstracts = char_abstracts
        self.build_all = build_all
        self.lsa_sample = lsa_sample
        # Query-time work bounds (0: none), see `TermIndex._budget` and `signals`.
        self.max_postings = max_postings
        self.semantic_exhaustive = semantic_exhaustive
        self.diversify_slots = diversify_slots

    def _builds(self, name: str) -> bool:
        return self.build_all or bool(self.weights.get(name, 0.0))

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, experts: Iterable[Expert], tokenize: Tokenize, *, chunk: int = 20_000) -> ExpertIndex:
        """Index `experts` (any iterable: a store's cursor is read once, `chunk` experts at a time,
        so the records of a large pool are never all in memory). `tokenize` may be a
        `matcher.tokens.TokenSource` (cache, processes)."""
        if isinstance(experts, str | bytes):
            raise ValueError("expected a sequence of experts, got a string")
        source = as_source(tokenize)
        self.expert_ids_, self.digests_ = [], []
        self.unit_field_, self.unit_text_ = [], []
        unit_expert: list[np.ndarray] = []
        unit_hash: list[np.ndarray] = []
        ndocs: list[int] = []
        declared: list[list[str]] = []
        word_vocab: dict[str, int] = {}
        gram_vocab: dict[str, int] = {}
        word_blocks: list[sp.csr_matrix] = []
        gram_blocks: list[sp.csr_matrix] = []
        it = iter(experts)
        while batch := list(itertools.islice(it, chunk)):
            n0 = len(self.expert_ids_)
            units = [u for i, e in enumerate(batch, start=n0)
                     for u in expert_units(e, i, char_abstracts=self.char_abstracts)]
            self.expert_ids_ += [e.id for e in batch]
            self.digests_ += [expert_digest(e) for e in batch]
            ndocs += [len(e.documents) for e in batch]
            if self._builds("fields"):
                declared += source.many([declared_text(e) for e in batch])
            self.unit_field_ += [u.field for u in units]
            self.unit_text_ += [u.text for u in units]
            unit_expert.append(np.fromiter((u.expert for u in units), dtype=np.int64, count=len(units)))
            unit_hash.append(np.fromiter((_unit_hash(u) for u in units), dtype=np.int64, count=len(units)))
            word_blocks.append(_piece_counts([u.words for u in units], source.many, word_vocab))
            gram_blocks.append(_piece_counts([u.chars for u in units], _chars_many, gram_vocab))
            del batch, units
        n = len(self.expert_ids_)
        self.unit_expert_ = np.concatenate(unit_expert) if unit_expert else np.zeros(0, dtype=np.int64)
        self.unit_hash_ = np.concatenate(unit_hash) if unit_hash else np.zeros(0, dtype=np.int64)
        words = _stack(word_blocks, len(word_vocab))
        del word_blocks
        self.units_ = TermIndex("bm25", self.k1, self.b).fit_counts(words, list(word_vocab))
        self.word_tfidf_ = self.units_.sibling("tfidf")
        grams = _stack(gram_blocks, len(gram_vocab))
        del gram_blocks
        self.chars_ = TermIndex("tfidf").fit_counts(grams, list(gram_vocab))
        del grams
        self.profile_ = self.fields_ = None
        if self._builds("profile"):
            n_units = len(self.unit_expert_)
            owner = sp.csr_matrix((np.ones(n_units, dtype=np.float32), (self.unit_expert_, np.arange(n_units))),
                                  shape=(n, n_units))
            self.profile_ = TermIndex("bm25", self.k1, self.b).fit_counts(owner @ words, list(word_vocab))
        del words
        if self._builds("fields"):
            self.fields_ = TermIndex("bm25", self.k1, self.b).fit(declared)
        self._fit_semantic()
        self.n_documents_ = np.asarray(ndocs, dtype=np.float32)
        self.prior_ = _prior(self.n_documents_)
        self.centroid_norm_ = self._centroid_norms(self.word_tfidf_.weighted_csc(), np.arange(n),
                                                   self.unit_expert_)
        self.expert_alive_ = np.ones(n, dtype=bool)
        self.n_base_experts_ = n
        self.base_id_ = uuid.uuid4().hex[:12]
        return self

    @staticmethod
    def _centroid_norms(weights: sp.csc_matrix, experts: np.ndarray, owner_of_row: np.ndarray) -> np.ndarray:
        """||sum of an expert's L2-normalised TF-IDF document vectors||, per expert in `experts`
        (rows of `weights` belong to `owner_of_row[row]`, an index into `experts`). With it, the
        cosine between a query and an expert's centroid is the sum of the query's cosines with the
        expert's documents divided by this norm: no centroid matrix is kept."""
        n = len(experts)
        owner = sp.csr_matrix((np.ones(len(owner_of_row), dtype=np.float32),
                               (np.arange(len(owner_of_row)), owner_of_row)), shape=(weights.shape[0], n))
        summed = sp.csr_matrix(weights.T) @ owner  # terms x experts; weights.T of a CSC is a CSR view
        norms = np.sqrt(np.asarray(summed.multiply(summed).sum(axis=0)).ravel()).astype(np.float32)
        norms[norms == 0] = 1.0
        return norms

    def _fit_semantic(self) -> None:
        n_units = len(self.unit_expert_)
        if n_units > 2 and self.word_tfidf_.n_terms > 2:
            self.lsa_ = LsaSpace(self.lsa_dims).fit(self.word_tfidf_, sample=self.lsa_sample)
        else:
            self.lsa_ = None

    @property
    def n_experts(self) -> int:
        """Experts in the index (removed ones not counted; positions run to `len(expert_ids_)`)."""
        self._require_fitted()
        return int(self.expert_alive_.sum())

    # -- incremental updates --------------------------------------------------------------------
    @property
    def params(self) -> dict[str, object]:
        """What the index was built with (fusion weights apart): a change needs a rebuild."""
        return {"k1": self.k1, "b": self.b, "knn_k": self.knn_k, "lsa_dims": self.lsa_dims,
                "char_abstracts": self.char_abstracts, "build_all": self.build_all}

    @property
    def drift(self) -> float:
        """Documents added or removed since the semantic space was fitted, as a share of those it was
        fitted on. Lexical scores stay exact whatever the drift; the LSA basis ages with it."""
        self._require_fitted()
        return self.units_.n_changed_ / max(self.units_.n_base_rows_, 1)

    def positions(self) -> Mapping[str, int]:
        """Expert id -> position, for the experts in the index (read-only; made once per index,
        and by `updated` from its predecessor's: a dict of 100,000 ids took 70 ms an add)."""
        self._require_fitted()
        pos = self.__dict__.get("_positions_cache")
        if pos is None:
            pos = {self.expert_ids_[i]: int(i) for i in np.flatnonzero(self.expert_alive_)}
            self.__dict__["_positions_cache"] = pos
        return MappingProxyType(pos)

    def live_digests(self) -> dict[str, str]:
        """{expert id: digest of the record it was indexed from} of the live experts."""
        return {self.expert_ids_[i]: self.digests_[i] for i in np.flatnonzero(self.expert_alive_)}

    def realign(self, before: ExpertIndex, aligned: Sequence[Expert | None],
                records: Mapping[str, Expert]) -> tuple[Expert | None, ...]:
        """`align` for an index made by `before.updated(...)`, from `before`'s alignment: the
        removed and replaced positions become None and the appended ones come from `records`
        (which needs to hold only those): no pass in Python over every expert."""
        n_old = len(before.expert_ids_)
        if (self.base_id_ != before.base_id_ or len(aligned) != n_old or len(self.expert_ids_) < n_old
                or self.expert_ids_[:n_old] != before.expert_ids_):
            raise IndexStateError("realign needs an index made from `before` by updated()")
        out = list(aligned)
        for i in np.flatnonzero(before.expert_alive_ & ~self.expert_alive_[:n_old]):
            out[int(i)] = None
        try:
            out.extend(records[eid] for eid in self.expert_ids_[n_old:])
        except KeyError as exc:
            raise IndexStateError(f"expert {exc} is in the index but not in the records given") from None
        return tuple(out)

    def align(self, experts: Mapping[str, Expert]) -> tuple[Expert | None, ...]:
        """The records by position (None where an expert was removed), for turning scores into matches."""
        try:
            return tuple(
                experts[eid] if alive else None
                for eid, alive in zip(self.expert_ids_, self.expert_alive_, strict=True)
            )
        except KeyError as exc:
            raise IndexStateError(f"expert {exc} is in the index but not in the records given") from None

    def updated(self, upserts: Iterable[Expert], removed: Iterable[str], tokenize: Tokenize) -> ExpertIndex:
        """A new index with `upserts` (new or changed experts) indexed and `removed` ids dropped.

        `self` is not modified: readers on other threads keep a consistent index. An expert whose
        record is unchanged is skipped; a changed one is masked at its old position and appended.
        Unknown ids in `removed` are ignored.
        """
        self._require_fitted()
        if isinstance(upserts, str | bytes):
            raise ValueError("expected experts, got a string")
        pos = self.positions()
        latest = {e.id: e for e in upserts}
        changed = [e for e in latest.values()
                   if e.id not in pos or self.digests_[pos[e.id]] != expert_digest(e)]
        dead = sorted({pos[i] for i in removed if i in pos} | {pos[e.id] for e in changed if e.id in pos})
        if not changed and not dead:
            return self
        n0, u0 = len(self.expert_ids_), len(self.unit_expert_)
        units = [u for k, e in enumerate(changed)
                 for u in expert_units(e, n0 + k, char_abstracts=self.char_abstracts)]
        source = as_source(tokenize)
        pieces = list(dict.fromkeys(t for u in units for t, _ in u.words))
        feats = dict(zip(pieces, source.many(pieces), strict=True))
        unit_tokens = [_expand(u.words, feats) for u in units]
        grams = {t: _chars_of(t) for t in dict.fromkeys(t for u in units for t, _ in u.chars)}
        dead_units = np.flatnonzero(np.isin(self.unit_expert_, dead))

        new = copy.copy(self)
        new.units_ = self.units_.updated(unit_tokens, dead_units)
        new.word_tfidf_ = new.units_.sibling("tfidf", like=self.word_tfidf_)
        new.chars_ = self.chars_.updated([_expand(u.chars, grams) for u in units], dead_units)
        if self.profile_ is not None:
            profile_tokens: list[list[str]] = [[] for _ in changed]
            for u, toks in zip(units, unit_tokens, strict=True):
                profile_tokens[u.expert - n0].extend(toks)
            new.profile_ = self.profile_.updated(profile_tokens, dead)
        if self.fields_ is not None:
            new.fields_ = self.fields_.updated(source.many([declared_text(e) for e in changed]), dead)
        new.expert_ids_ = [*self.expert_ids_, *(e.id for e in changed)]
        new.digests_ = [*self.digests_, *(expert_digest(e) for e in changed)]
        alive = np.concatenate([self.expert_alive_, np.ones(len(changed), dtype=bool)])
        alive[dead] = False
        new.expert_alive_ = alive
        local = np.asarray([u.expert - n0 for u in units], dtype=np.int64)
        new.unit_expert_ = np.concatenate([self.unit_expert_, local + n0])
        new.unit_field_ = [*self.unit_field_, *(u.field for u in units)]
        new.unit_text_ = [*self.unit_text_, *(u.text for u in units)]
        new.unit_hash_ = np.concatenate([self.unit_hash_, np.fromiter((_unit_hash(u) for u in units), dtype=np.int64,
                                                                      count=len(units))])
        new.__dict__.pop("_layout_cache", None)
        new_pos = pos.copy()  # the cached dict's own copy: C-level, not a Python pass over every expert
        for i in dead:
            new_pos.pop(self.expert_ids_[i], None)
        new_pos.update((e.id, n0 + k) for k, e in enumerate(changed))
        new.__dict__["_positions_cache"] = new_pos
        ndocs = np.asarray([len(e.documents) for e in changed], dtype=np.float32)
        new.n_documents_ = np.concatenate([self.n_documents_, ndocs])
        new.prior_ = _prior(new.n_documents_ * alive)
        # Experts appended now get their centroid norm under today's statistics; the others keep
        # theirs until the next compaction (as the LSA basis does).
        added = new.word_tfidf_.weighted(np.arange(u0, u0 + len(units)))
        new.centroid_norm_ = np.concatenate([self.centroid_norm_, new._centroid_norms(
            added.tocsc(), np.arange(len(changed)), local)])
        if self.lsa_ is not None and units:
            new.lsa_ = self.lsa_.with_embeddings(np.concatenate([self.lsa_.embeddings_, self.lsa_.embed(added)]))
        return new

    def compacted(self) -> ExpertIndex:
        """The live experts re-indexed from the stored term counts, in id order (as a fresh fit over a
        store would be), with the semantic space refitted: what a full rebuild gives, without
        tokenising. Drift starts again from zero."""
        self._require_fitted()
        ids = self.expert_ids_
        order = np.asarray(sorted(np.flatnonzero(self.expert_alive_), key=lambda i: ids[i]), dtype=np.int64)
        newpos = np.full(len(ids), -1, dtype=np.int64)
        newpos[order] = np.arange(len(order))
        rows = np.flatnonzero(self.expert_alive_[self.unit_expert_])
        rows = rows[np.lexsort((rows, newpos[self.unit_expert_[rows]]))]
        new = copy.copy(self)
        new.units_ = self.units_.compacted(rows)
        new.word_tfidf_ = new.units_.sibling("tfidf")
        new.chars_ = self.chars_.compacted(rows)
        for name in self.OPTIONAL:
            part = getattr(self, f"{name}_")
            setattr(new, f"{name}_", None if part is None else part.compacted(order))
        new.expert_ids_ = [ids[i] for i in order]
        new.digests_ = [self.digests_[i] for i in order]
        new.expert_alive_ = np.ones(len(order), dtype=bool)
        new.n_base_experts_ = len(order)
        new.unit_expert_ = newpos[self.unit_expert_[rows]]
        new.unit_field_ = [self.unit_field_[r] for r in rows]
        new.unit_text_ = [self.unit_text_[r] for r in rows]
        new.unit_hash_ = self.unit_hash_[rows]
        new.__dict__.pop("_layout_cache", None)
        new.__dict__.pop("_positions_cache", None)
        new.n_documents_ = self.n_documents_[order]
        new.prior_ = _prior(new.n_documents_)
        new.centroid_norm_ = new._centroid_norms(new.word_tfidf_.weighted_csc(), np.arange(len(order)),
                                                 new.unit_expert_)
        new._fit_semantic()
        new.base_id_ = uuid.uuid4().hex[:12]
        return new

    def _require_fitted(self) -> None:
        if not hasattr(self, "units_"):
            raise IndexStateError("the expert index is not fitted: run `matcher index` to build it")

    # -- score ----------------------------------------------------------------------------------
    def _layout(self) -> _Layout:
        """Lookup arrays derived from the unit list, built on first use (and after each update,
        which makes a new index object)."""
        layout = self.__dict__.get("_layout_cache")
        if layout is None:
            layout = _Layout.of(self.unit_expert_, self.unit_hash_, self.expert_alive_)
            self.__dict__["_layout_cache"] = layout
        return layout

    def _units_of(self, expert: int) -> np.ndarray:
        lay = self._layout()
        return lay.by_expert[lay.expert_ptr[expert] : lay.expert_ptr[expert + 1]]

    def _knn_vote(self, unit_scores: np.ndarray) -> np.ndarray:
        """Balog's document model restricted to the query's neighbourhood: the `knn_k` (100) best
        documents each add their similarity to every expert who holds them.

        Summing over the neighbourhood (not taking an expert's single best document) counts how
        much of the query's topic an expert covers; on the CDL dev split it beats max, top-k mean
        and centroids for every similarity (see notebooks/evaluation.ipynb).

        Units with the same content (one paper co-written by several experts, a project several
        experts reviewed) are one document and score alike. The best units are found with a
        partial sort of a few times `knn_k` (not a pass per document), so a vote costs about the
        same at a million units as the score array it reads."""
        lay = self._layout()
        n = len(self.expert_ids_)
        scores = unit_scores if lay.all_alive else unit_scores * lay.unit_alive
        k = self.knn_k
        m = min(len(scores), 4 * k)
        while True:
            top = _top_candidates(scores, m)
            # Best first; equal scores by document id, so ties do not depend on unit positions
            # (an updated index orders its units differently from a fresh fit).
            top = top[np.lexsort((lay.doc[top], -scores[top]))]
            docs, first = np.unique(lay.doc[top], return_index=True)
            if len(docs) >= k or m >= len(scores) or len(top) < m:
                break
            # fewer than k distinct documents among the m best units (many copies): look deeper
            m = min(len(scores), m * 4)
        chosen = lay.doc[top[np.sort(first)[:k]]]
        voters = np.concatenate([lay.by_doc[lay.doc_ptr[d] : lay.doc_ptr[d + 1]] for d in chosen]) \
            if len(chosen) else np.zeros(0, dtype=np.int64)
        voters = voters[scores[voters] > 0]
        return np.bincount(self.unit_expert_[voters], weights=scores[voters], minlength=n).astype(np.float32)

    def signals(self, query: Query) -> tuple[dict[str, np.ndarray], np.ndarray]:
        self._require_fitted()
        n = len(self.expert_ids_)
        zeros = np.zeros(n, dtype=np.float32)
        budget = self.max_postings or None
        grams = Counter(char_ngrams(normalize(query.text), 1, 3))
        pending: Future[np.ndarray] | None = None
        if grams and len(self.unit_expert_) >= PARALLEL_MIN_UNITS:
            pending = _scoring_pool().submit(self.chars_.score, grams, max_postings=budget)
        unit_scores, tfidf_scores = self.units_.score_with((self.word_tfidf_,), query.weights, max_postings=budget)
        sig = {"docs": self._knn_vote(unit_scores), "tfidf": self._knn_vote(tfidf_scores)}
        # The TF-IDF centroid of each expert's documents (the README's reference ranker), from the
        # document cosines: the whole-profile view, used for the diversified places (see `fuse`).
        lay = self._layout()
        live_tfidf = tfidf_scores if lay.all_alive else tfidf_scores * lay.unit_alive
        sig["centroid"] = (np.bincount(self.unit_expert_, weights=live_tfidf, minlength=n)
                           / self.centroid_norm_).astype(np.float32)
        for name in self.OPTIONAL:
            part = getattr(self, f"{name}_")
            sig[name] = zeros if part is None else part.score(query.weights)
        # Experts sharing at least one word with the query (any unit scoring above 0): only they are
        # listed (see `fuse`).
        hit = unit_scores > 0
        sig["lexical"] = np.bincount(self.unit_expert_[hit], minlength=n).astype(np.float32)
        if pending is not None:
            char_scores = pending.result()
        else:
            char_scores = self.chars_.score(grams, max_postings=budget) if grams else None
        sig["chars"] = self._knn_vote(char_scores) if char_scores is not None else zeros
        sig["semantic"] = zeros
        if self.lsa_ is not None:
            ids, ws = self.word_tfidf_.query_vector(query.weights)
            fitted = self.lsa_.components_.shape[1]
            keep = ids < fitted  # terms added by incremental updates lie outside the fitted space
            if keep.any():
                q = np.zeros(fitted, dtype=np.float32)
                q[ids[keep]] = ws[keep]
                qe = self.lsa_.components_ @ q
                norm = float(np.linalg.norm(qe))
                if norm > 0:
                    qe = (qe / norm).astype(np.float32)
                    emb = self.lsa_.embeddings_
                    if self.semantic_exhaustive and len(emb) > self.semantic_exhaustive:
                        # A large index: the semantic space re-scores the lexical signals' best
                        # units (a two-stage search) instead of reading every embedding.
                        cand = _top_units([unit_scores, tfidf_scores, char_scores], 20 * self.knn_k)
                        cos = np.zeros(len(emb), dtype=np.float32)
                        cos[cand] = np.asarray(emb[cand] @ qe)
                    else:
                        cos = np.asarray(emb @ qe)
                    sig["semantic"] = self._knn_vote(np.clip(cos, 0.0, None))
        sig["prior"] = self.prior_
        return sig, unit_scores

    def score(self, query: Query, weights: Mapping[str, float] | None = None) -> Scored:
        """Fuse the signals: sum of w_s * v_s / std_s over the live experts.

        This ranks exactly as the per-query z-score sum (z = (v - mean) / std; the means only
        shift every expert by the same constant), but keeps scores non-negative, which the
        nightly assignment's maximisation needs. Experts with no lexical evidence score 0.
        """
        sig, unit_scores = self.signals(query)
        total = self.fuse(sig, self.weights if weights is None else weights)
        return Scored(total=total, signals=sig, unit_scores=unit_scores)

    def fuse(self, sig: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
        """The fused score of every expert from its signals (see `score`), with the last
        `diversify_slots` places of the first ten given to the best experts of the centroid view
        that the fusion left out (a `"slots"` entry in `weights` overrides the index's setting).

        The document vote rewards experts whose individual documents sit next to the query; the
        centroid rewards experts whose profile as a whole leans towards it. A page of ten that
        hedges between the two finds at least one right expert more often (Hit@10, on the CDL dev
        split and on both of its halves) at a cost in nDCG@10 of about 0.001."""
        total = self._fuse(sig, weights)
        slots = int(weights.get("slots", self.diversify_slots))
        if slots > 0:
            total = self._diversify(total, sig["centroid"], slots)
        return total

    def _diversify(self, total: np.ndarray, view: np.ndarray, slots: int, page: int = 10) -> np.ndarray:
        keep = page - slots
        ranked = list(itertools.islice(best_first(total), page))
        if len(ranked) <= keep:
            return total
        head = set(ranked[:keep])
        alt = np.where(total > 0, view, 0.0)
        picks = [i for i in itertools.islice(best_first(alt), page) if i not in head][:slots]
        if not picks:
            return total
        out = total.copy()
        floor = float(total[ranked[keep - 1]])  # the last place kept
        # Everyone below the kept places moves down a hair, and the picks go just under the floor.
        rest = out < floor
        out[rest] *= 1.0 - 1e-4
        below = np.ones(len(out), dtype=bool)
        below[ranked[:keep]] = False
        out[below & (out >= floor)] = floor * (1.0 - 1e-4)
        for j, i in enumerate(picks, start=1):
            out[i] = floor * (1.0 - 1e-5 * j)
        return out

    def _fuse(self, sig: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
        n = len(self.expert_ids_)
        total = np.zeros(n, dtype=np.float32)
        lexical = np.zeros(n, dtype=bool)
        alive = self.expert_alive_
        for name, arr in sig.items():
            if name in ("lexical", "docs", "tfidf", "profile", "fields"):
                lexical |= arr > 0
            w = 0.0 if name in ("lexical", "slots") else weights.get(name, 0.0)
            if not w:
                continue
            live = arr[alive]
            # One expert (or all alike) has no spread: fall back to the best value as the scale.
            scale = float(live.std()) if live.size > 1 else 0.0
            scale = scale if scale > 0 else float(live.max(initial=0.0))
            if scale > 0:
                total += w * (arr / scale)
        # Only experts sharing at least one word with the query are listed: the prior, the semantic
        # space and single characters may reorder them but must not surface unexplained experts.
        total[~lexical | ~alive] = 0.0
        return total

    # -- explain ---------------------------------------------------------------------------------
    def explain(self, expert: int, query: Query, scored: Scored, *, max_evidence: int = 3) -> Explanation:
        return self.explain_many([expert], query, scored, max_evidence=max_evidence)[0]

    def explain_many(
        self, experts: Sequence[int], query: Query, scored: Scored, *, max_evidence: int = 3,
    ) -> list[Explanation]:
        """Why each of `experts` matched: the query terms found in their units, best units first.

        The term weights of all the experts' matching units come from one lookup (a binary search
        per query term in its postings): explaining was most of the cost of a match and of the
        nightly batch."""
        self._require_fitted()
        per_expert = []
        for expert in experts:
            units = self._units_of(int(expert))
            units = units[scored.unit_scores[units] > 0]
            per_expert.append(units[np.argsort(-scored.unit_scores[units], kind="stable")])
        vocab = self.units_.vocabulary_
        known = [t for t in query.weights if t in vocab]
        rows = np.concatenate(per_expert) if per_expert else np.zeros(0, dtype=np.int64)
        weights = self.units_.entry_weights(rows, np.asarray([vocab[t] for t in known], dtype=np.int64))
        out: list[Explanation] = []
        start = 0
        for expert, by_score in zip(experts, per_expert, strict=True):
            block = weights[start : start + len(by_score)]
            start += len(by_score)
            term_weight: Counter[str] = Counter()
            evidence: list[Evidence] = []
            for row, u in enumerate(by_score):
                hit = np.flatnonzero(block[row] > 0)
                if not len(hit):
                    continue
                contrib = {known[j]: float(block[row, j]) for j in hit}
                term_weight.update(contrib)
                if len(evidence) < max_evidence:
                    terms = tuple(sorted(contrib, key=lambda t: -contrib[t]))
                    evidence.append(
                        Evidence(self.unit_field_[u], self.unit_text_[u], terms, float(scored.unit_scores[u]))
                    )
            signals = {name: float(arr[expert]) for name, arr in scored.signals.items() if name != "lexical"}
            out.append(Explanation(terms=tuple(t for t, _ in term_weight.most_common()), evidence=tuple(evidence),
                                   signals=signals))
        return out

    # -- persistence ----------------------------------------------------------------------------
    # A saved index is a base folder (meta.json, the arrays, the term indexes) written by `save`, and
    # after incremental updates a `delta-*` sub-folder holding what changed since the base was made,
    # named by `state.json`. Writing a delta never touches the base files; `state.json` is replaced
    # atomically, and the previous delta is kept for one more round for readers mid-load.
    # `word_tfidf` shares the counts of `units` and is not saved: `load` makes it again (`sibling`),
    # from the norm sums saved beside (`_WORD_TFIDF_SUMS`) rather than by a pass over every entry.
    _TERM_INDEXES = ("units", "chars", *OPTIONAL)

    def _saved_parts(self) -> list[str]:
        return [name for name in self._TERM_INDEXES if getattr(self, f"{name}_") is not None]

    def save(self, folder: Path | str, *, extra_meta: Mapping[str, object] | None = None) -> None:
        self._require_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "params": {**self.params, "weights": self.weights},
            "parts": self._saved_parts(),
            "base_id": self.base_id_,
            "n_base_experts": self.n_base_experts_,
            "n_base_units": self.units_.n_base_rows_,
            "expert_ids": self.expert_ids_,
            "digests": self.digests_,
            "unit_field": self.unit_field_,
            "unit_text": self.unit_text_,
            "has_lsa": self.lsa_ is not None,
            **(dict(extra_meta) if extra_meta else {}),
        }
        (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        for name in ("unit_expert", "unit_hash", "n_documents", "centroid_norm", "expert_alive"):
            np.save(folder / f"{name}.npy", getattr(self, f"{name}_"))
        np.save(folder / _WORD_TFIDF_SUMS, self.word_tfidf_._sums)
        for name in self._saved_parts():
            getattr(self, f"{name}_").save(folder, name)
        if self.lsa_ is not None:
            self.lsa_.save(folder, "lsa")
        _write_state(folder, {"base_id": self.base_id_, "format_version": FORMAT_VERSION, "delta": None,
                              **dict(extra_meta or {})})

    def save_delta(self, folder: Path | str, *, extra_meta: Mapping[str, object] | None = None) -> None:
        """Record the changes since the base in `folder`, which must hold this index's base (else
        `IndexStateError`: save the whole index instead)."""
        self._require_fitted()
        folder = Path(folder)
        try:
            # state.json names the base and its format: meta.json (every unit's text, a hundred
            # megabytes at 100,000 experts) is not read for that.
            state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
            if not (folder / "meta.json").is_file():
                raise OSError("meta.json is missing")
        except (OSError, ValueError) as exc:
            raise IndexStateError(f"no saved base index at {folder} ({exc})") from exc
        if state.get("base_id") != self.base_id_ or state.get("format_version") != FORMAT_VERSION:
            raise IndexStateError(f"the index at {folder} is another base; save the whole index")
        ne, nu = self.n_base_experts_, self.units_.n_base_rows_
        name = f"delta-{uuid.uuid4().hex[:12]}"
        tmp = folder / f"{name}.tmp"
        tmp.mkdir()
        meta = {
            "base_id": self.base_id_,
            "expert_ids": self.expert_ids_[ne:],
            "digests": self.digests_[ne:],
            "unit_field": self.unit_field_[nu:],
            "unit_text": self.unit_text_[nu:],
        }
        (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        np.save(tmp / "unit_expert.npy", self.unit_expert_[nu:])
        np.save(tmp / "unit_hash.npy", self.unit_hash_[nu:])
        np.save(tmp / "n_documents.npy", self.n_documents_[ne:])
        np.save(tmp / "centroid_norm.npy", self.centroid_norm_[ne:])
        np.save(tmp / "expert_alive.npy", self.expert_alive_)
        np.save(tmp / _WORD_TFIDF_SUMS, self.word_tfidf_._sums)
        for tname in self._saved_parts():
            getattr(self, f"{tname}_").save_delta(tmp, tname)
        if self.lsa_ is not None:
            np.save(tmp / "lsa.embeddings.npy", self.lsa_.embeddings_[nu:])
        tmp.rename(folder / name)
        _write_state(folder, {"base_id": self.base_id_, "format_version": FORMAT_VERSION, "delta": name,
                              **dict(extra_meta or {})})
        keep = {name, state.get("delta")}
        for old in folder.glob("delta-*"):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path | str, *, mmap: bool = True) -> ExpertIndex:
        """Read a saved index. With `mmap` (the default) the large arrays (the count matrices' base
        segments, the LSA embeddings) are memory-mapped, not read: a start-up costs what the
        first queries touch, and processes on one host share the pages."""
        folder = Path(folder)
        meta_path = folder / "meta.json"
        if not meta_path.exists():
            raise IndexStateError(f"no index at {folder}: run `matcher index` to build it")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            state_path = folder / "state.json"
            state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else {}
        except (OSError, ValueError) as exc:
            raise IndexStateError(
                f"the index at {folder} is unreadable ({exc}); run `matcher index`"
            ) from exc
        if not isinstance(meta, dict) or not isinstance(state, dict):
            raise IndexStateError(f"the index at {folder} is damaged (meta.json or state.json is not an "
                                  "object); rebuild it with `matcher index`")
        _verify_files(folder, state.get("files") or {})
        if meta.get("format_version") != FORMAT_VERSION:
            raise IndexStateError(
                f"the index at {folder} has format {meta.get('format_version')}, this version reads "
                f"{FORMAT_VERSION}: rebuild it with `matcher index`"
            )
        p = meta["params"]
        self = cls(k1=p["k1"], b=p["b"], knn_k=p.get("knn_k", 100), lsa_dims=p["lsa_dims"], weights=p["weights"],
                   char_abstracts=bool(p.get("char_abstracts", False)), build_all=bool(p.get("build_all", False)))
        try:
            if state and state.get("base_id") != meta["base_id"]:
                raise ValueError("state.json names another base")
            delta = folder / state["delta"] if state.get("delta") else None
            ne, nu = int(meta["n_base_experts"]), int(meta["n_base_units"])
            dmeta = json.loads((delta / "meta.json").read_text(encoding="utf-8")) if delta else None

            def part(name: str, base_len: int) -> np.ndarray:
                arr = np.load(folder / f"{name}.npy", allow_pickle=False)
                if delta is None:
                    return arr
                return np.concatenate([arr[:base_len], np.load(delta / f"{name}.npy", allow_pickle=False)])

            def listed(key: str, base_len: int) -> list:  # type: ignore[type-arg]
                return list(meta[key]) if dmeta is None else [*meta[key][:base_len], *dmeta[key]]

            self.base_id_ = meta["base_id"]
            self.expert_ids_ = listed("expert_ids", ne)
            self.digests_ = listed("digests", ne)
            self.unit_field_ = listed("unit_field", nu)
            self.unit_text_ = listed("unit_text", nu)
            self.unit_expert_ = part("unit_expert", nu)
            self.unit_hash_ = part("unit_hash", nu)
            self.n_documents_ = part("n_documents", ne)
            self.centroid_norm_ = part("centroid_norm", ne)
            src = delta if delta is not None else folder
            self.expert_alive_ = np.load(src / "expert_alive.npy", allow_pickle=False).astype(bool)
            parts = set(meta.get("parts", ()))
            for name in cls._TERM_INDEXES:
                part_ = TermIndex.load(folder, name, delta=delta, mmap=mmap) if name in parts else None
                setattr(self, f"{name}_", part_)
            if self.units_ is None or self.chars_ is None:
                raise ValueError("the document indexes are missing")
            sums_file = src / _WORD_TFIDF_SUMS
            self.word_tfidf_ = self.units_.sibling(
                "tfidf", norm_sums=np.load(sums_file, allow_pickle=False) if sums_file.exists() else None)
            self.n_base_experts_ = ne
            if meta.get("has_lsa"):
                lsa = LsaSpace.load(folder, "lsa", mmap=mmap and delta is None)
                if delta is not None:
                    extra = np.load(delta / "lsa.embeddings.npy", allow_pickle=False)
                    lsa = lsa.with_embeddings(np.concatenate([lsa.embeddings_[:nu], extra]))
                self.lsa_ = lsa
            else:
                self.lsa_ = None
            n_experts, n_units = len(self.n_documents_), self.units_.n_rows_
            if not (len(self.expert_ids_) == len(self.expert_alive_) == len(self.digests_) == n_experts
                    and len(self.unit_expert_) == len(self.unit_text_) == len(self.unit_hash_) == n_units):
                raise ValueError("its parts disagree in length")
        except (OSError, ValueError, KeyError) as exc:
            raise IndexStateError(
                f"the index at {folder} is damaged ({exc}); rebuild it with `matcher index`"
            ) from exc
        self.prior_ = _prior(self.n_documents_ * self.expert_alive_)
        self.meta_ = {**meta, **state}
        return self


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_state(folder: Path, state: Mapping[str, object]) -> None:
    # Checksums of every file a load reads (the base's and the current delta's): a truncated or
    # garbled file is refused, and the index rebuilt, instead of failing deep inside numpy or zipfile
    # or, worse, loading as silently wrong scores.
    # The base files never change once written: after an update only the new delta's files are
    # digested, the base's are taken from the state the base was saved with (re-reading a
    # gigabyte base made adding one expert to 100,000 take seconds).
    delta = state.get("delta")
    known: Mapping[str, str] = {}
    if delta:
        try:
            previous = json.loads((folder / "state.json").read_text(encoding="utf-8"))
            if previous.get("base_id") == state.get("base_id"):
                known = previous.get("files") or {}
        except (OSError, ValueError):
            known = {}
    parts = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith("state.json")]
    if delta:
        parts += [p for p in (folder / str(delta)).iterdir() if p.is_file()]
    files = {}
    for p in sorted(parts):
        rel = p.relative_to(folder).as_posix()
        files[rel] = known[rel] if "/" not in rel and rel in known else _digest(p)
    tmp = folder / "state.json.tmp"
    tmp.write_text(json.dumps({**dict(state), "files": files}, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, folder / "state.json")


def _verify_files(folder: Path, files: Mapping[str, str]) -> None:
    for rel, want in files.items():
        try:
            ok = _digest(folder / rel) == want
        except OSError as exc:
            raise IndexStateError(f"the index at {folder} is damaged ({rel}: {exc.strerror}); "
                                  "rebuild it with `matcher index`") from exc
        if not ok:
            raise IndexStateError(f"the index at {folder} is damaged ({rel} fails its checksum); "
                                  "rebuild it with `matcher index`")


# -- filters -------------------------------------------------------------------------------------
_SPLIT = re.compile(r"[,，、;；\s]+")


@dataclass(frozen=True, slots=True)
class Filters:
    """Who may be recommended: region and title contain these, institutions and ids excluded."""

    region: str = ""
    title: str = ""
    exclude_institutions: tuple[str, ...] = ()
    exclude_experts: tuple[str, ...] = ()

    def allows(self, expert: Expert) -> bool:
        if self.region and self.region not in expert.region:
            return False
        if self.title and not any(t and t in expert.title for t in _SPLIT.split(self.title)):
            return False
        if expert.id in self.exclude_experts or expert.name in self.exclude_experts:
            return False
        return not any(inst and same_institution(inst, expert.institution) for inst in self.exclude_institutions)


def same_institution(a: str, b: str) -> bool:
    """One institution names the other: 浙江大学 ~ 浙江大学机械工程学院 (prefix), exact otherwise."""
    a, b = normalize(a), normalize(b)
    if not a or not b:
        return False
    return a == b or b.startswith(a) or a.startswith(b)
