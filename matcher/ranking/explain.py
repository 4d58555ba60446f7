"""Explanation: why an expert matched, the query terms found in their units and the best units.

The term weights of all the experts' matching units come from one lookup (a binary search per
query term in its postings): explaining was most of the cost of a match and of the nightly batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from matcher.models import Evidence, Explanation
from matcher.ranking.fusion import Scored
from matcher.ranking.query import Query

if TYPE_CHECKING:
    from matcher.ranking.expert_index import ExpertIndex


def explain_many(
    index: ExpertIndex, experts: Sequence[int], query: Query, scored: Scored, *, max_evidence: int = 3,
) -> list[Explanation]:
    """Why each of `experts` matched: the query terms found in their units, best units first.

    The term weights of all the experts' matching units come from one lookup (a binary search
    per query term in its postings): explaining was most of the cost of a match and of the
    nightly batch."""
    index._require_fitted()
    per_expert = []
    for expert in experts:
        units = index._units_of(int(expert))
        units = units[scored.unit_scores[units] > 0]
        per_expert.append(units[np.argsort(-scored.unit_scores[units], kind="stable")])
    vocab = index.units_.vocabulary_
    known = [t for t in query.weights if t in vocab]
    rows = np.concatenate(per_expert) if per_expert else np.zeros(0, dtype=np.int64)
    weights = index.units_.entry_weights(rows, np.asarray([vocab[t] for t in known], dtype=np.int64))
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
                    Evidence(index.unit_field_[u], index.unit_text_[u], terms, float(scored.unit_scores[u]))
                )
        signals = {name: float(arr[expert]) for name, arr in scored.signals.items() if name != "lexical"}
        out.append(Explanation(terms=tuple(t for t, _ in term_weight.most_common()), evidence=tuple(evidence),
                               signals=signals))
    return out
