"""Normalisation, the own-jieba tokenizer, golden segmentation of domain phrases."""

from __future__ import annotations

import pickle
from pathlib import Path

import jieba
import pytest

from matcher.text import ChineseTokenizer, Synonyms, normalize

GOLDEN = Path(__file__).parent / "golden" / "segmentation.tsv"


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("ＰＬＣ控制柜，２０２４年", "plc控制柜,2024年"),  # full-width -> half-width, Latin lower-cased
        ("電動工具與鋰電池", "电动工具与锂电池"),  # traditional -> simplified
        ("碳化矽功率器件", "碳化硅功率器件"),  # variant OpenCC keeps
        ("  保温杯\t\n 焊接  ", "保温杯 焊接"),  # white space folded
        ("焊接\x00\x07工艺\u200b", "焊接 工艺"),  # control and zero-width characters dropped
        ("SiC MOSFET", "sic mosfet"),
        ("程序设计", "程序设计"),  # simplified text is left alone (no Taiwan-vocabulary rewrite)
        ("", ""),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected
    assert normalize(normalize(raw)) == normalize(raw)


def test_normalize_refuses_non_strings() -> None:
    with pytest.raises(TypeError):
        normalize(b"bytes")  # type: ignore[arg-type]


def load_golden() -> list[tuple[str, list[str]]]:
    rows = []
    for line in GOLDEN.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            phrase, tokens = line.split("\t")
            rows.append((phrase, tokens.split()))
    return rows


def test_golden_file_has_enough_domain_phrases() -> None:
    assert len(load_golden()) >= 40


@pytest.mark.parametrize("phrase,expected", load_golden())
def test_golden_segmentation(tokenizer: ChineseTokenizer, phrase: str, expected: list[str]) -> None:
    assert tokenizer.tokenize(phrase) == expected


def test_mixed_terms_stay_whole(tokenizer: ChineseTokenizer) -> None:
    assert tokenizer.tokenize("SiC功率器件") == ["sic", "功率器件"]
    toks = tokenizer.tokenize("基于5G和PLC的BMS，采用304不锈钢")
    for term in ("5g", "plc", "bms", "304不锈钢"):
        assert term in toks


def test_stopwords_and_punctuation_are_dropped(tokenizer: ChineseTokenizer) -> None:
    toks = tokenizer.tokenize("我司的产品，目前！！急需……")
    assert "的" not in toks and "我司" not in toks
    assert all(t.strip() and t not in "，。！…,.!" for t in toks)
    assert tokenizer.tokenize("   ") == [] and tokenizer.tokenize("，。！") == []


def test_tokenizer_owns_its_jieba(tokenizer: ChineseTokenizer) -> None:
    other = ChineseTokenizer(None, None)
    other.add_word("杯体旋压减薄", 100000)
    assert "杯体旋压减薄" in other.tokenize("杯体旋压减薄工艺")
    assert "杯体旋压减薄" not in tokenizer.tokenize("杯体旋压减薄工艺")
    assert "杯体旋压减薄" not in jieba.dt.FREQ, "the global jieba must stay untouched"


def test_tokenizer_pickles_and_works_after(tokenizer: ChineseTokenizer) -> None:
    clone = pickle.loads(pickle.dumps(tokenizer))
    text = "我司生产不锈钢保温杯，真空层激光焊接合格率低"
    assert clone.tokenize(text) == tokenizer.tokenize(text)


def test_synonyms_groups() -> None:
    syn = Synonyms([["锂离子电池", "锂电", "Li-ion"], ["碳化硅", "SiC"]])
    assert set(syn.equivalents("锂电")) == {"锂离子电池", "li-ion"}
    assert syn.canonical("sic") == "碳化硅"
    assert syn.equivalents("焊接") == ()


def test_shipped_synonyms_load() -> None:
    syn = Synonyms.load()
    assert len(syn) >= 250
    assert "锂离子电池" in syn.equivalents("锂电") or "锂电" in syn.equivalents("锂离子电池")


def test_latin_words_are_not_cut_by_short_dictionary_entries(tokenizer: ChineseTokenizer) -> None:
    # the dictionary has 'sic' and 'ai'; neither may split an English word
    assert tokenizer.tokenize("basic research on SiC") == ["basic", "research", "sic"]
    assert "maintenance" in tokenizer.tokenize("PLC maintenance")
