"""Metric definitions checked on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from matcher.evaluate import Hub, hub_of, mean_metrics, metrics_for, qrels_hub


def test_perfect_and_empty_rankings() -> None:
    m = metrics_for(["a", "b"], {"a", "b"})
    assert m["nDCG@10"] == pytest.approx(1.0)
    assert m["MRR"] == 1.0 and m["Hit@1"] == 1.0 and m["MAP@100"] == 1.0
    z = metrics_for([], {"a"})
    assert all(v == 0.0 for v in z.values())


def test_hand_computed_values() -> None:
    # relevant at ranks 2 and 4, three relevant in all
    m = metrics_for(["x", "a", "y", "b", "z"], {"a", "b", "c"})
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["nDCG@10"] == pytest.approx(dcg / idcg)
    assert m["MRR"] == pytest.approx(0.5)
    assert m["Recall@10"] == pytest.approx(2 / 3)
    assert m["Hit@1"] == 0.0 and m["Hit@10"] == 1.0
    assert m["MAP@100"] == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_missing_queries_count_as_zero() -> None:
    res = mean_metrics({"q1": ["a"]}, {"q1": {"a"}, "q2": {"b"}})
    assert res["MRR"] == pytest.approx(0.5)
    assert res["Hit@1"] == pytest.approx(0.5)


def test_hub_is_the_share_of_queries_listing_the_most_listed_expert() -> None:
    runs = {"q1": ["a", "b"], "q2": ["b", "c"], "q3": ["b"], "q4": ["d"] + ["x"] * 9 + ["b"]}
    hub = hub_of(runs, ["q1", "q2", "q3", "q4"])
    # b is in the top 10 of q1-q3; in q4 it is 11th
    assert (hub.expert, hub.share) == ("b", 0.75)
    assert hub_of({}, ["q1"]) == Hub("", 0.0)
    # ties go to the smaller id, so the figure does not depend on dict order
    assert hub_of({"q1": ["z", "a"]}, ["q1", "q2"]) == Hub("a", 0.5)


def test_qrels_hub_counts_how_often_an_expert_is_relevant() -> None:
    qrels = {"q1": {"a", "b"}, "q2": {"a"}, "q3": {"c"}, "q4": {"d"}}
    assert qrels_hub(qrels, ["q1", "q2", "q3", "q4"]) == Hub("a", 0.5)


# -- `matcher eval --feedback`: the ranker against the stored verdicts ---------------------------
def test_eval_feedback_on_verdicts_with_hand_computed_metrics(tmp_path, tokenizer) -> None:
    import json as _json

    from typer.testing import CliRunner

    from matcher.cli import app
    from matcher.config import Settings
    from matcher.engine import Engine
    from matcher.errors import InputError
    from matcher.evaluate import evaluate_feedback
    from matcher.workflow import Workflow

    engine = Engine(Settings(db=tmp_path / "fb.db"), tokenizer=tokenizer)
    assert engine.load_demo()
    with pytest.raises(InputError, match="no verdicts"):
        evaluate_feedback(engine)
    one = [m.expert.id for m in engine.match_demand(engine.store.get_demand("Q0001"), top_k=100)]
    two = [m.expert.id for m in engine.match_demand(engine.store.get_demand("Q0002"), top_k=100)]
    outsider = next(e.id for e in engine.store.iter_experts() if e.id not in two)  # not ranked for Q0002
    assert len(one) >= 5 and len(two) >= 4
    loop = Workflow(engine)
    # Q0001: rank 1 declined, ranks 3 and 5 accepted / succeeded; rank 2 only contacted (unjudged).
    loop.record_feedback("staff:t", "Q0001", one[0], "declined")
    loop.record_feedback("staff:t", "Q0001", one[1], "contacted")
    loop.record_feedback("staff:t", "Q0001", one[2], "accepted")
    loop.record_feedback("staff:t", "Q0001", one[4], "contacted")
    loop.record_feedback("staff:t", "Q0001", one[4], "succeeded")
    # Q0002: rank 1 accepted, rank 4 unsuitable, an unranked expert declined; and rank 2 first declined, then
    # accepted (the latest decisive verdict counts: relevant).
    loop.record_feedback("staff:t", "Q0002", two[0], "accepted")
    loop.record_feedback("staff:t", "Q0002", two[3], "unsuitable")
    loop.record_feedback("staff:t", "Q0002", outsider, "declined")
    loop.record_feedback("staff:t", "Q0002", two[1], "declined")
    loop.record_feedback("staff:t", "Q0002", two[1], "accepted")
    # Q0003: only a declined expert: counted for the declined share, not in the metrics.
    three = [m.expert.id for m in engine.match_demand(engine.store.get_demand("Q0003"), top_k=20)]
    loop.record_feedback("staff:t", "Q0003", three[11], "declined")

    r = evaluate_feedback(engine)
    assert (r.demands, r.with_relevant, r.relevant, r.non_relevant) == (3, 2, 4, 4)
    # The verdicts' exclusions are not applied: the declined rank-1 expert is still ranked first.
    assert r.runs["Q0001"][:5] == one[:5]
    log2 = math.log2
    # Q0001, full list: relevant at ranks 3 and 5. Q0002: relevant at ranks 1 and 2.
    ndcg1 = (1 / log2(4) + 1 / log2(6)) / (1 + 1 / log2(3))
    assert r.full["nDCG@10"] == pytest.approx((ndcg1 + 1.0) / 2, abs=1e-4)
    assert r.full["MRR"] == pytest.approx((1 / 3 + 1) / 2, abs=1e-4)
    assert r.full["Hit@1"] == pytest.approx(0.5) and r.full["Recall@10"] == pytest.approx(1.0)
    # Condensed (judged experts only): Q0001 is [declined, rel, rel]; Q0002 is [rel, rel, unsuitable].
    ndcg1c = (1 / log2(3) + 1 / log2(4)) / (1 + 1 / log2(3))
    assert r.condensed["nDCG@10"] == pytest.approx((ndcg1c + 1.0) / 2, abs=1e-4)
    assert r.condensed["MRR"] == pytest.approx((1 / 2 + 1) / 2, abs=1e-4)
    # Pairs (relevant, not relevant): Q0001 2 pairs, both misordered; Q0002 2 x 2 pairs all in order
    # (the outsider is not ranked at all).
    assert r.pairs_ordered == pytest.approx(4 / 6, abs=1e-4)
    # Declined or unsuitable in the top 10: Q0001's rank 1 and Q0002's rank 4; not the outsider, not rank 12.
    assert r.non_relevant_in_top10 == pytest.approx(2 / 4)
    engine.close()

    out = CliRunner().invoke(app, ["eval", "--feedback", "--json", "--db", str(tmp_path / "fb.db")])
    assert out.exit_code == 0, out.output
    payload = _json.loads(out.output.strip().splitlines()[-1])
    assert payload["full"] == r.full and payload["pairs_ordered"] == r.pairs_ordered
    assert "3 demands with verdicts" in out.output and "accepted ranked above declined in 66.7%" in out.output
    both = CliRunner().invoke(app, ["eval", str(tmp_path), "--feedback", "--db", str(tmp_path / "fb.db")])
    assert both.exit_code == 2 and "BENCHDIR" in both.output
