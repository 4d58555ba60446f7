"""The bridging thesaurus: how enterprise owners talk -> what experts write.

Owners describe products and symptoms ("锅底发黑起斑", "电池包容量掉得厉害"); experts write
disciplines and techniques ("不粘涂层失效", "SOH估计"). `corpora/thesaurus.txt` is plain text a
科协 can extend without code, one entry a line:

    [杯壶锅具]
    产品  保温杯|真空杯  =>  真空绝热, 不锈钢深拉伸, 激光焊接:0.8

`KIND` is 产品 (a product or industry -> the processes, materials and disciplines behind it),
症状 (a symptom, defect or wanted outcome -> technical concepts) or 俗称 (an everyday or trade name
-> the technical term). A target's weight, in (0, 1] and 1.0 when omitted, says how directly it
follows from the source. A target may name conditions after `@` (`车架焊接:0.6@车架|焊缝`): it then
applies only to a demand that says one of them (`matcher.understand`). `[section]` headers name
the industry; `#` starts a comment line.

Every line is normalised with `matcher.text.normalize` before it is parsed, so full-width
punctuation (`＝＞`, `｜`, `，`, `：`), traditional characters and upper-case Latin are accepted, and
sources meet demand text normalised the same way. Targets may be separated by `,` or `、`.

`Thesaurus.find(text)` returns the sources in a demand, leftmost-longest and non-overlapping. The
positions where some source's first two characters occur are found with numpy over the text's
code points; at each, one regular expression compiled from the character trie of the sources
starting there is matched (the `re` engine walks the trie in C). A source that begins or ends with
a Latin letter or digit only matches at a word boundary there (`plc` not inside `plcx`). The same
wording may be a source in two sections (漏水 in 泵阀 and in 通用): its occurrence then gives one
`Hit` per entry, all with the same span, in file order.

Expansion is one hop: a target is never looked up again as a source, so entries that chain or form
a cycle (A -> B, B -> A) cannot grow a query (`Thesaurus.expand`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from matcher.errors import InputError
from matcher.text import normalize

if TYPE_CHECKING:
    from matcher.text import ChineseTokenizer

log = logging.getLogger(__name__)

#: The kinds of entry, in the order the file header explains them.
KINDS: tuple[str, ...] = ("产品", "症状", "俗称")

_SECTION = re.compile(r"^\[(.*)\]$")
_TARGET_SPLIT = re.compile(r"[,、]")
# Characters of a Latin word (after normalisation): a source may not start or end inside one.
_WORD_CHAR = re.compile(r"[0-9a-z]")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_WORDLIKE = re.compile(r"[0-9a-z\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True, slots=True)
class Target:
    """A technical concept a source points to; `weight` in (0, 1]: how directly it follows;
    `conditions`: words of which the demand must say one for the target to apply (none: always)."""

    term: str
    weight: float
    conditions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the thesaurus. `line` counts from 1, as an editor shows it."""

    kind: str
    sources: tuple[str, ...]
    targets: tuple[Target, ...]
    section: str
    line: int


@dataclass(frozen=True, slots=True)
class Hit:
    """A source found in a text; `start`/`end` index the *normalised* text (`normalize(text)`)."""

    source: str
    start: int
    end: int
    entry: Entry


@dataclass(frozen=True, slots=True)
class Expansion:
    """A term added by one-hop expansion: its best weight, and the source and entry that gave it."""

    term: str
    weight: float
    source: str
    entry: Entry


class Thesaurus:
    """Parsed thesaurus entries, their sources indexed for `find`, and a quality `check`."""

    def __init__(self, entries: Sequence[Entry] = (), *, name: str = "thesaurus.txt") -> None:
        self.name = name
        self._entries = tuple(entries)
        by_source: dict[str, list[Entry]] = {}
        for entry in self._entries:
            for source in entry.sources:
                found = by_source.setdefault(source, [])
                # A line repeated in the same section adds nothing to what a match returns.
                same = (e for e in found if e.section == entry.section)
                if not any(set(e.targets) == set(entry.targets) for e in same):
                    found.append(entry)
        self._by_source = {source: tuple(found) for source, found in by_source.items()}
        self._starts = _trie_patterns(self._by_source)
        # Sorted code points of the sources' first two characters (21 bits each), for _candidates.
        pairs = {(ord(key[0]) << 21) | ord(key[1]) for key in self._starts if len(key) == 2}
        self._pairs = np.array(sorted(pairs), dtype=np.uint64)
        self._singles = np.array(sorted(ord(key) for key in self._starts if len(key) == 1), dtype=np.uint64)

    # -- reading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path | str) -> Thesaurus:
        """Read a thesaurus file; a missing file gives an empty thesaurus (expansion is then off)."""
        path = Path(path)
        if not path.exists():
            log.info("no thesaurus at %s: demand expansion by thesaurus is off", path)
            return cls(name=path.name)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{path.name}: 不是 UTF-8 编码的文本（第 {exc.start} 字节附近），请另存为 UTF-8"
            ) from exc
        return cls.parse(text, name=path.name)

    @classmethod
    def parse(cls, text: str, *, name: str = "thesaurus.txt") -> Thesaurus:
        """Parse thesaurus text; a malformed line raises `InputError` naming `name` and its line."""
        entries: list[Entry] = []
        section: str | None = None
        # (section, source) -> the entry that first gave it, to catch contradictory duplicates.
        seen: dict[tuple[str, str], Entry] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = normalize(raw)
            if not line or line.startswith("#"):
                continue
            where = f"{name} 第{number}行"
            header = _SECTION.match(line)
            if header:
                section = header.group(1).strip()
                if not section:
                    raise InputError(f"{where}: 节名为空，应写成 [行业名]")
                continue
            entry = _parse_entry(line, number, section, where)
            for source in entry.sources:
                first = seen.setdefault((entry.section, source), entry)
                if first is not entry and set(first.targets) != set(entry.targets):
                    raise InputError(
                        f"{where}: 来源「{source}」在第{first.line}行和第{number}行"
                        f"（同一节 [{entry.section}]）对应不同的目标；请合并成一行"
                    )
            entries.append(entry)
        return cls(entries, name=name)

    # -- what it holds -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Thesaurus({self.name!r}, {len(self)} entries, {len(self._by_source)} sources)"

    def entries(self) -> tuple[Entry, ...]:
        return self._entries

    def sections(self) -> dict[str, int]:
        """Entries per section, sections in the order they first appear in the file."""
        counts: dict[str, int] = {}
        for entry in self._entries:
            counts[entry.section] = counts.get(entry.section, 0) + 1
        return counts

    def sources(self) -> tuple[str, ...]:
        """Every distinct source, normalised."""
        return tuple(self._by_source)

    # -- use -----------------------------------------------------------------------------------
    def find(self, text: str, *, normalized: bool = False) -> list[Hit]:
        """Sources occurring in `text`: leftmost-longest, non-overlapping, in text order.

        `text` is normalised first unless `normalized` says it already is; spans index the
        normalised text.
        """
        if not self._starts:
            return []
        norm = text if normalized else normalize(text)
        probe, by_source, singles = self._starts.get, self._by_source, self._singles
        hits: list[Hit] = []
        done = 0
        for i in self._candidates(norm):
            if i < done:  # inside the previous match
                continue
            pattern = probe(norm[i : i + 2])
            m = pattern.match(norm, i) if pattern is not None else None
            if m is None and singles.size:
                pattern = probe(norm[i])
                m = pattern.match(norm, i) if pattern is not None else None
            if m is None:
                continue
            done = m.end()
            source = norm[i:done]
            for entry in by_source[source]:
                hits.append(Hit(source, i, done, entry))
        return hits

    def _candidates(self, norm: str) -> list[int]:
        """Positions of `norm` where some source's first two characters (or its one) occur.

        Vectorised: a Python loop over every character of a 2,000-character demand costs more
        than everything else `find` does.
        """
        codes = np.frombuffer(norm.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        found = np.zeros(len(codes), dtype=bool)
        pairs = self._pairs
        if len(codes) > 1 and pairs.size:
            keys = (codes[:-1] << np.uint64(21)) | codes[1:]
            at = np.minimum(np.searchsorted(pairs, keys), pairs.size - 1)
            found[:-1] = pairs[at] == keys
        if self._singles.size:
            found |= np.isin(codes, self._singles)
        return np.flatnonzero(found).tolist()

    def expand(self, text: str) -> list[Expansion]:
        """One-hop expansion of `text`: each target of each hit once, with its highest weight.

        Targets are not looked up again, so chains and cycles stop after one step. A target that
        the text itself contains is still listed: the caller merges expansions with the demand's
        own words, whose weight should stay above any expansion's.
        """
        best: dict[str, Expansion] = {}
        for hit in self.find(text):
            for target in hit.entry.targets:
                old = best.get(target.term)
                if old is None or target.weight > old.weight:
                    best[target.term] = Expansion(target.term, target.weight, hit.source, hit.entry)
        return list(best.values())

    # -- quality -------------------------------------------------------------------------------
    def check(self, tokenizer: ChineseTokenizer, generic: frozenset[str] = frozenset()) -> list[str]:
        """Human-readable problems of the entries, `[]` when clean.

        A target is a problem when the tokenizer makes nothing of it, only stopwords or only
        generic words (`corpora/generic_terms.txt`): it could not match, or would only add noise.
        It is also a problem when one of its Chinese tokens is in neither jieba's dictionary nor
        the domain dictionary: jieba's HMM invented that fragment, and expert texts are not
        reliably segmented into it. (Latin tokens are not looked up: they are the text as
        written.) A source is a problem when it is one of its own targets, or a single character,
        which would match inside unrelated words.
        """
        known = known_words(tokenizer)
        segment = tokenizer._ensure().lcut
        verdicts: dict[str, str | None] = {}
        problems: list[str] = []
        for entry in self._entries:
            where = f"{self.name} 第{entry.line}行 [{entry.section}]"
            terms = {t.term for t in entry.targets}
            for source in entry.sources:
                if len(source) < 2:
                    problems.append(f"{where}: 来源「{source}」只有一个字符，会匹配到无关的词里")
                if source in terms:
                    problems.append(f"{where}: 来源「{source}」也是它自己的目标")
            for target in entry.targets:
                if target.term not in verdicts:
                    verdicts[target.term] = _target_problem(target.term, tokenizer, segment, known, generic)
                verdict = verdicts[target.term]
                if verdict:
                    problems.append(f"{where}: 目标「{target.term}」{verdict}")
        return problems


def known_words(tokenizer: ChineseTokenizer) -> Callable[[str], bool]:
    """Whether a word is in the tokenizer's dictionary: jieba's own plus the domain dictionary.

    jieba keeps every prefix of every word in `FREQ` with frequency 0; only a positive frequency
    is a word.
    """
    freq = tokenizer._ensure().FREQ
    return lambda word: freq.get(word, 0) > 0


def _target_problem(
    term: str,
    tokenizer: ChineseTokenizer,
    segment: Callable[..., list[str]],
    known: Callable[[str], bool],
    generic: frozenset[str],
) -> str | None:
    pieces = [p for p in segment(term, HMM=tokenizer.hmm) if _WORDLIKE.search(p)]
    if not pieces:
        return "分不出任何词"
    tokens = tokenizer.tokenize(term, normalized=True)
    if not tokens:
        return f"只含停用词（{' / '.join(pieces)}）"
    if all(t in generic for t in tokens):
        return f"只含泛用词（{' / '.join(tokens)}），加进查询只会带来噪声"
    unknown = [t for t in tokens if _CJK.search(t) and not known(t)]
    if unknown:
        return (
            f"切出了词典里没有的片段「{'」「'.join(unknown)}」（{' / '.join(tokens)}）："
            "换一个说法，或把这个词加进 domain_dict.txt"
        )
    return None


def _parse_entry(line: str, number: int, section: str | None, where: str) -> Entry:
    if "=>" not in line:
        raise InputError(f"{where}: 没有 “=>”；格式是  类别  来源|来源  =>  目标:权重, 目标")
    left, right = line.split("=>", 1)
    if "=>" in right:
        raise InputError(f"{where}: “=>” 出现了不止一次")
    head = left.strip().split(" ", 1)
    kind = head[0]
    if kind not in KINDS:
        raise InputError(f"{where}: 未知的类别「{kind}」，应为 {' / '.join(KINDS)} 之一")
    if section is None:
        raise InputError(f"{where}: 条目出现在第一个 [节名] 之前；请先写一行 [行业名]")
    sources: list[str] = []
    for raw in (head[1] if len(head) > 1 else "").split("|"):
        source = raw.strip()
        if not source:
            raise InputError(f"{where}: 来源为空（类别「{kind}」后面应写来源，多个来源用 “|” 分隔）")
        if _TARGET_SPLIT.search(source):
            raise InputError(f"{where}: 来源「{source}」里有逗号或顿号；来源之间用 “|” 分隔")
        if source not in sources:
            sources.append(source)
    if not right.strip():
        raise InputError(f"{where}: “=>” 后面没有目标")
    targets = [_parse_target(raw.strip(), where) for raw in _TARGET_SPLIT.split(right)]
    terms = [t.term for t in targets]
    for term in terms:
        if terms.count(term) > 1:
            raise InputError(f"{where}: 目标「{term}」写了两次")
    return Entry(kind, tuple(sources), tuple(targets), section, number)


def _parse_target(raw: str, where: str) -> Target:
    if not raw:
        raise InputError(f"{where}: 有一个目标为空（检查多余的逗号）")
    conditions: tuple[str, ...] = ()
    if "@" in raw:
        raw, _, cond = raw.partition("@")
        raw = raw.strip()
        conditions = tuple(dict.fromkeys(c.strip() for c in cond.split("|") if c.strip()))
        if not conditions or "@" in cond:
            raise InputError(f"{where}: 目标「{raw}」的条件写法不对；应为 目标:权重@条件词|条件词")
        if not raw:
            raise InputError(f"{where}: 条件「{cond.strip()}」前面没有目标")
    if ":" not in raw:
        return Target(raw, 1.0, conditions)
    term, _, text = raw.rpartition(":")
    term, text = term.strip(), text.strip()
    if not term:
        raise InputError(f"{where}: 权重「{text}」前面没有目标")
    try:
        weight = float(text)
    except ValueError:
        raise InputError(
            f"{where}: 目标「{term}」的权重「{text}」不是数字；应在 (0, 1] 之间，如 0.8"
        ) from None
    if not math.isfinite(weight) or not 0.0 < weight <= 1.0:
        raise InputError(f"{where}: 目标「{term}」的权重 {text} 不在 (0, 1] 之间")
    return Target(term, weight, conditions)


def _trie_patterns(sources: Iterable[str]) -> dict[str, re.Pattern[str]]:
    """For each first two characters (one for a one-character source), a regular expression that
    matches the sources starting with them.

    Each expression is a character trie in which a longer continuation is tried before a source
    ends there, so its match at a position is the longest source whose boundary conditions hold
    (it backtracks to a shorter one when a longer one would end inside a Latin word). One
    expression over all sources would make `re` try every first character's branch at every
    position: 15 ms for 2,000 characters against 5,000 sources, against well under one here.
    """
    groups: dict[str, list[str]] = {}
    for source in sources:
        groups.setdefault(source[:2], []).append(source)
    return {key: _trie_regex(members) for key, members in groups.items()}


def _trie_regex(sources: Sequence[str]) -> re.Pattern[str]:
    end = ""  # a key no character equals: "a source ends here"
    root: dict[str, dict] = {}
    for source in sources:
        node = root
        for ch in source:
            node = node.setdefault(ch, {})
        node[end] = {}

    def emit(node: dict[str, dict], last: str) -> str:
        branches = [re.escape(ch) + emit(child, ch) for ch, child in sorted(node.items()) if ch != end]
        if end in node:
            branches.append("(?![0-9a-z])" if _WORD_CHAR.match(last) else "")
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    # The caller matches at a chosen position; the look-behind still sees the text before it.
    guard = "(?<![0-9a-z])" if _WORD_CHAR.match(sources[0]) else ""
    return re.compile(guard + emit(root, ""))


# -- editing a thesaurus text (the 科协's own file: accepted proposals) --------------------------------
OWN_HEADER = ("# 本会自建词表（金桥 Matcher）：管理员采纳的“学到的关联”写在这里，"
              "格式与 corpora/thesaurus.txt 相同。\n"
              "# 每次修改都保存为新版本（matcher thesaurus versions）；"
              "可导出、编辑后导入（matcher thesaurus import）。\n")


def format_entry(kind: str, sources: Sequence[str], targets: Sequence[Target]) -> str:
    """One thesaurus line: `KIND  SOURCE|SOURCE  =>  TARGET:WEIGHT, TARGET` (weight 1 left out)."""
    shown = ", ".join(t.term if t.weight >= 1.0 else f"{t.term}:{t.weight:g}" for t in targets)
    return f"{kind}  {'|'.join(sources)}  =>  {shown}"


def with_target(text: str, section: str, kind: str, source: str, target: Target) -> str:
    """`text` (a thesaurus file) with `source` -> `target` added under `[section]`: into the line of
    that section naming `source` when there is one (it keeps its kind; the target's weight is
    replaced), else as a new line of `kind` at the end of the section (a new section at the end)."""
    parsed = Thesaurus.parse(text, name="本会词表")
    lines = text.splitlines()
    for entry in parsed.entries():
        if entry.section == section and normalize(source) in entry.sources:
            targets = [t for t in entry.targets if t.term != normalize(target.term)] + [target]
            lines[entry.line - 1] = format_entry(entry.kind, entry.sources, targets)
            return _joined(lines)
    new = format_entry(kind, [source], [target])
    header = next((i for i, ln in enumerate(lines) if _SECTION.match(normalize(ln))
                   and _SECTION.match(normalize(ln)).group(1).strip() == section), None)  # type: ignore[union-attr]
    if header is None:
        gap = [""] if lines and lines[-1].strip() else []
        return _joined([*lines, *gap, f"[{section}]", new])
    end = header + 1
    while end < len(lines) and not _SECTION.match(normalize(lines[end])):
        end += 1
    while end > header + 1 and not lines[end - 1].strip():
        end -= 1
    return _joined([*lines[:end], new, *lines[end:]])


def without_target(text: str, source: str, term: str) -> str:
    """`text` without the target `term` of `source` (in any entry naming that source; an entry left
    with no target, or only this source and no target, goes)."""
    parsed = Thesaurus.parse(text, name="本会词表")
    lines = text.splitlines()
    src, gone = normalize(source), normalize(term)
    for entry in sorted(parsed.entries(), key=lambda e: -e.line):
        if src not in entry.sources or all(t.term != gone for t in entry.targets):
            continue
        targets = [t for t in entry.targets if t.term != gone]
        if targets:
            lines[entry.line - 1] = format_entry(entry.kind, entry.sources, targets)
        else:
            del lines[entry.line - 1]
    return _joined(lines)


def _joined(lines: Sequence[str]) -> str:
    return "\n".join(lines).rstrip("\n") + "\n"
