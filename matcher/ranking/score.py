"""One query through the stages: every signal scored (`scoring`, `pruned`), fused (`fusion`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from matcher.ranking import signal
from matcher.ranking import signals as _builtin  # noqa: F401 - registers the built-in signals
from matcher.ranking.fusion import Scored, fuse
from matcher.ranking.query import Query
from matcher.ranking.scoring import Exhaustive, Scoring, UnitScores
from matcher.ranking.state import IndexState


@dataclass(frozen=True, slots=True)
class SignalScores:
    """Every signal's value per expert position for one query, before fusion."""

    signals: Mapping[str, np.ndarray]
    units: UnitScores
    understood: bool  # the query shares a word or a string of characters with the index


def scoring(index: IndexState, query: Query) -> Scoring:
    """The scoring path for `index`: top-k retrieval when asked for and exact for its settings."""
    if index.params.topk_pruning:
        from matcher.ranking import pruned  # numba, compiled loops: loaded only when pruning is on

        if pruned.applies(index):
            return pruned.Pruned(index, query)
    return Exhaustive(index, query)


def signal_scores(index: IndexState, query: Query, seed: Mapping[str, object] | None = None) -> SignalScores:
    """Every signal for `query`; `seed`: values the scoring would compute, computed already (a
    block's semantic unit scores, `matcher.ranking.block`)."""
    ctx = scoring(index, query)
    if seed:
        for name, value in seed.items():
            ctx.memo(name, lambda v=value: v)
    ctx.begin()
    sig = {s.name: s.score(ctx, part) for s, part in signal.fitted(index)}
    return SignalScores(sig, ctx.finish(sig), ctx.understood())


def fused(index: IndexState, scores: SignalScores, weights: Mapping[str, float] | None = None) -> np.ndarray:
    p = index.params
    return fuse(scores.signals, p.weights if weights is None else weights, index.expert_alive_,
                p.diversify_slots, p.list_floor, index.popularity_, p.popularity_weight,
                understood=scores.understood)


def score(index: IndexState, query: Query, weights: Mapping[str, float] | None = None,
          seed: Mapping[str, object] | None = None) -> Scored:
    """The fused score of every expert for `query` (see `matcher.ranking.fusion`)."""
    s = signal_scores(index, query, seed)
    u = s.units
    return Scored(total=fused(index, s, weights), signals=s.signals, unit_scores=u.words, char_scores=u.chars,
                  dense_scores=u.dense, complete=u.complete, understood=s.understood)
