"""The demand-understanding stage: owners' words bridged to experts' vocabulary, visibly and
editably; expansions always weigh less than the demand's own words; one hop, whatever the entries."""

from __future__ import annotations

import json

import pytest

from matcher.config import DEFAULT_CORPORA
from matcher.engine import Engine
from matcher.thesaurus import Thesaurus
from matcher.understand import Understander, own_weight_floor

from .conftest import THERMOS

BATTERY = "电池包用一年容量掉得厉害"
POT = "锅底用久了发黑起斑、涂层一块块掉"


def demo_demand_texts() -> list[str]:
    lines = (DEFAULT_CORPORA / "demo" / "demands.jsonl").read_text(encoding="utf-8").splitlines()
    return [t for t in ("\n".join([d["title"], d.get("description", "")]) for d in map(json.loads, lines)) if t.strip()]


def test_a_symptom_points_to_the_concepts_experts_write(demo_engine: Engine) -> None:
    u = demo_engine.understand(BATTERY)
    added = {e.term: e for e in u.expanded}
    assert "容量掉" in u.symptoms or any("容量" in s for s in u.symptoms)
    assert {"容量衰减", "SOH"} <= set(added) or {"容量衰减", "soh"} <= set(added)
    e = added["容量衰减"]
    assert e.source == "thesaurus" and e.origin in BATTERY and e.kind == "症状"
    q = demo_engine.query(BATTERY, understanding=u)
    assert q.origins.get("容量衰减") == e.origin  # the word the query reads, and where it came from
    # the demo's battery experts are found through the added concepts
    top = demo_engine.match(BATTERY, top_k=3)
    assert top and all(m.explanation.expanded for m in top)
    assert {"soh", "健康状态", "容量衰减"} & {t for m in top for t in m.explanation.expanded}


def test_a_product_points_to_its_processes_and_materials(demo_engine: Engine) -> None:
    u = demo_engine.understand(THERMOS)
    assert "保温杯" in u.products
    assert {"真空绝热", "激光焊接"} & {e.term for e in u.expanded}


@pytest.mark.parametrize("text", [BATTERY, POT, THERMOS, *demo_demand_texts()])
def test_expansions_weigh_less_than_the_demands_own_words(demo_engine: Engine, text: str) -> None:
    u = demo_engine.understand(text)
    floor = own_weight_floor(u, demo_engine.tokenizer.tokenize(text), demo_engine.generic_terms)
    assert floor >= 1.0  # a content word the demand says weighs at least 1
    assert all(e.weight < floor for e in u.expanded), (text, floor, [(e.term, e.weight) for e in u.expanded])
    q = demo_engine.query(text, understanding=u)
    for term, origin in q.origins.items():
        assert q.weights[term] < floor and origin in text.lower()
    # the demand's own words keep exactly the weight they had without expansion
    own = {t.term: t.weight for t in u.terms}
    assert all(q.weights[t] == w for t, w in own.items())


def test_entries_that_chain_or_point_back_expand_one_hop(tokenizer) -> None:
    th = Thesaurus.parse("[测试]\n症状  生锈 => 腐蚀, 防腐涂层\n症状  腐蚀 => 生锈, 电化学腐蚀\n"
                         "症状  防腐涂层 => 涂层附着力\n")
    und = Understander(tokenizer, th, thesaurus_weight=0.5)
    u = und.understand("外壳容易生锈")
    assert {e.term for e in u.expanded} == {"腐蚀", "防腐涂层"}  # not 电化学腐蚀, 涂层附着力, 生锈
    q = und.build_query(u)
    assert set(q.origins) <= set(tokenizer.tokenize("腐蚀 防腐涂层"))
    # the same with every entry firing at once: still bounded by one hop of the text's own sources
    u2 = und.understand("生锈 腐蚀 防腐涂层")
    assert {e.term for e in u2.expanded} == {"腐蚀", "防腐涂层", "生锈", "电化学腐蚀", "涂层附着力"}


def test_staff_remove_and_add_terms(demo_engine: Engine) -> None:
    u = demo_engine.understand(BATTERY)
    first = u.expanded[0].term
    fixed = demo_engine.understand(BATTERY, exclude_terms=[first, "电池包"], extra_terms=["一致性", "BMS"])
    assert first not in {e.term for e in fixed.expanded}
    assert "电池包" not in {t.term for t in fixed.terms}
    own = {t.term: t.weight for t in fixed.terms}
    assert own["一致性"] == 1.0 and own["bms"] == 1.0  # normalised, weighed as if the demand said them
    assert fixed.excluded == (first, "电池包") and fixed.extra == ("一致性", "bms")
    q = demo_engine.query(BATTERY, understanding=fixed)
    assert "电池包" not in q.weights and q.weights["bms"] == 1.0
    ranked = demo_engine.analyse(BATTERY, exclude_terms=[first], extra_terms=["BMS"])
    assert ranked.understanding.excluded == (first,)
    assert any("bms" in m.explanation.terms for m in ranked.matches)


def test_the_understanding_is_a_small_typed_result(demo_engine: Engine) -> None:
    d = demo_engine.understand(POT).to_dict()
    assert set(d) == {"terms", "expanded", "products", "symptoms", "excluded", "extra"}
    assert all(set(t) == {"term", "weight"} for t in d["terms"])
    assert d["expanded"] and all({"term", "from", "source", "weight"} <= set(e) for e in d["expanded"])
    assert {e["source"] for e in d["expanded"]} <= {"thesaurus", "corpus", "dense"}


def test_the_thesaurus_can_be_switched_off(tmp_path, tokenizer) -> None:
    from .conftest import make_settings

    with Engine(make_settings(tmp_path, thesaurus_weight=0.0), tokenizer=tokenizer) as engine:
        u = engine.understand(BATTERY)
        assert u.expanded == () and u.terms


def test_corpus_expansion_adds_few_down_weighted_neighbours(tmp_path, tokenizer) -> None:
    from .conftest import make_settings

    with Engine(make_settings(tmp_path, corpus_expansion_weight=0.3, corpus_expansion_terms=3),
                tokenizer=tokenizer) as engine:
        engine.load_demo()
        u = engine.understand("真空层激光焊接")
        corpus = [e for e in u.expanded if e.source == "corpus"]
        assert 0 < len(corpus) <= 3
        assert all(0 < e.weight <= 0.3 and e.origin in {"真空层", "激光焊接", "真空", "激光", "焊接"} for e in corpus)
        # neighbours come from the experts' own texts: every one is a word the index holds
        vocab = engine.ensure_index().index.words_.vocabulary_
        assert all(e.term in vocab for e in corpus)
