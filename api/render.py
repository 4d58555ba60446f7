"""How every staff page is rendered: one Jinja2 environment, one header (`_layout.html`), the
filters that show times in the 科协's own zone and messages in Chinese.

    render(request, "demands.html", {"session": session, "nav": "demands", ...})
    problem(request, session, exc, back="/demands")   -> the error page, in Chinese

Filters: `localtime` (2026-12-07 10:43, the column header names the zone), `localday` (the local
date of a stored UTC time), `zh` (a library message without its English gloss in parentheses:
messages say "中文说明 (english gloss)" so that the API and logs keep both; a page shows the first).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

import matcher
from api.session import login_redirect
from matcher.accounts import Session
from matcher.auditlog import actor_label
from matcher.errors import AuthError, MatcherError
from matcher.timefmt import local_time, to_local, zone_label

templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")
_GLOSS = re.compile(r" \((?=[A-Za-z`])")


def chinese(message: str) -> str:
    """`message` without its English gloss: "文件有 60 MB，超过上限 (the file is over…)" -> "文件有 60 MB，
    超过上限". The gloss is the last part, from a " (" followed by a Latin letter or a backquote, to the
    closing parenthesis at the end; "(第 3 行)" is the message's own. A message with no Chinese at
    all becomes a general Chinese one."""
    text = str(message or "").strip()
    if text.endswith(")"):
        gloss = _GLOSS.search(text)
        if gloss is not None and _CJK.search(text[: gloss.start()]):
            text = text[: gloss.start()].rstrip()
    if not _CJK.search(text):
        return "请求未能完成，请检查输入后重试。"
    return text


def _tz(request: Request) -> str:
    settings = getattr(request.app.state, "settings", None)
    return settings.timezone if settings is not None else "Asia/Shanghai"


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    tz = _tz(request)
    return templates.TemplateResponse(
        request, name, {"version": matcher.__version__, "zone": zone_label(tz), "tz": tz, "session": None,
                        "nav": "", **context},
        status_code=status_code,
    )


def problem(request: Request, session: Session | None, exc: MatcherError, back: str = "") -> Response:
    """A failed page request as a page (or, signed out, the sign-in form)."""
    if isinstance(exc, AuthError) and session is None:
        return login_redirect(request)
    heading = {403: "请求被拒绝", 404: "未找到", 409: "操作冲突", 413: "文件太大", 422: "输入有误",
               429: "请稍后再试"}.get(exc.status, "出错了")
    return render(request, "error.html", {"session": session, "heading": heading, "message": exc.message,
                                          "back": back}, status_code=exc.status)


def _localtime(value: Any, tz: str = "Asia/Shanghai", seconds: bool = False) -> str:
    return local_time(value, tz, label=False, seconds=seconds) if value else ""


def _localday(value: Any, tz: str = "Asia/Shanghai") -> str:
    """The local date of a stored time (a bare date stays as it is)."""
    text = str(value or "")
    if len(text) <= 10:
        return text
    local = to_local(text, tz)
    return local.date().isoformat() if local is not None else text[:10]


templates.env.filters["zh"] = chinese
templates.env.filters["localtime"] = _localtime
templates.env.filters["localday"] = _localday
templates.env.filters["actor"] = actor_label
templates.env.globals["zone_label"] = zone_label
