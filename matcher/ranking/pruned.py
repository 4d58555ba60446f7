"""The signals with top-k retrieval (`matcher.ranking.topk`) instead of a score for every unit.

`signals(index, query)` returns what `matcher.ranking.signals.signals` returns, computed from each
lexical signal's candidates rather than from every posting: the votes are identical (the same
documents, the same float32 scores, summed in the same order), and so are the fused scores.

Three things the exhaustive path has for every unit are only needed for the experts a page
explains: the word and character scores of their units, how many of their units share a word with
the demand (`lexical`) and their TF-IDF centroid (`centroid`). They are filled in for exactly
those experts when they are explained (`Completion`, called by `ExpertIndex.explain_many`), with the
values the exhaustive path gives them. The centroid is needed for every expert only by the
diversified places (`diversify_slots`) or a centroid weight: then the exhaustive path runs (`applies`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from matcher.ranking import topk
from matcher.ranking.aggregate import Layout, expert_vote, top_units
from matcher.ranking.query import Query
from matcher.ranking.signals import dense_query, lsa_query, semantic_scores

if TYPE_CHECKING:
    from matcher.index import TermIndex
    from matcher.ranking.expert_index import ExpertIndex
    from matcher.ranking.signals import UnitScores


def applies(index: ExpertIndex) -> bool:
    """Whether the pruned path gives what the exhaustive one gives for this index's settings."""
    return not index.diversify_slots and not index.weights.get("centroid") and not index.weights.get("slots")


def canonical(index: ExpertIndex, lay: Layout) -> np.ndarray:
    """One unit per document (its first), of live experts: the units whose partial scores bound the
    k-th best document's score from below (units of one document score alike)."""
    got = index.__dict__.get("_canonical_cache")
    if got is None:
        got = np.zeros(len(lay.doc), dtype=bool)
        starts = lay.doc_ptr[:-1][np.diff(lay.doc_ptr) > 0]
        got[lay.by_doc[starts]] = True
        got &= lay.unit_alive > 0
        got &= index.units_.alive_
        index.__dict__["_canonical_cache"] = got
    return got


@dataclass(frozen=True, slots=True)
class Lexical:
    """One lexical signal's query plan over its term index and the candidates found."""

    view: TermIndex
    plan: topk.Plan
    hits: topk.Hits

    def exact(self, rows: np.ndarray) -> np.ndarray:
        """Exact scores of any units (in the order given)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows), dtype=np.float32)
        if not len(rows):
            return out
        nb = self.view._base.shape[0]
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        vals = np.zeros(len(rows), dtype=np.float32)
        base = srt < nb
        vals[base] = topk.exact_scores(self.view, self.plan, srt[base])
        if (~base).any():  # delta rows: every positive one is among the hits
            vals[~base] = lookup(self.hits, srt[~base])[0]
        out[order] = vals
        return out


def lookup(hits: topk.Hits, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scores `hits` holds for `rows` (0 where it holds none), and where it holds one."""
    if not len(hits.rows):
        return np.zeros(len(rows), dtype=np.float32), np.zeros(len(rows), dtype=bool)
    at = np.minimum(np.searchsorted(hits.rows, rows), len(hits.rows) - 1)
    found = hits.rows[at] == rows
    return np.where(found, hits.scores[at], np.float32(0.0)).astype(np.float32), found


def vote(lex: Lexical, lay: Layout, unit_expert: np.ndarray, n_documents: np.ndarray, k: int,
         length_norm: float) -> np.ndarray:
    """`matcher.ranking.aggregate.expert_vote` from the candidates: the first `k` documents by
    (score, document id), every unit of each voting with its exact score, summed in the same order."""
    rows, vals = lex.hits.rows, lex.hits.scores
    if not lay.all_alive:
        vals = vals * lay.unit_alive[rows]
    pos = vals > 0
    rows, vals = rows[pos], vals[pos]
    n = len(n_documents)
    if not len(rows):
        return np.zeros(n, dtype=np.float32)
    order = np.lexsort((lay.doc[rows], -vals))
    docs = lay.doc[rows[order]]
    _, first = np.unique(docs, return_index=True)
    chosen = docs[np.sort(first)[:k]]
    voters = np.concatenate([lay.by_doc[lay.doc_ptr[d] : lay.doc_ptr[d + 1]] for d in chosen])
    scores, found = lookup(lex.hits, voters)
    if not found.all():  # a unit of a chosen document that scores below the k-th (characters of a bio)
        scores[~found] = lex.exact(voters[~found])
    if not lay.all_alive:
        scores = scores * lay.unit_alive[voters]
    keep = scores > 0
    out = np.bincount(unit_expert[voters[keep]], weights=scores[keep], minlength=n).astype(np.float32)
    if not length_norm:
        return out
    return (out / np.maximum(n_documents, 1.0) ** length_norm).astype(np.float32)


@dataclass(frozen=True, slots=True)
class Completion:
    """Fills in, for the experts about to be explained, what the pruned path leaves out (module
    docstring): their units' word and character scores, `lexical` and `centroid`."""

    index: ExpertIndex
    words: Lexical
    tfidf: Lexical
    chars: Lexical | None
    unit_scores: np.ndarray
    char_scores: np.ndarray | None
    lexical: np.ndarray
    centroid: np.ndarray

    def __call__(self, experts: Sequence[int]) -> None:
        index = self.index
        lay = index._layout()
        for e in dict.fromkeys(int(x) for x in experts):
            units = index._units_of(e)
            if not len(units):
                continue
            words = self.words.exact(units)
            self.unit_scores[units] = words
            self.lexical[e] = np.float32(np.count_nonzero(words > 0))
            tfidf = self.tfidf.exact(units)
            if not lay.all_alive:
                tfidf = tfidf * lay.unit_alive[units]
            summed = np.bincount(np.zeros(len(units), dtype=np.int64), weights=tfidf, minlength=1)
            self.centroid[e] = (summed / index.centroid_norm_[[e]]).astype(np.float32)[0]
            if self.chars is not None and self.char_scores is not None:
                self.char_scores[units] = self.chars.exact(units)


def signals(index: ExpertIndex, query: Query) -> tuple[dict[str, np.ndarray], UnitScores]:
    """What `matcher.ranking.signals.signals` returns, from top-k retrieval (module docstring)."""
    from matcher.ranking.signals import PARALLEL_MIN_UNITS, UnitScores, scoring_pool

    index._require_fitted()
    n = len(index.expert_ids_)
    n_units = len(index.unit_expert_)
    zeros = np.zeros(n, dtype=np.float32)
    budget = index.max_postings or None
    lay = index._layout()
    unit_expert = index.unit_expert_
    canon = canonical(index, lay)
    k = index.knn_k

    def lexical(view: TermIndex, p: topk.Plan, *, bm25_bounds: bool) -> Lexical:
        return Lexical(view, p, topk.search(view, p, k, canon, bm25_bounds=bm25_bounds))

    def votes(lex: Lexical) -> np.ndarray:
        return vote(lex, lay, unit_expert, index.n_documents_, k, index.length_norm)

    grams = query.char_weights()
    chars_plan = None
    if grams:
        cids, cws = index.chars_.query_vector(grams)
        chars_plan = topk.plan(index.chars_, cids, cws, index.chars_._budget(cids, cws, budget))
    pending: Future[Lexical] | None = None
    if chars_plan is not None and n_units >= PARALLEL_MIN_UNITS:
        pending = scoring_pool().submit(lexical, index.chars_, chars_plan, bm25_bounds=False)
    ids, ws = index.units_.query_vector(query.weights)
    keep = index.units_._budget(ids, ws, budget)
    tids, tws = index.word_tfidf_.query_vector(query.weights)
    words = lexical(index.units_, topk.plan(index.units_, ids, ws, keep), bm25_bounds=True)
    tfidf = lexical(index.word_tfidf_, topk.plan(index.word_tfidf_, tids, tws, keep), bm25_bounds=True)
    sig = {"docs": votes(words), "tfidf": votes(tfidf)}
    sig["centroid"] = zeros.copy()  # filled for the explained experts (Completion)
    for name in index.OPTIONAL:
        part = getattr(index, f"{name}_")
        sig[name] = zeros if part is None else part.score(query.weights)
    sig["lexical"] = zeros.copy()  # filled for the explained experts (Completion)
    shares = bool(len(words.hits.rows)) or any(len(g) >= 2 and index.chars_.df_of(g) > 0 for g in grams)
    sig["gate"] = np.full(1, shares)
    chars: Lexical | None = None
    if pending is not None:
        chars = pending.result()
    elif chars_plan is not None:
        chars = lexical(index.chars_, chars_plan, bm25_bounds=False)
    sig["chars"] = votes(chars) if chars is not None else zeros
    unit_scores = words.hits.dense(n_units)
    char_scores = chars.hits.dense(n_units) if chars is not None else None

    # A large index: the semantic signals re-score the lexical signals' best units (once for both).
    candidates = functools.cache(
        lambda: top_units([unit_scores, tfidf.hits.dense(n_units), char_scores], 20 * k))
    sig["semantic"] = zeros
    qe = lsa_query(index, query)
    if qe is not None:
        emb = index.lsa_.embeddings_
        cos = semantic_scores(index, len(emb), lambda rows: emb @ qe if rows is None else emb[rows] @ qe,
                              candidates)
        sig["semantic"] = expert_vote(np.clip(cos, 0.0, None), lay, unit_expert,
                                      index.n_documents_, k, index.length_norm)
    sig["dense"], sig["dense_profile"] = zeros, zeros
    dense_cos = None
    q = dense_query(index, query)
    if q is not None:
        dense = index.dense_
        dense_cos = semantic_scores(index, len(dense.units), lambda rows: dense.cosines(q, rows), candidates)
        sig["dense"] = expert_vote(np.clip(dense_cos, 0.0, None), lay, unit_expert, index.n_documents_,
                                   k, index.length_norm)
        if dense.profiles is not None:
            sig["dense_profile"] = np.clip(dense.profiles.astype(np.float32) @ q, 0.0, None)
    sig["prior"] = index.prior_
    done = Completion(index, words, tfidf, chars, unit_scores, char_scores, sig["lexical"], sig["centroid"])
    stats = {"read": words.hits.read + (chars.hits.read if chars else 0),
             "total": words.hits.total + (chars.hits.total if chars else 0)}
    return sig, UnitScores(unit_scores, char_scores, dense_cos, complete=done, stats=stats)
