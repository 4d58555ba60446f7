"""Concurrent writers on a real server: `matcher serve --workers 2`, two clients editing experts, two
posting demands and feedback, while the background thread encodes the edited experts' vectors.

Before each thread had its own SQLite connection, the encoder's writes and the request threads'
shared one: 1,360 requests gave 20 × 503 and a 500, and some 503s answered writes that had been
committed (a client that retries wrote twice). Here every request must succeed, and every write
answered 2xx must be in the database exactly once (and nothing else)."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from .conftest import running_server

pytestmark = pytest.mark.slow

KEY = "concurrency-test-key-4f7a9c2e81d3b5"
ROUNDS = 40  # requests per client


def _expert_body(expert: dict, marker: str) -> dict:
    body = {k: expert[k] for k in ("name", "title", "institution", "region", "bio", "tags", "documents")
            if k in expert}
    # A new research field each time: a new text, so the dense worker has something to encode.
    body["research_fields"] = [*expert.get("research_fields", []), f"工况{marker}下的焊缝质量"]
    body["bio"] = f"{expert.get('bio', '')} 修订{marker}"
    return body


def test_concurrent_writers_with_the_dense_worker_lose_and_double_nothing(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    with running_server(tmp_path, db, workers=2, env={"MATCHER_API_KEYS": KEY}) as url:
        h = {"X-API-Key": KEY}
        experts = httpx.get(url + "/api/v1/experts?limit=6", headers=h, timeout=30).json()["data"]
        demands = httpx.get(url + "/api/v1/demands?limit=6", headers=h, timeout=30).json()["data"]
        assert len(experts) == 6 and len(demands) == 6
        with sqlite3.connect(db) as con:
            vectors_before = con.execute("SELECT COUNT(*) FROM vector_cache").fetchone()[0]
        failures: list[str] = []
        replaced: list[str] = []  # markers of the PUTs answered 200
        last: dict[str, str] = {}  # each expert's marker of its last PUT answered 200 (one client each)
        created: list[str] = []  # ids of the demands answered 201
        feedback: list[str] = []  # notes of the verdicts answered 201
        lock = threading.Lock()

        def record(kind: list[str], value: str, res: httpx.Response, ok: int) -> None:
            with lock:
                if res.status_code == ok:
                    kind.append(value)
                else:
                    failures.append(f"{res.request.method} {res.request.url.path}: "
                                    f"{res.status_code} {res.text}")

        def editor(mine: list[dict]) -> None:
            with httpx.Client(base_url=url, headers=h, timeout=60) as c:
                for i in range(ROUNDS):
                    e = mine[i % len(mine)]
                    marker = uuid.uuid4().hex[:10]
                    res = c.put(f"/api/v1/experts/{e['id']}", json=_expert_body(e, marker))
                    record(replaced, marker, res, 200)
                    if res.status_code == 200:
                        last[e["id"]] = marker

        def poster(n: int) -> None:
            with httpx.Client(base_url=url, headers=h, timeout=60) as c:
                for i in range(ROUNDS):
                    if i % 2 == 0:
                        did = f"C{n}-{i}-{uuid.uuid4().hex[:6]}"
                        res = c.post("/api/v1/demands", json={
                            "id": did, "title": "不锈钢保温杯焊缝漏气", "enterprise": f"并发测试企业{n}",
                            "description": f"第{i}批真空杯激光焊接后漏气，合格率低"})
                        record(created, did, res, 201)
                    else:
                        note = f"并发-{n}-{i}-{uuid.uuid4().hex[:6]}"
                        d, e = demands[i % len(demands)], experts[(i + n) % len(experts)]
                        res = c.post("/api/v1/feedback", json={
                            "demand_id": d["id"], "expert_id": e["id"], "verdict": "contacted", "note": note})
                        record(feedback, note, res, 201)

        threads = [threading.Thread(target=editor, args=(experts[:3],)),
                   threading.Thread(target=editor, args=(experts[3:],)),
                   threading.Thread(target=poster, args=(1,)), threading.Thread(target=poster, args=(2,))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        assert not any(t.is_alive() for t in threads), "a client hung"

    assert failures == [], f"{len(failures)} failed requests, e.g. {failures[:3]}"
    assert len(replaced) == len(created) + len(feedback) == 2 * ROUNDS
    con = sqlite3.connect(db)
    try:
        audit_puts = con.execute(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'expert.replace'").fetchone()[0]
        assert audit_puts == len(replaced), "each PUT answered 200 is audited once, and no other"
        bios = dict(con.execute("SELECT id, bio FROM experts"))
        assert len(last) == 6
        for expert_id, marker in last.items():  # the last write answered is the one stored
            assert bios[expert_id].endswith(f"修订{marker}"), expert_id
        ids = [r[0] for r in con.execute("SELECT id FROM demands WHERE enterprise LIKE '并发测试企业%'")]
        assert sorted(ids) == sorted(created), "every demand answered 201 stored once, no other"
        notes = [r[0] for r in con.execute("SELECT note FROM feedback WHERE note LIKE '并发-%'")]
        assert sorted(notes) == sorted(feedback), "every verdict answered 201 stored once, no other"
        encoded = con.execute("SELECT COUNT(*) FROM vector_cache").fetchone()[0]
    finally:
        con.close()
    assert encoded > vectors_before, "the dense worker encoded the edited experts meanwhile"
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
