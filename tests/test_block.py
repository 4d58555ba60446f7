"""The nightly batch's demands scored in blocks (matcher/ranking/block.py): the dense and LSA signals
of a block as one matrix product each give what the one-at-a-time path gives: the same experts in
the same order, the same exclusions and explanations, every lexical signal bit for bit and the
semantic ones to float32 rounding (a matrix product blocks its sums otherwise than a matrix-vector
product). On the demo corpus and on a 10,000-expert pool (the scale benchmark's generator)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from matcher.batch import BatchOptions, score_demand, score_demands
from matcher.engine import Candidates, Engine, demand_candidates_many
from matcher.models import Demand

from .conftest import make_settings

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "bench" / "cdl"
LEXICAL = ("bm25", "tfidf", "centroid", "chars", "profile", "fields", "dense_profile", "prior")
FLOAT32 = 1.2e-7  # one float32 rounding of a score near 1
SCORES = 1e-6  # a fused score sums several signals, each possibly a few roundings away


def tie_groups(matches: list, rel: float = 2 * FLOAT32) -> list[set[str]]:  # noqa: ANN001
    """The experts of a ranking in runs whose scores are equal to float32 rounding."""
    groups: list[set[str]] = []
    last = None
    for m in matches:
        if last is None or abs(m.score - last) > rel * max(1.0, abs(last)):
            groups.append(set())
        groups[-1].add(m.expert.id)
        last = m.score
    return groups


def assert_same_candidates(one: Candidates, block: Candidates, *, exact: bool = True) -> None:
    """The same experts in the same order; with `exact` False, experts whose scores are equal to
    float32 rounding may trade places (and the last such run may reach past the limit)."""
    if exact:
        assert [m.expert.id for m in block.ranked] == [m.expert.id for m in one.ranked]
        assert [(x.expert.id, x.reason) for x in block.excluded] == \
            [(x.expert.id, x.reason) for x in one.excluded]
    else:
        assert len(block.ranked) == len(one.ranked)
        assert tie_groups(list(block.ranked))[:-1] == tie_groups(list(one.ranked))[:-1]
        return
    pairs = [*zip(one.ranked, block.ranked, strict=True), *zip(one.excluded, block.excluded, strict=True)]
    for a, b in pairs:
        assert abs(a.score - b.score) <= SCORES * max(1.0, abs(a.score))
    for a, b in zip(one.ranked, block.ranked, strict=True):
        ea, eb = a.explanation, b.explanation
        assert (ea.terms, ea.expanded) == (eb.terms, eb.expanded)
        assert [(e.field, e.text, e.terms, e.match) for e in ea.evidence] == \
            [(e.field, e.text, e.terms, e.match) for e in eb.evidence]
        for name, value in ea.signals.items():
            if name in LEXICAL:
                assert eb.signals[name] == value, name
            else:
                assert abs(eb.signals[name] - value) <= 1e-6 * max(1.0, abs(value)), name


def test_a_block_of_the_demo_demands_ranks_as_one_at_a_time(demo_engine: Engine) -> None:
    demands = list(demo_engine.iter_demands())
    assert len(demands) > 50
    index = demo_engine.ensure_index().index
    assert index.dense_ is not None and index.part("lsa") is not None  # both block products run
    block = demand_candidates_many(demo_engine, demands, 300, explain=10)
    for demand, got in zip(demands, block, strict=True):
        assert_same_candidates(demo_engine.demand_candidates(demand, 300, explain=10), got)


def test_the_semantic_signals_come_from_the_block_the_lexical_ones_bit_equal(demo_engine: Engine) -> None:
    index = demo_engine.ensure_index().index
    queries = [demo_engine.query(d.text) for d in list(demo_engine.iter_demands())[:20]]
    many = index.score_many(queries)
    bitwise = total = 0
    for q, got in zip(queries, many, strict=True):
        want = index.score(q)
        for name in LEXICAL:
            assert np.array_equal(got.signals[name], want.signals[name]), name
        for name in ("lsa", "dense"):
            np.testing.assert_allclose(got.signals[name], want.signals[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.dense_scores, want.dense_scores, rtol=0, atol=1e-6)
        bitwise += int((got.dense_scores == want.dense_scores).sum())
        total += len(want.dense_scores)
    # Not the one-query product in disguise: BLAS sums a block's products in another order.
    assert bitwise < total


def test_the_batch_scorer_keeps_order_and_reports_a_bad_demand_alone(demo_engine: Engine) -> None:
    demands = list(demo_engine.iter_demands())[:9]
    bad = Demand(id="D-empty", title="", description="")
    mixed = [*demands[:4], bad, *demands[4:]]
    opts = BatchOptions(run_key="x")
    got = list(score_demands(demo_engine, mixed, 50, explain=opts.top, block=4))
    assert [s.demand_id for s in got] == [d.id for d in mixed]
    alone = [score_demand(demo_engine, d, 50, explain=opts.top) for d in mixed]
    assert got[4].error and got[4].error == alone[4].error
    for a, b in zip(alone, got, strict=True):
        assert [(c.expert_id, c.rank) for c in a.ranked] == [(c.expert_id, c.rank) for c in b.ranked]
        assert [(x.expert_id, x.reason) for x in a.excluded] == [(x.expert_id, x.reason) for x in b.excluded]


@pytest.mark.slow
@pytest.mark.skipif(not BENCH.exists(), reason="needs ../shared/bench/cdl for the synthetic pool")
def test_a_block_ranks_a_10000_expert_pool_as_one_at_a_time(tmp_path, tokenizer) -> None:  # noqa: ANN001
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import synth
    from scale import _synthetic_vectors

    settings = make_settings(tmp_path, char_abstracts=False)
    engine = Engine(settings, tokenizer=tokenizer)
    engine.store.upsert_experts(synth.experts(10_000))
    index = engine.rebuild()
    demands = list(synth.demands(40))
    _synthetic_vectors(engine, index, [d.text for d in demands])
    engine.close()
    engine = Engine(settings, tokenizer=tokenizer)
    assert engine.ensure_index().index.dense_ is not None
    identical = 0
    for start in (0, 20):
        part = demands[start : start + 20]
        for demand, got in zip(part, demand_candidates_many(engine, part, 300, explain=10), strict=True):
            one = engine.demand_candidates(demand, 300, explain=10)
            assert_same_candidates(one, got, exact=False)
            identical += [m.expert.id for m in one.ranked] == [m.expert.id for m in got.ranked]
    assert identical >= 30  # most demands have no two experts tied to float32 rounding in their 300
    engine.close()


def test_a_demand_scores_the_same_bits_in_any_block(demo_engine: Engine) -> None:
    index = demo_engine.ensure_index().index
    queries = [demo_engine.query(d.text) for d in list(demo_engine.iter_demands())[:40]]
    alone = index.score_many(queries[7:8])[0]
    for block in (queries[:10], queries[5:40], [queries[30], queries[7]]):
        got = index.score_many(block)[block.index(queries[7])]
        assert np.array_equal(got.total, alone.total)
        assert np.array_equal(got.dense_scores, alone.dense_scores)
