"""`create_app(settings)`: the FastAPI application over one `Engine`.

The engine (tokenizer, store, fitted index) is built once in the lifespan and shared by every
request; routes that rank are plain `def`, so FastAPI runs them in its thread pool. Middleware,
outermost first: security headers, body limit, replays of writes sent with an Idempotency-Key,
then CORS (only when origins are configured).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import matcher
from api.middleware import (
    BodyLimitMiddleware,
    IdempotencyMiddleware,
    SecurityHeadersMiddleware,
    document_body_limit,
)
from api.routes import (
    admin,
    audit,
    batch,
    demands,
    downloads,
    experts,
    feedback,
    health,
    intake,
    learning,
    match,
    outcomes,
    pages,
    staff,
    team,
    users,
)
from matcher.apikeys import check_keys
from matcher.config import Settings, get_settings
from matcher.engine import Engine
from matcher.errors import MatcherError

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
API_PREFIX = "/api/v1"
UPLOAD_PATHS = ("/demands/upload", "/experts/upload")


def error_response(
    status: int,
    type_: str,
    message: str,
    details: list[dict] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict = {"type": type_, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


async def matcher_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MatcherError)
    if exc.status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc.message)
    headers = {"WWW-Authenticate": "APIKey"} if exc.status == 401 else None
    return error_response(exc.status, type(exc).__name__, exc.message, headers=headers)


def _where(loc: tuple) -> str:
    # ("body", "filters", "region") -> "filters.region"; the "body"/"query" prefix says little.
    if len(loc) > 1 and loc[0] in ("body", "query", "path"):
        loc = loc[1:]
    return ".".join(map(str, loc)) or "body"


def _readable(error: dict) -> str:
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        at = f" at character {loc[1]}" if len(loc) > 1 else ""
        return f'the body is not valid JSON{at}; send a JSON object such as {{"text": "…"}}'
    return f"{_where(loc)}: {error.get('msg', '')}"


def _chinese(error: dict) -> str:
    """One validation error as staff read it (the match page shows the Chinese part of a 422)."""
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    where = _where(tuple(error.get("loc", ())))
    said = {
        "json_invalid": "请求不是有效的 JSON",
        "missing": "缺少此项",
        "extra_forbidden": "不认识的字段",
        "string_too_long": f"最多 {ctx.get('max_length', '')} 个字符",
        "string_too_short": "不能为空",
        "too_long": f"最多 {ctx.get('max_length', '')} 项",
        "too_short": "项数太少",
        "greater_than_equal": f"不能小于 {ctx.get('ge', '')}",
        "less_than_equal": f"不能大于 {ctx.get('le', '')}",
        "greater_than": f"应大于 {ctx.get('gt', '')}",
        "less_than": f"应小于 {ctx.get('lt', '')}",
        "int_parsing": "应是整数",
        "int_type": "应是整数",
        "float_parsing": "应是数字",
        "float_type": "应是数字",
        "bool_parsing": "应是 true 或 false",
        "bool_type": "应是 true 或 false",
        "string_type": "应是文本",
        "list_type": "应是列表",
        "dict_type": "应是对象",
        "model_type": "应是对象",
        "string_pattern_mismatch": "格式不对",
        "literal_error": "不是允许的取值",
        "date_from_datetime_parsing": "不是日期",
        "date_parsing": "不是日期",
        "url_parsing": "不是网址",
    }.get(kind)
    if said is None:
        msg = str(error.get("msg", ""))
        said = msg.removeprefix("Value error, ") if _CJK.search(msg) else "取值无效"
        said = said.split(" (")[0] if _CJK.search(said.split(" (")[0]) else said
    return said if kind == "json_invalid" else f"{where}：{said}"


_CJK = re.compile(r"[\u3000-\u9fff]")
#: How a page's form fields (and query parameters) are named in its error page.
PAGE_FIELDS = {
    "title": "名称",
    "description": "需求描述",
    "enterprise": "企业名称",
    "contact": "联系人",
    "region": "地区",
    "industry": "行业",
    "deadline": "截止日期",
    "keywords": "关键词",
    "text": "需求文字",
    "top_k": "显示人数",
    "exclude_terms": "排除的词",
    "extra_terms": "补充的词",
    "name": "名称",
    "institution": "工作单位",
    "research_fields": "研究方向",
    "tags": "标签",
    "bio": "简介",
    "kind": "类别",
    "year": "年份",
    "abstract": "摘要",
    "expert_id": "专家",
    "verdict": "反馈",
    "note": "备注",
    "status": "状态",
    "until": "暂停截止日期",
    "reason": "原因",
    "value": "数值",
    "date": "日期",
    "expert_ids": "相关专家",
    "username": "用户名",
    "role": "角色",
    "current": "当前密码",
    "new": "新密码",
    "again": "再输入一次的密码",
    "csrf_token": "表单校验码",
    "file": "文件",
    "demand": "需求",
    "filter_region": "地区",
    "filter_title": "职称",
    "merge_id": "合并记录编号",
    "outcome_id": "成果记录编号",
    "key_id": "密钥编号",
    "page": "页码",
    "q": "查找内容",
    "from": "起始日期",
    "to": "结束日期",
    "user": "用户",
    "action": "操作",
    "login_token": "登录校验码",
    "password": "密码",
    "next": "跳转地址",
    "done": "提示",
    "visit": "走访日期",
}


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    details = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors
    ]
    chinese = "；".join(_chinese(e) for e in errors[:5])
    message = "; ".join(_readable(e) for e in errors[:5])
    if not request.url.path.startswith(API_PREFIX):  # a page's form: answered with a page, in Chinese
        from api.render import render  # the pages' renderer, only when a page needs it

        fields = "；".join(_chinese({**e, "loc": (PAGE_FIELDS.get(str(e.get("loc", ("",))[-1]), "某一项"),)})
                          for e in errors[:5])
        return render(
            request,
            "error.html",
            {"heading": "输入有误", "message": f"表单内容有误：{fields}。请返回修改后重试。", "back": ""},
            status_code=422,
        )
    return error_response(422, "InputError", f"请求有误：{chinese} (invalid request: {message})", details)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        # A body that is not UTF-8 JSON at all: the same 422 as any other body that is not JSON.
        return error_response(422, "InputError", "invalid request: the body is not valid JSON (UTF-8); "
                              'send a JSON object such as {"text": "…"}')
    headers = exc.headers
    if not request.url.path.startswith(API_PREFIX) and exc.status_code in (404, 405):
        from api.render import render  # the pages' renderer, only when a page needs it

        heading, said = {404: ("未找到", "没有这个页面，或它要找的记录已被删除。"),
                         405: ("请求被拒绝", "不支持这种访问方式。")}[exc.status_code]
        return render(request, "error.html", {"heading": heading, "message": said, "back": ""},
                      status_code=exc.status_code)
    if exc.status_code == 405 and (allowed := _allowed_methods(request)) is not None:
        # Starlette names the methods of the first route on the path only; a path served by several
        # routes (GET and PATCH /demands/{id}) must say all of them.
        headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    return error_response(exc.status_code, "HTTPError", str(exc.detail), headers=headers)


def _allowed_methods(request: Request) -> list[str] | None:
    """The methods the OpenAPI schema lists for the path the URL names (the most literal template:
    /demands/match is POST's own path, not a demand id for GET /demands/{id}); None off the API."""
    paths = request.app.openapi().get("paths", {})
    def pattern(template: str) -> str:  # /demands/{demand_id} -> /demands/[^/]+
        return re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(template))

    hits = [t for t in paths if re.fullmatch(pattern(t), request.url.path)]
    if not hits:
        return None
    literal = min(hits, key=lambda t: (t.count("{"), t))
    verbs = ("get", "put", "post", "delete", "patch", "head", "options")
    return sorted(m.upper() for m in paths[literal] if m in verbs)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    if not request.url.path.startswith(API_PREFIX):
        from api.render import render  # the pages' renderer, only when a page needs it

        return render(
            request,
            "error.html",
            {
                "heading": "出错了",
                "message": "服务器出错了，请稍后重试；若反复出现，请告诉管理员出错的时间。",
                "back": "",
            },
            status_code=500,
        )
    return error_response(500, "InternalError", "internal error; the server log has the details")


def create_app(
    settings: Settings | None = None, *, engine: Engine | None = None, demo_if_empty: bool = False
) -> FastAPI:
    """The application. Pass `engine` to share one (tests); otherwise the lifespan opens its own.

    `demo_if_empty` loads the fictional demo corpus into an empty database, like `matcher match`.
    """
    settings = settings or (engine.settings if engine is not None else get_settings())
    check_keys(settings)  # a weak or example key in MATCHER_API_KEYS: refuse to serve at all

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = engine is None
        eng = Engine(settings) if own else engine
        try:
            eng.tokenizer.initialize()
            if demo_if_empty and eng.load_demo():
                log.warning(
                    "the database %s was empty: loaded the demo corpus (%d fictional experts)",
                    settings.db,
                    eng.count_experts(),
                )
            if eng.count_experts():
                eng.ensure_index()
            if own:
                # Dense vectors the cache lacks, and a stale demand bank, are made on a background
                # thread: the lexical signals serve meanwhile (a shared test engine stays quiet).
                eng.start_background_encoding()
            app.state.engine = eng
            app.state.settings = settings
            app.state.write_lock = threading.Lock()
            yield
        finally:
            if own:
                eng.close()

    app = FastAPI(
        title="金桥 Matcher",
        version=matcher.__version__,
        description="Match enterprises' technical demands with experts. Writes and contact details need "
        "an API key in `X-API-Key`.",
        lifespan=lifespan,
    )
    routers = (match.router, team.router, experts.router, demands.router, feedback.router, health.router)
    for router in routers:
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(outcomes.router, prefix=API_PREFIX)  # outcomes and statistics (issue 17)
    app.include_router(learning.api, prefix=API_PREFIX)  # what verdicts taught (issue 28)
    # The staff's pages. intake first: its /demands/new must not be read as the demand with id "new".
    for router in (intake.router, pages.router, staff.router, audit.router, batch.router, downloads.router,
                   users.router, admin.router, learning.pages):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    app.add_exception_handler(MatcherError, matcher_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key"],
        )
    app.add_middleware(IdempotencyMiddleware, hours=settings.idempotency_hours)
    # Uploads of a workbook may be as large as an import accepts (and a little more: the form around it).
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       upload_bytes=settings.max_import_bytes + 64_000, upload_paths=UPLOAD_PATHS)
    app.add_middleware(SecurityHeadersMiddleware)
    document_body_limit(app)
    return app


def app_from_env() -> FastAPI:
    """The application with the settings of the environment: what each worker process of `matcher
    serve --workers N` builds (uvicorn imports it by name in every worker)."""
    return create_app(get_settings())
