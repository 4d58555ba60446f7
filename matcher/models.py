"""Typed records that cross module boundaries: experts, demands, and explained matches.

Records are frozen dataclasses: cheap to build in bulk (a province has 100k experts) and safe to
share between threads of the API. `from_dict` accepts the loose shapes found in the wild (the
benchmark's `research_fields` string, keywords as a list or a 、-separated string) and normalises
them; `to_dict` gives the canonical JSON shape used by the store, the exports and the API.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from matcher.errors import InputError

DocumentKind = Literal["paper", "patent", "project", "achievement"]
DOCUMENT_KINDS: tuple[str, ...] = ("paper", "patent", "project", "achievement")
# A demand's life in the staff's working loop. `new` and `matched` are what the nightly batch reads
# and writes; staff move a demand on from there (contacted, connected) and close it.
DEMAND_STATUSES: tuple[str, ...] = ("new", "matched", "contacted", "connected", "closed")
DEMAND_STATUS_LABELS: dict[str, str] = {
    "new": "新需求", "matched": "已推荐", "contacted": "已联系", "connected": "已对接", "closed": "已关闭",
}
# What staff recorded about one expert for one demand.
VERDICTS: tuple[str, ...] = ("accepted", "declined", "contacted", "succeeded", "unsuitable")
VERDICT_LABELS: dict[str, str] = {
    "contacted": "已联系", "accepted": "同意对接", "declined": "婉拒", "unsuitable": "不合适",
    "succeeded": "对接成功",
}
# An expert given one of these for a demand is never recommended for it again.
EXCLUDING_VERDICTS: tuple[str, ...] = ("declined", "unsuitable")
# What a match produced, and the unit each kind is counted in (the figures a 科协 reports).
OUTCOME_KINDS: dict[str, str] = {
    "合作意向": "项", "技术难题解决": "项", "项目合作": "项",
    "授权专利": "件", "人才培养": "人", "经济效益": "万元",
}
OUTCOME_UNITS: tuple[str, ...] = ("件", "项", "人", "万元")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    """True when `text` holds a UTF-16 surrogate on its own (JSON `"\\ud800"`, a broken decoder):
    such a string cannot be encoded as UTF-8, so it can be neither stored, encoded nor exported."""
    return bool(_LONE_SURROGATE.search(text))


def replace_lone_surrogates(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD (so that it can be written anywhere)."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def demand_status(value: str) -> str:
    """A status code from its code or its Chinese label (已推荐 -> matched); InputError otherwise."""
    text = str(value).strip()
    if text in DEMAND_STATUSES:
        return text
    for code, label in DEMAND_STATUS_LABELS.items():
        if text == label:
            return code
    choices = "、".join(DEMAND_STATUS_LABELS[c] for c in DEMAND_STATUSES)
    raise InputError(
        f"状态「{text}」无效，应为：{choices} (status is not one of {', '.join(DEMAND_STATUSES)})"
    )


# Separators staff use inside one spreadsheet cell for a list: 、 ， , ； ; / | and line breaks.
_LIST_SPLIT = re.compile(r"[、，,；;|/\n\r\t]+")


def split_list(value: Any) -> tuple[str, ...]:
    """A list-valued field from a list, a tuple or a separated string; blanks and repeats dropped."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: Iterable[Any] = _LIST_SPLIT.split(value)
    elif isinstance(value, Iterable):
        items = value
    else:
        items = [value]
    out: list[str] = []
    for item in items:
        text = str(item).strip()
        if text and text not in out:
            out.append(text)
    return tuple(out)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _year(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        year = int(str(value).strip()[:4])
    except ValueError:
        return None
    return year if 1900 <= year <= 2100 else None


#: The words a yes/no cell or field may hold (case ignored); blank is no.
YES_WORDS = frozenset({"是", "1", "true", "yes", "y"})
NO_WORDS = frozenset({"否", "0", "false", "no", "n", ""})


def parse_flag(value: Any, what: str = "", *, also_yes: Iterable[str] = ()) -> bool:
    """A yes/no field from a bool, 0/1, or text (是/否, true/false, yes/no, or one of `also_yes`;
    blank is no)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in YES_WORDS or text in also_yes:
        return True
    if text in NO_WORDS:
        return False
    raise InputError(f"{what}「{value}」应为「是」或「否」 (neither yes nor no)")


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True, slots=True)
class Document:
    """One piece of an expert's record: a paper, a patent, a project or an achievement."""

    title: str
    kind: str = "paper"
    keywords: tuple[str, ...] = ()
    abstract: str = ""
    year: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Document:
        kind = _text(data.get("kind")) or "paper"
        if kind not in DOCUMENT_KINDS:
            raise InputError(f"成果类别「{kind}」无效，应为论文、专利、项目或成果 "
                             f"(document kind is not one of {', '.join(DOCUMENT_KINDS)})")
        return cls(
            title=_text(data.get("title")),
            kind=kind,
            keywords=split_list(data.get("keywords")),
            abstract=_text(data.get("abstract")),
            year=_year(data.get("year")),
        )

    def to_dict(self) -> dict[str, Any]:
        # Written out, not dataclasses.asdict (which deep-copies): digesting 100,000 experts' records
        # for the index spent most of its time in asdict.
        return {"title": self.title, "kind": self.kind, "keywords": list(self.keywords),
                "abstract": self.abstract, "year": self.year}


@dataclass(frozen=True, slots=True)
class Contact:
    """Private: shown only to callers holding an API key."""

    phone: str = ""
    email: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Contact:
        data = data or {}
        return cls(phone=_text(data.get("phone")), email=_text(data.get("email")))

    def to_dict(self) -> dict[str, str]:
        return {"phone": self.phone, "email": self.email}


@dataclass(frozen=True, slots=True)
class Expert:
    id: str
    name: str = ""
    title: str = ""
    institution: str = ""
    region: str = ""
    research_fields: tuple[str, ...] = ()
    bio: str = ""
    documents: tuple[Document, ...] = ()
    tags: tuple[str, ...] = ()
    contact: Contact = field(default_factory=Contact)

    @property
    def is_academician(self) -> bool:
        return "院士" in self.title

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Expert:
        expert_id = _text(data.get("id"))
        if not expert_id:
            raise InputError("专家没有编号 (expert has no id)")
        docs = data.get("documents") or ()
        if not isinstance(docs, list | tuple):
            raise InputError(f"专家 {expert_id}：论文、专利、项目应是列表 (documents must be a list)")
        contact = data.get("contact")
        if contact is None and ("phone" in data or "email" in data):
            contact = {"phone": data.get("phone"), "email": data.get("email")}
        return cls(
            id=expert_id,
            name=_text(data.get("name")),
            title=_text(data.get("title")),
            institution=_text(data.get("institution")),
            region=_text(data.get("region")),
            research_fields=split_list(data.get("research_fields")),
            bio=_text(data.get("bio")),
            documents=tuple(Document.from_dict(d) for d in docs),
            tags=split_list(data.get("tags")),
            contact=Contact.from_dict(contact if isinstance(contact, Mapping) else None),
        )

    def to_dict(self, *, include_contact: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "title": self.title,
            "institution": self.institution,
            "region": self.region,
            "research_fields": list(self.research_fields),
            "bio": self.bio,
            "documents": [doc.to_dict() for doc in self.documents],
            "tags": list(self.tags),
        }
        if include_contact:
            d["contact"] = self.contact.to_dict()
        return d


@dataclass(frozen=True, slots=True)
class Demand:
    id: str
    title: str = ""
    description: str = ""
    enterprise: str = ""
    region: str = ""
    industry: str = ""
    keywords: tuple[str, ...] = ()
    created_at: str = ""
    status: str = "new"
    avoid_institutions: tuple[str, ...] = ()
    avoid_experts: tuple[str, ...] = ()
    needs_team: bool = False  # 组团需求: the nightly batch (--team) recommends a team for it
    contact: str = ""  # the enterprise's contact person and phone (联系人), as staff wrote it
    deadline: str = ""  # YYYY-MM-DD, or "" for none (截止日期)
    # The staff's corrections of what the engine understood (the match page's chips): terms left out
    # and terms added. Every ranking of the stored demand applies them, the nightly batch's too.
    exclude_terms: tuple[str, ...] = ()
    extra_terms: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The text that is matched: title, keywords and description."""
        return "\n".join(p for p in (self.title, " ".join(self.keywords), self.description) if p)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Demand:
        demand_id = _text(data.get("id"))
        if not demand_id:
            raise InputError("需求没有编号 (demand has no id)")
        try:
            status = demand_status(_text(data.get("status")) or "new")
        except InputError as exc:
            raise InputError(f"需求 {demand_id}：{exc.message}") from None
        return cls(
            id=demand_id,
            title=_text(data.get("title")),
            description=_text(data.get("description")),
            enterprise=_text(data.get("enterprise")),
            region=_text(data.get("region")),
            industry=_text(data.get("industry")),
            keywords=split_list(data.get("keywords")),
            created_at=_text(data.get("created_at")) or now_iso(),
            status=status,
            avoid_institutions=split_list(data.get("avoid_institutions")),
            avoid_experts=split_list(data.get("avoid_experts")),
            needs_team=parse_flag(data.get("needs_team"), f"需求 {demand_id} 的组团需求"),
            contact=_text(data.get("contact")),
            deadline=_text(data.get("deadline")),
            exclude_terms=split_list(data.get("exclude_terms")),
            extra_terms=split_list(data.get("extra_terms")),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("keywords", "avoid_institutions", "avoid_experts", "exclude_terms", "extra_terms"):
            d[key] = list(d[key])
        return d


@dataclass(frozen=True, slots=True)
class Evidence:
    """A piece of the expert's record that matched: where it is and the text shown to staff."""

    field: str  # e.g. "research_fields", "paper", "patent", "project", "bio"
    text: str
    terms: tuple[str, ...] = ()
    score: float = 0.0
    #: how it matched: "words" (the demand's or an expanded term), "chars" (字面相近: shared
    #: character strings, no whole word), "dense" (语义相近: near in meaning, no shared words)
    match: str = "words"


@dataclass(frozen=True, slots=True)
class Explanation:
    terms: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    signals: Mapping[str, float] = field(default_factory=dict)
    #: matched terms the demand did not say, and the demand's phrase each was added for (腐蚀 <- 生锈)
    expanded: Mapping[str, str] = field(default_factory=dict)
    #: what the strength is computed from (`matcher.strength.FEATURES`: share, coverage, chars, dense)
    measures: Mapping[str, float] = field(default_factory=dict)
    #: the calibrated strength in [0, 1] (`matcher.strength`), None when not explained
    strength: float | None = None
    level: str = ""  # 强, 中 or 弱

    def to_dict(self) -> dict[str, Any]:
        return {
            "terms": list(self.terms),
            "expanded": dict(self.expanded),
            "evidence": [
                {"field": e.field, "text": e.text, "terms": list(e.terms), "score": round(e.score, 4),
                 "match": e.match}
                for e in self.evidence
            ],
            "signals": {k: round(float(v), 4) for k, v in self.signals.items()},
            "strength": None if self.strength is None else round(self.strength, 4),
            "level": self.level,
            "measures": {k: round(float(v), 4) for k, v in self.measures.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Explanation:
        """The inverse of `to_dict` (stored rankings are read back with their strength)."""
        evidence = tuple(
            Evidence(field=e["field"], text=e["text"], terms=tuple(e.get("terms", ())),
                     score=float(e.get("score", 0.0)), match=str(e.get("match", "words")))
            for e in d.get("evidence", ())
        )
        strength = d.get("strength")
        return cls(terms=tuple(d.get("terms", ())), evidence=evidence, signals=dict(d.get("signals", {})),
                   expanded=dict(d.get("expanded", {})), measures=dict(d.get("measures", {})),
                   strength=None if strength is None else float(strength), level=str(d.get("level", "")))


@dataclass(frozen=True, slots=True)
class Match:
    rank: int
    expert: Expert
    score: float
    explanation: Explanation

    @property
    def expert_id(self) -> str:
        return self.expert.id

    @property
    def strength(self) -> float | None:
        """The calibrated strength in [0, 1] (`matcher.strength`); None when not explained."""
        return self.explanation.strength

    @property
    def level(self) -> str:
        """强, 中 or 弱 (`matcher.strength`); "" when not explained."""
        return self.explanation.level

    def to_dict(self, *, include_contact: bool = False) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "expert_id": self.expert.id,
            "name": self.expert.name,
            "title": self.expert.title,
            "institution": self.expert.institution,
            "region": self.expert.region,
            "strength": None if self.strength is None else round(self.strength, 4),
            "level": self.level,
            "score": round(self.score, 6),
            "explanation": self.explanation.to_dict(),
            **({"contact": self.expert.contact.to_dict()} if include_contact else {}),
        }


def expert_digest(expert: Expert) -> str:
    """A fingerprint of everything in the record (contact included: matches carry the record).
    The store keeps it beside each row, so the index can tell what changed without reading records."""
    text = json.dumps(expert.to_dict(include_contact=True), ensure_ascii=False, sort_keys=True)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]
