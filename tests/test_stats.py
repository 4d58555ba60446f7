"""Outcomes and statistics on a seeded database whose figures were counted by hand (the comments
say how): the library, GET /api/v1/stats, POST /api/v1/outcomes and `matcher report`'s workbook
must all give exactly those numbers."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import openpyxl
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api import create_app
from matcher.cli import app as cli
from matcher.config import Settings
from matcher.engine import Engine
from matcher.errors import InputError, NotFoundError
from matcher.models import Demand, Expert, Explanation
from matcher.records import BatchMatch, BatchOutcome
from matcher.stats import compute
from matcher.workflow import Workflow, key_actor

from .conftest import assert_error

KEY = "stats-key-0001-edaf882fdc1ce7"
READ_KEY = "stats-rkey-0001-edaf882fdc1ce7-read"  # a key with the read role: the working data, no contacts
READ = {"X-API-Key": READ_KEY}
AUTH = {"X-API-Key": KEY}
STAFF = "staff:lihua"
EXPERTS = [
    {
        "id": "E1",
        "name": "焊工甲",
        "institution": "浙江工业大学",
        "research_fields": ["激光焊接", "不锈钢焊接"],
    },
    {
        "id": "E2",
        "name": "电池乙",
        "institution": "江苏储能院",
        "research_fields": ["电池管理系统", "锂电池"],
    },
    {
        "id": "E3",
        "name": "茶叶丙",
        "institution": "中国农科院茶叶所",
        "research_fields": ["茶叶加工", "名优茶"],
    },
]
# id, created (China time when no zone), industry, region, title, status
DEMANDS = [
    ("D1", "2026-01-10T09:00:00", "保温杯", "浙江省金华市永康市", "保温杯激光焊接合格率低", "matched"),
    ("D2", "2026-01-11T09:00:00+08:00", "保温杯", "浙江省金华市武义县", "不锈钢水壶焊缝渗漏", "matched"),
    ("D3", "2026-02-03T10:00:00+08:00", "储能", "浙江省杭州市", "储能电站BMS均衡", "matched"),
    ("D4", "2026-03-05T10:00:00+08:00", "储能", "浙江省杭州市西湖区", "锂电池SOC估计偏差", "contacted"),
    ("D5", "2026-03-20T10:00:00+08:00", "茶叶", "浙江省湖州市安吉县", "白茶揉捻机改进", "new"),
    ("D6", "2026-04-02T10:00:00+08:00", "茶叶", "浙江省湖州市安吉县", "名优茶杀青温度控制", "new"),
    ("D7", "2025-12-20T10:00:00+08:00", "保温杯", "浙江省金华市永康市", "杯盖注塑缩痕", "connected"),
    ("D8", "2026-07-01T10:00:00+08:00", "储能", "浙江省杭州市", "户储逆变器效率", "new"),
]
PERIOD = (date(2026, 1, 1), date(2026, 6, 30))


@pytest.fixture()
def seeded(tmp_path: Path, tokenizer) -> Engine:
    engine = Engine(Settings(db=tmp_path / "s.db", api_keys=(KEY, f"read:{READ_KEY}")), tokenizer=tokenizer)
    engine.upsert_experts(Expert.from_dict(e) for e in EXPERTS)
    engine.add_demands(
        Demand.from_dict({"id": i, "created_at": c, "industry": ind, "region": r, "title": t, "status": s})
        for i, c, ind, r, t, s in DEMANDS
    )
    store = engine.store
    # One nightly run recommended E1 for D1 and D2, E2 for D3 (and E1 for D7, outside the period).
    run = store.create_batch_run("2026-01-12", top=10, max_per_expert=5, candidates=300)
    empty = Explanation(terms=(), evidence=())
    recs = [("D1", "E1"), ("D2", "E1"), ("D3", "E2"), ("D7", "E1")]
    store.finish_batch_run(
        run.id,
        [BatchMatch(run.id, d, e, 1, 1.0, 1, empty) for d, e in recs],
        [BatchOutcome(d, 1, 0, 1, "", "") for d, _ in recs],
        total_score=4.0,
        seconds=0.1,
        method="test",
    )
    for demand, expert, verdict, at in (
        ("D1", "E1", "contacted", "2026-01-12T09:00:00+08:00"),  # 2.0 days after D1
        ("D1", "E1", "accepted", "2026-01-20T10:00:00+08:00"),
        ("D1", "E1", "succeeded", "2026-02-01T10:00:00+08:00"),
        ("D2", "E1", "declined", "2026-01-15T21:00:00+08:00"),  # 4.5 days after D2: a refusal is a contact
        ("D6", "E3", "unsuitable", "2026-04-03T10:00:00+08:00"),  # no contact
        ("D7", "E1", "succeeded", "2026-01-05T10:00:00+08:00"),  # D7 is from 2025
    ):
        store.record_feedback(demand, expert, verdict, actor=STAFF, at=at)
    loop = Workflow(engine)
    for demand, experts, kind, value, day in (
        ("D1", ["E1"], "技术难题解决", 1, "2026-02-05"),
        ("D1", ["E1"], "经济效益", 120.5, "2026-03-01"),
        ("D1", ["E1", "E2"], "授权专利", 2, "2026-05-10"),
        ("D7", ["E1"], "经济效益", 30, "2026-01-20"),  # an old demand's outcome, dated in the period
        ("D1", ["E1"], "人才培养", 3, "2026-08-01"),  # after the period
    ):
        loop.record_outcome(STAFF, demand, experts, kind, value, day)
    yield engine
    engine.close()


# The hand count for 2026-01-01 .. 2026-06-30 (demands D1-D6 received; D7, D8 outside):
FUNNEL = {
    "received": 6,
    "recommended": 5,  # D1, D2, D3 (runs), D4 (status 已联系), D6 (a verdict); not D5
    "contacted": 3,  # D1 (已联系), D2 (婉拒), D4 (status)
    "accepted": 1,  # D1
    "succeeded": 1,
}  # D1
OUTCOMES = {"合作意向": 0, "技术难题解决": 1, "项目合作": 0, "授权专利": 2, "人才培养": 0, "经济效益": 150.5}
OUTCOME_COUNTS = {
    "合作意向": 0,
    "技术难题解决": 1,
    "项目合作": 0,
    "授权专利": 1,
    "人才培养": 0,
    "经济效益": 2,
}
# month: received, recommended, contacted, accepted, succeeded, outcomes dated in the month
MONTHS = {
    "2026-01": (2, 2, 2, 1, 1, 1),
    "2026-02": (1, 1, 0, 0, 0, 1),
    "2026-03": (2, 1, 1, 0, 0, 1),
    "2026-04": (1, 1, 0, 0, 0, 0),
    "2026-05": (0, 0, 0, 0, 0, 1),
}
INDUSTRIES = {"保温杯": (2, 2, 2, 1, 1), "储能": (2, 2, 1, 0, 0), "茶叶": (2, 1, 0, 0, 0)}
CITIES = {"金华市": (2, 2, 2, 1, 1), "杭州市": (2, 2, 1, 0, 0), "湖州市": (2, 1, 0, 0, 0)}
# expert: recommended, contacted, accepted, succeeded (D1-D6), outcomes dated in the period
EXPERT_ROWS = [("E1", 2, 2, 1, 1, 4), ("E2", 1, 0, 0, 0, 1)]
MEDIAN_DAYS = 3.25  # D1 2.0, D2 4.5 (D4 has no verdict to time)


def test_the_figures_equal_the_hand_count(seeded: Engine) -> None:
    s = compute(seeded, *PERIOD)
    assert s.funnel == FUNNEL
    assert s.outcomes == OUTCOMES and s.outcome_counts == OUTCOME_COUNTS
    assert {
        r.name: (r.received, r.recommended, r.contacted, r.accepted, r.succeeded, r.outcomes)
        for r in s.by_month
    } == MONTHS
    assert {
        r.name: (r.received, r.recommended, r.contacted, r.accepted, r.succeeded) for r in s.by_industry
    } == INDUSTRIES
    assert {
        r.name: (r.received, r.recommended, r.contacted, r.accepted, r.succeeded) for r in s.by_region
    } == CITIES
    assert [
        (e.expert_id, e.recommended, e.contacted, e.accepted, e.succeeded, e.outcomes) for e in s.experts
    ] == EXPERT_ROWS
    assert s.median_days_to_contact == MEDIAN_DAYS and s.contacted_demands == 2


def test_without_a_period_everything_counts(seeded: Engine) -> None:
    s = compute(seeded)
    # D7 (2025, 已对接, 对接成功) and D8 (July, nothing) join: 8 received.
    assert s.funnel == {"received": 8, "recommended": 6, "contacted": 4, "accepted": 2, "succeeded": 2}
    assert s.outcomes["人才培养"] == 3 and s.outcomes["经济效益"] == 150.5
    assert s.median_days_to_contact == 4.5 and s.contacted_demands == 3  # D1 2.0, D2 4.5, D7 16.0 days


def test_the_api_answers_the_same_numbers(seeded: Engine) -> None:
    with TestClient(create_app(seeded.settings, engine=seeded)) as client:
        res = client.get("/api/v1/stats", params={"from": "2026-01-01", "to": "2026-06-30"}, headers=READ)
        assert res.status_code == 200, res.text
        body = res.json()
    assert body["funnel"] == FUNNEL
    assert body["outcomes"] == OUTCOMES and body["outcome_counts"] == OUTCOME_COUNTS
    assert body["outcome_units"]["授权专利"] == "件" and body["outcome_units"]["经济效益"] == "万元"
    assert {
        m["month"]: (
            m["received"],
            m["recommended"],
            m["contacted"],
            m["accepted"],
            m["succeeded"],
            m["outcomes"],
        )
        for m in body["by_month"]
    } == MONTHS
    assert {r["region"]: r["received"] for r in body["by_region"]} == {k: v[0] for k, v in CITIES.items()}
    assert [(e["expert_id"], e["outcomes"]) for e in body["experts"]] == [("E1", 4), ("E2", 1)]
    assert body["median_days_to_first_contact"] == MEDIAN_DAYS
    assert body["from"] == "2026-01-01" and isinstance(body["gaps"], list)


def test_the_report_workbook_holds_the_same_numbers(seeded: Engine, tmp_path: Path) -> None:
    out = tmp_path / "年度报告.xlsx"
    res = CliRunner().invoke(
        cli,
        [
            "report",
            "--from",
            "2026-01-01",
            "--to",
            "2026-06-30",
            "--out",
            str(out),
            "--db",
            str(seeded.settings.db),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "6 demands received, 1 succeeded, 4 outcomes" in res.output
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["概览", "成果", "成果明细", "按月", "按行业", "按地区", "专家", "专家库缺口"]
    overview = {row[0]: row[1] for row in wb["概览"].iter_rows(min_row=2, values_only=True)}
    assert [overview[k] for k in ("收到需求", "已推荐", "已联系", "同意对接", "对接成功")] == list(
        FUNNEL.values()
    )
    assert overview["从提交到首次联系（天，中位数）"] == MEDIAN_DAYS
    kinds = {row[0]: (row[1], row[2], row[3]) for row in wb["成果"].iter_rows(min_row=2, values_only=True)}
    assert kinds == {
        k: (v, u, OUTCOME_COUNTS[k])
        for (k, v), u in zip(OUTCOMES.items(), ("项", "项", "项", "件", "人", "万元"), strict=True)
    }
    details = list(wb["成果明细"].iter_rows(min_row=2, values_only=True))
    assert [(r[1], r[2], r[3]) for r in details] == [
        ("2026-01-20", "经济效益", 30),
        ("2026-02-05", "技术难题解决", 1),
        ("2026-03-01", "经济效益", 120.5),
        ("2026-05-10", "授权专利", 2),
    ]
    assert details[3][8] == "焊工甲、电池乙" and details[1][6] == "保温杯激光焊接合格率低"
    months = {r[0]: tuple(r[1:]) for r in wb["按月"].iter_rows(min_row=2, values_only=True)}
    assert months == MONTHS
    assert {r[0]: tuple(r[1:]) for r in wb["按行业"].iter_rows(min_row=2, values_only=True)} == INDUSTRIES
    assert {r[0]: tuple(r[1:]) for r in wb["按地区"].iter_rows(min_row=2, values_only=True)} == CITIES
    experts = [(r[0], *r[3:]) for r in wb["专家"].iter_rows(min_row=2, values_only=True)]
    assert experts == EXPERT_ROWS
    bad = CliRunner().invoke(
        cli, ["report", "--out", str(tmp_path / "r.csv"), "--db", str(seeded.settings.db)]
    )
    assert bad.exit_code == 2 and ".xlsx" in bad.output


# -- outcomes: validation, audit, the API --------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("D1", ["E1"], "发表论文", 1, "2026-02-01"), "kind"),
        (("D1", ["E1"], "授权专利", 1.5, "2026-02-01"), "whole"),
        (("D1", ["E1"], "授权专利", 0, "2026-02-01"), "above 0"),
        (("D1", ["E1"], "经济效益", 2e9, "2026-02-01"), "at most"),
        (("D1", [], "授权专利", 1, "2026-02-01"), "expert_ids"),
        (("D1", ["E1"], "授权专利", 1, "2026-02-30"), "2026-02-30"),
    ],
)
def test_bad_outcomes_are_refused_and_nothing_is_written(seeded: Engine, args: tuple, needle: str) -> None:
    before = len(seeded.store.list_outcomes(limit=None))
    with pytest.raises(InputError, match=needle):
        Workflow(seeded).record_outcome(STAFF, *args)
    with pytest.raises(InputError, match="万元"):
        Workflow(seeded).record_outcome(STAFF, "D1", ["E1"], "经济效益", 5, "2026-02-01", unit="项")
    with pytest.raises(NotFoundError, match="E9"):
        Workflow(seeded).record_outcome(STAFF, "D1", ["E1", "E9"], "授权专利", 1, "2026-02-01")
    assert len(seeded.store.list_outcomes(limit=None)) == before


def test_outcomes_through_the_api_are_audited_and_linked(seeded: Engine) -> None:
    body = {
        "demand_id": "D3",
        "expert_ids": ["E2"],
        "kind": "项目合作",
        "value": 1,
        "date": "2026-06-01",
        "note": "共建储能联合实验室",
    }
    with TestClient(create_app(seeded.settings, engine=seeded)) as client:
        assert_error(client.post("/api/v1/outcomes", json=body), 401, "AuthError")
        res = client.post("/api/v1/outcomes", json=body, headers=AUTH)
        assert res.status_code == 201, res.text
        made = res.json()
        assert res.headers["location"] == f"/api/v1/outcomes/{made['id']}"
        assert made["unit"] == "项" and made["actor"] == key_actor(KEY)
        assert client.get(f"/api/v1/outcomes/{made['id']}", headers=READ).json() == made
        listed = client.get("/api/v1/outcomes", params={"expert_id": "E2"}, headers=READ).json()
        assert listed["count"] == 2 and {o["kind"] for o in listed["data"]} == {"项目合作", "授权专利"}
        assert client.get("/api/v1/stats", params={"from": "2026-06-01"}, headers=READ).json()["outcomes"]["项目合作"] == 1
        for bad, field in (
            ({**body, "unit": "件"}, "unit"),
            ({**body, "value": 1.5}, "value"),
            ({**body, "kind": "论文"}, "kind"),
            ({**body, "expert_ids": ["E2", "E2"]}, "twice"),
            ({**body, "date": 20260601}, "date"),
            ({**body, "extra": 1}, "extra"),
        ):
            assert_error(client.post("/api/v1/outcomes", json=bad, headers=AUTH), 422, "InputError", field)
        assert_error(
            client.post("/api/v1/outcomes", json={**body, "demand_id": "D9"}, headers=AUTH),
            404,
            "NotFoundError",
            "D9",
        )
        assert client.delete(f"/api/v1/outcomes/{made['id']}", headers=AUTH).status_code == 204
        assert_error(client.get(f"/api/v1/outcomes/{made['id']}", headers=READ), 404, "NotFoundError")
    entries, _ = seeded.store.list_audit(action="outcome.")
    assert [(e.action, e.detail["kind"]) for e in entries][:2] == [
        ("outcome.delete", "项目合作"),
        ("outcome.add", "项目合作"),
    ]


def test_the_json_period_must_be_dates(seeded: Engine) -> None:
    with TestClient(create_app(seeded.settings, engine=seeded)) as client:
        for params in ({"from": "0"}, {"to": "2026-13-01"}):
            assert_error(client.get("/api/v1/stats", params=params, headers=READ), 422, "InputError", next(iter(params)))
        assert client.get("/api/v1/stats", params={"from": "2030-01-01"}, headers=READ).json()["funnel"]["received"] == 0


def test_an_outcome_form_on_the_demand_page(seeded: Engine) -> None:
    import re

    from matcher.accounts import Accounts

    Accounts(seeded.store, seeded.settings).add_user("lihua", "统计员的密码-2026!", "staff")
    with TestClient(create_app(seeded.settings, engine=seeded)) as client:
        form = client.get("/login")
        token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)
        client.post(
            "/login",
            data={
                "username": "lihua",
                "password": "统计员的密码-2026!",
                "login_token": token,
                "next": "/demands/D1",
            },
        )
        page = client.get("/demands/D1")
        assert page.text.count("data-outcome=") == 4 and 'id="outcome-form"' in page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        res = client.post(
            "/demands/D1/outcomes",
            data={
                "csrf_token": csrf,
                "kind": "人才培养",
                "value": "2",
                "date": "2026-06-15",
                "expert_ids": ["E1"],
                "note": "培训",
            },
        )
        assert (
            res.status_code == 200
            and "已记录成果：人才培养" in res.text
            and res.text.count("data-outcome=") == 5
        )
        bad = client.post(
            "/demands/D1/outcomes",
            data={
                "csrf_token": csrf,
                "kind": "人才培养",
                "value": "2.5",
                "date": "2026-06-15",
                "expert_ids": ["E1"],
            },
        )
        assert bad.status_code == 422 and "人才培养以整数「人」计，不能是 2.5" in bad.text
        forged = client.post(
            "/demands/D1/outcomes",
            data={"kind": "人才培养", "value": "2", "date": "2026-06-15", "expert_ids": ["E1"]},
        )
        assert forged.status_code == 403
        stats = client.get("/stats", params={"from": "2026-01-01", "to": "2026-06-30"})
        assert stats.status_code == 200 and stats.text.count("<svg") == 5
        assert '<div class="stat-card" data-stage="received"><div class="n">6</div>' in stats.text
        assert '<tr data-kind="人才培养"><td>人才培养</td><td class="num">2</td>' in stats.text
    assert json.loads(json.dumps(compute(seeded, *PERIOD).to_json()))["outcomes"]["人才培养"] == 2
