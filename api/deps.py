"""Dependencies shared by the routes, as `Annotated` aliases: the engine, the settings, who calls.

Who may do what (`matcher.apikeys`): matching a pasted demand and experts' public profiles need
nothing; the 科协's working data (the inbox, a demand, its recommendations, outcomes, statistics,
an expert's history, reverse matching) needs a key with the `read` role or a signed-in staff
session; writes need a `write` key; contact details and deleting experts an `admin` key. A wrong
key is refused outright (401), so a typo does not silently hide data, and counted per client:
after `apikey_max_failures` wrong keys its keys are refused for a while (429). Keys are never
logged or echoed: the audit log names a configured key by its SHA-256's first 12 hex digits and
a stored key by its name.
"""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from api.schemas import ErrorOut
from matcher.accounts import Accounts
from matcher.apikeys import ROLE_LABELS, ApiKeys, Caller
from matcher.config import Settings
from matcher.engine import Engine
from matcher.errors import AuthError, ForbiddenError, MatcherError, ThrottledError
from matcher.timefmt import local_time
from matcher.workflow import Workflow

_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="An API key (`matcher keys add`): read for the working data, write for changes, admin "
    "for contact details and deletions.",
)
#: The staff page's session cookie (`api.session`), accepted instead of a read key on reads.
SESSION_COOKIE = "jq_session"


class ConflictError(MatcherError):
    """An id that is already taken (POST of an existing expert or demand)."""

    status = 409


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_write_lock(request: Request) -> threading.Lock:
    return request.app.state.write_lock


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
WriteLock = Annotated[threading.Lock, Depends(get_write_lock)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


ClientIp = Annotated[str, Depends(client_ip)]


def get_api_keys(engine: EngineDep, settings: SettingsDep) -> ApiKeys:
    return ApiKeys(engine.store, settings)


ApiKeysDep = Annotated[ApiKeys, Depends(get_api_keys)]


def api_caller(keys: ApiKeysDep, settings: SettingsDep, ip: ClientIp,
               key: Annotated[str | None, Security(_key_header)] = None) -> Caller | None:
    """The caller a valid key stands for; None without a key. A wrong key is a 401 (counted and
    audited), and a client that sent too many is refused (429) until its wait is over. FastAPI
    caches this per request, so a key is checked once."""
    if not key:
        return None
    until = keys.throttled_until(ip)
    if until:
        raise ThrottledError(_throttled(until, settings))
    caller = keys.identify(key)
    if caller is None:
        locked = keys.record_failure(ip, key)
        if locked:
            raise ThrottledError(_throttled(locked, settings))
        if not settings.api_keys and not keys.list():
            raise AuthError("本服务器尚未配置 API 密钥 (an X-API-Key was sent, but this server has no keys: "
                            "make one with `matcher keys add`, or set MATCHER_API_KEYS)")
        raise AuthError("API 密钥无效 (the X-API-Key header holds a key this server does not know; check it "
                        "or ask for a new one)")
    keys.record_success(ip, caller)
    return caller


def _throttled(until: str, settings: Settings) -> str:
    return (f"来自此地址的错误密钥过多，请于 {local_time(until, settings.timezone)} 后再试 "
            "(too many wrong API keys from this client; wait, then send a valid key)")


CallerDep = Annotated[Caller | None, Depends(api_caller)]


def _require_role(caller: Caller | None, needed: str, what: str) -> Caller:
    if caller is None:
        raise AuthError(f"{what}需要{ROLE_LABELS[needed]}及以上权限的 API 密钥 "
                        f"(this request needs an API key with the {needed} role in the X-API-Key header)")
    if not caller.can(needed):
        raise ForbiddenError(f"此密钥的权限为「{ROLE_LABELS[caller.role]}」，"
                             f"{what}需要「{ROLE_LABELS[needed]}」 "
                             f"(this key's role is {caller.role}; this request needs {needed})")
    return caller


def require_writer_key(caller: CallerDep) -> str:
    return _require_role(caller, "write", "修改数据").actor


def require_admin_key(caller: CallerDep) -> str:
    return _require_role(caller, "admin", "此操作").actor


def require_reader(request: Request, caller: CallerDep, engine: EngineDep, settings: SettingsDep) -> str:
    """A key with the read role, or a signed-in staff member (the pages' session cookie): the actor."""
    if caller is not None:
        return _require_role(caller, "read", "读取这些数据").actor
    session = Accounts(engine.store, settings).session(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        return session.actor
    raise AuthError("读取这些数据需要只读及以上权限的 API 密钥或登录 "
                    "(this needs an API key with the read role in X-API-Key, or a signed-in staff session)")


def sees_contacts(caller: CallerDep) -> bool:
    """Experts' phone and e-mail go to admin keys only (personal information, PIPL)."""
    return caller is not None and caller.can("admin")


def api_actor(caller: CallerDep) -> str | None:
    """How the audit log names the caller (None without a key)."""
    return caller.actor if caller is not None else None


SeesContacts = Annotated[bool, Depends(sees_contacts)]
ApiActor = Annotated[str | None, Depends(api_actor)]
KeyActor = Annotated[str, Depends(require_writer_key)]
AdminActor = Annotated[str, Depends(require_admin_key)]
ReaderActor = Annotated[str, Depends(require_reader)]
RequireKey = Depends(require_writer_key)
RequireReader = Depends(require_reader)
#: What a route that needs the read role may answer besides its own responses (OpenAPI).
READ_AUTH: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut,
          "description": "No API key with the read role and no staff session, or a wrong key."},
    403: {"model": ErrorOut, "description": "The key's role is too low."},
    429: {"model": ErrorOut, "description": "Too many wrong keys from this client: it waits."},
}
#: The same for a write (the write role; deleting an expert: admin).
WRITE_AUTH: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "No API key, or a wrong one."},
    403: {"model": ErrorOut, "description": "The key's role is too low (read keys cannot write; only admin "
          "keys delete experts)."},
    429: {"model": ErrorOut, "description": "Too many wrong keys from this client: it waits."},
}

# -- services over the engine ----------------------------------------------------------------
def get_workflow(engine: EngineDep) -> Workflow:
    return Workflow(engine)


def get_accounts(engine: EngineDep, settings: SettingsDep) -> Accounts:
    return Accounts(engine.store, settings)


WorkflowDep = Annotated[Workflow, Depends(get_workflow)]
AccountsDep = Annotated[Accounts, Depends(get_accounts)]


# Reads that work without a key and show more with one: the schema says the key is optional
# (OpenAPI: an empty requirement among the alternatives), not required. FastAPI appends this list to
# the requirement it generates, giving [{"APIKeyHeader": []}, {}].
OPTIONAL_KEY: dict[str, object] = {"security": [{}]}
