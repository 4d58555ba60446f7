"""A block of queries scored together (the nightly batch): the semantic signals as matrix products.

One query's dense signal reads every unit's vector: at 10,000 experts about 100,000 rows of 384
numbers, 150 MB of float32 streamed through the cache for one matrix-vector product. A block of
`WIDTH` queries reads them once (units x dims @ dims x queries, `block_kernel`), and likewise the
LSA embeddings; the LSA query vectors are projected from their own terms' basis columns. Each
query's values are put where its signals would compute them (the `Scoring` memo: `lsa_query`,
`dense_unit_scores`, `lsa_unit_scores`), and the rest of the query runs as alone: the word and
character postings (each query's own terms, so bit for bit), the votes, fusion and the rules.

Every cosine is summed in one fixed order, so a demand scores the same bits in any block, whatever
its companions (a batch resumed with other blocks, or partitioned otherwise, stores what an
uninterrupted one stores). The one-query path's BLAS matrix-vector product sums in another order:
a cosine may differ from it in its last float32 bit, and two experts whose scores are equal to that
rounding may trade places; nothing else changes (tests/test_block.py, demo corpus and a
10,000-expert pool).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from matcher.ranking.query import Query
from matcher.ranking.signals.dense import dense_query
from matcher.ranking.state import IndexState

#: Queries per product: a unit's vector is read once for this many (the queries' vectors, 32 x 384
#: float32, stay in the cache). Any number gives the same scores (`block_kernel`).
WIDTH = 32


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
        vectors = lsa_queries(index, queries)
        for seed, v in zip(out, vectors, strict=True):
            seed["lsa_query"] = v
        _fill(out, "lsa_unit_scores", lsa.embeddings_, vectors)
    return out


def lsa_queries(index: IndexState, queries: Sequence[Query]) -> list[np.ndarray | None]:
    """`signals.lsa.lsa_query` of each query, from the basis columns of its terms alone (alone, a
    query multiplies the whole basis, components x vocabulary, by a vector of mostly zeros: 26 ms
    of a demand at 10,000 experts on a busy machine). Summed in term order: the same bits whatever
    the block."""
    lsa = index.part("lsa")
    fitted = lsa.components_.shape[1]
    out: list[np.ndarray | None] = []
    for q in queries:
        ids, ws = index.words_tfidf_.query_vector(q.weights)
        keep = ids < fitted
        if not keep.any():
            out.append(None)
            continue
        order = np.argsort(ids[keep], kind="stable")
        ids, ws = ids[keep][order], ws[keep][order]
        qe = np.zeros(lsa.components_.shape[0], dtype=np.float32)
        for j, w in zip(ids, ws, strict=True):
            qe += np.asarray(lsa.components_[:, j], dtype=np.float32) * np.float32(w)
        norm = float(np.linalg.norm(qe))
        out.append((qe / norm).astype(np.float32) if norm > 0 else None)
    return out


def _fill(out: list[dict[str, np.ndarray]], name: str, rows: np.ndarray,
          vectors: Sequence[np.ndarray | None]) -> None:
    from matcher.ranking.block_kernel import times  # numba: loaded by the batch only

    have = [i for i, v in enumerate(vectors) if v is not None]
    wide = _float32(rows)
    for start in range(0, len(have), WIDTH):
        part = have[start : start + WIDTH]
        q = np.stack([np.asarray(vectors[i], dtype=np.float32) for i in part], axis=1)
        cos = np.concatenate([times(wide[r : r + CHUNK], q) for r in range(0, len(wide), CHUNK)]) \
            if len(wide) > CHUNK else times(wide, q)
        for col, i in enumerate(part):
            out[i][name] = np.ascontiguousarray(cos[:, col])


CHUNK = 65_536


def _float32(rows: np.ndarray) -> np.ndarray:
    """float16 vectors widened as the one-query path widens them (its cached copy, up to
    `dense.WIDE_UNITS` rows; beyond, a copy for the block)."""
    from matcher import dense

    if rows.dtype == np.float32:
        return rows
    return dense._wide(rows) if len(rows) <= dense.WIDE_UNITS else rows.astype(np.float32)
