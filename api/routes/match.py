"""POST /match: rank experts for a pasted demand; POST /match.xlsx: the same list as a workbook."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Response

from api.deps import OPTIONAL_KEY, ApiActor, ClientIp, EngineDep, SeesContacts, WorkflowDep, WriteLock
from api.export import matches_xlsx
from api.schemas import BuiltJSON, ErrorOut, MatchIn, MatchList, match_list
from matcher import Filters
from matcher.engine import Analysis
from matcher.models import Match

router = APIRouter(tags=["match"])

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "A wrong API key."},
    429: {"model": ErrorOut, "description": "Too many wrong keys from this client: it waits."},
    422: {"model": ErrorOut, "description": "Empty or oversized text, top_k out of 1..100, unknown fields."},
}


def _analyse(engine: EngineDep, body: MatchIn) -> Analysis:
    f = body.filters
    filters = Filters(
        region=f.region.strip(),
        title=f.title.strip(),
        exclude_institutions=tuple(i.strip() for i in f.exclude_institutions if i.strip()),
    )
    return engine.analyse(body.text, top_k=body.top_k, filters=filters, exclude_terms=body.exclude_terms,
                          extra_terms=body.extra_terms)


def _match(engine: EngineDep, body: MatchIn) -> list[Match]:
    return list(_analyse(engine, body).matches)


@router.post("/match", response_model=MatchList, response_model_exclude_unset=True, responses=ERRORS,
             response_model_by_alias=True, openapi_extra=OPTIONAL_KEY)
def match(body: MatchIn, engine: EngineDep, workflow: WorkflowDep, lock: WriteLock,
          sees_contacts: SeesContacts, actor: ApiActor, ip: ClientIp) -> Response:
    """Rank experts for an enterprise's problem, each with the matched terms and the evidence, and
    say what the engine understood of it (`understanding`: its own terms, the concepts added, the
    products and symptoms recognised). Send `exclude_terms` / `extra_terms` to correct it. Experts
    whose recommendations are paused carry `paused`.

    Contact details (phone, e-mail) are included only with an admin key, and such a
    view is audited.
    """
    result = _analyse(engine, body)
    matches = list(result.matches)
    if sees_contacts and actor and matches:
        with lock:
            workflow.log_contact_view(actor, [m.expert.id for m in matches], where="match", ip=ip)
    return BuiltJSON(match_list(matches, include_contact=sees_contacts, pauses=engine.pauses(),
                                understanding=result.understanding))


@router.post(
    "/match.xlsx",
    response_class=Response,
    responses={200: {"content": {XLSX: {}}, "description": "An .xlsx workbook."}, **ERRORS},
    openapi_extra=OPTIONAL_KEY,
)
def match_xlsx(body: MatchIn, engine: EngineDep, workflow: WorkflowDep, lock: WriteLock,
               sees_contacts: SeesContacts, actor: ApiActor, ip: ClientIp) -> Response:
    """The same ranking as `/match`, as an .xlsx workbook (sheet 匹配结果, and the demand in sheet 需求)."""
    matches = _match(engine, body)
    if sees_contacts and actor and matches:
        with lock:
            workflow.log_contact_view(actor, [m.expert.id for m in matches], where="match.xlsx", ip=ip)
    data = matches_xlsx(body.text, matches, include_contact=sees_contacts)
    name = quote("专家匹配结果.xlsx")
    return Response(
        content=data,
        media_type=XLSX,
        headers={"Content-Disposition": f"attachment; filename=\"matches.xlsx\"; filename*=UTF-8''{name}"},
    )
