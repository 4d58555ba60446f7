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
