"""Row views of term indexes: some of an index's documents under the whole corpus's statistics.

A shard of the expert index (`matcher.ranking.shard_part`) keeps only its own units' rows, but
must score them as the whole index does: with the corpus's df, idf, N and average length. A view
shares those (and the vocabulary) with the index it comes from and keeps the rows' counts, their
live flags, lengths and row factors (BM25's length normalisation, TF-IDF's row norm). A sparse
matrix-vector product sums each row over the query's terms in column order whatever the other
rows, so every row of a view scores exactly, bit for bit, what it scores in the whole index.
A view scores (`score`, `score_with`) and weighs entries (`entry_weights`); it is not updated
or saved.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from matcher.index.terms import TermIndex


def rows_view(siblings: Sequence[TermIndex], rows: np.ndarray) -> list[TermIndex]:
    """Views of `siblings` (indexes sharing one set of counts, e.g. word BM25 and TF-IDF) keeping
    `rows` (ascending positions), in that order; the views share their sliced counts, so
    `views[0].score_with(views[1:], ...)` reads the postings once."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) > 1 and (np.diff(rows) <= 0).any():
        raise ValueError("rows_view needs ascending row positions")
    first = siblings[0]
    first._require_fitted()
    nb = first._base.shape[0]
    base = first._base[rows[rows < nb], :]
    base = sp.csc_matrix(base, dtype=np.float32)
    base.sort_indices()
    delta = sp.csr_matrix(first._delta[rows[rows >= nb] - nb, :], dtype=np.float32)
    delta_c = delta.tocsc()
    delta_c.sort_indices()
    views = []
    for index in siblings:
        if index._base is not first._base or index._delta is not first._delta:
            raise ValueError("rows_view needs siblings sharing one index's counts")
        view = copy.copy(index)  # the statistics and vocabulary are shared, not copied
        view._base, view._delta, view._delta_c = base, delta, delta_c
        view.alive_ = np.asarray(index.alive_)[rows]
        view.doc_len_ = np.asarray(index.doc_len_)[rows]
        view._row_factor = np.asarray(index._row_factor)[rows]
        if hasattr(index, "_norm"):
            view._norm = np.asarray(index._norm)[rows]
            view._sums = np.asarray(index._sums)[:, rows]
        views.append(view)
    return views
