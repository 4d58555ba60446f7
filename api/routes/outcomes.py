"""Outcomes: what a match produced (合作意向, 技术难题解决, 项目合作, 授权专利, 人才培养, 经济效益),
linked to a demand and its experts; and the statistics they count in."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import (
    READ_AUTH,
    WRITE_AUTH,
    ClientIp,
    EngineDep,
    KeyActor,
    RequireReader,
    WorkflowDep,
    WriteLock,
)
from api.schemas import ErrorOut, IsoDate, OutcomeIn, OutcomeList, OutcomeOut, StatsOut, outcome_out
from matcher import stats as matcher_stats

router = APIRouter(tags=["outcomes"])

AUTH = WRITE_AUTH
INVALID = {422: {"model": ErrorOut, "description": "Invalid input; the message names the field."}}
OutcomeId = Annotated[int, Path(description="The outcome's id.", ge=1, le=2**53)]
_BY_ID = {"outcome_id": "$response.body#/id"}
CREATED_LINKS = {
    "GetOutcome": {"operationId": "getOutcome", "parameters": _BY_ID},
    "DeleteOutcome": {"operationId": "deleteOutcome", "parameters": _BY_ID},
}


@router.post(
    "/outcomes",
    status_code=status.HTTP_201_CREATED,
    response_model=OutcomeOut,
    operation_id="createOutcome",
    responses={
        201: {"description": "Recorded.", "links": CREATED_LINKS},
        **AUTH,
        404: {"model": ErrorOut, "description": "Unknown demand or expert."},
        **INVALID,
    },
)
def create_outcome(
    body: OutcomeIn, workflow: WorkflowDep, lock: WriteLock, actor: KeyActor, ip: ClientIp, response: Response
) -> dict[str, Any]:
    """Record what a match produced. The unit follows the kind (件 for patents, 人 for talent trained,
    万元 for economic benefit, 项 otherwise); counts are whole numbers. Audited."""
    with lock:
        outcome = workflow.record_outcome(
            actor,
            body.demand_id,
            body.expert_ids,
            body.kind,
            body.value,
            body.date,
            body.note,
            unit=body.unit,
            ip=ip,
        )
    response.headers["Location"] = f"/api/v1/outcomes/{outcome.id}"
    return outcome_out(outcome)


@router.get("/outcomes", response_model=OutcomeList, operation_id="listOutcomes",
            responses={**READ_AUTH, **INVALID}, dependencies=[RequireReader])
def list_outcomes(
    workflow: WorkflowDep,
    demand_id: Annotated[str, Query(max_length=100, description="Only this demand's.")] = "",
    expert_id: Annotated[
        str, Query(max_length=100, description="Only outcomes this expert is linked to.")
    ] = "",
    date_from: Annotated[
        IsoDate | None, Query(alias="from", description="Dated on or after (YYYY-MM-DD).")
    ] = None,
    date_to: Annotated[
        IsoDate | None, Query(alias="to", description="Dated on or before (YYYY-MM-DD).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> dict[str, Any]:
    """Outcomes newest first (by their date)."""
    args = {
        "demand_id": demand_id or None,
        "expert_id": expert_id or None,
        "date_from": date_from.isoformat() if date_from else None,
        "date_to": date_to.isoformat() if date_to else None,
    }
    rows = workflow.outcomes(**args, limit=limit, offset=offset)
    return {"data": [outcome_out(o) for o in rows], "count": workflow.count_outcomes(**args)}


@router.get(
    "/outcomes/{outcome_id}",
    response_model=OutcomeOut,
    operation_id="getOutcome",
    responses={**READ_AUTH, 404: {"model": ErrorOut, "description": "No outcome with this id."}},
    dependencies=[RequireReader],
)
def get_outcome(outcome_id: OutcomeId, workflow: WorkflowDep) -> dict[str, Any]:
    return outcome_out(workflow.outcome(outcome_id))


@router.delete(
    "/outcomes/{outcome_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="deleteOutcome",
    responses={**AUTH, 404: {"model": ErrorOut, "description": "No outcome with this id."}},
)
def delete_outcome(
    outcome_id: OutcomeId, workflow: WorkflowDep, lock: WriteLock, actor: KeyActor, ip: ClientIp
) -> Response:
    """Remove an outcome recorded by mistake (audited, with what it said)."""
    with lock:
        workflow.delete_outcome(actor, outcome_id, ip=ip)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/stats", response_model=StatsOut, operation_id="getStats",
            responses={**READ_AUTH, **INVALID}, dependencies=[RequireReader])
def get_stats(
    engine: EngineDep,
    date_from: Annotated[
        IsoDate | None, Query(alias="from", description="From this day (YYYY-MM-DD).")
    ] = None,
    date_to: Annotated[IsoDate | None, Query(alias="to", description="To this day, inclusive.")] = None,
) -> dict[str, Any]:
    """The funnel (demands received in the period by the furthest stage reached), outcomes summed by
    kind, by month, industry and region, the most engaged experts, the median days from a demand to
    its first contact, and the expert-gap list (see the README, "Statistics")."""
    return matcher_stats.compute(engine, date_from, date_to).to_json()
