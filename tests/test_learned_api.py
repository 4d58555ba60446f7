"""What the matcher learned, through the HTTP API and the pages (issue 28): proposals listed with
their evidence for any key, decided only by an admin key (or an admin on the page), the own
thesaurus read back, a learned chip's evidence in a match, and a verdict withdrawn through the API
taking its evidence along. The world is `conftest.learned_world` (six 烂筒 demands teach 烂筒 -> 木霉)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from matcher.accounts import Accounts
from matcher.config import Settings
from matcher.engine import Engine

from .conftest import (
    API_AUTH,
    API_KEY,
    API_READ,
    API_READ_KEY,
    PASSWORD,
    assert_error,
    copy_db,
    csrf_of,
    demo_template,
    learned_world,
    sign_in,
)

WRITE_KEY = "k-w7f3a9c0e-test-learned-9d1e5a"
WRITE = {"X-API-Key": WRITE_KEY}
OWNER_TEXT = "今年花菇烂筒特别多，想找专家"
MOULD = {"phrase": "烂筒", "concept": "木霉"}


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    plain = demo_template(tmp_path_factory.mktemp("plain"), tokenizer)
    db = copy_db(plain, tmp_path_factory.mktemp("taught"))
    engine = Engine(Settings(db=db), tokenizer=tokenizer)
    learned_world(engine)
    accounts = Accounts(engine.store, engine.settings)
    accounts.add_user("lihua", PASSWORD, "staff")
    accounts.add_user("zhaomin", PASSWORD, "admin")
    engine.ensure_index()
    engine.close()
    return db


@pytest.fixture()
def client(tmp_path: Path, taught: Path, tokenizer) -> Iterator[TestClient]:
    settings = Settings(db=copy_db(taught, tmp_path), api_keys=(API_KEY, f"read:{API_READ_KEY}",
                                                                 f"write:{WRITE_KEY}"))
    engine = Engine(settings, tokenizer=tokenizer)
    with TestClient(create_app(settings, engine=engine)) as c:
        c.engine = engine  # type: ignore[attr-defined]
        yield c
    engine.close()


def learned_of(client: TestClient) -> dict[str, dict]:
    res = client.post("/api/v1/match", json={"text": OWNER_TEXT}, headers=API_READ)
    assert res.status_code == 200, res.text
    return {e["term"]: e for e in res.json()["understanding"]["expanded"]}


def test_proposals_are_listed_with_evidence_and_decided_only_by_an_admin_key(client: TestClient) -> None:
    res = client.get("/api/v1/proposals", headers=API_READ)
    assert res.status_code == 200
    rows = {(r["phrase"], r["concept"]): r for r in res.json()["data"]}
    mould = rows[("烂筒", "木霉")]
    assert (mould["demands"], mould["judged"], mould["status"]) == (6, 6, "open")
    assert {x["id"] for x in mould["examples"]} <= {f"L-{i}" for i in range(6)} and mould["examples"]
    assert 0 < mould["strength"] < 1 and 0.5 < mould["suggested_weight"] <= 1
    # a learned chip says so, with its evidence
    chip = learned_of(client)["木霉"]
    assert chip["source"] == "learned" and chip["from"] == "烂筒"
    assert chip["evidence"] == {"demands": 6, "judged": 6, "accepted": mould["accepted"],
                                "declined": mould["declined"]}

    assert client.post("/api/v1/proposals/accept", json=MOULD, headers=WRITE).status_code == 403
    assert client.post("/api/v1/proposals/accept", json=MOULD).status_code == 401
    assert_error(client.post("/api/v1/proposals/accept", json={"phrase": "烂筒", "concept": "不存在"},
                             headers=API_AUTH), 404, "NotFoundError", "烂筒 → 不存在")
    assert_error(client.post("/api/v1/proposals/accept", json={**MOULD, "kind": "别的"}, headers=API_AUTH),
                 422, "InputError")
    res = client.post("/api/v1/proposals/accept", json={**MOULD, "kind": "俗称", "weight": 0.7},
                      headers=API_AUTH)
    assert res.status_code == 200, res.text
    own = res.json()
    assert own["version"] == 1 and own["entries"] == 1 and "烂筒" in own["text"] and "木霉:0.7" in own["text"]
    assert client.get("/api/v1/thesaurus/own", headers=API_READ).json() == own
    # from the own thesaurus now, not the learned source
    chip = learned_of(client)["木霉"]
    assert (chip["source"], chip["kind"], chip.get("evidence")) == ("thesaurus", "俗称", None)
    assert client.get("/api/v1/proposals?status=accepted", headers=API_READ).json()["count"] == 1

    # rejected: silenced, neither proposed nor used; reopened: both again
    res = client.post("/api/v1/proposals/reject", json={**MOULD, "note": "误报"}, headers=API_AUTH)
    assert res.status_code == 200 and res.json()["data"][0]["status"] == "rejected"
    assert "木霉" not in learned_of(client)
    assert client.get("/api/v1/thesaurus/own", headers=API_READ).json()["entries"] == 0  # left the file
    res = client.post("/api/v1/proposals/reopen", json=MOULD, headers=API_AUTH)
    assert res.status_code == 200 and res.json()["data"][0]["status"] == "open"
    assert learned_of(client)["木霉"]["source"] == "learned"
    actions = [e.action for e in client.engine.store.list_audit(action="proposal.accept")[0]
               + client.engine.store.list_audit(action="proposal.reject")[0]
               + client.engine.store.list_audit(action="proposal.reopen")[0]]
    assert sorted(actions) == ["proposal.accept", "proposal.reject", "proposal.reopen"]


def test_a_verdict_withdrawn_through_the_api_takes_its_evidence_along(client: TestClient) -> None:
    store = client.engine.store
    accepted = [f for f in store.feedback_entries()
                if f.demand_id.startswith("L-") and f.verdict == "accepted"]
    assert len(accepted) == 6
    assert client.delete(f"/api/v1/feedback/{accepted[0].id}", headers=API_READ).status_code == 403
    res = client.delete(f"/api/v1/feedback/{accepted[0].id}", headers=WRITE)
    assert res.status_code == 200, res.text
    assert (res.json()["demand_id"], res.json()["verdict"]) == (accepted[0].demand_id, "accepted")
    assert_error(client.delete(f"/api/v1/feedback/{accepted[0].id}", headers=WRITE), 404, "NotFoundError")
    mould = next(r for r in client.get("/api/v1/proposals", headers=API_READ).json()["data"]
                 if (r["phrase"], r["concept"]) == ("烂筒", "木霉"))
    assert (mould["demands"], mould["judged"]) == (5, 5)
    assert learned_of(client)["木霉"]["evidence"]["demands"] == 5
    entries, _ = store.list_audit(action="feedback.withdraw")
    assert [e.detail["verdict"] for e in entries] == ["accepted"]


def test_the_proposals_page_is_for_admins_and_its_forms_are_checked(client: TestClient) -> None:
    assert client.get("/admin/proposals", follow_redirects=False).status_code in (302, 303)
    sign_in(client, "lihua", next_="/demands")
    assert client.get("/admin/proposals").status_code == 403  # staff are not administrators
    client.cookies.clear()
    sign_in(client, "zhaomin", next_="/admin/proposals")
    page = client.get("/admin/proposals")
    assert page.status_code == 200 and 'data-phrase="烂筒"' in page.text and "6/6 个需求" in page.text
    assert "偶然出现的概率不到万分之一" in page.text and "e-0" not in page.text  # no 6e-05 for staff
    token = csrf_of(page.text)
    # without the CSRF token: refused, nothing decided
    bad = client.post("/admin/proposals/accept", data=MOULD, follow_redirects=False)
    assert bad.status_code == 403 and client.engine.store.decisions() == {}
    res = client.post("/admin/proposals/accept", data={**MOULD, "csrf_token": token, "kind": "症状",
                                                       "weight": "abc"})
    assert res.status_code == 422 and "权重" in res.text and client.engine.store.decisions() == {}
    res = client.post("/admin/proposals/accept", data={**MOULD, "csrf_token": token, "kind": "症状",
                                                       "weight": "0.8"}, follow_redirects=False)
    assert res.status_code == 303 and "done=accepted" in res.headers["location"]
    assert client.engine.store.decisions()[("烂筒", "木霉")].decision == "accepted"
    text = client.get("/admin/thesaurus.txt").text
    assert "烂筒" in text and "木霉:0.8" in text
