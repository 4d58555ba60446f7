"""Honest strength (issue 24): one calibrated 0-1 score and a level on every face, no padding, and
reverse matches and teams on the scale of the match page."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from matcher import strength as S
from matcher.config import Settings
from matcher.engine import Engine
from matcher.models import Demand, Expert
from matcher.reverse import demand_index, plan_visit
from matcher.team import recommend_team

from .conftest import copy_db, demo_template, make_settings

COOKWARE = "我们厂的不锈钢炒锅用了半年就起皮掉渣，客户投诉多，想找专家看看涂层怎么改进"
THREE = "锂电池包在高温下容易过热，齿轮箱噪声大寿命短，还想上MES"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    return demo_template(tmp_path_factory.mktemp("strength"), tokenizer)


@pytest.fixture()
def engine(template: Path, tmp_path: Path, tokenizer) -> Engine:
    e = Engine(Settings(db=copy_db(template, tmp_path / "db")), tokenizer=tokenizer)
    yield e
    e.close()


def test_the_fitted_numbers_are_a_probability_with_sensible_signs() -> None:
    assert set(S.WEIGHTS) == set(S.FEATURES) and set(S.FEATURES) <= set(S.MEASURES)
    assert 0 < S.WEAK < S.STRONG < 1
    # standing out raises it; a crowded field of near-equals lowers it
    base = {"share": 1.0, "gap": 0.2, "crowd": 0.4, "dense": 0.3}
    assert S.probability({**base, "gap": 0.4}) > S.probability(base) > S.probability({**base, "crowd": 0.8})
    assert S.probability({**base, "share": 0.3}) < S.probability(base)
    z = S.INTERCEPT + sum(S.WEIGHTS[f] * base[f] for f in S.FEATURES)
    assert math.isclose(S.probability(base), 1 / (1 + math.exp(-z)))
    assert S.level(S.STRONG) == "强" and S.level(S.WEAK) == "中" and S.level(S.WEAK - 1e-9) == "弱"


def test_the_field_of_a_ranking() -> None:
    total = np.asarray([0.0, 0.9, 0.3, 0.6, 0.3], dtype=np.float32)
    f = S.Field.of(total)
    first, second, third = (float(total[i]) for i in (1, 3, 2))  # scores as the ranking holds them
    assert f.top == pytest.approx(0.9) and f.share(0.45) == pytest.approx(0.5)
    assert f.crowd == pytest.approx((0.9 + 0.6 + 0.3 + 0.3) / 4 / 0.9)
    assert f.gap(first) == pytest.approx(0.3 / 0.9) and f.gap(second) == pytest.approx(0.3 / 0.9)
    assert f.gap(third) == pytest.approx(0.3 / 0.9)  # the last: all of its share stands out
    assert S.Field.of(np.zeros(3)).crowd == 0.0


def test_every_match_carries_its_strength_computed_from_its_measures(engine: Engine) -> None:
    matches = engine.match(COOKWARE, top_k=10)
    assert matches
    for m in matches:
        x = m.explanation
        assert set(x.measures) == set(S.MEASURES)
        assert m.strength == pytest.approx(S.probability(x.measures)) and m.level == S.level(m.strength)
        assert 0.0 <= x.measures["coverage"] <= 1.0
        d = m.to_dict()
        assert d["strength"] == round(m.strength, 4) and d["level"] == m.level
    # the first is the strongest here and stands well above the tail, which is weak
    assert matches[0].strength == max(m.strength for m in matches)
    assert matches[0].level in ("强", "中") and matches[-1].level == "弱"


def test_a_list_never_pads_with_experts_whose_match_cites_nothing(tmp_path: Path, tokenizer) -> None:
    # dense off: an expert then reaches the list through words or characters, or not at all
    e = Engine(make_settings(tmp_path, weight_dense=0.0, weight_dense_profile=0.0), tokenizer=tokenizer)
    e.store.upsert_experts([
        Expert.from_dict({"id": "W", "name": "焊", "research_fields": ["激光焊接", "焊缝质量"]}),
        Expert.from_dict({"id": "G", "name": "管", "research_fields": ["企业管理", "技术服务"]}),
        Expert.from_dict({"id": "T", "name": "茶", "research_fields": ["茶叶加工"]}),
    ])
    found = e.match("激光焊接的管理和技术服务", top_k=10)
    assert [m.expert.id for m in found][:1] == ["W"]
    assert "G" not in [m.expert.id for m in found]  # it shares only generic words (管理, 技术, 服务)
    assert [m.rank for m in found] == list(range(1, len(found) + 1))
    e.close()


def test_reverse_matches_and_the_visit_plan_are_on_the_match_pages_scale(engine: Engine) -> None:
    found = demand_index(engine).for_expert("X0001", top_k=5)
    assert found
    for m in found:
        forward = engine.explain_demand(m.demand, ["X0001"])["X0001"]
        assert m.strength == pytest.approx(forward.strength) and m.level == forward.level
        generic = engine.generic_terms
        assert m.explanation.terms and not {t for t in m.explanation.terms if t in generic}
    plan = plan_visit(engine, "X0004", date(2026, 12, 3))
    for stop in plan.stops:
        assert stop.strength == max(m.strength for m in stop.demands)
        for m in stop.demands:
            assert m.strength is not None and m.explanation.terms  # a word that counts, never generic only


def test_a_stop_is_never_made_of_generic_words_alone(engine: Engine) -> None:
    engine.add_demands([Demand.from_dict({
        "id": "GEN", "enterprise": "某管理咨询公司", "region": "浙江省金华市永康市", "title": "管理水平提升",
        "description": "希望提高管理水平和技术服务能力，优化系统方案。", "keywords": []})])
    index = demand_index(engine)
    for expert in ("X0001", "X0004", "X0085"):
        assert "GEN" not in {m.demand.id for m in index.for_expert(expert, top_k=50, strengths=False)}
    plan = plan_visit(engine, "X0004", date(2026, 12, 3))
    assert "某管理咨询公司" not in {s.enterprise for s in plan.stops}


def test_the_three_problem_demand_gives_three_named_aspects_each_led_by_another_member(
        engine: Engine) -> None:
    team = recommend_team(engine, THREE, size=3)
    assert [a.name for a in team.aspects] == ["电池热管理", "齿轮箱噪声", "MES"]
    leads = [a.lead for a in team.aspects]
    assert all(leads) and len(set(leads)) == 3 and set(leads) == {m.expert.id for m in team.members}
    assert not team.single and team.understanding is not None
    d = team.to_dict()
    assert [a["name"] for a in d["aspects"]] == ["电池热管理", "齿轮箱噪声", "MES"] and d["single"] is False
    assert all(m["level"] in ("强", "中", "弱") for m in d["team"])
    assert {t["term"] for t in d["understanding"]["terms"]} >= {"锂电池包", "齿轮箱", "MES"}


def test_a_one_problem_demand_is_one_aspect_with_the_match_pages_first_experts(engine: Engine) -> None:
    team = recommend_team(engine, COOKWARE, size=3)
    assert team.single and len(team.aspects) == 1 and team.aspects[0].name
    assert [m.expert.id for m in team.members] == [m.expert.id for m in engine.match(COOKWARE, top_k=3)]
