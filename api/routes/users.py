"""Staff accounts on the pages (`matcher.accounts`): administrators add a user with a role, disable,
enable and unlock accounts, and reset a password (a one-time password shown once, on the page that
made it); everyone changes their own password at /account (and must, after a one-time one).

The first administrator is still made on the command line (`matcher users add NAME --role admin`):
a fresh server has no one who could sign in to make it. Every change is an HTML form POST checked
like every page write (session, same site, CSRF token) and audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import AccountsDep, ClientIp, SettingsDep, WriteLock
from api.render import problem, render
from api.session import COOKIE, SessionDep, login_redirect, require_writer
from matcher.accounts import ROLES, Accounts, Session
from matcher.errors import ForbiddenError, InputError, MatcherError
from matcher.models import now_iso
from matcher.timefmt import local_time

router = APIRouter(include_in_schema=False)

FormToken = Annotated[str, Form(max_length=200)]
Name = Annotated[str, Form(max_length=100)]
ROLE_LABELS = {"staff": "工作人员", "admin": "管理员"}


def _admin(session: Session | None) -> Session:
    if session is not None and session.user.role != "admin":
        raise ForbiddenError("只有管理员可以管理账号")
    return session  # type: ignore[return-value]


def _users_page(
    request: Request,
    session: Session,
    accounts: Accounts,
    settings: SettingsDep,
    *,
    made: tuple[str, str, str] | None = None,
    flash: str = "",
    status_code: int = 200,
) -> Response:
    tz = settings.timezone
    now = now_iso()
    rows = []
    for u in accounts.users():
        locked = bool(u.locked_until and u.locked_until > now)
        rows.append({
            "name": u.username, "role": ROLE_LABELS.get(u.role, u.role),
            "created_at": local_time(u.created_at, tz, label=False),
            "last_login_at": local_time(u.last_login_at, tz, label=False) if u.last_login_at else "从未登录",
            "disabled": u.disabled, "locked": local_time(u.locked_until, tz, label=False) if locked else "",
            "must_change": u.must_change, "self": u.username == session.user.username,
        })
    response = render(request, "admin_users.html", {
        "session": session, "nav": "users", "users": rows, "roles": [(r, ROLE_LABELS[r]) for r in ROLES],
        "made": made, "flash": flash,
    }, status_code=status_code)
    if made:
        response.headers["Cache-Control"] = "no-store"  # the one-time password is on this page once
    return response


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(
    request: Request, session: SessionDep, accounts: AccountsDep, settings: SettingsDep
) -> Response:
    if session is None:
        return login_redirect(request)
    try:
        _admin(session)
    except MatcherError as exc:
        return problem(request, session, exc)
    return _users_page(request, session, accounts, settings)


@router.post("/admin/users")
def add_user(request: Request, session: SessionDep, accounts: AccountsDep, settings: SettingsDep,
             lock: WriteLock, ip: ClientIp, csrf_token: FormToken = "", username: Name = "",
             role: Annotated[str, Form(max_length=10)] = "staff") -> Response:
    try:
        writer = _admin(require_writer(request, session, csrf_token))
        with lock:
            user, password = accounts.add_user_with_one_time_password(
                username, role, actor=writer.actor, ip=ip
            )
    except MatcherError as exc:
        return problem(request, session, exc, back="/admin/users")
    return _users_page(
        request,
        writer,
        accounts,
        settings,
        status_code=201,
        made=(user.username, f"已添加账号「{user.username}」（{ROLE_LABELS[user.role]}）", password),
    )


@router.post("/admin/users/{username}/{action}")
def change_user(request: Request, username: str, action: str, session: SessionDep, accounts: AccountsDep,
                settings: SettingsDep, lock: WriteLock, ip: ClientIp, csrf_token: FormToken = "") -> Response:
    """停用 (disable), 启用 (enable), 解锁 (unlock) or 重置密码 (reset) an account."""
    try:
        writer = _admin(require_writer(request, session, csrf_token))
        if action not in ("disable", "enable", "unlock", "reset"):
            raise InputError("未知的操作")
        if action == "disable" and username == writer.user.username:
            raise InputError("不能停用自己的账号")
        with lock:
            if action == "reset":
                password = accounts.reset_password(username, actor=writer.actor, ip=ip)
                return _users_page(request, writer, accounts, settings,
                                   made=(username, f"已为账号「{username}」生成一次性密码", password))
            if action == "unlock":
                accounts.unlock(username, actor=writer.actor, ip=ip)
            else:
                accounts.set_disabled(username, action == "disable", actor=writer.actor, ip=ip)
    except MatcherError as exc:
        return problem(request, session, exc, back="/admin/users")
    done = {"disable": "已停用", "enable": "已启用", "unlock": "已解锁"}[action]
    return _users_page(request, writer, accounts, settings, flash=f"{done}账号「{username}」。")


# -- one's own password --------------------------------------------------------------------------
def _account_page(request: Request, session: Session, *, error: str = "", flash: str = "",
                  status_code: int = 200) -> Response:
    return render(request, "account.html", {"session": session, "nav": "", "error": error, "flash": flash},
                  status_code=status_code)


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, session: SessionDep) -> Response:
    if session is None:
        return login_redirect(request)
    return _account_page(request, session)


@router.post("/account")
def change_password(
    request: Request,
    session: SessionDep,
    accounts: AccountsDep,
    lock: WriteLock,
    ip: ClientIp,
    csrf_token: FormToken = "",
    current: Annotated[str, Form(max_length=200)] = "",
    new: Annotated[str, Form(max_length=200)] = "",
    again: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        writer = require_writer(request, session, csrf_token)
    except MatcherError as exc:
        return problem(request, session, exc)
    try:
        if new != again:
            raise InputError("两次输入的新密码不一致")
        with lock:
            accounts.change_own_password(writer, request.cookies.get(COOKIE), current, new, ip=ip)
    except MatcherError as exc:
        return _account_page(request, writer, error=exc.message, status_code=422)
    return RedirectResponse("/demands?done=password", status_code=303)
