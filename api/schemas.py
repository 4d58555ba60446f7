"""Request and response shapes of the HTTP API, separate from the library's records.

Requests are validated here (types, ranges); what the library checks itself (an empty or oversized
demand text) is left to it, so the CLI and the API say the same thing. Responses are built from the
library's typed records by the `*_out` helpers; contact details are added only when the caller
holds an API key, and the routes drop unset fields, so a public response has no `contact` key at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Annotated, Any, Literal

from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator

from matcher import validate
from matcher.engine import Understanding
from matcher.models import OUTCOME_KINDS, VERDICT_LABELS, Demand, Expert, Match
from matcher.records import FeedbackEntry, Outcome, Pause
from matcher.reverse import DemandMatch, VisitPlan

MAX_TOP_K = 100
_WORDS = validate.NOT_BLANK_PATTERN  # at least one character `str.strip` leaves (white space spelled out)
_ID = rf"^[^/{validate.SPACE}]+$"  # no slash, no white space
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_day(value: Any) -> Any:
    # pydantic would take 0 or "0" for 1970-01-01 (a Unix time): only YYYY-MM-DD is a date here.
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DAY.match(value):
        raise ValueError("expected a date like 2026-12-31 (YYYY-MM-DD)")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_day)]


def _surrogate_at(value: Any, path: str = "") -> str | None:
    """Where `value` (a JSON body, walked) holds a lone UTF-16 surrogate (`"\\ud800"` in JSON): such
    text cannot be encoded, stored or shown, and reached the encoder as a 500."""
    if isinstance(value, str):
        return path or "body" if _SURROGATE.search(value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _surrogate_at(item, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


class _In(BaseModel):
    # A misspelt field ("topk") should be an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_lone_surrogates(cls, data: Any) -> Any:
        where = _surrogate_at(data)
        if where:
            raise ValueError(f"{where}: 含有无效的字符（孤立的代理项，常见于损坏的复制或编码），"
                             "请检查后重发 (holds a lone surrogate code point, which is not valid text)")
        return data


# -- matching ------------------------------------------------------------------------------------
class FiltersIn(_In):
    region: str = Field("", max_length=100, description="Only experts whose region contains this, e.g. 浙江.")
    title: str = Field(
        "", max_length=100, description="Only experts whose title has one of these: 院士, 教授、研究员."
    )
    exclude_institutions: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Institutions whose experts must not be recommended (回避).",
    )


class MatchIn(_In):
    text: str = Field(
        description="The enterprise's technical problem, as pasted: 1 to 20,000 characters, not all white "
        "space.",
        # Said in the schema, checked by the library (`Engine.check_text`), whose messages the CLI shares.
        json_schema_extra={"pattern": _WORDS, "maxLength": 20_000},
    )
    top_k: int | None = Field(
        None,
        ge=1,
        le=MAX_TOP_K,
        description="How many experts to return (1-100; default 10, setting MATCHER_DEFAULT_TOP_K).",
    )
    filters: FiltersIn = Field(default_factory=FiltersIn)
    exclude_terms: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=100,
        description="Terms staff removed from what the engine understood (the demand's own or added ones).")
    extra_terms: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=100,
        description="Terms staff added, weighed as if the demand had said them.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "text": "我司生产不锈钢保温杯，真空层激光焊接合格率低，寻求焊接工艺改进方案",
                    "top_k": 10,
                    "filters": {"region": "", "title": "", "exclude_institutions": []},
                }
            ]
        },
    )


class ContactOut(BaseModel):
    phone: str = ""
    email: str = ""


class DocumentOut(BaseModel):
    title: str
    kind: str
    keywords: list[str]
    abstract: str
    year: int | None


class ExpertSummary(BaseModel):
    """The public face of an expert in a match list."""

    id: str
    name: str
    title: str
    institution: str
    region: str
    research_fields: list[str]
    contact: ContactOut | None = Field(None, description="Only with an admin key.")


class ExpertOut(ExpertSummary):
    bio: str
    documents: list[DocumentOut]
    tags: list[str]


class EvidenceOut(BaseModel):
    field: str = Field(description="Where: research_fields, bio, paper, patent, project, achievement.")
    text: str
    terms: list[str] = Field(description="The demand's terms (or shared character strings) found in this piece.")
    score: float
    match: Literal["words", "chars", "dense"] = Field(
        "words", description="How it matched: shared words (the demand's or added concepts'), shared character "
        "strings only (字面相近), or nearness in meaning only (语义相近).")


class ExplanationOut(BaseModel):
    terms: list[str] = Field(description="Matched terms, strongest first (never a generic word; Latin terms "
                             "as the demand writes them: SiC, BMS).")
    expanded: dict[str, str] = Field(
        default_factory=dict, description="Matched terms the demand did not say, each with the demand's phrase "
        "the understanding stage added it for (腐蚀 <- 生锈).")
    evidence: list[EvidenceOut]
    signals: dict[str, float] = Field(description="The expert's raw score in each ranking signal.")
    strength: float | None = Field(None, description="The calibrated strength in [0, 1] (see MatchOut).")
    level: str = Field("", description="强, 中 or 弱.")
    measures: dict[str, float] = Field(
        default_factory=dict, description="What the strength is read from: share, gap, crowd, dense, chars, "
        "and coverage (the share of the demand's own content words the expert's record holds).")


class PauseOut(BaseModel):
    until: str = Field(description="The last day of the pause (YYYY-MM-DD).")
    reason: str


Level = Literal["强", "中", "弱", ""]


class MatchOut(BaseModel):
    rank: int
    expert: ExpertSummary
    strength: float | None = Field(
        description="The probability, calibrated on the benchmarks' relevance labels, that staff would judge "
        "this expert relevant: one 0-1 scale on every page, list and export (null: not explained).")
    level: Level = Field(description="强 (strong), 中 (medium) or 弱 (weak), from the strength.")
    score: float = Field(description="The fused ranking score: it orders this demand's experts, but is "
                         "relative to the demand's best (use `strength` to compare across demands).")
    explanation: ExplanationOut
    paused: PauseOut | None = Field(
        None, description="Present when the expert's recommendations are paused (暂停推荐): the nightly "
        "batch leaves them out, live rankings flag them.")


class TermOut(BaseModel):
    term: str = Field(description="As the demand writes it (SiC, not sic).")
    weight: float
    kind: Literal["content", "generic", "minor"] = Field(
        "content", description="content: counts in full; generic (研究, 客户) and minor (single characters "
        "outside corpora/content_chars.txt, function words) are weighed low and never cited as matched.")


class LearnedEvidenceOut(BaseModel):
    demands: int = Field(
        description="Judged demands saying the phrase whose accepted experts held the concept.")
    judged: int = Field(description="Judged demands saying the phrase.")
    accepted: int = Field(description="Accepted experts (over those demands) who hold the concept.")
    declined: int = Field(description="Declined or unsuitable experts (over those demands) who hold it.")


class ExpandedOut(BaseModel):
    term: str = Field(description="A technical concept the demand points to.")
    from_: str = Field(alias="from", description="The demand's phrase it was added for.")
    source: Literal["thesaurus", "corpus", "learned", "dense", "synonym"] = Field(
        description="Where it came from: the thesaurus (corpora/thesaurus.txt and the 科协's own entries), "
        "the experts' own texts, the 科协's own verdicts (learned), the dense model, or "
        "corpora/synonyms.txt.")
    weight: float = Field(description="Its weight in the query (below the demand's own words).")
    kind: str | None = Field(None, description="The thesaurus entry's kind: 产品, 症状 or 俗称.")
    support: list[str] = Field(
        default_factory=list, description="What else in the demand made it fit: its words that keep "
        "company with the concept in the experts' texts, or the thesaurus condition met (empty: a direct "
        "translation).")
    evidence: LearnedEvidenceOut | None = Field(None, description="A learned concept's verdicts.")

    model_config = ConfigDict(populate_by_name=True)


class UnderstandingOut(BaseModel):
    terms: list[TermOut] = Field(description="The demand's own terms and their weights.")
    expanded: list[ExpandedOut] = Field(description="Concepts added to the demand.")
    synonyms: list[ExpandedOut] = Field(
        default_factory=list, description="Synonyms of its words the ranking reads, in the demand's own "
        "script (those in another script are read but not listed).")
    products: list[str] = Field(description="Products and industries recognised in the demand.")
    symptoms: list[str] = Field(description="Symptoms and wanted outcomes recognised in the demand.")
    excluded: list[str] = Field(description="Terms staff removed.")
    extra: list[str] = Field(description="Terms staff added.")


class MatchList(BaseModel):
    data: list[MatchOut]
    count: int
    understanding: UnderstandingOut | None = Field(
        None, description="What the engine understood of the demand (POST /match).")


class ExpertList(BaseModel):
    data: list[ExpertOut]
    count: int = Field(description="How many experts match the search in all (not only this page).")


# -- experts -------------------------------------------------------------------------------------
class DocumentIn(_In):
    title: str = Field(max_length=1000)
    kind: Literal["paper", "patent", "project", "achievement"] = "paper"
    keywords: list[str] = Field(default_factory=list)
    abstract: str = Field("", max_length=20_000)
    year: int | None = Field(None, ge=1900, le=2100)


class ContactIn(_In):
    # `matcher.validate` checks these (in the words an import uses); the schema says the same rules.
    phone: str = Field("", max_length=100, description=f"At least {validate.PHONE_DIGITS} digits (or empty).",
                       json_schema_extra={"pattern": validate.PHONE_PATTERN})
    email: str = Field("", max_length=200, json_schema_extra={"pattern": validate.EMAIL_PATTERN})


class ExpertIn(_In):
    id: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=_ID,
        description="Your id for the expert; generated when left out (POST). On PUT it must match the URL.",
    )
    name: str = Field(min_length=1, max_length=100)
    title: str = Field("", max_length=100, description="职称, e.g. 教授, 研究员, 中国工程院院士.")
    institution: str = Field("", max_length=200)
    region: str = Field("", max_length=100)
    research_fields: list[str] = Field(default_factory=list)
    bio: str = Field("", max_length=20_000)
    documents: list[DocumentIn] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    contact: ContactIn = Field(default_factory=ContactIn)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            # What `matcher.validate` checks (as the import does), said in the schema: something to
            # match the expert on.
            "anyOf": [
                {"required": ["research_fields"],
                 "properties": {"research_fields": {"contains": {"pattern": _WORDS}}}},
                {"required": ["bio"], "properties": {"bio": {"pattern": _WORDS}}},
                {"required": ["documents"], "properties": {"documents": {"minItems": 1}}},
            ],
        },
    )

    def to_expert(self, expert_id: str) -> Expert:
        """The record; `matcher.validate` checks it (a 422 naming the field) as the import would."""
        return validate.check_expert(Expert.from_dict({**self.model_dump(), "id": expert_id}))


class ExpertReplaceIn(ExpertIn):
    """PUT's body: the record without a new id (an id, when sent, must be the URL's: ids never change)."""

    id: str | None = Field(
        None, min_length=1, max_length=100, pattern=_ID, json_schema_extra={"readOnly": True},
        description="Read-only here: leave it out, or send the URL's id. Ids cannot change.",
    )


# -- demands -------------------------------------------------------------------------------------
Keyword = Annotated[str, Field(max_length=50)]
Listed = Annotated[str, Field(max_length=200)]


class DemandIn(_In):
    """A demand. Title, keywords and description are what is matched: at least one of them must hold
    a character that is not white space, and together they stay under MATCHER_MAX_TEXT_CHARS (20,000)
    with these limits (500 + 30 x 50 + 17,000)."""

    id: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=_ID,
        description="Your id for the demand; generated when left out.",
    )
    title: str = Field("", max_length=500)
    description: str = Field(
        "", max_length=17_000, description="The problem; title, keywords and description are matched."
    )
    enterprise: str = Field(
        "", max_length=200, description="The demanding enterprise; its own experts are never recommended."
    )
    region: str = Field("", max_length=100, description="e.g. 浙江省金华市永康市 (province, city, district).")
    industry: str = Field("", max_length=100)
    keywords: list[Keyword] = Field(default_factory=list, max_length=30)
    avoid_institutions: list[Listed] = Field(default_factory=list, max_length=100)
    avoid_experts: list[Listed] = Field(
        default_factory=list, max_length=100, description="Expert ids or names to avoid (回避)."
    )
    needs_team: StrictBool = Field(False, description="组团需求: `matcher batch --team` recommends a team for it.")
    contact: str = Field(
        "", max_length=200, description="The enterprise's contact person and phone (联系人)."
    )
    deadline: str = Field("", max_length=10, json_schema_extra={"pattern": validate.DATE_PATTERN},
                          description="截止日期, YYYY-MM-DD: a day that exists (2026-11-31 is refused).")
    created_at: str = Field("", max_length=40, json_schema_extra={"pattern": validate.DATETIME_PATTERN},
                            description="When the enterprise submitted it (an ISO date or time, a day that "
                            "exists); now when left out.")
    exclude_terms: list[Keyword] = Field(
        default_factory=list,
        max_length=100,
        description="Terms staff removed from what the engine understood; every ranking of it leaves "
        "them out.",
    )
    extra_terms: list[Keyword] = Field(
        default_factory=list, max_length=100,
        description="Terms staff added; every ranking of it weighs them as if the demand said them.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            # What the route checks, said in the schema: some text to match (see the docstring).
            "anyOf": [
                {"required": ["title"], "properties": {"title": {"pattern": _WORDS}}},
                {"required": ["description"], "properties": {"description": {"pattern": _WORDS}}},
                {"required": ["keywords"], "properties": {"keywords": {"contains": {"pattern": _WORDS}}}},
            ],
            "examples": [{
                "title": "不锈钢保温杯真空层激光焊接合格率低",
                "enterprise": "永康市恒创杯业有限公司",
                "description": "我司生产不锈钢保温杯，真空层激光焊接合格率低，寻求焊接工艺改进方案",
                "region": "浙江省金华市永康市",
                "industry": "保温杯",
                "keywords": ["激光焊接"],
            }],
        },
    )

    @model_validator(mode="after")
    def _has_words(self) -> DemandIn:
        if not (self.title.strip() or self.description.strip() or any(k.strip() for k in self.keywords)):
            raise ValueError("title, description and keywords are all empty: give the enterprise's problem "
                             "in at least one of them")
        return self

    def to_demand(self, demand_id: str) -> Demand:
        fields = {**self.model_dump(), "id": demand_id, "status": "new"}
        return validate.check_demand(Demand.from_dict(fields))


DemandStatus = Literal["new", "matched", "contacted", "connected", "closed"]


class DemandOut(BaseModel):
    id: str
    title: str
    description: str
    enterprise: str
    region: str
    industry: str
    keywords: list[str]
    created_at: str
    status: str = Field(
        description="new 新需求, matched 已推荐, contacted 已联系, connected 已对接, closed 已关闭."
    )
    avoid_institutions: list[str]
    avoid_experts: list[str]
    needs_team: bool = Field(description="组团需求: the nightly batch (--team) recommends a team for it.")
    contact: str = Field("", description="The enterprise's contact person and phone (联系人).")
    deadline: str = Field("", description="截止日期 (YYYY-MM-DD), or empty.")
    exclude_terms: list[str] = Field(
        default_factory=list, description="Terms staff left out of its understanding."
    )
    extra_terms: list[str] = Field(
        default_factory=list, description="Terms staff added to its understanding."
    )


class NeedsTeamIn(_In):
    needs_team: StrictBool = Field(description="Whether the demand needs a team (组团需求).")


# -- teams (组团) ----------------------------------------------------------------------------------
class TeamIn(_In):
    text: str = Field(
        description="The enterprise's demand, as pasted: 1 to 20,000 characters, not all white space.",
        json_schema_extra={"pattern": _WORDS, "maxLength": 20_000},
    )
    size: int = Field(3, ge=1, le=8, description="How many experts in the team (1-8).")
    filters: FiltersIn = Field(default_factory=FiltersIn)
    one_per_institution: StrictBool = Field(False, description="At most one expert from each institution.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "text": "新上一条不锈钢锅生产线，焊缝发黑、抛光粉尘大，还想做个MES把数据管起来", "size": 3,
            "filters": {"region": "", "title": "", "exclude_institutions": []}, "one_per_institution": False,
        }]},
    )


class AspectOut(BaseModel):
    id: int
    name: str = Field(description="Its leading concept: 电池热管理, 齿轮箱噪声, MES.")
    text: str = Field(description="The part(s) of the demand this aspect is made of.")
    terms: list[str] = Field(description="Its key terms, strongest first: what its best experts matched.")
    covered_by: list[str] = Field(description="Ids of the team members who cover it.")
    lead: str | None = Field(description="Id of the member who leads it (one aspect each while there are "
                             "enough members).")
    coverage: float = Field(description="1 - prod(1 - r) over the team: how well the team answers it.")


class AspectEvidenceOut(BaseModel):
    aspect_id: int
    relevance: float = Field(description="The member's score for this aspect / the aspect's best score.")
    strength: float | None = Field(None, description="The calibrated strength of the member for this aspect.")
    level: Level = ""
    terms: list[str]
    evidence: list[EvidenceOut]


class TeamExplanationOut(BaseModel):
    terms: list[str] = Field(description="Matched terms of the aspects the member covers.")
    expanded: dict[str, str] = Field(
        default_factory=dict, description="Matched terms the demand did not say, with the phrase each came from.")
    evidence: list[EvidenceOut]
    aspects: list[AspectEvidenceOut] = Field(description="Per covered aspect: why (terms and evidence).")


class TeamMemberOut(BaseModel):
    rank: int
    expert: ExpertSummary
    strength: float | None = Field(description="The member's calibrated strength: its best over the aspects "
                                   "it covers (on the scale of /match).")
    level: Level
    score: float = Field(description="The member's fused score for the whole demand, as /match gives it.")
    covers: list[int] = Field(description="Ids of the aspects this member covers.")
    relevance: list[float] = Field(description="Per aspect (in aspect order): score / the aspect's best.")
    gain: float = Field(description="What the member adds to the team's coverage objective.")
    explanation: TeamExplanationOut


class TeamOut(BaseModel):
    text: str
    aspects: list[AspectOut]
    single: bool = Field(description="The demand is one problem: the team is the plain ranking's first "
                         "experts.")
    understanding: UnderstandingOut | None = Field(None, description="What the engine understood of the "
                                                   "demand.")
    team: list[TeamMemberOut]
    coverage: float = Field(description="Share of the aspects a member covers.")
    objective: float = Field(description="The coverage objective of the team / the number of aspects.")
    method: Literal["exact", "greedy", "none"] = Field(description="How the team was chosen.")
    unmatched: list[str] = Field(description="Parts of the demand no expert matches.")


class DemandPatch(_In):
    status: DemandStatus = Field(
        description="new 新需求, matched 已推荐, contacted 已联系, connected 已对接, closed 已关闭. `new` "
        "puts the demand back into the next nightly batch."
    )


class ExpertRef(BaseModel):
    id: str
    name: str


class DemandListItem(DemandOut):
    status_label: str = Field(description="The status in Chinese, as the inbox shows it.")
    top: list[ExpertRef] = Field(description="Its first three stored recommendations (latest batch run), "
                                 "without experts declined or found unsuitable for it.")


class DemandList(BaseModel):
    data: list[DemandListItem]
    count: int = Field(description="How many demands match the filters in all (not only this page).")


class VerdictOut(BaseModel):
    verdict: str
    label: str = Field(description="The verdict in Chinese: 已联系, 同意对接, 婉拒, 不合适, 对接成功.")
    note: str
    at: str
    actor: str = Field(description="Who recorded it: staff:NAME (signed in) or key:FINGERPRINT (an API key).")


class RecommendationOut(MatchOut):
    run_key: str | None = Field(description="The batch run that made it; null for a live ranking.")
    verdict: VerdictOut | None = Field(
        description="The latest verdict recorded on this expert for the demand."
    )


class ExcludedOut(BaseModel):
    expert: ExpertSummary
    verdict: VerdictOut


class RecommendationList(BaseModel):
    demand_id: str
    source: Literal["batch", "saved", "live"] = Field(
        description="batch: the last nightly run's stored recommendations; saved: the list staff saved "
        "from a live ranking on the match page (实时匹配), when newer; live: ranked now (neither exists)."
    )
    run_key: str | None
    data: list[RecommendationOut] = Field(description="Never an expert declined or found unsuitable for it.")
    count: int
    excluded: list[ExcludedOut] = Field(description="Experts ruled out by a verdict (婉拒, 不合适).")
    error: str = Field("", description="Why a live ranking could not be made (a demand with no text).")


class PauseIn(_In):
    until: IsoDate = Field(description="The last day of the pause (YYYY-MM-DD); a day already past pauses "
                           "nothing.")
    reason: str = Field("", max_length=200, description="e.g. 出国访学, 住院, 手头项目满负荷.")


class HistoryEventOut(BaseModel):
    demand_id: str
    title: str
    enterprise: str
    verdict: str
    label: str
    note: str
    at: str
    actor: str


class ExpertHistoryOut(BaseModel):
    expert_id: str
    recommended: int = Field(description="Demands any nightly run recommended the expert for.")
    contacted: int = Field(description="Demands the expert was marked 已联系 for (likewise below).")
    accepted: int
    succeeded: int
    declined: int
    unsuitable: int
    paused: PauseOut | None
    events: list[HistoryEventOut] = Field(description="The latest verdicts, newest first.")


# -- feedback ------------------------------------------------------------------------------------
Verdict = Literal["contacted", "accepted", "declined", "unsuitable", "succeeded"]


class FeedbackIn(_In):
    demand_id: str = Field(min_length=1, max_length=100)
    expert_id: str = Field(min_length=1, max_length=100)
    verdict: Verdict = Field(
        description="已联系 contacted, 同意对接 accepted, 婉拒 declined, 不合适 unsuitable, 对接成功 "
        "succeeded. declined and unsuitable: the expert is never recommended for this demand again."
    )
    note: str = Field("", max_length=2000)


class FeedbackOut(BaseModel):
    id: int
    demand_id: str
    expert_id: str
    verdict: str
    note: str
    created_at: str


# -- health and errors ---------------------------------------------------------------------------
class IndexInfo(BaseModel):
    experts: int = Field(description="Experts in the loaded index.")
    documents: int = Field(description="Searchable pieces (papers, patents, projects, fields, bios).")
    terms: int
    format_version: int
    data_version: int = Field(description="The store's change counter the index was built at.")


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    index: IndexInfo


class ErrorBody(BaseModel):
    type: str = Field(description="The error class, e.g. InputError, NotFoundError, AuthError.")
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


# -- conversions ---------------------------------------------------------------------------------
def expert_out(expert: Expert, *, include_contact: bool) -> dict[str, Any]:
    return expert.to_dict(include_contact=include_contact)


def expert_summary(expert: Expert, *, include_contact: bool) -> dict[str, Any]:
    d = expert.to_dict(include_contact=include_contact)
    keep = ("id", "name", "title", "institution", "region", "research_fields", "contact")
    return {k: d[k] for k in keep if k in d}


def pause_out(pause: Pause | None) -> dict[str, str] | None:
    return None if pause is None else {"until": pause.until, "reason": pause.reason}


def match_out(match: Match, *, include_contact: bool,
              pauses: Mapping[str, Pause] | None = None) -> dict[str, Any]:
    out = {
        "rank": match.rank,
        "expert": expert_summary(match.expert, include_contact=include_contact),
        "strength": None if match.strength is None else round(match.strength, 4),
        "level": match.level,
        "score": round(match.score, 6),
        "explanation": match.explanation.to_dict(),
    }
    if pauses and match.expert.id in pauses:
        out["paused"] = pause_out(pauses[match.expert.id])
    return out


def match_list(matches: Sequence[Match], *, include_contact: bool, pauses: Mapping[str, Pause] | None = None,
               understanding: Understanding | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"data": [match_out(m, include_contact=include_contact, pauses=pauses) for m in matches],
                           "count": len(matches)}
    if understanding is not None:
        out["understanding"] = understanding.to_dict()
    return out


class BuiltJSON(Response):
    """A response body built by the `*_out` helpers in its model's exact shape, sent as JSON without
    FastAPI validating it against the route's `response_model` once more: on the demo corpus that
    validation was an eighth of the time `/match` held the GIL (py-spy, 32 clients). The route keeps
    its `response_model` for the OpenAPI schema; tests/test_api.py checks that the body equals the
    model's own serialisation, and the fuzz tests check it against the schema."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def verdict_out(entry: FeedbackEntry | None) -> dict[str, str] | None:
    if entry is None:
        return None
    return {"verdict": entry.verdict, "label": VERDICT_LABELS.get(entry.verdict, entry.verdict),
            "note": entry.note, "at": entry.created_at, "actor": entry.actor}


# -- outcomes and statistics (issue 17) -----------------------------------------------------------
OutcomeKind = Literal["合作意向", "技术难题解决", "项目合作", "授权专利", "人才培养", "经济效益"]
OutcomeUnit = Literal["件", "项", "人", "万元"]
ExpertRefId = Annotated[str, Field(min_length=1, max_length=100, pattern=validate.NOT_BLANK_PATTERN)]


def _kind_alternatives() -> list[dict[str, Any]]:
    # One alternative per kind: its unit, and whole numbers for the kinds that count things.
    return [{"properties": {"kind": {"const": kind}, "unit": {"const": unit},
                            "value": {"type": "number" if unit == "万元" else "integer"}}}
            for kind, unit in OUTCOME_KINDS.items()]


class OutcomeIn(_In):
    """What a match produced. `unit` may be left out: it follows the kind (件 for 授权专利, 人 for
    人才培养, 万元 for 经济效益, 项 for the others); counts are whole numbers."""

    demand_id: str = Field(min_length=1, max_length=100)
    expert_ids: list[ExpertRefId] = Field(
        min_length=1, max_length=20, json_schema_extra={"uniqueItems": True},
        description="The expert(s) the outcome came with (at least one).",
    )
    kind: OutcomeKind
    value: float = Field(gt=0, le=1_000_000_000)
    unit: OutcomeUnit | None = None
    date: IsoDate = Field(description="When it happened (YYYY-MM-DD).")
    note: str = Field("", max_length=2000)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": _kind_alternatives(),
            "examples": [{"demand_id": "Q0001", "expert_ids": ["X0004"], "kind": "技术难题解决", "value": 1,
                          "unit": "项", "date": "2026-12-10", "note": "真空层焊接合格率从 82% 提到 97%"}],
        },
    )

    @model_validator(mode="after")
    def _consistent(self) -> OutcomeIn:
        expected = OUTCOME_KINDS[self.kind]
        if self.unit is not None and self.unit != expected:
            raise ValueError(f"unit: {self.kind} is counted in {expected}, not {self.unit}")
        if expected != "万元" and not float(self.value).is_integer():
            raise ValueError(f"value: {self.kind} is counted in whole {expected}")
        if len(set(self.expert_ids)) != len(self.expert_ids):
            raise ValueError("expert_ids: an expert is named twice")
        return self


class OutcomeOut(BaseModel):
    id: int
    demand_id: str
    expert_ids: list[str]
    kind: str
    value: float
    unit: str
    date: str
    note: str
    actor: str = Field(description="Who recorded it: staff:NAME or key:FINGERPRINT.")
    created_at: str


class OutcomeList(BaseModel):
    data: list[OutcomeOut]
    count: int


class FunnelOut(BaseModel):
    received: int = Field(description="Demands received (created) in the period.")
    recommended: int = Field(description="… for which a run recommended someone or staff recorded a verdict.")
    contacted: int = Field(description="… an expert was contacted about: 已联系, 同意对接, 婉拒, 对接成功.")
    accepted: int = Field(description="… an expert accepted (同意对接 or 对接成功, or status 已对接).")
    succeeded: int = Field(description="… marked 对接成功.")


class GroupOut(BaseModel):
    received: int
    recommended: int
    contacted: int
    accepted: int
    succeeded: int


class MonthOut(GroupOut):
    month: str
    outcomes: int = Field(description="Outcomes dated in the month.")


class IndustryOut(GroupOut):
    industry: str


class RegionOut(GroupOut):
    region: str = Field(description="The city (地级市) of the demand's region.")


class EngagedExpertOut(BaseModel):
    expert_id: str
    name: str
    institution: str
    recommended: int
    contacted: int
    accepted: int
    succeeded: int
    outcomes: int


class GapOut(BaseModel):
    concept: str
    demands: int = Field(description="How many weak demands ask for it.")
    demand_ids: list[str]


class StatsOut(BaseModel):
    from_: str | None = Field(alias="from")
    to: str | None
    funnel: FunnelOut
    outcomes: dict[str, float] = Field(description="Each outcome kind's total value in the period.")
    outcome_units: dict[str, str]
    outcome_counts: dict[str, int]
    by_month: list[MonthOut]
    by_industry: list[IndustryOut]
    by_region: list[RegionOut]
    experts: list[EngagedExpertOut] = Field(description="The most engaged experts.")
    median_days_to_first_contact: float | None
    contacted_demands: int
    gap_threshold: float | None = Field(description="A demand whose best expert covers less of it is weak.")
    gaps: list[GapOut] = Field(description="The expert-gap list (专家库缺口): uncovered concepts, most asked "
                               "first.")


# -- reverse matching ----------------------------------------------------------------------------
class DemandMatchOut(BaseModel):
    rank: int
    demand: DemandOut
    strength: float | None = Field(description="The pair's calibrated strength in the demand's own ranking: "
                                   "the scale of /match (null for a pasted profile, which is not in the "
                                   "index).")
    level: Level
    score: float = Field(description="The demand index's BM25 for the profile: it orders this list only.")
    explanation: ExplanationOut


class DemandMatchList(BaseModel):
    data: list[DemandMatchOut]
    count: int


class ProfileMatchIn(_In):
    text: str = Field(
        description="A visiting expert's profile as pasted: fields, papers, projects (1 to 20,000 "
        "characters).",
        json_schema_extra={"pattern": _WORDS, "maxLength": 20_000},
    )
    top_k: int = Field(10, ge=1, le=100)
    include_closed: StrictBool = Field(False, description="Also demands already 已对接 or 已关闭.")


class VisitDemandOut(BaseModel):
    id: str
    title: str
    strength: float | None = Field(description="The pair's calibrated strength (the scale of /match).")
    level: Level
    score: float = Field(description="The demand index's BM25: orders the plan only.")
    terms: list[str]


class VisitStopOut(BaseModel):
    order: int
    enterprise: str
    district: str
    region: str
    strength: float | None = Field(description="The strongest of its demands.")
    score: float = Field(description="The summed BM25 of its demands: orders the plan only.")
    demands: list[VisitDemandOut]


class DistrictOut(BaseModel):
    district: str
    city: str
    enterprises: int
    score: float = Field(description="The summed score of its best enterprises (as many as the stops).")


class VisitPlanOut(BaseModel):
    expert_id: str
    date: str
    paused: PauseOut | None = Field(description="Set when the expert's recommendations are paused that day.")
    stops: list[VisitStopOut] = Field(description="The day's route: one district's best enterprises.")
    districts: list[DistrictOut] = Field(description="Every district with open demands for the expert, "
                                         "best first.")


def outcome_out(o: Outcome) -> dict[str, Any]:
    return {"id": o.id, "demand_id": o.demand_id, "expert_ids": list(o.expert_ids), "kind": o.kind,
            "value": o.value, "unit": o.unit, "date": o.date, "note": o.note, "actor": o.actor,
            "created_at": o.created_at}


def demand_match_out(m: DemandMatch) -> dict[str, Any]:
    return {"rank": m.rank, "demand": m.demand.to_dict(),
            "strength": None if m.strength is None else round(m.strength, 4), "level": m.level,
            "score": round(m.score, 6), "explanation": m.explanation.to_dict()}


def visit_plan_out(plan: VisitPlan) -> dict[str, Any]:
    return {
        "expert_id": plan.expert_id, "date": plan.day.isoformat(), "paused": pause_out(plan.paused),
        "stops": [{"order": s.order, "enterprise": s.enterprise, "district": s.district, "region": s.region,
                   "strength": None if s.strength is None else round(s.strength, 4), "score": s.score,
                   "demands": [{"id": m.demand.id, "title": m.demand.title,
                                "strength": None if m.strength is None else round(m.strength, 4),
                                "level": m.level, "score": round(m.score, 4),
                                "terms": list(m.explanation.terms[:8])} for m in s.demands]}
                  for s in plan.stops],
        "districts": [{"district": d.district, "city": d.city, "enterprises": d.enterprises, "score": d.score}
                      for d in plan.districts],
    }


# -- what was learned from verdicts (issue 28) --------------------------------------------------
class ProposalOut(BaseModel):
    phrase: str = Field(description="The demand phrase.")
    concept: str = Field(description="The expert concept it points to.")
    strength: float = Field(
        description="The excess over chance, shrunk toward zero with little evidence (0-1).")
    demands: int = Field(
        description="Judged demands saying the phrase whose accepted experts held the concept.")
    judged: int = Field(description="Judged demands saying the phrase.")
    accepted: int = Field(description="Accepted experts (over those demands) who hold the concept.")
    declined: int = Field(description="Declined or unsuitable experts (over those demands) who hold it.")
    p_value: float = Field(description="How likely that many demands are by chance.")
    status: Literal["open", "accepted", "rejected"]
    suggested_weight: float = Field(description="The thesaurus weight suggested on accepting it.")
    examples: list[dict[str, str]] = Field(description="Demands that taught it: {id, title}.")


class ProposalList(BaseModel):
    data: list[ProposalOut]
    count: int


class ProposalIn(_In):
    phrase: str = Field(min_length=1, max_length=100)
    concept: str = Field(min_length=1, max_length=100)


class AcceptIn(ProposalIn):
    kind: Literal["产品", "症状", "俗称"] = Field("症状", description="The thesaurus entry's kind.")
    weight: float | None = Field(None, gt=0, le=1, description="The target's weight (default: suggested).")


class RejectIn(ProposalIn):
    note: str = Field("", max_length=500)


class OwnThesaurusOut(BaseModel):
    version: int = Field(description="0 when there is no own thesaurus yet.")
    text: str = Field(description="The file, in the format of corpora/thesaurus.txt.")
    entries: int
    at: str | None = None
    actor: str | None = None
