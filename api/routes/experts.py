"""Experts: list and search, read, create, replace, delete. Writes are findable by /match at once."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import (
    OPTIONAL_KEY,
    READ_AUTH,
    WRITE_AUTH,
    AdminActor,
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
    DemandMatchList,
    ErrorOut,
    ExpertHistoryOut,
    ExpertIn,
    ExpertList,
    ExpertOut,
    ExpertReplaceIn,
    IsoDate,
    PauseIn,
    PauseOut,
    VisitPlanOut,
    demand_match_out,
    expert_out,
    pause_out,
    visit_plan_out,
)
from matcher.errors import InputError, NotFoundError
from matcher.models import VERDICT_LABELS
from matcher.reverse import demand_index, plan_visit

router = APIRouter(prefix="/experts", tags=["experts"])

ExpertId = Annotated[str, Path(description="The expert's id.", max_length=100)]
AUTH = WRITE_AUTH
NOT_FOUND = {404: {"model": ErrorOut, "description": "No expert with this id."}}
INVALID = {422: {"model": ErrorOut, "description": "Invalid input; the message names the field."}}
_BY_ID = {"expert_id": "$response.body#/id"}
CREATED_LINKS = {
    "GetExpert": {"operationId": "getExpert", "parameters": _BY_ID},
    "ReplaceExpert": {"operationId": "replaceExpert", "parameters": _BY_ID},
    "ExpertHistory": {"operationId": "expertHistory", "parameters": _BY_ID},
    "PauseExpert": {"operationId": "pauseExpert", "parameters": _BY_ID},
    "ResumeExpert": {"operationId": "resumeExpert", "parameters": _BY_ID},
    "DeleteExpert": {"operationId": "deleteExpert", "parameters": _BY_ID},
}


@router.get("", response_model=ExpertList, response_model_exclude_unset=True, operation_id="listExperts",
            responses=INVALID, openapi_extra=OPTIONAL_KEY)
def list_experts(
    engine: EngineDep,
    workflow: WorkflowDep,
    lock: WriteLock,
    sees_contacts: SeesContacts,
    actor: ApiActor,
    ip: ClientIp,
    q: Annotated[str, Query(max_length=200, description="Part of a name, institution, field, region.")] = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    # Bounded: an offset beyond SQLite's 64-bit integers was a 500 (found by schemathesis with a key).
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> dict[str, Any]:
    """A page of experts (by id), optionally searched; `count` is the total found. With a key the
    page carries contact details, and the view is audited."""
    experts, total = engine.search_experts(q.strip(), limit=limit, offset=offset)
    if sees_contacts and actor and experts:
        with lock:
            workflow.log_contact_view(actor, [e.id for e in experts], where="expert list", ip=ip)
    return {"data": [expert_out(e, include_contact=sees_contacts) for e in experts], "count": total}


@router.get("/{expert_id}", response_model=ExpertOut, response_model_exclude_unset=True,
            operation_id="getExpert", responses=NOT_FOUND, openapi_extra=OPTIONAL_KEY)
def get_expert(expert_id: ExpertId, engine: EngineDep, workflow: WorkflowDep, lock: WriteLock,
               sees_contacts: SeesContacts, actor: ApiActor, ip: ClientIp) -> dict[str, Any]:
    """One expert's full record; contact details only with an admin key (and the view is audited)."""
    expert = engine.get_expert(expert_id)
    if sees_contacts and actor:
        with lock:
            workflow.log_contact_view(actor, [expert_id], where="expert record", ip=ip)
    return expert_out(expert, include_contact=sees_contacts)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ExpertOut,
    dependencies=[RequireKey],
    operation_id="createExpert",
    responses={201: {"description": "Stored and findable.", "links": CREATED_LINKS}, **AUTH,
               409: {"model": ErrorOut, "description": "The id is taken."}, **INVALID},
)
def create_expert(body: ExpertIn, engine: EngineDep, workflow: WorkflowDep, lock: WriteLock,
                  actor: KeyActor, sees_contacts: SeesContacts, ip: ClientIp,
                  response: Response) -> dict[str, Any]:
    """Add an expert; `/match` finds them as soon as this returns."""
    expert_id = body.id or f"api-{uuid.uuid4().hex[:12]}"
    expert = body.to_expert(expert_id)
    with lock:  # the existence check and the insert must not interleave with another writer
        try:
            engine.get_expert(expert_id)
        except NotFoundError:
            with engine.transaction():  # the write and its audit entry, together
                workflow.record(actor, "expert.create", f"expert:{expert_id}", ip=ip)
                engine.upsert_experts([expert])
        else:
            raise ConflictError(
                f"an expert with id {expert_id!r} exists; use PUT /api/v1/experts/{expert_id} to change them"
            )
    # Headers are Latin-1: an id such as 专家-001 goes percent-encoded (it was a 500 after the write).
    response.headers["Location"] = f"/api/v1/experts/{quote(expert_id, safe='')}"
    return expert_out(expert, include_contact=sees_contacts)  # contacts: admin keys only


@router.put(
    "/{expert_id}", response_model=ExpertOut, dependencies=[RequireKey], operation_id="replaceExpert",
    responses={**AUTH, **NOT_FOUND, **INVALID},
)
def replace_expert(expert_id: ExpertId, body: ExpertReplaceIn, engine: EngineDep, workflow: WorkflowDep,
                   lock: WriteLock, actor: KeyActor, sees_contacts: SeesContacts,
                   ip: ClientIp) -> dict[str, Any]:
    """Replace an expert's record (fields left out become empty); `/match` reflects it at once."""
    if body.id is not None and body.id != expert_id:
        raise InputError(f"the body's id {body.id!r} differs from the URL's {expert_id!r}; ids cannot change")
    expert = body.to_expert(expert_id)
    with lock:
        engine.get_expert(expert_id)  # 404 for an unknown id: PUT edits, POST creates
        with engine.transaction():
            workflow.record(actor, "expert.replace", f"expert:{expert_id}", ip=ip)
            engine.upsert_experts([expert])
    return expert_out(expert, include_contact=sees_contacts)  # contacts: admin keys only


@router.delete(
    "/{expert_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="deleteExpert",
    responses={**AUTH, **NOT_FOUND},
)
def delete_expert(expert_id: ExpertId, engine: EngineDep, workflow: WorkflowDep, lock: WriteLock,
                  actor: AdminActor, ip: ClientIp) -> Response:
    """Remove an expert (an admin key); they leave `/match` results at once."""
    with lock, engine.transaction():
        workflow.record(actor, "expert.delete", f"expert:{expert_id}", ip=ip)
        engine.delete_expert(expert_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- the working loop: an expert's history, pausing recommendations ------------------------------
@router.get("/{expert_id}/history", response_model=ExpertHistoryOut, operation_id="expertHistory",
            responses={**READ_AUTH, **NOT_FOUND}, dependencies=[RequireReader])
def expert_history(expert_id: ExpertId, workflow: WorkflowDep) -> dict[str, Any]:
    """How often the expert was recommended, contacted, accepted, succeeded (distinct demands), and
    the latest verdicts."""
    h = workflow.expert_history(expert_id)
    events = [{"demand_id": e.demand_id, "title": e.title, "enterprise": e.enterprise, "verdict": e.verdict,
               "label": VERDICT_LABELS.get(e.verdict, e.verdict), "note": e.note, "at": e.at,
               "actor": e.actor} for e in h.events]
    return {
        "expert_id": h.expert_id, "recommended": h.recommended, "contacted": h.contacted,
        "accepted": h.accepted, "succeeded": h.succeeded, "declined": h.declined, "unsuitable": h.unsuitable,
        "paused": pause_out(h.pause), "events": events,
    }


@router.put("/{expert_id}/pause", response_model=PauseOut, operation_id="pauseExpert",
            responses={**AUTH, **NOT_FOUND, **INVALID})
def pause_expert(expert_id: ExpertId, body: PauseIn, workflow: WorkflowDep, lock: WriteLock,
                 actor: KeyActor, ip: ClientIp) -> dict[str, Any]:
    """Pause the expert's recommendations until a date (暂停推荐: travelling, ill, overloaded): the
    nightly batch leaves them out (and says so in its exclusions), live rankings flag them."""
    with lock:
        pause = workflow.pause(actor, expert_id, body.until, body.reason, ip=ip)
    out = pause_out(pause)
    assert out is not None
    return out


@router.delete("/{expert_id}/pause", status_code=status.HTTP_204_NO_CONTENT, operation_id="resumeExpert",
               responses={**AUTH, **NOT_FOUND})
def resume_expert(expert_id: ExpertId, workflow: WorkflowDep, lock: WriteLock, actor: KeyActor,
                  ip: ClientIp) -> Response:
    """End a pause at once (nothing happens when the expert was not paused)."""
    with lock:
        workflow.resume(actor, expert_id, ip=ip)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- reverse matching: the open demands an expert could help with; a day's visit -----------------
@router.get("/{expert_id}/demands", response_model=DemandMatchList, operation_id="expertDemands",
            responses={**READ_AUTH, **NOT_FOUND, **INVALID}, dependencies=[RequireReader])
def expert_demands(
    expert_id: ExpertId,
    engine: EngineDep,
    lock: WriteLock,
    top_k: Annotated[int, Query(ge=1, le=100, description="How many demands (default 10).")] = 10,
    include_closed: Annotated[bool, Query(description="Also demands already 已对接 or 已关闭.")] = False,
) -> dict[str, Any]:
    """Reverse matching (院士专家企业行): the open demands this expert could help with, best first, each
    explained (the demand's terms the expert's fields and documents matched). Demands the expert may
    not serve (回避, or a 婉拒/不合适 verdict on that pair) are left out."""
    index = demand_index(engine, write_lock=lock)
    matches = index.for_expert(expert_id, top_k, include_closed=include_closed)
    return {"data": [demand_match_out(m) for m in matches], "count": len(matches)}


@router.get("/{expert_id}/visit-plan", response_model=VisitPlanOut, operation_id="expertVisitPlan",
            responses={**READ_AUTH, **NOT_FOUND, **INVALID}, dependencies=[RequireReader])
def expert_visit_plan(
    expert_id: ExpertId,
    engine: EngineDep,
    lock: WriteLock,
    day: Annotated[IsoDate, Query(alias="date", description="The day of the visit (YYYY-MM-DD).")],
    stops: Annotated[int, Query(ge=1, le=10, description="Enterprises to visit that day.")] = 4,
) -> dict[str, Any]:
    """A visit plan for one day: the best enterprises to visit among the open demands the expert could
    help with, all in one district (then the same city) so that the day's route makes sense, and the
    other districts worth a day. `paused` says when the expert's recommendations are paused then."""
    demand_index(engine, write_lock=lock)
    return visit_plan_out(plan_visit(engine, expert_id, day, stops=stops))
