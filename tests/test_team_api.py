"""Team recommendation through the HTTP API (TestClient, a real SQLite file): POST /team, a stored
demand's team, and the needs-team flag. The endpoints are fuzzed with the rest in test_fuzz_api."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from matcher.team import recommend_team
from matcher.text import ChineseTokenizer

from .conftest import API_AUTH as AUTH
from .conftest import API_DEMAND as DEMAND
from .conftest import API_READ as READ
from .conftest import api_settings, assert_error, make_client

TWO_PARTS = "不锈钢保温杯真空层激光焊接气孔多；另外，动力锂电池BMS均衡控制策略不成熟"


@pytest.fixture()
def client(tmp_path: Path, tokenizer: ChineseTokenizer) -> Iterator[TestClient]:
    yield from make_client(api_settings(tmp_path), tokenizer)


def test_a_team_covers_both_parts_and_says_why(client: TestClient) -> None:
    res = client.post("/api/v1/team", json={"text": TWO_PARTS, "size": 2})
    assert res.status_code == 200, res.text
    body = res.json()
    assert [a["id"] for a in body["aspects"]] == [1, 2]
    # the anchor is match's first expert; the other member covers the other part
    first = client.engine.match(TWO_PARTS, top_k=1)[0].expert.id
    assert [m["expert"]["id"] for m in body["team"]][0] == first
    assert {m["expert"]["id"] for m in body["team"]} == {"e-weld", "e-bms"}
    covers = {m["expert"]["id"]: m["covers"] for m in body["team"]}
    assert covers == {"e-weld": [1], "e-bms": [2]}
    assert [a["covered_by"] for a in body["aspects"]] == [["e-weld"], ["e-bms"]]
    assert body["coverage"] == 1.0 and body["method"] == "exact" and body["unmatched"] == []
    bms = next(m for m in body["team"] if m["expert"]["id"] == "e-bms")
    assert bms["relevance"][1] == 1.0
    part = bms["explanation"]["aspects"][0]
    assert part["aspect_id"] == 2 and "BMS" in part["terms"] and part["evidence"]
    assert "contact" not in json.dumps(body), "no contact details without a key"
    # The same team as the library's, field for field.
    expected = recommend_team(client.engine, TWO_PARTS, size=2).to_dict()
    assert body == expected
    keyed = client.post("/api/v1/team", json={"text": TWO_PARTS, "size": 2}, headers=AUTH).json()
    phones = {m["expert"]["id"]: m["expert"]["contact"]["phone"] for m in keyed["team"]}
    assert phones["e-weld"] == "13800000001"


def test_team_filters_and_one_per_institution(client: TestClient) -> None:
    body = client.post("/api/v1/team", json={"text": TWO_PARTS, "size": 3,
                                             "filters": {"region": "浙江"}}).json()
    assert body["team"] and all("浙江" in m["expert"]["region"] for m in body["team"])
    assert "e-bms" not in [m["expert"]["id"] for m in body["team"]]
    # nobody in 浙江 knows BMS: the team says so
    assert body["unmatched"] == ["另外，动力锂电池BMS均衡控制策略不成熟"]
    excluded = client.post("/api/v1/team", json={
        "text": TWO_PARTS, "filters": {"exclude_institutions": ["浙江工业大学"]}}).json()
    assert "e-weld" not in [m["expert"]["id"] for m in excluded["team"]]
    one = client.post("/api/v1/team", json={"text": TWO_PARTS, "one_per_institution": True}).json()
    insts = [m["expert"]["institution"] for m in one["team"]]
    assert len(insts) == len(set(insts))


@pytest.mark.parametrize("body,needle", [
    ({"text": "  "}, "empty"),
    ({"text": TWO_PARTS, "size": 0}, "size"),
    ({"text": TWO_PARTS, "size": 9}, "size"),
    ({"text": TWO_PARTS, "szie": 3}, "szie"),
    ({"size": 3}, "text"),
    ({"text": "焊" * 20_001}, "limit is 20000"),
])
def test_bad_team_requests_are_422_naming_the_field(client: TestClient, body: dict, needle: str) -> None:
    assert_error(client.post("/api/v1/team", json=body), 422, "InputError", needle)


def test_a_stored_demands_team_and_its_needs_team_flag(client: TestClient) -> None:
    demand = {**DEMAND, "id": "d-team", "description": TWO_PARTS, "needs_team": True,
              "enterprise": "江苏省储能研究院"}
    res = client.post("/api/v1/demands", json=demand, headers=AUTH)
    assert res.status_code == 201 and res.json()["needs_team"] is True
    assert client.engine.store.get_demand("d-team").needs_team is True
    team = client.get("/api/v1/demands/d-team/team", params={"size": 2}, headers=READ).json()
    assert "e-bms" not in [m["expert"]["id"] for m in team["team"]]  # its own enterprise: 回避
    assert_error(client.get("/api/v1/demands/d-team/team", params={"size": 9}, headers=READ), 422,
                 "InputError", "size")
    assert_error(client.get("/api/v1/demands/nope/team", headers=READ), 404, "NotFoundError", "nope")

    off = client.put("/api/v1/demands/d-team/needs-team", json={"needs_team": False}, headers=AUTH)
    assert off.status_code == 200 and off.json()["needs_team"] is False
    assert client.engine.store.get_demand("d-team").needs_team is False
    # nothing else changed
    assert client.get("/api/v1/demands/d-team", headers=READ).json()["description"] == TWO_PARTS
    assert_error(client.put("/api/v1/demands/d-team/needs-team", json={"needs_team": True}), 401, "AuthError")
    perhaps = client.put("/api/v1/demands/d-team/needs-team", json={"needs_team": "perhaps"}, headers=AUTH)
    assert_error(perhaps, 422, "InputError", "needs_team")
    assert_error(client.put("/api/v1/demands/nope/needs-team", json={"needs_team": True}, headers=AUTH),
                 404, "NotFoundError")
    assert client.engine.store.get_demand("d-team").needs_team is False
