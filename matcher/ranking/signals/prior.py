"""prior: log-scaled activity (an expert's number of documents over the most active one's), off by
default. Not evidence: it reorders experts that match, it never lets one be listed."""

from __future__ import annotations

import numpy as np

from matcher.ranking.scoring import Scoring
from matcher.ranking.signal import Signal


def prior(n_documents: np.ndarray) -> np.ndarray:
    return np.log1p(n_documents) / max(float(np.log1p(n_documents).max(initial=0.0)), 1e-9)


class Prior(Signal):
    name = "prior"
    order = 100
    evidence = False

    def score(self, ctx: Scoring, part: None) -> np.ndarray:
        index = ctx.index
        return index.cached("prior", lambda: prior(index.n_documents_ * index.expert_alive_))
