"""Phase 1 of the nightly batch on a cluster, for when one machine is not enough.

    from distributed import Client                       # pip install 'jinqiao-matcher[scale]'
    with Client("tcp://10.0.0.5:8786") as client:
        result = run_batch_distributed(engine, BatchOptions(run_key="2024-05-01"), client)

The pending demands are split into partitions by a stable hash of their id (`partition`). Each
partition goes to a worker as one task (`score_partition`): the worker opens its own engine on the
same database and saved index, read-only, and returns plain `DemandScores`, the very values
`score_demand` computes in one process. This process, the coordinator, is the only writer: it
stores each demand's scores in its own transaction as partitions complete, then assigns, explains
and finishes the run as `matcher.batch.run_batch` always does. So a run interrupted after some
partitions is resumed like any other: the demands stored are skipped, the rest partitioned again.

Every partition is scored against one snapshot of the experts, the coordinator's `data_version`: a
worker pins the index it loaded and never follows the store (following would save the index from
many processes at once). A worker that cannot load that version (the experts changed after the
run started) scores nothing and says so; the coordinator brings the saved index up to the store
and sends the partition again.

The executor is anything with `submit(fn, arg)` returning a future with `result()`,
`add_done_callback()` and `cancel()`: a `dask.distributed.Client`, or a `concurrent.futures`
executor. Dask is optional: this module never imports it, except `connect`, which the CLI uses.
See docs/scale-out.md for the design.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from matcher.batch import BatchOptions, BatchResult, DemandScores, Progress, run_batch, score_demands
from matcher.config import Settings
from matcher.engine import Engine
from matcher.errors import InputError
from matcher.models import Demand
from matcher.records import BatchRun
from matcher.text import ChineseTokenizer

log = logging.getLogger(__name__)

PARTITIONS_PER_WORKER = 4  # more tasks than workers, so a slow partition does not hold the night back
MAX_STALE_RETRIES = 3  # times one partition is sent again because the experts changed meanwhile


def partition_of(demand_id: str, partitions: int) -> int:
    """The partition of a demand: a stable hash of its id (Python's `hash()` is salted per process)."""
    if partitions < 1:
        raise InputError(f"the number of partitions must be at least 1, not {partitions}")
    digest = hashlib.blake2b(demand_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def partition(demands: Sequence[Demand], partitions: int) -> list[tuple[Demand, ...]]:
    """`partitions` groups of the demands, by `partition_of`; each keeps the order it was given.

    A demand's group depends on its id and `partitions` alone: not on the other demands, on their
    order, on the machine or on the run, so a resumed run sends every remaining demand where it went.
    """
    groups: list[list[Demand]] = [[] for _ in range(max(partitions, 1))]
    for d in demands:
        groups[partition_of(d.id, partitions)].append(d)
    return [tuple(g) for g in groups]


@dataclass(frozen=True, slots=True)
class PartitionTask:
    """What a worker needs to score one partition: where the data is and which snapshot to use."""

    number: int
    settings: Settings  # absolute paths: a worker's working directory is not the coordinator's
    data_version: int  # the experts' version the coordinator's index was at
    limit: int  # candidates per demand
    demands: tuple[Demand, ...]
    explain: int = 0  # the first this many candidates come explained (see `score_demand`)


@dataclass(frozen=True, slots=True)
class PartitionResult:
    number: int
    scores: tuple[DemandScores, ...]
    stale: int | None = None  # the store's data_version when the task's could not be loaded
    worker: str = ""  # host:pid, for the log
    seconds: float = 0.0


# -- the worker side ---------------------------------------------------------------------------------
class _PinnedEngine(Engine):
    """An engine that keeps the index it loaded first: a worker scores every partition of a run
    against one snapshot, and never syncs (and so never saves) the index. It reads the store only."""

    _pinned: Any = None

    def ensure_index(self) -> Any:
        if self._pinned is None:
            self._pinned = super().ensure_index()
        return self._pinned


_lock = threading.Lock()
_engines: dict[tuple[str, str, str], tuple[int, _PinnedEngine]] = {}  # per database: (version, engine)
_tokenizers: dict[str, ChineseTokenizer] = {}  # per corpora folder: jieba takes a second to load


def _worker_engine(settings: Settings, version: int) -> tuple[_PinnedEngine | None, int]:
    """This worker process's engine at `version` (loaded once, reused by later partitions), or None
    and the store's version when `version` cannot be loaded any more."""
    key = (str(settings.db), str(settings.resolved_index_dir), str(settings.corpora_dir))
    with _lock:
        cached = _engines.get(key)
        if cached is not None and cached[0] == version:
            return cached[1], version
        engine = _PinnedEngine(settings, tokenizer=_tokenizers.get(key[2]))
        _tokenizers.setdefault(key[2], engine.tokenizer)
        try:
            now = engine.store.data_version
            if now == version:
                now = engine.ensure_index().data_version  # the store may have moved just now
        except BaseException:
            engine.close()
            raise
        if now != version:  # the experts changed since the coordinator loaded its index
            engine.close()
            return None, now
        # The engine this replaces may still serve a partition on another thread: the garbage
        # collector closes it once that is done.
        _engines[key] = (version, engine)
        return engine, version


def score_partition(task: PartitionTask) -> PartitionResult:
    """Score one partition (runs on a worker). Reads the database and the saved index; writes nothing."""
    started = time.perf_counter()
    engine, version = _worker_engine(task.settings, task.data_version)
    where = f"{os.uname().nodename}:{os.getpid()}"
    if engine is None:
        return PartitionResult(task.number, (), stale=version, worker=where)
    scores = tuple(score_demands(engine, task.demands, task.limit, explain=task.explain))
    return PartitionResult(task.number, scores, worker=where, seconds=time.perf_counter() - started)


# -- the coordinator side ----------------------------------------------------------------------------
def _worker_slots(executor: Any) -> int:
    nthreads = getattr(executor, "nthreads", None)
    if callable(nthreads):  # dask.distributed.Client: {worker address: threads}
        return max(1, sum(nthreads().values()))
    return max(1, int(getattr(executor, "_max_workers", 0) or os.cpu_count() or 1))


def worker_settings(settings: Settings) -> Settings:
    """`settings` with absolute paths, as a worker on this host must see them."""
    if str(settings.db) == ":memory:":
        raise InputError("an in-memory database cannot be shared with workers: use a database file")
    return settings.model_copy(update={
        "db": settings.db.resolve(), "index_dir": settings.resolved_index_dir.resolve(),
        "corpora_dir": settings.corpora_dir.resolve(),
    })


class PartitionedScorer:
    """A `matcher.batch.Scorer` that scores partitions of the pending demands on an executor.

    `partitions`: how many (default: 4 per worker thread of the executor, at most one per demand).
    `settings`: the workers' settings when their paths differ from the coordinator's (another host
    mounting the database and index elsewhere); default: the engine's, with absolute paths.
    """

    def __init__(self, executor: Any, partitions: int | None = None, *,
                 settings: Settings | None = None) -> None:
        if partitions is not None and partitions < 1:
            raise InputError(f"the number of partitions must be at least 1, not {partitions}")
        self.executor = executor
        self.partitions = partitions
        self.settings = settings

    def __call__(self, engine: Engine, run: BatchRun, pending: Sequence[Demand]) -> Iterator[DemandScores]:
        if not pending:
            return
        settings = self.settings or worker_settings(engine.settings)
        n = self.partitions or _worker_slots(self.executor) * PARTITIONS_PER_WORKER
        n = min(n, len(pending))
        version = engine.ensure_index().data_version  # saved, so the workers load it, not rebuild it
        groups = [(i, g) for i, g in enumerate(partition(pending, n)) if g]
        log.info("run %s: scoring %d demands in %d partitions", run.run_key, len(pending), len(groups))
        done: queue.Queue[Any] = queue.Queue()
        out: dict[int, tuple[Any, PartitionTask]] = {}  # by id(future): not every future is hashable
        retries = [0] * n

        def submit(task: PartitionTask) -> None:
            future = self.executor.submit(score_partition, task)
            out[id(future)] = (future, task)
            future.add_done_callback(done.put)  # in completion order, whichever the executor

        try:
            for number, group in groups:
                submit(PartitionTask(number, settings, version, run.candidates, group, explain=run.top))
            while out:
                future, task = out.pop(id(done.get()))
                result: PartitionResult = future.result()  # a worker's exception fails the run here
                if result.stale is None:
                    log.debug("run %s: partition %d (%d demands) scored on %s in %.1f s", run.run_key,
                              task.number, len(result.scores), result.worker, result.seconds)
                    yield from result.scores
                    continue
                retries[task.number] += 1
                if retries[task.number] > MAX_STALE_RETRIES:
                    # Not an input error: the run is marked failed and the next attempt resumes it.
                    raise RuntimeError(f"the experts kept changing while partition {task.number} was sent "
                                       f"to the workers ({MAX_STALE_RETRIES} times); run the batch again")
                log.info("run %s: the experts changed during the run (version %d -> %d); partition %d "
                         "goes out again on the index brought up to date", run.run_key, task.data_version,
                         result.stale, task.number)
                version = engine.ensure_index().data_version
                submit(PartitionTask(task.number, settings, version, task.limit, task.demands, explain=task.explain))
        finally:
            for future, _ in out.values():  # stopped early (a failure, an interrupt): drop the rest
                future.cancel()


def run_batch_distributed(engine: Engine, options: BatchOptions, executor: Any, *,
                          partitions: int | None = None, settings: Settings | None = None,
                          progress: Progress | None = None) -> BatchResult:
    """`matcher.batch.run_batch` with phase 1 scored in partitions on `executor` (see the module
    docstring); the results, resumability and idempotence are `run_batch`'s."""
    return run_batch(engine, options, progress=progress,
                     scorer=PartitionedScorer(executor, partitions, settings=settings))


@contextmanager
def connect(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A `dask.distributed.Client` to the scheduler at `scheduler` (tcp://host:8786), or to a local
    cluster of `workers` processes started for the block; None when neither is given."""
    if scheduler is None and workers is None:
        yield None
        return
    if scheduler is not None and workers is not None:
        raise InputError("give either --scheduler (an existing Dask cluster) or --workers (a local one)")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, not {workers}")
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("scoring on a cluster needs Dask: pip install 'jinqiao-matcher[scale]'") from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from exc
        with client:
            yield client
        return
    # One thread per process: scoring is CPU-bound Python and numpy, and each process holds one index.
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client
