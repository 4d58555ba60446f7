"""dense_profile: sentence-embedding cosine with one vector per expert profile (off by default;
the vectors are attached by the owner with `with_dense(..., profiles=True)`)."""

from __future__ import annotations

import numpy as np

from matcher.ranking.scoring import Scoring
from matcher.ranking.signal import Signal
from matcher.ranking.signals.dense import query_vector


class DenseProfile(Signal):
    name = "dense_profile"
    order = 90

    def score(self, ctx: Scoring, part: None) -> np.ndarray:
        q = query_vector(ctx)
        vectors = ctx.index.dense_
        if q is None or vectors is None or vectors.profiles is None:
            return ctx.zeros()
        return np.clip(vectors.profiles.astype(np.float32) @ q, 0.0, None)
