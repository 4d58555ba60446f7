"""The facade every face calls: the store, the tokenizer and the fitted index behind one object.

    engine = Engine(settings)            # opens the database; the index loads on first use
    engine.match("我司生产不锈钢保温杯…", top_k=10) -> list[Match]
    engine.import_experts(path)          # transactional; the index is rebuilt afterwards

The index is saved as a folder beside the database and reused while it is fresh: it records the
store's `data_version` and a fingerprint of the dictionaries, and is rebuilt when either changed.
A rebuilt index replaces the old one in one assignment, so readers on other threads always see a
consistent (index, experts) pair.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matcher import io as mio
from matcher.config import Settings, get_settings
from matcher.errors import IndexStateError, InputError
from matcher.models import Demand, Expert, Match
from matcher.rank import ExpertIndex, Filters, Query, same_institution
from matcher.store import Store, WriteSummary
from matcher.text import ChineseTokenizer, Synonyms, read_wordlist

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Loaded:
    index: ExpertIndex
    experts: tuple[Expert, ...]
    data_version: int


class Engine:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        tokenizer: ChineseTokenizer | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        corpora = self.settings.corpora_dir
        self.tokenizer = tokenizer or ChineseTokenizer(corpora / "domain_dict.txt", corpora / "stopwords.txt")
        self.store = store or Store(self.settings.db)
        generic = corpora / "generic_terms.txt"
        self.generic_terms = frozenset(read_wordlist(generic)) if generic.exists() else frozenset()
        self.synonyms = Synonyms.load(corpora / "synonyms.txt")
        self._loaded: _Loaded | None = None
        self._build_lock = threading.Lock()

    # -- life cycle -----------------------------------------------------------------------------
    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def index_dir(self) -> Path:
        return self.settings.resolved_index_dir

    def _fingerprint(self) -> str:
        """Changes when the dictionaries change, since they change the tokens."""
        h = hashlib.sha1()
        corpora = self.settings.corpora_dir
        for name in ("domain_dict.txt", "stopwords.txt", "generic_terms.txt", "synonyms.txt"):
            p = corpora / name
            h.update(name.encode())
            if p.exists():
                h.update(p.read_bytes())
        return h.hexdigest()[:16]

    def _weights(self) -> dict[str, float]:
        s = self.settings
        return {
            "docs": s.weight_docs, "profile": s.weight_profile, "fields": s.weight_fields,
            "chars": s.weight_chars, "semantic": s.weight_semantic, "prior": s.weight_prior,
        }

    def new_index(self) -> ExpertIndex:
        s = self.settings
        return ExpertIndex(k1=s.bm25_k1, b=s.bm25_b, doc_top_k=s.doc_top_k, lsa_dims=s.lsa_dims,
                           weights=self._weights())

    def rebuild(self) -> ExpertIndex:
        """Fit the index on every expert in the store and save it (replacing the old one)."""
        with self._build_lock:
            version = self.store.data_version
            experts = tuple(self.store.iter_experts())
            log.info("building the index over %d experts", len(experts))
            index = self.new_index().fit(experts, self.tokenizer)
            self._save(index, version)
            self._loaded = _Loaded(index, experts, version)
            return index

    def _save(self, index: ExpertIndex, version: int) -> None:
        target = self.index_dir
        tmp = target.with_name(target.name + ".tmp")
        old = target.with_name(target.name + ".old")
        shutil.rmtree(tmp, ignore_errors=True)
        index.save(tmp, extra_meta={"data_version": version, "fingerprint": self._fingerprint()})
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)

    def ensure_index(self) -> _Loaded:
        """The loaded index, fresh for the store: loaded from disk or rebuilt as needed."""
        loaded = self._loaded
        version = self.store.data_version
        if loaded is not None and loaded.data_version == version:
            return loaded
        experts = tuple(self.store.iter_experts())
        try:
            index = ExpertIndex.load(self.index_dir)
            meta = index.meta_
            fresh = (
                meta.get("data_version") == version
                and meta.get("fingerprint") == self._fingerprint()
                and index.expert_ids_ == [e.id for e in experts]
                and index.weights == self._weights()
            )
        except IndexStateError as exc:
            log.info("index not usable (%s); rebuilding", exc)
            fresh = False
        if fresh:
            self._loaded = _Loaded(index, experts, version)
        else:
            self.rebuild()
        assert self._loaded is not None
        return self._loaded

    # -- data in --------------------------------------------------------------------------------
    def add_experts(self, experts: Iterable[Expert]) -> WriteSummary:
        return self.store.upsert_experts(experts)

    def upsert_experts(self, experts: Iterable[Expert]) -> WriteSummary:
        """Write experts and make them findable at once (the index follows the store)."""
        summary = self.store.upsert_experts(experts)
        if summary.inserted or summary.updated:
            self.rebuild()
        return summary

    def delete_expert(self, expert_id: str) -> None:
        """Remove an expert from the store and from the results at once."""
        self.store.delete_expert(expert_id)
        self.rebuild()

    def add_demands(self, demands: Iterable[Demand]) -> WriteSummary:
        return self.store.upsert_demands(demands)

    def import_experts(self, path: Path | str) -> WriteSummary:
        return self.add_experts(mio.read_experts(path))

    def import_demands(self, path: Path | str) -> WriteSummary:
        return self.add_demands(mio.read_demands(path))

    def load_demo(self) -> bool:
        """Load the demo corpus when the store has no experts. True when it loaded it."""
        if self.store.count_experts():
            return False
        demo = self.settings.corpora_dir / "demo"
        with self.store.transaction():
            self.import_experts(demo / "experts.jsonl")
            if (demo / "demands.jsonl").exists() and not self.store.count_demands():
                self.import_demands(demo / "demands.jsonl")
        return True

    # -- matching -------------------------------------------------------------------------------
    def check_text(self, text: str) -> str:
        if not isinstance(text, str):
            raise InputError("the demand text must be a string")
        if not text.strip():
            raise InputError("the demand text is empty: paste the enterprise's technical problem")
        limit = self.settings.max_text_chars
        if len(text) > limit:
            raise InputError(f"the demand text has {len(text)} characters; the limit is {limit}. Shorten it")
        return text

    def query(self, text: str, emphasis: str = "") -> Query:
        s = self.settings
        return Query.build(
            text, self.tokenizer, emphasis=emphasis, keyword_boost=s.query_keyword_boost,
            generic=self.generic_terms, generic_weight=s.generic_term_weight, synonyms=self.synonyms,
        )

    def match(self, text: str, top_k: int | None = None, filters: Filters | None = None,
              *, emphasis: str = "") -> list[Match]:
        """Rank experts for a pasted demand text; each match explained."""
        self.check_text(text)
        top_k = self._check_top_k(top_k)
        loaded = self.ensure_index()
        q = self.query(text, emphasis)
        return self._rank(loaded, q, top_k, filters or Filters())

    def match_demand(self, demand: Demand, top_k: int | None = None, filters: Filters | None = None) -> list[Match]:
        """Rank experts for a stored demand, honouring its conflict-of-interest rules."""
        emphasis = " ".join([demand.title, *demand.keywords])
        f = filters or Filters()
        f = Filters(
            region=f.region, title=f.title,
            exclude_institutions=(*f.exclude_institutions, *demand.avoid_institutions,
                                  *((demand.enterprise,) if demand.enterprise else ())),
            exclude_experts=(*f.exclude_experts, *demand.avoid_experts),
        )
        text = demand.text
        self.check_text(text)
        loaded = self.ensure_index()
        return self._rank(loaded, self.query(text, emphasis), self._check_top_k(top_k), f)

    def _check_top_k(self, top_k: int | None) -> int:
        top_k = self.settings.default_top_k if top_k is None else top_k
        if not 1 <= top_k <= 1000:
            raise InputError(f"top_k must be between 1 and 1000, not {top_k}")
        return top_k

    def _rank(self, loaded: _Loaded, q: Query, top_k: int, filters: Filters) -> list[Match]:
        scored = loaded.index.score(q)
        total = scored.total
        order = np.argsort(-total, kind="stable")
        matches: list[Match] = []
        for i in order:
            if total[i] <= 0 or len(matches) >= top_k:
                break
            expert = loaded.experts[i]
            if not filters.allows(expert):
                continue
            expl = loaded.index.explain(int(i), q, scored)
            matches.append(Match(rank=len(matches) + 1, expert=expert, score=float(total[i]), explanation=expl))
        return matches

    def get_expert(self, expert_id: str) -> Expert:
        return self.store.get_expert(expert_id)

    @staticmethod
    def conflicts(demand: Demand, experts: Sequence[Expert]) -> list[tuple[Expert, str]]:
        """Experts a demand must not be matched with, and why (回避)."""
        out: list[tuple[Expert, str]] = []
        for e in experts:
            if demand.enterprise and same_institution(demand.enterprise, e.institution):
                out.append((e, f"works at the demanding enterprise {demand.enterprise}"))
            elif any(same_institution(i, e.institution) for i in demand.avoid_institutions):
                out.append((e, f"institution {e.institution} is on the demand's avoid list"))
            elif e.id in demand.avoid_experts or (e.name and e.name in demand.avoid_experts):
                out.append((e, "named on the demand's avoid list"))
        return out
