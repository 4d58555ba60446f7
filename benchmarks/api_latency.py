"""Latency of POST /api/v1/match over loopback against a real uvicorn server, on the demo corpus.

    python benchmarks/api_latency.py                  # starts `matcher serve` on a fresh demo database
    python benchmarks/api_latency.py --requests 500
    python benchmarks/api_latency.py --url http://127.0.0.1:8000   # measure a server already running
    python benchmarks/api_latency.py --unseen          # every text new to the server (encoded each time)

The server runs in its own process (as in production), so the client does not share its GIL.
Requests go one after another over one keep-alive connection, cycling through the demo demands
(title + description, as staff would paste them); a few warm-up requests are not counted. The demo
demands' dense vectors are in the store (the demand bank), so as they are a request skips the
encoder; `--unseen` numbers every request's text so that each is new and pays the encoding, as a
demand pasted for the first time does.
Prints p50/p95/p99/mean/max in milliseconds, and one JSON line with the same figures.
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEMANDS = ROOT / "corpora" / "demo" / "demands.jsonl"


def demand_texts() -> list[str]:
    texts = []
    for line in DEMANDS.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            texts.append("\n".join(p for p in (d.get("title", ""), d.get("description", "")) if p))
    return texts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(startup_timeout: float) -> Iterator[str]:
    """`matcher serve` on a fresh database in a temporary folder; stopped on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "matcher",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            str(Path(tmp) / "bench.db"),
        ]
        env = {**os.environ, "MATCHER_API_KEYS": ""}
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"the server exited early:\n{(Path(tmp) / 'server.log').read_text()}")
                try:
                    if httpx.get(url + "/api/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"the server did not answer within {startup_timeout:.0f} s")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
            log.close()


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation): a value that was actually observed."""
    k = max(0, min(len(sorted_ms) - 1, round(q / 100 * len(sorted_ms) + 0.5) - 1))
    return sorted_ms[k]


def unseen(text: str, i: int) -> str:
    """`text` made new to the server: the demand bank holds the demo demands' dense vectors, so a
    demo text as it is skips encoding; a pasted demand staff never sent before does not."""
    return f"{text}\n（第{i + 1}次咨询）"


def measure(url: str, n: int, warmup: int, top_k: int, fresh: bool = False) -> dict[str, float]:
    texts = demand_texts()
    timings: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        health = client.get("/api/v1/health").json()
        for i in range(warmup + n):
            text = texts[i % len(texts)]
            body = {"text": unseen(text, i) if fresh else text, "top_k": top_k}
            t0 = time.perf_counter()
            res = client.post("/api/v1/match", json=body)
            elapsed = (time.perf_counter() - t0) * 1000
            res.raise_for_status()
            if i >= warmup:
                timings.append(elapsed)
    timings.sort()
    return {
        "requests": n,
        "experts": health["index"]["experts"],
        "distinct_texts": len(texts),
        "top_k": top_k,
        "unseen_texts": fresh,
        "p50_ms": round(percentile(timings, 50), 2),
        "p95_ms": round(percentile(timings, 95), 2),
        "p99_ms": round(percentile(timings, 99), 2),
        "mean_ms": round(statistics.fmean(timings), 2),
        "max_ms": round(timings[-1], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200, help="measured requests (default 200)")
    ap.add_argument("--warmup", type=int, default=10, help="requests before measuring (default 10)")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--url", help="measure this running server instead of starting one")
    ap.add_argument("--startup-timeout", type=float, default=180.0)
    ap.add_argument("--unseen", action="store_true", help="make every request's text new to the server")
    args = ap.parse_args()
    if args.url:
        result = measure(args.url, args.requests, args.warmup, args.top_k, args.unseen)
    else:
        with served(args.startup_timeout) as url:
            result = measure(url, args.requests, args.warmup, args.top_k, args.unseen)
    print(
        f"POST /api/v1/match, {result['requests']} sequential requests over loopback, "
        f"{result['experts']} experts, {result['distinct_texts']} demo demands, top_k={result['top_k']}"
        + (", every text unseen" if result["unseen_texts"] else "")
    )
    for key in ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms"):
        print(f"  {key[:-3]:>4}: {result[key]:8.2f} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
