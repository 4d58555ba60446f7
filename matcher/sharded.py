"""The query path on a Dask cluster: the index split into shards of experts, one per worker.

    from distributed import Client                       # pip install 'jinqiao-matcher[scale]'
    with Client("tcp://10.0.0.5:8786") as client, ShardedIndex(engine, client) as sharded:
        scored = sharded.score(engine.query("锂电池BMS均衡策略"))

The coordinator (this process: the API or the batch) holds the engine, understands and encodes each
query once, and sends it to every shard (`matcher.ranking.shard_part`). A shard is a task pinned to
one worker: the worker opens its own read-only engine on the same database and saved index, at the
coordinator's `data_version` (as the partitioned batch's workers do, `matcher.distributed`), carves
its experts' units out of it once, keeps them for every later query and answers each query in one
round: per voting signal its best documents with their units, and its experts' centroid sums. The
coordinator merges the answers and fuses them as one index does: the same experts in the same order
(tests/test_sharded.py, on a `LocalCluster` of worker processes). See docs/scale-out.md.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from matcher.config import Settings
from matcher.distributed import _worker_engine, worker_settings
from matcher.engine import Engine
from matcher.errors import IndexStateError, InputError
from matcher.rank import Query, Scored
from matcher.ranking.score import SignalScores
from matcher.ranking.shard_part import (
    ShardAnswer,
    ShardPart,
    ShardQuery,
    carve,
    merged_scores,
    shard_query,
    split,
)


@dataclass(frozen=True, slots=True)
class ShardTask:
    """What a worker needs to hold one shard: where the data is, which snapshot, which experts."""

    settings: Settings  # absolute paths, as the worker sees them
    data_version: int
    first: int
    stop: int


_lock = threading.Lock()
_parts: dict[tuple[str, int, int, int], ShardPart] = {}  # per worker process


def _part(task: ShardTask) -> ShardPart:
    key = (str(task.settings.resolved_index_dir), task.data_version, task.first, task.stop)
    with _lock:
        part = _parts.get(key)
    if part is not None:
        return part
    engine, version = _worker_engine(task.settings, task.data_version)
    if engine is None:
        raise IndexStateError(f"the experts changed (version {task.data_version} -> {version}) while the "
                              "shards were loading: open the sharded index again")
    part = carve(engine.ensure_index().index, task.first, task.stop)
    with _lock:
        # One snapshot per shard: an older one is dropped (its queries have been answered).
        for old in [k for k in _parts if k[0] == key[0] and k[2:] == key[2:]]:
            del _parts[old]
        _parts[key] = part
    return part


def load_shard(task: ShardTask) -> int:
    """Carve the shard on its worker (runs there); returns its number of units."""
    return len(_part(task).positions)


def answer_shard(task: ShardTask, query: ShardQuery) -> ShardAnswer:
    """One shard's answer to one query (runs on its worker)."""
    return _part(task).answer(query)


class ShardedIndex:
    """The engine's index scored on `client`'s workers, `shards` contiguous ranges of experts (by
    default one per worker), each shard pinned to one worker. The shards are loaded on creation."""

    def __init__(self, engine: Engine, client: Any, shards: int | None = None, *,
                 settings: Settings | None = None) -> None:
        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            raise InputError("the Dask cluster has no workers")
        n = shards or len(workers)
        if n < 1:
            raise InputError(f"the number of shards must be at least 1, not {n}")
        self.engine, self.client = engine, client
        self.loaded = engine.ensure_index()  # saved: the workers load it rather than rebuild it
        self.index = self.loaded.index
        wsettings = settings or worker_settings(engine.settings)
        version = self.loaded.data_version
        self.tasks = [ShardTask(wsettings, version, a, b) for a, b in split(len(self.index.expert_ids_), n)]
        self.workers = [workers[i % len(workers)] for i in range(n)]
        self.units = self._gather(load_shard, ())

    def _gather(self, fn: Any, args: Sequence[Any]) -> list[Any]:
        futures = [self.client.submit(fn, task, *args, workers=[w], allow_other_workers=False, pure=False)
                   for task, w in zip(self.tasks, self.workers, strict=True)]
        return self.client.gather(futures)

    def signal_scores(self, query: Query) -> SignalScores:
        answers = self._gather(answer_shard, (shard_query(self.index, query),))
        return merged_scores(self.index, query, answers)

    def score(self, query: Query) -> Scored:
        """The fused scores of every expert, as `ExpertIndex.score` gives them (the per-unit scores
        the explanations read stay on the shards: empty here)."""
        s = self.signal_scores(query)
        return Scored(total=self.index.fuse(s), signals=s.signals, unit_scores=s.units.words,
                      understood=s.understood)

    def __enter__(self) -> ShardedIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Forget the shards on the workers (their processes keep the engine for the next use)."""
        self.client.run(_forget)


def _forget() -> None:
    with _lock:
        _parts.clear()
