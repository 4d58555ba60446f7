"""The nightly batch scored in partitions on a real Dask LocalCluster (two worker processes): the
same results as one process, resumable, deterministic partitions, workers that write nothing."""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import pickle
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from matcher.batch import BatchOptions, DemandScores, run_batch, score_demands
from matcher.cli import app
from matcher.distributed import (
    PartitionTask,
    partition,
    partition_of,
    run_batch_distributed,
    score_partition,
    worker_settings,
)
from matcher.engine import Engine
from matcher.errors import InputError
from matcher.models import Demand, Expert
from matcher.records import BatchRun
from matcher.store import Store

from .conftest import build_template, copy_db, open_engine

distributed = pytest.importorskip("distributed")

KEY = "2026-11-23"
# An expert who matches demand Q0001 (保温杯真空层激光焊接), added during a run.
NEWCOMER = Expert.from_dict({
    "id": "X-NEW", "name": "韩新焊", "title": "研究员", "institution": "金华激光焊接研究所",
    "research_fields": ["不锈钢保温杯激光焊接", "真空层焊接合格率", "焊接工艺改进"],
    "bio": "专注不锈钢保温杯真空层激光焊接工艺，提升焊接合格率。",
})


@pytest.fixture(scope="module")
def template(tmp_path_factory, tokenizer) -> Path:
    """The demo corpus with its index built, plus a demand with no text (scored as an error)."""
    db = build_template(tmp_path_factory.mktemp("dist-template"), tokenizer)
    store = Store(db)
    store.upsert_demands([Demand.from_dict({"id": "Z-EMPTY", "enterprise": "某公司"})])
    store.close()
    # The demand bank (every expert's popularity over the stored demands) as of these demands: an
    # expert added later, by whichever process, gets none until the demands change, so a run in
    # which one arrives mid-way can equal one in which it was there from the start.
    engine = open_engine(db, tokenizer)
    engine.refresh_bank()
    engine.close()
    return db


def snapshot(store: Store, run: BatchRun) -> dict[str, object]:
    """Everything a run stores, in a comparable form (floats exact: the same index, the same code)."""
    table = store.batch_candidate_table(run.id)
    return {
        "candidates": list(zip(table.demand_ids, table.expert_ids, table.ranks.tolist(),
                               table.scores.tolist(), strict=True)),
        "exclusions": store.list_batch_exclusions(run.id),
        "outcomes": store.list_batch_outcomes(run.id),
        "matches": [(m.demand_id, m.expert_id, m.rank, m.score, m.candidate_rank, m.explanation)
                    for m in store.list_batch_matches(run.id)],
        "statuses": sorted((d.id, d.status) for d in store.iter_demands()),
        "counts": (run.status, run.demands, run.matched, run.unfilled, run.recommendations, run.exclusions,
                   run.total_score),
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory, template, tokenizer) -> dict[str, object]:
    """The single-process run everything distributed must equal."""
    engine = open_engine(copy_db(template, tmp_path_factory.mktemp("dist-single")), tokenizer)
    result = run_batch(engine, BatchOptions(run_key=KEY))
    snap = snapshot(engine.store, result.run)
    engine.close()
    assert snap["counts"][1] == 57 and snap["counts"][4] > 0
    return snap


@pytest.fixture(scope="module")
def client():
    # Worker processes (spawned, one thread each), as on a real cluster: each loads its own engine.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        # Let the workers import the matcher while this process builds the template.
        warm = [c.submit(importlib.import_module, "matcher.distributed", workers=[w], pure=False)
                for w in c.scheduler_info()["workers"]]
        yield c
        del warm


def scored_on(caplog: pytest.LogCaptureFixture) -> list[str]:
    return re.findall(r"scored on (\S+) in", "\n".join(r.getMessage() for r in caplog.records))


# -- partitions --------------------------------------------------------------------------------------
def test_partitions_are_deterministic_complete_and_balanced() -> None:
    demands = [Demand(id=f"D{i:05d}") for i in range(10_000)]
    groups = partition(demands, 8)
    assert len(groups) == 8 and sorted(d.id for g in groups for d in g) == [d.id for d in demands]
    assert all(1100 < len(g) < 1400 for g in groups), [len(g) for g in groups]
    assert all(list(g) == sorted(g, key=lambda d: d.id) for g in groups), "each keeps the given order"
    # A demand's partition depends on its id alone: not on order, on the others, or on a resumed run.
    shuffled = partition(demands[::-1], 8)
    assert [set(g) for g in shuffled] == [set(g) for g in groups]
    rest = partition(demands[::3], 8)
    assert all(set(r) <= set(g) for r, g in zip(rest, groups, strict=True))
    # Pinned values: the same on every machine and run (Python's hash() is salted per process; the
    # cluster test checks that worker processes agree).
    ids = ("Q0001", "Q0002", "Q0056", "需求-2024-001", "Z-EMPTY")
    assert [partition_of(i, 8) for i in ids] == [5, 4, 3, 0, 7]
    with pytest.raises(InputError, match="at least 1"):
        partition_of("Q0001", 0)


def test_dask_stays_optional() -> None:
    script = (
        "import sys\n"
        "import matcher, matcher.batch, matcher.cli, matcher.distributed\n"
        "assert 'dask' not in sys.modules and 'distributed' not in sys.modules, 'dask was imported'\n"
        "sys.modules['distributed'] = None  # as if it were not installed\n"
        "from matcher.errors import InputError\n"
        "try:\n"
        "    with matcher.distributed.connect(workers=2):\n"
        "        pass\n"
        "except InputError as exc:\n"
        "    print(exc.message)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "pip install 'jinqiao-matcher[scale]'" in out.stdout


# -- on the cluster ----------------------------------------------------------------------------------
def test_the_distributed_run_stores_what_the_single_process_run_stores(client, template, reference, tmp_path,
                                                                       tokenizer, caplog) -> None:
    engine = open_engine(copy_db(template, tmp_path), tokenizer)
    with caplog.at_level(logging.DEBUG, logger="matcher.distributed"):
        result = run_batch_distributed(engine, BatchOptions(run_key=KEY), client, partitions=5)
    assert result.scored == 57 and result.resumed == 0
    assert snapshot(engine.store, result.run) == reference
    workers = scored_on(caplog)
    assert len(workers) == 5, "one task per partition"
    assert all(not w.endswith(f":{os.getpid()}") for w in workers), "scored in the worker processes"
    # The workers partition as this process does.
    ids = [d.id for d in engine.store.iter_demands()]
    assert client.gather(client.map(partition_of, ids, [5] * len(ids))) == [partition_of(i, 5) for i in ids]
    engine.close()


def test_an_interrupted_distributed_run_resumes_to_the_same_results(client, template, reference, tmp_path,
                                                                    tokenizer, caplog) -> None:
    db = copy_db(template, tmp_path)
    engine = open_engine(db, tokenizer)
    store = engine.store

    def stop(phase: str, done: int, total: int) -> None:
        if phase == "score" and done == total // 2:
            raise RuntimeError("the coordinator was stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        run_batch_distributed(engine, BatchOptions(run_key=KEY), client, partitions=6, progress=stop)
    run = store.get_batch_run(KEY)
    assert run.status == "failed" and store.list_batch_matches() == []
    assert store.count_batch_demands(run.id, scored=True) == 57 // 2, "each stored demand is whole"
    engine.close()

    # Resumed from the command line on the same cluster (another partition count: 4 per worker):
    # only the rest is scored, and the night is the single-process night.
    runner = CliRunner()
    help_text = runner.invoke(app, ["batch", "--help"]).output
    assert "--scheduler" in help_text and "--workers" in help_text
    command = ["batch", "--db", str(db), "--run-key", KEY, "--scheduler", client.scheduler.address]
    with caplog.at_level(logging.INFO, logger="matcher"):
        res = runner.invoke(app, command)
    assert res.exit_code == 0, res.output
    assert f"run {KEY}: scoring demands {57 // 2}/57" in res.stderr
    assert f"resuming (attempt 2); {57 // 2} of 57 demands were scored already" in caplog.text
    assert f"scoring {57 - 57 // 2} demands in 8 partitions" in caplog.text
    assert f"run {KEY}: done; 57 demands" in res.stdout
    store = Store(db)
    assert snapshot(store, store.get_batch_run(KEY)) == reference
    again = runner.invoke(app, command)
    assert again.exit_code == 0 and "done already" in again.stdout
    both = runner.invoke(app, ["batch", "--db", str(db), "--scheduler", "tcp://x:1", "--workers", "2"])
    assert both.exit_code == 2 and "either --scheduler" in both.stderr
    store.close()


# -- the worker and the coordinator ------------------------------------------------------------------
def files_digest(db: Path) -> str:
    """The database (with its WAL) and the saved index, byte for byte."""
    h = hashlib.sha256()
    index = Path(f"{db}.index")
    for p in [db, Path(f"{db}-wal"), *sorted(q for q in index.rglob("*") if q.is_file())]:
        if p.exists():
            h.update(str(p).encode() + p.read_bytes())
    return h.hexdigest()


def test_a_worker_reads_one_snapshot_and_writes_nothing(template, tmp_path, tokenizer) -> None:
    db = copy_db(template, tmp_path)
    engine = open_engine(db, tokenizer)
    demands = tuple(d for d in engine.store.iter_demands() if d.id in ("Q0001", "Q0002", "Z-EMPTY"))
    settings = worker_settings(engine.settings)
    assert settings.db.is_absolute() and settings.index_dir.is_absolute()
    v0 = engine.ensure_index().data_version
    engine.upsert_experts([NEWCOMER])  # staff edit an expert after the coordinator pinned v0
    v1 = engine.ensure_index().data_version
    before = files_digest(db)

    stale = score_partition(PartitionTask(0, settings, v0, 300, demands))
    assert (stale.stale, stale.scores) == (v1, ()), "v0 cannot be loaded any more: nothing scored"
    fresh = score_partition(PartitionTask(1, settings, v1, 300, demands))
    expected = tuple(score_demands(engine, demands, 300))  # what this process's batch scores
    assert fresh.stale is None and fresh.scores == expected
    assert "X-NEW" in {c.expert_id for c in expected[0].ranked} and expected[2].error
    assert pickle.loads(pickle.dumps(fresh)) == fresh
    assert files_digest(db) == before, "the worker wrote to the database or the index"

    # Another edit: the worker keeps scoring v1 tasks on v1 (it does not follow, so never saves).
    engine.delete_expert("X-NEW")
    before = files_digest(db)
    assert score_partition(PartitionTask(2, settings, v1, 300, demands)).scores == expected
    assert files_digest(db) == before
    engine.close()


class EditBeforeFirstTask:
    """A concurrent.futures executor, wrapped: staff add an expert (another process's write) just
    as the first partition is sent."""

    def __init__(self, pool: ThreadPoolExecutor, db: Path, tokenizer) -> None:
        self.pool, self.db, self.tokenizer, self.edited = pool, db, tokenizer, False
        self._max_workers = pool._max_workers

    def submit(self, fn, *args):
        if not self.edited:
            self.edited = True
            other = open_engine(self.db, self.tokenizer)
            other.upsert_experts([NEWCOMER])
            other.close()
        return self.pool.submit(fn, *args)


def test_experts_changed_during_the_run_send_partitions_again(template, tmp_path, tokenizer, caplog) -> None:
    # The reference: the newcomer was there before the run.
    ref = open_engine(copy_db(template, tmp_path / "ref"), tokenizer)
    ref.upsert_experts([NEWCOMER])
    expected = snapshot(ref.store, run_batch(ref, BatchOptions(run_key=KEY)).run)
    ref.close()

    db = copy_db(template, tmp_path / "edited")
    engine = open_engine(db, tokenizer)
    with ThreadPoolExecutor(2) as pool, caplog.at_level(logging.INFO, logger="matcher.distributed"):
        executor = EditBeforeFirstTask(pool, db, tokenizer)
        result = run_batch_distributed(engine, BatchOptions(run_key=KEY), executor, partitions=4)
    assert caplog.text.count("the experts changed during the run") == 4, "every partition went out again"
    got = snapshot(engine.store, result.run)
    assert got == expected and ("Q0001", "X-NEW") in {c[:2] for c in got["candidates"]}
    engine.close()


def test_a_scorer_must_return_each_pending_demand_once(template, tmp_path, tokenizer) -> None:
    engine = open_engine(copy_db(template, tmp_path), tokenizer)
    store = engine.store

    def short(engine: Engine, run: BatchRun, pending):
        return [DemandScores(d.id) for d in pending[:3]]

    with pytest.raises(RuntimeError, match="no scores for 54 demands"):
        run_batch(engine, BatchOptions(run_key="short"), scorer=short)
    run = store.get_batch_run("short")
    assert run.status == "failed" and store.count_batch_demands(run.id, scored=True) == 3

    def twice(engine: Engine, run: BatchRun, pending):
        return [DemandScores(pending[0].id), DemandScores(pending[0].id)]

    with pytest.raises(RuntimeError, match="returned twice"):
        run_batch(engine, BatchOptions(run_key="short"), scorer=twice)
    engine.close()
