"""tfidf: word TF-IDF cosine over the units (the same counts as `bm25`, another weighting), kNN vote."""

from __future__ import annotations

import numpy as np

from matcher.ranking.scoring import Scoring
from matcher.ranking.signal import Signal


class Tfidf(Signal):
    name = "tfidf"
    order = 20

    def score(self, ctx: Scoring, part: None) -> np.ndarray:
        return ctx.vote("tfidf")
