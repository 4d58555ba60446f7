"""Pages for administrators: the API keys other systems use (`matcher keys` on the command line).

A key is shown once, on the page that made it; the list shows its name, role, first characters and
use, never the key. Every change is an HTML form POST checked like every page write (session, same
site, CSRF token) and audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import ApiKeysDep, ClientIp, SettingsDep
from api.routes.staff import FormToken, problem, render
from api.session import SessionDep, login_redirect, require_writer
from matcher.accounts import Session
from matcher.apikeys import ROLE_LABELS, ROLES
from matcher.errors import ForbiddenError, MatcherError
from matcher.timefmt import local_time, zone_label

router = APIRouter(include_in_schema=False)


def _admin(session: Session | None) -> Session:
    if session is not None and session.user.role != "admin":
        raise ForbiddenError("只有管理员可以管理 API 密钥")
    return session  # type: ignore[return-value]


def _keys_page(request: Request, session: Session, keys: ApiKeysDep, settings: SettingsDep, *,
               made: tuple[str, str, str] | None = None, status_code: int = 200) -> Response:
    tz = settings.timezone
    rows = [{"id": k.id, "name": k.name, "role": ROLE_LABELS.get(k.role, k.role), "prefix": k.prefix,
             "created_at": local_time(k.created_at, tz, label=False), "created_by": k.created_by,
             "last_used_at": local_time(k.last_used_at, tz, label=False) if k.last_used_at else "从未使用",
             "revoked_at": local_time(k.revoked_at, tz, label=False) if k.revoked_at else ""}
            for k in keys.list()]
    return render(request, "admin_keys.html", {
        "session": session, "nav": "keys", "keys": rows, "roles": [(r, ROLE_LABELS[r]) for r in ROLES],
        "made": made, "zone": zone_label(tz),
    }, status_code=status_code)


@router.get("/admin/keys")
def keys_page(request: Request, session: SessionDep, keys: ApiKeysDep, settings: SettingsDep) -> Response:
    if session is None:
        return login_redirect(request)
    try:
        _admin(session)
    except MatcherError as exc:
        return problem(request, session, exc)
    return _keys_page(request, session, keys, settings)


@router.post("/admin/keys")
def add_key(request: Request, session: SessionDep, keys: ApiKeysDep, settings: SettingsDep, ip: ClientIp,
            csrf_token: FormToken = "", name: Annotated[str, Form(max_length=100)] = "",
            role: Annotated[str, Form(max_length=10)] = "read") -> Response:
    try:
        writer = _admin(require_writer(request, session, csrf_token))
        key, secret = keys.add(name, role, actor=writer.actor, ip=ip)
    except MatcherError as exc:
        return problem(request, session, exc, back="/admin/keys")
    response = _keys_page(request, writer, keys, settings,
                          made=(key.name, ROLE_LABELS[key.role], secret), status_code=201)
    response.headers["Cache-Control"] = "no-store"  # the key is on this page once: not in a cache
    return response


@router.post("/admin/keys/{key_id}/revoke")
def revoke_key(request: Request, key_id: int, session: SessionDep, keys: ApiKeysDep, ip: ClientIp,
               csrf_token: FormToken = "") -> Response:
    try:
        writer = _admin(require_writer(request, session, csrf_token))
        keys.revoke(str(key_id), actor=writer.actor, ip=ip)
    except MatcherError as exc:
        return problem(request, session, exc, back="/admin/keys")
    return RedirectResponse("/admin/keys", status_code=303)
