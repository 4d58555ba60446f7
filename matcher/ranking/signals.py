"""Candidate scoring, one signal at a time: every unit scored for the query, then aggregated per
expert (`matcher.ranking.aggregate`). Each signal is an array over expert positions:

  docs      word BM25 over units, kNN vote;
  tfidf     word TF-IDF cosine over units, kNN vote;
  centroid  word TF-IDF cosine with each expert's centroid (the diversified places, see fusion);
  chars     character 1-3-gram TF-IDF cosine over units, kNN vote: robust to segmentation slips;
  semantic  LSA (TruncatedSVD of unit TF-IDF) cosine over units, kNN vote;
  dense     sentence-embedding cosine over units (`matcher.dense`), kNN vote;
  dense_profile  sentence-embedding cosine with each expert's one profile vector;
  profile   word BM25 over the expert's whole record (optional, off by default);
  fields    word BM25 over research fields + keywords (optional, off by default);
  prior     log-scaled activity (number of documents), off by default;
  lexical   how many of the expert's units share a word with the query.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from matcher.ranking.aggregate import centroid, expert_vote, top_units
from matcher.ranking.query import Query

if TYPE_CHECKING:
    from matcher.ranking.expert_index import ExpertIndex

# An index with at least this many units scores the character n-grams on a second thread while
# the words are scored: both are mostly scipy/numpy work that releases the GIL.
PARALLEL_MIN_UNITS = 200_000
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def scoring_pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="matcher-score")
        return _POOL


def prior(n_documents: np.ndarray) -> np.ndarray:
    return np.log1p(n_documents) / max(float(np.log1p(n_documents).max(initial=0.0)), 1e-9)


@dataclass(frozen=True, slots=True)
class UnitScores:
    """The per-unit scores the explanations read: word BM25, characters, dense cosines."""

    words: np.ndarray
    chars: np.ndarray | None = None
    dense: np.ndarray | None = None
    #: Top-k retrieval (`matcher.ranking.pruned`) scores only candidate units: this fills in the
    #: units of the experts to be explained. None: every unit is scored already.
    complete: Callable[[Sequence[int]], None] | None = None
    stats: Mapping[str, int] | None = None  # postings read and postings the exhaustive path reads


def lsa_query(index: ExpertIndex, query: Query) -> np.ndarray | None:
    """The query in the LSA space, unit length (float32); None without LSA, without a fitted term
    in the query, or at the origin. Terms added by incremental updates lie outside the fitted
    space and are left out."""
    if index.lsa_ is None:
        return None
    ids, ws = index.word_tfidf_.query_vector(query.weights)
    fitted = index.lsa_.components_.shape[1]
    keep = ids < fitted
    if not keep.any():
        return None
    q = np.zeros(fitted, dtype=np.float32)
    q[ids[keep]] = ws[keep]
    qe = index.lsa_.components_ @ q
    norm = float(np.linalg.norm(qe))
    return (qe / norm).astype(np.float32) if norm > 0 else None


def dense_query(index: ExpertIndex, query: Query) -> np.ndarray | None:
    """The query's dense vector as the units' are stored (centred; moved by the demand bank's
    shift), or None: no vectors, no dense weight, or the query encoded by another model."""
    dense = index.dense_
    wanted = index.weights.get("dense") or index.weights.get("dense_profile") or index.build_all
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


def semantic_scores(index: ExpertIndex, n_units: int, score: Callable[[np.ndarray | None], np.ndarray],
                    candidates: Callable[[], np.ndarray]) -> np.ndarray:
    """A semantic signal's unit scores: `score(None)` for every unit; beyond `semantic_exhaustive`
    units (a large index), `score(rows)` for the lexical signals' best units only (`candidates()`,
    a two-stage search) and 0 elsewhere."""
    if index.semantic_exhaustive and n_units > index.semantic_exhaustive:
        cand = candidates()
        out = np.zeros(n_units, dtype=np.float32)
        out[cand] = score(cand)
        return out
    return np.asarray(score(None))


def signals(index: ExpertIndex, query: Query) -> tuple[dict[str, np.ndarray], UnitScores]:
    """Every signal of `index` for `query` (arrays over expert positions; `gate` says whether the
    query shares anything with the index), and the unit scores the explanations read."""
    index._require_fitted()
    if index.pruning:
        from matcher.ranking import pruned

        if pruned.applies(index):
            return pruned.signals(index, query)
    n = len(index.expert_ids_)
    zeros = np.zeros(n, dtype=np.float32)
    budget = index.max_postings or None
    lay = index._layout()
    unit_expert = index.unit_expert_

    def vote(unit_scores: np.ndarray) -> np.ndarray:
        return expert_vote(unit_scores, lay, unit_expert, index.n_documents_, index.knn_k, index.length_norm)

    grams = query.char_weights()
    pending: Future[np.ndarray] | None = None
    if grams and len(unit_expert) >= PARALLEL_MIN_UNITS:
        pending = scoring_pool().submit(index.chars_.score, grams, max_postings=budget)
    unit_scores, tfidf_scores = index.units_.score_with((index.word_tfidf_,), query.weights,
                                                        max_postings=budget)
    sig = {"docs": vote(unit_scores), "tfidf": vote(tfidf_scores)}
    # The TF-IDF centroid of each expert's documents (the README's reference ranker), from the
    # document cosines: the whole-profile view, used for the diversified places (see fusion).
    sig["centroid"] = centroid(tfidf_scores, lay, unit_expert, index.centroid_norm_)
    for name in index.OPTIONAL:
        part = getattr(index, f"{name}_")
        sig[name] = zeros if part is None else part.score(query.weights)
    # Experts sharing at least one word with the query (any unit scoring above 0): only they are
    # listed (see fusion).
    hit = unit_scores > 0
    sig["lexical"] = np.bincount(unit_expert[hit], minlength=n).astype(np.float32)
    # Does the query share anything with the index: a word, or a string of two characters or more?
    # If not, nothing was understood and nobody is listed (the dense and LSA neighbourhoods of a
    # query about the weather are not empty, but they are noise).
    shares = bool(hit.any()) or any(len(g) >= 2 and index.chars_.df_of(g) > 0 for g in grams)
    sig["gate"] = np.full(1, shares)
    if pending is not None:
        char_scores = pending.result()
    else:
        char_scores = index.chars_.score(grams, max_postings=budget) if grams else None
    sig["chars"] = vote(char_scores) if char_scores is not None else zeros
    candidates = functools.cache(
        lambda: top_units([unit_scores, tfidf_scores, char_scores], 20 * index.knn_k))
    sig["semantic"] = zeros
    qe = lsa_query(index, query)
    if qe is not None:
        emb = index.lsa_.embeddings_
        cos = semantic_scores(index, len(emb), lambda rows: emb @ qe if rows is None else emb[rows] @ qe,
                              candidates)
        sig["semantic"] = vote(np.clip(cos, 0.0, None))
    sig["dense"], sig["dense_profile"] = zeros, zeros
    dense_cos = None
    q = dense_query(index, query)
    if q is not None:
        dense = index.dense_
        dense_cos = semantic_scores(index, len(dense.units), lambda rows: dense.cosines(q, rows), candidates)
        sig["dense"] = vote(np.clip(dense_cos, 0.0, None))
        if dense.profiles is not None:
            sig["dense_profile"] = np.clip(dense.profiles.astype(np.float32) @ q, 0.0, None)
    sig["prior"] = index.prior_
    return sig, UnitScores(unit_scores, char_scores, dense_cos)
