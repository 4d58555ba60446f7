"""The staff page (GET /) and an expert's profile page (GET /experts/{id}), rendered by Jinja2.

Jinja2 autoescapes every value; the match page builds its results in the browser with
`textContent` (static/app.js), never with `innerHTML`.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

import matcher
from api.deps import EngineDep, WriteLock
from api.export import FIELD_NAMES
from api.session import SessionDep
from matcher.errors import InputError, NotFoundError
from matcher.models import VERDICT_LABELS, Expert
from matcher.reverse import demand_index, plan_visit
from matcher.workflow import Workflow, parse_date

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "index.html", {"version": matcher.__version__})


@router.get("/experts/{expert_id}", response_class=HTMLResponse)
def expert_page(expert_id: str, request: Request, engine: EngineDep, session: SessionDep, lock: WriteLock,
                done: Annotated[str, Query(max_length=20)] = "",
                visit: Annotated[str, Query(max_length=10)] = "") -> HTMLResponse:
    try:
        expert = engine.get_expert(expert_id)
    except NotFoundError:
        return templates.TemplateResponse(
            request,
            "expert.html",
            {"expert": None, "expert_id": expert_id, "version": matcher.__version__},
            status_code=404,
        )
    # Signed-in staff also see the expert's history and can pause their recommendations.
    staff = {} if session is None else {
        "session": session, "history": Workflow(engine).expert_history(expert_id),
        "today": date.today().isoformat(), "verdict_labels": VERDICT_LABELS,
        "flash": _EXPERT_FLASH.get(done, ""), **_reverse(engine, lock, expert, visit),
    }
    return templates.TemplateResponse(
        request,
        "expert.html",
        {"expert": expert, "expert_id": expert_id, "kinds": FIELD_NAMES, "version": matcher.__version__,
         **staff},
    )


_EXPERT_FLASH = {
    "paused": "已暂停推荐：夜间批处理不再推荐该专家，实时排序中会标出。",
    "resumed": "已恢复推荐。",
}


def _reverse(engine: EngineDep, lock: WriteLock, expert: Expert, visit: str) -> dict[str, object]:
    """The open demands the expert could help with, and (with `visit`, a date) a day's visit plan."""
    out: dict[str, object] = {"visit": visit, "reverse": [], "plan": None, "visit_error": ""}
    index = demand_index(engine, write_lock=lock)
    try:
        out["reverse"] = index.for_expert(expert.id, 8)
        if visit:
            out["plan"] = plan_visit(engine, expert.id, parse_date(visit, "date"))
    except InputError as exc:
        out["visit_error"] = exc.message
    return out
