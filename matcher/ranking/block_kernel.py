"""The block product of `matcher.ranking.block`, compiled: each cosine summed in one fixed order.

BLAS computes a column of a matrix product differently depending on where it sits among the
others and on how many there are (OpenBLAS: a query's cosines changed in their last bit with its
place in a block of 32), so a demand would score differently when a resumed batch forms other
blocks. Here every (unit, query) cosine is a float32 sum over the dimensions in order: the same bits
whatever the block, the order of its queries or their number. The loop over the block's queries is
the inner one, so the unit's row is read once for the block (what the block is for) and the
compiler vectorises across queries without reordering any one sum. numba is loaded only here (the
batch), as for the pruned path.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _times(rows: np.ndarray, q: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    n, d = rows.shape
    width = q.shape[1]
    acc = np.empty(width, dtype=np.float32)
    for i in range(n):
        acc[:] = 0.0
        for k in range(d):
            u = rows[i, k]
            for b in range(width):
                acc[b] += u * q[k, b]
        out[i, :] = acc


def times(rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """`rows @ q` (float32: units x dims, dims x queries), each entry summed over dims in order."""
    out = np.empty((rows.shape[0], q.shape[1]), dtype=np.float32)
    _times(np.ascontiguousarray(rows, dtype=np.float32), np.ascontiguousarray(q, dtype=np.float32), out)
    return out
