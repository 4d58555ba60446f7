"""Top-k retrieval with dynamic pruning (matcher/ranking/topk.py, pruned.py) against the exhaustive
path: the same votes, fused scores, pages and explanations, bit for bit, on the demo corpus (with
the dense signal and the demand bank), after incremental updates, and on a 10,000-expert pool."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.engine import Engine
from matcher.models import Document, Expert
from matcher.ranking import pruned, topk

from .conftest import BENCH, THERMOS, demo_demands, make_settings

EXACT = ("bm25", "tfidf", "chars", "lsa", "dense", "dense_profile", "prior")
TEXTS = [THERMOS, "锂电池BMS均衡策略与SOC估计", "不锈钢锅底用久了发黑起斑，想找做涂层的专家",
         "PLC 控制的五金冲压生产线", "今天天气不错", "茶叶加工机械化与品质控制", "SiC功率器件封装散热"]


def both(index, query):  # noqa: ANN001, ANN202
    """The signals of the exhaustive and of the pruned path."""
    return (index.with_params(topk_pruning=False).signal_scores(query),
            index.with_params(topk_pruning=True).signal_scores(query))


def assert_same_signals(index, queries) -> None:  # noqa: ANN001
    assert pruned.applies(index)
    for q in queries:
        a, b = both(index, q)
        sa, ua, sb, ub = a.signals, a.units, b.signals, b.units
        assert ub.complete is not None and ua.complete is None  # the pruned path did run
        for name in EXACT:
            assert np.array_equal(sa[name], sb[name]), (q.text[:20], name)
        assert a.understood == b.understood
        fused_a, fused_b = index.fuse(a), index.fuse(b)
        assert np.array_equal(fused_a, fused_b)
        # what the pruned path fills in for explained experts equals the exhaustive arrays there
        some = np.flatnonzero(fused_a > 0)[:15]
        ub.complete(some)
        for e in some:
            units = index.units_of(int(e))
            assert np.array_equal(ua.words[units], ub.words[units])
            if ua.chars is not None:
                assert np.array_equal(ua.chars[units], ub.chars[units])
            assert sa["centroid"][e] == sb["centroid"][e]


def matches_of(engine: Engine, text: str) -> list[tuple]:
    return [(m.rank, m.expert.id, m.score, m.explanation.to_dict()) for m in engine.match(text, top_k=10)]


def pruning(engine: Engine, tokenizer) -> Engine:  # noqa: ANN001
    """An engine on the same database and saved index, scoring by top-k retrieval."""
    return Engine(engine.settings.model_copy(update={"topk_pruning": True}), tokenizer=tokenizer)


def test_pruned_pages_and_explanations_equal_the_exhaustive_ones(demo_engine: Engine, tokenizer) -> None:
    loaded = demo_engine.ensure_index()
    assert loaded.index.dense_ is not None  # the demo ships its vectors: the dense signal runs too
    with pruning(demo_engine, tokenizer) as pruned_engine:
        assert pruned_engine.ensure_index().index.params.topk_pruning
        for text in [*TEXTS, *(d.text for d in demo_demands()[:20])]:
            assert matches_of(pruned_engine, text) == matches_of(demo_engine, text), text
    queries = [demo_engine.query(d.text, " ".join([d.title, *d.keywords])) for d in demo_demands()]
    assert_same_signals(loaded.index, queries)


def test_pruned_equals_exhaustive_after_incremental_updates(tmp_path: Path, tokenizer) -> None:
    engine = Engine(make_settings(tmp_path, encoder="none", weight_dense=0.0), tokenizer=tokenizer)
    engine.load_demo()
    engine.ensure_index()
    doc = Document(title="不锈钢真空保温杯激光焊接工艺", keywords=("激光焊接", "保温杯"),
                   abstract="焊缝气孔与真空度控制。")
    engine.upsert_experts([Expert(id=f"UPD{i}", name=f"专家{i}", research_fields=("激光焊接", "真空封装"),
                                  documents=(doc,) * (i + 1)) for i in range(4)])
    first = engine.store.get_experts([engine.ensure_index().index.expert_ids_[0]])[0]
    engine.upsert_experts([replace(first, research_fields=("锂电池", "电池管理系统"))])  # masked + appended
    engine.delete_expert(engine.ensure_index().index.expert_ids_[3])
    index = engine.ensure_index().index
    assert index.words_.n_rows_ > index.words_.n_base_rows_ and not index.expert_alive_.all()
    queries = [engine.query(t) for t in TEXTS] + [engine.query(d.text) for d in demo_demands()[:15]]
    assert_same_signals(index, queries)
    with pruning(engine, tokenizer) as pruned_engine:
        for text in TEXTS[:3]:
            assert matches_of(pruned_engine, text) == matches_of(engine, text)
    engine.close()


@pytest.mark.slow
@pytest.mark.skipif(not BENCH.exists(), reason="needs ../shared/bench/cdl for the synthetic pool")
def test_pruned_equals_exhaustive_on_a_10000_expert_pool(tmp_path: Path, tokenizer) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import synth

    engine = Engine(make_settings(tmp_path, encoder="none", weight_dense=0.0, char_abstracts=False),
                    tokenizer=tokenizer)
    engine.store.upsert_experts(synth.experts(10_000))
    index = engine.rebuild()
    assert index.words_.n_rows_ > 90_000
    queries = [engine.query(d.text, " ".join([d.title, *d.keywords])) for d in synth.demands(40)]
    assert_same_signals(index, queries)
    engine.close()


@given(st.lists(st.integers(0, 400), min_size=0, max_size=120, unique=True),
       st.lists(st.integers(0, 400), min_size=0, max_size=80, unique=True))
@settings(max_examples=200, deadline=None)
def test_galloping_gather_finds_what_a_binary_search_finds(postings: list[int], rows: list[int]) -> None:
    postings, rows = sorted(postings), sorted(rows)
    indices = np.asarray(postings, dtype=np.int32)
    data = np.arange(1, len(postings) + 1, dtype=np.float32)
    indptr = np.asarray([0, len(postings)], dtype=np.int64)
    probes = np.asarray(rows, dtype=np.int64)
    got = topk._gather(indptr, indices, data, np.zeros(1, dtype=np.int64), probes)[:, 0]
    pos = np.searchsorted(indices, rows)
    want = np.asarray([data[p] if p < len(indices) and indices[p] == r else 0.0
                       for p, r in zip(pos, rows, strict=True)], dtype=np.float32)
    assert np.array_equal(got, want)


def test_bounds_bound_every_entry_weight_and_survive_a_save(demo_engine: Engine, tmp_path: Path) -> None:
    index = demo_engine.ensure_index().index
    for view, bm25 in ((index.words_, True), (index.words_tfidf_, True), (index.chars_, False)):
        b = topk.compute_bounds(view, bm25=bm25)
        base = view._base
        cols = np.repeat(np.arange(base.shape[1]), np.diff(base.indptr))
        rows = np.asarray(base.indices)
        tf = np.asarray(base.data)
        bound = b.bm25_bound(view) if view.weighting == "bm25" else b.tfidf_bound(view)
        factor = view._row_factor[rows]
        w = tf / (tf + factor) if view.weighting == "bm25" else (1 + np.log(tf)) * factor
        assert (w <= bound[cols]).all()
        np.testing.assert_allclose(np.maximum.reduceat(w, base.indptr[:-1][np.diff(base.indptr) > 0]),
                                   bound[np.diff(base.indptr) > 0] / (1 + topk.SLACK), rtol=1e-5)
    topk.save_bounds(index.chars_, tmp_path, "chars", bm25=False)
    assert topk.load_bounds(index.chars_, tmp_path, "chars")
    assert not topk.load_bounds(index.words_, tmp_path, "chars")  # another base: refused
