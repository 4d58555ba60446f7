"""The HTTP API through FastAPI's TestClient, on a real SQLite file per test.

A handful of made-up experts with distinct topics keeps the rankings obvious; the demo corpus is
exercised by the page test against a real server, and by the lifespan test here.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api import create_app
from api.routes import demands, experts, feedback, health, learning, outcomes
from api.routes import match as match_routes
from api.routes import team as team_routes
from matcher import validate
from matcher.config import Settings
from matcher.engine import Engine
from matcher.errors import DataImportError, NotFoundError
from matcher.models import Demand
from matcher.text import ChineseTokenizer

from .conftest import API_AUTH as AUTH
from .conftest import API_DEMAND as DEMAND
from .conftest import API_EXPERTS as EXPERTS
from .conftest import API_KEY as KEY
from .conftest import API_READ as READ
from .conftest import THERMOS, api_settings, assert_error, make_client

PHONES = [e["contact"]["phone"] for e in EXPERTS]
EMAILS = [e["contact"]["email"] for e in EXPERTS]


@pytest.fixture()
def client(tmp_path: Path, tokenizer: ChineseTokenizer) -> Iterator[TestClient]:
    yield from make_client(api_settings(tmp_path), tokenizer)


def match(client: TestClient, text: str, **body: object) -> list[dict]:
    res = client.post("/api/v1/match", json={"text": text, **body})
    assert res.status_code == 200, res.text
    payload = res.json()
    assert payload["count"] == len(payload["data"])
    return payload["data"]


def ids(rows: list[dict]) -> list[str]:
    return [r["expert"]["id"] for r in rows]


# -- /match --------------------------------------------------------------------------------------
def test_match_ranks_the_welding_expert_first_and_explains_why(client: TestClient) -> None:
    rows = match(client, THERMOS)
    assert rows[0]["expert"]["id"] == "e-weld"
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(a["score"] >= b["score"] for a, b in zip(rows, rows[1:], strict=False))
    top = rows[0]
    assert top["expert"] == {
        "id": "e-weld",
        "name": "周焊",
        "title": "教授",
        "institution": "浙江工业大学材料学院",
        "region": "浙江省杭州市",
        "research_fields": ["激光焊接", "不锈钢焊接", "真空保温器具"],
    }
    assert "激光焊接" in top["explanation"]["terms"]
    evidence = top["explanation"]["evidence"]
    assert evidence and {"field", "text", "terms", "score"} <= set(evidence[0])
    assert any("激光焊接" in ev["text"] and "激光焊接" in ev["terms"] for ev in evidence)
    assert "e-ferm" not in ids(rows)  # yoghurt shares no word with a welding problem


def test_match_sends_exactly_what_its_response_model_would(client: TestClient) -> None:
    # /match sends the body it builds without FastAPI validating it again (api.schemas.BuiltJSON):
    # it must be, byte for byte after parsing, the model's own serialisation of that body.
    from api.schemas import MatchList

    for text, body in ((THERMOS, {}), ("焊接 锂电池 SiC PLC 发酵", {"top_k": 3}),
                       ("锅底用久了发黑起斑", {"exclude_terms": ["锅底"], "extra_terms": ["不粘涂层"]})):
        for headers in ({}, AUTH):
            res = client.post("/api/v1/match", json={"text": text, **body}, headers=headers)
            assert res.status_code == 200 and res.headers["content-type"] == "application/json"
            sent = res.json()
            again = MatchList.model_validate(sent).model_dump(mode="json", by_alias=True, exclude_unset=True)
            assert sent == again
            assert ("contact" in sent["data"][0]["expert"]) == bool(headers)


def test_top_k_bounds_the_list(client: TestClient) -> None:
    assert len(match(client, "焊接 锂电池 SiC PLC 发酵", top_k=2)) == 2
    assert len(match(client, "焊接 锂电池 SiC PLC 发酵")) == 5


def test_filters_region_title_and_excluded_institutions(client: TestClient) -> None:
    text = "焊接生产线自动化 锂电池 SiC 发酵"
    assert set(ids(match(client, text, filters={"region": "江苏"}))) == {"e-bms", "e-ferm"}
    assert ids(match(client, text, filters={"title": "院士"})) == ["e-sic"]
    rows = match(client, THERMOS, filters={"exclude_institutions": ["浙江工业大学"]})
    assert "e-weld" not in ids(rows)
    assert rows and rows[0]["expert"]["id"] == "e-plc"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"text": ""}, "empty"),
        ({"text": "   \n "}, "empty"),
        ({"text": "焊" * 20_001}, "20000"),
        ({"text": "焊接", "top_k": 0}, "top_k"),
        ({"text": "焊接", "top_k": 101}, "top_k"),
        ({"text": "焊接", "top_k": "ten"}, "top_k"),
        ({}, "text"),
        ({"text": 42}, "text"),
        ({"text": "焊接", "topk": 5}, "topk"),
        ({"text": "焊接", "filters": {"region": ["浙江"]}}, "filters.region"),
    ],
)
def test_invalid_match_requests_are_422_with_a_readable_message(
    client: TestClient, body: dict, needle: str
) -> None:
    assert_error(client.post("/api/v1/match", json=body), 422, "InputError", needle)


def test_a_body_that_is_not_json_is_422(client: TestClient) -> None:
    res = client.post("/api/v1/match", content=b"text=hello", headers={"Content-Type": "application/json"})
    assert_error(res, 422, "InputError", "JSON")


def test_twenty_thousand_characters_are_accepted(client: TestClient) -> None:
    text = ("不锈钢激光焊接" * 3000)[:20_000]
    assert ids(match(client, text, top_k=1)) == ["e-weld"]


# -- contact details and keys --------------------------------------------------------------------
def test_contact_details_never_leave_without_a_key(client: TestClient) -> None:
    responses = [
        client.post("/api/v1/match", json={"text": "焊接 锂电池 SiC PLC 发酵"}),
        client.get("/api/v1/experts"),
        client.get("/api/v1/experts/e-weld"),
        client.post("/api/v1/match.xlsx", json={"text": "焊接 锂电池 SiC PLC 发酵"}),
    ]
    for res in responses:
        assert res.status_code == 200
    for res in responses[:3]:
        assert "contact" not in res.text
    wb = openpyxl.load_workbook(io.BytesIO(responses[3].content))
    cells = [str(c.value) for row in wb["匹配结果"].iter_rows() for c in row]
    for res_text in [r.text for r in responses[:3]] + ["\n".join(cells)]:
        for secret in PHONES + EMAILS:
            assert secret not in res_text


def test_contact_details_are_shown_with_a_key(client: TestClient) -> None:
    rows = client.post("/api/v1/match", json={"text": THERMOS}, headers=AUTH).json()["data"]
    assert rows[0]["expert"]["contact"] == {"phone": "13800000001", "email": "zhou.han@example.edu.cn"}
    one = client.get("/api/v1/experts/e-bms", headers=AUTH).json()
    assert one["contact"]["email"] == "wu.dian@example.org"
    listed = client.get("/api/v1/experts", headers=AUTH).json()["data"]
    assert {e["contact"]["phone"] for e in listed} == set(PHONES)


def test_a_wrong_key_is_refused_even_on_reads(client: TestClient) -> None:
    res = client.get("/api/v1/experts/e-weld", headers={"X-API-Key": KEY + "x"})
    assert_error(res, 401, "AuthError", "X-API-Key")
    assert res.headers["WWW-Authenticate"] == "APIKey"
    assert KEY not in res.text


def test_the_key_is_never_logged(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client.post("/api/v1/experts", json={"id": "e-new", "name": "新人", "bio": "焊接"}, headers=AUTH)
    client.get("/api/v1/experts/e-weld", headers={"X-API-Key": "wrong-key-123"})
    assert KEY not in caplog.text and "wrong-key-123" not in caplog.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/experts", {"id": "e-x", "name": "某人"}),
        ("PUT", "/api/v1/experts/e-weld", {"name": "周焊"}),
        ("DELETE", "/api/v1/experts/e-weld", None),
        ("POST", "/api/v1/demands", {"title": "激光焊接"}),
        ("POST", "/api/v1/feedback", {"demand_id": "d", "expert_id": "e-weld", "verdict": "accepted"}),
    ],
)
def test_every_write_needs_a_key(client: TestClient, method: str, path: str, body: dict | None) -> None:
    res = client.request(method, path, json=body)
    assert_error(res, 401, "AuthError", "X-API-Key")
    # Nothing was written.
    assert client.engine.store.count_experts() == len(EXPERTS)
    assert client.engine.store.get_expert("e-weld").name == "周焊"
    assert client.engine.store.count_demands() == 0


def test_without_configured_keys_writes_say_how_to_enable_them(
    tmp_path: Path, tokenizer: ChineseTokenizer
) -> None:
    for c in make_client(Settings(db=tmp_path / "nokeys.db"), tokenizer):
        res = c.post("/api/v1/experts", json={"id": "e-x", "name": "某人"}, headers=AUTH)
        assert_error(res, 401, "AuthError", "MATCHER_API_KEYS")


# -- experts -------------------------------------------------------------------------------------
def test_list_experts_pages_and_searches(client: TestClient) -> None:
    everyone = client.get("/api/v1/experts").json()
    assert everyone["count"] == 5
    assert [e["id"] for e in everyone["data"]] == sorted(e["id"] for e in EXPERTS)
    assert everyone["data"][0]["documents"][0]["title"]  # the full record, not a summary
    page = client.get("/api/v1/experts", params={"limit": 2, "offset": 2}).json()
    assert page["count"] == 5
    assert [e["id"] for e in page["data"]] == [e["id"] for e in everyone["data"][2:4]]
    found = client.get("/api/v1/experts", params={"q": "江苏"}).json()
    assert found["count"] == 2 and {e["id"] for e in found["data"]} == {"e-bms", "e-ferm"}
    assert client.get("/api/v1/experts", params={"q": "没有这个人"}).json() == {"data": [], "count": 0}


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": "many"}])
def test_list_experts_rejects_bad_paging(client: TestClient, params: dict) -> None:
    assert_error(client.get("/api/v1/experts", params=params), 422, "InputError", next(iter(params)))


def test_unknown_ids_are_404(client: TestClient) -> None:
    assert_error(client.get("/api/v1/experts/nobody"), 404, "NotFoundError", "nobody")
    assert_error(
        client.put("/api/v1/experts/nobody", json={"name": "某人", "bio": "焊接"}, headers=AUTH),
        404,
        "NotFoundError",
        "nobody",
    )
    assert_error(client.delete("/api/v1/experts/nobody", headers=AUTH), 404, "NotFoundError", "nobody")
    assert_error(client.get("/api/v1/demands/d-none", headers=READ), 404, "NotFoundError", "d-none")
    assert_error(client.get("/api/v1/demands/d-none/matches", headers=READ), 404, "NotFoundError", "d-none")
    assert_error(client.get("/api/v1/no/such/route"), 404, "HTTPError")


NEW_EXPERT = {
    "id": "e-ceramic",
    "name": "<script>alert('x')</script>林瓷",
    "title": "副教授",
    "institution": "景德镇陶瓷大学",
    "region": "江西省景德镇市",
    "research_fields": ["陶瓷釉料", "窑变釉"],
    "documents": [
        {"kind": "paper", "title": "高温窑变釉的呈色机理", "keywords": ["窑变釉", "呈色"], "year": 2022}
    ],
    "contact": {"phone": "13900000009", "email": "lin@example.cn"},
}


def test_a_created_expert_is_found_by_match_at_once(client: TestClient) -> None:
    assert "e-ceramic" not in ids(match(client, "窑变釉呈色不稳定"))
    res = client.post("/api/v1/experts", json=NEW_EXPERT, headers=AUTH)
    assert res.status_code == 201, res.text
    assert res.headers["Location"] == "/api/v1/experts/e-ceramic"
    assert res.json()["name"] == NEW_EXPERT["name"]  # stored as given, not escaped or stripped
    rows = match(client, "窑变釉呈色不稳定")
    assert ids(rows)[0] == "e-ceramic"
    assert rows[0]["expert"]["name"] == "<script>alert('x')</script>林瓷"
    assert client.get("/api/v1/experts/e-ceramic").json()["documents"][0]["title"] == "高温窑变釉的呈色机理"
    assert client.get("/api/v1/health").json()["index"]["experts"] == 6


def test_creating_a_taken_id_is_409_and_a_missing_id_is_generated(client: TestClient) -> None:
    res = client.post("/api/v1/experts", json={"id": "e-weld", "name": "冒名", "bio": "焊接"}, headers=AUTH)
    assert_error(res, 409, "ConflictError", "e-weld", "PUT")
    assert client.get("/api/v1/experts/e-weld").json()["name"] == "周焊"
    res = client.post(
        "/api/v1/experts", json={"name": "无号", "research_fields": ["海水淡化膜"]}, headers=AUTH
    )
    assert res.status_code == 201
    new_id = res.json()["id"]
    assert new_id and res.headers["Location"].endswith(new_id)
    assert ids(match(client, "海水淡化膜"))[0] == new_id


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"id": "e-y"}, "name"),
        ({"id": "a/b", "name": "某人"}, "id"),
        ({"name": "某人", "documents": [{"title": "x", "kind": "novel"}]}, "documents.0.kind"),
        ({"name": "某人", "research_fields": "不是列表"}, "research_fields"),
        ({"name": "某人", "phone": "123"}, "phone"),
        ({"name": "某人"}, "research_fields"),  # nothing to match on: an import refuses it too
        ({"name": "某人", "bio": "  "}, "research_fields"),
        ({"name": "某人", "bio": "焊接", "contact": {"phone": "12-34"}}, "phone"),
        ({"name": "某人", "bio": "焊接", "contact": {"email": "a@b"}}, "email"),
    ],
)
def test_invalid_experts_are_422(client: TestClient, body: dict, needle: str) -> None:
    assert_error(client.post("/api/v1/experts", json=body, headers=AUTH), 422, "InputError", needle)
    assert client.engine.store.count_experts() == len(EXPERTS)


def test_the_api_and_an_import_refuse_an_expert_by_the_same_rule_in_the_same_words(
        client: TestClient, tmp_path: Path) -> None:
    body = {"id": "e-empty", "name": "空白", "bio": " ", "contact": {"phone": "0571", "email": "nobody"}}
    res = client.post("/api/v1/experts", json=body, headers=AUTH)
    assert res.status_code == 422
    (tmp_path / "x.jsonl").write_text(json.dumps(body, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(DataImportError) as imported:
        client.engine.import_experts(tmp_path / "x.jsonl")
    said = res.json()["error"]["message"]
    assert len(imported.value.errors) == 3  # nothing to match on, the phone, the e-mail
    for e in imported.value.errors:  # every problem the import names, the API names in its words
        assert e.message in said
    assert all(f in said for f in ("research_fields：为空", "phone：「0571」", "email：「nobody」"))
    res = client.put("/api/v1/experts/e-weld", json={"name": "周焊"}, headers=AUTH)  # PUT: the same rule
    assert_error(res, 422, "InputError", "research_fields：为空")
    assert client.engine.store.count_experts() == len(EXPERTS)


def test_an_edited_expert_is_matched_on_the_new_record(client: TestClient) -> None:
    assert "e-ferm" in ids(match(client, "酸奶发酵风味"))
    assert "e-ferm" not in ids(match(client, "陶瓷窑变釉"))
    edited = {**EXPERTS[4], "research_fields": ["陶瓷窑变釉"], "documents": [], "title": "研究员"}
    res = client.put("/api/v1/experts/e-ferm", json=edited, headers=AUTH)
    assert res.status_code == 200, res.text
    assert res.json()["title"] == "研究员"
    assert ids(match(client, "陶瓷窑变釉"))[0] == "e-ferm"
    assert "e-ferm" not in ids(match(client, "酸奶发酵风味"))
    assert client.get("/api/v1/experts/e-ferm").json()["documents"] == []


def test_put_cannot_change_an_id(client: TestClient) -> None:
    res = client.put("/api/v1/experts/e-ferm", json={"id": "e-other", "name": "陈酵"}, headers=AUTH)
    assert_error(res, 422, "InputError", "e-other", "e-ferm")


def test_a_deleted_expert_is_gone_from_match_and_reads(client: TestClient) -> None:
    assert ids(match(client, THERMOS))[0] == "e-weld"
    res = client.delete("/api/v1/experts/e-weld", headers=AUTH)
    assert res.status_code == 204 and res.content == b""
    assert "e-weld" not in ids(match(client, THERMOS))
    assert client.get("/api/v1/experts/e-weld").status_code == 404
    assert client.get("/api/v1/experts").json()["count"] == 4
    assert client.get("/api/v1/health").json()["index"]["experts"] == 4


# -- demands and feedback ------------------------------------------------------------------------


def test_a_demand_is_stored_read_back_and_matched(client: TestClient) -> None:
    res = client.post("/api/v1/demands", json=DEMAND, headers=AUTH)
    assert res.status_code == 201, res.text
    assert res.headers["Location"] == "/api/v1/demands/d-thermos"
    got = client.get("/api/v1/demands/d-thermos", headers=READ).json()
    assert got == res.json()
    assert got["status"] == "new" and got["keywords"] == ["激光焊接", "真空"] and got["created_at"]
    assert client.engine.store.get_demand("d-thermos").enterprise == "永康杯业有限公司"
    rows = client.get("/api/v1/demands/d-thermos/matches", headers=READ).json()
    assert rows["count"] == len(rows["data"]) and rows["data"][0]["expert"]["id"] == "e-weld"
    assert "contact" not in json.dumps(rows)
    keyed = client.get("/api/v1/demands/d-thermos/matches", params={"top_k": 1}, headers=AUTH).json()
    assert keyed["count"] == 1 and keyed["data"][0]["expert"]["contact"]["phone"] == "13800000001"
    assert_error(
        client.get("/api/v1/demands/d-thermos/matches", params={"top_k": 0}, headers=READ), 422, "InputError", "top_k"
    )


def test_a_demands_matches_respect_its_conflict_rules(client: TestClient) -> None:
    plain = {**DEMAND, "id": "d-plain", "keywords": ["激光焊接", "焊接生产线", "锂电池"]}
    own = {**plain, "id": "d-own", "enterprise": "浙江工业大学", "avoid_institutions": ["宁波自动化有限公司"]}
    for demand in (plain, own):
        assert client.post("/api/v1/demands", json=demand, headers=AUTH).status_code == 201
    assert set(ids(client.get("/api/v1/demands/d-plain/matches", headers=READ).json()["data"])) >= {
        "e-weld",
        "e-plc",
        "e-bms",
    }
    found = ids(client.get("/api/v1/demands/d-own/matches", headers=READ).json()["data"])
    assert found[0] == "e-bms" and "e-weld" not in found and "e-plc" not in found


def test_demand_errors(client: TestClient) -> None:
    assert client.post("/api/v1/demands", json=DEMAND, headers=AUTH).status_code == 201
    assert_error(client.post("/api/v1/demands", json=DEMAND, headers=AUTH), 409, "ConflictError", "d-thermos")
    assert_error(
        client.post("/api/v1/demands", json={"enterprise": "某厂"}, headers=AUTH), 422, "InputError", "empty"
    )
    assert_error(
        client.post("/api/v1/demands", json={"title": "x", "status": "closed"}, headers=AUTH),
        422,
        "InputError",
        "status",
    )
    generated = client.post("/api/v1/demands", json={"title": "锂电池均衡"}, headers=AUTH).json()
    assert client.get(f"/api/v1/demands/{generated['id']}", headers=READ).json()["title"] == "锂电池均衡"
    assert client.engine.store.count_demands() == 2



@pytest.mark.parametrize(("field", "value", "why"), [
    ("created_at", "2026-11-31", "2026 年 11 月没有 31 日"),
    ("created_at", "2026-02-29T10:00:00", "2026 年 2 月没有 29 日"),
    ("deadline", "2027-02-30", "2027 年 2 月没有 30 日"),
    ("deadline", "2027-13-01", "没有 13 月"),
])
def test_the_api_refuses_an_impossible_date_as_import_does(client: TestClient, field: str, value: str,
                                                           why: str) -> None:
    """The demo's Q0031 was dated 2026-11-31 and emptied the median days to first contact: the API
    refuses a day that does not exist, with the message the import gives its row, and writes nothing."""
    before = client.engine.store.count_demands()
    res = client.post("/api/v1/demands", json={**DEMAND, field: value}, headers=AUTH)
    assert_error(res, 422, "InputError", value)
    assert why in res.json()["error"]["message"]
    assert client.engine.store.count_demands() == before
    with pytest.raises(NotFoundError):
        client.engine.store.get_demand(DEMAND["id"])

def test_feedback_is_stored(client: TestClient) -> None:
    client.post("/api/v1/demands", json=DEMAND, headers=AUTH)
    body = {
        "demand_id": "d-thermos",
        "expert_id": "e-weld",
        "verdict": "contacted",
        "note": "已电话联系，下周到厂",
    }
    res = client.post("/api/v1/feedback", json=body, headers=AUTH)
    assert res.status_code == 201, res.text
    out = res.json()
    assert out["id"] >= 1 and out["created_at"] and {k: out[k] for k in body} == body
    res2 = client.post("/api/v1/feedback", json={**body, "verdict": "succeeded", "note": ""}, headers=AUTH)
    stored = client.engine.store.list_feedback("d-thermos")
    assert [(r["expert_id"], r["verdict"], r["note"]) for r in stored] == [
        ("e-weld", "contacted", "已电话联系，下周到厂"),
        ("e-weld", "succeeded", ""),
    ]
    assert [r["id"] for r in stored] == [out["id"], res2.json()["id"]]


def test_feedback_errors(client: TestClient) -> None:
    client.post("/api/v1/demands", json=DEMAND, headers=AUTH)
    good = {"demand_id": "d-thermos", "expert_id": "e-weld", "verdict": "accepted"}
    assert_error(
        client.post("/api/v1/feedback", json={**good, "demand_id": "d-x"}, headers=AUTH),
        404,
        "NotFoundError",
        "d-x",
    )
    assert_error(
        client.post("/api/v1/feedback", json={**good, "expert_id": "e-x"}, headers=AUTH),
        404,
        "NotFoundError",
        "e-x",
    )
    assert_error(
        client.post("/api/v1/feedback", json={**good, "verdict": "liked"}, headers=AUTH),
        422,
        "InputError",
        "verdict",
    )
    assert client.engine.store.list_feedback() == []


# -- export --------------------------------------------------------------------------------------
def test_xlsx_export_holds_the_ranked_rows(client: TestClient) -> None:
    body = {"text": "焊接 锂电池 SiC PLC 发酵", "top_k": 4}
    rows = match(client, **body)
    res = client.post("/api/v1/match.xlsx", json=body)
    assert res.status_code == 200
    assert res.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert res.headers["content-disposition"].startswith("attachment;")
    assert res.content[:2] == b"PK"
    wb = openpyxl.load_workbook(io.BytesIO(res.content))
    assert wb.sheetnames == ["匹配结果", "需求"]
    table = list(wb["匹配结果"].values)
    assert table[0] == ("排名", "专家编号", "姓名", "职称", "单位", "地区", "强度", "等级", "匹配词", "依据")
    assert [(r[0], r[1], r[2]) for r in table[1:]] == [
        (m["rank"], m["expert"]["id"], m["expert"]["name"]) for m in rows
    ]
    assert table[1][6] == pytest.approx(rows[0]["strength"], abs=1e-4)  # the calibrated 0-1 strength
    assert table[1][7] == rows[0]["level"] and table[1][7] in ("强", "中", "弱")
    assert table[1][8].split("、") == rows[0]["explanation"]["terms"]
    assert rows[0]["explanation"]["evidence"][0]["text"] in table[1][9]
    assert wb["需求"]["B1"].value == body["text"]


def test_xlsx_export_with_a_key_adds_contacts_and_keeps_formulas_as_text(client: TestClient) -> None:
    client.post(
        "/api/v1/experts",
        json={"id": "e-f", "name": '=HYPERLINK("http://x")', "research_fields": ["窑变釉"]},
        headers=AUTH,
    )
    res = client.post("/api/v1/match.xlsx", json={"text": "窑变釉 =1+1"}, headers=AUTH)
    wb = openpyxl.load_workbook(io.BytesIO(res.content))
    ws = wb["匹配结果"]
    assert [c.value for c in ws[1]][-2:] == ["电话", "邮箱"]
    name = ws["C2"]
    assert name.value == '=HYPERLINK("http://x")' and name.data_type == "s"
    assert wb["需求"]["B1"].data_type == "s"


def test_xlsx_export_validates_like_match(client: TestClient) -> None:
    assert_error(client.post("/api/v1/match.xlsx", json={"text": ""}), 422, "InputError", "empty")


# -- health, limits, headers, CORS ---------------------------------------------------------------
def test_health_reports_the_index(client: TestClient) -> None:
    res = client.get("/api/v1/health").json()
    assert res["status"] == "ok" and res["version"] == __import__("matcher").__version__
    idx = res["index"]
    assert idx["experts"] == 5
    assert idx["documents"] >= 5 + 6  # a research-fields unit per expert, plus documents and bios
    assert idx["terms"] > 10 and idx["format_version"] >= 1 and idx["data_version"] >= 1


@pytest.fixture()
def small_body_client(tmp_path: Path, tokenizer: ChineseTokenizer) -> Iterator[TestClient]:
    yield from make_client(api_settings(tmp_path, max_body_bytes=2000), tokenizer)


def test_an_oversized_body_is_413_by_content_length(small_body_client: TestClient) -> None:
    res = small_body_client.post("/api/v1/match", json={"text": "焊" * 3000})
    assert_error(res, 413, "PayloadTooLargeError", "2000", "MATCHER_MAX_BODY_BYTES")
    assert res.headers["x-content-type-options"] == "nosniff"


def test_an_expert_too_large_to_read_is_413_stores_nothing_and_the_schema_says_so(
        small_body_client: TestClient) -> None:
    """What the CI's schemathesis run found: a 1 MB expert body was answered 413, a status the
    operation did not document. Every operation that takes a body now names it."""
    before = small_body_client.get("/api/v1/experts").json()["count"]
    res = small_body_client.post("/api/v1/experts", headers={"X-API-Key": KEY},
                                 json={"id": "e-big", "name": "ã" * 3000, "research_fields": ["焊接"]})
    assert_error(res, 413, "PayloadTooLargeError", "2000")
    assert small_body_client.get("/api/v1/experts").json()["count"] == before
    assert small_body_client.get("/api/v1/experts/e-big").status_code == 404
    paths = small_body_client.get("/openapi.json").json()["paths"]
    with_body = {(method.upper(), path) for path, ops in paths.items() for method, op in ops.items()
                 if "requestBody" in op}
    assert {("POST", "/api/v1/experts"), ("POST", "/api/v1/match"), ("POST", "/api/v1/demands")} <= with_body
    undocumented = {key for key in with_body if "413" not in paths[key[1]][key[0].lower()]["responses"]}
    assert undocumented == set()
    described = paths["/api/v1/experts"]["post"]["responses"]["413"]
    assert described["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}


def test_an_oversized_streamed_body_is_413_by_counting(small_body_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"text": "'
        for _ in range(50):
            yield "焊接".encode() * 10
        yield b'"}'

    res = small_body_client.post(
        "/api/v1/match", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(res, 413, "PayloadTooLargeError", "2000")
    small = small_body_client.post(
        "/api/v1/match",
        content=iter([b'{"text": "', "焊接".encode(), b'"}']),
        headers={"Content-Type": "application/json"},
    )
    assert small.status_code == 200 and ids(small.json()["data"])[0] == "e-weld"


def test_security_headers(client: TestClient) -> None:
    for path in ("/", "/api/v1/health", "/static/app.js", "/experts/e-weld"):
        h = client.get(path).headers
        assert h["x-content-type-options"] == "nosniff"
        assert h["x-frame-options"] == "DENY"
        assert h["referrer-policy"] == "no-referrer"
        csp = h["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "http" not in csp and "unsafe" not in csp and "*" not in csp


def test_cors_is_closed_by_default(client: TestClient) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    res = client.options("/api/v1/match", headers=preflight)
    assert "access-control-allow-origin" not in res.headers
    res = client.post("/api/v1/match", json={"text": "焊接"}, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in res.headers


def test_cors_opens_only_to_configured_origins(tmp_path: Path, tokenizer: ChineseTokenizer) -> None:
    settings = api_settings(tmp_path, cors_origins=("https://kexie.example",))
    for c in make_client(settings, tokenizer):
        ok = c.options(
            "/api/v1/match",
            headers={
                "Origin": "https://kexie.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key,content-type",
            },
        )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://kexie.example"
        assert "x-api-key" in ok.headers["access-control-allow-headers"].lower()
        bad = c.options(
            "/api/v1/match",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in bad.headers


# -- the page ------------------------------------------------------------------------------------
def test_the_page_is_chinese_self_contained_and_builds_no_html_from_data(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<html lang="zh-CN">' in html and 'id="demand"' in html and ">匹配</button>" in html
    assert 'id="region"' in html and 'id="title"' in html and "下载 Excel" in html
    js = client.get("/static/app.js")
    css = client.get("/static/style.css")
    assert js.status_code == css.status_code == 200
    for text in (html, js.text, css.text):
        assert not re.search(r"(src|href)=[\"']?(https?:)?//|url\(|@import", text), "an asset from elsewhere"
    code = "\n".join(line.split("//")[0] for line in js.text.splitlines())
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function", code)
    assert "textContent" in code


def test_the_profile_page_escapes_and_hides_contacts(client: TestClient) -> None:
    client.post("/api/v1/experts", json=NEW_EXPERT, headers=AUTH)
    page = client.get("/experts/e-ceramic")
    assert page.status_code == 200
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;林瓷" in page.text
    assert "<script>alert" not in page.text
    assert "高温窑变釉的呈色机理" in page.text and "论文" in page.text
    assert NEW_EXPERT["contact"]["phone"] not in page.text and NEW_EXPERT["contact"]["email"] not in page.text
    missing = client.get("/experts/%3Cb%3Enobody")
    assert missing.status_code == 404 and "&lt;b&gt;nobody" in missing.text


# -- the app itself ------------------------------------------------------------------------------
def test_openapi_lists_every_endpoint(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {p: sorted(spec["paths"][p]) for p in spec["paths"]} == {
        "/api/v1/match": ["post"],
        "/api/v1/match.xlsx": ["post"],
        "/api/v1/experts": ["get", "post"],
        "/api/v1/experts/{expert_id}": ["delete", "get", "put"],
        "/api/v1/experts/{expert_id}/history": ["get"],
        "/api/v1/experts/{expert_id}/pause": ["delete", "put"],
        "/api/v1/experts/{expert_id}/demands": ["get"],
        "/api/v1/experts/{expert_id}/visit-plan": ["get"],
        "/api/v1/demands": ["get", "post"],
        "/api/v1/demands/match": ["post"],
        "/api/v1/demands/{demand_id}": ["get", "patch"],
        "/api/v1/demands/{demand_id}/matches": ["get"],
        "/api/v1/demands/{demand_id}/needs-team": ["put"],
        "/api/v1/demands/{demand_id}/team": ["get"],
        "/api/v1/team": ["post"],
        "/api/v1/demands/{demand_id}/recommendations": ["get"],
        "/api/v1/feedback": ["post"],
        "/api/v1/feedback/{feedback_id}": ["delete"],
        "/api/v1/proposals": ["get"],
        "/api/v1/proposals/accept": ["post"],
        "/api/v1/proposals/reject": ["post"],
        "/api/v1/proposals/reopen": ["post"],
        "/api/v1/thesaurus/own": ["get"],
        "/api/v1/outcomes": ["get", "post"],
        "/api/v1/outcomes/{outcome_id}": ["delete", "get"],
        "/api/v1/stats": ["get"],
        "/api/v1/health": ["get"],
    }
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_routes_are_plain_functions() -> None:
    # Ranking is CPU work: `def` routes run in the thread pool instead of blocking the event loop.
    modules = (demands, experts, feedback, health, match_routes, outcomes, team_routes)
    routes = [r for m in modules for r in m.router.routes] + list(learning.api.routes)
    assert len(routes) == 35 and all(isinstance(r, APIRoute) for r in routes)
    assert not [r.path for r in routes if inspect.iscoroutinefunction(r.endpoint)]


def test_the_lifespan_loads_the_demo_into_an_empty_database(tmp_path: Path) -> None:
    settings = Settings(db=tmp_path / "fresh.db")
    with TestClient(create_app(settings, demo_if_empty=True)) as c:
        health = c.get("/api/v1/health").json()
        assert health["index"]["experts"] >= 20
        rows = match(c, THERMOS, top_k=5)
        assert rows and "焊接" in " ".join(rows[0]["explanation"]["terms"])
    engine = Engine(settings)
    try:
        assert engine.store.count_experts() == health["index"]["experts"]
        assert engine.store.count_demands() > 0
        assert isinstance(engine.store.get_demand(next(engine.store.iter_demands()).id), Demand)
    finally:
        engine.close()


def test_an_empty_database_answers_with_empty_lists(tmp_path: Path, tokenizer: ChineseTokenizer) -> None:
    settings = api_settings(tmp_path)
    engine = Engine(settings, tokenizer=tokenizer)
    with TestClient(create_app(settings, engine=engine)) as c:
        assert c.get("/api/v1/health").json()["index"]["experts"] == 0
        empty = c.post("/api/v1/match", json={"text": THERMOS}).json()
        assert (empty["data"], empty["count"]) == ([], 0)
        assert "保温杯" in empty["understanding"]["products"]  # understood, though nobody can be listed
        assert c.get("/api/v1/experts").json() == {"data": [], "count": 0}
        for expert in (NEW_EXPERT, EXPERTS[0]):
            assert c.post("/api/v1/experts", json=expert, headers=AUTH).status_code == 201
        assert ids(match(c, "窑变釉"))[0] == "e-ceramic"
        assert c.get("/api/v1/health").json()["index"]["experts"] == 2
    engine.close()


@pytest.mark.parametrize("space", ["\x1c", "\x1f", "\x85", "\u3000", "\u2028"])
def test_the_schema_promises_no_address_or_id_the_rules_refuse(client: TestClient, space: str) -> None:
    """A JSON-schema pattern is read with ECMA-262's `\\s`, which leaves out \\x1c-\\x1f and \\x85 (Python's
    `strip` removes them): the schema spells white space out, so what it accepts the rules accept, and
    what the rules refuse it refuses (a fuzzer found an e-mail with \\x1f and an outcome's id "\\r")."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    patterns = re.findall(r'"pattern": "((?:[^"\\]|\\.)*)"', json.dumps(schemas))
    assert len(patterns) >= 3 and not [p for p in patterns if re.search(r"\\\\[sS]", p)]
    pattern = re.compile(schemas["ContactIn"]["properties"]["email"]["pattern"])
    ids = re.compile(schemas["OutcomeIn"]["properties"]["expert_ids"]["items"]["pattern"])
    assert not ids.search(f"{space} ") and ids.search(f"{space}X0004")
    for address in (f"zhou{space}han@example.cn", f"zhou@exam{space}ple.cn"):
        assert not pattern.search(address)
        body = {"name": "某人", "bio": "焊接", "contact": {"email": address}}
        assert_error(client.post("/api/v1/experts", json=body, headers=AUTH), 422, "InputError", "email")
    assert pattern.search("zhou.han@例子.中国") and validate.EMAIL.fullmatch("zhou.han@例子.中国")
    outcome = {"demand_id": "q-1", "expert_ids": [f"{space} "], "kind": "技术难题解决", "value": 1,
               "date": "2026-01-05"}
    res = client.post("/api/v1/outcomes", headers=AUTH, json=outcome)
    assert_error(res, 422, "InputError", "expert_ids")
    assert re.fullmatch(f"[{validate.SPACE}]+", "".join(c for c in map(chr, range(0x3001)) if c.isspace()))
