"""Reverse matching at scale: GET /api/v1/experts/{id}/demands with 10,000 stored demands.

    python benchmarks/reverse_scale.py                     # 10,000 demands, 300 requests
    python benchmarks/reverse_scale.py --demands 50000 --requests 500

A fresh database holds the demo corpus's 105 experts and N synthetic demands (benchmarks/synth.py:
recombined from the CDL benchmark's queries and the demo demands, with enterprises and regions).
`matcher serve` runs in its own process, as in production. The first request builds the index over
the demands (timed separately: tokenising every demand once, then the token cache); then requests go
one after another over one keep-alive connection, cycling through every demo expert, and print
p50/p95/p99 in milliseconds. Then a demand is added through the API and the next request times the
incremental update, and the visit plan (GET /experts/{id}/visit-plan) is timed the same way.
Not a test: it prints figures and one JSON line.
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
import time
from dataclasses import replace
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import synth  # noqa: E402 - after the path is set

from matcher.config import Settings  # noqa: E402
from matcher.engine import Engine  # noqa: E402

KEY = "bench-key-22c0c35eac0816"
DISTRICTS = (
    "浙江省金华市永康市",
    "浙江省金华市武义县",
    "浙江省金华市东阳市",
    "浙江省湖州市长兴县",
    "浙江省湖州市德清县",
    "浙江省杭州市余杭区",
    "浙江省宁波市慈溪市",
    "浙江省嘉兴市海宁市",
    "浙江省台州市温岭市",
    "浙江省绍兴市诸暨市",
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "p50": round(pct(ms, 0.50), 1),
        "p95": round(pct(ms, 0.95), 1),
        "p99": round(pct(ms, 0.99), 1),
        "mean": round(statistics.fmean(ms), 1),
        "max": round(max(ms), 1),
        "n": len(ms),
    }


def build(db: Path, n: int) -> list[str]:
    engine = Engine(Settings(db=db))
    try:
        engine.load_demo()
        demands = [
            replace(
                d,
                enterprise=f"合成企业{i % 3000}",
                region=DISTRICTS[i % len(DISTRICTS)],
                status="new",
                created_at=f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T09:00:00",
            )
            for i, d in enumerate(synth.demands(n))
        ]
        engine.add_demands(demands)
        return [e.id for e in engine.store.iter_experts()]
    finally:
        engine.close()


def serve(db: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MATCHER_API_KEYS": KEY}
    server = subprocess.Popen(
        [sys.executable, "-m", "matcher", "serve", "--port", str(port), "--db", str(db)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return server, f"http://127.0.0.1:{port}"


def wait_for(client: httpx.Client, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300
    while True:
        try:
            if client.get("/api/v1/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("the server did not start")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demands", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "reverse.db"
        t = time.perf_counter()
        experts = build(db, args.demands)
        print(f"database: {len(experts)} experts, {args.demands} demands ({time.perf_counter() - t:.1f} s)")
        server, url = serve(db)
        try:
            with httpx.Client(base_url=url, timeout=600, headers={"X-API-Key": KEY}) as client:
                wait_for(client, server)
                t = time.perf_counter()
                first = client.get(f"/api/v1/experts/{experts[0]}/demands")
                build_s = time.perf_counter() - t
                assert first.status_code == 200, first.text
                for e in experts[:5]:  # warm-up, not counted
                    client.get(f"/api/v1/experts/{e}/demands")
                ms = []
                for i in range(args.requests):
                    t = time.perf_counter()
                    res = client.get(f"/api/v1/experts/{experts[i % len(experts)]}/demands")
                    ms.append(1000 * (time.perf_counter() - t))
                    assert res.status_code == 200
                query = summary(ms)
                adds = []
                for i in range(20):
                    body = {
                        "title": f"不锈钢保温杯激光焊接气孔第{i}批",
                        "keywords": ["激光焊接"],
                        "region": "浙江省金华市永康市",
                        "enterprise": f"新企业{i}",
                    }
                    made = client.post("/api/v1/demands", json=body, headers={"X-API-Key": KEY})
                    assert made.status_code == 201
                    t = time.perf_counter()
                    res = client.get("/api/v1/experts/X0002/demands", params={"top_k": 100})
                    adds.append(1000 * (time.perf_counter() - t))
                    assert made.json()["id"] in {d["demand"]["id"] for d in res.json()["data"]}
                added = summary(adds)
                plans = []
                for i in range(min(args.requests, 100)):
                    t = time.perf_counter()
                    res = client.get(
                        f"/api/v1/experts/{experts[i % len(experts)]}/visit-plan",
                        params={"date": "2026-12-03"},
                    )
                    plans.append(1000 * (time.perf_counter() - t))
                    assert res.status_code == 200
                plan = summary(plans)
        finally:
            server.terminate()
            server.wait(30)
        # A restart: the demands' tokens are in the token cache now.
        server, url = serve(db)
        try:
            with httpx.Client(base_url=url, timeout=600, headers={"X-API-Key": KEY}) as client:
                wait_for(client, server)
                t = time.perf_counter()
                assert client.get(f"/api/v1/experts/{experts[0]}/demands").status_code == 200
                warm_s = time.perf_counter() - t
        finally:
            server.terminate()
            server.wait(30)
    print(
        f"first request (builds the index over {args.demands} demands): {build_s:.1f} s; "
        f"after a restart (tokens cached): {warm_s:.1f} s"
    )
    print(
        f"GET /experts/{{id}}/demands, {query['n']} requests: p50 {query['p50']} ms, p95 {query['p95']} ms, "
        f"p99 {query['p99']} ms (max {query['max']})"
    )
    print(
        f"right after POST /demands (incremental update included, top 100): p50 {added['p50']} ms, "
        f"p95 {added['p95']} ms"
    )
    print(f"GET /experts/{{id}}/visit-plan: p50 {plan['p50']} ms, p95 {plan['p95']} ms")
    print(
        json.dumps(
            {
                "demands": args.demands,
                "first_request_s": round(build_s, 2),
                "first_request_after_restart_s": round(warm_s, 2),
                "query_ms": query,
                "after_add_ms": added,
                "visit_plan_ms": plan,
            }
        )
    )


if __name__ == "__main__":
    main()
