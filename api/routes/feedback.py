"""Feedback: what staff did with a recommendation. It counts: an expert declined (婉拒) or found
unsuitable (不合适) for a demand is never recommended for it again, verdicts move the demand's
status on, `matcher eval --feedback` scores the ranker against them, and each is audited."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from api.deps import WRITE_AUTH, ClientIp, KeyActor, WorkflowDep, WriteLock
from api.schemas import ErrorOut, FeedbackIn, FeedbackOut

router = APIRouter(prefix="/feedback", tags=["feedback"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=FeedbackOut,
    operation_id="addFeedback",
    responses={**WRITE_AUTH, 404: {"model": ErrorOut, "description": "Unknown demand or expert"},
               422: {"model": ErrorOut, "description": "Invalid input; the message names the field."}},
)
def add_feedback(body: FeedbackIn, workflow: WorkflowDep, lock: WriteLock, actor: KeyActor,
                 ip: ClientIp) -> dict[str, Any]:
    """Record a verdict on one expert for one demand: contacted (已联系), accepted (同意对接), declined
    (婉拒), unsuitable (不合适) or succeeded (对接成功)."""
    with lock:
        entry = workflow.record_feedback(actor, body.demand_id, body.expert_id, body.verdict, body.note,
                                         ip=ip)
    return {"id": entry.id, "demand_id": entry.demand_id, "expert_id": entry.expert_id,
            "verdict": entry.verdict, "note": entry.note, "created_at": entry.created_at}
