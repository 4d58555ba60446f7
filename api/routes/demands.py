"""Demands: store an enterprise's demand, read it, and rank experts for it under its 回避 rules."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import ConflictError, EngineDep, HasKey, RequireKey, WriteLock
from api.schemas import (
    MAX_TOP_K,
    DemandIn,
    DemandOut,
    ErrorOut,
    MatchList,
    NeedsTeamIn,
    TeamOut,
    match_list,
)
from matcher.errors import NotFoundError
from matcher.team import MAX_SIZE, recommend_team

router = APIRouter(prefix="/demands", tags=["demands"])

DemandId = Annotated[str, Path(description="The demand's id.", max_length=100)]
NOT_FOUND = {404: {"model": ErrorOut, "description": "No demand with this id."}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DemandOut,
    dependencies=[RequireKey],
    responses={401: {"model": ErrorOut}, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
def create_demand(body: DemandIn, engine: EngineDep, lock: WriteLock, response: Response) -> dict[str, Any]:
    """Store a demand (status `new`); the nightly batch and `/demands/{id}/matches` pick it up."""
    demand = body.to_demand(body.id or f"api-{uuid.uuid4().hex[:12]}")
    engine.check_text(demand.text)  # a demand with no words could never be matched
    with lock:
        try:
            engine.store.get_demand(demand.id)
        except NotFoundError:
            engine.add_demands([demand])
        else:
            raise ConflictError(f"a demand with id {demand.id!r} exists; choose another id")
    response.headers["Location"] = f"/api/v1/demands/{quote(demand.id, safe='')}"  # Latin-1 header
    return demand.to_dict()


@router.get("/{demand_id}", response_model=DemandOut, responses=NOT_FOUND)
def get_demand(demand_id: DemandId, engine: EngineDep) -> dict[str, Any]:
    return engine.store.get_demand(demand_id).to_dict()


@router.get(
    "/{demand_id}/matches", response_model=MatchList, response_model_exclude_unset=True, responses=NOT_FOUND
)
def demand_matches(
    demand_id: DemandId,
    engine: EngineDep,
    has_key: HasKey,
    top_k: Annotated[int | None, Query(ge=1, le=MAX_TOP_K, description="How many (default 10).")] = None,
) -> dict[str, Any]:
    """Rank experts for a stored demand, leaving out its enterprise's and avoided institutions' experts."""
    demand = engine.store.get_demand(demand_id)
    return match_list(engine.match_demand(demand, top_k=top_k), include_contact=has_key)


@router.put(
    "/{demand_id}/needs-team",
    response_model=DemandOut,
    dependencies=[RequireKey],
    responses={**NOT_FOUND, 401: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
def set_needs_team(
    demand_id: DemandId, body: NeedsTeamIn, engine: EngineDep, lock: WriteLock
) -> dict[str, Any]:
    """Mark a demand as needing a team (组团需求), or not: `matcher batch --team` then recommends one."""
    with lock:
        demand = replace(engine.store.get_demand(demand_id), needs_team=body.needs_team)
        engine.add_demands([demand])
    return demand.to_dict()


@router.get(
    "/{demand_id}/team", response_model=TeamOut, response_model_exclude_unset=True, responses=NOT_FOUND
)
def demand_team(
    demand_id: DemandId,
    engine: EngineDep,
    has_key: HasKey,
    size: Annotated[int, Query(ge=1, le=MAX_SIZE, description="How many experts in the team.")] = 3,
) -> dict[str, Any]:
    """A team for a stored demand, under its 回避 rules (its title and keywords emphasised)."""
    demand = engine.store.get_demand(demand_id)
    return recommend_team(engine, demand.text, size=size, demand=demand).to_dict(include_contact=has_key)
