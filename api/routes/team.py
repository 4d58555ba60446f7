"""POST /team: a team of experts (组团) that covers every part of a pasted demand."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import OPTIONAL_KEY, ApiActor, ClientIp, EngineDep, SeesContacts, WorkflowDep, WriteLock
from api.routes.match import ERRORS
from api.schemas import TeamIn, TeamOut
from matcher import Filters
from matcher.team import recommend_team

router = APIRouter(tags=["team"])


@router.post("/team", response_model=TeamOut, response_model_exclude_unset=True, responses=ERRORS,
             openapi_extra=OPTIONAL_KEY)
def team(body: TeamIn, engine: EngineDep, workflow: WorkflowDep, lock: WriteLock, sees_contacts: SeesContacts,
         actor: ApiActor, ip: ClientIp) -> dict[str, Any]:
    """Recommend `size` experts who together cover the parts (aspects) of the demand.

    Each aspect lists the members who cover it; each member lists the aspects it covers, with
    the matched terms and evidence for each. Contact details only with an admin key, and
    such a view is audited.
    """
    f = body.filters
    filters = Filters(
        region=f.region.strip(),
        title=f.title.strip(),
        exclude_institutions=tuple(i.strip() for i in f.exclude_institutions if i.strip()),
    )
    result = recommend_team(engine, body.text, size=body.size, filters=filters,
                            one_per_institution=body.one_per_institution)
    if sees_contacts and actor and result.members:
        with lock:
            workflow.log_contact_view(actor, [m.expert.id for m in result.members], where="team", ip=ip)
    return result.to_dict(include_contact=sees_contacts)
