"""Metric definitions checked on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from matcher.evaluate import mean_metrics, metrics_for


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
