"""Fit the calibrated strength of a match (`matcher.strength`) on the shared benchmarks' labels.

    python benchmarks/fit_strength.py                         # ../shared/bench/{cdl,nsfc,enterprise}
    python benchmarks/fit_strength.py --write                 # and put the numbers into matcher/strength.py
    python benchmarks/fit_strength.py --pairs /tmp/pairs.npz  # keep the measured pairs (or reuse them)

Each benchmark folder is ranked as `matcher eval` ranks it (same engine, same cache of tokens and
dense vectors, the folder's queries as the demand bank); the first ten experts of every query are
explained, and each (query, expert) pair gives the measurements of `matcher.strength.MEASURES`
(the model reads `FEATURES`) and a label: relevant when the folder's qrels say so. A logistic
regression on those, each benchmark weighing the same, gives the probability; the 强 threshold is
the lowest at which at least `--strong-precision` (0.70) of the 强 pairs are relevant on every
benchmark, the 弱 threshold the highest at which at most `--weak-relevant` (0.15) of the 弱 pairs
are. Leave-one-benchmark-out fits show how the calibration carries to a library it has not seen.
The pairs stay outside the repository (they hold benchmark ids); only the fitted numbers are
written.
Not a test: the figures move with the ranker; rerun after it changes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matcher import strength as S  # noqa: E402
from matcher.config import Settings  # noqa: E402
from matcher.engine import Engine  # noqa: E402
from matcher.evaluate import evaluate, load_benchmark  # noqa: E402
from matcher.rank import best_first  # noqa: E402

TOP = 10
NAMES = ("cdl", "nsfc", "enterprise")


def measure(benchdir: Path, cache: Path, top: int = TOP, *,
            encoder: str | None = None) -> dict[str, np.ndarray]:
    """The measurements and labels of the first `top` experts of every query of a benchmark
    (`encoder`: "none" ranks without the dense signal, as the notebook's quick run does)."""
    bench = load_benchmark(benchdir)
    settings = Settings(db=cache) if encoder is None else Settings(db=cache, encoder=encoder)
    engine = Engine(settings)
    prepared = {}
    rows: list[list[float]] = []
    labels: list[int] = []
    ranks: list[int] = []
    queries: list[int] = []
    number = {q.id: i for i, q in enumerate(bench.queries)}

    def prepare(index, experts):  # noqa: ANN001, ANN202 - evaluate's hook, as in `matcher eval`
        prepared["index"] = index = engine.prepare_dense(index, experts)
        return engine.prepare_bank(index, bench.queries)

    def inspect(q, index, query, scored) -> None:  # noqa: ANN001 - evaluate's hook
        picked = [i for _, i in zip(range(top), best_first(scored.total), strict=False)]
        relevant = bench.qrels.get(q.id, set())
        for rank, (i, x) in enumerate(zip(picked, index.explain_many(picked, query, scored), strict=True), 1):
            rows.append([float(x.measures[f]) for f in S.MEASURES])
            labels.append(int(str(index.expert_ids_[i]) in relevant))
            ranks.append(rank)
            queries.append(number[q.id])

    evaluate(bench, engine.tokenizer, engine.new_index,
             lambda t, e: engine.query(t, e, index=prepared.get("index")), top=100, prepare=prepare,
             inspect=inspect)
    engine.close()
    return {"x": np.asarray(rows, dtype=np.float64), "y": np.asarray(labels, dtype=np.int64),
            "rank": np.asarray(ranks, dtype=np.int64), "query": np.asarray(queries, dtype=np.int64)}


def columns(features: tuple[str, ...]) -> list[int]:
    return [S.MEASURES.index(f) for f in features]


def fit(parts: dict[str, dict[str, np.ndarray]], names: list[str],
        features: tuple[str, ...] = S.FEATURES) -> tuple[float, dict[str, float]]:
    """Logistic regression on the pairs of `names`, each benchmark weighing the same."""
    from sklearn.linear_model import LogisticRegression

    x = np.vstack([parts[n]["x"][:, columns(features)] for n in names])
    y = np.concatenate([parts[n]["y"] for n in names])
    w = np.concatenate([np.full(len(parts[n]["y"]), 1.0 / len(parts[n]["y"])) for n in names])
    model = LogisticRegression(C=10.0, max_iter=1000).fit(x, y, sample_weight=w * len(y))
    return float(model.intercept_[0]), {f: float(c) for f, c in zip(features, model.coef_[0], strict=True)}


def probabilities(x: np.ndarray, intercept: float, weights: dict[str, float]) -> np.ndarray:
    features = tuple(weights)
    z = intercept + x[:, columns(features)] @ np.asarray([weights[f] for f in features])
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def thresholds(parts: dict[str, dict[str, np.ndarray]], p: dict[str, np.ndarray], strong_precision: float,
               weak_relevant: float) -> tuple[float, float]:
    """The lowest 强 threshold meeting `strong_precision` on every benchmark that has 强 pairs at it
    (a benchmark may have none), and the highest 弱 threshold meeting `weak_relevant` on every one."""
    grid = np.round(np.arange(0.02, 0.99, 0.01), 2)
    strong = 0.99
    for t in grid:
        ok = True
        for n, part in parts.items():
            sel = p[n] >= t
            if sel.sum() and part["y"][sel].mean() < strong_precision:
                ok = False
        if ok:
            strong = float(t)
            break
    weak = 0.0
    for t in grid:
        if t >= strong:
            break
        if all(part["y"][p[n] < t].mean() <= weak_relevant for n, part in parts.items() if (p[n] < t).any()):
            weak = float(t)
    return strong, weak


def report(parts: dict[str, dict[str, np.ndarray]], p: dict[str, np.ndarray], strong: float,
           weak: float) -> dict:
    from sklearn.metrics import roc_auc_score

    out = {}
    for n, part in parts.items():
        y = part["y"]
        levels = np.where(p[n] >= strong, 0, np.where(p[n] < weak, 2, 1))
        row = {"pairs": int(len(y)), "relevant": round(float(y.mean()), 4),
               "auc": round(float(roc_auc_score(y, p[n])), 4) if 0 < y.sum() < len(y) else None,
               "mean p": round(float(p[n].mean()), 4)}
        for k, name in enumerate(S.LEVELS):
            sel = levels == k
            row[name] = {"n": int(sel.sum()),
                         "relevant": round(float(y[sel].mean()), 4) if sel.any() else None}
        out[n] = row
    return out


def write(intercept: float, weights: dict[str, float], strong: float, weak: float) -> None:
    path = ROOT / "matcher" / "strength.py"
    text = path.read_text(encoding="utf-8")
    block = (f"INTERCEPT = {intercept:.4f}\n"
             f"WEIGHTS: Mapping[str, float] = {{{', '.join(f'{f!r}: {weights[f]:.4f}' for f in weights)}}}\n"
             f"STRONG = {strong:.2f}\nWEAK = {weak:.2f}\n").replace("'", '"')
    new = re.sub(r"(# -- fitted by benchmarks/fit_strength.py[^\n]*\n)(.*?)(# -- end of fitted numbers)",
                 lambda m: m.group(1) + block + m.group(3), text, flags=re.S)
    path.write_text(new, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "bench",
                        help="the folder holding cdl/, nsfc/ and enterprise/")
    parser.add_argument("--pairs", type=Path,
                        help="an .npz to keep the measured pairs in (reused when it exists)")
    parser.add_argument("--strong-precision", type=float, default=0.70)
    parser.add_argument("--weak-relevant", type=float, default=0.15)
    parser.add_argument("--write", action="store_true",
                        help="put the fitted numbers into matcher/strength.py")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import jieba

    jieba.setLogLevel(logging.WARNING)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jinqiao-matcher" / "eval.db"
    t = time.perf_counter()
    parts: dict[str, dict[str, np.ndarray]] = {}
    if args.pairs is not None and args.pairs.exists():
        with np.load(args.pairs, allow_pickle=False) as saved:
            for n in NAMES:
                parts[n] = {k: saved[f"{n}.{k}"] for k in ("x", "y", "rank", "query")}
    else:
        for n in NAMES:
            parts[n] = measure(args.bench / n, cache)
            print(f"{n}: {len(parts[n]['y'])} pairs measured ({time.perf_counter() - t:.0f} s)", flush=True)
        if args.pairs is not None:
            np.savez(args.pairs, **{f"{n}.{k}": v for n, part in parts.items() for k, v in part.items()})
    intercept, weights = fit(parts, list(NAMES))
    p = {n: probabilities(parts[n]["x"], intercept, weights) for n in NAMES}
    strong, weak = thresholds(parts, p, args.strong_precision, args.weak_relevant)
    result = {"intercept": round(intercept, 4), "weights": {f: round(v, 4) for f, v in weights.items()},
              "strong": strong, "weak": weak, "benchmarks": report(parts, p, strong, weak)}
    # How the calibration carries to a library it was not fitted on: fit on two, judge the third.
    held = {}
    for n in NAMES:
        b, w = fit(parts, [m for m in NAMES if m != n])
        q = probabilities(parts[n]["x"], b, w)
        held[n] = report({n: parts[n]}, {n: q}, strong, weak)[n]
    result["left out"] = held
    print(json.dumps(result, ensure_ascii=False, indent=1))
    if args.write:
        write(intercept, weights, strong, weak)
        print("written to matcher/strength.py")
    print(f"{time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
