"""Does the sign-in's answer time tell which user names exist? (issue 27, finding 2)

Through a real `matcher serve`: for a real account and an unknown name, the status and time of
wrong passwords until the lock, then of attempts while locked. Before the fix a real account was
answered 429 in 4-12 ms once locked, an unknown name 401 for ever in 110-260 ms.

    python benchmarks/login_timing.py [--rounds 3]

Prints one row per (name, attempt) with the median time over the rounds and the statuses seen.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import PASSWORD, free_port  # noqa: E402


def attempt(client: httpx.Client, name: str, password: str) -> tuple[int, float]:
    form = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    t = time.perf_counter()
    res = client.post("/login", data={"username": name, "password": password, "login_token": token,
                                      "next": "/demands"}, follow_redirects=False)
    return res.status_code, (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "login.db"
        env = {**os.environ, "MATCHER_DB": str(db), "MATCHER_ENCODER": "none", "MATCHER_WEIGHT_DENSE": "0"}
        subprocess.run([sys.executable, "-m", "matcher", "users", "add", "lihua", "--password-stdin"],
                       input=PASSWORD + "\n", text=True, env=env, check=True, capture_output=True)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "matcher", "serve", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    httpx.get(url + "/api/v1/health", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            rows: dict[tuple[str, int], list[tuple[int, float]]] = {}
            for r in range(args.rounds):
                for name in ("lihua", f"nobody{r}"):
                    with httpx.Client(base_url=url, timeout=60) as client:
                        if name == "lihua":
                            subprocess.run([sys.executable, "-m", "matcher", "users", "unlock", "lihua"], env=env,
                                           check=True, capture_output=True)
                        for i in range(7):
                            rows.setdefault((name.rstrip("0123456789") or name, i + 1), []).append(
                                attempt(client, name, f"wrong password {i}"))
            print(f"{'name':<8} {'attempt':>7} {'statuses':<12} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
            for (name, i), seen in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
                times = [t for _, t in seen]
                statuses = ",".join(sorted({str(s) for s, _ in seen}))
                print(f"{name:<8} {i:>7} {statuses:<12} {statistics.median(times):>10.0f} {min(times):>8.0f} "
                      f"{max(times):>8.0f}")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
