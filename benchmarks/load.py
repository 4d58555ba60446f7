"""Load on POST /api/v1/match: 32 concurrent clients over loopback, while experts are added through
the API and the server re-indexes in full, over and over. Prints throughput and p50/p95/p99.

    python benchmarks/load.py                       # quiet phase (reads only), then busy phase
    python benchmarks/load.py --clients 32 --seconds 20 --phase busy

The server runs in its own process (as in production) on a fresh demo database; in the busy phase
the index is rebuilt in full back to back by `matcher index` in a separate process (`--rebuild
elsewhere`, the default: the server adopts each new index when it is saved) or, as before the
server learned to follow, by `Engine.rebuild()` on a thread inside the server (`--rebuild inside`),
and a client thread adds one expert every 50 ms through POST /api/v1/experts. `--workers N` serves
with `matcher serve --workers N`. Every answer is checked (200, ranks 1..n, scores descending,
every expert real); the errors column must be 0. One JSON line per phase follows the table.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-load-key-0001-1316b67b40c7e6"
QUERIES = [
    "我司生产不锈钢保温杯，真空层激光焊接合格率低，寻求焊接工艺改进方案",
    "动力锂电池BMS均衡控制策略优化，电池包一致性差",
    "SiC MOSFET 栅氧可靠性问题，功率模块寿命短",
    "PLC控制的焊接生产线需要机器视觉检测焊缝缺陷",
    "酸奶发酵风味不稳定，乳酸菌菌种筛选",
    "光伏组件隐裂检测与EL图像识别",
]


def serve(port: int, db: Path, reindex: bool) -> None:  # the `--rebuild inside` server
    """The server process: demo corpus, optional back-to-back full re-indexes, uvicorn."""
    import logging

    import jieba
    import uvicorn

    sys.path.insert(0, str(ROOT))
    from api import create_app
    from matcher.config import Settings
    from matcher.engine import Engine

    logging.basicConfig(level=logging.WARNING)
    jieba.setLogLevel(logging.WARNING)
    settings = Settings(db=db, api_keys=(KEY,))
    engine = Engine(settings)
    engine.load_demo()
    engine.ensure_index()

    def rebuild_forever() -> None:
        n = 0
        while True:
            engine.rebuild()
            n += 1
            (db.parent / "rebuilds").write_text(str(n))

    if reindex:
        threading.Thread(target=rebuild_forever, daemon=True).start()
    uvicorn.run(create_app(settings, engine=engine), host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def consistent(body: dict[str, Any], known: set[str]) -> str | None:
    rows = body["data"]
    if [r["rank"] for r in rows] != list(range(1, len(rows) + 1)) or body["count"] != len(rows):
        return "ranks"
    scores = [r["score"] for r in rows]
    if scores != sorted(scores, reverse=True):
        return "scores not descending"
    ids = [r["expert"]["id"] for r in rows]
    if len(set(ids)) != len(ids) or any(i not in known for i in ids):
        return f"unknown or repeated experts {ids}"
    return None


def rebuild_elsewhere(db: Path, stop: threading.Event, count: list[int]) -> None:
    """`matcher index` in its own process, back to back, until `stop`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MATCHER_DB": str(db), "MATCHER_API_KEYS": KEY}
    while not stop.is_set():
        done = subprocess.run([sys.executable, "-m", "matcher", "index"], env=env, capture_output=True,
                              check=False)
        if done.returncode == 0:
            count[0] += 1


def phase(name: str, clients: int, seconds: float, busy: bool, rebuild: str = "elsewhere",
          workers: int = 1) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="matcher-load-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if rebuild == "inside" and workers == 1:
        cmd = [sys.executable, __file__, "--serve", str(port), str(tmp / "load.db"),
               "--reindex" if busy else "--no-reindex"]
    else:
        env.update(MATCHER_DB=str(tmp / "load.db"), MATCHER_API_KEYS=KEY)
        cmd = [sys.executable, "-m", "matcher", "serve", "--port", str(port), "--workers", str(workers)]
    server = subprocess.Popen(cmd, cwd=tmp, env=env, stderr=(tmp / "server.log").open("w"))
    rebuilt = [0]
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise SystemExit("the server process exited while starting")
            try:
                if httpx.get(url + "/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=60) as http:
            page = http.get("/api/v1/experts", params={"limit": 200}).json()
            known = {e["id"] for e in page["data"]}
            for _ in range(5):  # warm-up, not counted
                http.post("/api/v1/match", json={"text": QUERIES[0]})
        stop = threading.Event()
        lock = threading.Lock()
        lat: list[float] = []
        errors: list[str] = []
        writes = [0]

        def client(n: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as http:
                i = n
                while not stop.is_set():
                    t0 = time.perf_counter()
                    try:
                        body = {"text": QUERIES[i % len(QUERIES)], "top_k": 10}
                        res = http.post("/api/v1/match", json=body)
                        problem = (f"HTTP {res.status_code}" if res.status_code != 200
                                   else consistent(res.json(), set(known)))
                    except httpx.HTTPError as exc:
                        problem = repr(exc)
                    dt = time.perf_counter() - t0
                    i += 1
                    with lock:
                        lat.append(dt)
                        if problem:
                            errors.append(problem)

        def writer() -> None:
            with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": KEY}) as http:
                i = 0
                while not stop.is_set():
                    eid = f"LOAD{i:05d}"
                    known.add(eid)
                    res = http.post("/api/v1/experts", json={
                        "id": eid, "name": f"负载专家{i}", "research_fields": ["激光焊接", "机器视觉检测"],
                        "documents": [{"kind": "paper", "title": f"不锈钢薄壁件激光焊接气孔控制（{i}）"}]})
                    with lock:
                        writes[0] += 1
                        if res.status_code != 201:
                            errors.append(f"write HTTP {res.status_code}")
                    i += 1
                    time.sleep(0.05)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        if busy:
            threads.append(threading.Thread(target=writer))
            if rebuild == "elsewhere":
                threads.append(threading.Thread(target=rebuild_elsewhere,
                                                args=(tmp / "load.db", stop, rebuilt)))
        start = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join(120)
        elapsed = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(60)
    rebuilds_file = tmp / "rebuilds"
    rebuilds = int(rebuilds_file.read_text()) if rebuilds_file.exists() else rebuilt[0]
    lat.sort()

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    return {"phase": name, "rebuild": rebuild if busy else "-", "workers": workers, "clients": clients,
            "seconds": round(elapsed, 1), "requests": len(lat),
            "rps": round(len(lat) / elapsed, 1), "errors": len(errors), "writes": writes[0],
            "full_reindexes": rebuilds, "p50_ms": round(pct(0.50), 1), "p95_ms": round(pct(0.95), 1),
            "p99_ms": round(pct(0.99), 1), "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else None,
            "first_errors": errors[:5]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--phase", choices=["quiet", "busy", "both"], default="both")
    ap.add_argument("--rebuild", choices=["elsewhere", "inside"], default="elsewhere",
                    help="busy phase: `matcher index` in another process, or Engine.rebuild() in the server")
    ap.add_argument("--workers", type=int, default=1,
                    help="server worker processes (matcher serve --workers)")
    ap.add_argument("--serve", nargs=2, metavar=("PORT", "DB"), help=argparse.SUPPRESS)
    ap.add_argument("--reindex", action=argparse.BooleanOptionalAction, default=False, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]), args.reindex)
        return
    phases = ["quiet", "busy"] if args.phase == "both" else [args.phase]
    results = [phase(p, args.clients, args.seconds, busy=p == "busy", rebuild=args.rebuild,
                     workers=args.workers) for p in phases]
    print(f"{'phase':6} {'clients':>7} {'requests':>8} {'req/s':>6} {'errors':>6} {'writes':>6} "
          f"{'reindex':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}")
    for r in results:
        print(f"{r['phase']:6} {r['clients']:>7} {r['requests']:>8} {r['rps']:>6} {r['errors']:>6} "
              f"{r['writes']:>6} {r['full_reindexes']:>7} {r['p50_ms']:>7} {r['p95_ms']:>7} {r['p99_ms']:>7}")
    for r in results:
        print(json.dumps(r, ensure_ascii=False))


if __name__ == "__main__":
    main()
