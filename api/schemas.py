"""Request and response shapes of the HTTP API, separate from the library's records.

Requests are validated here (types, ranges); what the library checks itself (an empty or oversized
demand text) is left to it, so the CLI and the API say the same thing. Responses are built from the
library's typed records by the `*_out` helpers; contact details are added only when the caller
holds an API key, and the routes drop unset fields, so a public response has no `contact` key at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from matcher.models import Demand, Expert, Match
from matcher.understand import Understanding

MAX_TOP_K = 100


class _In(BaseModel):
    # A misspelt field ("topk") should be an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


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
    text: str = Field(description="The enterprise's technical problem, as pasted (1 to 20,000 characters).")
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
    contact: ContactOut | None = Field(None, description="Only with an API key.")


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
    terms: list[str] = Field(description="Matched terms, strongest first.")
    expanded: dict[str, str] = Field(
        default_factory=dict, description="Matched terms the demand did not say, each with the demand's phrase "
        "the understanding stage added it for (腐蚀 <- 生锈).")
    evidence: list[EvidenceOut]
    signals: dict[str, float] = Field(description="The expert's raw score in each ranking signal.")


class MatchOut(BaseModel):
    rank: int
    expert: ExpertSummary
    score: float
    explanation: ExplanationOut


class TermOut(BaseModel):
    term: str
    weight: float


class ExpandedOut(BaseModel):
    term: str = Field(description="A technical concept the demand points to.")
    from_: str = Field(alias="from", description="The demand's phrase it was added for.")
    source: Literal["thesaurus", "corpus", "dense"] = Field(
        description="Where it came from: corpora/thesaurus.txt, the experts' own texts, or the dense model.")
    weight: float = Field(description="Its weight in the query (below the demand's own words).")
    kind: str | None = Field(None, description="The thesaurus entry's kind: 产品, 症状 or 俗称.")

    model_config = ConfigDict(populate_by_name=True)


class UnderstandingOut(BaseModel):
    terms: list[TermOut] = Field(description="The demand's own terms and their weights.")
    expanded: list[ExpandedOut] = Field(description="Concepts added to the demand.")
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
    phone: str = Field("", max_length=100)
    email: str = Field("", max_length=200)


class ExpertIn(_In):
    id: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=r"^[^/\s]+$",
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

    def to_expert(self, expert_id: str) -> Expert:
        return Expert.from_dict({**self.model_dump(), "id": expert_id})


# -- demands -------------------------------------------------------------------------------------
class DemandIn(_In):
    id: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=r"^[^/\s]+$",
        description="Your id for the demand; generated when left out.",
    )
    title: str = Field("", max_length=500)
    description: str = Field("", description="The problem; title, keywords and description are matched.")
    enterprise: str = Field(
        "", max_length=200, description="The demanding enterprise; its own experts are never recommended."
    )
    region: str = Field("", max_length=100)
    industry: str = Field("", max_length=100)
    keywords: list[str] = Field(default_factory=list)
    avoid_institutions: list[str] = Field(default_factory=list)
    avoid_experts: list[str] = Field(default_factory=list, description="Expert ids or names to avoid (回避).")
    needs_team: bool = Field(False, description="组团需求: `matcher batch --team` recommends a team for it.")

    def to_demand(self, demand_id: str) -> Demand:
        return Demand.from_dict({**self.model_dump(), "id": demand_id, "status": "new"})


class DemandOut(BaseModel):
    id: str
    title: str
    description: str
    enterprise: str
    region: str
    industry: str
    keywords: list[str]
    created_at: str
    status: str
    avoid_institutions: list[str]
    avoid_experts: list[str]
    needs_team: bool = Field(description="组团需求: the nightly batch (--team) recommends a team for it.")


class NeedsTeamIn(_In):
    needs_team: bool = Field(description="Whether the demand needs a team (组团需求).")


# -- teams (组团) ----------------------------------------------------------------------------------
class TeamIn(_In):
    text: str = Field(description="The enterprise's demand, as pasted (1 to 20,000 characters).")
    size: int = Field(3, ge=1, le=8, description="How many experts in the team (1-8).")
    filters: FiltersIn = Field(default_factory=FiltersIn)
    one_per_institution: bool = Field(False, description="At most one expert from each institution.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "text": "新上一条不锈钢锅生产线，焊缝发黑、抛光粉尘大，还想做个MES把数据管起来", "size": 3,
            "filters": {"region": "", "title": "", "exclude_institutions": []}, "one_per_institution": False,
        }]},
    )


class AspectOut(BaseModel):
    id: int
    text: str = Field(description="The part(s) of the demand this aspect is made of.")
    terms: list[str] = Field(description="Its key terms, strongest first: what names it.")
    covered_by: list[str] = Field(description="Ids of the team members who cover it.")
    coverage: float = Field(description="1 - prod(1 - r) over the team: how well the team answers it.")


class AspectEvidenceOut(BaseModel):
    aspect_id: int
    relevance: float = Field(description="The member's score for this aspect / the aspect's best score.")
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
    score: float = Field(description="The member's fused score for the whole demand, as /match gives it.")
    covers: list[int] = Field(description="Ids of the aspects this member covers.")
    relevance: list[float] = Field(description="Per aspect (in aspect order): score / the aspect's best.")
    gain: float = Field(description="What the member adds to the team's coverage objective.")
    explanation: TeamExplanationOut


class TeamOut(BaseModel):
    text: str
    aspects: list[AspectOut]
    team: list[TeamMemberOut]
    coverage: float = Field(description="Share of the aspects a member covers.")
    objective: float = Field(description="The coverage objective of the team / the number of aspects.")
    method: Literal["exact", "greedy", "none"] = Field(description="How the team was chosen.")
    unmatched: list[str] = Field(description="Parts of the demand no expert matches.")


# -- feedback ------------------------------------------------------------------------------------
class FeedbackIn(_In):
    demand_id: str = Field(min_length=1)
    expert_id: str = Field(min_length=1)
    verdict: Literal["accepted", "declined", "contacted", "succeeded"]
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


def match_out(match: Match, *, include_contact: bool) -> dict[str, Any]:
    return {
        "rank": match.rank,
        "expert": expert_summary(match.expert, include_contact=include_contact),
        "score": round(match.score, 6),
        "explanation": match.explanation.to_dict(),
    }


def match_list(matches: Sequence[Match], *, include_contact: bool,
               understanding: Understanding | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"data": [match_out(m, include_contact=include_contact) for m in matches],
                           "count": len(matches)}
    if understanding is not None:
        out["understanding"] = understanding.to_dict()
    return out
