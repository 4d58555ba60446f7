"""Experts: list and search, read, create, replace, delete. Writes are findable by /match at once."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import ConflictError, EngineDep, HasKey, RequireKey, WriteLock
from api.schemas import ErrorOut, ExpertIn, ExpertList, ExpertOut, expert_out
from matcher.errors import InputError, NotFoundError

router = APIRouter(prefix="/experts", tags=["experts"])

ExpertId = Annotated[str, Path(description="The expert's id.", max_length=100)]
AUTH = {401: {"model": ErrorOut, "description": "No API key, or a wrong one."}}
NOT_FOUND = {404: {"model": ErrorOut, "description": "No expert with this id."}}


@router.get("", response_model=ExpertList, response_model_exclude_unset=True)
def list_experts(
    engine: EngineDep,
    has_key: HasKey,
    q: Annotated[str, Query(max_length=200, description="Part of a name, institution, field, region.")] = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """A page of experts (by id), optionally searched; `count` is the total found."""
    experts, total = engine.store.search_experts(q.strip(), limit=limit, offset=offset)
    return {"data": [expert_out(e, include_contact=has_key) for e in experts], "count": total}


@router.get("/{expert_id}", response_model=ExpertOut, response_model_exclude_unset=True, responses=NOT_FOUND)
def get_expert(expert_id: ExpertId, engine: EngineDep, has_key: HasKey) -> dict[str, Any]:
    """One expert's full record; contact details only with an API key."""
    return expert_out(engine.store.get_expert(expert_id), include_contact=has_key)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ExpertOut,
    dependencies=[RequireKey],
    responses={**AUTH, 409: {"model": ErrorOut, "description": "The id is taken."}},
)
def create_expert(body: ExpertIn, engine: EngineDep, lock: WriteLock, response: Response) -> dict[str, Any]:
    """Add an expert; `/match` finds them as soon as this returns."""
    expert_id = body.id or f"api-{uuid.uuid4().hex[:12]}"
    expert = body.to_expert(expert_id)
    with lock:  # the existence check and the insert must not interleave with another writer
        try:
            engine.store.get_expert(expert_id)
        except NotFoundError:
            engine.upsert_experts([expert])
        else:
            raise ConflictError(
                f"an expert with id {expert_id!r} exists; use PUT /api/v1/experts/{expert_id} to change them"
            )
    # Headers are Latin-1: an id such as 专家-001 goes percent-encoded (it was a 500 after the write).
    response.headers["Location"] = f"/api/v1/experts/{quote(expert_id, safe='')}"
    return expert_out(expert, include_contact=True)


@router.put(
    "/{expert_id}", response_model=ExpertOut, dependencies=[RequireKey], responses={**AUTH, **NOT_FOUND}
)
def replace_expert(expert_id: ExpertId, body: ExpertIn, engine: EngineDep, lock: WriteLock) -> dict[str, Any]:
    """Replace an expert's record (fields left out become empty); `/match` reflects it at once."""
    if body.id is not None and body.id != expert_id:
        raise InputError(f"the body's id {body.id!r} differs from the URL's {expert_id!r}; ids cannot change")
    expert = body.to_expert(expert_id)
    with lock:
        engine.store.get_expert(expert_id)  # 404 for an unknown id: PUT edits, POST creates
        engine.upsert_experts([expert])
    return expert_out(expert, include_contact=True)


@router.delete(
    "/{expert_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[RequireKey],
    responses={**AUTH, **NOT_FOUND},
)
def delete_expert(expert_id: ExpertId, engine: EngineDep, lock: WriteLock) -> Response:
    """Remove an expert; they leave `/match` results at once."""
    with lock:
        engine.delete_expert(expert_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
