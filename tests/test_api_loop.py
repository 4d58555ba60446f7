"""The working loop through the HTTP API (FastAPI's TestClient, the demo corpus on a real SQLite
file): the inbox, a demand's recommendations, its status, verdicts, pauses, an expert's history,
and the audit entries that writes and contact views leave."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from matcher.batch import BatchOptions, run_batch
from matcher.config import Settings
from matcher.engine import Engine
from matcher.workflow import key_actor

from .conftest import assert_error, copy_db, demo_template

KEY = "loop-api-key-0001-02bbc9d54fbc38"
READ_KEY = "loop-rapi-key-0001-02bbc9d54fbc38-read"  # a key with the read role: the working data, no contacts
READ = {"X-API-Key": READ_KEY}
AUTH = {"X-API-Key": KEY}
ACTOR = key_actor(KEY)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    return demo_template(tmp_path_factory.mktemp("api-loop"), tokenizer)


@pytest.fixture()
def client(tmp_path: Path, template: Path, tokenizer) -> TestClient:
    db = copy_db(template, tmp_path)
    settings = Settings(db=db, api_keys=(KEY, f"read:{READ_KEY}"))
    engine = Engine(settings, tokenizer=tokenizer)
    with TestClient(create_app(settings, engine=engine)) as c:
        c.engine = engine  # type: ignore[attr-defined]
        yield c
    engine.close()


def audit(client: TestClient) -> list[tuple[str, str, str]]:
    entries, _ = client.engine.store.list_audit(limit=1000)
    return [(a.actor, a.action, a.target) for a in reversed(entries)]


# -- the inbox -----------------------------------------------------------------------------------
def test_the_inbox_lists_newest_first_with_filters_and_the_top_three(client: TestClient) -> None:
    run_batch(client.engine, BatchOptions(run_key="n1"))
    body = client.get("/api/v1/demands", params={"limit": 200}, headers=READ).json()
    assert body["count"] == 56 and len(body["data"]) == 56
    first = body["data"][0]
    assert first["id"] == "Q0031" and first["status"] == "matched" and first["status_label"] == "已推荐"
    stored = client.engine.store.list_batch_matches(demand_id="Q0031")
    assert [t["id"] for t in first["top"]] == [m.expert_id for m in stored[:3]]
    assert all(t["name"] for t in first["top"])
    got = client.get("/api/v1/demands", params={"region": "永康", "industry": "保温杯"}, headers=READ).json()
    assert sorted(d["id"] for d in got["data"]) == ["Q0001", "Q0002", "Q0004", "Q0005"] and got["count"] == 4
    window = client.get("/api/v1/demands", params={"from": "2026-11-03", "to": "2026-11-04"}, headers=READ).json()
    assert sorted(d["id"] for d in window["data"]) == ["Q0003", "Q0004", "Q0034", "Q0035"]
    page = client.get("/api/v1/demands", params={"limit": 10, "offset": 50}, headers=READ).json()
    assert page["count"] == 56 and [d["id"] for d in page["data"]] == [d["id"] for d in body["data"][50:]]
    assert client.get("/api/v1/demands", params={"status": "closed"}, headers=READ).json() == {"data": [], "count": 0}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"from": "0"}, "from"),  # pydantic alone would read 0 as 1970-01-01
        ({"to": "2026-02-30"}, "to"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": 11208102848430863328215040}, "offset"),  # past SQLite's integers: was a 500
        ({"region": "长" * 101}, "region"),
    ],
)
def test_bad_inbox_parameters_are_422_naming_the_field(client: TestClient, params: dict, field: str) -> None:
    assert_error(client.get("/api/v1/demands", params=params, headers=READ), 422, "InputError", field)


def test_a_huge_expert_offset_is_422_not_a_server_error(client: TestClient) -> None:
    res = client.get("/api/v1/experts", params={"offset": 11208102848430863328215040, "limit": 72})
    assert_error(res, 422, "InputError", "offset")


# -- recommendations, status, feedback -----------------------------------------------------------
def test_recommendations_come_from_the_last_run_or_live(client: TestClient) -> None:
    live = client.get("/api/v1/demands/Q0001/recommendations", headers=READ).json()
    assert live["source"] == "live" and live["run_key"] is None and live["count"] == 10
    assert all(r["run_key"] is None and r["verdict"] is None for r in live["data"])
    assert "contact" not in str(live)
    run_batch(client.engine, BatchOptions(run_key="night-7"))
    stored = client.get("/api/v1/demands/Q0001/recommendations", headers=AUTH).json()
    assert stored["source"] == "batch" and stored["run_key"] == "night-7"
    expected = client.engine.store.list_batch_matches(demand_id="Q0001")
    assert [(r["rank"], r["expert"]["id"]) for r in stored["data"]] == [
        (m.rank, m.expert_id) for m in expected
    ]
    assert all(r["run_key"] == "night-7" and r["expert"]["contact"]["phone"] for r in stored["data"])
    assert stored["data"][0]["explanation"]["terms"]
    # The key's view of the contact details is audited.
    assert audit(client) == [(ACTOR, "contact.view", f"experts:{len(expected)}")]


def test_a_verdict_shows_as_latest_and_婉拒_removes_the_expert(client: TestClient) -> None:
    run_batch(client.engine, BatchOptions(run_key="n"))
    data = client.get("/api/v1/demands/Q0002/recommendations", headers=READ).json()["data"]
    first, second = data[0]["expert"]["id"], data[1]["expert"]["id"]
    for verdict, note in (("contacted", "电话打通"), ("accepted", "")):
        res = client.post(
            "/api/v1/feedback",
            json={"demand_id": "Q0002", "expert_id": first, "verdict": verdict, "note": note},
            headers=AUTH,
        )
        assert res.status_code == 201, res.text
    res = client.post(
        "/api/v1/feedback",
        json={"demand_id": "Q0002", "expert_id": second, "verdict": "unsuitable", "note": "方向不符"},
        headers=AUTH,
    )
    assert res.status_code == 201 and res.json()["verdict"] == "unsuitable"
    after = client.get("/api/v1/demands/Q0002/recommendations", headers=READ).json()
    assert after["data"][0]["expert"]["id"] == first
    assert after["data"][0]["verdict"] == {
        "verdict": "accepted",
        "label": "同意对接",
        "note": "",
        "at": after["data"][0]["verdict"]["at"],
        "actor": ACTOR,
    }
    assert second not in [r["expert"]["id"] for r in after["data"]]
    assert [(x["expert"]["id"], x["verdict"]["label"], x["verdict"]["note"]) for x in after["excluded"]] == [
        (second, "不合适", "方向不符")
    ]
    assert second not in [
        r["expert"]["id"] for r in client.get("/api/v1/demands/Q0002/matches", headers=READ).json()["data"]
    ]
    assert client.get("/api/v1/demands/Q0002", headers=READ).json()["status"] == "connected"  # 同意对接 moved it on
    assert [a for _, a, _ in audit(client)] == ["feedback.add"] * 3


def test_patch_sets_a_status_and_is_audited(client: TestClient) -> None:
    res = client.patch("/api/v1/demands/Q0003", json={"status": "closed"}, headers=AUTH)
    assert res.status_code == 200 and res.json()["status"] == "closed"
    assert client.get("/api/v1/demands/Q0003", headers=READ).json()["status"] == "closed"
    entries, _ = client.engine.store.list_audit()
    assert (entries[0].actor, entries[0].action, entries[0].detail) == (
        ACTOR,
        "demand.status",
        {"from": "new", "to": "closed"},
    )
    assert_error(
        client.patch("/api/v1/demands/Q0003", json={"status": "已关闭"}, headers=AUTH),
        422,
        "InputError",
        "status",
    )
    assert_error(
        client.patch("/api/v1/demands/Q0003", json={"status": "new", "x": 1}, headers=AUTH),
        422,
        "InputError",
        "x",
    )
    assert_error(
        client.patch("/api/v1/demands/Q9999", json={"status": "new"}, headers=AUTH),
        404,
        "NotFoundError",
        "Q9999",
    )
    assert_error(client.patch("/api/v1/demands/Q0003", json={"status": "new"}), 401, "AuthError")
    assert client.get("/api/v1/demands/Q0003", headers=READ).json()["status"] == "closed" and len(audit(client)) == 1


def test_writes_by_key_are_audited(client: TestClient) -> None:
    expert = {"id": "e-new", "name": "新专家", "research_fields": ["真空镀膜"]}
    assert client.post("/api/v1/experts", json=expert, headers=AUTH).status_code == 201
    assert (
        client.put("/api/v1/experts/e-new", json={**expert, "title": "教授"}, headers=AUTH).status_code == 200
    )
    demand = client.post("/api/v1/demands", json={"title": "装饰件真空镀膜附着力差"}, headers=AUTH).json()
    assert client.delete("/api/v1/experts/e-new", headers=AUTH).status_code == 204
    assert audit(client) == [
        (ACTOR, "expert.create", "expert:e-new"),
        (ACTOR, "expert.replace", "expert:e-new"),
        (ACTOR, "demand.create", f"demand:{demand['id']}"),
        (ACTOR, "expert.delete", "expert:e-new"),
    ]
    # A refused write leaves nothing: neither the row nor an audit entry.
    assert (
        client.post("/api/v1/experts", json={"id": "X0001", "name": "冒名", "bio": "焊接"},
                    headers=AUTH).status_code == 409
    )
    assert client.delete("/api/v1/experts/nobody", headers=AUTH).status_code == 404
    assert len(audit(client)) == 4


def test_contact_views_by_key_are_audited_and_keyless_reads_are_not(client: TestClient) -> None:
    client.get("/api/v1/experts/X0001")
    client.get("/api/v1/experts", params={"limit": 3})
    client.post("/api/v1/match", json={"text": "激光焊接气孔", "top_k": 2})
    assert audit(client) == []
    client.get("/api/v1/experts/X0001", headers=AUTH)
    client.get("/api/v1/experts", params={"limit": 3}, headers=AUTH)
    rows = client.post("/api/v1/match", json={"text": "激光焊接气孔", "top_k": 2}, headers=AUTH).json()[
        "data"
    ]
    client.get("/api/v1/demands/Q0001/matches", params={"top_k": 1}, headers=AUTH)
    entries, _ = client.engine.store.list_audit()
    assert [(a.action, a.detail.get("where")) for a in reversed(entries)] == [
        ("contact.view", "expert record"),
        ("contact.view", "expert list"),
        ("contact.view", "match"),
        ("contact.view", "matches of demand Q0001"),
    ]
    assert entries[1].detail["experts"] == [r["expert"]["id"] for r in rows]


# -- pauses and history --------------------------------------------------------------------------
def test_pause_flags_live_results_and_shows_in_the_history(client: TestClient) -> None:
    until = (date.today() + timedelta(days=10)).isoformat()
    res = client.put("/api/v1/experts/X0001/pause", json={"until": until, "reason": "出差"}, headers=AUTH)
    assert res.status_code == 200 and res.json() == {"until": until, "reason": "出差"}
    rows = client.post("/api/v1/match", json={"text": "激光焊接 薄壁构件焊接 异种金属连接"}).json()["data"]
    flagged = {r["expert"]["id"]: r.get("paused") for r in rows}
    assert flagged["X0001"] == {"until": until, "reason": "出差"}
    assert all(v is None for k, v in flagged.items() if k != "X0001")
    history = client.get("/api/v1/experts/X0001/history", headers=READ).json()
    assert history["paused"] == {"until": until, "reason": "出差"} and history["recommended"] == 0
    assert client.delete("/api/v1/experts/X0001/pause", headers=AUTH).status_code == 204
    assert client.get("/api/v1/experts/X0001/history", headers=READ).json()["paused"] is None
    assert [a for _, a, _ in audit(client)] == ["expert.pause", "expert.resume"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"until": 0}, "until"),
        ({"until": "2026-13-01"}, "until"),
        ({"until": "31/12/2026"}, "until"),
        ({"until": "2026-12-31", "reason": "因" * 201}, "reason"),
        ({"until": "2026-12-31", "extra": 1}, "extra"),
    ],
)
def test_bad_pauses_are_422(client: TestClient, body: dict, field: str) -> None:
    assert_error(client.put("/api/v1/experts/X0001/pause", json=body, headers=AUTH), 422, "InputError", field)
    assert client.engine.store.get_pause("X0001") is None


def test_history_counts_and_events(client: TestClient) -> None:
    run = run_batch(client.engine, BatchOptions(run_key="h")).run
    mine = {m.demand_id for m in client.engine.store.list_batch_matches(run.id) if m.expert_id == "X0004"}
    for verdict in ("contacted", "succeeded"):
        client.post(
            "/api/v1/feedback",
            json={"demand_id": "Q0001", "expert_id": "X0004", "verdict": verdict},
            headers=AUTH,
        )
    h = client.get("/api/v1/experts/X0004/history", headers=READ).json()
    assert (h["recommended"], h["contacted"], h["succeeded"], h["accepted"]) == (len(mine), 1, 1, 0)
    assert [(e["demand_id"], e["label"], e["actor"]) for e in h["events"]] == [
        ("Q0001", "对接成功", ACTOR),
        ("Q0001", "已联系", ACTOR),
    ]
    assert_error(client.get("/api/v1/experts/nobody/history", headers=READ), 404, "NotFoundError", "nobody")


# -- the schema says what the routes check -------------------------------------------------------
def test_the_schema_states_what_post_demands_requires(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    demand = spec["components"]["schemas"]["DemandIn"]
    assert {tuple(alt["required"]) for alt in demand["anyOf"]} == {
        ("title",),
        ("description",),
        ("keywords",),
    }
    assert demand["properties"]["description"]["maxLength"] == 17_000
    assert demand["properties"]["keywords"]["maxItems"] == 30
    for body in ({"title": "  "}, {"keywords": [" ", ""]}, {}):
        assert_error(client.post("/api/v1/demands", json=body, headers=AUTH), 422, "InputError", "empty")
    # Reads that work without a key declare the key optional; writes require it.
    ops = spec["paths"]
    assert ops["/api/v1/experts/{expert_id}"]["get"]["security"] == [{"APIKeyHeader": []}, {}]
    assert ops["/api/v1/experts/{expert_id}"]["put"]["security"] == [{"APIKeyHeader": []}]
    links = ops["/api/v1/demands"]["post"]["responses"]["201"]["links"]
    assert {link["operationId"] for link in links.values()} == {
        "getDemand",
        "patchDemand",
        "demandRecommendations",
        "demandMatches",
    }


def test_an_unparseable_body_is_422_and_405_names_every_method(client: TestClient) -> None:
    res = client.post(
        "/api/v1/feedback", content=b"\xff\xfe{", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert_error(res, 422, "InputError", "not valid JSON")
    res = client.request("OPTIONS", "/api/v1/demands/Q0001")
    assert res.status_code == 405 and res.headers["allow"] == "GET, PATCH"
