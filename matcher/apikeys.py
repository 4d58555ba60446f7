"""API keys with roles, for machines (the pages sign people in with accounts instead).

Three roles, each including the one before:

  read   the working data a 科协 keeps to itself: the demand inbox, a demand and its
         recommendations, outcomes, statistics, an expert's history, reverse matching;
  write  changing it: experts, demands, verdicts, outcomes, pauses;
  admin  experts' phone and e-mail in responses, and deleting experts.

Matching a pasted demand (`/match`, `/team`) and reading experts' public profiles need no key.

Keys are made by `matcher keys add NAME --role read|write|admin` or on the admin page: a random
256-bit secret shown once; the database keeps only its SHA-256 (a key is high-entropy, so a plain
hash cannot be reversed by guessing) and its first characters, to tell keys apart in a list.
`MATCHER_API_KEYS` still works for a deployment's own keys: `read:SECRET`, `write:SECRET`,
`admin:SECRET`, or a bare `SECRET`, which is an admin key as every key was before roles. A key
there that is short, repetitive or an example (`change-me`) is refused at start (`check_keys`).

Wrong keys are throttled per client: after `apikey_max_failures` in a row from one address, every
request with a key from it is answered 429 for `apikey_lockout_minutes`, and every failure (and the
throttle) is in the audit log, named by the key's fingerprint, never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from matcher.config import Settings
from matcher.errors import ConfigError, InputError, NotFoundError
from matcher.records import ApiKey
from matcher.store import Store

ROLES: tuple[str, ...] = ("read", "write", "admin")
ROLE_LABELS = {"read": "只读", "write": "读写", "admin": "管理"}
_RANK = {role: i for i, role in enumerate(ROLES, start=1)}
KEY_PREFIX = "mk_"
MIN_KEY_CHARS = 24
#: Values seen in READMEs, examples and tutorials: a key equal to one of these (case and separators
#: ignored) is refused whatever its length.
EXAMPLE_KEYS = frozenset({
    "changeme", "changemenow", "changethis", "secret", "secretkey", "apikey", "yourapikey", "yourkey",
    "mykey", "password", "password123", "test", "testkey", "testing", "example", "examplekey", "demo",
    "demokey", "default", "admin", "adminkey", "key", "token", "xxxxxxxx", "12345678", "123456789",
    "1234567890", "qwerty", "letmein", "matcher", "matcherkey", "jinqiao",
})


def role_at_least(role: str, needed: str) -> bool:
    return _RANK.get(role, 0) >= _RANK[needed]


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def fingerprint(key: str) -> str:
    """How the audit log names a key: the first 12 hex digits of its SHA-256."""
    return key_hash(key)[:12]


def weakness(key: str) -> str | None:
    """Why `key` is too weak to accept (None when it is not)."""
    plain = "".join(c for c in key.lower() if c.isalnum())
    if plain in EXAMPLE_KEYS or key.lower().strip() in EXAMPLE_KEYS:
        return "it is an example value from documentation"
    if len(key) < MIN_KEY_CHARS:
        return f"it has fewer than {MIN_KEY_CHARS} characters"
    if len(set(key)) < 10:
        return "it repeats too few characters"
    return None


@dataclass(frozen=True, slots=True)
class ConfiguredKey:
    role: str
    secret: str


def configured_keys(settings: Settings) -> list[ConfiguredKey]:
    """The keys of `MATCHER_API_KEYS` with their roles (`role:SECRET`; bare: admin)."""
    out = []
    for item in settings.api_keys:
        value = item.get_secret_value()
        role, sep, rest = value.partition(":")
        if sep and role in ROLES:
            out.append(ConfiguredKey(role, rest))
        else:
            out.append(ConfiguredKey("admin", value))
    return out


def check_keys(settings: Settings) -> None:
    """Refuse to start with a weak or example key in `MATCHER_API_KEYS` (the README's own
    `change-me` once started a server anyone could write to)."""
    for i, key in enumerate(configured_keys(settings), start=1):
        why = weakness(key.secret)
        if why:
            raise ConfigError(
                f"MATCHER_API_KEYS 中第 {i} 个密钥太弱，拒绝启动：{_WHY_ZH.get(why, why)}。"
                f"请用 `matcher keys add` 生成密钥，或设置至少 {MIN_KEY_CHARS} 个字符的随机密钥 "
                f"(API key #{i} in MATCHER_API_KEYS is refused: {why})"
            )


_WHY_ZH = {
    "it is an example value from documentation": "这是文档中的示例值",
    f"it has fewer than {MIN_KEY_CHARS} characters": f"少于 {MIN_KEY_CHARS} 个字符",
    "it repeats too few characters": "重复字符过多",
}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request with a valid key: the audit log's actor and the key's role."""

    actor: str
    role: str
    key_id: int | None = None  # a stored key's id; None for MATCHER_API_KEYS

    def can(self, needed: str) -> bool:
        return role_at_least(self.role, needed)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class ApiKeys:
    """Stored and configured keys over one store (see the module docstring)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    # -- managing keys (`matcher keys`, the admin page) -----------------------------------------
    def add(self, name: str, role: str, *, actor: str, ip: str = "") -> tuple[ApiKey, str]:
        """A new key: (its record, the secret, to be shown once and never again)."""
        name = name.strip()
        if not 1 <= len(name) <= 60 or any(c in name for c in "\r\n\t"):
            raise InputError("密钥名称须为 1 到 60 个字符 (a key's name has 1 to 60 characters)")
        if role not in ROLES:
            raise InputError(f"权限须为只读、读写或管理之一 (role must be one of {', '.join(ROLES)})")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.store.transaction():
            key = self.store.add_api_key(name, role, key_hash(secret), secret[:8], actor)
            self.store.audit(actor, "apikey.add", f"apikey:{key.id}", {"name": name, "role": role}, ip=ip)
        return key, secret

    def list(self) -> list[ApiKey]:
        return self.store.list_api_keys()

    def find(self, name_or_id: str) -> ApiKey:
        for key in self.store.list_api_keys():
            if key.name == name_or_id or str(key.id) == name_or_id:
                return key
        raise NotFoundError(f"没有名为 {name_or_id!r} 的密钥 (no API key named {name_or_id!r}; "
                            "`matcher keys list` shows them)")

    def revoke(self, name_or_id: str, *, actor: str, ip: str = "") -> ApiKey:
        key = self.find(name_or_id)
        with self.store.transaction():
            revoked = self.store.revoke_api_key(key.id)
            self.store.audit(actor, "apikey.revoke", f"apikey:{key.id}", {"name": key.name}, ip=ip)
        return revoked

    # -- checking a request's key ---------------------------------------------------------------
    def identify(self, given: str) -> Caller | None:
        """The caller a key stands for, or None for a wrong key. Configured keys are compared in
        constant time, each of them (no early exit); stored keys are found by their hash."""
        given_b = given.encode("utf-8")
        found: ConfiguredKey | None = None
        for key in configured_keys(self.settings):
            if hmac.compare_digest(given_b, key.secret.encode("utf-8")) and found is None:
                found = key
        if found is not None:
            return Caller(f"key:{fingerprint(given)}", found.role)
        stored = self.store.api_key_by_hash(key_hash(given))
        if stored is None:
            return None
        return Caller(f"key:{stored.name}", stored.role, stored.id)

    def _subject(self, client: str) -> str:
        return f"apikey:{client or 'unknown'}"

    def throttled_until(self, client: str) -> str | None:
        """The time (UTC, ISO) until which `client`'s keys are refused, or None."""
        row = self.store.get_failures(self._subject(client))
        if row is not None and row.locked_until and row.locked_until > _now().isoformat():
            return row.locked_until
        return None

    def record_failure(self, client: str, given: str) -> str | None:
        """Count a wrong key from `client` and audit it; returns the time it is throttled until,
        when this failure started the throttle."""
        s = self.settings
        now = _now()
        subject = self._subject(client)
        with self.store.transaction():
            row = self.store.get_failures(subject)
            window = (now - timedelta(minutes=s.apikey_lockout_minutes)).isoformat()
            # A count starts afresh after a throttle ran out, or when its first failure is old.
            fresh = row is None or bool(row.locked_until) or row.first_at < window
            failures = 1 if fresh else row.failures + 1
            first = now.isoformat() if fresh else row.first_at
            locked = ((now + timedelta(minutes=s.apikey_lockout_minutes)).isoformat()
                      if failures >= s.apikey_max_failures else None)
            self.store.set_failures(subject, failures, first, locked)
            self.store.audit(f"anonymous@{client or 'unknown'}", "apikey.failed", f"key:{fingerprint(given)}",
                             {"failures": failures, **({"throttled_until": locked} if locked else {})},
                             ip=client)
        return locked

    def record_success(self, client: str, caller: Caller) -> None:
        if self.store.get_failures(self._subject(client)) is not None:
            self.store.clear_failures(self._subject(client))
        if caller.key_id is not None:
            at = _now().isoformat()
            # At most one write a minute per key: a busy integration must not turn reads into writes.
            stored = self.store.get_api_key(caller.key_id)
            if (stored.last_used_at or "") < (_now() - timedelta(minutes=1)).isoformat():
                self.store.touch_api_key(caller.key_id, at)


def open_api_keys(settings: Settings) -> ApiKeys:
    """The API keys of the settings' database, without an engine (the CLI's `matcher keys`)."""
    return ApiKeys(Store(settings.db, busy_timeout=settings.busy_timeout), settings)
