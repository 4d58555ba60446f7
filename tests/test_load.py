"""Load: 32 clients hit POST /match on a real uvicorn server while experts are added through the API
and full re-indexes run. Every response must be a 200 from one consistent index: ranks 1..n, scores
descending, every expert real. Timing is printed (benchmarks/load.py reports it in full); the test
asserts correctness only.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api import create_app
from matcher.config import Settings
from matcher.engine import Engine
from matcher.models import Expert

from .conftest import serve_in_thread, synthetic_expert  # noqa: E402

KEY = "load-test-key-000000001-39f545cd21f1ca"
CLIENTS = 32
MIN_WRITES = 5
MIN_REBUILDS = 2
SECONDS = 8.0
QUERIES = [
    "我司生产不锈钢保温杯，真空层激光焊接合格率低，寻求焊接工艺改进方案",
    "动力锂电池BMS均衡控制策略优化，电池包一致性差",
    "SiC MOSFET 栅氧可靠性问题，功率模块寿命短",
    "PLC控制的焊接生产线需要机器视觉检测焊缝缺陷",
    "酸奶发酵风味不稳定，乳酸菌菌种筛选",
    "光伏组件隐裂检测与EL图像识别",
]


def check_consistent(body: dict[str, Any], known: set[str]) -> str | None:
    """None when the list could only come from one index; else what is wrong."""
    rows = body["data"]
    if body["count"] != len(rows):
        return "count differs from the rows"
    if [r["rank"] for r in rows] != list(range(1, len(rows) + 1)):
        return f"ranks {[r['rank'] for r in rows]}"
    scores = [r["score"] for r in rows]
    if scores != sorted(scores, reverse=True) or any(s <= 0 for s in scores):
        return f"scores not descending and positive: {scores}"
    ids = [r["expert"]["id"] for r in rows]
    if len(set(ids)) != len(ids):
        return f"an expert twice: {ids}"
    unknown = [i for i in ids if i not in known]
    if unknown:
        return f"experts that were never written: {unknown}"
    for r in rows:
        if "contact" in r["expert"]:
            return "contact details without a key"
        if not r["explanation"]["terms"]:
            return f"{r['expert']['id']} has no matched terms"
    return None


def run_load(url: str, engine: Engine, *, clients: int = CLIENTS, seconds: float = SECONDS,
             first_id: int = 1000) -> dict[str, Any]:
    """Clients on /match, one writer adding experts through the API, one thread re-indexing in full."""
    stop = threading.Event()
    known = {e.id for e in engine.store.iter_experts()}
    known_lock = threading.Lock()
    latencies: list[float] = []
    problems: list[str] = []
    counts = {"requests": 0, "writes": 0, "rebuilds": 0}
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            i = n
            while not stop.is_set():
                text = QUERIES[i % len(QUERIES)]
                i += 1
                t0 = time.perf_counter()
                try:
                    res = http.post("/api/v1/match", json={"text": text, "top_k": 10})
                except httpx.HTTPError as exc:
                    with lock:
                        problems.append(f"transport: {exc!r}")
                    continue
                dt = time.perf_counter() - t0
                with known_lock:
                    snapshot = set(known)
                problem = (f"HTTP {res.status_code}: {res.text[:200]}" if res.status_code != 200
                           else check_consistent(res.json(), snapshot))
                with lock:
                    counts["requests"] += 1
                    latencies.append(dt)
                    if problem:
                        problems.append(problem)

    def writer() -> None:
        with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": KEY}) as http:
            i = first_id
            while not stop.is_set():
                body = synthetic_expert(i)
                with known_lock:  # known before it can appear in any answer
                    known.add(body["id"])
                res = http.post("/api/v1/experts", json=body)
                with lock:
                    counts["writes"] += 1
                    if res.status_code != 201:
                        problems.append(f"write HTTP {res.status_code}: {res.text[:200]}")
                i += 1
                time.sleep(0.05)

    def reindexer() -> None:
        while not stop.is_set():
            engine.rebuild()  # a full re-index, swapped in atomically under readers
            with lock:
                counts["rebuilds"] += 1
            time.sleep(0.2)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    threads += [threading.Thread(target=writer), threading.Thread(target=reindexer)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    # On a slow or busy machine writes queue behind the re-index: keep the load on (bounded) until
    # the minimum of writes and re-indexes has happened, so the check is about correctness, not speed.
    deadline = time.perf_counter() + 120
    while (counts["writes"] < MIN_WRITES or counts["rebuilds"] < MIN_REBUILDS) and time.perf_counter() < deadline:
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(120)
    elapsed = time.perf_counter() - started
    lat = sorted(latencies)
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000) if lat else (lambda q: float("nan"))
    return {
        **counts, "errors": len(problems), "problems": problems[:10], "seconds": elapsed,
        "rps": counts["requests"] / elapsed, "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(lat) * 1000 if lat else float("nan"),
    }


@pytest.fixture()
def live(tmp_path: Path, tokenizer) -> Iterator[tuple[str, Engine]]:
    settings = Settings(db=tmp_path / "load.db", api_keys=(KEY,))
    engine = Engine(settings, tokenizer=tokenizer)
    engine.upsert_experts(Expert.from_dict(synthetic_expert(i)) for i in range(120))
    engine.ensure_index()
    with serve_in_thread(create_app(settings, engine=engine)) as url:
        yield url, engine
    engine.close()


def test_32_clients_during_writes_and_full_reindexes_see_only_consistent_answers(live) -> None:
    url, engine = live
    report = run_load(url, engine)
    print(f"\n[load] {report['requests']} requests from {CLIENTS} clients in {report['seconds']:.1f} s "
          f"({report['rps']:.0f}/s), {report['writes']} experts added, {report['rebuilds']} full re-indexes, "
          f"{report['errors']} errors; p50 {report['p50_ms']:.0f} ms, p95 {report['p95_ms']:.0f} ms")
    assert report["errors"] == 0, report["problems"]
    assert report["requests"] >= CLIENTS, "every client got answers"
    assert report["writes"] >= MIN_WRITES and report["rebuilds"] >= MIN_REBUILDS, report
    # Nothing written was lost: every expert added is in the store and in the index.
    stored = {e.id for e in engine.store.iter_experts()}
    assert len(stored) == 120 + report["writes"]
    newest = f"L{1000 + report['writes'] - 1:05d}"
    assert newest in stored
    assert newest in engine.ensure_index().index.expert_ids_
