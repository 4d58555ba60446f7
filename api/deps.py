"""Dependencies shared by the routes, as `Annotated` aliases: the engine, the settings, the API key.

Keys are compared with `hmac.compare_digest` against every configured key (no early exit), and
never logged or echoed. A request without a key may read public data; a request with a wrong key
is refused outright, so a typo does not silently hide contact details.
"""

from __future__ import annotations

import hmac
import threading
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from matcher.accounts import Accounts
from matcher.config import Settings
from matcher.engine import Engine
from matcher.errors import AuthError, MatcherError
from matcher.workflow import Workflow, key_actor

_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Needed for writes and to see experts' phone and e-mail (setting MATCHER_API_KEYS).",
)


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


def key_is_valid(given: str, settings: Settings) -> bool:
    given_b = given.encode("utf-8")
    ok = False
    for secret in settings.api_keys:
        # `|=`, not `or`: every key is compared, so the time taken says nothing about which matched.
        ok |= hmac.compare_digest(given_b, secret.get_secret_value().encode("utf-8"))
    return ok


def has_api_key(settings: SettingsDep, key: Annotated[str | None, Security(_key_header)] = None) -> bool:
    """True when a valid key was sent, False when none was; a wrong key is a 401."""
    if not key:
        return False
    if not settings.api_keys:
        raise AuthError("an X-API-Key was sent, but this server has no keys configured: set MATCHER_API_KEYS")
    if not key_is_valid(key, settings):
        raise AuthError(
            "the X-API-Key header holds a key this server does not know; check it or ask for a new one"
        )
    return True


HasKey = Annotated[bool, Depends(has_api_key)]


def require_api_key(settings: SettingsDep, has_key: HasKey) -> None:
    if has_key:
        return
    if not settings.api_keys:
        raise AuthError(
            "this request changes data and needs an API key, but the server has none configured: "
            "set MATCHER_API_KEYS"
        )
    raise AuthError("this request changes data: send an API key in the X-API-Key header")


RequireKey = Depends(require_api_key)


# -- who is acting: API keys (machines) and signed-in staff (the pages) --------------------------
def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


ClientIp = Annotated[str, Depends(client_ip)]


def get_workflow(engine: EngineDep) -> Workflow:
    return Workflow(engine)


def get_accounts(engine: EngineDep, settings: SettingsDep) -> Accounts:
    return Accounts(engine.store, settings)


WorkflowDep = Annotated[Workflow, Depends(get_workflow)]
AccountsDep = Annotated[Accounts, Depends(get_accounts)]


def api_actor(has_key: HasKey, key: Annotated[str | None, Security(_key_header)] = None) -> str | None:
    """`key:FINGERPRINT` for a valid key (how the audit log names it), None without one. The key is
    checked once a request (`HasKey`, which FastAPI caches)."""
    return key_actor(key) if has_key and key else None


def require_key_actor(settings: SettingsDep, actor: Annotated[str | None, Depends(api_actor)]) -> str:
    if actor is None:
        require_api_key(settings, False)  # raises, saying how to send or configure a key
    assert actor is not None
    return actor


ApiActor = Annotated[str | None, Depends(api_actor)]
KeyActor = Annotated[str, Depends(require_key_actor)]

# Reads that work without a key and show more with one: the schema says the key is optional
# (OpenAPI: an empty requirement among the alternatives), not required. FastAPI appends this list to
# the requirement it generates, giving [{"APIKeyHeader": []}, {}].
OPTIONAL_KEY: dict[str, object] = {"security": [{}]}
