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
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import matcher
from api.middleware import BodyLimitMiddleware, IdempotencyMiddleware, SecurityHeadersMiddleware
from api.routes import admin, demands, experts, feedback, health, match, outcomes, pages, staff, team
from matcher.apikeys import check_keys
from matcher.config import Settings, get_settings
from matcher.engine import Engine
from matcher.errors import MatcherError

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
API_PREFIX = "/api/v1"


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


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    details = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors
    ]
    message = "; ".join(_readable(e) for e in errors[:5])
    return error_response(422, "InputError", f"invalid request: {message}", details)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        # A body that is not UTF-8 JSON at all: the same 422 as any other body that is not JSON.
        return error_response(422, "InputError", "invalid request: the body is not valid JSON (UTF-8); "
                              'send a JSON object such as {"text": "…"}')
    headers = exc.headers
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


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
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
    app.include_router(pages.router)
    app.include_router(staff.router)  # the staff's pages: sign-in, inbox, a demand, audit
    app.include_router(admin.router)  # administrators: API keys
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
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    return app


def app_from_env() -> FastAPI:
    """The application with the settings of the environment: what each worker process of `matcher
    serve --workers N` builds (uvicorn imports it by name in every worker)."""
    return create_app(get_settings())
