"""The kNN vote over an index split into shards by expert: scatter, gather, merge (docs/scale-out.md).

At a million experts one machine's memory no longer holds the index; the experts are split into
shards, each scoring its own units with the global term statistics (df and N summed over the
shards, so every unit scores what it would in one index). A query is sent to every shard, and the
vote of `matcher.ranking.aggregate.knn_vote` is rebuilt from what they return, in two rounds:

1. each shard returns its `k` best documents (`shard_top`): a document is known everywhere by its
   content key (`unit_hash`, equal units = one document), with its best unit's score;
2. the coordinator takes the first `k` documents of the merged lists by (score, key) (`merge_top`):
   the global `k` best, since a document in the global first k is in the first k of every shard
   holding it (a shard has fewer competitors), and ties break on the same key everywhere;
3. each shard returns the units it holds of those documents (`shard_voters`), and the coordinator
   sums them per expert in the order one index sums them (`merge_votes`).

Each unit carries an order key, its position in one index (shards of contiguous expert ranges give
it for free: shard number, then position in the shard); the coordinator sums in that order, so
the merged vote equals the single index's vote bit for bit, whatever the split
(tests/test_shards.py splits the demo index in one process).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from matcher.ranking.aggregate import top_candidates


@dataclass(frozen=True, slots=True)
class ShardTop:
    """A shard's best documents: content keys and their best unit's score, best first."""

    keys: np.ndarray  # int64 unit_hash
    scores: np.ndarray  # float32


@dataclass(frozen=True, slots=True)
class ShardVoters:
    """A shard's units of the chosen documents: their global unit position (the order one index
    sums them in), their expert and score."""

    positions: np.ndarray  # int64
    experts: np.ndarray  # int64 global expert positions
    scores: np.ndarray  # float32
    docs: np.ndarray  # int64 rank of the unit's document among the chosen (0 = best)


def _first_k(keys: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `k` distinct keys ordered by (score desc, key asc), with their scores."""
    if not len(keys):
        return keys.astype(np.int64), scores.astype(np.float32)
    order = np.lexsort((keys, -scores))
    keys, scores = keys[order], scores[order]
    _, first = np.unique(keys, return_index=True)
    take = np.sort(first)[:k]
    return keys[take], scores[take]


def shard_top(unit_scores: np.ndarray, unit_hash: np.ndarray, k: int) -> ShardTop:
    """Round 1 on a shard: its `k` best documents among its units' positive scores."""
    pos = _candidates(unit_scores, unit_hash, k)
    keys, scores = _first_k(unit_hash[pos], unit_scores[pos], k)
    return ShardTop(keys, scores)


def _candidates(unit_scores: np.ndarray, unit_hash: np.ndarray, k: int) -> np.ndarray:
    """Units that hold the `k` best documents: the best `m` units with everything tied with them
    (`top_candidates`), `m` grown until they hold `k` distinct documents or every positive unit.
    A document left out scores below every one kept, so the first `k` are among them; sorting
    only these, not every positive unit (half a shard's for a cosine), is what keeps a shard fast."""
    m = min(len(unit_scores), 4 * k)
    while True:
        cand = top_candidates(unit_scores, m)
        if len(cand) < m or m >= len(unit_scores) or len(np.unique(unit_hash[cand])) >= k:
            return cand
        m = min(len(unit_scores), 4 * m)


def merge_top(tops: Sequence[ShardTop], k: int) -> np.ndarray:
    """Round 2 on the coordinator: the global `k` best documents' keys, best first."""
    if not tops:
        return np.zeros(0, dtype=np.int64)
    keys = np.concatenate([t.keys for t in tops])
    scores = np.concatenate([t.scores for t in tops])
    return _first_k(keys, scores, k)[0]


def shard_voters(unit_scores: np.ndarray, unit_hash: np.ndarray, unit_expert: np.ndarray,
                 positions: np.ndarray, chosen: np.ndarray) -> ShardVoters:
    """Round 3 on a shard: its units of the `chosen` documents that score above 0 (`positions`:
    the global position of each of its units)."""
    rank = {int(key): r for r, key in enumerate(chosen)}
    mine = np.flatnonzero(np.isin(unit_hash, chosen) & (unit_scores > 0))
    docs = np.fromiter((rank[int(h)] for h in unit_hash[mine]), dtype=np.int64, count=len(mine))
    return ShardVoters(positions[mine], unit_expert[mine], unit_scores[mine], docs)


def merge_votes(parts: Sequence[ShardVoters], n_experts: int) -> np.ndarray:
    """Round 4 on the coordinator: every chosen document's units add their score to their expert,
    summed in one index's order (documents best first, each document's units by position)."""
    if not parts:
        return np.zeros(n_experts, dtype=np.float32)
    pos = np.concatenate([p.positions for p in parts])
    experts = np.concatenate([p.experts for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    docs = np.concatenate([p.docs for p in parts])
    order = np.lexsort((pos, docs))
    return np.bincount(experts[order], weights=scores[order], minlength=n_experts).astype(np.float32)
