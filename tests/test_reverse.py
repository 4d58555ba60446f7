"""Reverse matching for visits (院士专家企业行): an expert's open demands, explained, from a BM25
index over the demands kept current as they arrive; the visit plan; the API and the CLI."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api import create_app
from matcher.cli import app as cli
from matcher.config import Settings
from matcher.engine import Engine
from matcher.errors import InputError, NotFoundError
from matcher.index import TermIndex
from matcher.models import Demand
from matcher.regions import parse_region
from matcher.reverse import DemandIndex, demand_index, plan_visit
from matcher.workflow import Workflow

from .conftest import assert_error, copy_db, demo_template

GOLDEN = Path(__file__).parent / "golden" / "reverse_welding.json"
KEY = "reverse-key-1-7c9a3aee276e1b"
READ_KEY = "reverse-rkey-1-7c9a3aee276e1b-read"  # a key with the read role: the working data, no contacts
READ = {"X-API-Key": READ_KEY}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    return demo_template(tmp_path_factory.mktemp("reverse"), tokenizer)


@pytest.fixture()
def engine(tmp_path: Path, template: Path, tokenizer) -> Engine:
    db = copy_db(template, tmp_path)
    e = Engine(Settings(db=db, api_keys=(KEY, f"read:{READ_KEY}")), tokenizer=tokenizer)
    yield e
    e.close()


def welding(d: Demand) -> bool:
    return any(w in d.text for w in ("焊接", "焊缝"))


def test_the_welding_expert_gets_the_welding_demands_first(engine: Engine) -> None:
    """Golden: 陆文涛 (X0002, 不锈钢激光焊接, 焊缝在线检测) on the demo corpus."""
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    found = demand_index(engine).for_expert(golden["expert_id"], top_k=len(golden["demands"]))
    ids = [m.demand.id for m in found]
    assert ids == golden["demands"]
    demands = {d.id: d for d in engine.store.iter_demands()}
    n_welding = sum(welding(d) and d.status in ("new", "matched", "contacted") for d in demands.values())
    assert n_welding == 2 and all(welding(demands[i]) for i in ids[:n_welding])  # the welding demands first
    assert not any(welding(demands[i]) for i in ids[n_welding:])
    top = found[0]
    assert top.rank == 1 and "激光焊接" in top.explanation.terms and top.score == max(m.score for m in found)
    fields = {e.field for e in top.explanation.evidence}
    assert "demand" in fields and fields & {"research_fields", "paper", "patent", "project"}
    assert [m.rank for m in found] == list(range(1, len(found) + 1))
    assert all(a.score >= b.score for a, b in zip(found, found[1:], strict=False))


def test_it_scores_from_an_index_not_a_loop_over_demands(engine: Engine, monkeypatch) -> None:
    index = DemandIndex(engine)
    first = [m.demand.id for m in index.for_expert("X0041", top_k=5)]
    assert isinstance(index._index, TermIndex) and index._index.n_docs_ == engine.store.count_demands()

    def no(*args, **kwargs):
        raise AssertionError("a query must not read every demand")

    monkeypatch.setattr(engine.store, "iter_demands", no)
    monkeypatch.setattr(engine, "match_demand", no)
    monkeypatch.setattr(engine.store, "get_demand", no)
    assert [m.demand.id for m in index.for_expert("X0041", top_k=5)] == first
    assert first[0] == "Q0029"  # early warning of thermal runaway: the 热失控预警 expert's


def test_reverse_matching_never_encodes_the_profile(engine: Engine, monkeypatch) -> None:
    # The demands are scored by their words: an encoding of the expert's profile would only take
    # a core on the encoder thread (about 0.2 s for a profile) and be thrown away.
    assert engine.encoder is not None
    index = DemandIndex(engine)
    index.sync()

    def no(*args, **kwargs):
        raise AssertionError("reverse matching encoded a text")

    # the encoding runs on the query pool's thread, where an error would go unseen: refuse the
    # submission itself, and the encoder too
    monkeypatch.setattr(engine.embeddings._pool, "submit", no)
    monkeypatch.setattr(engine.encoder, "encode", no)
    assert [m.demand.id for m in index.for_expert("X0041", top_k=5)][0] == "Q0029"
    assert index.for_profile("不锈钢激光焊接 焊缝在线检测", top_k=3)


def test_the_index_follows_new_changed_closed_and_deleted_demands(engine: Engine) -> None:
    index = DemandIndex(engine)
    index.for_expert("X0002", top_k=3)
    built = index._index
    base = built._base
    new = Demand.from_dict(
        {
            "id": "N1",
            "title": "不锈钢薄壁件激光焊接变形大",
            "keywords": ["激光焊接", "焊缝跟踪"],
            "enterprise": "武义某厨具厂",
            "region": "浙江省金华市武义县",
        }
    )
    engine.add_demands([new])
    found = [m.demand.id for m in index.for_expert("X0002", top_k=3)]
    assert "N1" in found[:2]
    assert index._index is not built and index._index._base is base  # appended, not rebuilt
    # Its text changes: the old text no longer matches.
    engine.add_demands(
        [
            Demand.from_dict(
                {**new.to_dict(), "title": "茶叶加工设备改造", "keywords": ["茶叶加工"], "description": ""}
            )
        ]
    )
    assert "N1" not in [m.demand.id for m in index.for_expert("X0002", top_k=20)]
    assert "N1" in [m.demand.id for m in index.for_expert("X0058", top_k=5)]  # the tea expert's now
    # Closing a demand takes it out of the open list; reopening brings it back.
    loop = Workflow(engine)
    loop.set_status("staff:t", "Q0001", "closed")
    assert "Q0001" not in [m.demand.id for m in index.for_expert("X0002", top_k=20)]
    assert "Q0001" in [m.demand.id for m in index.for_expert("X0002", top_k=20, include_closed=True)]
    loop.set_status("staff:t", "Q0001", "contacted")
    assert [m.demand.id for m in index.for_expert("X0002", top_k=1)] == ["Q0001"]
    engine.store.db.execute("DELETE FROM demands WHERE id = 'Q0005'")
    assert "Q0005" not in [m.demand.id for m in index.for_expert("X0002", top_k=20, include_closed=True)]
    # After all that, the scores equal those of an index built from scratch.
    fresh = DemandIndex(engine)
    a = {m.demand.id: m.score for m in index.for_expert("X0004", top_k=50, include_closed=True)}
    b = {m.demand.id: m.score for m in fresh.for_expert("X0004", top_k=50, include_closed=True)}
    assert a.keys() == b.keys()
    assert np.allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-5)


def test_demands_the_expert_may_not_serve_are_left_out(engine: Engine) -> None:
    index = DemandIndex(engine)
    before = [m.demand.id for m in index.for_expert("X0002", top_k=5)]
    assert before[0] == "Q0001"
    Workflow(engine).record_feedback("staff:t", "Q0001", "X0002", "declined")
    q5 = engine.store.get_demand("Q0005")
    engine.add_demands([Demand.from_dict({**q5.to_dict(), "avoid_experts": ["X0002"]})])  # 回避
    after = [m.demand.id for m in index.for_expert("X0002", top_k=5)]
    assert "Q0001" not in after and "Q0005" not in after and after[:3] == before[2:5]
    # The demand's own enterprise: an expert of that institution is left out too.
    q12 = engine.store.get_demand("Q0012")
    engine.add_demands([Demand.from_dict({**q12.to_dict(), "enterprise": "浙江工业大学"})])
    assert "Q0012" not in [m.demand.id for m in index.for_expert("X0002", top_k=10)]


def test_a_pasted_profile(engine: Engine) -> None:
    found = demand_index(engine).for_profile(
        "中国农业科学院茶叶研究所研究员，长期从事名优绿茶加工自动化和夏秋茶综合利用", top_k=3
    )
    assert found[0].demand.id == "Q0038" and "Q0039" in [m.demand.id for m in found]  # the two tea demands
    with pytest.raises(InputError, match="empty"):
        demand_index(engine).for_profile("   ")
    with pytest.raises(InputError, match="top_k"):
        demand_index(engine).for_profile("茶叶", top_k=0)
    with pytest.raises(NotFoundError):
        demand_index(engine).for_expert("nobody")


# -- the visit plan ------------------------------------------------------------------------------
def test_regions_parse_by_suffix() -> None:
    r = parse_region("浙江省金华市永康市")
    assert (r.province, r.city, r.district) == ("浙江省", "金华市", "永康市")
    assert parse_region("浙江省湖州市长兴县").district == "长兴县"
    r = parse_region("上海市浦东新区")
    assert (r.province, r.city, r.district) == ("", "上海市", "浦东新区")
    assert parse_region("浙江省金华市").district_label == "金华市（市区）"
    assert parse_region("永康").city_label == "永康" and parse_region("").district_label == "（未填地区）"


def test_a_visit_plan_stays_in_one_district_then_its_city(engine: Engine) -> None:
    plan = plan_visit(engine, "X0004", date(2026, 12, 3), stops=3)
    assert [s.order for s in plan.stops] == [1, 2, 3]
    assert {s.district for s in plan.stops} == {"永康市"}  # the thermos makers
    assert plan.districts[0].district == "永康市" and plan.districts[0].score >= plan.districts[1].score
    assert all(a.score >= b.score for a, b in zip(plan.stops, plan.stops[1:], strict=False))
    # Asked for more stops than the best district has: filled up from the same city, never another.
    for expert in ("X0004", "X0041", "X0058"):
        many = plan_visit(engine, expert, date(2026, 12, 3), stops=10)
        best = many.districts[0]
        in_best = min(best.enterprises, 10)
        in_city = sum(d.enterprises for d in many.districts if d.city == best.city) if best.city else in_best
        assert [s.district for s in many.stops[:in_best]] == [best.district] * in_best
        assert len(many.stops) == min(10, in_city)
        assert all(parse_region(s.region).city == best.city for s in many.stops)
    enterprises = [s.enterprise for s in many.stops]
    assert len(enterprises) == len(set(enterprises))  # one stop per enterprise, its demands together
    assert plan.paused is None
    Workflow(engine).pause("staff:t", "X0004", date(2026, 12, 10), "出差")
    assert plan_visit(engine, "X0004", date(2026, 12, 3)).paused.until == "2026-12-10"
    assert plan_visit(engine, "X0004", date(2026, 12, 11)).paused is None
    with pytest.raises(InputError, match="stops"):
        plan_visit(engine, "X0004", date(2026, 12, 3), stops=0)


# -- the API and the CLI -------------------------------------------------------------------------
def test_the_api_endpoints(engine: Engine) -> None:
    with TestClient(create_app(engine.settings, engine=engine)) as client:
        res = client.get("/api/v1/experts/X0002/demands", params={"top_k": 3}, headers=READ)
        assert res.status_code == 200
        rows = res.json()["data"]
        assert [r["rank"] for r in rows] == [1, 2, 3] and rows[0]["demand"]["id"] == "Q0001"
        assert rows[0]["explanation"]["terms"] and rows[0]["demand"]["status"] in ("new", "matched")
        res = client.post(
            "/api/v1/demands/match", json={"text": "动力电池回收、湿法冶金与梯次利用", "top_k": 2}, headers=READ,
        )
        assert res.status_code == 200 and res.json()["data"][0]["demand"]["id"] == "Q0028"
        plan = client.get(
            "/api/v1/experts/X0004/visit-plan", params={"date": "2026-12-03", "stops": 2}, headers=READ,
        ).json()
        assert plan["date"] == "2026-12-03" and [s["order"] for s in plan["stops"]] == [1, 2]
        assert plan["stops"][0]["district"] == "永康市" and plan["stops"][0]["demands"][0]["id"]
        for path, params in (
            ("/api/v1/experts/X0002/demands", {"top_k": 0}),
            ("/api/v1/experts/X0004/visit-plan", {"date": "0"}),
            ("/api/v1/experts/X0004/visit-plan", {"date": "2026-12-03", "stops": 11}),
            ("/api/v1/experts/X0004/visit-plan", {}),
        ):
            assert client.get(path, params=params, headers=READ).status_code == 422
        assert_error(client.post("/api/v1/demands/match", json={"text": " "}, headers=READ), 422, "InputError",
                     "empty")
        assert_error(client.get("/api/v1/experts/nobody/demands", headers=READ), 404, "NotFoundError", "nobody")


def test_cli_demands_for(engine: Engine) -> None:
    db = str(engine.settings.db)
    res = CliRunner().invoke(
        cli, ["demands-for", "X0002", "-n", "3", "--json", "--visit", "2026-12-03", "--db", db]
    )
    assert res.exit_code == 0, res.output
    body = json.loads(res.output)
    assert [d["demand"]["id"] for d in body["data"]][:2] == ["Q0001", "Q0005"]
    assert body["visit_plan"]["stops"][0]["district"] == "永康市"
    table = CliRunner().invoke(cli, ["demands-for", "--profile", "名优绿茶加工自动化", "--db", db])
    assert table.exit_code == 0 and "Q0038" in table.output
    both = CliRunner().invoke(cli, ["demands-for", "X0002", "--profile", "x", "--db", db])
    assert both.exit_code == 2
    past = date.today() - timedelta(days=1)
    assert (
        CliRunner().invoke(cli, ["demands-for", "X0002", "--visit", past.isoformat(), "--db", db]).exit_code
        == 0
    )
