"""Candidate scoring: what every signal of one query reads, computed once.

A `Scoring` is made per query (`matcher.ranking.score.signal_scores` picks it): the signals
(`matcher.ranking.signals`) ask it for the units' lexical scores and for votes, and it computes
each on first use. Two kinds answer the same questions with the same numbers:

  Exhaustive  every posting of the query's terms scored (`TermIndex.score_with`);
  Pruned      each lexical signal's best documents found by top-k retrieval
              (`matcher.ranking.pruned`): the same votes from a fraction of the postings.

A signal is written once, against this interface, and runs on both paths.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from matcher.ranking.aggregate import centroid, expert_vote, top_units
from matcher.ranking.query import Query
from matcher.ranking.state import IndexState

# An index with at least this many units scores the character n-grams on a second thread while
# the words are scored: both are mostly scipy/numpy work that releases the GIL.
PARALLEL_MIN_UNITS = 200_000
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()

#: The lexical unit scores a `Scoring` serves: word BM25, word TF-IDF, character n-gram TF-IDF.
LEXICAL = ("words", "tfidf", "chars")


def scoring_pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="matcher-score")
        return _POOL


@dataclass(frozen=True, slots=True)
class UnitScores:
    """The per-unit scores the explanations read: word BM25, characters, dense cosines."""

    words: np.ndarray
    chars: np.ndarray | None = None
    dense: np.ndarray | None = None
    #: Top-k retrieval scores only candidate units: this fills in the units of the experts to be
    #: explained. None: every unit is scored already.
    complete: Callable[[Sequence[int]], None] | None = None
    stats: Mapping[str, int] | None = None  # postings read and postings the exhaustive path reads


class Scoring:
    """What the signals of one query share (module docstring). Subclasses compute the lexical
    unit scores and their votes; the rest is common."""

    def __init__(self, index: IndexState, query: Query) -> None:
        index.require_fitted()
        self.index = index
        self.query = query
        self.params = index.params
        self.budget = index.params.max_postings or None
        self.layout = index.layout()
        self.n_experts = len(index.expert_ids_)
        self.n_units = len(index.unit_expert_)
        self.grams = query.char_weights()
        self._memo: dict[str, Any] = {}

    def zeros(self) -> np.ndarray:
        return np.zeros(self.n_experts, dtype=np.float32)

    def memo(self, name: str, make: Callable[[], Any]) -> Any:
        """A value computed once for this query (e.g. the dense query vector, read by two signals)."""
        if name not in self._memo:
            self._memo[name] = make()
        return self._memo[name]

    # -- the units' lexical scores and their votes (per path) ------------------------------------
    def begin(self) -> None:
        """Start what may run beside the signals (the characters of a large index, on a thread)."""

    def vote(self, kind: str) -> np.ndarray:
        """The kNN vote of lexical signal `kind` ("words", "tfidf" or "chars"), per expert."""
        raise NotImplementedError

    def centroid(self, norms: np.ndarray) -> np.ndarray:
        """Each expert's TF-IDF centroid cosine (`norms`: the centroid norms, per expert)."""
        raise NotImplementedError

    def unit_scores(self, kind: str) -> np.ndarray | None:
        """Every unit's score in lexical signal `kind` (None: characters of a query without any)."""
        raise NotImplementedError

    def shares_words(self) -> bool:
        raise NotImplementedError

    def finish(self, signals: Mapping[str, np.ndarray]) -> UnitScores:
        """The unit scores the explanations read, once every signal has run."""
        raise NotImplementedError

    # -- common ---------------------------------------------------------------------------------
    def vote_units(self, unit_scores: np.ndarray) -> np.ndarray:
        """The kNN vote of any per-unit scores (the semantic signals), per expert."""
        idx = self.index
        return expert_vote(unit_scores, self.layout, idx.unit_expert_, idx.n_documents_, self.params.knn_k,
                           self.params.expert_length_norm)

    def candidates(self) -> np.ndarray:
        """The lexical signals' best units (what a two-stage semantic scan re-scores)."""
        return self.memo("candidates", lambda: top_units(
            [self.unit_scores(k) for k in LEXICAL], 20 * self.params.knn_k))

    def semantic_scores(self, n_units: int, score: Callable[[np.ndarray | None], np.ndarray]) -> np.ndarray:
        """A semantic signal's unit scores: `score(None)` for every unit; beyond
        `semantic_exhaustive` units (a large index), `score(rows)` for the lexical signals' best
        units only (a two-stage search) and 0 elsewhere."""
        limit = self.params.semantic_exhaustive
        if limit and n_units > limit:
            cand = self.candidates()
            out = np.zeros(n_units, dtype=np.float32)
            out[cand] = score(cand)
            return out
        return np.asarray(score(None))

    def understood(self) -> bool:
        """Does the query share anything with the index: a word, or a string of two characters or
        more? If not, nothing was understood and nobody is listed (the dense and LSA
        neighbourhoods of a query about the weather are not empty, but they are noise)."""
        chars = self.index.chars_
        return self.shares_words() or any(len(g) >= 2 and chars.df_of(g) > 0 for g in self.grams)


class Exhaustive(Scoring):
    """Every posting of the query's terms scored."""

    def begin(self) -> None:
        self._pending: Future[np.ndarray] | None = None
        if self.grams and self.n_units >= PARALLEL_MIN_UNITS:
            self._pending = scoring_pool().submit(self.index.chars_.score, self.grams,
                                                  max_postings=self.budget)

    @functools.cached_property
    def _words(self) -> tuple[np.ndarray, np.ndarray]:
        idx = self.index
        words, tfidf = idx.words_.score_with((idx.words_tfidf_,), self.query.weights,
                                             max_postings=self.budget)
        return words, tfidf

    @functools.cached_property
    def _chars(self) -> np.ndarray | None:
        pending = getattr(self, "_pending", None)
        if pending is not None:
            return pending.result()
        return self.index.chars_.score(self.grams, max_postings=self.budget) if self.grams else None

    def unit_scores(self, kind: str) -> np.ndarray | None:
        if kind == "chars":
            return self._chars
        return self._words[0] if kind == "words" else self._words[1]

    def vote(self, kind: str) -> np.ndarray:
        scores = self.unit_scores(kind)
        return self.zeros() if scores is None else self.vote_units(scores)

    def centroid(self, norms: np.ndarray) -> np.ndarray:
        # The TF-IDF centroid of each expert's documents (the README's reference ranker), from the
        # document cosines: the whole-profile view, used for the diversified places (see fusion).
        return centroid(self._words[1], self.layout, self.index.unit_expert_, norms)

    def shares_words(self) -> bool:
        return bool((self._words[0] > 0).any())

    def finish(self, signals: Mapping[str, np.ndarray]) -> UnitScores:
        return UnitScores(self._words[0], self._chars, self._memo.get("dense_unit_scores"))
