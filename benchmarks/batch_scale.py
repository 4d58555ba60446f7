"""How long the nightly batch takes: all demo demands, then 1,000 demands x the 1,033 CDL experts.

    python benchmarks/batch_scale.py                       # both
    python benchmarks/batch_scale.py --skip-demo --demands 1000 --candidates 300
    python benchmarks/batch_scale.py --bench ../shared/bench/cdl

The CDL benchmark folder (real data, evaluation only) is read at run time and never copied into
the repository: its experts are imported into a temporary database and its 397 queries become
demands, cycled with new ids up to `--demands`. Each part times the index build apart from the
batch itself (phase 1, scoring and storing each demand's candidates; phase 2, the joint assignment
and writing `matches`), and compares the assignment with greedy first-come on the same candidates.
Prints a table and one JSON line per part.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matcher import assign  # noqa: E402
from matcher.batch import BatchOptions, run_batch  # noqa: E402
from matcher.config import Settings  # noqa: E402
from matcher.engine import Engine  # noqa: E402
from matcher.models import Demand, Expert  # noqa: E402

DEFAULT_BENCH = ROOT.parent / "shared" / "bench" / "cdl"


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def greedy_vs_lp(engine: Engine, run_id: int, top: int, cap: int) -> dict[str, float]:
    """The solver's objective (rank-discounted) against greedy first-come on the stored candidates."""
    store = engine.store
    table = store.batch_candidate_table(run_id)
    if not len(table.scores):
        return {"lp_objective": 0.0, "greedy_objective": 0.0}
    d_ix = {d: i for i, d in enumerate(dict.fromkeys(table.demand_ids))}
    e_ix = {e: i for i, e in enumerate(dict.fromkeys(table.expert_ids))}
    d = np.array([d_ix[x] for x in table.demand_ids])
    e = np.array([e_ix[x] for x in table.expert_ids])
    w = assign.rank_weights(table.scores, table.ranks)
    chosen = {(m.demand_id, m.expert_id) for m in store.list_batch_matches(run_id)}
    mask = np.array([p in chosen for p in zip(table.demand_ids, table.expert_ids, strict=True)])
    t = time.perf_counter()
    gr = assign.greedy(d, e, w, per_demand=top, per_expert=cap)
    return {
        "candidates": len(w),
        "lp_objective": round(float(w[mask].sum()), 3),
        "greedy_objective": round(gr.objective, 3),
        "greedy_recommendations": gr.n_chosen,
        "greedy_seconds": round(time.perf_counter() - t, 2),
    }


def run_part(name: str, engine: Engine, top: int, cap: int, candidates: int) -> dict[str, object]:
    t = time.perf_counter()
    engine.ensure_index()
    index_s = time.perf_counter() - t
    t = time.perf_counter()
    result = run_batch(engine, BatchOptions(run_key=name, top=top, max_per_expert=cap, candidates=candidates))
    total_s = time.perf_counter() - t
    run = result.run
    figures: dict[str, object] = {
        "part": name,
        "experts": engine.store.count_experts(),
        "demands": run.demands,
        "top": top,
        "max_per_expert": cap,
        "candidates_per_demand": candidates,
        "index_build_s": round(index_s, 1),
        "batch_s": round(total_s, 1),
        "phase1_score_s": round(result.seconds_scoring, 1),
        "phase1_ms_per_demand": round(1000 * result.seconds_scoring / max(run.demands, 1), 1),
        "phase2_assign_explain_write_s": round(result.seconds_assigning, 1),
        "phase2_of_which_solver_s": round(result.seconds_solving, 1),
        "recommendations": run.recommendations,
        "demands_matched": run.matched,
        "demands_unfilled": run.unfilled,
        "exclusions": run.exclusions,
        "total_score": round(run.total_score, 3),
        "method": run.method,
    }
    figures.update(greedy_vs_lp(engine, run.id, top, cap))
    return figures


def demo_part(folder: Path, args: argparse.Namespace) -> dict[str, object]:
    engine = Engine(Settings(db=folder / "demo.db"))
    engine.load_demo()
    try:
        return run_part("demo", engine, args.top, args.max_per_expert, args.candidates)
    finally:
        engine.close()


def cdl_part(folder: Path, args: argparse.Namespace) -> dict[str, object]:
    bench = Path(args.bench)
    for name in ("experts.jsonl", "queries.jsonl"):
        if not (bench / name).exists():
            raise SystemExit(f"{bench} has no {name}: pass --bench PATH to the CDL benchmark folder")
    engine = Engine(Settings(db=folder / "cdl.db"))
    engine.add_experts(Expert.from_dict(r) for r in jsonl(bench / "experts.jsonl"))
    queries = jsonl(bench / "queries.jsonl")
    demands = []
    for i in range(args.demands):
        q = dict(queries[i % len(queries)])
        q["id"] = f"N{i + 1:05d}-{q['id']}"  # a new id per copy: every cycle is a new demand
        demands.append(Demand.from_dict(q))
    engine.add_demands(demands)
    try:
        return run_part("cdl", engine, args.top, args.max_per_expert, args.candidates)
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default=str(DEFAULT_BENCH), help="the CDL benchmark folder")
    parser.add_argument("--demands", type=int, default=1000, help="demands made from the CDL queries")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--max-per-expert", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=Settings().batch_candidates)
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-cdl", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import jieba

    jieba.setLogLevel(logging.WARNING)
    parts = []
    with tempfile.TemporaryDirectory(prefix="batch-scale-") as tmp:
        if not args.skip_demo:
            parts.append(demo_part(Path(tmp), args))
        if not args.skip_cdl:
            parts.append(cdl_part(Path(tmp), args))
    for p in parts:
        print(f"\n== {p['part']}: {p['demands']} demands x {p['experts']} experts "
              f"(top {p['top']}, at most {p['max_per_expert']} per expert, {p['candidates_per_demand']} "
              "candidates per demand)")
        width = max(len(k) for k in p)
        for k, v in p.items():
            if k != "part":
                print(f"  {k:<{width}}  {v}")
    for p in parts:
        print(json.dumps(p, ensure_ascii=False))


if __name__ == "__main__":
    main()
