"""The lexical scores by top-k retrieval (`matcher.ranking.topk`) instead of a score for every unit.

`Pruned` answers what `matcher.ranking.scoring.Exhaustive` answers, computed from each lexical
signal's candidates rather than from every posting: the votes are identical (the same documents,
the same float32 scores, summed in the same order), and so are the fused scores.

Two things the exhaustive path has for every unit are only needed for the experts a page explains:
the word and character scores of their units and their TF-IDF centroid (`centroid`). They are
filled in for exactly those experts when they are explained (`Completion`, called by
`matcher.ranking.explain`), with the values the exhaustive path gives them. The centroid is needed
for every expert only by the diversified places (`diversify_slots`) or a centroid weight: then the
exhaustive path runs (`applies`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from matcher.ranking import topk
from matcher.ranking.aggregate import Layout
from matcher.ranking.scoring import PARALLEL_MIN_UNITS, Scoring, UnitScores, scoring_pool
from matcher.ranking.state import IndexState

if TYPE_CHECKING:
    from matcher.index import TermIndex


def applies(index: IndexState) -> bool:
    """Whether the pruned path gives what the exhaustive one gives for this index's settings."""
    w = index.params.weights
    return not index.params.diversify_slots and not w.get("centroid") and not w.get("slots")


def canonical(index: IndexState) -> np.ndarray:
    """One unit per document (its first), of live experts: the units whose partial scores bound the
    k-th best document's score from below (units of one document score alike)."""
    def make() -> np.ndarray:
        lay = index.layout()
        got = np.zeros(len(lay.doc), dtype=bool)
        starts = lay.doc_ptr[:-1][np.diff(lay.doc_ptr) > 0]
        got[lay.by_doc[starts]] = True
        got &= lay.unit_alive > 0
        got &= index.words_.alive_
        return got

    return index.cached("canonical", make)


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
    docstring): their units' word and character scores and their centroid."""

    index: IndexState
    words: Lexical
    tfidf: Lexical
    chars: Lexical | None
    unit_scores: np.ndarray
    char_scores: np.ndarray | None
    centroid: np.ndarray | None
    centroid_norm: np.ndarray | None

    def __call__(self, experts: Sequence[int]) -> None:
        index = self.index
        lay = index.layout()
        for e in dict.fromkeys(int(x) for x in experts):
            units = index.units_of(e)
            if not len(units):
                continue
            self.unit_scores[units] = self.words.exact(units)
            if self.centroid is not None and self.centroid_norm is not None:
                tfidf = self.tfidf.exact(units)
                if not lay.all_alive:
                    tfidf = tfidf * lay.unit_alive[units]
                summed = np.bincount(np.zeros(len(units), dtype=np.int64), weights=tfidf, minlength=1)
                self.centroid[e] = (summed / self.centroid_norm[[e]]).astype(np.float32)[0]
            if self.chars is not None and self.char_scores is not None:
                self.char_scores[units] = self.chars.exact(units)


class Pruned(Scoring):
    """The lexical scores from top-k retrieval (module docstring)."""

    def begin(self) -> None:
        idx = self.index
        self._canon = canonical(idx)
        self._chars_plan = None
        if self.grams:
            cids, cws = idx.chars_.query_vector(self.grams)
            self._chars_plan = topk.plan(idx.chars_, cids, cws, idx.chars_._budget(cids, cws, self.budget))
        self._pending: Future[Lexical] | None = None
        if self._chars_plan is not None and self.n_units >= PARALLEL_MIN_UNITS:
            self._pending = scoring_pool().submit(self._lexical, idx.chars_, self._chars_plan, False)
        self._centroid: tuple[np.ndarray, np.ndarray] | None = None

    def _lexical(self, view: TermIndex, p: topk.Plan, bm25_bounds: bool) -> Lexical:
        return Lexical(view, p, topk.search(view, p, self.params.knn_k, self._canon, bm25_bounds=bm25_bounds))

    @functools.cached_property
    def _words(self) -> tuple[Lexical, Lexical]:
        idx = self.index
        ids, ws = idx.words_.query_vector(self.query.weights)
        keep = idx.words_._budget(ids, ws, self.budget)
        tids, tws = idx.words_tfidf_.query_vector(self.query.weights)
        words = self._lexical(idx.words_, topk.plan(idx.words_, ids, ws, keep), True)
        tfidf = self._lexical(idx.words_tfidf_, topk.plan(idx.words_tfidf_, tids, tws, keep), True)
        return words, tfidf

    @functools.cached_property
    def _chars(self) -> Lexical | None:
        if self._pending is not None:
            return self._pending.result()
        if self._chars_plan is not None:
            return self._lexical(self.index.chars_, self._chars_plan, False)
        return None

    def _lex(self, kind: str) -> Lexical | None:
        if kind == "chars":
            return self._chars
        return self._words[0] if kind == "words" else self._words[1]

    @functools.cached_property
    def _dense(self) -> dict[str, np.ndarray | None]:
        chars = self._chars
        return {"words": self._words[0].hits.dense(self.n_units),
                "tfidf": self._words[1].hits.dense(self.n_units),
                "chars": chars.hits.dense(self.n_units) if chars is not None else None}

    def unit_scores(self, kind: str) -> np.ndarray | None:
        return self._dense[kind]

    def vote(self, kind: str) -> np.ndarray:
        lex = self._lex(kind)
        if lex is None:
            return self.zeros()
        idx = self.index
        return vote(lex, self.layout, idx.unit_expert_, idx.n_documents_, self.params.knn_k,
                    self.params.expert_length_norm)

    def centroid(self, norms: np.ndarray) -> np.ndarray:
        out = self.zeros()  # filled for the explained experts (Completion)
        self._centroid = (out, norms)
        return out

    def shares_words(self) -> bool:
        return bool(len(self._words[0].hits.rows))

    def finish(self, signals: Mapping[str, np.ndarray]) -> UnitScores:
        words, tfidf = self._words
        chars = self._chars
        cent, norms = self._centroid if self._centroid is not None else (None, None)
        unit_scores, char_scores = self._dense["words"], self._dense["chars"]
        done = Completion(self.index, words, tfidf, chars, unit_scores, char_scores, cent, norms)
        stats = {"read": words.hits.read + (chars.hits.read if chars else 0),
                 "total": words.hits.total + (chars.hits.total if chars else 0)}
        return UnitScores(unit_scores, char_scores, self._memo.get("dense_unit_scores"), complete=done,
                          stats=stats)
