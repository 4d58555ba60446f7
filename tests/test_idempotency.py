"""Retried writes happen once: `Idempotency-Key` on POST/PUT/PATCH/DELETE (issue 27)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from matcher.config import Settings
from matcher.engine import Engine

from .conftest import copy_db, demo_template

KEY = "idem-admin-key-6a0f2c9e4b71d8"
OTHER = "idem-other-key-1d7b3e5a9c02f4"
DEMAND = {"id": "I1", "title": "保温杯真空层漏气", "description": "激光焊接后漏气，合格率低"}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    return demo_template(tmp_path_factory.mktemp("idem"), tokenizer)


@pytest.fixture()
def client(tmp_path: Path, template: Path, tokenizer) -> Iterator[TestClient]:
    settings = Settings(db=copy_db(template, tmp_path), api_keys=(KEY, OTHER))
    engine = Engine(settings, tokenizer=tokenizer)
    with TestClient(create_app(settings, engine=engine)) as c:
        c.engine = engine  # type: ignore[attr-defined]
        yield c
    engine.close()


def h(key: str = KEY, idem: str | None = None) -> dict[str, str]:
    return {"X-API-Key": key, **({"Idempotency-Key": idem} if idem else {})}


def audited(client: TestClient, action: str) -> int:
    return client.engine.store.list_audit(action=action)[1]


def test_a_retried_post_is_answered_again_and_written_once(client: TestClient) -> None:
    first = client.post("/api/v1/demands", json=DEMAND, headers=h(idem="retry-1"))
    again = client.post("/api/v1/demands", json=DEMAND, headers=h(idem="retry-1"))
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["location"] == first.headers["location"]
    assert again.headers["idempotency-replayed"] == "true" and "idempotency-replayed" not in first.headers
    assert audited(client, "demand.create") == 1
    # Without the header the same POST is a new request (and here a conflict: the id is taken).
    assert client.post("/api/v1/demands", json=DEMAND, headers=h()).status_code == 409


def test_a_retried_put_and_feedback_write_once(client: TestClient) -> None:
    expert = client.get("/api/v1/experts/X0001", headers=h()).json()
    body = {k: expert[k] for k in ("name", "title", "institution", "region", "research_fields")}
    for _ in range(3):
        assert client.put("/api/v1/experts/X0001", json=body, headers=h(idem="put-7")).status_code == 200
    assert audited(client, "expert.replace") == 1
    verdict = {"demand_id": "Q0001", "expert_id": "X0001", "verdict": "contacted", "note": "电话已打"}
    ids = {client.post("/api/v1/feedback", json=verdict, headers=h(idem="fb-1")).json()["id"]
           for _ in range(3)}
    assert len(ids) == 1 and len(client.engine.store.list_feedback("Q0001")) == 1


def test_the_same_key_with_another_body_is_refused(client: TestClient) -> None:
    assert client.post("/api/v1/demands", json=DEMAND, headers=h(idem="k")).status_code == 201
    other = client.post("/api/v1/demands", json={**DEMAND, "id": "I2"}, headers=h(idem="k"))
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["error"]["message"]
    assert client.engine.store.count_demands() == 57  # the demo's 56 and I1: I2 was not written


def test_keys_are_scoped_by_the_caller(client: TestClient) -> None:
    a = client.post("/api/v1/demands", json=DEMAND, headers=h(KEY, "shared"))
    b = client.post("/api/v1/demands", json={**DEMAND, "id": "I9"}, headers=h(OTHER, "shared"))
    assert (a.status_code, b.status_code) == (201, 201) and "idempotency-replayed" not in b.headers


def test_an_error_is_not_stored_so_a_retry_runs_again(client: TestClient) -> None:
    """A write answered with an error did not happen: its retry must run, not replay the error."""
    verdict = {"demand_id": "I1", "expert_id": "X0001", "verdict": "contacted"}
    assert client.post("/api/v1/feedback", json=verdict, headers=h(idem="after-404")).status_code == 404
    client.post("/api/v1/demands", json=DEMAND, headers=h())
    retried = client.post("/api/v1/feedback", json=verdict, headers=h(idem="after-404"))
    assert retried.status_code == 201 and "idempotency-replayed" not in retried.headers


def test_a_retry_while_the_first_runs_waits_and_a_dead_claim_expires(client: TestClient) -> None:
    store = client.engine.store
    db = str(client.engine.settings.db)
    assert client.post("/api/v1/demands", json=DEMAND, headers=h(idem="slow")).status_code == 201
    # As if the first request were still running (its claim pending):
    with sqlite3.connect(db) as con:
        con.execute("UPDATE idempotency SET state = 'pending', status = NULL, body = NULL")
    busy = client.post("/api/v1/demands", json=DEMAND, headers=h(idem="slow"))
    assert busy.status_code == 409 and busy.headers["retry-after"] == "1"
    # A claim whose process died (pending for over a minute) is taken over: the request runs again
    # (here a 409 conflict, since the first did write the demand), and is not stored.
    with sqlite3.connect(db) as con:
        con.execute("UPDATE idempotency SET created_at = '2000-01-01T00:00:00+00:00'")
    assert client.post("/api/v1/demands", json=DEMAND, headers=h(idem="slow")).status_code == 409
    assert store.get_replay("x") is None


def test_answers_are_kept_for_a_day(client: TestClient) -> None:
    assert client.post("/api/v1/demands", json=DEMAND, headers=h(idem="old")).status_code == 201
    with sqlite3.connect(str(client.engine.settings.db)) as con:
        con.execute("UPDATE idempotency SET created_at = '2000-01-01T00:00:00+00:00'")
    late = client.post("/api/v1/demands", json=DEMAND, headers=h(idem="old"))
    assert late.status_code == 409 and "idempotency-replayed" not in late.headers  # ran again: id taken
    with sqlite3.connect(str(client.engine.settings.db)) as con:
        assert con.execute("SELECT COUNT(*) FROM idempotency WHERE created_at < '2001'").fetchone()[0] == 0


@pytest.mark.parametrize("bad", [b"", b"x" * 256, "键".encode(), b"a b"])
def test_a_malformed_key_is_refused(client: TestClient, bad: bytes) -> None:
    res = client.post("/api/v1/demands", json=DEMAND, headers={"X-API-Key": KEY, "Idempotency-Key": bad})
    assert res.status_code == 422 and client.engine.store.count_demands() == 56
