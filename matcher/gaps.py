"""The expert-gap list (专家库缺口): demands whose best match is weak, grouped by the concepts they ask
for that no stored expert covers. It tells a 科协 whom to recruit (引才).

A demand's best match is **weak** when its best expert (ranked as the page ranks it, without the
verdicts' exclusions) covers less than `gap_coverage` of what the demand asks: the share of the
demand's term weight (the query weights `Engine.query` gives its own terms: keywords and title
emphasised, generic words down-weighted) found among that expert's matched terms, a synonym of a
term counting for it. The threshold was calibrated on the demo corpus (`benchmarks/gap_threshold.py`,
README "Expert-gap list"): it separates the 56 demo demands, each written for experts in the pool,
from 30 written demands on topics the pool lacks (AUC 0.980, against 0.224 for the fused score itself,
which is relative to the query: a share of its own best expert, it ranks but does not measure).

The **concepts** of a weak demand are its keywords and the domain-dictionary terms of its title. A
concept is **covered** when some expert's matched terms, for the concept alone as a query, hold all
of its words (湖羊疫病: an expert on 湖羊 breeding does not cover it). The gap list names the
uncovered concepts with the weak demands asking for them, most asked first.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from matcher.engine import Engine
from matcher.errors import InputError
from matcher.models import Demand
from matcher.text import normalize


@dataclass(frozen=True, slots=True)
class DemandCoverage:
    """How well a demand's best expert covers it (`coverage` in 0..1)."""

    demand_id: str
    coverage: float
    best_expert_id: str | None
    best_score: float
    matched: tuple[str, ...]  # the demand's own terms the best expert matched
    missing: tuple[str, ...]  # … and those it did not, heaviest first


@dataclass(frozen=True, slots=True)
class Gap:
    concept: str
    demand_ids: tuple[str, ...]

    @property
    def demands(self) -> int:
        return len(self.demand_ids)


@dataclass(frozen=True, slots=True)
class GapReport:
    threshold: float
    examined: int
    weak: tuple[DemandCoverage, ...]
    gaps: tuple[Gap, ...]

    def summary(self, limit: int = 10) -> str:
        """库中缺少：真空镀膜（7 条需求）、湖羊疫病（3）…"""
        if not self.gaps:
            return "库中没有明显缺口。"
        parts = [
            f"{g.concept}（{g.demands} 条需求）" if i == 0 else f"{g.concept}（{g.demands}）"
            for i, g in enumerate(self.gaps[:limit])
        ]
        more = "…" if len(self.gaps) > limit else ""
        return "库中缺少：" + "、".join(parts) + more


@lru_cache(maxsize=4)
def _domain_terms(path: Path) -> frozenset[str]:
    if not path.exists():
        return frozenset()
    words = (line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return frozenset(normalize(w) for w in words)


class _Cache:
    """Per engine: coverages by demand and concepts' coverage, valid for one store data_version."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.version = -1
        self.demands: dict[str, tuple[str, DemandCoverage]] = {}
        self.concepts: dict[str, bool] = {}


def _cache(engine: Engine) -> _Cache:
    cache = engine.service(_Cache, _Cache)  # one per engine, kept by the engine
    version = engine.store.data_version
    with cache.lock:
        if cache.version != version:  # experts changed: every coverage may have
            cache.version, cache.demands, cache.concepts = version, {}, {}
    return cache


def _own_weights(engine: Engine, demand: Demand) -> dict[str, float]:
    # its words only: the match below encodes the demand once for the dense signal
    q = engine.query(demand.text, " ".join([demand.title, *demand.keywords]), encode=False)
    # generic words are never cited as matched (`Query.quiet`), so they are not asked for either
    return {t: q.weights[t] for t in dict.fromkeys(q.tokens) if t in q.weights and t not in q.quiet}


def _found(engine: Engine, term: str, matched: set[str]) -> bool:
    return term in matched or any(eq in matched for eq in engine.synonyms.equivalents(term))


def demand_coverage(engine: Engine, demand: Demand) -> DemandCoverage:
    """The share of the demand's term weight that its best expert matched (see the module docstring)."""
    cache = _cache(engine)
    key = hashlib.sha1(demand.text.encode("utf-8")).hexdigest()
    hit = cache.demands.get(demand.id)
    if hit is not None and hit[0] == key:
        return hit[1]
    own = _own_weights(engine, demand)
    try:
        best = engine.match_demand(demand, top_k=1, feedback=False)
    except InputError:
        best = []
    total = sum(own.values())
    if not best or total <= 0:
        cov = DemandCoverage(demand.id, 0.0, None, 0.0, (), tuple(sorted(own, key=lambda t: -own[t])))
    else:
        terms = {normalize(t) for t in best[0].explanation.terms}  # shown as written: SiC
        matched = [t for t in own if _found(engine, t, terms)]
        missing = sorted((t for t in own if t not in matched), key=lambda t: -own[t])
        cov = DemandCoverage(
            demand.id,
            sum(own[t] for t in matched) / total,
            best[0].expert.id,
            float(best[0].score),
            tuple(matched),
            tuple(missing),
        )
    cache.demands[demand.id] = (key, cov)
    return cov


def concepts_of(engine: Engine, demand: Demand) -> list[str]:
    """What a demand asks for: its keywords, then the domain-dictionary terms of its title."""
    domain = _domain_terms(engine.settings.corpora_dir / "domain_dict.txt")
    out: list[str] = []
    for k in demand.keywords:
        c = normalize(k).replace(" ", "")
        if len(c) >= 2 and c not in out:
            out.append(c)
    for t in engine.tokenizer(demand.title):
        if len(t) >= 2 and t in domain and t not in engine.generic_terms and t not in out:
            out.append(t)
    return out


def concept_covered(engine: Engine, concept: str) -> bool:
    """True when some expert's matched terms, for the concept alone, hold all of its words."""
    cache = _cache(engine)
    if concept in cache.concepts:
        return cache.concepts[concept]
    words = [t for t in dict.fromkeys(engine.tokenizer(concept)) if t not in engine.generic_terms]
    if not words:
        covered = True  # nothing specific to look for
    else:
        covered = any(
            all(_found(engine, w, {normalize(t) for t in m.explanation.terms}) for w in words)
            for m in engine.match(concept, top_k=5)
        )
    cache.concepts[concept] = covered
    return covered


def gap_list(engine: Engine, demands: Iterable[Demand], threshold: float | None = None) -> GapReport:
    """The weak demands among `demands` and the uncovered concepts they ask for, most asked first."""
    limit = engine.settings.gap_coverage if threshold is None else threshold
    examined = 0
    weak: list[DemandCoverage] = []
    asked: dict[str, list[str]] = defaultdict(list)
    for demand in demands:
        if not demand.text.strip():
            continue
        examined += 1
        cov = demand_coverage(engine, demand)
        if cov.coverage >= limit:
            continue
        weak.append(cov)
        for concept in concepts_of(engine, demand):
            if not concept_covered(engine, concept):
                asked[concept].append(demand.id)
    gaps = sorted((Gap(c, tuple(ids)) for c, ids in asked.items()), key=lambda g: (-g.demands, g.concept))
    return GapReport(limit, examined, tuple(weak), tuple(gaps))


def coverages(engine: Engine, demands: Sequence[Demand]) -> list[DemandCoverage]:
    return [demand_coverage(engine, d) for d in demands if d.text.strip()]
