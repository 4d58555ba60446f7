"""Pure ASGI middleware: the request body limit and the security headers.

The body limit checks `Content-Length` first, then counts the bytes actually received, since a
chunked request has no length and a client may lie about it. The body is read before the app sees
it (it is at most `max_body_bytes`), so an oversized request is answered 413 before any route runs.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool

from matcher.errors import MatcherError
from matcher.io import size_text

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The page and its assets come from this server only; nothing may frame it.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# FastAPI's /docs and /redoc load Swagger UI / ReDoc from a CDN; a strict CSP would blank them.
_CDN_DOC_PATHS = ("/docs", "/redoc")


async def send_error(send: Send, status: int, type_: str, message: str) -> None:
    body = json.dumps({"error": {"type": type_, "message": message}}, ensure_ascii=False).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_page_error(send: Send, status: int, heading: str, message: str) -> None:
    """An error as a small Chinese page: a browser's form post is answered in words, not JSON."""
    text = html.escape(message)
    body = (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{heading}</title>'
            f'<link rel="stylesheet" href="/static/style.css"></head><body><header class="top"><h1>{heading}'
            f'</h1></header><main><p class="card" id="problem">{text}</p><p><a href="/demands" id="back">'
            f'← 返回需求收件箱</a></p></main></body></html>').encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def document_body_limit(app: Any) -> None:
    """Name the limit's 413 in the OpenAPI of every operation that takes a body: the middleware may
    answer any of them so, before a route runs, and a client generated from the schema must know it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict) and "requestBody" in operation:
                    operation.setdefault("responses", {}).setdefault("413", {
                        "description": "The body is over MATCHER_MAX_BODY_BYTES; nothing was read or stored.",
                        "content": {"application/json": {"schema": {
                            "$ref": "#/components/schemas/ErrorOut"}}},
                    })
        return schema

    app.openapi = openapi


class BodyLimitMiddleware:
    """Refuse a body over `max_bytes` (413) before the app reads it; the uploads of a workbook
    (`upload_paths`) may be up to `upload_bytes`. A page (any path outside /api/) is answered with
    a Chinese page, the API with its JSON error."""

    def __init__(self, app: ASGIApp, max_bytes: int, *, upload_bytes: int | None = None,
                 upload_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes or max_bytes
        self.upload_paths = upload_paths

    async def _refuse(self, send: Send, scope: Scope, limit: int) -> None:
        if str(scope.get("path", "")).startswith("/api/"):
            await send_error(
                send,
                413,
                "PayloadTooLargeError",
                f"the request body is larger than {limit} bytes (setting MATCHER_MAX_BODY_BYTES); send less",
            )
        elif limit == self.upload_bytes and self.upload_bytes != self.max_bytes:
            await send_page_error(send, 413, "文件太大", f"文件超过导入上限 {size_text(limit - 64_000)}，"
                                  "请拆分后分批导入。未导入任何数据。")
        else:
            await send_page_error(
                send,
                413,
                "内容太多",
                f"提交的内容超过 {size_text(limit)} 的上限，请删减后重试。未保存任何数据。",
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope.get("method") == "POST" and scope.get("path") in self.upload_paths
        limit = self.upload_bytes if upload else self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_error(send, 400, "InputError", "the Content-Length header is not a number")
                    return
                if declared > limit:
                    await self._refuse(send, scope, limit)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(send, scope, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        docs = path.startswith(_CDN_DOC_PATHS)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                if not docs:
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class IdempotencyMiddleware:
    """Writes sent with an `Idempotency-Key` header happen once, however often they are retried.

    A client that lost the answer to a POST or PUT (a timeout, a dropped connection) sends it again
    with the same key: the first answer (2xx) is stored for `hours` with a digest of the request and
    replayed (header `Idempotency-Replayed: true`) instead of writing twice. The key is scoped by the
    API key that sent it, the method and the path. The same key with another request body is a 422;
    a retry while the first request still runs is a 409 (`Retry-After: 1`). An answer that is not
    2xx is not stored: such a write did not happen (the store's transactions), so a retry runs it
    again. A request whose process died keeps its claim for `stale_seconds`, then a retry runs it.
    """

    METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
    KEPT_HEADERS = frozenset({b"content-type", b"location", b"content-disposition"})

    def __init__(self, app: ASGIApp, hours: float = 24.0, stale_seconds: float = 60.0) -> None:
        self.app = app
        self.hours = hours
        self.stale_seconds = stale_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] not in self.METHODS
                or not scope.get("path", "").startswith("/api/")):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        raw_key = headers.get(b"idempotency-key")
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1")
        if not 1 <= len(key) <= 255 or not all(33 <= ord(c) < 127 for c in key):
            await send_error(send, 422, "InputError", "Idempotency-Key 须为 1 到 255 个可见 ASCII 字符 "
                             "(the Idempotency-Key header must be 1 to 255 visible ASCII characters)")
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        caller = hashlib.sha256(headers.get(b"x-api-key", b"")).hexdigest()
        target = f"{scope['method']} {scope['path']}?{scope.get('query_string', b'').decode('latin-1')}"
        claim = hashlib.sha256(f"{caller}|{target}|{key}".encode()).hexdigest()
        fingerprint = hashlib.sha256(target.encode() + b"\n" + body).hexdigest()
        store = scope["app"].state.engine.store
        now = datetime.now(UTC)
        try:
            current = await run_in_threadpool(
                store.begin_replay, claim, fingerprint,
                expired_before=(now - timedelta(hours=self.hours)).isoformat(timespec="seconds"),
                stale_before=(now - timedelta(seconds=self.stale_seconds)).isoformat(timespec="seconds"))
        except MatcherError as exc:
            await send_error(send, exc.status, type(exc).__name__, exc.message)
            return
        if current is not None:
            await self._answer_again(current, fingerprint, send)
            return

        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        start: Message = {}
        parts: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        try:
            await self.app(scope, replay, capture)
        except BaseException:
            await run_in_threadpool(store.drop_replay, claim)
            raise
        status = int(start.get("status", 500))
        answer = b"".join(parts)
        if 200 <= status < 300:
            kept = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", [])
                    if k.lower() in self.KEPT_HEADERS]
            await run_in_threadpool(store.finish_replay, claim, status, kept, answer)
        else:
            await run_in_threadpool(store.drop_replay, claim)
        await send(start)
        await send({"type": "http.response.body", "body": answer})

    @staticmethod
    async def _answer_again(current: Any, fingerprint: str, send: Send) -> None:
        if current.fingerprint != fingerprint:
            await send_error(send, 422, "InputError", "此 Idempotency-Key 已用于另一个请求，请换一个 "
                             "(this Idempotency-Key was sent with another request; use a new key for a new "
                             "request)")
            return
        if current.state != "done":
            await send(
                {"type": "http.response.start", "status": 409,
                 "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1")]})
            body = json.dumps({"error": {"type": "ConflictError", "message": (
                "使用此 Idempotency-Key 的请求仍在处理，请稍后重试 (the request with this Idempotency-Key "
                "is still running; retry in a moment)")}}, ensure_ascii=False).encode("utf-8")
            await send({"type": "http.response.body", "body": body})
            return
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in current.headers]
        headers += [(b"idempotency-replayed", b"true"), (b"content-length", str(len(current.body)).encode())]
        await send({"type": "http.response.start", "status": current.status, "headers": headers})
        await send({"type": "http.response.body", "body": current.body})
