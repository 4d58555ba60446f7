"""Writes notebooks/evaluation.ipynb (code cells only here; run it with nbclient to fill outputs).

    python notebooks/build_evaluation.py            # write the notebook
    python notebooks/build_evaluation.py --execute  # write and execute it in place (full dev split)
    EVAL_FAST=1 ... --execute                       # a quick run on 60 queries (what CI executes)
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
CELLS = [
    new_markdown_cell(
        "# Ranking evaluation on the CDL expert-assignment benchmark\n\n"
        "Real data (a Chinese regional science fund's project → reviewer assignments; evaluation only, "
        "never shipped). Each signal alone, the fusion, the fusion without each signal, a weight sweep "
        "and Recall@k curves, against the BM25 reference on the **same tokens**. Set `EVAL_FAST=1` for a "
        "quick run on 60 queries (CI does); `MATCHER_BENCH` points to another folder of the same shape."
    ),
    new_code_cell(
        "import os, time\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "%matplotlib inline\n"
        "import matplotlib.pyplot as plt\n"
        "from matcher.config import Settings\n"
        "from matcher.engine import Engine\n"
        "from matcher.store import Store\n"
        "from matcher.evaluate import load_benchmark, mean_metrics, expert_text, METRICS\n"
        "from matcher.index import TermIndex\n"
        "import logging, jieba; jieba.setLogLevel(logging.WARNING)\n"
        "root = Path.cwd() if (Path.cwd() / 'matcher').exists() else Path.cwd().parent\n"
        "bench_dir = Path(os.environ.get('MATCHER_BENCH', root.parent / 'shared' / 'bench' / 'cdl'))\n"
        "FAST = os.environ.get('EVAL_FAST') == '1'\n"
        "bench = load_benchmark(bench_dir)\n"
        "queries = bench.queries[:60] if FAST else bench.queries\n"
        "print(bench_dir, len(bench.experts), 'experts', len(queries), 'queries', 'FAST' if FAST else 'full')"
    ),
    new_code_cell(
        "t0 = time.perf_counter()\n"
        "engine = Engine(Settings(db=Path(':memory:')), store=Store(':memory:'))\n"
        "from functools import lru_cache\n"
        "cached = lru_cache(maxsize=None)(engine.tokenizer.tokenize)\n"
        "tok = lambda s: list(cached(s))\n"
        "index = engine.new_index()\n"
        "index.build_all = True  # also the signals the defaults weigh 0 (whole profile, fields), for the ablation\n"
        "index.fit(bench.experts, tok)\n"
        "reference = TermIndex('bm25').fit([tok(expert_text(e)) for e in bench.experts])\n"
        "ids = [e.id for e in bench.experts]\n"
        "qs = [engine.query(q.text, ' '.join([q.title, *q.keywords])) for q in queries]\n"
        "qrels = {q.id: bench.qrels[q.id] for q in queries if q.id in bench.qrels}\n"
        "def signals_for(knn_k):\n"
        "    index.knn_k = knn_k\n"
        "    return [index.signals(q)[0] for q in qs]\n"
        "SIG = signals_for(engine.settings.knn_k)\n"
        "def run_of(weights, sigs=None):\n"
        "    out = {}\n"
        "    for q, sig in zip(queries, sigs or SIG):\n"
        "        total = index.fuse(sig, weights)\n"
        "        order = np.argsort(-total, kind='stable')[:100]\n"
        "        out[q.id] = [ids[i] for i in order if total[i] > 0]\n"
        "    return out\n"
        "ref_run = {}\n"
        "for q, qq in zip(queries, qs):\n"
        "    s = reference.score(list(qq.tokens)); order = np.argsort(-s, kind='stable')[:100]\n"
        "    ref_run[q.id] = [ids[i] for i in order if s[i] > 0]\n"
        "print(f'fit + signals: {time.perf_counter() - t0:.1f} s')"
    ),
    new_markdown_cell("## Each signal alone, the fusion, and the fusion without each signal"),
    new_code_cell(
        "BASE = {k: v for k, v in engine._weights().items() if v}\n"
        "SIGNALS = ['docs', 'tfidf', 'chars', 'semantic', 'centroid', 'profile', 'fields', 'prior']\n"
        "variants = {f'{s} alone': {s: 1, 'slots': 0} for s in SIGNALS}\n"
        "variants['fusion (defaults)'] = BASE\n"
        "for n in (0, 1, 4):\n"
        "    variants[f'fusion, {n} diversified places'] = {**BASE, 'slots': n}\n"
        "for s in [k for k in BASE]:\n"
        "    variants[f'fusion - {s}'] = {k: v for k, v in BASE.items() if k != s}\n"
        "variants['fusion + prior 0.5'] = {**BASE, 'prior': 0.5}\n"
        "variants['fusion + profile 0.5'] = {**BASE, 'profile': 0.5}\n"
        "table = {name: mean_metrics(run_of(w), qrels) for name, w in variants.items()}\n"
        "table['BM25 reference (same tokens)'] = mean_metrics(ref_run, qrels)\n"
        "print(f\"{'ranker':32s}\" + ''.join(f'{m:>10s}' for m in METRICS))\n"
        "for name, m in table.items():\n"
        "    print(f'{name:32s}' + ''.join(f'{m[k]:10.4f}' for k in METRICS))"
    ),
    new_code_cell(
        "names = list(table)\n"
        "fig, ax = plt.subplots(figsize=(9, 4.5))\n"
        "ax.barh(names, [table[n]['nDCG@10'] for n in names], color=['#888' if 'BM25' in n else '#2a6' for n in names])\n"
        "ax.invert_yaxis(); ax.set_xlabel('nDCG@10'); ax.set_title('Signals, fusion and ablation')\n"
        "fig.tight_layout(); plt.show()"
    ),
    new_markdown_cell("## Recall@k: the fusion against the BM25 reference"),
    new_code_cell(
        "def recall_at(run, k):\n"
        "    return np.mean([len(set(run.get(q, [])[:k]) & r) / len(r) for q, r in qrels.items()])\n"
        "ks = [1, 2, 5, 10, 20, 30, 50, 75, 100]\n"
        "fused = run_of(BASE)\n"
        "fig, ax = plt.subplots(figsize=(6, 4))\n"
        "ax.plot(ks, [recall_at(fused, k) for k in ks], marker='o', label='matcher fusion')\n"
        "ax.plot(ks, [recall_at(ref_run, k) for k in ks], marker='s', label='BM25 reference')\n"
        "ax.set_xscale('log'); ax.set_xlabel('k'); ax.set_ylabel('Recall@k'); ax.legend(); ax.grid(alpha=.3)\n"
        "fig.tight_layout(); plt.show()"
    ),
    new_markdown_cell("## Weight sweep: the character-gram weight and the neighbourhood size"),
    new_code_cell(
        "cw = [0, 0.5, 1, 2, 3]\n"
        "by_char = [mean_metrics(run_of({**BASE, 'chars': w}), qrels)['nDCG@10'] for w in cw]\n"
        "kk = [10, 25, 50, 100, 200]\n"
        "by_k = [mean_metrics(run_of(BASE, signals_for(k)), qrels)['nDCG@10'] for k in kk]\n"
        "index.knn_k = engine.settings.knn_k\n"
        "fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))\n"
        "axes[0].plot(cw, by_char, marker='o'); axes[0].set_xlabel('weight of chars'); axes[0].set_ylabel('nDCG@10')\n"
        "axes[1].plot(kk, by_k, marker='o'); axes[1].set_xlabel('knn_k (documents voting)')\n"
        "for a in axes: a.grid(alpha=.3)\n"
        "fig.tight_layout(); plt.show()\n"
        "print(dict(zip(cw, np.round(by_char, 4))), dict(zip(kk, np.round(by_k, 4))))"
    ),
    new_markdown_cell(
        "## Team recommendation (组团) on joined enterprise demands\n\n"
        "Issue 18. A joined demand is two or three demands of the enterprise-voice benchmark "
        "(`../shared/bench/enterprise`, read here, never copied) put one after the other, parts "
        "always from demands whose judged experts are disjoint; relevant = the union, each expert "
        "tagged with its part. The folder's demands are split into a `tune` half (where "
        "`matcher.team`'s parameters were chosen) and a `held-out` half (fixed seed). "
        "**coverage@k**: the share of a joined demand's parts with one of their relevant experts "
        "among the k (the team of k against the plain top k of the same text); **nDCG@10** of the "
        "union: the plain top 10 against the team of 3 followed by the rest of the plain ranking. "
        "The *ceiling* is the best any split of the k places among the parts' own rankings reaches, "
        "chosen knowing the answers: beyond it only a better ranker helps. "
        "`benchmarks/team_bench.py` prints the same figures; `MATCHER_TEAM_BENCH` points to another "
        "folder of the same shape."
    ),
    new_code_cell(
        "import tempfile\n"
        "from matcher.team_eval import (bench_engine, evaluate_teams, format_team_table, joined_demands,\n"
        "                               part_ceiling)\n"
        "default_team_dir = root.parent / 'shared' / 'bench' / 'enterprise'\n"
        "team_dir = Path(os.environ.get('MATCHER_TEAM_BENCH', default_team_dir))\n"
        "if (team_dir / 'experts.jsonl').exists():\n"
        "    team_bench = load_benchmark(team_dir)\n"
        "    sizes = ((2, 10), (3, 5)) if FAST else ((2, 40), (3, 20))\n"
        "    joined = joined_demands(team_bench, per_split=sizes)\n"
        "    singles = team_bench.queries[:10] if FAST else team_bench.queries\n"
        "    with tempfile.TemporaryDirectory(prefix='team-bench-') as team_tmp:\n"
        "        team_engine = bench_engine(team_bench, team_tmp, tokenizer=engine.tokenizer)\n"
        "        team_result = evaluate_teams(team_engine, joined, singles)\n"
        "        print(team_dir, len(joined), 'joined demands', 'FAST' if FAST else 'full')\n"
        "        print(format_team_table(team_result))\n"
        "        for k in (3, 5):\n"
        "            ceiling = part_ceiling(team_engine, team_bench, joined, k)\n"
        "            print(f'ceiling of the parts own rankings, coverage@{k}:', ceiling)\n"
        "        team_engine.close()\n"
        "else:\n"
        "    print(f'no enterprise benchmark at {team_dir}: team section skipped')"
    ),
]


def main() -> None:
    nb = new_notebook(cells=CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path = HERE / "evaluation.ipynb"
    if "--execute" in sys.argv:
        from nbclient import NotebookClient

        NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(HERE.parent)}}).execute()
    nbformat.write(nb, path)
    print(path)


if __name__ == "__main__":
    main()
