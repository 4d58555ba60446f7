"""The nightly batch's lexical scoring as blocked sparse matrix products, against one demand at a time.

    python benchmarks/batch_product.py --experts 100000 --demands 64 --block 8

Builds the synthetic pool (`synth.experts`, the pool that repeats fields: its build is quick) in a
temporary folder, then scores the same demands' word BM25 two ways and prints the time per demand
and whether the scores are equal bit for bit:

- one at a time: `TermIndex.score`, what `Engine.demand_candidates` does for each demand;
- blocked: the demands of a block as rows of a sparse (demands x terms) matrix, each row's terms in
  the order the per-demand path reads them and weighted as it weighs them, times the (terms x units)
  matrix of entry weights (the stored base's arrays, reinterpreted, no copy of the postings): one
  scipy sparse product per block, each row's scores summed in the same order, so equal to the bit.

Not a test: it prints figures (README, Performance).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synth  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experts", type=int, default=10_000)
    ap.add_argument("--demands", type=int, default=64)
    ap.add_argument("--block", type=int, default=8)
    args = ap.parse_args()

    from matcher.config import Settings
    from matcher.engine import Engine
    from matcher.ranking import topk

    with tempfile.TemporaryDirectory(prefix="matcher-product-") as tmp:
        settings = Settings(db=Path(tmp) / "m.db", char_abstracts=False, encoder="none",
                            weight_dense=0.0)
        engine = Engine(settings)
        engine.store.upsert_experts(synth.experts(args.experts))
        index = engine.rebuild()
        view, base, budget = index.words_, index.words_._base, index.params.max_postings or None
        queries = [engine.query(d.text, " ".join([d.title, *d.keywords]))
                   for d in synth.demands(args.demands)]

        t = time.perf_counter()
        one = [view.score(q.weights, max_postings=budget) for q in queries]
        t_one = (time.perf_counter() - t) / len(queries)

        t = time.perf_counter()
        weights = (base.data / (base.data + view._row_factor[base.indices])).astype(np.float32)
        terms_by_units = sp.csr_matrix((weights, base.indices, base.indptr),
                                       shape=(base.shape[1], base.shape[0]))
        t_prep = time.perf_counter() - t
        t = time.perf_counter()
        blocked = []
        for start in range(0, len(queries), args.block):
            cols, vals, ptr = [], [], [0]
            for q in queries[start : start + args.block]:
                ids, ws = view.query_vector(q.weights)
                plan = topk.plan(view, ids, ws, view._budget(ids, ws, budget))
                cols.append(plan.cols)
                vals.append(plan.mult)
                ptr.append(ptr[-1] + len(plan.cols))
            demands = sp.csr_matrix((np.concatenate(vals), np.concatenate(cols), np.asarray(ptr)),
                                    shape=(len(ptr) - 1, base.shape[1]))
            scores = demands @ terms_by_units
            for i in range(scores.shape[0]):
                row = np.zeros(base.shape[0], dtype=np.float32)
                part = slice(scores.indptr[i], scores.indptr[i + 1])
                row[scores.indices[part]] = scores.data[part]
                blocked.append(row)
        t_blocked = (time.perf_counter() - t) / len(queries)
        same = all(np.array_equal(a, b) for a, b in zip(one, blocked, strict=True))
        engine.close()
    print(f"{args.experts:,} experts, {index.words_.n_rows_:,} units, {len(queries)} demands, "
          f"blocks of {args.block}")
    print(f"word BM25 one demand at a time: {t_one * 1000:.1f} ms a demand")
    print(f"word BM25 blocked products:     {t_blocked * 1000:.1f} ms a demand (+ {t_prep:.1f} s once: "
          f"the entry weights); equal to the bit: {same}")


if __name__ == "__main__":
    main()
