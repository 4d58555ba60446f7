"""The demand bank: the demands a 科协 has received, as the reference against which a match is judged.

A ranker that offers the same few experts for every problem is the first thing staff notice: an
academician with papers in many fields, or a rich local engineer whose documents read like every
factory's problem. Two statistics of the stored demands (the most recent `bank_size`) correct it,
both forms of query-bank normalisation (Bogolin et al., CVPR 2022):

  dense shift   the mean of the demands' dense vectors, subtracted (times a weight) from a
                demand's vector: what all demands share is not evidence for any one expert;
  popularity    each expert's average share of the best fused score over the bank: inverse
                document frequency for experts (`fusion.discount_popular`).

With no stored demands there is no bank and nothing is discounted.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import numpy as np

from matcher.ranking.query import Query
from matcher.ranking.score import fused, signal_scores
from matcher.ranking.state import IndexState


def popularity(index: IndexState, queries: Sequence[Query], weights: Mapping[str, float],
               stop: threading.Event | None = None) -> dict[str, float] | None:
    """{expert id: mean over `queries` of the expert's fused score as a share of the query's best},
    the fusion taken without any popularity discount. None if `stop` was set before the end."""
    n = len(index.expert_ids_)
    acc = np.zeros(n, dtype=np.float64)
    plain = {**weights, "popularity": 0.0}
    for q in queries:
        if stop is not None and stop.is_set():
            return None
        total = fused(index, signal_scores(index, q), plain)
        top = float(total.max(initial=0.0))
        if top > 0:
            acc += total / top
    if queries:
        acc /= len(queries)
    return {index.expert_ids_[i]: float(acc[i]) for i in np.flatnonzero(acc > 0)}
