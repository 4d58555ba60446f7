"""The ranking's mechanisms, each against a plain reference and on a pool built to show why it
exists: expert-level length normalisation, no word mask (but a floor), the demand bank."""

from __future__ import annotations

import numpy as np
import pytest

from matcher.config import Settings
from matcher.engine import Engine
from matcher.models import Demand, Expert
from matcher.rank import ExpertIndex, Query
from matcher.ranking.aggregate import expert_vote, knn_vote
from matcher.ranking.bank import popularity
from matcher.ranking.fusion import discount_popular
from matcher.store import Store

from .conftest import make_settings


def doc(title: str, *kw: str) -> dict:
    return {"kind": "paper", "title": title, "keywords": list(kw)}


# A prolific academician whose 60 papers each touch a common word, and a local engineer with one
# line of 专业特长 that is exactly the demand: the pool of issue 14.
PROLIFIC = Expert.from_dict({
    "id": "P", "name": "院士甲", "research_fields": ["材料科学"],
    "documents": [doc(f"{t}材料性能研究第{i}篇", "材料", t) for i, t in
                  enumerate(["钢", "铝", "铜", "钛", "陶瓷", "聚合物"] * 10)],
})
ENGINEER = Expert.from_dict({"id": "L", "name": "工程师乙", "research_fields": ["铝合金压铸件气孔控制"]})
OTHERS = [Expert.from_dict({"id": f"O{i}", "name": f"其他{i}", "research_fields": [f],
                            "documents": [doc(f"{f}的研究")]})
          for i, f in enumerate(["茶叶加工", "水产养殖", "电梯安全", "蚕桑育种", "纺织印染", "中药制剂"])]
DEMAND = "铝合金压铸件气孔多，材料性能不稳定"


def test_the_vote_divided_by_profile_size_equals_a_plain_reference(tokenizer) -> None:
    index = ExpertIndex(lsa_dims=8).fit([PROLIFIC, ENGINEER, *OTHERS], tokenizer)
    rng = np.random.default_rng(0)
    for k, alpha in ((5, 0.3), (50, 0.5), (100, 0.0)):
        scores = np.where(rng.random(len(index.unit_expert_)) < 0.5, 0, rng.random(len(index.unit_expert_)))
        scores = scores.astype(np.float32)
        got = expert_vote(scores, index.layout(), index.unit_expert_, index.n_documents_, k, alpha)
        plain = knn_vote(scores, index.layout(), index.unit_expert_, len(index.expert_ids_), k)
        ref = plain / np.maximum(index.n_documents_, 1) ** alpha
        assert np.allclose(got, ref, rtol=1e-5)


def test_one_specific_match_beats_many_weak_ones(tmp_path, tokenizer) -> None:
    def ranking(**kw: float) -> list[str]:
        settings = make_settings(tmp_path / str(len(kw)) / str(kw), encoder="none", popularity_weight=0.0, **kw)
        with Engine(settings, tokenizer=tokenizer) as engine:
            engine.upsert_experts([PROLIFIC, ENGINEER, *OTHERS])
            return [m.expert.id for m in engine.match(DEMAND, top_k=3)]

    # a plain sum of votes lets sixty weak "材料" documents outvote the one exact line...
    assert ranking(expert_length_norm=0.0)[0] == "P"
    # ...the expert-level length normalisation (the default) puts the engineer first
    assert ranking()[0] == "L"


def test_an_expert_found_only_through_characters_is_listed_and_says_so(tmp_path, tokenizer) -> None:
    # issue 14's case: 电池管理 in the demand, 电池管理系统 segmented as one word in the profile
    bms = Expert.from_dict({"id": "B", "name": "电池专家", "research_fields": ["电池管理系统"]})
    text = "电池管理做得不好"
    assert not set(tokenizer.tokenize(text)) & set(tokenizer.tokenize("电池管理系统"))
    with Engine(make_settings(tmp_path, encoder="none", thesaurus_weight=0.0), tokenizer=tokenizer) as engine:
        engine.upsert_experts([bms, *OTHERS])
        matches = engine.match(text, top_k=5)
        assert [m.expert.id for m in matches][:1] == ["B"]
        [ev] = matches[0].explanation.evidence
        assert ev.match == "chars" and ev.terms == ("电池管理",) and ev.text == "电池管理系统"
        assert matches[0].explanation.terms == ("电池管理",)


def test_a_text_sharing_nothing_lists_nobody_but_one_shared_string_does(tmp_path, tokenizer) -> None:
    with Engine(make_settings(tmp_path), tokenizer=tokenizer) as engine:
        engine.load_demo()
        assert engine.match("今天天气晴朗，我们去公园散步吧") == []
        assert engine.match("保温杯")


def test_experts_far_below_the_best_are_not_listed(demo_engine: Engine) -> None:
    index = demo_engine.ensure_index().index
    q = demo_engine.query("不锈钢保温杯真空层激光焊接")
    sig = index.signal_scores(q)
    floor = demo_engine.settings.list_floor
    plain = index.fuse(sig, {**index.weights, "popularity": 0.0})
    listed = plain[plain > 0]
    assert listed.min() >= floor * listed.max()


# -- the demand bank -------------------------------------------------------------------------------
def test_the_popularity_discount_is_a_share_of_the_best_minus_popularity() -> None:
    total = np.array([0.0, 4.0, 2.0, 1.0], dtype=np.float32)
    pop = np.array([0.9, 0.5, 0.1, 0.8], dtype=np.float32)
    out = discount_popular(total, pop, 0.75)
    # shares 1, .5, .25 minus .75 x popularity; below zero is not listed, nor is what was not
    assert np.allclose(out, [0.0, 1 - 0.375, 0.5 - 0.075, 0.0])
    assert np.array_equal(discount_popular(np.zeros(3, np.float32), pop[:3], 0.75), np.zeros(3))


def test_popularity_is_the_mean_share_of_the_best_over_the_bank(demo_engine: Engine) -> None:
    index = demo_engine.ensure_index().index
    texts = ["不锈钢保温杯真空层激光焊接", "锂电池BMS均衡", "家蚕养殖病害"]
    queries = [demo_engine.query(t) for t in texts]
    got = popularity(index.with_popularity(None), queries, index.weights)
    ref = np.zeros(len(index.expert_ids_))
    for q in queries:
        t = index.with_popularity(None).fuse(index.signal_scores(q), {**index.weights, "popularity": 0})
        ref += t / t.max()
    ref /= len(texts)
    assert got == {index.expert_ids_[i]: pytest.approx(float(ref[i])) for i in np.flatnonzero(ref > 0)}


def test_an_expert_offered_for_every_demand_is_discounted(tmp_path, tokenizer) -> None:
    # A generalist whose fields touch every demand of the bank, and specialists.
    generalist = Expert.from_dict({"id": "G", "name": "通才", "research_fields": [
        "电池", "焊接", "茶叶", "涂层", "电梯", "纺织", "养殖", "水泵"]})
    topics = ["锂电池容量衰减", "不锈钢激光焊接", "茶叶揉捻", "不粘涂层附着力", "电梯曳引机噪声", "纺织印染色差",
              "水产养殖增氧", "离心水泵气蚀"]
    # for each topic the exact specialist, and a second one who shares part of it
    specialists = [Expert.from_dict({"id": f"S{i}", "name": f"专家{i}", "research_fields": [f]})
                   for i, f in enumerate(topics)]
    specialists += [Expert.from_dict({"id": f"T{i}", "name": f"次选{i}", "research_fields": [f[-2:] + "机理"]})
                    for i, f in enumerate(topics)]
    demands = [Demand(id=f"D{i}", title=t) for i, t in enumerate(
        ["锂电池容量衰减快", "不锈钢激光焊接气孔", "茶叶揉捻不均", "不粘涂层附着力差", "电梯曳引机噪声大",
         "纺织印染色差大", "水产养殖增氧不足", "离心水泵气蚀严重"])]
    listed: dict[float, int] = {}
    for weight in (0.0, 0.75):
        settings = make_settings(tmp_path / str(weight), encoder="none", popularity_weight=weight)
        with Engine(settings, tokenizer=tokenizer) as engine:
            engine.upsert_experts([generalist, *specialists])
            engine.add_demands(demands)
            engine.refresh_bank()
            assert engine.bank_is_fresh()
            tops = [[m.expert.id for m in engine.match(d.title, top_k=2)] for d in demands]
            # the specialist stays first either way
            assert all(t[0] == f"S{i}" for i, t in enumerate(tops)), tops
            listed[weight] = sum("G" in t for t in tops)
    assert listed[0.0] >= 4, listed  # without the bank the generalist is second on half the lists
    assert listed[0.75] <= 1, listed


def test_a_stale_bank_is_recomputed_when_the_demands_change(tmp_path, tokenizer) -> None:
    with Engine(make_settings(tmp_path), tokenizer=tokenizer) as engine:
        engine.load_demo()
        engine.ensure_index()
        assert engine.bank_is_fresh() and engine.store.expert_popularity()
        engine.add_demands([Demand(id="NEW", title="锂电池BMS均衡")])
        assert not engine.bank_is_fresh()
        engine.match("保温杯")  # a small bank is brought up to date before the match
        assert engine.bank_is_fresh()


def test_a_bank_refresh_told_to_stop_saves_nothing_and_the_next_one_finishes(tmp_path, tokenizer) -> None:
    # The server's background thread refreshes the bank; a shutdown must not wait for 500 encodings.
    import threading

    with Engine(make_settings(tmp_path), tokenizer=tokenizer) as engine:
        engine.load_demo()
        engine.ensure_index()
        before = engine.store.expert_popularity()
        engine.add_demands([Demand(id=f"NEW{i}", title=f"第{i}条新需求：锂电池BMS均衡与热失控预警") for i in range(5)])
        stop = threading.Event()
        seen: list[int] = []

        def progress(done: int, total: int) -> None:
            seen.append(done)
            if done == 3:
                stop.set()

        assert engine.refresh_bank(progress=progress, stop=stop) == 0
        assert seen == [1, 2, 3]  # it stopped before the fourth demand
        assert not engine.bank_is_fresh()
        assert engine.store.expert_popularity() == before

        # told to stop once every vector is encoded: it does not go on to score the bank
        def late(done: int, total: int) -> None:
            seen.append(done)
            if done == total // 2:
                stop.set()

        stop.clear()
        seen.clear()
        assert engine.refresh_bank(progress=late, stop=stop) == 0
        assert seen[-1] == len(engine.store.recent_demand_texts(engine.settings.bank_size))
        assert not engine.bank_is_fresh() and engine.store.expert_popularity() == before
        assert engine.refresh_bank() == len(engine.store.recent_demand_texts(engine.settings.bank_size))
        assert engine.bank_is_fresh()


def test_the_bank_reaches_the_query_as_a_shift_of_its_dense_vector(tmp_path, tokenizer) -> None:
    with Engine(make_settings(tmp_path), tokenizer=tokenizer) as engine:
        engine.load_demo()
        index = engine.ensure_index().index
        texts = [t for _, t, _ in engine.store.recent_demand_texts(500)]
        vectors = np.stack([engine.query_vector(t) for t in texts])
        expected = 0.75 * np.stack([index.dense_.centred(v) for v in vectors]).mean(axis=0)
        assert index.dense_shift_ is not None and np.allclose(index.dense_shift_, expected, atol=1e-5)


def test_a_store_without_demands_has_no_bank(tmp_path, tokenizer) -> None:
    with Engine(Settings(db=tmp_path / "m.db", encoder="none"), tokenizer=tokenizer,
                store=Store(tmp_path / "m.db")) as engine:
        engine.upsert_experts([ENGINEER, *OTHERS])
        engine.ensure_index()
        assert engine.store.expert_popularity() == {}
        assert [m.expert.id for m in engine.match("铝合金压铸件气孔", top_k=1)] == ["L"]


def test_query_tokens_unknown_to_every_signal_still_give_a_query(tokenizer) -> None:
    q = Query.build("xyzzy", tokenizer)
    assert q.weights == {"xyzzy": 1.0}
