"""The demand-understanding stage: owners' words bridged to experts' vocabulary, visibly and
editably; expansions always weigh less than the demand's own words; one hop, whatever the entries."""

from __future__ import annotations

import json

import pytest

from matcher.config import DEFAULT_CORPORA
from matcher.engine import Engine
from matcher.text import normalize
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
        assert q.weights[term] < floor and normalize(origin) in normalize(text)
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
    # a target the demand says itself is its own word, not an addition
    assert {e.term for e in u2.expanded} == {"电化学腐蚀", "涂层附着力"}


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
    assert any("BMS" in m.explanation.terms for m in ranked.matches)  # shown as staff wrote it


def test_the_understanding_is_a_small_typed_result(demo_engine: Engine) -> None:
    d = demo_engine.understand(POT).to_dict()
    assert set(d) == {"terms", "expanded", "synonyms", "products", "symptoms", "excluded", "extra"}
    assert all(set(t) == {"term", "weight", "kind"} for t in d["terms"])
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


# -- terms worth a weight (issue 24) ---------------------------------------------------------------
COOKWARE = "我们厂的不锈钢炒锅用了半年就起皮掉渣，客户投诉多，想找专家看看涂层怎么改进"


def owner_voice_texts() -> list[str]:
    lines = (DEFAULT_CORPORA / "owner_voice.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines]


def test_the_cookware_demand_is_understood_as_its_substance(demo_engine: Engine) -> None:
    u = demo_engine.understand(COOKWARE)
    content = [t.term for t in u.terms if t.kind == "content"]
    # the symptoms stay whole, as the thesaurus knows them, and the product and material are there
    assert {"不锈钢", "炒锅", "涂层", "起皮", "掉渣"} <= set(content)
    # fillers are gone; single characters and generic words are weighed low, never full
    terms = {t.term: t for t in u.terms}
    assert not {"半年", "看看", "找", "想"} & set(terms)
    for ch in ("厂", "多", "起", "皮", "掉", "渣"):
        assert ch not in terms or (terms[ch].kind != "content" and terms[ch].weight < 1.0)
    assert all(terms[w].weight == 1.0 for w in ("不锈钢", "炒锅", "起皮", "掉渣"))
    # 起皮 is one term; the ranking still reads its characters' words at their own (low) weights
    peel = terms["起皮"]
    assert {p for p, _ in peel.parts} == {"起", "皮"} and all(w < 1.0 for _, w in peel.parts)
    # the synonym table's English word is read by the ranking but not shown as the demand's word
    q = demo_engine.query(COOKWARE, understanding=u)
    assert "stainless" in q.weights and "stainless" not in terms
    d = u.to_dict()
    assert "stainless" not in {t["term"] for t in d["terms"]} | {s["term"] for s in d["synonyms"]}


@pytest.mark.parametrize("text", [*demo_demand_texts(), *owner_voice_texts()])
def test_no_full_weight_single_character_outside_the_content_list(demo_engine: Engine, text: str) -> None:
    from matcher.understand import read_words

    chars = read_words(DEFAULT_CORPORA / "content_chars.txt")
    fillers = read_words(DEFAULT_CORPORA / "filler_terms.txt")
    for t in demo_engine.understand(text).terms:
        if t.weight >= 1.0:
            assert len(t.term) > 1 or t.term in chars or t.term.isdigit(), (text, t)
        assert t.term not in fillers


def test_latin_terms_are_shown_as_written_and_matched_folded(demo_engine: Engine) -> None:
    text = "SiC器件和BMS老是报警，想做8D分析"
    u = demo_engine.understand(text)
    shown = {t.term: t.label for t in u.terms}
    assert shown["sic"] == "SiC" and shown["bms"] == "BMS" and shown["8d"] == "8D"
    q = demo_engine.query(text, understanding=u)
    assert {"sic", "bms"} <= set(q.weights)  # matched case-folded
    matches = demo_engine.match(text, top_k=5)
    cited = {t for m in matches for t in m.explanation.terms}
    assert cited & {"SiC", "BMS"} and not cited & {"sic", "bms"}
    # a term the corpora spell with capitals is shown so even when the demand writes it in lower case
    assert {t.term: t.label for t in demo_engine.understand("bms均衡").terms}["bms"] == "BMS"


def test_explanations_never_cite_a_generic_word(demo_engine: Engine) -> None:
    generic = demo_engine.generic_terms
    for m in demo_engine.match(COOKWARE, top_k=10):
        assert not {normalize(t) for t in m.explanation.terms} & (generic | {"厂", "多", "找"})
        for ev in m.explanation.evidence:
            assert not {normalize(t) for t in ev.terms} & generic


def test_pos_tags_come_from_our_own_jieba(tokenizer) -> None:
    import jieba

    before = dict(jieba.dt.FREQ) if jieba.dt.initialized else None
    tagged = tokenizer.tag("锂电池包在高温下容易过热")
    assert [t for t, _ in tagged] == tokenizer.tokenize("锂电池包在高温下容易过热")
    assert dict(tagged)["锂电池包"] == "nz"  # the domain dictionary's tag
    assert (dict(jieba.dt.FREQ) if jieba.dt.initialized else None) == before  # the global one untouched


# -- expansions that fit the context ---------------------------------------------------------------
def test_a_product_word_does_not_pull_in_processes_of_something_else(demo_engine: Engine) -> None:
    text = "我们给电动车厂配套电池包，要做液冷板流道设计和CFD热仿真，电芯温差控制在5度以内"
    u = demo_engine.understand(text)
    added = {e.term: e for e in u.expanded}
    dropped = {e.term for e in u.dropped}
    assert "车架焊接" in dropped and "车架焊接" not in added  # 电动车 alone does not bring welding
    assert "电机控制器" not in added
    # what is kept says why: the demand's words that keep company with it in the experts' texts
    assert added["电池热管理"].support and set(added["电池热管理"].support) <= {t.label for t in u.terms}
    explained = {t for m in demo_engine.match(text, top_k=10) for t in m.explanation.expanded}
    assert "焊接" not in explained


def test_a_thesaurus_condition_decides_without_the_library(tokenizer) -> None:
    th = Thesaurus.parse("[测试]\n产品  电动车 => 轮毂电机, 车架焊接:0.6@车架|焊缝\n")
    und = Understander(tokenizer, th, thesaurus_weight=0.5)
    never = lambda concept, others: {}  # noqa: E731 - a library where nothing keeps company
    with_frame = und.understand("电动车车架焊缝开裂", support=never)
    assert {e.term: e.support for e in with_frame.expanded}["车架焊接"] == ("车架", "焊缝")
    without = und.understand("电动车电池散热不好", support=never)
    assert "车架焊接" not in {e.term for e in without.expanded}
    # a library that cannot judge (None) keeps the product's concepts
    unsure = und.understand("电动车电池散热不好", support=lambda concept, others: None)
    assert "轮毂电机" in {e.term for e in unsure.expanded}


def test_the_word_lists_are_clean() -> None:
    from matcher.text import read_wordlist
    from matcher.understand import read_words

    def words(name: str) -> list[str]:
        lines = (DEFAULT_CORPORA / name).read_text(encoding="utf-8").splitlines()
        return [w for line in lines if not line.startswith("#") for w in line.split()]

    chars, fillers = words("content_chars.txt"), words("filler_terms.txt")
    assert all(len(c) == 1 for c in chars) and len(chars) == len(set(chars))
    assert len(fillers) == len(set(fillers))
    stop = set(read_wordlist(DEFAULT_CORPORA / "stopwords.txt"))
    generic = set(read_wordlist(DEFAULT_CORPORA / "generic_terms.txt"))
    assert not (set(fillers) & (stop | generic)) and not (set(chars) & set(fillers))
    readme = (DEFAULT_CORPORA / "README.md").read_text(encoding="utf-8")
    assert f"{len(read_words(DEFAULT_CORPORA / 'content_chars.txt'))} characters" in readme
    assert f"{len(read_words(DEFAULT_CORPORA / 'filler_terms.txt'))} words" in readme
