"""Team recommendation (matcher.team): parts and aspects, the coverage objective, the selection
against brute force, the rules, and whole teams on the demo corpus."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from matcher.engine import Engine
from matcher.errors import InputError
from matcher.models import Demand, Expert
from matcher.rank import Filters
from matcher.team import (
    MAX_SIZE,
    cosine,
    coverage_value,
    exact,
    greedy,
    institution_groups,
    merge_groups,
    normalised,
    recommend_team,
    select,
    split_clauses,
    undominated,
)

from .conftest import THERMOS, make_settings

WELD_BMS = "不锈钢保温杯真空层激光焊接合格率低；另外，锂电池包BMS均衡策略不成熟"
THREE_PARTS = ("我司生产不锈钢保温杯，真空层激光焊接合格率低。另外，车间VOCs废气超标，想上催化燃烧。"
               "同时想做个MES把数据管起来")
WELDING = {"X0001", "X0002", "X0006", "X0007"}  # demo experts on (laser) welding


# -- parts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,parts", [
    ("新上一条不锈钢锅生产线，焊缝发黑、抛光粉尘大，还想做个MES把数据管起来",
     ["新上一条不锈钢锅生产线，焊缝发黑、抛光粉尘大", "还想做个MES把数据管起来"]),
    ("焊缝发黑。另外，抛光粉尘大；MES\n数据", ["焊缝发黑", "另外，抛光粉尘大", "MES", "数据"]),
    # a connective cuts only after a comma, not inside a clause (还要好几万), and 还有没有 is a question
    ("冷库电费还要好几万，有没有办法，还有没有别的", ["冷库电费还要好几万，有没有办法，还有没有别的"]),
    ("涂层附着力差，同时想降低能耗，以及申报项目", ["涂层附着力差", "同时想降低能耗", "以及申报项目"]),
    ("厚度0.5mm的板材. Second part", ["厚度0.5mm的板材", "Second part"]),
    ("。；\n  ", []),
])
def test_parts_are_cut_at_sentence_ends_and_connectives_not_at_commas(text: str, parts: list[str]) -> None:
    assert split_clauses(text) == parts


def test_merge_groups_is_single_linkage_in_item_order() -> None:
    sim = np.array([
        [1.0, 0.1, 0.5, 0.0],
        [0.1, 1.0, 0.0, 0.0],
        [0.5, 0.0, 1.0, 0.4],
        [0.0, 0.0, 0.4, 1.0],
    ])
    assert merge_groups(sim, 0.3) == [[0, 2, 3], [1]]  # 0-2 and 2-3 link 0 and 3
    assert merge_groups(sim, 0.45) == [[0, 2], [1], [3]]
    assert merge_groups(sim, 2.0) == [[0], [1], [2], [3]]
    assert merge_groups(np.zeros((0, 0)), 0.3) == []


def test_cosine_and_normalised() -> None:
    s = np.array([[4.0, 2.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.5, 0.0]])
    r = normalised(s, rho=0.9, gamma=2.0)
    assert r[0] == pytest.approx([0.9, 0.9 * 0.25, 0.0])
    assert r[1] == pytest.approx([0, 0, 0])  # nobody matches: no relevance, no division by zero
    assert r[2] == pytest.approx(r[0])  # the scale of a row does not matter, only its shape
    c = cosine(s)
    assert c[0, 2] == pytest.approx(1.0) and c[0, 1] == 0.0 and c[1, 1] == 0.0


# -- the objective and the selection -------------------------------------------------------------
def brute_force(r: np.ndarray, w: np.ndarray, k: int, groups: np.ndarray | None = None,
                fixed: tuple[int, ...] = ()) -> float:
    """The optimum by trying every team, with the objective written out as in the docstring."""
    best = 0.0
    others = [c for c in range(r.shape[1]) if c not in fixed]
    for rest in itertools.combinations(others, k - len(fixed)):
        team = (*fixed, *rest)
        if groups is not None and len({int(groups[c]) for c in team}) < len(team):
            continue
        value = sum(w[a] * (1 - math.prod(1 - r[a, e] for e in team)) for a in range(r.shape[0]))
        best = max(best, value)
    return best


def instance(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_aspects, n_experts = int(rng.integers(1, 5)), int(rng.integers(3, 11))
    r = rng.random((n_aspects, n_experts)) ** 2 * 0.95  # many weak experts, a few strong ones
    r[rng.random(r.shape) < 0.3] = 0.0
    return r, rng.random(n_aspects) + 0.1


def test_the_objective_is_monotone_and_submodular() -> None:
    rng = np.random.default_rng(7)
    for seed in range(200):
        r, w = instance(seed)
        n = r.shape[1]
        small = [c for c in range(n) if rng.random() < 0.4]
        big = sorted(set(small) | {c for c in range(n) if rng.random() < 0.4})
        for e in set(range(n)) - set(big):
            gain_small = coverage_value(r, w, [*small, e]) - coverage_value(r, w, small)
            gain_big = coverage_value(r, w, [*big, e]) - coverage_value(r, w, big)
            assert gain_small >= -1e-12 and gain_big >= -1e-12  # monotone
            assert gain_small >= gain_big - 1e-12  # diminishing returns


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_exact_selection_finds_the_brute_force_optimum(k: int) -> None:
    for seed in range(60):
        r, w = instance(seed)
        if r.shape[1] < k:
            continue
        opt = brute_force(r, w, k)
        chosen = select(r, w, k)
        assert chosen.method == "exact"
        assert len(set(chosen.members)) == k
        assert coverage_value(r, w, chosen.members) == pytest.approx(opt, abs=1e-9), seed


def test_pruning_dominated_experts_keeps_an_optimal_team() -> None:
    for seed in range(80):
        r, w = instance(seed)
        for k in (1, 2, 3):
            if r.shape[1] < k:
                continue
            kept = undominated(r, k)
            assert len(kept) >= min(k, r.shape[1])
            best_kept = max(coverage_value(r, w, t) for t in itertools.combinations(kept, k))
            assert best_kept == pytest.approx(brute_force(r, w, k), abs=1e-9)


def test_greedy_keeps_its_guarantees_against_brute_force() -> None:
    """(1 - 1/e) of the optimum; 1/2 under at most one expert per group (a partition matroid)."""
    worst, worst_groups = 1.0, 1.0
    for seed in range(150):
        r, w = instance(seed)
        groups = np.random.default_rng(seed + 1000).integers(0, 3, r.shape[1])
        for k in (2, 3, 4):
            if r.shape[1] < k:
                continue
            opt = brute_force(r, w, k)
            g = greedy(r, w, k)
            if opt > 0:
                worst = min(worst, coverage_value(r, w, g) / opt)
            opt_g = brute_force(r, w, k, groups)
            gg = greedy(r, w, k, groups=groups)
            assert len({int(groups[c]) for c in gg}) == len(gg)
            if opt_g > 0:
                worst_groups = min(worst_groups, coverage_value(r, w, gg) / opt_g)
            # the forced-greedy path of `select` (no exact budget) is the same greedy
            assert coverage_value(r, w, select(r, w, k, budget=0).members) == pytest.approx(
                coverage_value(r, w, g))
    assert worst >= 1 - 1 / math.e
    assert worst_groups >= 0.5
    assert worst < 1.0, "the instances should include some where greedy is not optimal"


def test_exact_selection_respects_groups_and_fixed_members() -> None:
    for seed in range(60):
        r, w = instance(seed)
        groups = np.random.default_rng(seed + 7).integers(0, 4, r.shape[1])
        for k in (2, 3):
            if len(set(groups.tolist())) < k:
                continue
            chosen = select(r, w, k, groups=groups)
            assert len({int(groups[c]) for c in chosen.members}) == k
            best = brute_force(r, w, k, groups)
            assert coverage_value(r, w, chosen.members) == pytest.approx(best, abs=1e-9)
            anchored = select(r, w, k, fixed=(0,))
            assert anchored.members[0] == 0 and len(set(anchored.members)) == k
            assert coverage_value(r, w, anchored.members) == pytest.approx(
                brute_force(r, w, k, fixed=(0,)), abs=1e-9)


def test_exact_breaks_ties_by_column_order() -> None:
    r = np.array([[0.5, 0.5, 0.5, 0.2]])
    assert exact(r, np.ones(1), 2, [0, 1, 2, 3]) == [0, 1]
    assert select(r, np.ones(1), 2).members == (0, 1)


def test_institution_groups_follow_same_institution_transitively() -> None:
    experts = [Expert("a", institution="浙江大学"), Expert("b", institution="浙江大学机械工程学院"),
               Expert("c", institution="浙江工业大学"), Expert("d"), Expert("e"),
               Expert("f", institution="浙江大学材料学院")]
    g = institution_groups(experts).tolist()
    assert g[0] == g[1] == g[5] and len({g[0], g[2], g[3], g[4]}) == 4


# -- whole teams on the demo corpus ----------------------------------------------------------------
def test_a_two_part_demand_gets_a_team_covering_both_parts(demo_engine: Engine) -> None:
    team = recommend_team(demo_engine, WELD_BMS, size=3)
    plain = [m.expert.id for m in demo_engine.match(WELD_BMS, top_k=3)]
    assert [a.id for a in team.aspects] == [1, 2]
    assert team.method == "exact"
    assert "激光焊接" in team.aspects[0].terms and "BMS" in team.aspects[1].terms  # as the text writes it
    ids = [m.expert.id for m in team.members]
    assert ids[0] == plain[0]  # the anchor: match's first
    assert set(ids) & WELDING and "X0035" in ids  # X0035: 工具电池包, BMS
    assert "X0035" not in plain, "the plain top 3 is all welding/thermos: the point of a team"
    bms = next(m for m in team.members if m.expert.id == "X0035")
    assert bms.covers == (2,) and "X0035" in team.aspects[1].covered_by
    assert bms.aspects[0].aspect_id == 2 and bms.aspects[0].relevance >= 0.5
    assert "BMS" in bms.aspects[0].explanation.terms and bms.aspects[0].explanation.evidence
    assert set(bms.explanation.terms) == set(bms.aspects[0].explanation.terms)
    assert team.coverage == 1.0 and 0.9 <= team.objective <= 1.0
    assert team.ranking[:3] == tuple(ids) and len(team.ranking) == 10
    assert sum(m.gain for m in team.members) == pytest.approx(team.objective)


def test_three_parts_three_members(demo_engine: Engine) -> None:
    team = recommend_team(demo_engine, THREE_PARTS, size=3)
    assert len(team.aspects) == 3
    covered = [set(a.covered_by) for a in team.aspects]
    assert all(covered), covered
    assert {"X0051", "X0085"} <= {m.expert.id for m in team.members}  # VOCs 催化燃烧, MES
    assert "X0085" not in [m.expert.id for m in demo_engine.match(THREE_PARTS, top_k=3)]
    for m in team.members:
        assert m.covers and all(p.aspect_id in m.covers for p in m.aspects)


def test_a_one_topic_demand_is_one_aspect_and_matchs_own_ranking(demo_engine: Engine) -> None:
    team = recommend_team(demo_engine, THERMOS, size=3)
    plain = demo_engine.match(THERMOS, top_k=3)
    assert len(team.aspects) == 1 and team.aspects[0].text == THERMOS
    assert [m.expert.id for m in team.members] == [m.expert.id for m in plain]
    assert [m.rank for m in team.members] == [1, 2, 3]
    assert team.members[0].explanation.terms == plain[0].explanation.terms


def test_every_demo_demand_keeps_matchs_first_expert(demo_engine: Engine) -> None:
    for d in demo_engine.store.iter_demands():
        team = recommend_team(demo_engine, d.text, demand=d, size=3)
        first = demo_engine.match_demand(d, top_k=1)
        assert team.members[0].expert.id == first[0].expert.id, d.id


def test_a_demand_nobody_matches_gets_an_empty_team(demo_engine: Engine) -> None:
    for text in ("xyzzy qwerty", "xyzzy。另外，qwerty"):
        team = recommend_team(demo_engine, text, size=3)
        assert team.members == () and team.method == "none" and team.coverage == 0.0
        assert len(team.aspects) == 1 and team.aspects[0].covered_by == ()
    partly = recommend_team(demo_engine, "锂电池包BMS均衡策略不成熟。另外，xyzzy qwerty", size=2)
    assert partly.unmatched == ("另外，xyzzy qwerty",) and len(partly.aspects) == 1
    # led by one of the demo's two BMS experts (叶青松 X0035, 顾长林 X0041: within 0.01 of each other)
    assert partly.members[0].expert.id in {"X0035", "X0041"}
    assert {m.expert.id for m in partly.members} == {"X0035", "X0041"}


def test_size_and_the_greedy_path(demo_engine: Engine) -> None:
    eight = recommend_team(demo_engine, THREE_PARTS, size=MAX_SIZE)
    assert len(eight.members) == 8 and len({m.expert.id for m in eight.members}) == 8
    one = recommend_team(demo_engine, THREE_PARTS, size=1)
    assert [m.expert.id for m in one.members] == [demo_engine.match(THREE_PARTS, top_k=1)[0].expert.id]
    for bad in (0, MAX_SIZE + 1):
        with pytest.raises(InputError, match="size must be between 1 and 8"):
            recommend_team(demo_engine, THREE_PARTS, size=bad)
    with pytest.raises(InputError, match="empty"):
        recommend_team(demo_engine, "  ", size=3)


# -- rules -----------------------------------------------------------------------------------------
def test_filters_and_avoid_rules_hold_for_every_member(demo_engine: Engine) -> None:
    free = recommend_team(demo_engine, WELD_BMS, size=4)
    banned = free.members[0].expert
    demand = Demand(id="team-rules", description=WELD_BMS, enterprise=banned.institution,
                    avoid_experts=("X0035",))
    team = recommend_team(demo_engine, demand.text, demand=demand, size=4)
    ids = {m.expert.id for m in team.members}
    assert banned.id not in ids and "X0035" not in ids
    assert {x.expert.id for x in team.excluded} >= {banned.id, "X0035"}
    assert all(x.reason for x in team.excluded)
    assert all(Engine.conflicts(demand, [m.expert]) == [] for m in team.members)

    zhejiang = recommend_team(demo_engine, WELD_BMS, size=3, filters=Filters(region="浙江"))
    assert zhejiang.members and all("浙江" in m.expert.region for m in zhejiang.members)


def test_one_expert_per_institution(demo_engine: Engine) -> None:
    text = "保温杯真空层吸气剂失效。另外，PVD涂层耐磨性差。此外，固态电池硅基负极膨胀"  # 3 宁波材料所 topics
    free = recommend_team(demo_engine, text, size=3)
    insts = [m.expert.institution for m in free.members]
    assert len(set(insts)) < len(insts), insts  # without the rule the team shares an institution
    ruled = recommend_team(demo_engine, text, size=3, one_per_institution=True)
    insts = [m.expert.institution for m in ruled.members]
    assert len(set(insts)) == len(insts) == 3


def test_relevance_scores_each_text_as_match_does(demo_engine: Engine) -> None:
    texts = [THERMOS, "锂电池包BMS均衡策略不成熟"]
    rel = demo_engine.relevance(texts, depth=5)
    positions = [demo_engine.ensure_index().index.positions()[e.id] for e in rel.experts]
    assert positions == sorted(positions)  # columns in index order
    for row, text in enumerate(texts):
        plain = demo_engine.match(text, top_k=5)
        order = np.argsort(-rel.scores[row], kind="stable")[:5]
        assert [rel.experts[c].id for c in order] == [m.expert.id for m in plain]
        assert rel.scores[row, order] == pytest.approx([m.score for m in plain], rel=1e-6)
        explained = rel.explain(row, list(order[:2]))
        assert [x.terms for x in explained] == [m.explanation.terms for m in plain[:2]]
    with pytest.raises(InputError):
        demo_engine.relevance([])
    with pytest.raises(InputError):
        rel.explain(2, [0])


# -- the command line ------------------------------------------------------------------------------
def test_the_cli_team_table_json_and_errors(tmp_path) -> None:
    from typer.testing import CliRunner

    from matcher.cli import app

    runner = CliRunner()
    db = str(tmp_path / "m.db")
    res = runner.invoke(app, ["team", WELD_BMS, "--db", db])
    assert res.exit_code == 0, res.output
    assert "demo corpus" in res.output and "需求分为 2 个方面，团队覆盖 100%" in res.output
    assert "叶青松" in res.output  # the BMS expert
    matrix = res.output.strip().splitlines()[-2:]
    as_json = runner.invoke(app, ["team", WELD_BMS, "--db", db, "--json"]).output
    names = [a["name"] for a in json.loads(as_json)["aspects"]]
    assert matrix[0].startswith(names[0]) and matrix[1].startswith(names[1])  # aspects by their names
    # three members over two aspects: one aspect has two, the other one (which depends on scores)
    assert sorted(row.count("●") for row in matrix) == [1, 2]

    res = runner.invoke(app, ["team", WELD_BMS, "--db", db, "--json", "--size", "4"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert set(payload) >= {"aspects", "team", "coverage", "method"}
    assert [a["id"] for a in payload["aspects"]] == [1, 2]
    assert [m["rank"] for m in payload["team"]] == [1, 2, 3, 4]
    member = payload["team"][0]
    assert set(member) >= {"rank", "expert", "covers", "explanation", "relevance"}
    assert "contact" not in member["expert"], "the CLI's JSON must not leak contact details"
    assert member["explanation"]["aspects"][0]["evidence"]
    for a in payload["aspects"]:
        assert all(a["id"] in next(m for m in payload["team"] if m["expert"]["id"] == e)["covers"]
                   for e in a["covered_by"])

    plain = json.loads(runner.invoke(app, ["match", THERMOS, "--db", db, "--json", "--top", "1"]).stdout)
    one = json.loads(runner.invoke(app, ["team", THERMOS, "--db", db, "--json"]).stdout)
    assert len(one["aspects"]) == 1 and one["team"][0]["expert"]["id"] == plain["matches"][0]["expert_id"]

    for args, message in ((["--size", "9"], "size must be between 1 and 8"), ([], "")):
        res = runner.invoke(app, ["team", "  " if not args else WELD_BMS, "--db", db, *args])
        assert res.exit_code == 2 and "error:" in res.output and message in res.output
    assert runner.invoke(app, ["team", "--help"]).exit_code == 0


def test_a_stored_demands_team_leaves_out_declined_and_paused_experts(tmp_path, tokenizer) -> None:
    from matcher.workflow import Workflow

    with Engine(make_settings(tmp_path), tokenizer=tokenizer) as engine:
        engine.load_demo()
        demand = engine.store.get_demand("Q0001")
        first = recommend_team(engine, demand.text, size=3, demand=demand)
        [a, b] = [m.expert.id for m in first.members][:2]
        flow = Workflow(engine)
        flow.record_feedback("staff", demand.id, a, "declined")
        flow.pause("staff", b, until="2099-12-31", reason="出差")
        again = recommend_team(engine, demand.text, size=3, demand=demand)
        ids = [m.expert.id for m in again.members]
        assert a not in ids and b not in ids and len(ids) == 3
        # a live text (no stored demand) is not bound by that demand's verdicts
        live = recommend_team(engine, demand.text, size=3)
        assert a in [m.expert.id for m in live.members] or a in live.ranking
