"""The audit log (admins): each entry a Chinese sentence (`matcher.auditlog`), its time in the
科协's zone; filtered by user, by action (the codes stay the filter's values) and by date."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.deps import EngineDep, WorkflowDep
from api.render import problem, render
from api.session import SessionDep, login_redirect
from matcher.accounts import Session
from matcher.auditlog import ACTIONS, actor_label, describe, expert_ids
from matcher.errors import ForbiddenError, MatcherError
from matcher.timefmt import local_time
from matcher.workflow import parse_date

router = APIRouter(include_in_schema=False)
SHOWN = 500


def admin_period(request: Request, session: Session | None, date_from: str,
                 date_to: str) -> tuple[str | None, str | None] | Response:
    """The audit log's period (ISO days, None when open) for an administrator; otherwise the
    sign-in redirect or the refusal, and a malformed day a Chinese problem page. Shared by the
    page and its download."""
    if session is None:
        return login_redirect(request)
    if session.user.role != "admin":
        return problem(request, session, ForbiddenError("只有管理员可以查看审计日志"))
    try:
        lo = parse_date(date_from, "from").isoformat() if date_from else None
        hi = parse_date(date_to, "to").isoformat() if date_to else None
    except MatcherError as exc:
        return problem(request, session, exc, back="/audit")
    return lo, hi


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    session: SessionDep,
    engine: EngineDep,
    workflow: WorkflowDep,
    user: Annotated[str, Query(max_length=100)] = "",
    action: Annotated[str, Query(max_length=40)] = "",
    date_from: Annotated[str, Query(alias="from", max_length=10)] = "",
    date_to: Annotated[str, Query(alias="to", max_length=10)] = "",
) -> Response:
    period = admin_period(request, session, date_from, date_to)
    if isinstance(period, Response):
        return period
    lo, hi = period
    tz = engine.settings.timezone
    code = action if action in ACTIONS else ""
    entries, total = workflow.audit_log(actor=user.strip() or None, action=code or None, date_from=lo,
                                        date_to=hi, limit=SHOWN)
    names = {e.id: e.name for e in engine.get_experts({i for a in entries for i in expert_ids(a)})}
    shown = [
        {
            "at": local_time(a.at, tz, label=False, seconds=True),
            "actor": actor_label(a.actor),
            "code": a.action,
            "label": ACTIONS.get(a.action, "其他操作"),
            "sentence": describe(a, names, tz),
            "ip": a.ip,
        }
        for a in entries
    ]
    filters = {"user": user, "action": code, "date_from": date_from, "date_to": date_to}
    query = urlencode(
        {k: v for k, v in (("user", user), ("action", code), ("from", date_from), ("to", date_to)) if v}
    )
    return render(request, "audit.html", {
        "session": session, "nav": "audit", "entries": shown, "total": total, "filters": filters,
        "actions": ACTIONS, "download_url": "/audit.xlsx" + (f"?{query}" if query else ""),
    })
