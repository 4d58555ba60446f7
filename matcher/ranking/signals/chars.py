"""chars: character 1-3-gram TF-IDF cosine over the units, kNN vote: robust to segmentation slips
and to terms the dictionary lacks (电池管理 in 电池管理系统). Reads the units' character index, which
the index fits (the explanations and the query gate read it too)."""

from __future__ import annotations

import numpy as np

from matcher.ranking.scoring import Scoring
from matcher.ranking.signal import Signal


class Chars(Signal):
    name = "chars"
    order = 60

    def score(self, ctx: Scoring, part: None) -> np.ndarray:
        return ctx.vote("chars")
