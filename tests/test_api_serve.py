"""`matcher serve` as a real process: it starts uvicorn, loads the demo into an empty database,
answers the page and the API, and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import THERMOS, free_port

pytestmark = pytest.mark.slow


def test_matcher_serve_starts_the_api_and_the_page(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "served.db"
    env = {**os.environ, "MATCHER_API_KEYS": "serve-test-key-2c8e5a1f9d07b4"}
    cmd = [sys.executable, "-m", "matcher", "serve", "--port", str(port), "--db", str(db)]
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, f"matcher serve exited:\n{log.read_text()}"
                try:
                    health = httpx.get(url + "/api/v1/health", timeout=2)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, f"matcher serve did not answer:\n{log.read_text()}"
                    time.sleep(0.2)
            assert health.status_code == 200 and health.json()["index"]["experts"] >= 20
            page = httpx.get(url + "/", timeout=10)
            assert page.status_code == 200 and "匹配" in page.text
            rows = httpx.post(url + "/api/v1/match", json={"text": THERMOS, "top_k": 3}, timeout=30).json()
            assert rows["count"] == 3 and "contact" not in rows["data"][0]["expert"]
            keyed = httpx.post(
                url + "/api/v1/match",
                json={"text": THERMOS, "top_k": 1},
                timeout=30,
                headers={"X-API-Key": "serve-test-key-2c8e5a1f9d07b4"},
            ).json()
            assert "contact" in keyed["data"][0]["expert"]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    text = log.read_text()
    assert "demo corpus" in text and f"127.0.0.1:{port}" in text
    assert "serve-test-key-2c8e5a1f9d07b4" not in text
    # uvicorn shuts down cleanly, then re-raises the signal so the exit status tells it was stopped.
    assert "Application shutdown complete" in text
    assert proc.returncode in (0, -signal.SIGTERM), text
    assert db.exists()
