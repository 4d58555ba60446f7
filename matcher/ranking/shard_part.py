"""One shard of an index (a range of experts) as a worker holds it, and how it answers a query.

The coordinator understands and encodes a query once (`ShardQuery`); every shard scores its own
units for each voting signal and answers in one round (`ShardPart.answer`): per signal its `k`
best documents (`shards.shard_top`) with their units (`shards.shard_voters`), and its experts'
TF-IDF centroid sums. One round suffices: a document in the global first `k` is in the first `k`
of every shard holding it (`matcher.ranking.shards`), so its units all come back with round 1;
`merge_answers` keeps those of the global `k` best and sums them in one index's order.

A shard is carved from a fitted index (`carve`): the rows of its units in the word, TF-IDF and
character indexes (`matcher.index.rows.rows_view`: the counts of those rows under the whole pool's
statistics), its units' LSA and dense vectors. Each unit scores what it scores in the whole
index, bit for bit, so the merged ranking is the single index's (tests/test_sharded.py, on a Dask
cluster of worker processes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from matcher.errors import IndexStateError
from matcher.index.rows import rows_view
from matcher.ranking import signal
from matcher.ranking.aggregate import length_normed
from matcher.ranking.query import Query
from matcher.ranking.score import SignalScores
from matcher.ranking.scoring import Exhaustive, UnitScores
from matcher.ranking.shards import ShardTop, ShardVoters, merge_top, merge_votes, shard_top, shard_voters
from matcher.ranking.signals.dense import dense_query
from matcher.ranking.signals.lsa import lsa_query
from matcher.ranking.state import IndexState

#: The voting signals a shard scores, by the name of the lexical scores or vectors they read.
VOTES = ("words", "tfidf", "chars", "lsa", "dense")


@dataclass(frozen=True, slots=True)
class ShardQuery:
    """A query as every shard needs it: term and character weights, the term budget, the query's
    LSA and (centred, shifted) dense vectors, and the neighbourhood size."""

    weights: Mapping[str, float]
    grams: Mapping[str, float]
    budget: int | None
    lsa: np.ndarray | None
    dense: np.ndarray | None
    k: int


@dataclass(frozen=True, slots=True)
class ShardAnswer:
    """A shard's answer: per signal its best documents and their units; the centroid sums of its
    experts (first..stop); whether any of its units shares a word with the query."""

    first: int
    tops: Mapping[str, ShardTop]
    voters: Mapping[str, ShardVoters]
    centroid: np.ndarray  # float64 sums of the live TF-IDF cosines per expert of the shard
    shares_words: bool


@dataclass(frozen=True)
class ShardPart:
    """The units of experts `first`..`stop` (positions in the whole index) and what scores them."""

    first: int
    stop: int
    positions: np.ndarray  # int64: each unit's row in the whole index (ascending)
    unit_hash: np.ndarray
    unit_expert: np.ndarray  # global expert positions
    unit_alive: np.ndarray  # float32 0/1
    words: object  # TermIndex views (`rows_view`) sharing the rows' counts
    tfidf: object
    chars: object
    lsa: np.ndarray | None  # the units' LSA embeddings
    dense: np.ndarray | None  # the units' centred dense vectors (float16)

    def unit_scores(self, q: ShardQuery) -> dict[str, np.ndarray]:
        """Each voting signal's scores of this shard's units, masked as the single index masks them."""
        words, tfidf = self.words.score_with((self.tfidf,), q.weights, max_postings=q.budget)  # type: ignore[attr-defined]
        out = {"words": words, "tfidf": tfidf}
        if q.grams:
            out["chars"] = self.chars.score(q.grams, max_postings=q.budget)  # type: ignore[attr-defined]
        for name, vectors, query in (("lsa", self.lsa, q.lsa), ("dense", self.dense, q.dense)):
            if vectors is not None and query is not None:
                out[name] = np.clip(_cosines(vectors, query), 0.0, None)
        alive = self.words.alive_  # type: ignore[attr-defined]
        for name, arr in out.items():
            if name in ("words", "tfidf", "chars") and not alive.all():
                arr[~alive] = 0.0
        return out

    def answer(self, q: ShardQuery) -> ShardAnswer:
        scores = self.unit_scores(q)
        tops, voters = {}, {}
        all_alive = bool(self.unit_alive.all())
        for name, arr in scores.items():
            masked = arr if all_alive else arr * self.unit_alive
            top = shard_top(masked, self.unit_hash, q.k)
            tops[name] = top
            voters[name] = shard_voters(masked, self.unit_hash, self.unit_expert, self.positions, top.keys)
        live = scores["tfidf"] if all_alive else scores["tfidf"] * self.unit_alive
        centroid = np.bincount(self.unit_expert - self.first, weights=live, minlength=self.stop - self.first)
        return ShardAnswer(self.first, tops, voters, centroid, bool((scores["words"] > 0).any()))


def _cosines(vectors: np.ndarray, q: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """`vectors @ q` in float32, as the single index computes its cosines (float16 rows widened
    first). BLAS blocks a matrix-vector product by row position, so a row may come out one float32
    rounding away from the whole index's (the ranking is the same: tests/test_sharded.py)."""
    q = q.astype(np.float32)
    out = np.empty(len(vectors), dtype=np.float32)
    for start in range(0, len(vectors), chunk):
        out[start : start + chunk] = np.asarray(vectors[start : start + chunk], dtype=np.float32) @ q
    return out


def carve(index: IndexState, first: int, stop: int) -> ShardPart:
    """The shard of experts `first`..`stop` of a fitted index."""
    index.require_fitted()
    ue = np.asarray(index.unit_expert_)
    rows = np.flatnonzero((ue >= first) & (ue < stop))
    words, tfidf = rows_view((index.words_, index.words_tfidf_), rows)
    (chars,) = rows_view((index.chars_,), rows)
    lsa = index.part("lsa")
    dense = index.dense_
    return ShardPart(
        first, stop, rows.astype(np.int64), np.asarray(index.unit_hash_)[rows], ue[rows].astype(np.int64),
        index.layout().unit_alive[rows], words, tfidf, chars,
        None if lsa is None else np.ascontiguousarray(lsa.embeddings_[rows]),
        None if dense is None else _widened(dense.units[rows]),
    )


def _widened(units: np.ndarray) -> np.ndarray:
    """A shard's dense vectors as float32 up to `dense.WIDE_UNITS` rows (the single index keeps
    that copy too: widening float16 on every query was most of a shard's time), float16 beyond."""
    from matcher import dense

    return units.astype(np.float32) if len(units) <= dense.WIDE_UNITS else np.ascontiguousarray(units)


def split(n_experts: int, shards: int) -> list[tuple[int, int]]:
    """`shards` contiguous expert ranges of nearly equal size."""
    cuts = np.linspace(0, n_experts, max(shards, 1) + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def merge_answers(answers: Sequence[ShardAnswer], n_experts: int,
                  k: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The kNN votes per signal (before the expert length norm) and the centroid sums per expert,
    from every shard's answer: as one index computes them."""
    votes: dict[str, np.ndarray] = {}
    names = {n for a in answers for n in a.tops}
    for name in names:
        have = [a for a in answers if name in a.tops]
        chosen = merge_top([a.tops[name] for a in have], k)
        parts = [restrict(a.voters[name], a.tops[name].keys, chosen) for a in have]
        votes[name] = merge_votes(parts, n_experts)
    sums = np.zeros(n_experts, dtype=np.float64)
    for a in answers:
        sums[a.first : a.first + len(a.centroid)] = a.centroid
    return votes, sums


def restrict(voters: ShardVoters, shard_keys: np.ndarray, chosen: np.ndarray) -> ShardVoters:
    """A shard's units of its own best documents, kept for the globally `chosen` documents and
    ranked among them."""
    keys = shard_keys[voters.docs] if len(voters.docs) else np.zeros(0, dtype=np.int64)
    rank = {int(key): r for r, key in enumerate(chosen)}
    keep = np.fromiter((int(h) in rank for h in keys), dtype=bool, count=len(keys))
    docs = np.fromiter((rank[int(h)] for h in keys[keep]), dtype=np.int64, count=int(keep.sum()))
    return ShardVoters(voters.positions[keep], voters.experts[keep], voters.scores[keep], docs)


# -- the coordinator: the query sent out, the answers fused ------------------------------------------
#: Signals fed by a shard's vote, by the unit scores they vote with.
VOTE_OF = {"bm25": "words", "tfidf": "tfidf", "chars": "chars", "lsa": "lsa", "dense": "dense"}


def shard_query(index: IndexState, query: Query) -> ShardQuery:
    """What every shard needs of `query` (understood and encoded once, on the coordinator)."""
    p = index.params
    if p.topk_pruning:
        raise IndexStateError("sharded scoring reads every posting: switch MATCHER_TOPK_PRUNING off")
    if p.semantic_exhaustive and len(index.unit_expert_) > p.semantic_exhaustive:
        # The single index re-scores only its lexical candidates past this size; the shards scan
        # all of their own units, which would rank otherwise (better, but not the same).
        raise IndexStateError(f"an index of more than {p.semantic_exhaustive} documents is scored in two "
                              "stages; set MATCHER_SEMANTIC_EXHAUSTIVE=0 to scan every shard's documents")
    return ShardQuery(dict(query.weights), dict(query.char_weights()), p.max_postings or None,
                      lsa_query(index, query), dense_query(index, query), p.knn_k)


def merged_scores(index: IndexState, query: Query, answers: Sequence[ShardAnswer]) -> SignalScores:
    """Every signal for `query` from the shards' answers, as `score.signal_scores` computes it in
    one index: the votes merged and normed, the centroid from its sums, the signals of one value
    per expert (profile, fields, dense_profile, prior) computed here."""
    p = index.params
    n = len(index.expert_ids_)
    votes, sums = merge_answers(answers, n, p.knn_k)
    ctx = Exhaustive(index, query)  # asked only for per-expert values: no unit is scored here
    sig: dict[str, np.ndarray] = {}
    for s, part in signal.fitted(index):
        if s.name in VOTE_OF:
            vote = votes.get(VOTE_OF[s.name])
            sig[s.name] = ctx.zeros() if vote is None else length_normed(vote, index.n_documents_,
                                                                         p.expert_length_norm)
        elif s.name == "centroid":
            sig[s.name] = (sums / part).astype(np.float32)
        else:
            sig[s.name] = s.score(ctx, part)
    words = any(a.shares_words for a in answers)
    chars = index.chars_
    understood = words or any(len(g) >= 2 and chars.df_of(g) > 0 for g in query.char_weights())
    return SignalScores(sig, UnitScores(np.zeros(0, dtype=np.float32)), understood)
