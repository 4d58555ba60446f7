"""dense: sentence-embedding cosine over the units (`matcher.dense`), kNN vote. Nothing is fitted:
the owner attaches the vectors from its cache (`ExpertIndex.with_dense`), and the query carries its
own vector (encoded on another thread while the words are scored)."""

from __future__ import annotations

import numpy as np

from matcher.ranking.query import Query
from matcher.ranking.scoring import Scoring
from matcher.ranking.signal import Signal
from matcher.ranking.state import IndexState


def dense_query(index: IndexState, query: Query) -> np.ndarray | None:
    """The query's dense vector as the units' are stored (centred; moved by the demand bank's
    shift), or None: no vectors, no dense weight, or the query encoded by another model."""
    dense = index.dense_
    p = index.params
    wanted = p.weight("dense") or p.weight("dense_profile") or p.build_all
    if dense is None or not wanted or query.model != dense.model:
        return None
    vector = query.dense_vector()
    if vector is None:
        return None
    q = dense.centred(vector)
    if index.dense_shift_ is not None:
        # Demands sit in their own corner of the space: moving the query by the mean of the
        # demands a 科协 receives keeps the units near every demand from winning them all.
        q = q - index.dense_shift_
    return q


def query_vector(ctx: Scoring) -> np.ndarray | None:
    """`dense_query` once per query (both dense signals read it)."""
    return ctx.memo("dense_query", lambda: dense_query(ctx.index, ctx.query))


class Dense(Signal):
    name = "dense"
    order = 80

    def score(self, ctx: Scoring, part: None) -> np.ndarray:
        q = query_vector(ctx)
        vectors = ctx.index.dense_
        if q is None or vectors is None:
            return ctx.zeros()
        cos = ctx.memo("dense_unit_scores", lambda: ctx.semantic_scores(
            len(vectors.units), lambda rows: vectors.cosines(q, rows)))
        return ctx.vote_units(np.clip(cos, 0.0, None))
