"""The batch in blocks and the query path on Dask shards, at 10,000 synthetic experts.

    nice python benchmarks/blocks_shards.py --workdir /tmp/pool10k            # both parts
    nice python benchmarks/blocks_shards.py --workdir /tmp/pool10k --part shards --workers 2 4

The pool is `synth.experts(n)` (benchmarks/synth.py, recombined from ../shared/bench/cdl) with the
dense vectors made up as benchmarks/scale.py makes them (written into the vector cache, so the
dense signal's cost is in); it is built once in `--workdir` and reused. Printed, with the load
average before and after each part (the machine is shared: compare figures of one run):

- blocks: phase 1 of the nightly batch (`score_demand` per demand, the 300 best allowed experts, the
  first 10 explained) one demand at a time and in blocks of `--block` (`score_demands`), demands/s
  each, and whether the two give the same experts in the same order;
- shards: per query, the single index's `score` and the sharded one's on a `LocalCluster` of
  `--workers` processes (one shard each): p50 / p95 ms, the shards' load time, units per shard,
  each worker's resident memory, and whether every ranking is the single index's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synth  # noqa: E402


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _rss_bytes() -> int:
    """This process's resident memory (runs on a worker)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def pool(workdir: Path, n: int, demands: int):  # noqa: ANN201
    """The engine over the pool in `workdir` (built with made-up vectors on first use)."""
    from scale import _synthetic_vectors

    from matcher.config import Settings
    from matcher.engine import Engine

    settings = Settings(db=workdir / "matcher.db", char_abstracts=False)
    texts = [d.text for d in synth.demands(demands)]
    if not (workdir / "built").exists():
        workdir.mkdir(parents=True, exist_ok=True)
        engine = Engine(settings)
        engine.store.upsert_experts(synth.experts(n))
        index = engine.rebuild()
        _synthetic_vectors(engine, index, texts)
        engine.close()
        (workdir / "built").write_text(str(n))
    engine = Engine(settings)
    engine.tokenizer.initialize()
    assert engine.ensure_index().index.dense_ is not None
    return engine


def blocks(engine, demands: list, block: int) -> dict[str, object]:  # noqa: ANN001
    from matcher.batch import score_demand, score_demands

    out: dict[str, object] = {"demands": len(demands), "block": block, "load_before": _load()}
    score_demand(engine, demands[0], 300, explain=10)  # warm-up: first-use allocations
    t = time.perf_counter()
    one = [score_demand(engine, d, 300, explain=10) for d in demands]
    out["one_at_a_time_per_s"] = len(demands) / (time.perf_counter() - t)
    t = time.perf_counter()
    many = list(score_demands(engine, demands, 300, explain=10, block=block))
    out["blocks_per_s"] = len(demands) / (time.perf_counter() - t)
    out["speed-up"] = out["blocks_per_s"] / out["one_at_a_time_per_s"]
    out["same_rankings"] = all([c.expert_id for c in a.ranked] == [c.expert_id for c in b.ranked]
                               for a, b in zip(one, many, strict=True))
    out["load_after"] = _load()
    return out


def shards(engine, texts: list[str], workers: int) -> dict[str, object]:  # noqa: ANN001
    import distributed

    from matcher.rank import best_first
    from matcher.sharded import ShardedIndex

    out: dict[str, object] = {"workers": workers, "queries": len(texts), "load_before": _load()}
    index = engine.ensure_index().index
    queries = [engine.query(t) for t in texts]
    single, on_cluster, same = [], [], True
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        t = time.perf_counter()
        sharded = ShardedIndex(engine, client)
        out["shards_load_s"] = time.perf_counter() - t
        out["units_per_shard"] = sharded.units
        sharded.score(queries[0])
        for q in queries:
            t = time.perf_counter()
            want = index.score(q)
            single.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            got = sharded.score(q)
            on_cluster.append((time.perf_counter() - t) * 1e3)
            same &= list(best_first(got.total)) == list(best_first(want.total))
        rss = client.run(_rss_bytes)
        out["worker_rss_mb"] = sorted(round(v / 2**20) for v in rss.values())
        sharded.close()
    out.update({"single_p50_ms": _pct(single, 50), "single_p95_ms": _pct(single, 95),
                "sharded_p50_ms": _pct(on_cluster, 50), "sharded_p95_ms": _pct(on_cluster, 95),
                "same_rankings": same, "load_after": _load()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True, help="where the pool is built once and reused")
    ap.add_argument("--experts", type=int, default=10_000)
    ap.add_argument("--demands", type=int, default=256, help="demands of the batch part")
    ap.add_argument("--queries", type=int, default=60, help="queries of the shards part")
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--part", choices=["blocks", "shards", "both"], default="both")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    engine = pool(args.workdir, args.experts, max(args.demands, args.queries))
    demands = list(synth.demands(max(args.demands, args.queries)))
    results: list[dict[str, object]] = []
    if args.part in ("blocks", "both"):
        results.append({"part": "blocks", **blocks(engine, demands[: args.demands], args.block)})
        print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    if args.part in ("shards", "both"):
        for w in args.workers:
            results.append({"part": "shards", **shards(engine, [d.text for d in demands[: args.queries]], w)})
            print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    engine.close()
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
