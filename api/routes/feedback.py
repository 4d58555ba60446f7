"""Feedback: what staff did with a recommendation, kept to measure and tune the matcher."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from api.deps import EngineDep, RequireKey, WriteLock
from api.schemas import ErrorOut, FeedbackIn, FeedbackOut

router = APIRouter(prefix="/feedback", tags=["feedback"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=FeedbackOut,
    dependencies=[RequireKey],
    responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut, "description": "Unknown demand or expert"}},
)
def add_feedback(body: FeedbackIn, engine: EngineDep, lock: WriteLock) -> dict[str, Any]:
    """Record a verdict (accepted, declined, contacted, succeeded) on one expert for one demand."""
    store = engine.store
    store.get_demand(body.demand_id)  # NotFoundError -> 404, naming the unknown id
    store.get_expert(body.expert_id)
    with lock:
        fid = store.add_feedback(body.demand_id, body.expert_id, body.verdict, body.note)
    row = next(r for r in store.list_feedback(body.demand_id) if r["id"] == fid)
    return row
