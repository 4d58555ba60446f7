"""Ranking: the public face of `matcher.ranking` (one file a stage; see its package docstring).

An expert is scored through the pieces of their record ("units"): each paper, patent and project,
their research fields, their bio. Each signal scores every unit for the query; the scores of an
expert's units are aggregated into the expert's score for that signal; the signals are fused into
one score; the best experts are explained. `ExpertIndex` holds the fitted parts and runs the stages;
a new signal is one subclass of `Signal` (`matcher.ranking.signal`).
"""

from __future__ import annotations

from matcher.ranking.aggregate import top_candidates
from matcher.ranking.expert_index import ExpertIndex
from matcher.ranking.filters import Filters, same_institution
from matcher.ranking.fusion import Scored, best_first
from matcher.ranking.query import Query
from matcher.ranking.scoring import PARALLEL_MIN_UNITS, Scoring
from matcher.ranking.signal import ExpertRows, Signal, TermPart
from matcher.ranking.units import Unit, declared_text, expert_units

__all__ = [
    "PARALLEL_MIN_UNITS",
    "ExpertIndex",
    "ExpertRows",
    "Filters",
    "Query",
    "Scored",
    "Scoring",
    "Signal",
    "TermPart",
    "Unit",
    "best_first",
    "declared_text",
    "expert_units",
    "same_institution",
    "top_candidates",
]
