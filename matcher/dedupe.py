"""Finding and merging the same expert imported twice (different years, departments, spellings).

Two records are the same person when their names are equal after normalisation (NFKC, traditional
-> simplified, spaces and middle dots folded) and one of these holds, strongest first:

  1. the same phone number (digits only, at least 7) or the same e-mail address;
  2. the same institution after canonicalisation: brackets and punctuation dropped, company
     suffixes unified (股份有限公司 / 有限责任公司 -> 有限公司), and abbreviations expanded from
     `INSTITUTION_ALIASES` (浙大 -> 浙江大学, 中科院 -> 中国科学院 …);
  3. one institution is a part of the other: the shorter is a whole name (it ends in 大学, 学院,
     研究所, 实验室 … ) and a prefix of the longer (浙江大学 / 浙江大学机械工程学院);
  4. both have the same root institution (the name up to its first 大学/学院/研究院 … ) and the
     sub-unit of one abbreviates the other's, its characters in order (宁波材料所 /
     宁波材料技术与工程研究所, 材料学院 / 材料科学与工程学院);
  5. rapidfuzz `fuzz.ratio` of the canonical institutions >= `threshold` (default 88, the setting
     `MATCHER_DEDUPE_THRESHOLD`), provided both have the same root institution.
Rules 4 and 5 also need the same numbers in both names (第一医院 is not 第二医院).

Pairs staff actually write, with their `fuzz.ratio` (tests/test_dedupe.py keeps the full table):

    浙江大学 / 浙大机械工程学院                     -     rules 2, 3        -> merged
    中科院宁波材料所 / 中国科学院宁波材料技术与工程研究所  74.1  rule 4   -> merged
    杭州电子科技大学通信工程学院 / …通讯工程学院     92.9  rule 5            -> merged
    浙江省农业科学院 / 浙江省林业科学院            87.5  different roots   -> kept apart
    杭州市农业科学研究院 / 杭州市林业科学研究院     90.0  different roots   -> kept apart
    温州医科大学附属第一医院 / …附属第二医院        91.7  numbers differ    -> kept apart
    浙江理工大学 / 浙江工业大学                    83.3  below threshold   -> kept apart
    浙江大学 / 浙江工业大学                        80.0  below threshold   -> kept apart

A missing institution is never evidence: such rows merge only on a shared phone or e-mail. A merge
keeps one record (the one already stored, else the first row of the file) and folds the other in:
lists (research fields, tags, documents) are united, other fields take the newer non-empty value,
except the institution, which keeps the more specific of two names of one institution. The
planner is pure: `matcher.engine` writes its plan and logs every merge, which can be undone.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from rapidfuzz import fuzz

from matcher.models import Contact, Document, Expert
from matcher.text import normalize

DEFAULT_THRESHOLD = 88.0

# Abbreviation (or former name) -> canonical name. Data, not code: add rows as staff meet them.
# Two-character abbreviations are expanded only alone or before a sub-unit (浙大机械学院), never
# inside a company name (北大荒, 清华同方, 浙大网新).
INSTITUTION_ALIASES: dict[str, str] = {
    # Zhejiang
    "浙大": "浙江大学",
    "浙工大": "浙江工业大学",
    "浙理工": "浙江理工大学",
    "浙工商": "浙江工商大学",
    "浙师大": "浙江师范大学",
    "浙农林": "浙江农林大学",
    "浙中医大": "浙江中医药大学",
    "浙海大": "浙江海洋大学",
    "浙江科技学院": "浙江科技大学",
    "杭电": "杭州电子科技大学",
    "杭师大": "杭州师范大学",
    "宁大": "宁波大学",
    "温大": "温州大学",
    "温医大": "温州医科大学",
    "中国计量学院": "中国计量大学",
    "浙江省农科院": "浙江省农业科学院",
    # independent colleges: their own institutions, not departments of the university
    "浙大城市学院": "浙大城市学院",
    "浙江大学城市学院": "浙大城市学院",
    "浙大宁波理工学院": "浙大宁波理工学院",
    "浙江大学宁波理工学院": "浙大宁波理工学院",
    # national
    "中科院": "中国科学院",
    "中国农科院": "中国农业科学院",
    "中物院": "中国工程物理研究院",
    "中国电科": "中国电子科技集团",
    "中电科": "中国电子科技集团",
    "中科大": "中国科学技术大学",
    "清华": "清华大学",
    "北大": "北京大学",
    "复旦": "复旦大学",
    "同济": "同济大学",
    "南大": "南京大学",
    "上交": "上海交通大学",
    "上交大": "上海交通大学",
    "上海交大": "上海交通大学",
    "西交大": "西安交通大学",
    "西安交大": "西安交通大学",
    "哈工大": "哈尔滨工业大学",
    "华科": "华中科技大学",
    "华中科大": "华中科技大学",
    "北航": "北京航空航天大学",
    "南航": "南京航空航天大学",
    "北理工": "北京理工大学",
    "华南理工": "华南理工大学",
    "大连理工": "大连理工大学",
    "川大": "四川大学",
    "武大": "武汉大学",
    "厦大": "厦门大学",
    "天大": "天津大学",
    "南开": "南开大学",
    "吉大": "吉林大学",
    "苏大": "苏州大学",
    "上大": "上海大学",
}

# Endings that close an institution's name (the root) or a sub-unit of it.
_ORG_SUFFIXES = ("大学", "学院", "科学院", "研究院", "研究所", "医院", "有限公司", "公司", "集团", "研究中心",
                 "实验室", "委员会")
_SUBUNIT = re.compile(r"(学院|系|研究所|研究院|实验室|研究中心|医院|校区|研究室|课题组|分校|学部)$")
_BRACKETS = re.compile(r"[(\[{【《<][^)\]}】》>]*[)\]}】》>]")
_NOISE = re.compile(r"[\s·•・.,，、;；:：\-—_/\\'\"“”‘’!！?？]+")
_NUMBERS = re.compile(r"[0-9]+|[一二三四五六七八九十百零〇两]+")
_DIGITS = re.compile(r"\D")
_ALIASES_LONGEST_FIRST = sorted(INSTITUTION_ALIASES, key=len, reverse=True)


def name_key(name: str) -> str:
    """A person's name as compared: normalised, no spaces (王  五 = 王五), one kind of middle dot."""
    text = normalize(name or "")
    text = re.sub(r"[·•・.．]", "·", text)
    return re.sub(r"\s+", "", text)


def canonical_institution(text: str) -> str:
    """The comparable form of an institution name (see the module docstring, rule 2)."""
    s = normalize(text or "")
    s = _BRACKETS.sub("", s)
    s = _NOISE.sub("", s)
    s = s.replace("股份有限公司", "有限公司").replace("有限责任公司", "有限公司")
    return expand_abbreviation(s)


def expand_abbreviation(text: str) -> str:
    """`text` with a leading abbreviation written out (浙大机械学院 -> 浙江大学机械学院), else as it is."""
    for alias in _ALIASES_LONGEST_FIRST:
        if not text.startswith(alias):
            continue
        rest = text[len(alias) :]
        if len(alias) > 2 or not rest or (len(rest) >= 2 and _SUBUNIT.search(rest)):
            return INSTITUTION_ALIASES[alias] + rest
    return text


def root_institution(canonical: str) -> str:
    """The institution itself, without its sub-units: the name up to its first org ending."""
    ends = [i + len(suf) for suf in _ORG_SUFFIXES if (i := canonical.find(suf)) > 0]
    return canonical[: min(ends)] if ends else ""


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why two records were judged the same person; `score` 0-100."""

    reason: str
    score: float


def institution_evidence(a: str, b: str, threshold: float = DEFAULT_THRESHOLD) -> Evidence | None:
    """Whether two institution names name one institution (rules 2-4), and why."""
    ca, cb = canonical_institution(a), canonical_institution(b)
    if not ca or not cb:
        return None
    if ca == cb:
        plain = normalize(a).replace(" ", "") == normalize(b).replace(" ", "")
        return Evidence("同一单位" if plain else f"同一单位（{ca}）", 100.0)
    short, long_ = sorted((ca, cb), key=len)
    if long_.startswith(short) and (short.endswith(_ORG_SUFFIXES) or _SUBUNIT.search(short)):
        return Evidence(f"{long_}隶属于{short}", 100.0)
    ra, rb = root_institution(ca), root_institution(cb)
    if ((ra or rb) and ra != rb) or sorted(_NUMBERS.findall(ca)) != sorted(_NUMBERS.findall(cb)):
        return None
    ratio = float(fuzz.ratio(ca, cb))
    if ra:
        sub_short, sub_long = sorted((ca[len(ra) :], cb[len(rb) :]), key=len)
        if len(sub_short) >= 2 and _in_order(sub_short, sub_long):
            return Evidence(f"「{sub_short}」是「{sub_long}」的简称（{ra}）", max(ratio, threshold))
    if ratio < threshold:
        return None
    return Evidence(f"单位名称相近（相似度 {ratio:.0f}）", ratio)


def _in_order(short: str, long_: str) -> bool:
    """Whether the characters of `short` appear in `long_` in the same order."""
    chars = iter(long_)
    return all(c in chars for c in short)


def _phone(contact: Contact) -> str:
    digits = _DIGITS.sub("", contact.phone)
    return digits if len(digits) >= 7 else ""


def same_person(a: Expert, b: Expert, threshold: float = DEFAULT_THRESHOLD) -> Evidence | None:
    """Evidence that two records describe one person, or None (see the module docstring)."""
    if not name_key(a.name) or name_key(a.name) != name_key(b.name):
        return None
    pa, pb = _phone(a.contact), _phone(b.contact)
    if pa and pa == pb:
        return Evidence("同一电话", 100.0)
    ea, eb = a.contact.email.strip().lower(), b.contact.email.strip().lower()
    if ea and ea == eb:
        return Evidence("同一邮箱", 100.0)
    return institution_evidence(a.institution, b.institution, threshold)


def _union(first: Iterable[str], second: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for item in [*first, *second]:
        seen.setdefault(normalize(item), item)
    return tuple(seen.values())


def _doc_key(doc: Document) -> tuple[str, str]:
    return doc.kind, normalize(doc.title or doc.abstract[:80])


def merge_experts(kept: Expert, newer: Expert) -> Expert:
    """`newer` folded into `kept` (whose id stays): lists united, newer non-empty values win, and of
    two names of one institution the more specific is kept, abbreviation written out."""
    docs: dict[tuple[str, str], Document] = {}
    for doc in (*kept.documents, *newer.documents):
        docs[_doc_key(doc)] = doc  # a newer version of the same document replaces the older
    institution = newer.institution or kept.institution
    if kept.institution and newer.institution and institution_evidence(kept.institution, newer.institution):
        longer = max((newer.institution, kept.institution), key=lambda s: len(canonical_institution(s)))
        institution = expand_abbreviation(longer.strip())
    return Expert(
        id=kept.id,
        name=kept.name or newer.name,
        title=newer.title or kept.title,
        institution=institution,
        region=newer.region or kept.region,
        research_fields=_union(kept.research_fields, newer.research_fields),
        bio=newer.bio or kept.bio,
        documents=tuple(docs.values()),
        tags=_union(kept.tags, newer.tags),
        contact=Contact(phone=newer.contact.phone or kept.contact.phone,
                        email=newer.contact.email or kept.contact.email),
    )


@dataclass(frozen=True, slots=True)
class Merge:
    """One incoming record folded into another (planned, or done and logged)."""

    kept_id: str
    merged: Expert  # the incoming record that will not be stored on its own
    before: Expert  # the kept record just before this merge
    after: Expert  # the kept record after it
    reason: str
    score: float
    row: int  # the incoming record's row in the file
    kept_row: int | None = None  # the kept record's row when it came from the same file, else None (stored)

    @property
    def changes(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True, slots=True)
class Plan:
    """What an import writes: the final records (new ones and merged-into ones) and the merges."""

    records: tuple[Expert, ...]
    merges: tuple[Merge, ...] = ()
    stored_ids: frozenset[str] = field(default_factory=frozenset)  # records that are already in the store


def plan_import(
    incoming: Sequence[Expert],
    rows: Sequence[int],
    existing: Iterable[Expert],
    *,
    explicit_ids: Sequence[bool] | None = None,
    distinct: Collection[frozenset[str]] = (),
    threshold: float = DEFAULT_THRESHOLD,
    dedupe: bool = True,
) -> Plan:
    """Decide, row by row, whether each incoming record is new, an update, or a duplicate to merge.

    `existing`: stored experts that may be duplicates (at least those sharing a name).
    `explicit_ids[i]`: the row carried its own id. Such rows are the record (an export re-imported,
    another system's key): they replace a stored record of that id and are never merged.
    Rows without an id (staff sheets) get an id from name + institution; a stored record or an
    earlier row with that id, or the same person by `same_person`, absorbs them.
    `distinct`: pairs of ids a merge of which was undone, so never merged again.
    """
    if explicit_ids is None:
        explicit_ids = [False] * len(incoming)
    stored = {e.id: e for e in existing}
    state: dict[str, Expert] = {}
    origin: dict[str, int] = {}
    by_name: dict[str, list[str]] = {}
    for e in stored.values():
        by_name.setdefault(name_key(e.name), []).append(e.id)
    merges: list[Merge] = []

    def current(eid: str) -> Expert:
        return state[eid] if eid in state else stored[eid]

    for e, row, explicit in zip(incoming, rows, explicit_ids, strict=True):
        key = name_key(e.name)
        known = e.id in state or e.id in stored
        if explicit or not dedupe:
            state[e.id] = e
            origin.setdefault(e.id, row)
            if not known:
                by_name.setdefault(key, []).append(e.id)
            continue
        if known:  # the same name and institution as before: a fresh sighting of one record
            state[e.id] = merge_experts(current(e.id), e)
            origin.setdefault(e.id, row)
            continue
        best: tuple[str, Evidence] | None = None
        for cid in by_name.get(key, []):
            if frozenset((cid, e.id)) in distinct:
                continue
            ev = same_person(current(cid), e, threshold)
            if ev is not None and (best is None or ev.score > best[1].score):
                best = (cid, ev)
        if best is None:
            state[e.id] = e
            origin[e.id] = row
            by_name.setdefault(key, []).append(e.id)
            continue
        cid, ev = best
        before = current(cid)
        after = merge_experts(before, e)
        state[cid] = after
        merges.append(Merge(cid, e, before, after, ev.reason, ev.score, row, origin.get(cid)))
    return Plan(records=tuple(state.values()), merges=tuple(merges), stored_ids=frozenset(stored))
