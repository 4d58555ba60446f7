"""bm25: word BM25 over the units, the query's `knn_k` best documents voting for their experts.
Reads the units' word index, which the index fits for every word signal."""

from __future__ import annotations

import numpy as np

from matcher.ranking.scoring import Scoring
from matcher.ranking.signal import Signal


class Bm25(Signal):
    name = "bm25"
    order = 10

    def score(self, ctx: Scoring, part: None) -> np.ndarray:
        return ctx.vote("words")
