"""The staff page (GET /) and an expert's profile page (GET /experts/{id}), rendered by Jinja2.

Jinja2 autoescapes every value; the match page builds its results in the browser with
`textContent` (static/app.js), never with `innerHTML`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from api.deps import EngineDep, SettingsDep, WriteLock
from api.export import FIELD_NAMES
from api.render import render
from api.session import SessionDep
from matcher.errors import InputError, NotFoundError
from matcher.intake import DOCUMENT_LABELS
from matcher.models import VERDICT_LABELS, Expert
from matcher.reverse import demand_index, plan_visit
from matcher.timefmt import now_local
from matcher.workflow import Workflow, parse_date

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def index(request: Request, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    return render(
        request, "index.html", {"session": session, "nav": "match", "max_chars": settings.max_text_chars}
    )


@router.get("/experts/{expert_id}", response_class=HTMLResponse)
def expert_page(expert_id: str, request: Request, engine: EngineDep, session: SessionDep, lock: WriteLock,
                done: Annotated[str, Query(max_length=20)] = "",
                visit: Annotated[str, Query(max_length=10)] = "") -> HTMLResponse:
    try:
        expert = engine.get_expert(expert_id)
    except NotFoundError:
        return render(request, "expert.html", {"session": session, "nav": "experts", "expert": None,
                                               "expert_id": expert_id}, status_code=404)
    # Signed-in staff also see the expert's history, can correct the record and pause recommendations.
    staff = {} if session is None else {
        "history": Workflow(engine).expert_history(expert_id),
        "today": now_local(engine.settings.timezone).date().isoformat(), "verdict_labels": VERDICT_LABELS,
        "flash": EXPERT_FLASH.get(done, ""), "document_kinds": DOCUMENT_LABELS,
        **_reverse(engine, lock, expert, visit),
    }
    return render(request, "expert.html", {"session": session, "nav": "experts", "expert": expert,
                                           "expert_id": expert_id, "kinds": FIELD_NAMES, **staff})


EXPERT_FLASH = {
    "paused": "已暂停推荐：夜间批处理不再推荐该专家，实时排序中会标出。",
    "resumed": "已恢复推荐。",
    "edited": "档案已保存，匹配立即按新的档案进行。",
    "unchanged": "档案没有改动。",
    "document": "已添加到档案，匹配立即用上这一项。",
}


def _reverse(engine: EngineDep, lock: WriteLock, expert: Expert, visit: str) -> dict[str, object]:
    """The open demands the expert could help with, and (with `visit`, a date) a day's visit plan."""
    out: dict[str, object] = {"visit": visit, "reverse": [], "plan": None, "visit_error": ""}
    index = demand_index(engine, write_lock=lock)
    try:
        out["reverse"] = index.for_expert(expert.id, 8)
        if visit:
            out["plan"] = plan_visit(engine, expert.id, parse_date(visit, "visit"))
    except InputError as exc:
        out["visit_error"] = exc.message
    return out
