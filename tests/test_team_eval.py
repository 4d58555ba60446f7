"""The joined multi-aspect benchmark (matcher.team_eval) on the demo corpus, with judged experts
made up for the test: the joins follow their rules, the metrics are what they say."""

from __future__ import annotations

import pytest

from matcher.engine import Engine
from matcher.evaluate import Benchmark, metrics_for
from matcher.models import Demand
from matcher.team import recommend_team
from matcher.team_eval import (
    _text,
    coverage_at,
    evaluate_teams,
    format_team_table,
    joined_demands,
    part_ceiling,
    split_queries,
)


def demo_bench(engine: Engine) -> Benchmark:
    """The demo demands (title and description), each judged by the rank-2 expert of its own ranking."""
    queries = [Demand(id=d.id, title=d.title, description=d.description) for d in engine.store.iter_demands()]
    qrels = {q.id: {engine.match(_text(q), top_k=2)[1].expert.id} for q in queries}
    return Benchmark(experts=[], queries=queries, qrels=qrels)


def test_coverage_at() -> None:
    rel = (frozenset({"a", "b"}), frozenset({"c"}), frozenset({"d"}))
    assert coverage_at(["a", "x", "b"], rel) == pytest.approx(1 / 3)
    assert coverage_at(["b", "c", "d"], rel) == 1.0
    assert coverage_at([], rel) == 0.0


def test_joins_follow_their_rules_and_the_seed(demo_engine: Engine) -> None:
    bench = demo_bench(demo_engine)
    halves = split_queries(bench)
    assert sorted(halves) == sorted(q.id for q in bench.queries)
    assert abs(sum(h == "tune" for h in halves.values()) - len(halves) / 2) <= 0.5
    joined = joined_demands(bench, per_split=((2, 6), (3, 3)))
    assert joined == joined_demands(bench, per_split=((2, 6), (3, 3))), "a fixed seed gives the same joins"
    assert joined != joined_demands(bench, seed=1, per_split=((2, 6), (3, 3)))
    by_id = {q.id: q for q in bench.queries}
    assert len({j.id for j in joined}) == len(joined) == 18
    for j in joined:
        assert {halves[p] for p in j.parts} == {j.split}, "a join never mixes the halves"
        assert len(set(j.parts)) == len(j.parts) in (2, 3)
        rels = list(j.relevant)
        assert all(not (a & b) for i, a in enumerate(rels) for b in rels[i + 1:]), "parts need other experts"
        assert rels == [frozenset(bench.qrels[p]) for p in j.parts] and j.union == set().union(*rels)
        at = 0
        for p in j.parts:  # each part's text, in order, with at most a connective between
            found = j.text.find(_text(by_id[p]), at)
            assert found >= at and found - at <= 3
            at = found + len(_text(by_id[p]))
        assert at == len(j.text)


def test_the_ceiling_is_the_best_split_of_the_places(demo_engine: Engine) -> None:
    bench = demo_bench(demo_engine)  # each part's relevant expert is its own rank 2
    joined = [j for j in joined_demands(bench, per_split=((2, 4),))]
    # Two places cannot reach two rank-2 experts; four can (unless two parts share their rankings' head).
    assert part_ceiling(demo_engine, bench, joined, 1)["all"] == 0.0
    assert part_ceiling(demo_engine, bench, joined, 2)["all"] == 0.5
    assert part_ceiling(demo_engine, bench, joined, 4)["all"] == 1.0


def test_evaluate_teams_reports_what_the_team_and_the_plain_list_do(demo_engine: Engine) -> None:
    bench = demo_bench(demo_engine)
    joined = joined_demands(bench, per_split=((2, 3), (3, 2)))
    result = evaluate_teams(demo_engine, joined, bench.queries[:4])
    assert len(result.per_demand) == len(joined)
    for j, row in zip(joined, result.per_demand, strict=True):
        team = recommend_team(demo_engine, j.text, size=3, depth=10)
        plain = [m.expert.id for m in demo_engine.match(j.text, top_k=10)]
        assert row["team coverage@3"] == coverage_at([m.expert.id for m in team.members], j.relevant)
        assert row["plain coverage@3"] == coverage_at(plain[:3], j.relevant)
        assert row["team nDCG@10"] == metrics_for(list(team.ranking), j.union)["nDCG@10"]
        assert row["plain nDCG@10"] == metrics_for(plain, j.union)["nDCG@10"]
        assert row["aspects"] == len(team.aspects)
    tune = [r for r in result.per_demand if r["split"] == "tune"]
    assert result.table["tune"]["team"]["coverage@3"] == pytest.approx(
        sum(r["team coverage@3"] for r in tune) / len(tune), abs=1e-4)
    assert result.single["demands"] == 4 and result.single["same first expert"] == 4
    assert set(result.timing) == {"match p50", "match p95", "team of 3 p50", "team of 3 p95"}
    table = format_team_table(result)
    assert "coverage@3" in table and "one-topic demands: 4" in table
