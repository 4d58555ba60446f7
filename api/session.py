"""Staff sessions for the pages: the cookie, who is signed in, and the checks every page write passes.

API keys stay for machines (`api.deps`); people in a browser sign in (`matcher.accounts`). A page
write (an HTML form POST) is accepted only when all hold:

1. a live session: the `jq_session` cookie (HttpOnly, SameSite=Lax: a cross-site POST never
   carries it; `Secure` with MATCHER_SECURE_COOKIES);
2. the request comes from this origin: `Sec-Fetch-Site`, when sent, is `same-origin`, and an
   `Origin` header, when it names one, names this host;
3. the form's `csrf_token` is the session's own (a page on another port of the same host is the
   same *site* for cookies, so only this token stops it).

The sign-in form itself has no session yet: it is protected by a double-submit token (a random
value in a cookie and in the form, which must agree).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import AccountsDep, SettingsDep
from matcher.accounts import Session, check_csrf
from matcher.errors import AuthError, ForbiddenError

COOKIE = "jq_session"
LOGIN_COOKIE = "jq_login"


def current_session(request: Request, accounts: AccountsDep) -> Session | None:
    return accounts.session(request.cookies.get(COOKIE))


SessionDep = Annotated[Session | None, Depends(current_session)]


def check_same_site(request: Request) -> None:
    """Refuse a write whose browser says it comes from another origin: `Sec-Fetch-Site` other than
    same-origin (a sibling port of the same host is `same-site`), or an `Origin` naming another
    host. `Origin: null` says nothing (our pages' no-referrer policy makes the browser send it for
    their own forms), so it passes here and the CSRF token decides."""
    fetch_site = request.headers.get("sec-fetch-site", "")
    if fetch_site and fetch_site not in ("same-origin", "none"):
        raise ForbiddenError(f"跨站请求被拒绝 (a {fetch_site} request may not write)")
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise ForbiddenError("跨站请求被拒绝 (the request's Origin is another site)")


def require_writer(request: Request, session: Session | None, csrf_token: str | None) -> Session:
    """The signed-in staff member behind a page write, after the checks of the module docstring."""
    if session is None:
        raise AuthError("请先登录 (sign in first: page writes need a staff account)")
    check_same_site(request)
    check_csrf(session, csrf_token)
    return session


def safe_next(target: str | None) -> str:
    """Only a path of this site (never //host or a scheme): an open redirect would help phishing."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/demands"
    return target


def login_redirect(request: Request) -> RedirectResponse:
    """To the sign-in form, coming back here afterwards (after a refused POST: to the page it came
    from, /demands/ID for /demands/ID/feedback, since a redirect comes back as a GET)."""
    if request.method == "POST":
        here = request.url.path.rsplit("/", 1)[0] if request.url.path != "/logout" else "/demands"
    else:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)


def set_session_cookie(response: Response, token: str, settings: SettingsDep) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )


def clear_session_cookie(response: Response, settings: SettingsDep) -> None:
    response.delete_cookie(COOKIE, httponly=True, samesite="lax", secure=settings.secure_cookies, path="/")


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def login_token_ok(request: Request, sent: str | None) -> bool:
    cookie = request.cookies.get(LOGIN_COOKIE)
    return bool(cookie and sent and hmac.compare_digest(cookie.encode(), sent.encode()))
