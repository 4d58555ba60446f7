"""The bridging thesaurus: the shipped file, golden `find` results, parse errors, one-hop expansion."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matcher.config import DEFAULT_CORPORA
from matcher.errors import InputError
from matcher.text import ChineseTokenizer, normalize, read_wordlist
from matcher.thesaurus import KINDS, Entry, Target, Thesaurus, known_words

SHIPPED = DEFAULT_CORPORA / "thesaurus.txt"
# The industries the issue and the project's context name; each must have its own section.
INDUSTRIES = (
    "通用", "五金工具", "电动工具", "智能门锁", "杯壶锅具", "电动车", "锂电池与储能", "纺织丝绸", "茶叶",
    "竹木", "水产养殖", "泵阀", "轴承", "电梯", "小家电", "医药", "食品", "农业与蚕桑", "汽摩配件", "模具",
    "塑料橡胶", "涂装表面处理", "机械加工", "焊接", "电子电气", "自动化与数字化", "环保与节能", "建材",
)


@pytest.fixture(scope="module")
def shipped() -> Thesaurus:
    return Thesaurus.load(SHIPPED)


def terms_for(th: Thesaurus, text: str) -> set[str]:
    return {target.term for hit in th.find(text) for target in hit.entry.targets}


# -- the shipped file ---------------------------------------------------------------------------
def test_shipped_file_size_and_sections(shipped: Thesaurus) -> None:
    sections = shipped.sections()
    assert len(shipped) >= 1800
    assert sum(sections.values()) == len(shipped)
    assert set(INDUSTRIES) <= set(sections)
    thin = {name: n for name, n in sections.items() if n < 30}
    assert not thin, f"sections with fewer than 30 entries: {thin}"
    # Each listed industry has entries for its products and for its symptoms.
    for name in INDUSTRIES[1:]:
        kinds = {e.kind for e in shipped.entries() if e.section == name}
        assert {"产品", "症状"} <= kinds, name


def test_shipped_file_passes_check(shipped: Thesaurus, tokenizer: ChineseTokenizer) -> None:
    generic = frozenset(read_wordlist(DEFAULT_CORPORA / "generic_terms.txt"))
    assert shipped.check(tokenizer, generic) == []


def test_shipped_entries_are_well_formed(shipped: Thesaurus) -> None:
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    for e in shipped.entries():
        assert e.kind in KINDS
        assert 2 <= len(e.targets) <= 6, f"line {e.line}: {len(e.targets)} targets"
        weights = [t.weight for t in e.targets]
        assert all(0.0 < w <= 1.0 for w in weights)
        assert weights[0] == max(weights), f"line {e.line}: the most direct target comes first"
        assert e.sources[0] in normalize(lines[e.line - 1]), "Entry.line points at its own line"


def test_shipped_file_is_plain_utf8_cc0() -> None:
    raw = SHIPPED.read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")
    assert "CC0-1.0" in raw.decode("utf-8").splitlines()[0]


@pytest.mark.parametrize(
    "text,expected",
    [
        # The issue's own examples: the owner's words reach the expert's vocabulary.
        ("我们做不锈钢保温杯", {"真空绝热", "不锈钢深拉伸", "激光焊接"}),
        ("产品放在仓库里生锈", {"腐蚀", "防腐涂层", "盐雾试验"}),
        ("零件放一段时间就变形", {"翘曲", "残余应力"}),
        ("电池包用一年容量掉得厉害", {"容量衰减", "SOH", "电池一致性"}),
        ("设备噪音大，客户投诉", {"振动与噪声控制", "降噪", "失效分析"}),
        ("锅底用久了发黑起斑、涂层一块块掉", {"涂层失效", "不粘涂层", "涂层附着力"}),
        ("产品出口盐雾过不了", {"盐雾试验", "耐蚀镀层"}),
        ("车间招不到工人", {"机器换人", "工业机器人"}),
        ("塘里鱼浮头", {"溶解氧"}),
        ("ＰＬＣ老是死机", {"可编程逻辑控制器"}),  # full-width Latin
        ("電池鼓包", {"产气"}),  # traditional characters
    ],
)
def test_shipped_bridges_golden(shipped: Thesaurus, text: str, expected: set[str]) -> None:
    found = {normalize(t) for t in terms_for(shipped, text)}
    assert {normalize(t) for t in expected} <= found


def test_shipped_sources_do_not_fire_inside_unrelated_words(shipped: Thesaurus) -> None:
    # Common words of demand forms that contain a shorter industry word.
    assert not shipped.find("我们是行业龙头企业，负责项目申报和标准制定之外的日常工作")
    assert {h.source for h in shipped.find("电解液配方")} == {"电解液"}  # not 电解(抛光)
    assert {h.source for h in shipped.find("温室气体排放")} == {"温室气体"}  # not 温室 (大棚)


def test_load_missing_file_is_empty(tmp_path: Path) -> None:
    th = Thesaurus.load(tmp_path / "nope.txt")
    assert len(th) == 0 and th.find("保温杯生锈") == [] and th.sections() == {}


# -- find: golden results on a small thesaurus ---------------------------------------------------
SMALL = """\
# comment
[五金]
症状  生锈|锈蚀|生锈了吗  =>  腐蚀, 防腐涂层:0.8
产品  保温杯|保温  =>  真空绝热
产品  杯盖子  =>  硅胶密封
俗称  plc|PLC控制  =>  可编程逻辑控制器
俗称  ab|abc  =>  甲, 乙
俗称  304不锈钢|304  =>  奥氏体不锈钢
[通用]
症状  生锈  =>  防锈:0.5
"""


@pytest.fixture(scope="module")
def small() -> Thesaurus:
    return Thesaurus.parse(SMALL, name="small.txt")


def spans(th: Thesaurus, text: str) -> list[tuple[str, int, int, str]]:
    return [(h.source, h.start, h.end, h.entry.section) for h in th.find(text)]


def test_small_parse(small: Thesaurus) -> None:
    assert len(small) == 7
    assert small.sections() == {"五金": 6, "通用": 1}
    first = small.entries()[0]
    targets = (Target("腐蚀", 1.0), Target("防腐涂层", 0.8))
    assert first == Entry("症状", ("生锈", "锈蚀", "生锈了吗"), targets, "五金", 3)
    assert small.entries()[3].sources == ("plc", "plc控制")  # normalised when loaded


def test_find_longest_at_each_position(small: Thesaurus) -> None:
    assert spans(small, "生锈了吗") == [("生锈了吗", 0, 4, "五金")]
    # "生锈" is a source in two sections: one hit per entry, same span, file order.
    assert spans(small, "生锈了") == [("生锈", 0, 2, "五金"), ("生锈", 0, 2, "通用")]


def test_find_leftmost_and_non_overlapping(small: Thesaurus) -> None:
    # 保温杯 starts first and wins; 杯盖子 overlaps it and is not reported.
    assert spans(small, "保温杯盖子") == [("保温杯", 0, 3, "五金")]
    assert spans(small, "保温 杯盖子") == [("保温", 0, 2, "五金"), ("杯盖子", 3, 6, "五金")]
    assert [h.source for h in small.find("锈蚀的保温杯生锈")] == ["锈蚀", "保温杯", "生锈", "生锈"]


def test_find_latin_word_boundaries(small: Thesaurus) -> None:
    assert spans(small, "plcx") == []
    assert spans(small, "aplc") == []
    assert spans(small, "用plc做") == [("plc", 1, 4, "五金")]
    assert spans(small, "PLC控制柜") == [("plc控制", 0, 5, "五金")]
    assert spans(small, "plc-x") == [("plc", 0, 3, "五金")]  # '-' is not part of a word
    # The longer Latin source would end inside a word: back off to the shorter one that fits.
    assert spans(small, "abc d") == [("abc", 0, 3, "五金")]
    assert spans(small, "abcd") == []
    assert spans(small, "ab.c") == [("ab", 0, 2, "五金")]
    assert spans(small, "304不锈钢杯") == [("304不锈钢", 0, 6, "五金")]
    assert spans(small, "3040") == []
    assert spans(small, "sus304") == []


def test_find_full_width_and_traditional(small: Thesaurus) -> None:
    text = "ＰＬＣ控制的保溫杯生鏽了嗎"
    hits = small.find(text)
    assert [h.source for h in hits] == ["plc控制", "保温杯", "生锈了吗"]
    norm = normalize(text)
    assert all(norm[h.start : h.end] == h.source for h in hits)
    assert small.find(norm, normalized=True) == hits


def test_duplicate_line_in_one_section_gives_one_hit() -> None:
    th = Thesaurus.parse("[a]\n症状  漏水  =>  密封, 防水\n症状  渗水|漏水  =>  防水, 密封\n")
    assert len(th) == 2
    assert [h.entry.line for h in th.find("漏水")] == [2]


# -- find against a reference implementation ---------------------------------------------------
def reference_find(sources: set[str], text: str) -> list[tuple[str, int, int]]:
    """Leftmost-longest, non-overlapping, Latin/digit ends only at word boundaries: by brute force."""

    def word(ch: str) -> bool:
        return ch.isascii() and ch.isalnum()

    out, i = [], 0
    while i < len(text):
        best = None
        for s in sources:
            j = i + len(s)
            if not text.startswith(s, i):
                continue
            if word(s[0]) and i > 0 and word(text[i - 1]):
                continue
            if word(s[-1]) and j < len(text) and word(text[j]):
                continue
            if best is None or len(s) > len(best):
                best = s
        if best is None:
            i += 1
        else:
            out.append((best, i, i + len(best)))
            i += len(best)
    return out


ALPHABET = st.sampled_from(list("ab1-保温杯锈"))


SOURCES = st.sets(st.text(ALPHABET, min_size=1, max_size=4), min_size=1, max_size=12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SOURCES, st.text(ALPHABET, max_size=40))
def test_find_matches_reference(sources: set[str], text: str) -> None:
    targets = (Target("x", 1.0), Target("y", 0.5))
    th = Thesaurus([Entry("症状", (s,), targets, "s", n) for n, s in enumerate(sources, 1)])
    found = [(h.source, h.start, h.end) for h in th.find(text, normalized=True)]
    assert found == reference_find(sources, text)


# -- malformed lines ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body,line,message",
    [
        ("症状  生锈  腐蚀", 2, "=>"),
        ("毛病  生锈  =>  腐蚀", 2, "未知的类别「毛病」"),
        ("症状  =>  腐蚀", 2, "来源为空"),
        ("症状  生锈||锈蚀  =>  腐蚀", 2, "来源为空"),
        ("症状  生锈，锈蚀  =>  腐蚀", 2, "来源之间用"),
        ("症状  生锈  =>  ", 2, "没有目标"),
        ("症状  生锈  =>  腐蚀, , 防锈", 2, "目标为空"),
        ("症状  生锈  =>  腐蚀,", 2, "目标为空"),
        ("症状  生锈  =>  腐蚀:高", 2, "不是数字"),
        ("症状  生锈  =>  腐蚀:0", 2, "不在 (0, 1]"),
        ("症状  生锈  =>  腐蚀:1.5", 2, "不在 (0, 1]"),
        ("症状  生锈  =>  腐蚀:-0.2", 2, "不在 (0, 1]"),
        ("症状  生锈  =>  腐蚀:nan", 2, "不在 (0, 1]"),
        ("症状  生锈  =>  :0.5", 2, "前面没有目标"),
        ("症状  生锈  =>  腐蚀, 腐蚀:0.5", 2, "写了两次"),
        ("症状  生锈  =>  腐蚀 => 防锈", 2, "不止一次"),
        ("[]", 2, "节名为空"),
        # Good lines, a comment and a blank line before the bad one: the error names line 5.
        ("症状  生锈  =>  腐蚀, 防锈\n# 注释\n\n症状  锈蚀  =>  腐蚀:2", 5, "不在 (0, 1]"),
    ],
)
def test_malformed_line_names_file_and_line(body: str, line: int, message: str) -> None:
    text = "[五金]\n" + body + "\n"
    with pytest.raises(InputError) as err:
        Thesaurus.parse(text, name="x.txt")
    assert f"x.txt 第{line}行" in str(err.value)
    assert message in str(err.value)


def test_duplicate_source_error_names_both_lines() -> None:
    text = "[泵阀]\n症状  漏水|渗水  =>  密封, 防水\n\n症状  跑冒|漏水  =>  泄漏检测, 密封\n"
    with pytest.raises(InputError, match=r"来源「漏水」在第2行和第4行（同一节 \[泵阀\]）"):
        Thesaurus.parse(text, name="t.txt")
    # The same source in another section is not a conflict.
    assert len(Thesaurus.parse(text.replace("\n\n", "\n[通用]\n"))) == 2


def test_entry_before_any_section() -> None:
    with pytest.raises(InputError, match=r"t.txt 第1行: 条目出现在第一个 \[节名\] 之前"):
        Thesaurus.parse("症状  生锈  =>  腐蚀, 防锈\n", name="t.txt")


def test_load_refuses_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "gbk.txt"
    path.write_bytes("[五金]\n症状  生锈  =>  腐蚀, 防锈\n".encode("gbk"))
    with pytest.raises(InputError, match="gbk.txt: 不是 UTF-8"):
        Thesaurus.load(path)


def test_full_width_punctuation_is_accepted() -> None:
    th = Thesaurus.parse("［五金］\n症狀　生鏽｜銹蝕　＝＞　腐蝕、防腐塗層：０．８\n")
    (entry,) = th.entries()
    assert entry.section == "五金" and entry.kind == "症状"
    assert entry.sources == ("生锈", "锈蚀")
    assert entry.targets == (Target("腐蚀", 1.0), Target("防腐涂层", 0.8))


# -- one-hop expansion -------------------------------------------------------------------------
def test_cycle_parses_and_expansion_is_one_hop() -> None:
    th = Thesaurus.parse(
        "[a]\n"
        "症状  漏水  =>  密封, 泄漏:0.6\n"
        "症状  密封  =>  漏水:0.7, 密封圈\n"
        "症状  密封圈  =>  橡胶, 漏水:0.5\n"
    )
    assert len(th) == 3
    one = {e.term: (e.weight, e.source) for e in th.expand("漏水")}
    assert one == {"密封": (1.0, "漏水"), "泄漏": (0.6, "漏水")}  # 密封 is not expanded again
    both = {e.term: e.weight for e in th.expand("漏水后换密封")}
    assert both == {"密封": 1.0, "泄漏": 0.6, "漏水": 0.7, "密封圈": 1.0}


def test_expansion_of_the_shipped_file_is_bounded(shipped: Thesaurus) -> None:
    # Feed every target back in as a demand: one hop gives at most the targets of the sources
    # found, never a second round, however the entries chain.
    every_target = "，".join(sorted({t.term for e in shipped.entries() for t in e.targets}))
    expanded = shipped.expand(every_target)
    reachable = {t.term for h in shipped.find(every_target) for t in h.entry.targets}
    assert {e.term for e in expanded} == reachable
    assert len(expanded) <= len({t.term for e in shipped.entries() for t in e.targets})
    assert all(0.0 < e.weight <= 1.0 for e in expanded)


def test_expansion_keeps_the_best_weight() -> None:
    th = Thesaurus.parse("[a]\n症状  生锈  =>  腐蚀:0.5, 防锈\n[b]\n症状  锈蚀  =>  腐蚀:0.9, 涂层\n")
    best = {e.term: (e.weight, e.source) for e in th.expand("生锈和锈蚀")}
    assert best["腐蚀"] == (0.9, "锈蚀")


# -- check ----------------------------------------------------------------------------------------
def test_check_reports_each_kind_of_problem(tokenizer: ChineseTokenizer) -> None:
    generic = frozenset(read_wordlist(DEFAULT_CORPORA / "generic_terms.txt"))
    th = Thesaurus.parse(
        "[测试]\n"
        "症状  生锈  =>  腐蚀, 的\n"  # 2: stopword only
        "症状  掉漆  =>  涂层附着力, 研究方法\n"  # 3: generic words only
        "症状  异响  =>  噪声, ！！！\n"  # 4: nothing to segment
        "症状  漏水  =>  漏水, 密封\n"  # 5: source is its own target
        "症状  锈  =>  腐蚀, 防腐涂层\n"  # 6: one-character source
        "症状  变形  =>  翘曲, 残余应力\n",  # 7: clean
        name="c.txt",
    )
    problems = th.check(tokenizer, generic)
    assert [p.split(":")[0] for p in problems] == [f"c.txt 第{n}行 [测试]" for n in (2, 3, 4, 5, 6)]
    assert "「的」只含停用词" in problems[0]
    assert "「研究方法」只含泛用词" in problems[1]
    assert "「!!!」分不出任何词" in problems[2]
    assert "来源「漏水」也是它自己的目标" in problems[3]
    assert "来源「锈」只有一个字符" in problems[4]


def test_check_reports_words_jieba_invented() -> None:
    # No domain dictionary: 曳引 (traction, of lifts) is not in jieba's own dictionary, so the HMM
    # makes it up; taught the word, the tokenizer keeps it and the target is clean.
    tok = ChineseTokenizer(user_dict=None, stopwords=DEFAULT_CORPORA / "stopwords.txt").initialize()
    th = Thesaurus.parse("[电梯]\n症状  电梯溜车  =>  曳引系统, 制动器\n")
    assert not known_words(tok)("曳引")
    (problem,) = th.check(tok)
    assert "目标「曳引系统」切出了词典里没有的片段「曳引」" in problem
    tok.add_word("曳引", 5000)
    assert known_words(tok)("曳引")
    assert th.check(tok) == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_find_on_any_text_gives_ordered_spans_of_the_normalised_text(shipped: Thesaurus, text: str) -> None:
    norm = normalize(text)
    hits = shipped.find(text)
    assert all(norm[h.start : h.end] == h.source for h in hits)
    for a, b in zip(hits, hits[1:], strict=False):  # later, or the same span from another section
        assert a.end <= b.start or (a.start, a.end) == (b.start, b.end)
    assert shipped.find(norm, normalized=True) == hits
