"""Honest strength: how likely an expert in a ranking is one staff would call, on one 0–1 scale.

The fused score orders one demand's experts, but it is relative: the best expert of a demand
nobody in the library can answer still scores near 1, and the reverse matching's BM25 (18.6) is on
no scale at all. Every match therefore carries a **strength**: the probability, calibrated on the
relevance labels of the project's three development benchmarks (`../shared/bench`: CDL, NSFC and
the enterprise-voice set), that the expert is one a programme officer judged relevant. It is read
from measurements of the match that mean the same on every demand (`MEASURES`, kept on every
explanation):

  share     the expert's fused score over the demand's best (1 for the first);
  gap       the share minus the next expert's share: how far the expert stands out;
  crowd     the mean share of the demand's first ten: many experts near the best means none of
            them is a clear answer (a crowded field of reviewers), few means the best is;
  dense     the sentence encoder's centred cosine of the expert's best unit (a paper, a field);
  chars     the character 1–3-gram cosine of the expert's best unit;
  coverage  the share of the weight of the demand's own content words (not the generic ones, not
            the added concepts) that the expert's record holds (a word, its synonym, or a
            two-character string in common): what the page shows as 覆盖.

p = 1 / (1 + exp(-(b + Σ w_f x_f))) over `FEATURES`: logistic regression, each benchmark weighing
the same. The levels: 强 when p ≥ `STRONG`, 弱 below `WEAK`, 中 between; the thresholds are chosen on
the same labels so that, on each benchmark, at least 70% of the 强 are relevant and at most 15% of
the 弱 (a benchmark may have no 强 at all: on CDL even the first expert is relevant one time in four,
and the calibration says so).

`benchmarks/fit_strength.py` fits these few numbers from the benchmark folders at run time and
prints them with the share of relevant matches in each level per benchmark, and what a fit on two
benchmarks gives on the third; nothing of the benchmarks is shipped but the numbers below. Refit
after a ranking change (README, "Honest strength").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MEASURES: tuple[str, ...] = ("share", "gap", "crowd", "dense", "chars", "coverage")
FEATURES: tuple[str, ...] = ("share", "gap", "crowd", "dense")  # what the probability reads
STRONG_LABEL, MEDIUM_LABEL, WEAK_LABEL = "强", "中", "弱"
LEVELS: tuple[str, ...] = (STRONG_LABEL, MEDIUM_LABEL, WEAK_LABEL)

# -- fitted by benchmarks/fit_strength.py (do not edit by hand) ---------------------------------
INTERCEPT = -4.2615
WEIGHTS: Mapping[str, float] = {"share": 3.8522, "gap": 1.7833, "crowd": -2.6325, "dense": 5.4051}
STRONG = 0.81
WEAK = 0.11
# -- end of fitted numbers -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Strength:
    """A calibrated strength: `score` in [0, 1] and its level (强, 中, 弱)."""

    score: float
    level: str

    def to_dict(self) -> dict[str, object]:
        return {"strength": round(self.score, 4), "level": self.level}


def probability(x: Mapping[str, float], *, intercept: float = INTERCEPT,
                weights: Mapping[str, float] = WEIGHTS) -> float:
    z = intercept + sum(weights[f] * float(x.get(f, 0.0)) for f in FEATURES)
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def level(p: float, *, strong: float = STRONG, weak: float = WEAK) -> str:
    return STRONG_LABEL if p >= strong else WEAK_LABEL if p < weak else MEDIUM_LABEL


def strength(x: Mapping[str, float]) -> Strength:
    p = probability(x)
    return Strength(p, level(p))


def coverage(said: Mapping[str, float], matched: Sequence[str], counts_as: Mapping[str, Sequence[str]],
             strings: Sequence[str] = ()) -> float:
    """The share of the weight of `said` (the demand's content words) that an expert matched: a
    word counts when it, or one of `counts_as[word]` (its synonyms, a phrase's words), is among
    `matched`, or when it lies inside one of the character `strings` the expert shares (or one of
    those inside it: 电池管理 for 电池管理系统)."""
    total = sum(said.values())
    if total <= 0:
        return 0.0
    found = set(matched)
    got = 0.0
    for word, w in said.items():
        if word in found or any(a in found for a in counts_as.get(word, ())) or any(
                len(s) >= 2 and (word in s or s in word) for s in strings):
            got += w
    return min(1.0, got / total)


@dataclass(frozen=True, slots=True)
class Field:
    """What a demand's ranking says about all its experts at once: the best score, the mean share
    of the first ten and the positive scores in decreasing order (for each expert's gap)."""

    top: float
    crowd: float
    ordered: np.ndarray

    @classmethod
    def of(cls, total: np.ndarray, first: int = 10) -> Field:
        ordered = np.sort(total[total > 0])[::-1].astype(np.float64)
        top = float(ordered[0]) if len(ordered) else 0.0
        crowd = float(ordered[:first].mean() / top) if top > 0 else 0.0
        return cls(top, crowd, ordered)

    def share(self, score: float) -> float:
        return score / self.top if self.top > 0 else 0.0

    def gap(self, score: float) -> float:
        """The share minus that of the next expert below this score (0 for the last)."""
        if self.top <= 0 or score <= 0:
            return 0.0
        below = self.ordered[self.ordered < score]
        return (score - float(below[0])) / self.top if len(below) else score / self.top


def best(values: np.ndarray | None, units: np.ndarray) -> float:
    """The best value of an expert's units in a per-unit array (0 without one)."""
    if values is None or not len(units):
        return 0.0
    return max(0.0, float(values[units].max()))
