"""profile: word BM25 over each expert's whole record as one document (optional, off by default:
its term index costs as much memory as the units' own). Fitted from the units' word counts."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from matcher.index import TermIndex
from matcher.ranking.signal import Growth, TermPart
from matcher.ranking.state import IndexState


class Profile(TermPart):
    name = "profile"
    order = 40
    optional = True

    def finish(self, acc: Any, index: IndexState) -> TermIndex:
        n, n_units = len(index.expert_ids_), len(index.unit_expert_)
        owner = sp.csr_matrix((np.ones(n_units, dtype=np.float32), (index.unit_expert_, np.arange(n_units))),
                              shape=(n, n_units))
        words = index.words_
        p = index.params
        return TermIndex("bm25", p.bm25_k1, p.bm25_b).fit_counts(owner @ words.counts(), list(words.terms_))

    def rows_for(self, growth: Growth) -> list[list[str]]:
        rows: list[list[str]] = [[] for _ in growth.experts]
        for u, toks in zip(growth.units, growth.unit_tokens, strict=True):
            rows[u.expert - growth.first].extend(toks)
        return rows
