"""The staff page (GET /) and an expert's profile page (GET /experts/{id}), rendered by Jinja2.

Jinja2 autoescapes every value; the match page builds its results in the browser with
`textContent` (static/app.js), never with `innerHTML`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

import matcher
from api.deps import EngineDep
from api.export import FIELD_NAMES
from matcher.errors import NotFoundError

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "index.html", {"version": matcher.__version__})


@router.get("/experts/{expert_id}", response_class=HTMLResponse)
def expert_page(expert_id: str, request: Request, engine: EngineDep) -> HTMLResponse:
    try:
        expert = engine.store.get_expert(expert_id)
    except NotFoundError:
        return templates.TemplateResponse(
            request,
            "expert.html",
            {"expert": None, "expert_id": expert_id, "version": matcher.__version__},
            status_code=404,
        )
    return templates.TemplateResponse(
        request,
        "expert.html",
        {"expert": expert, "expert_id": expert_id, "kinds": FIELD_NAMES, "version": matcher.__version__},
    )
