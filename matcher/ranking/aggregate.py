"""Expert aggregation: from the scores of units (documents) to the score of each expert.

A signal scores every unit (see `matcher.ranking.signals`); an expert's score for the signal is
made here from the scores of their units:

  knn_vote   the query's `k` nearest documents each add their similarity to every expert who
             holds them (Balog's document model restricted to the neighbourhood);
  centroid   the cosine with the expert's TF-IDF centroid, from the document cosines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Layout:
    unit_alive: np.ndarray  # float32 0/1 per unit (its expert is live)
    doc: np.ndarray  # document id per unit (units of equal content share one)
    by_doc: np.ndarray  # units ordered by document …
    doc_ptr: np.ndarray  # … document d's units are by_doc[doc_ptr[d]:doc_ptr[d + 1]]
    by_expert: np.ndarray  # units ordered by expert …
    expert_ptr: np.ndarray  # … expert e's units are by_expert[expert_ptr[e]:expert_ptr[e + 1]]
    all_alive: bool  # every unit's expert is live (no masking needed)

    @classmethod
    def of(cls, unit_expert: np.ndarray, unit_hash: np.ndarray, expert_alive: np.ndarray) -> Layout:
        _, doc = np.unique(unit_hash, return_inverse=True)
        doc = doc.astype(np.int64).ravel()
        by_doc = np.argsort(doc, kind="stable")
        doc_ptr = np.concatenate([[0], np.cumsum(np.bincount(doc, minlength=int(doc.max(initial=-1)) + 1))])
        by_expert = np.argsort(unit_expert, kind="stable")
        expert_ptr = np.concatenate([[0], np.cumsum(np.bincount(unit_expert, minlength=len(expert_alive)))])
        unit_alive = expert_alive[unit_expert].astype(np.float32)
        return cls(unit_alive, doc, by_doc, doc_ptr, by_expert, expert_ptr, bool(unit_alive.all()))


def top_candidates(scores: np.ndarray, m: int) -> np.ndarray:
    """Positions of positive scores that include the `m` best (and everything tied with them);
    possibly more. A threshold from a strided sample replaces a partial sort of the whole array,
    which took 7 ms at a million units; a threshold that finds too few falls back to it."""
    n = len(scores)
    if n <= 16 * m:
        return np.flatnonzero(scores > 0)
    sample = scores[:: max(1, n // (64 * m))]
    want = min(len(sample), max(1, int(3 * m * len(sample) / n)))
    threshold = float(np.partition(sample, len(sample) - want)[len(sample) - want])
    if threshold > 0:
        cand = np.flatnonzero(scores >= threshold)
        if len(cand) >= m:
            return cand
    positive = np.flatnonzero(scores > 0)
    if len(positive) <= m:
        return positive
    kth = np.partition(scores[positive], len(positive) - m)[len(positive) - m]
    return positive[scores[positive] >= kth]


def top_units(score_arrays: Sequence[np.ndarray | None], depth: int) -> np.ndarray:
    """The union of the `depth` best-scoring units of each array (positive scores only)."""
    picked = []
    for arr in score_arrays:
        if arr is None:
            continue
        picked.append(top_candidates(arr, depth))
    return np.unique(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def knn_vote(unit_scores: np.ndarray, lay: Layout, unit_expert: np.ndarray, n_experts: int, k: int) -> np.ndarray:
    """The query's `k` best documents each add their similarity to every expert who holds them.

    Summing over the neighbourhood (not taking an expert's single best document) counts how
    much of the query's topic an expert covers.

    Units with the same content (one paper co-written by several experts, a project several
    experts reviewed) are one document and score alike. The best units are found with a
    partial sort of a few times `k` (not a pass per document), so a vote costs about the
    same at a million units as the score array it reads."""
    scores = unit_scores if lay.all_alive else unit_scores * lay.unit_alive
    m = min(len(scores), 4 * k)
    while True:
        top = top_candidates(scores, m)
        # Best first; equal scores by document id, so ties do not depend on unit positions
        # (an updated index orders its units differently from a fresh fit).
        top = top[np.lexsort((lay.doc[top], -scores[top]))]
        docs, first = np.unique(lay.doc[top], return_index=True)
        if len(docs) >= k or m >= len(scores) or len(top) < m:
            break
        # fewer than k distinct documents among the m best units (many copies): look deeper
        m = min(len(scores), m * 4)
    chosen = lay.doc[top[np.sort(first)[:k]]]
    # every unit of each chosen document, in one gather (a slice per document was a Python loop)
    starts, ends = lay.doc_ptr[chosen], lay.doc_ptr[chosen + 1]
    sizes = ends - starts
    offsets = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    voters = lay.by_doc[np.repeat(starts, sizes) + offsets]
    voters = voters[scores[voters] > 0]
    return np.bincount(unit_expert[voters], weights=scores[voters], minlength=n_experts).astype(np.float32)


def expert_vote(unit_scores: np.ndarray, lay: Layout, unit_expert: np.ndarray, n_documents: np.ndarray, k: int,
                length_norm: float) -> np.ndarray:
    """The kNN vote divided by the expert's number of documents to the power `length_norm`.

    Every document an expert holds is one more chance to land in a query's neighbourhood by
    accident, so a plain sum lets breadth beat fit: an academician with 150 papers in other fields
    collects many weak votes and is offered for batteries, tea and locks alike. Dividing by
    n^length_norm is an expert-level length normalisation in the spirit of BM25's document-length
    normalisation: 0 keeps the sum (depth and breadth count fully), 1 takes the mean (breadth
    counts for nothing). Measured on the three dev benchmarks (notebooks/evaluation.ipynb), 0.3
    keeps the CDL reviewer-assignment figure (where the number of projects a reviewer reviewed in
    a topic is real evidence) and lifts the enterprise-voice set, where one specific document of a
    local engineer should beat a professor's many loosely related papers."""
    vote = knn_vote(unit_scores, lay, unit_expert, len(n_documents), k)
    return length_normed(vote, n_documents, length_norm)


def length_normed(vote: np.ndarray, n_documents: np.ndarray, length_norm: float) -> np.ndarray:
    """A kNN vote divided by each expert's number of documents to the power `length_norm` (see
    `expert_vote`; a sharded vote, `matcher.ranking.shard_part`, is normed here too)."""
    if not length_norm:
        return vote
    return (vote / np.maximum(n_documents, 1.0) ** length_norm).astype(np.float32)


def centroid(tfidf_scores: np.ndarray, lay: Layout, unit_expert: np.ndarray, centroid_norm: np.ndarray) -> np.ndarray:
    """The TF-IDF centroid of each expert's documents (the cosine with the sum of their
    L2-normalised document vectors), from the document cosines and the centroid norms."""
    live = tfidf_scores if lay.all_alive else tfidf_scores * lay.unit_alive
    return (np.bincount(unit_expert, weights=live, minlength=len(centroid_norm)) / centroid_norm).astype(np.float32)
