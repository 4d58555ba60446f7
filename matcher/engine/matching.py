"""From a scored query to what the faces receive, under the rules (`matcher.engine.rules`): a page
of explained matches, a demand's deeper ranking for the nightly batch, the experts' explanations
for a demand, and the relevance of several texts to the same experts (teams).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from matcher.engine.live import Loaded
from matcher.engine.rules import FILTERED, Rules, rule_out
from matcher.errors import InputError
from matcher.models import Expert, Explanation, Match
from matcher.rank import Query, Scored, best_first
from matcher.understand import Understanding

UNEXPLAINED = Explanation(terms=(), evidence=())


@dataclass(frozen=True, slots=True)
class Analysis:
    """A demand as the engine understood it, and the experts ranked for it."""

    understanding: Understanding
    matches: tuple[Match, ...]


@dataclass(frozen=True, slots=True)
class Exclusion:
    """An expert the ranker scored for a demand but a rule removed, and why."""

    expert: Expert
    reason: str
    score: float


@dataclass(frozen=True, slots=True)
class Candidates:
    """A demand's ranking for the nightly batch: allowed experts best first, and the excluded ones."""

    demand_id: str
    ranked: tuple[Match, ...]
    excluded: tuple[Exclusion, ...]


@dataclass(frozen=True, eq=False)
class RelevanceMatrix:
    """Fused scores of several texts for the same experts: `scores[t, c]` is how well expert
    `experts[c]` answers `texts[t]`, on the scale `match` ranks by. Columns are in index order, so
    a stable sort of a row breaks ties as `match` does. `excluded`: experts a rule (回避, a verdict,
    a pause; not a filter) removed."""

    texts: tuple[str, ...]
    experts: tuple[Expert, ...]
    scores: np.ndarray
    _explain: Callable[[int, Sequence[int]], list[Explanation]] = field(repr=False)
    excluded: tuple[Exclusion, ...] = ()

    def explain(self, row: int, columns: Sequence[int]) -> list[Explanation]:
        """Why each expert of `columns` matches text `row`: its terms and best evidence."""
        if not 0 <= row < len(self.texts):
            raise InputError(f"row {row} is out of range (0..{len(self.texts) - 1})")
        return self._explain(row, columns)


def page(loaded: Loaded, q: Query, top_k: int, rules: Rules) -> list[Match]:
    """The first `top_k` experts the rules allow, best first, each explained."""
    scored = loaded.index.score(q)
    total = scored.total
    chosen: list[int] = []
    for i in best_first(total):
        if len(chosen) >= top_k:
            break
        expert = loaded.experts[i]
        if expert is not None and not rule_out(expert, rules):
            chosen.append(i)
    explanations = loaded.index.explain_many(chosen, q, scored)
    # No padding: an expert whose match cites nothing (it shared only generic words, which an
    # explanation never cites) is left out rather than listed without a reason.
    kept = [(i, x) for i, x in zip(chosen, explanations, strict=True) if x.terms or x.evidence]
    return [Match(rank=r, expert=loaded.experts[i], score=float(total[i]), explanation=expl)  # type: ignore[arg-type]
            for r, (i, expl) in enumerate(kept, start=1)]


def candidates(loaded: Loaded, demand_id: str, q: Query, limit: int, explain: int,
               rules: Rules, scored: Scored | None = None) -> Candidates:
    """Up to `limit` allowed experts, best first; the first `explain` carry their explanation, the
    others `UNEXPLAINED`. `excluded` lists the experts the rules removed, each with its reason.
    `scored`: `q` scored already (a block of the nightly batch)."""
    scored = loaded.index.score(q) if scored is None else scored
    total = scored.total
    excluded: list[Exclusion] = []
    chosen: list[int] = []
    for i in best_first(total):
        if len(chosen) >= limit:
            break
        expert = loaded.experts[i]
        if expert is None:
            continue
        reason = rule_out(expert, rules)
        if reason:
            excluded.append(Exclusion(expert, reason, float(total[i])))
            continue
        chosen.append(i)
    explained = loaded.index.explain_many(chosen[:explain], q, scored) if explain else []
    ranked = [Match(rank=r, expert=loaded.experts[i], score=float(total[i]),  # type: ignore[arg-type]
                    explanation=explained[r - 1] if r <= len(explained) else UNEXPLAINED)
              for r, i in enumerate(chosen, start=1)]
    return Candidates(demand_id, tuple(ranked), tuple(excluded))


def explain_experts(loaded: Loaded, q: Query, expert_ids: Iterable[str]) -> dict[str, Explanation]:
    """Why each of these experts matches `q`; experts no longer indexed are left out."""
    scored = loaded.index.score(q)
    wanted = set(expert_ids)
    at = [i for i, e in enumerate(loaded.experts) if e is not None and e.id in wanted]
    return {loaded.experts[i].id: x  # type: ignore[union-attr]
            for i, x in zip(at, loaded.index.explain_many(at, q, scored), strict=True)}


def relevance(loaded: Loaded, texts: Sequence[str], queries: Sequence[Query], rules: Rules,
              depth: int) -> RelevanceMatrix:
    """Each text ranked exactly as `page` ranks it; the columns are the union of each text's first
    `depth` experts the rules allow, in index order, and every text gets a score for every column."""
    scored: list[Scored] = [loaded.index.score(q) for q in queries]
    verdict: dict[int, str] = {}
    excluded: dict[int, Exclusion] = {}
    picked: set[int] = set()
    for s in scored:
        taken = 0
        for i in best_first(s.total):
            if taken >= depth:
                break
            expert = loaded.experts[i]
            if expert is None:
                continue
            if i not in verdict:
                verdict[i] = rule_out(expert, rules)
            if verdict[i]:
                if i not in excluded:
                    excluded[i] = Exclusion(expert, verdict[i], float(s.total[i]))
                continue
            picked.add(i)
            taken += 1
    positions = np.asarray(sorted(picked), dtype=np.int64)
    scores = np.vstack([s.total[positions] for s in scored]).astype(np.float64) if len(positions) \
        else np.zeros((len(texts), 0))
    index = loaded.index

    def explain(row: int, columns: Sequence[int]) -> list[Explanation]:
        return index.explain_many([int(positions[c]) for c in columns], queries[row], scored[row])

    return RelevanceMatrix(
        texts=tuple(texts),
        experts=tuple(loaded.experts[i] for i in positions),  # type: ignore[misc]
        scores=scores,
        excluded=tuple(x for x in excluded.values() if x.reason != FILTERED),  # 回避, verdicts, pauses
        _explain=explain,
    )
