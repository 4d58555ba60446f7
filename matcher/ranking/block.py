"""A block of queries scored together (the nightly batch): the semantic signals as matrix products.

One query's dense signal reads every unit's vector: at 10,000 experts about 100,000 rows of 384
numbers, 150 MB of float32 streamed through the cache for one matrix-vector product. A block of B
queries reads them once, in one matrix-matrix product (units x dims @ dims x B), and likewise the
LSA embeddings. Each query's column is put where the signal would compute it (its `Scoring` memo:
`dense_unit_scores`, `lsa_unit_scores`), and the rest of the query runs as alone: the word and
character postings (each query's own terms, summed in its own order, so bit for bit), the votes,
fusion and the rules.

The matrix product and the matrix-vector product block their sums differently, so a cosine may
differ in its last float32 bit from the one-at-a-time path's (BLAS: about 1 product in 10 is
bit-equal, the largest difference 6e-7 of the value): rankings are the same (tests/test_block.py,
demo corpus and a 10,000-expert pool), scores equal to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from matcher.ranking.query import Query
from matcher.ranking.signals.dense import dense_query
from matcher.ranking.signals.lsa import lsa_query
from matcher.ranking.state import IndexState

#: Largest block product, in float32 numbers (units x queries): 64 MB.
MAX_CELLS = 16_000_000


def semantic_seeds(index: IndexState, queries: Sequence[Query]) -> list[dict[str, np.ndarray]]:
    """Per query, the dense and LSA unit cosines its signals would compute, from one product per
    block; empty where a query has no such vector or the index scores semantics in two stages."""
    out: list[dict[str, np.ndarray]] = [{} for _ in queries]
    p = index.params
    n = len(index.unit_expert_)
    if not queries or not n or p.topk_pruning or (p.semantic_exhaustive and n > p.semantic_exhaustive):
        return out
    dense = index.dense_
    if dense is not None:
        _fill(out, "dense_unit_scores", dense.units, [dense_query(index, q) for q in queries])
    lsa = index.part("lsa")
    if lsa is not None:
        _fill(out, "lsa_unit_scores", lsa.embeddings_, [lsa_query(index, q) for q in queries])
    return out


def _fill(out: list[dict[str, np.ndarray]], name: str, rows: np.ndarray,
          vectors: Sequence[np.ndarray | None]) -> None:
    have = [i for i, v in enumerate(vectors) if v is not None]
    if not have:
        return
    step = max(1, MAX_CELLS // max(len(rows), 1))
    for start in range(0, len(have), step):
        part = have[start : start + step]
        cos = _product(rows, np.stack([np.asarray(vectors[i], dtype=np.float32) for i in part], axis=1))
        for col, i in enumerate(part):
            out[i][name] = np.ascontiguousarray(cos[:, col])


def _product(rows: np.ndarray, q: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """`rows @ q` in float32; float16 rows widened as the one-query path widens them (a cached
    copy up to `dense.WIDE_UNITS` rows, chunk by chunk beyond)."""
    from matcher import dense

    if rows.dtype == np.float32:
        return rows @ q
    if len(rows) <= dense.WIDE_UNITS:
        return dense._wide(rows) @ q
    out = np.empty((len(rows), q.shape[1]), dtype=np.float32)
    for start in range(0, len(rows), chunk):
        out[start : start + chunk] = rows[start : start + chunk].astype(np.float32) @ q
    return out
