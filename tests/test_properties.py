"""Property tests (hypothesis) for normalisation and tokenisation, on any Unicode a user can paste.

Strings are drawn from every code point (lone surrogates from broken decoders included), with extra
weight on what real input mixes: Han (simplified and traditional, extension planes), full-width
forms, Latin technical terms, emoji and ZWJ sequences, control and zero-width characters, combining
marks and other scripts. Oversized text is refused by the engine before tokenising; the tokenizer
itself stays linear on huge input (jieba's HMM was quadratic on long unsegmentable runs).
"""

from __future__ import annotations

import pickle
import re
import time
import unicodedata

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from matcher.config import DEFAULT_CORPORA, Settings
from matcher.engine import Engine
from matcher.errors import InputError
from matcher.store import Store
from matcher.text import _CONTROL, _MAX_RUN, ChineseTokenizer, normalize, read_jieba_dict

PIECES = [
    "電動工具與鋰電池", "碳化矽功率器件", "後臺乾燥", "程序设计", "SiC", "PLC", "Li-ion", "NB-IoT", "5G",
    "304不锈钢", "ＰＬＣ控制柜", "２０２４年", "．", "－", "-", ".", "/", "_", "#", "+", "c++", "C#",
    " ", "\u3000", "\t", "\n", "\r\n", "İ", "ß", "ﬁ", "Ⅻ", "①", "㍿", "Ω", "😀", "👨\u200d👩\u200d👧", "🇨🇳",
    "\u0301", "\u0338", "\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\u200b", "\u200e", "\u2028", "\u2060",
    "\ufeff", "\ud800", "\udfff", "\U000e0001", "\ufffd", "Привет", "مرحبا", "नमस्ते", "안녕", "カタカナ",
    "'); DROP TABLE experts;--", "<script>alert(1)</script>", "%s%n", "${jndi:x}",
]
CHARS = st.one_of(
    st.characters(codec=None, categories=None),  # anything, surrogates included
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),  # CJK unified
    st.characters(min_codepoint=0x3400, max_codepoint=0x4DBF),  # extension A
    st.characters(min_codepoint=0x20000, max_codepoint=0x2A6DF),  # extension B
    st.characters(min_codepoint=0xFF01, max_codepoint=0xFF5E),  # full-width ASCII
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),  # emoji
    st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn"]),  # controls, format, spaces, marks
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),  # ASCII
)
TEXT = st.lists(st.one_of(CHARS, st.sampled_from(PIECES)), max_size=60).map("".join)
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_FULLWIDTH = {c: chr(c + 0xFEE0) for c in range(0x21, 0x7F)}


@pytest.fixture(scope="module")
def tk() -> ChineseTokenizer:
    tokenizer = ChineseTokenizer(DEFAULT_CORPORA / "domain_dict.txt", DEFAULT_CORPORA / "stopwords.txt")
    return tokenizer.initialize()


# -- normalize ------------------------------------------------------------------------------------
@PROPS
@given(TEXT)
@example("\ud800焊接\udfff")
@example("\x00" * 50)
@example("\u3000ＰＬＣ\u3000")
@example("\u0130\u0618")  # lower() put the combining marks out of canonical order
@example("薴")  # OpenCC t2s: 薴 -> 苧, and 苧 -> 苎 on a second pass
def test_normalize_never_raises_and_is_idempotent(s: str) -> None:
    n = normalize(s)
    assert normalize(n) == n
    n.encode("utf-8")  # no lone surrogates survive
    assert n == n.strip()
    assert "  " not in n
    assert all(c == " " or not c.isspace() for c in n), "every white space run folds to one plain space"
    assert not _CONTROL.search(n)
    assert not re.search(r"[A-Z\uFF01-\uFF5E]", n), "Latin is lower-cased, full-width folded"
    assert unicodedata.is_normalized("NFKC", n)


@PROPS
@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40))
def test_full_width_and_case_do_not_matter(s: str) -> None:
    assert normalize(s.translate(_FULLWIDTH)) == normalize(s)
    assert normalize(s.upper()) == normalize(s.lower())


@PROPS
@given(st.text(max_size=30), st.text(max_size=30))
def test_white_space_and_controls_only_separate(a: str, b: str) -> None:
    # However the gap between two pieces is written, it becomes one space (or nothing at the edges).
    gap = normalize(f"{a} \t\u3000\u200b\x00\n {b}")
    assert gap == normalize(f"{a} {b}")


def test_normalize_refuses_bytes_and_none() -> None:
    for bad in (b"\xe7\x84\x8a", None, 17):
        with pytest.raises(TypeError):
            normalize(bad)  # type: ignore[arg-type]


# -- tokenize -------------------------------------------------------------------------------------
@PROPS
@given(TEXT)
@example("👨\u200d👩\u200d👧\u200b\x00")
@example("li-ion电池与NB-IoT模组，ＳｉＣ MOSFET")
@example("'); DROP TABLE experts;--")
def test_tokens_are_clean_terms_of_the_normalised_text(tk: ChineseTokenizer, s: str) -> None:
    n = normalize(s)
    tokens = tk.tokenize(s)
    for t in tokens:
        assert t, "no empty tokens"
        assert t == t.strip() and not any(c.isspace() for c in t)
        assert re.search(r"[0-9a-z\u3400-\u9fff\uf900-\ufaff]", t), f"{t!r} has no letter, digit or Han"
        assert t not in tk.stopword_set
        assert t in n, f"{t!r} is not a piece of the normalised text {n!r}"
    # tokenising normalised text changes nothing, whichever way the caller says it is normalised
    assert tk.tokenize(n) == tokens
    assert tk.tokenize(n, normalized=True) == tokens


@pytest.fixture(scope="module")
def clone(tk: ChineseTokenizer) -> ChineseTokenizer:
    # Unpickling rebuilds jieba in the receiving process (about a second): once, not per example.
    return pickle.loads(pickle.dumps(tk))


@PROPS
@given(TEXT)
def test_a_pickled_tokenizer_segments_the_same(tk: ChineseTokenizer, clone: ChineseTokenizer, s: str) -> None:
    assert clone.tokenize(s) == tk.tokenize(s)


_DOMAIN = [w for w, _, _ in read_jieba_dict(DEFAULT_CORPORA / "domain_dict.txt")]


@PROPS
@given(st.sampled_from(_DOMAIN), TEXT, TEXT, st.sampled_from(["，", "。", "; ", "\n", "、", "！"]))
def test_a_domain_term_between_punctuation_stays_whole(tk: ChineseTokenizer, term: str, before: str,
                                                       after: str, punct: str) -> None:
    assert term in tk.tokenize(f"{before}{punct}{term}{punct}{after}")


# -- oversized text -------------------------------------------------------------------------------
MB = 1_000_000


@pytest.mark.parametrize("shape", ["焊" * MB, "a" * MB, "😀" * (MB // 4), "\x00" * MB, "技术 " * (MB // 3)],
                         ids=["han", "latin", "emoji", "nul", "words"])
def test_the_engine_refuses_a_megabyte_before_tokenising(tmp_path, tk: ChineseTokenizer, shape: str) -> None:
    engine = Engine(Settings(db=tmp_path / "m.db"), tokenizer=tk, store=Store(":memory:"))
    with pytest.raises(InputError, match=r"limit is 20000\. Shorten it"):
        engine.match(shape)
    engine.close()


def test_jieba_never_sees_a_run_longer_than_the_cap(tk: ChineseTokenizer, monkeypatch) -> None:
    seen: list[str] = []
    jb = tk._ensure()
    real = jb.lcut
    monkeypatch.setattr(jb, "lcut", lambda text, **kw: seen.append(text) or real(text, **kw))
    text = "焊" * 1000 + "，" + "a-" * 700 + "。正常的句子，SiC功率器件"
    tokens = tk.tokenize(text)
    longest = max(len(r) for r in re.findall(r"[\u4e00-\u9fd5a-z0-9+#&._%\-]+", seen[0]))
    assert longest <= _MAX_RUN
    assert "sic" in tokens and "功率器件" in tokens, "ordinary text after the long runs is untouched"
    assert max(map(len, tokens)) <= _MAX_RUN


@pytest.mark.parametrize("text", ["焊" * 40_000, "a-" * 20_000, "".join(chr(0x4E00 + (i * 7919) % 20000)
                                                                       for i in range(40_000))],
                         ids=["one-han-char", "latin-joiners", "scattered-han"])
def test_tokenising_twice_the_text_limit_is_fast(tk: ChineseTokenizer, text: str) -> None:
    # Before the run cap, "焊" x 40 000 took over 30 s (quadratic HMM); now about 1.5 s on a busy box.
    start = time.perf_counter()
    tokens = tk.tokenize(text)
    assert time.perf_counter() - start < 12
    assert tokens and all(tokens)


@pytest.mark.parametrize("shape", ["😀\u200b" * (MB // 2), "\x00\x01 \u3000" * (MB // 4), "\ud800" * MB],
                         ids=["emoji-zwsp", "controls-spaces", "lone-surrogates"])
def test_a_megabyte_of_noise_tokenises_to_nothing(tk: ChineseTokenizer, shape: str) -> None:
    assert tk.tokenize(shape) == []
