"""`matcher batch --team`: demands marked as needing a team get their team (as `matcher team` makes
it, under their 回避 rules) as their recommendations, marked as a team, members assigned before the
joint LP; the option survives a resume; the report says which rows are teams and what they cover."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from matcher.batch import RECOMMENDATION_COLUMNS, BatchOptions, run_batch, write_report
from matcher.cli import app
from matcher.errors import InputError
from matcher.models import Demand
from matcher.store import Store
from matcher.team import recommend_team

from .conftest import build_template, copy_db, open_engine

WELD_BMS = "不锈钢保温杯真空层激光焊接合格率低；另外，锂电池包BMS均衡策略不成熟"
THREE_PARTS = ("我司生产不锈钢保温杯，真空层激光焊接合格率低。另外，车间VOCs废气超标，想上催化燃烧。"
               "同时想做个MES把数据管起来")
TEAM_DEMANDS = [
    Demand(id="T-1", title="焊接与电池", description=WELD_BMS, enterprise="金华锂鑫电源科技有限公司",
           needs_team=True, created_at="2026-11-24T08:00:00"),
    Demand(id="T-2", title="焊接、废气与数字化", description=THREE_PARTS, needs_team=True,
           created_at="2026-11-24T09:00:00"),
]


@pytest.fixture(scope="module")
def small_template(tmp_path_factory, tokenizer) -> Path:
    return build_template(tmp_path_factory.mktemp("team-batch"), tokenizer, n_demands=12)


def stocked(template: Path, dest: Path, tokenizer, demands=TEAM_DEMANDS):  # noqa: ANN001, ANN201
    engine = open_engine(copy_db(template, dest), tokenizer)
    engine.add_demands(demands)
    return engine


def test_flagged_demands_get_their_team_and_the_others_a_ranked_list(tmp_path, small_template,
                                                                     tokenizer) -> None:
    engine = stocked(small_template, tmp_path, tokenizer)
    expected = {d.id: recommend_team(engine, d.text, demand=d, size=3) for d in TEAM_DEMANDS}
    result = run_batch(engine, BatchOptions(run_key="t1", top=5, max_per_expert=5, team_size=3))
    run = result.run
    assert run.status == "done" and run.team_size == 3 and run.demands == 14 and run.matched == 14
    by_demand = defaultdict(list)
    for m in engine.store.list_batch_matches(run.id):
        by_demand[m.demand_id].append(m)
    for d in TEAM_DEMANDS:
        team = expected[d.id]
        got = by_demand[d.id]
        assert [m.expert_id for m in got] == [x.expert.id for x in team.members]
        assert [m.rank for m in got] == [1, 2, 3] and all(m.team for m in got)
        for m, x in zip(got, team.members, strict=True):
            assert [a["id"] for a in m.aspects] == list(x.covers)
            assert m.explanation.terms == x.explanation.terms and m.score == pytest.approx(x.score)
    assert "X0035" not in [m.expert_id for m in by_demand["T-1"]]  # its own enterprise: 回避
    assert {m.expert_id for m in by_demand["T-2"]} >= {"X0051", "X0085"}
    others = {d: ms for d, ms in by_demand.items() if not d.startswith("T-")}
    assert len(others) == 12
    for d, ms in others.items():
        # a ranked list as match_demand ranks it (as long as it lists experts, at most --top)
        listed = [m.expert.id for m in engine.match_demand(engine.store.get_demand(d), top_k=5)]
        assert [m.expert_id for m in ms] == listed and not any(m.team for m in ms)
    per_expert = Counter(m.expert_id for ms in by_demand.values() for m in ms)
    assert max(per_expert.values()) <= 5
    outcomes = {o.demand_id: o for o in engine.store.list_batch_outcomes(run.id)}
    assert outcomes["T-1"].reason == outcomes["T-2"].reason == ""
    assert outcomes["T-1"].excluded >= 1  # X0035, and whoever else works there

    [path] = write_report(engine.store, run, tmp_path / "r.xlsx")
    wb = load_workbook(path)
    recs = list(wb["推荐"].iter_rows(values_only=True))
    assert recs[0] == RECOMMENDATION_COLUMNS and recs[0][-2:] == ("组团", "覆盖方面")
    team_rows = [r for r in recs[1:] if r[0] == "T-2"]
    assert len(team_rows) == 3 and all(r[10] == "是" for r in team_rows)
    covers = [r[11] for r in team_rows]
    assert all(c and not c.startswith("方面") for c in covers) and any("MES" in c for c in covers)  # by name
    assert all(r[10] is None for r in recs[1:] if not r[0].startswith("T-"))
    info = dict(wb["运行"].iter_rows(values_only=True))
    assert info["组团人数 team size"] == 3
    engine.close()


def test_without_team_the_flag_is_ignored(tmp_path, small_template, tokenizer) -> None:
    engine = stocked(small_template, tmp_path, tokenizer)
    run = run_batch(engine, BatchOptions(run_key="plain", top=4, max_per_expert=5)).run
    got = [m for m in engine.store.list_batch_matches(run.id) if m.demand_id == "T-2"]
    plain = engine.match_demand(engine.store.get_demand("T-2"), top_k=4)
    assert [m.expert_id for m in got] == [m.expert.id for m in plain] and not any(m.team for m in got)
    assert run.team_size == 0
    engine.close()


def test_teams_take_their_places_first_and_a_full_expert_is_reported(tmp_path, small_template,
                                                                      tokenizer) -> None:
    twins = [Demand(id=f"W-{i}", description=THREE_PARTS, needs_team=True, created_at=f"2026-11-2{i}")
             for i in (1, 2)]
    engine = stocked(small_template, tmp_path, tokenizer, twins)
    run = run_batch(engine, BatchOptions(run_key="cap", top=5, max_per_expert=1, team_size=3)).run
    matches = engine.store.list_batch_matches(run.id)
    assert max(Counter(m.expert_id for m in matches).values()) == 1
    first = [m.expert_id for m in matches if m.demand_id == "W-1"]
    assert len(first) == 3, "the earlier team keeps all its members"
    assert not [m for m in matches if m.demand_id == "W-2"], "its twin's members were all taken"
    reason = {o.demand_id: o.reason for o in engine.store.list_batch_outcomes(run.id)}["W-2"]
    assert reason.startswith("团队 0/3 人") and "3 位团队成员在本次运行中已有 1 条推荐" in reason
    assert "teams first" in run.method
    # Every ranked-list demand got only experts the teams left room for.
    assert not {m.expert_id for m in matches if not m.team} & set(first)
    engine.close()


def test_a_resumed_run_keeps_its_team_size(tmp_path, small_template, tokenizer) -> None:
    engine = stocked(small_template, tmp_path, tokenizer)
    started = engine.store.create_batch_run("resume", top=5, max_per_expert=5, candidates=300, team_size=2)
    assert engine.store.select_batch_demands(started.id, None) == 14
    # The run was killed after it pinned its demands: the next attempt keeps team_size=2 although
    # this command line forgot --team.
    engine.store.fail_batch_run(started.id, "killed")
    run = run_batch(engine, BatchOptions(run_key="resume", top=5, max_per_expert=5)).run
    assert run.status == "done" and run.team_size == 2
    team_rows = [m for m in engine.store.list_batch_matches(run.id) if m.demand_id.startswith("T-")]
    assert len(team_rows) == 4 and all(m.team for m in team_rows)
    engine.close()


def test_bad_team_size_and_the_cli(tmp_path, small_template, tokenizer) -> None:
    with pytest.raises(InputError, match="--team-size must be between 1 and 8"):
        BatchOptions(run_key="x", team_size=9).check()
    engine = stocked(small_template, tmp_path, tokenizer)
    engine.close()
    db = str(tmp_path / "m.db")
    runner = CliRunner()
    help_ = runner.invoke(app, ["batch", "--help"])
    assert "--team" in help_.output and "--team-size" in help_.output
    res = runner.invoke(app, ["batch", "--db", db, "--run-key", "c1", "--team", "--team-size", "2",
                              "--top", "3", "--report", str(tmp_path / "c.csv")])
    assert res.exit_code == 0, res.output
    store = Store(db)
    run = store.get_batch_run("c1")
    assert run.team_size == 2
    teams = [m for m in store.list_batch_matches(run.id) if m.team]
    assert sorted(Counter(m.demand_id for m in teams).items()) == [("T-1", 2), ("T-2", 2)]
    store.close()
    bad = runner.invoke(app, ["batch", "--db", db, "--run-key", "c2", "--team", "--team-size", "0"])
    assert bad.exit_code == 2 and "--team-size" in bad.stderr
