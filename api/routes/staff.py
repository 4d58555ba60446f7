"""The staff's pages: sign-in, the demand inbox (/demands), a demand with its recommendations and
the feedback buttons (/demands/{id}), an expert's contact details, pausing, and the audit log.

Every page here needs a signed-in staff member (GETs redirect to /login); every write is an HTML
form POST checked by `api.session.require_writer` (session, same site, CSRF token) and made by
`matcher.workflow.Workflow`, which writes its audit entry in the same transaction. Nothing on these
pages runs inline script (the CSP forbids it): they work without JavaScript.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api import charts
from api.deps import AccountsDep, ClientIp, EngineDep, SettingsDep, WorkflowDep, WriteLock
from api.export import FIELD_NAMES
from api.render import problem, render
from api.routes.intake import imported_flash
from api.session import (
    LOGIN_COOKIE,
    SessionDep,
    clear_session_cookie,
    login_redirect,
    login_token_ok,
    new_login_token,
    require_writer,
    safe_next,
    set_session_cookie,
)
from matcher.accounts import Session
from matcher.errors import AuthError, InputError, LockedOutError, MatcherError, NotFoundError
from matcher.models import DEMAND_STATUS_LABELS, OUTCOME_KINDS, VERDICT_LABELS, VERDICTS, now_iso
from matcher.stats import FUNNEL, FUNNEL_LABELS
from matcher.stats import compute as compute_stats
from matcher.timefmt import local_time, now_local
from matcher.workflow import Workflow, parse_date

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 30
# The buttons of a recommendation, in the order staff meet them.
VERDICT_BUTTONS = [
    (v, VERDICT_LABELS[v]) for v in ("contacted", "accepted", "declined", "unsuitable", "succeeded")
]
assert {v for v, _ in VERDICT_BUTTONS} == set(VERDICTS)
FormText = Annotated[str, Form(max_length=4000)]
FormToken = Annotated[str, Form(max_length=200)]


# -- signing in and out --------------------------------------------------------------------------
def _login_page(
    request: Request,
    settings: SettingsDep,
    *,
    next_: str = "",
    username: str = "",
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    token = new_login_token()
    page = render(
        request,
        "login.html",
        {
            "session": None,
            "login_token": token,
            "next": safe_next(next_),
            "username": username,
            "error": error,
            "max_failures": settings.login_max_failures,
            "lockout_minutes": int(settings.login_lockout_minutes),
        },
        status_code=status_code,
    )
    page.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
        path="/login",
    )
    return page


@router.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    next_: Annotated[str, Query(alias="next", max_length=500)] = "",
) -> Response:
    if session is not None:
        return RedirectResponse(safe_next(next_), status_code=303)
    return _login_page(request, settings, next_=next_)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    settings: SettingsDep,
    accounts: AccountsDep,
    lock: WriteLock,
    ip: ClientIp,
    username: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    login_token: FormToken = "",
    next_: Annotated[str, Form(alias="next", max_length=500)] = "",
) -> Response:
    if not login_token_ok(request, login_token):
        return _login_page(
            request,
            settings,
            next_=next_,
            username=username,
            status_code=403,
            error="登录表单已过期或来自其他网站，请重新登录。",
        )
    try:
        with lock:
            signed = accounts.sign_in(username, password, ip=ip)
    except LockedOutError as exc:
        return _login_page(
            request, settings, next_=next_, username=username, error=exc.message, status_code=429
        )
    except AuthError:
        return _login_page(
            request, settings, next_=next_, username=username, status_code=401, error="用户名或密码错误。"
        )
    # A one-time password (set by an administrator) is replaced by the owner's own first.
    target = "/account?first=1" if signed.session.user.must_change else safe_next(next_)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, signed.token, settings)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(
    request: Request,
    settings: SettingsDep,
    accounts: AccountsDep,
    session: SessionDep,
    lock: WriteLock,
    ip: ClientIp,
    csrf_token: FormToken = "",
) -> Response:
    try:
        require_writer(request, session, csrf_token)
    except MatcherError as exc:
        return problem(request, session, exc)
    with lock:
        accounts.sign_out(request.cookies.get("jq_session"), ip=ip)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, settings)
    return response


# -- the inbox -----------------------------------------------------------------------------------
@router.get("/demands", response_class=HTMLResponse)
def inbox_page(
    request: Request,
    session: SessionDep,
    workflow: WorkflowDep,
    status: Annotated[str, Query(max_length=20)] = "",
    industry: Annotated[str, Query(max_length=100)] = "",
    region: Annotated[str, Query(max_length=100)] = "",
    date_from: Annotated[str, Query(alias="from", max_length=10)] = "",
    date_to: Annotated[str, Query(alias="to", max_length=10)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    done: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    if session is None:
        return login_redirect(request)
    try:
        inbox = workflow.inbox(
            status=status or None,
            industry=industry,
            region=region,
            date_from=date_from or None,
            date_to=date_to or None,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
    except MatcherError as exc:
        return problem(request, session, exc, back="/demands")
    params = {
        k: v
        for k, v in (
            ("status", status),
            ("industry", industry),
            ("region", region),
            ("from", date_from),
            ("to", date_to),
        )
        if v
    }

    def url(**changes: Any) -> str:
        q = {**params, **changes}
        return "/demands" + ("?" + urlencode({k: v for k, v in q.items() if v}) if any(q.values()) else "")

    def tab_url(code: str) -> str:
        return url(status=code, page="")

    first = (page - 1) * PAGE_SIZE + 1
    return render(
        request,
        "demands.html",
        {
            "session": session,
            "nav": "demands",
            "inbox": inbox,
            "status_labels": DEMAND_STATUS_LABELS,
            "filters": {
                "status": status,
                "industry": industry,
                "region": region,
                "date_from": date_from,
                "date_to": date_to,
                "any": bool(industry or region or date_from or date_to),
            },
            "tab_url": tab_url,
            "first": first,
            "last": first + len(inbox.rows) - 1,
            "prev_url": url(page=str(page - 1)) if page > 1 else "",
            "next_url": url(page=str(page + 1)) if first - 1 + len(inbox.rows) < inbox.total else "",
            "download_url": "/demands.xlsx" + ("?" + urlencode(params) if params else ""),
            "flash": imported_flash(done) or {"password": "密码已修改。"}.get(done, ""),
        },
    )


# -- one demand ----------------------------------------------------------------------------------
_FLASH: dict[str, Callable[[str], str]] = {
    "status": lambda v: f"状态已改为「{DEMAND_STATUS_LABELS.get(v, v)}」。",
    "contacted": lambda name: f"已记录：已联系 {name}。",
    "accepted": lambda name: f"已记录：{name} 同意对接。",
    "declined": lambda name: f"已记录：{name} 婉拒。该专家不会再被推荐给这条需求。",
    "unsuitable": lambda name: f"已记录：{name} 不合适。该专家不会再被推荐给这条需求。",
    "succeeded": lambda name: f"已记录：与 {name} 对接成功。",
    "outcome": lambda kind: f"已记录成果：{kind}。",
    "outcome-deleted": lambda _: "已删除该成果记录。",
    "withdrawn": lambda name: f"已撤回对 {name} 的反馈：它不再排除该专家，系统也不再从中学习。",
    "created": lambda _: "需求已保存到收件箱（新需求）：下一次批处理会为它推荐专家，下面是现在的实时排序。",
    "saved": lambda _: "需求已连同实时匹配的推荐名单保存到收件箱，可以开始联系专家、记录反馈。",
    "saved-updated": lambda _: "需求已保存到收件箱。专家库在您匹配之后有更新，推荐名单按保存时的最新排序保存，"
                               "与刚才页面上的名单略有不同，请以下面的名单为准。",
}


def demand_context(workflow: Workflow, demand_id: str, session: Session) -> dict[str, Any]:
    recs = workflow.recommendations(demand_id)
    history = workflow.store.feedback_entries(where="demand_id = ?", params=[demand_id])[::-1]
    outcomes = workflow.store.list_outcomes(demand_id=demand_id, limit=None)
    named = {f.expert_id for f in history} | {e for o in outcomes for e in o.expert_ids}
    names = {e.id: e.name for e in workflow.store.get_experts(named)}
    return {
        "session": session,
        "nav": "demands",
        "demand": recs.demand,
        "recs": recs,
        "history": history,
        "names": names,
        "status_labels": DEMAND_STATUS_LABELS,
        "verdict_labels": VERDICT_LABELS,
        "verdict_buttons": VERDICT_BUTTONS,
        "kinds": FIELD_NAMES,
        # Outcomes (issue 17): the form offers the experts met on this demand.
        "outcomes": outcomes,
        "outcome_kinds": OUTCOME_KINDS,
        "outcome_experts": _outcome_choices(workflow, recs, history),
        "today": now_local(workflow.engine.settings.timezone).date().isoformat(),
    }


def _outcome_choices(workflow: Workflow, recs: Any, history: list[Any]) -> list[tuple[str, str, bool]]:
    """Experts an outcome of this demand may name, and whether the form ticks them: those with a
    verdict first (ticked when they agreed or succeeded), then the others recommended. An expert
    who declined or was found unsuitable is not offered, and so never ticked."""
    ruled_out = {x.expert.id for x in recs.excluded}
    latest: dict[str, str] = {}
    for f in history:  # newest first
        latest.setdefault(f.expert_id, f.verdict)
    ids = [i for i in dict.fromkeys([*(f.expert_id for f in history), *(r.expert.id for r in recs.items)])
           if i not in ruled_out]
    names = {e.id: e.name for e in workflow.store.get_experts(ids)}
    return [(i, names.get(i, i), latest.get(i) in ("accepted", "succeeded")) for i in ids if i in names]


def demand_flash(workflow: Workflow, done: str) -> str:
    kind, _, value = done.partition(":")
    make = _FLASH.get(kind)
    if make is None:
        return ""
    if kind not in ("status", "outcome", "outcome-deleted", "created", "saved"):
        with contextlib.suppress(NotFoundError):
            value = workflow.store.get_expert(value).name or value
    return make(value)


@router.get("/demands/{demand_id}", response_class=HTMLResponse)
def demand_page(
    request: Request,
    demand_id: str,
    session: SessionDep,
    workflow: WorkflowDep,
    done: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    if session is None:
        return login_redirect(request)
    try:
        context = demand_context(workflow, demand_id, session)
    except MatcherError as exc:
        return problem(request, session, exc, back="/demands")
    return render(request, "demand.html", {**context, "flash": demand_flash(workflow, done) if done else ""})


def _back_to_demand(demand_id: str, done: str) -> RedirectResponse:
    return RedirectResponse(
        f"/demands/{quote(demand_id, safe='')}?done={quote(done, safe=':')}#recommendations", status_code=303
    )


def _refused(
    request: Request, workflow: Workflow, demand_id: str, session: Session, exc: MatcherError
) -> Response:
    """A write that failed validation: the demand page again, saying why (nothing was written)."""
    if isinstance(exc, InputError):
        try:
            return render(
                request,
                "demand.html",
                {**demand_context(workflow, demand_id, session), "error": exc.message},
                status_code=422,
            )
        except MatcherError:
            pass
    return problem(request, session, exc, back=f"/demands/{quote(demand_id, safe='')}")


@router.post("/demands/{demand_id}/feedback")
def demand_feedback(
    request: Request,
    demand_id: str,
    session: SessionDep,
    workflow: WorkflowDep,
    lock: WriteLock,
    ip: ClientIp,
    csrf_token: FormToken = "",
    expert_id: Annotated[str, Form(max_length=100)] = "",
    verdict: Annotated[str, Form(max_length=20)] = "",
    note: FormText = "",
) -> Response:
    try:
        writer = require_writer(request, session, csrf_token)
    except MatcherError as exc:
        return problem(request, session, exc)
    try:
        with lock:
            workflow.record_feedback(writer.actor, demand_id, expert_id, verdict, note, ip=ip)
    except MatcherError as exc:
        return _refused(request, workflow, demand_id, writer, exc)
    return _back_to_demand(demand_id, f"{workflow.verdict(verdict)}:{expert_id}")


@router.post("/demands/{demand_id}/status")
def demand_status_form(
    request: Request,
    demand_id: str,
    session: SessionDep,
    workflow: WorkflowDep,
    lock: WriteLock,
    ip: ClientIp,
    csrf_token: FormToken = "",
    status: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    try:
        writer = require_writer(request, session, csrf_token)
    except MatcherError as exc:
        return problem(request, session, exc)
    try:
        with lock:
            demand = workflow.set_status(writer.actor, demand_id, status, ip=ip)
    except MatcherError as exc:
        return _refused(request, workflow, demand_id, writer, exc)
    return _back_to_demand(demand_id, f"status:{demand.status}")


# -- experts: contact details, pausing -----------------------------------------------------------
@router.post("/experts/{expert_id}/contact", response_class=HTMLResponse)
def contact_page(
    request: Request,
    expert_id: str,
    session: SessionDep,
    workflow: WorkflowDep,
    lock: WriteLock,
    ip: ClientIp,
    csrf_token: FormToken = "",
    demand: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """An expert's phone and e-mail, for signed-in staff; each view is audited (PIPL). A POST with
    the session's CSRF token from this site: a cross-site link or a prefetch cannot make a view
    that the audit log would put in the staff member's name (a GET could, with a SameSite=Lax
    cookie on a top-level navigation)."""
    try:
        viewer = require_writer(request, session, csrf_token)
        expert = workflow.store.get_expert(expert_id)
        with lock:
            workflow.contact(
                viewer.actor, expert_id, ip=ip, where=f"demand {demand}" if demand else "expert page"
            )
    except MatcherError as exc:
        return problem(request, session, exc)
    back = f"/demands/{quote(demand, safe='')}" if demand else f"/experts/{quote(expert_id, safe='')}"
    response = render(
        request,
        "contact.html",
        {"session": session, "expert": expert, "back": back,
         "now": local_time(now_iso(), workflow.engine.settings.timezone)},
    )
    response.headers["Cache-Control"] = "no-store"  # personal data: not kept by the browser's cache
    return response


@router.get("/experts/{expert_id}/contact")
def contact_link(expert_id: str) -> RedirectResponse:
    """An old bookmark of the contact page: to the expert's page, where the button asks again."""
    return RedirectResponse(f"/experts/{quote(expert_id, safe='')}", status_code=303)


def _back_to_expert(expert_id: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"/experts/{quote(expert_id, safe='')}?done={done}", status_code=303)


@router.post("/experts/{expert_id}/pause")
def pause_form(
    request: Request,
    expert_id: str,
    session: SessionDep,
    workflow: WorkflowDep,
    lock: WriteLock,
    ip: ClientIp,
    csrf_token: FormToken = "",
    until: Annotated[str, Form(max_length=20)] = "",
    reason: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    back = f"/experts/{quote(expert_id, safe='')}"
    try:
        writer = require_writer(request, session, csrf_token)
    except MatcherError as exc:
        return problem(request, session, exc)
    try:
        day = parse_date(until, "until")
        if day < now_local(workflow.engine.settings.timezone).date():
            raise InputError(f"暂停截止日期「{until}」已经过去：请填写今天或以后的日期")
    except MatcherError as exc:
        return problem(request, session, exc, back=back)
    try:
        with lock:
            workflow.pause(writer.actor, expert_id, day, reason, ip=ip)
    except MatcherError as exc:
        return problem(request, session, exc, back=f"/experts/{quote(expert_id, safe='')}")
    return _back_to_expert(expert_id, "paused")


@router.post("/experts/{expert_id}/resume")
def resume_form(
    request: Request,
    expert_id: str,
    session: SessionDep,
    workflow: WorkflowDep,
    lock: WriteLock,
    ip: ClientIp,
    csrf_token: FormToken = "",
) -> Response:
    try:
        writer = require_writer(request, session, csrf_token)
        with lock:
            workflow.resume(writer.actor, expert_id, ip=ip)
    except MatcherError as exc:
        return problem(request, session, exc)
    return _back_to_expert(expert_id, "resumed")


# -- outcomes on a demand's page (issue 17) ------------------------------------------------------
@router.post("/demands/{demand_id}/outcomes")
def outcome_form(
    request: Request,
    demand_id: str,
    session: SessionDep,
    workflow: WorkflowDep,
    lock: WriteLock,
    ip: ClientIp,
    csrf_token: FormToken = "",
    kind: Annotated[str, Form(max_length=20)] = "",
    value: Annotated[str, Form(max_length=30)] = "",
    day: Annotated[str, Form(alias="date", max_length=20)] = "",
    note: FormText = "",
    expert_ids: Annotated[list[str], Form(max_length=40)] = [],  # noqa: B006 - FastAPI reads the default
) -> Response:
    try:
        writer = require_writer(request, session, csrf_token)
    except MatcherError as exc:
        return problem(request, session, exc)
    try:
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"数值「{value}」不是数字 (value must be a number)") from None
        with lock:
            workflow.record_outcome(writer.actor, demand_id, expert_ids, kind, number, day, note, ip=ip)
    except MatcherError as exc:
        return _refused(request, workflow, demand_id, writer, exc)
    return RedirectResponse(
        f"/demands/{quote(demand_id, safe='')}?done=outcome:{quote(kind)}#outcomes", status_code=303
    )


@router.post("/outcomes/{outcome_id}/delete")
def outcome_delete(
    request: Request,
    outcome_id: int,
    session: SessionDep,
    workflow: WorkflowDep,
    lock: WriteLock,
    ip: ClientIp,
    csrf_token: FormToken = "",
) -> Response:
    try:
        writer = require_writer(request, session, csrf_token)
        with lock:
            gone = workflow.delete_outcome(writer.actor, outcome_id, ip=ip)
    except MatcherError as exc:
        return problem(request, session, exc)
    return RedirectResponse(
        f"/demands/{quote(gone.demand_id, safe='')}?done=outcome-deleted#outcomes", status_code=303
    )


# -- statistics ----------------------------------------------------------------------------------
@router.get("/stats", response_class=HTMLResponse)
def stats_page(
    request: Request,
    session: SessionDep,
    engine: EngineDep,
    date_from: Annotated[str, Query(alias="from", max_length=10)] = "",
    date_to: Annotated[str, Query(alias="to", max_length=10)] = "",
) -> Response:
    if session is None:
        return login_redirect(request)
    try:
        lo = parse_date(date_from, "from") if date_from else None
        hi = parse_date(date_to, "to") if date_to else None
        stats = compute_stats(engine, lo, hi)
    except MatcherError as exc:
        return problem(request, session, exc, back="/stats")
    kinds = list(OUTCOME_KINDS)
    chart_set = {
        "funnel": charts.funnel([(FUNNEL_LABELS[s], stats.funnel[s]) for s in FUNNEL]),
        # Records per kind: totals in 件, 人 and 万元 share no scale (the table beside gives them).
        "outcomes": charts.hbar(
            [(k, stats.outcome_counts[k]) for k in kinds], title="成果记录（按类别，条）", label_width=110
        ),
        "months": charts.columns(
            [(r.name, r.received, r.succeeded) for r in stats.by_month],
            title="按月：收到需求与对接成功",
            legend=("收到需求", "对接成功"),
        ),
        "industry": charts.hbar(
            [(r.name, r.received) for r in stats.by_industry[:12]], title="按行业：收到需求", color="#1864ab"
        ),
        "region": charts.hbar(
            [(r.name, r.received) for r in stats.by_region[:12]],
            title="按地区（地级市）：收到需求",
            color="#2b8a3e",
        ),
    }
    query = (
        "?" + urlencode({k: v for k, v in (("from", date_from), ("to", date_to)) if v})
        if date_from or date_to
        else ""
    )
    return render(
        request,
        "stats.html",
        {
            "session": session,
            "nav": "stats",
            "stats": stats,
            "charts": chart_set,
            "funnel_labels": FUNNEL_LABELS,
            "outcome_units": OUTCOME_KINDS,
            "filters": {"date_from": date_from, "date_to": date_to},
            "query": query,
            "fmt": lambda v: f"{int(v):,}" if float(v).is_integer() else f"{v:,.2f}",
        },
    )
