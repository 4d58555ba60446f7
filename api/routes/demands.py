"""Demands: store an enterprise's demand, read it, list them (the inbox), its recommendations, its
status, and rank experts for it under its 回避 rules and its verdicts."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import (
    READ_AUTH,
    WRITE_AUTH,
    ApiActor,
    ClientIp,
    ConflictError,
    EngineDep,
    KeyActor,
    RequireKey,
    RequireReader,
    SeesContacts,
    WorkflowDep,
    WriteLock,
)
from api.schemas import (
    MAX_TOP_K,
    DemandIn,
    DemandList,
    DemandMatchList,
    DemandOut,
    DemandPatch,
    DemandStatus,
    ErrorOut,
    IsoDate,
    MatchList,
    NeedsTeamIn,
    ProfileMatchIn,
    RecommendationList,
    TeamOut,
    demand_match_out,
    expert_summary,
    match_list,
    pause_out,
    verdict_out,
)
from matcher.errors import NotFoundError
from matcher.models import DEMAND_STATUS_LABELS
from matcher.reverse import demand_index
from matcher.team import MAX_SIZE, recommend_team

router = APIRouter(prefix="/demands", tags=["demands"])

DemandId = Annotated[str, Path(description="The demand's id.", max_length=100)]
NOT_FOUND = {404: {"model": ErrorOut, "description": "No demand with this id."}}
AUTH = WRITE_AUTH
INVALID = {422: {"model": ErrorOut, "description": "Invalid input; the message names the field."}}
# Where a created demand's id leads (schemathesis follows these in its stateful phase).
_BY_ID = {"demand_id": "$response.body#/id"}
CREATED_LINKS = {
    "GetDemand": {"operationId": "getDemand", "parameters": _BY_ID},
    "PatchDemand": {"operationId": "patchDemand", "parameters": _BY_ID},
    "DemandRecommendations": {"operationId": "demandRecommendations", "parameters": _BY_ID},
    "DemandMatches": {"operationId": "demandMatches", "parameters": _BY_ID},
}


StatusQuery = Annotated[DemandStatus | None, Query(alias="status", description="Only this status.")]
FromQuery = Annotated[IsoDate | None, Query(alias="from", description="Created on or after (YYYY-MM-DD).")]
ToQuery = Annotated[IsoDate | None, Query(alias="to", description="Created on or before (YYYY-MM-DD).")]


@router.get("", response_model=DemandList, operation_id="listDemands",
            responses={**READ_AUTH, **INVALID}, dependencies=[RequireReader])
def list_demands(
    workflow: WorkflowDep,
    status_: StatusQuery = None,
    industry: Annotated[str, Query(max_length=100, description="Only this industry (exactly).")] = "",
    region: Annotated[str, Query(max_length=100, description="Only regions containing this: 永康.")] = "",
    date_from: FromQuery = None,
    date_to: ToQuery = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> dict[str, Any]:
    """The demand inbox: demands newest first, filtered, each with its first three recommendations."""
    inbox = workflow.inbox(status=status_, industry=industry, region=region, date_from=date_from,
                           date_to=date_to, limit=limit, offset=offset)
    return {
        "data": [{**row.demand.to_dict(), "status_label": DEMAND_STATUS_LABELS.get(row.demand.status, ""),
                  "top": [{"id": i, "name": n} for i, n in row.top]} for row in inbox.rows],
        "count": inbox.total,
    }


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DemandOut,
    dependencies=[RequireKey],
    operation_id="createDemand",
    responses={201: {"description": "Stored.", "links": CREATED_LINKS}, **AUTH,
               409: {"model": ErrorOut}, **INVALID},
)
def create_demand(body: DemandIn, engine: EngineDep, workflow: WorkflowDep, lock: WriteLock,
                  actor: KeyActor, ip: ClientIp, response: Response) -> dict[str, Any]:
    """Store a demand (status `new`); the nightly batch and `/demands/{id}/matches` pick it up."""
    demand = body.to_demand(body.id or f"api-{uuid.uuid4().hex[:12]}")
    engine.check_text(demand.text)  # a demand with no words could never be matched
    with lock:
        try:
            engine.get_demand(demand.id)
        except NotFoundError:
            with engine.transaction():
                engine.add_demands([demand])
                workflow.record(actor, "demand.create", f"demand:{demand.id}", ip=ip)
        else:
            raise ConflictError(f"a demand with id {demand.id!r} exists; choose another id")
    response.headers["Location"] = f"/api/v1/demands/{quote(demand.id, safe='')}"  # Latin-1 header
    return demand.to_dict()


@router.post("/match", response_model=DemandMatchList, operation_id="matchDemands",
             responses={**READ_AUTH, **INVALID}, dependencies=[RequireReader])
def match_demands(body: ProfileMatchIn, engine: EngineDep, lock: WriteLock) -> dict[str, Any]:
    """Reverse matching for a visiting expert's profile, pasted (院士专家企业行): the open demands they
    could help with, best first, explained."""
    index = demand_index(engine, write_lock=lock)
    matches = index.for_profile(body.text, body.top_k, include_closed=body.include_closed)
    return {"data": [demand_match_out(m) for m in matches], "count": len(matches)}


@router.get("/{demand_id}", response_model=DemandOut, operation_id="getDemand",
            responses={**READ_AUTH, **NOT_FOUND}, dependencies=[RequireReader])
def get_demand(demand_id: DemandId, engine: EngineDep) -> dict[str, Any]:
    return engine.get_demand(demand_id).to_dict()


@router.patch(
    "/{demand_id}",
    response_model=DemandOut,
    operation_id="patchDemand",
    responses={**AUTH, **NOT_FOUND, **INVALID},
)
def patch_demand(demand_id: DemandId, body: DemandPatch, workflow: WorkflowDep, lock: WriteLock,
                 actor: KeyActor, ip: ClientIp) -> dict[str, Any]:
    """Set a demand's status (audited). `new` puts it back into the next nightly batch."""
    with lock:
        return workflow.set_status(actor, demand_id, body.status, ip=ip).to_dict()


@router.get(
    "/{demand_id}/recommendations",
    response_model=RecommendationList,
    response_model_exclude_unset=True,
    operation_id="demandRecommendations",
    responses={**READ_AUTH, **NOT_FOUND},
    dependencies=[RequireReader],
)
def demand_recommendations(demand_id: DemandId, workflow: WorkflowDep, lock: WriteLock,
                           sees_contacts: SeesContacts, actor: ApiActor, ip: ClientIp) -> dict[str, Any]:
    """The demand's recommendations from the last nightly run (or, when none was made, a live ranking),
    each with its run key and the latest verdict staff recorded. Experts declined (婉拒) or found
    unsuitable (不合适) for it are never among them; `excluded` lists them. Contact details only with
    an admin key (and each such view is audited)."""
    recs = workflow.recommendations(demand_id)
    contact = sees_contacts and actor is not None
    data = []
    for r in recs.items:
        item: dict[str, Any] = {
            "rank": r.rank, "expert": expert_summary(r.expert, include_contact=contact),
            # stored with the run's explanation: the strength on the scale of /match (null for a
            # run stored before it had one)
            "strength": None if r.explanation.strength is None else round(r.explanation.strength, 4),
            "level": r.explanation.level,
            "score": round(r.score, 6), "explanation": r.explanation.to_dict(), "run_key": r.run_key,
            "verdict": verdict_out(r.verdict),
        }
        if r.paused is not None:
            item["paused"] = pause_out(r.paused)
        data.append(item)
    if contact and recs.items:
        with lock:
            workflow.log_contact_view(actor, [r.expert.id for r in recs.items],
                                      where=f"recommendations of demand {demand_id}", ip=ip)
    return {
        "demand_id": demand_id, "source": recs.source, "run_key": recs.run.run_key if recs.run else None,
        "data": data, "count": len(data), "error": recs.error,
        "excluded": [{"expert": expert_summary(x.expert, include_contact=False),
                      "verdict": verdict_out(x.verdict)} for x in recs.excluded],
    }


@router.get(
    "/{demand_id}/matches",
    response_model=MatchList,
    response_model_exclude_unset=True,
    operation_id="demandMatches",
    responses={**READ_AUTH, **NOT_FOUND},
    dependencies=[RequireReader],
)
def demand_matches(
    demand_id: DemandId,
    engine: EngineDep,
    workflow: WorkflowDep,
    lock: WriteLock,
    sees_contacts: SeesContacts,
    actor: ApiActor,
    ip: ClientIp,
    top_k: Annotated[int | None, Query(ge=1, le=MAX_TOP_K, description="How many (default 10).")] = None,
) -> dict[str, Any]:
    """Rank experts for a stored demand now, leaving out its enterprise's and avoided institutions'
    experts and those declined or found unsuitable for it; paused experts are flagged."""
    demand = engine.get_demand(demand_id)
    matches = engine.match_demand(demand, top_k=top_k)
    if sees_contacts and actor and matches:
        with lock:
            workflow.log_contact_view(actor, [m.expert.id for m in matches],
                                      where=f"matches of demand {demand_id}", ip=ip)
    return match_list(matches, include_contact=sees_contacts, pauses=engine.pauses())


@router.put(
    "/{demand_id}/needs-team",
    response_model=DemandOut,
    dependencies=[RequireKey],
    responses={**NOT_FOUND, **AUTH, 422: {"model": ErrorOut}},
)
def set_needs_team(
    demand_id: DemandId, body: NeedsTeamIn, engine: EngineDep, workflow: WorkflowDep, lock: WriteLock,
    actor: KeyActor, ip: ClientIp,
) -> dict[str, Any]:
    """Mark a demand as needing a team (组团需求), or not: `matcher batch --team` then recommends one
    (audited)."""
    with lock:
        demand = replace(engine.get_demand(demand_id), needs_team=body.needs_team)
        with engine.transaction():
            engine.add_demands([demand])
            workflow.record(actor, "demand.needs_team", f"demand:{demand_id}",
                            detail={"needs_team": body.needs_team}, ip=ip)
    return demand.to_dict()


@router.get(
    "/{demand_id}/team", response_model=TeamOut, response_model_exclude_unset=True,
    responses={**READ_AUTH, **NOT_FOUND},
    dependencies=[RequireReader],
)
def demand_team(
    demand_id: DemandId,
    engine: EngineDep,
    workflow: WorkflowDep,
    lock: WriteLock,
    sees_contacts: SeesContacts,
    actor: ApiActor,
    ip: ClientIp,
    size: Annotated[int, Query(ge=1, le=MAX_SIZE, description="How many experts in the team.")] = 3,
) -> dict[str, Any]:
    """A team for a stored demand, under its 回避 rules and its verdicts (its title and keywords
    emphasised). Contact details only with an admin key, and such a view is audited."""
    demand = engine.get_demand(demand_id)
    result = recommend_team(engine, demand.text, size=size, demand=demand)
    if sees_contacts and actor and result.members:
        with lock:
            workflow.log_contact_view(actor, [m.expert.id for m in result.members],
                                      where=f"team of demand {demand_id}", ip=ip)
    return result.to_dict(include_contact=sees_contacts)
