"""Feedback: what staff did with a recommendation. It counts: an expert declined (婉拒) or found
unsuitable (不合适) for a demand is never recommended for it again, verdicts move the demand's
status on, the matcher learns from them (`matcher.learning`), `matcher eval --feedback` scores the
ranker against them, and each is audited; a verdict given by mistake is withdrawn (deleted, audited)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, status

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


@router.delete(
    "/{feedback_id}",
    response_model=FeedbackOut,
    operation_id="withdrawFeedback",
    responses={**WRITE_AUTH, 404: {"model": ErrorOut, "description": "No verdict with this id"}},
)
def withdraw_feedback(workflow: WorkflowDep, lock: WriteLock, actor: KeyActor, ip: ClientIp,
                      feedback_id: int = Path(ge=1, le=2**62)) -> dict[str, Any]:
    """Withdraw a verdict given by mistake: it is deleted, and with it what it did (an expert it
    ruled out may be recommended again; what the matcher learned from it is unlearned). The
    response is the verdict as it was; the audit log keeps it too."""
    with lock:
        gone = workflow.withdraw_feedback(actor, feedback_id, ip=ip)
    return {"id": gone.id, "demand_id": gone.demand_id, "expert_id": gone.expert_id,
            "verdict": gone.verdict, "note": gone.note, "created_at": gone.created_at}
