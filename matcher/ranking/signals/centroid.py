"""centroid: the word TF-IDF cosine between the query and each expert's centroid (the sum of their
L2-normalised document vectors): the whole-profile view, the README's reference ranker, used for
the diversified places (`fusion.diversify`). Its part is each expert's centroid norm: with it the
cosine is the sum of the query's document cosines divided by the norm, so no centroid is stored."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from matcher.models import Expert
from matcher.ranking.scoring import Scoring
from matcher.ranking.signal import Compaction, ExpertRows, Growth
from matcher.ranking.state import IndexState
from matcher.tokens import TokenSource


def centroid_norms(weights: sp.csc_matrix, n_experts: int, owner_of_row: np.ndarray) -> np.ndarray:
    """||sum of an expert's L2-normalised TF-IDF document vectors||, per expert 0..n_experts-1
    (rows of `weights` belong to `owner_of_row[row]`)."""
    owner = sp.csr_matrix((np.ones(len(owner_of_row), dtype=np.float32),
                           (np.arange(len(owner_of_row)), owner_of_row)), shape=(weights.shape[0], n_experts))
    summed = sp.csr_matrix(weights.T) @ owner  # terms x experts; weights.T of a CSC is a CSR view
    norms = np.sqrt(np.asarray(summed.multiply(summed).sum(axis=0)).ravel()).astype(np.float32)
    norms[norms == 0] = 1.0
    return norms


class Centroid(ExpertRows):
    name = "centroid"
    order = 30

    def start(self, index: IndexState) -> None:
        return None

    def collect(self, acc: Any, experts: Sequence[Expert], tokens: TokenSource) -> None:
        pass

    def finish(self, acc: Any, index: IndexState) -> np.ndarray:
        return centroid_norms(index.words_tfidf_.weighted_csc(), len(index.expert_ids_), index.unit_expert_)

    def updated(self, part: np.ndarray, growth: Growth) -> np.ndarray:
        # Experts appended now get their norm under today's statistics; the others keep theirs
        # until the next compaction (as the LSA basis does).
        added = centroid_norms(growth.added_tfidf.tocsc(), len(growth.experts), growth.local_unit_expert)
        return np.concatenate([part, added])

    def compacted(self, part: np.ndarray, compaction: Compaction) -> np.ndarray:
        return self.finish(None, compaction.after)

    def score(self, ctx: Scoring, part: np.ndarray) -> np.ndarray:
        return ctx.centroid(part)
