"""Team recommendation on a multi-aspect benchmark joined from single demands (issue 18).

    python benchmarks/team_bench.py                       # ../shared/bench/enterprise beside the checkout
    python benchmarks/team_bench.py BENCHDIR --json       # another folder of the same shape; a JSON line too

Builds the joined demands at run time from BENCHDIR (experts.jsonl, queries.jsonl, qrels.tsv; nothing
is copied into the repository): with a fixed seed, 40 two-part and 20 three-part demands in each half
(tune, held-out) of the folder's demands, parts always from demands with disjoint judged experts.
Prints, per half, coverage@3 and @5 (share of a joined demand's parts with one of their relevant
experts among the k) for the team (`matcher.team.recommend_team`) and the plain top-k list
(`Engine.match` on the same text), nDCG@10 of the union for the plain list and the team's list (the
team of 3, then the rest of the plain ranking), the ceiling that the parts' own rankings allow, and
how often a one-topic demand of the folder is one aspect with `matcher match`'s first expert.
Not a test: figures move with the ranker; rerun after it changes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matcher.evaluate import load_benchmark  # noqa: E402
from matcher.store import Store  # noqa: E402
from matcher.team_eval import (  # noqa: E402
    JOIN_SEED,
    bench_engine,
    ceiling_reached,
    evaluate_teams,
    format_team_table,
    joined_demands,
    part_ceiling,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ROOT.parent / "shared" / "bench" / "enterprise"
    parser.add_argument("benchdir", nargs="?", type=Path, default=default, help="a benchmark folder")
    parser.add_argument("--seed", type=int, default=JOIN_SEED, help="seed of the halves and of the joins")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    parser.add_argument("--run", type=Path, help="write every joined demand's rankings here (JSON lines), "
                        "to compare two versions")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import jieba

    jieba.setLogLevel(logging.WARNING)
    bench = load_benchmark(args.benchdir)
    joined = joined_demands(bench, seed=args.seed)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jinqiao-matcher" / "eval.db"
    with tempfile.TemporaryDirectory(prefix="team-bench-") as tmp:
        t = time.perf_counter()
        # dense vectors from `matcher eval`'s cache when it has them (else encoded here, once)
        vectors = Store(cache) if cache.exists() else None
        engine = bench_engine(bench, tmp, vectors=vectors)
        if vectors is not None:
            vectors.close()
        built = time.perf_counter() - t
        result = evaluate_teams(engine, joined, bench.queries)
        each: dict[str, float] = {}
        ceiling = {k: part_ceiling(engine, bench, joined, k, each if k == 3 else None) for k in (3, 5)}
        reached = ceiling_reached(result, each, 3)
        engine.close()
    if args.run:
        args.run.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.per_demand),
                            encoding="utf-8")
    print(f"{args.benchdir}: {len(bench.experts)} experts, {len(bench.queries)} demands, "
          f"{len(joined)} joined demands (seed {args.seed}); index built in {built:.1f} s")
    print(format_team_table(result))
    for split in ("tune", "held-out", "all"):
        print(f"ceiling of the parts' own rankings ({split}): coverage@3 {ceiling[3][split]:.4f}, "
              f"coverage@5 {ceiling[5][split]:.4f}; the team of 3 reaches it on {reached[split]:.1%} "
              "of the joined demands")
    if args.json:
        print(json.dumps({"table": result.table, "single": result.single, "ceiling": ceiling,
                          "ceiling reached": reached, "timing_ms": result.timing,
                          "seconds": round(result.seconds, 1)}, ensure_ascii=False))


if __name__ == "__main__":
    main()
