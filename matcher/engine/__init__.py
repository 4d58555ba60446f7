"""The engine: one facade (`Engine`, in `facade.py`) over parts with one job each.

  facade.py      Engine: what every face calls; says which part does each job
  live.py        LiveIndex: the index loaded, saved, followed, synced to the store, rebuilt
  embeddings.py  Embeddings: the dense encoder, the vectors attached, the query's vector
  bank.py        DemandBank: the stored demands' statistics attached to the index
  rules.py       Rules and rule_out: filters, 回避, verdicts, pauses (one function, every path)
  matching.py    a scored query turned into matches, candidates, explanations, relevance
  imports.py     Imports: files of experts and demands, merges, the demo corpus
"""

from matcher.engine.facade import Engine, demand_candidates_many
from matcher.engine.imports import DEMO_VECTORS
from matcher.engine.live import IndexInfo, Loaded, background_priority, card, settings_env
from matcher.engine.matching import UNEXPLAINED, Analysis, Candidates, Exclusion, RelevanceMatrix
from matcher.engine.rules import EXCLUSION_KINDS, FILTERED, Rules, exclusion_kind, rule_out
from matcher.understand import Understanding

__all__ = [
    "Analysis",
    "Candidates",
    "DEMO_VECTORS",
    "EXCLUSION_KINDS",
    "Engine",
    "Exclusion",
    "FILTERED",
    "IndexInfo",
    "Loaded",
    "RelevanceMatrix",
    "Rules",
    "UNEXPLAINED",
    "Understanding",
    "background_priority",
    "card",
    "demand_candidates_many",
    "exclusion_kind",
    "rule_out",
    "settings_env",
]
