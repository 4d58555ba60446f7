"""Staff accounts: passwords, sign-in with lock-out, server-side sessions with a CSRF token each.

Feedback and status changes come from people in a browser, so the page's writes need a signed-in
staff member (API keys stay for machines). What this module promises:

* Passwords are hashed with scrypt (`hashlib.scrypt`, RFC 7914; N = 2^17, r = 8, p = 1, OWASP's
  advice) and a 16-byte random salt per user; the parameters are stored in the hash
  (`scrypt$N$r$p$salt$hash`), so older hashes still verify and are re-made with today's
  parameters at their owner's next sign-in. Verification compares with `hmac.compare_digest`.
* `sign_in` answers the same for an unknown user and a wrong password, and the same for an
  unknown name and a real one: failures in a row are counted for both, and after
  `login_max_failures` of them the name is locked for `login_lockout_minutes` (`LockedOutError`,
  429, the same message), whether an account has it or not; while locked, even the right
  password is refused. Every attempt costs one scrypt check and one write, whichever path it
  takes. `unlock` (the CLI's `matcher users unlock`) ends a lock early.
* A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie; the database keeps
  only its SHA-256, so a copy of the database cannot be replayed as a cookie. Each session has its
  own CSRF token, which every write sent by the page must echo (`check_csrf`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from matcher.config import Settings
from matcher.errors import AuthError, ForbiddenError, InputError, LockedOutError, NotFoundError
from matcher.records import User
from matcher.store import Store
from matcher.timefmt import local_time

ROLES: tuple[str, ...] = ("staff", "admin")
MIN_PASSWORD_CHARS = 10
_USERNAME = re.compile(r"^[A-Za-z0-9_.\-\u4e00-\u9fff]{2,40}$")

# scrypt cost: OWASP's Password Storage Cheat Sheet asks for at least N = 2^17, r = 8, p = 1 (128 MiB,
# about 1.3 s on this project's 2-core test machine). The parameters are stored with each hash, so
# hashes made with older ones still verify and are re-made at the owner's next sign-in
# (`needs_rehash`). At most two are computed at once: each takes 128 MiB and a core, and a burst of
# sign-ins must not take the server's memory with it.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
_MAXMEM = 256 * 1024 * 1024
_HASHING = threading.BoundedSemaphore(2)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    with _HASHING:
        return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=dklen)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(_scrypt(password, salt, n, r, p, 32))}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def needs_rehash(stored: str) -> bool:
    """True when `stored` was made with weaker parameters than today's (or is not ours)."""
    try:
        scheme, n, r, p, _, _ = stored.split("$")
        return scheme != "scrypt" or int(n) < SCRYPT_N or int(r) < SCRYPT_R or int(p) < SCRYPT_P
    except ValueError:
        return True


@functools.cache
def _dummy_hash() -> str:
    """Checked for unknown user names and locked accounts, so that the time taken does not tell
    which names exist or are locked (made on first use: it costs as much as a sign-in)."""
    return hash_password("not a password: only here to take as long as a real check")


def check_username(username: str) -> str:
    name = username.strip()
    if not _USERNAME.match(name):
        raise InputError("用户名应为 2 到 40 个字母、数字、汉字或 . _ -，不含空格 "
                         "(a user name is 2 to 40 letters, digits, Chinese characters or . _ - (no spaces))")
    return name


def check_password(password: str, username: str = "") -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise InputError(f"密码至少 {MIN_PASSWORD_CHARS} 个字符 "
                         f"(the password must have at least {MIN_PASSWORD_CHARS} characters)")
    if username and username.lower() in password.lower():
        raise InputError("密码不能包含用户名 (the password must not contain the user name)")
    if len(set(password)) < 4:
        raise InputError(
            "密码重复的字符太多，请换一个 (the password repeats too few characters; choose another)"
        )
    return password


#: One-time passwords: 14 characters without the ones people misread (0/O, 1/l/I).
_OTP_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def one_time_password() -> str:
    """A random password to hand over once (about 80 bits), grouped in fours for reading out."""
    while True:
        raw = "".join(secrets.choice(_OTP_ALPHABET) for _ in range(14))
        if len(set(raw)) >= 4:
            return f"{raw[:4]}-{raw[4:9]}-{raw[9:]}"


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(t: datetime) -> str:
    return t.isoformat()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in staff member: the user and the CSRF token the page must send with each write."""

    user: User
    csrf_token: str
    expires_at: str

    @property
    def actor(self) -> str:
        return f"staff:{self.user.username}"


@dataclass(frozen=True, slots=True)
class SignIn:
    """A new session: `token` goes into the cookie (and nowhere else)."""

    token: str
    session: Session


class Accounts:
    """Staff accounts over one store (see the module docstring)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    # -- accounts (the CLI's `matcher users`, the admins' page) ---------------------------------
    def add_user(self, username: str, password: str, role: str = "staff", *, actor: str = "cli",
                 ip: str = "", must_change: bool = False) -> User:
        name = check_username(username)
        if role not in ROLES:
            raise InputError(
                f"角色应为工作人员或管理员 (role must be one of {', '.join(ROLES)}, not {role!r})"
            )
        check_password(password, name)
        if self.store.get_user(name) is not None:
            raise InputError(f"账号「{name}」已存在 (a user named {name!r} exists; "
                             f"`matcher users passwd {name}` sets a new password)")
        with self.store.transaction():
            user = self.store.create_user(name, role, hash_password(password))
            if must_change:
                self.store.update_user(user.id, must_change=1)
            self.store.audit(actor, "user.add", f"user:{name}", {"role": role}, ip=ip)
        return self._require(name)

    def add_user_with_one_time_password(self, username: str, role: str = "staff", *, actor: str,
                                        ip: str = "") -> tuple[User, str]:
        """A new account with a one-time password (shown once, to the admin who made it; its owner
        sets their own at the first sign-in)."""
        password = one_time_password()
        return self.add_user(username, password, role, actor=actor, ip=ip, must_change=True), password

    def _require(self, username: str) -> User:
        user = self.store.get_user(username.strip())
        if user is None:
            raise NotFoundError(
                f"没有账号「{username}」 (no user named {username!r}; `matcher users list` shows them)"
            )
        return user

    def set_password(self, username: str, password: str, *, actor: str = "cli", ip: str = "") -> None:
        user = self._require(username)
        check_password(password, user.username)
        with self.store.transaction():
            self.store.update_user(
                user.id,
                password_hash=hash_password(password),
                failed_logins=0,
                locked_until=None,
                must_change=0,
            )
            self.store.delete_sessions(user_id=user.id)  # a new password signs every browser out
            self.store.audit(actor, "user.passwd", f"user:{user.username}", ip=ip)

    def change_own_password(self, session: Session, token: str | None, current: str, new: str, *,
                            ip: str = "") -> None:
        """A signed-in member sets their own password (after a one-time one, or at any time): the
        current one first. Their other sessions end; this one (`token`, the cookie's) stays."""
        user = self._require(session.user.username)
        if not verify_password(current, user.password_hash):
            raise InputError("当前密码不对 (the current password is wrong)")
        if new == current:
            raise InputError("新密码不能与当前密码相同 (the new password is the current one)")
        check_password(new, user.username)
        with self.store.transaction():
            self.store.update_user(user.id, password_hash=hash_password(new), must_change=0)
            self.store.delete_sessions(user_id=user.id, keep_hash=token_hash(token) if token else None)
            self.store.audit(session.actor, "user.passwd", f"user:{user.username}", ip=ip)

    def reset_password(self, username: str, *, actor: str, ip: str = "") -> str:
        """A one-time password for an account (shown once, to the admin); its owner must set their
        own at the next sign-in. Every session of the account ends and a lock is lifted."""
        user = self._require(username)
        password = one_time_password()
        with self.store.transaction():
            self.store.update_user(user.id, password_hash=hash_password(password), failed_logins=0,
                                   locked_until=None, must_change=1)
            self.store.delete_sessions(user_id=user.id)
            self.store.audit(actor, "user.reset", f"user:{user.username}", ip=ip)
        return password

    def unlock(self, username: str, *, actor: str = "cli", ip: str = "") -> None:
        user = self._require(username)
        with self.store.transaction():
            self.store.update_user(user.id, failed_logins=0, locked_until=None)
            self.store.clear_failures(f"login:{user.username[:40].lower()}")
            self.store.audit(actor, "user.unlock", f"user:{user.username}", ip=ip)

    def set_disabled(self, username: str, disabled: bool, *, actor: str = "cli", ip: str = "") -> None:
        user = self._require(username)
        if disabled and user.role == "admin" and not user.disabled:
            admins = [u for u in self.store.list_users() if u.role == "admin" and not u.disabled]
            if len(admins) <= 1:
                raise InputError(
                    "不能停用唯一的管理员账号：请先添加另一位管理员 (the last admin cannot be disabled)"
                )
        with self.store.transaction():
            self.store.update_user(user.id, disabled=int(disabled))
            if disabled:
                self.store.delete_sessions(user_id=user.id)
            self.store.audit(
                actor, "user.disable" if disabled else "user.enable", f"user:{user.username}", ip=ip
            )

    def users(self) -> list[User]:
        return self.store.list_users()

    # -- signing in and out ---------------------------------------------------------------------
    def sign_in(self, username: str, password: str, *, ip: str = "") -> SignIn:
        """A new session for the right password; `AuthError` otherwise, `LockedOutError` while locked.
        Every attempt is in the audit log.

        An unknown name is answered exactly like a real one: its failures are counted too (table
        `auth_failures`), it is locked after as many, with the same status and message, and every
        path checks one scrypt hash (the dummy one for unknown names and locked accounts) and
        writes once. Before, a real account answered 429 after 5 failures in a few milliseconds
        while an unknown name got 401 for ever after ~0.2 s: which names exist was plain."""
        s = self.settings
        name = username.strip()
        user = self.store.get_user(name) if name else None
        now = _now()
        subject = f"login:{name[:40].lower()}"
        if user is not None:
            failed, locked_until, actor = user.failed_logins, user.locked_until, f"staff:{user.username}"
        else:
            row = self.store.get_failures(subject)
            failed, locked_until = (row.failures, row.locked_until) if row else (0, None)
            actor = f"anonymous:{name[:40]}"
        target = f"user:{name[:40]}"
        if locked_until and locked_until > _iso(now):
            verify_password(password, _dummy_hash())
            self.store.audit(actor, "login.refused", target,
                             {"reason": "locked", "locked_until": locked_until}, ip=ip)
            raise LockedOutError(self._locked_message(locked_until))
        ok = verify_password(password, user.password_hash if user is not None else _dummy_hash())
        if user is not None and needs_rehash(user.password_hash):
            # A hash made with older, cheaper parameters answers faster than the dummy's: spend the
            # difference, or the time would tell which accounts are old enough to have one.
            verify_password(password, _dummy_hash())
        if user is None or not ok or user.disabled:
            failures = (0 if locked_until else failed) + 1  # a lock that ran out starts the count afresh
            locked = (_iso(now + timedelta(minutes=s.login_lockout_minutes))
                      if failures >= s.login_max_failures else None)
            detail = {"failures": failures, **({"locked_until": locked} if locked else {})}
            with self.store.transaction():
                if user is not None:
                    self.store.update_user(user.id, failed_logins=failures, locked_until=locked)
                    detail["disabled"] = user.disabled
                else:
                    self.store.set_failures(subject, failures, _iso(now), locked)
                    detail["reason"] = "unknown user"
                self.store.audit(actor, "login.failed", target, detail, ip=ip)
            if locked:
                raise LockedOutError(self._locked_message(locked))
            raise AuthError("用户名或密码错误 (wrong user name or password)")
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = _iso(now + timedelta(hours=s.session_hours))
        rehash = needs_rehash(user.password_hash)
        with self.store.transaction():
            self.store.delete_sessions(expired_before=_iso(now))
            self.store.create_session(token_hash(token), user.id, csrf, expires, ip)
            changes: dict[str, object] = {"failed_logins": 0, "locked_until": None,
                                          "last_login_at": _iso(now)}
            if rehash:  # made with older, weaker parameters: made again with today's
                changes["password_hash"] = hash_password(password)
            self.store.update_user(user.id, **changes)
            self.store.audit(f"staff:{user.username}", "login", f"user:{user.username}",
                             {"password_rehashed": True} if rehash else None, ip=ip)
        fresh = self.store.get_user_by_id(user.id)
        assert fresh is not None
        return SignIn(token, Session(fresh, csrf, expires))

    def _locked_message(self, until: str) -> str:
        return (f"多次登录失败，账号已锁定至 {local_time(until, self.settings.timezone)}，请稍后再试，"
                f"或请管理员解锁 (locked after {self.settings.login_max_failures} failed sign-ins)")

    def session(self, token: str | None) -> Session | None:
        """The live session of a cookie's token, or None (unknown, expired, user disabled)."""
        if not token or len(token) > 200:
            return None
        row = self.store.get_session(token_hash(token))
        if row is None or row.expires_at <= _iso(_now()):
            return None
        user = self.store.get_user_by_id(row.user_id)
        if user is None or user.disabled:
            return None
        return Session(user, row.csrf_token, row.expires_at)

    def sign_out(self, token: str | None, *, ip: str = "") -> None:
        session = self.session(token)
        if token:
            with self.store.transaction():
                self.store.delete_sessions(token_hash=token_hash(token))
                if session is not None:
                    self.store.audit(session.actor, "logout", f"user:{session.user.username}", ip=ip)


def open_accounts(settings: Settings) -> Accounts:
    """Accounts over the settings' database, without an engine (the CLI's `matcher users`, `audit`)."""
    return Accounts(Store(settings.db, busy_timeout=settings.busy_timeout), settings)


def check_csrf(session: Session, sent: str | None) -> None:
    """Refuse a write whose CSRF token is missing or not this session's."""
    if not sent or not hmac.compare_digest(sent.encode("utf-8"), session.csrf_token.encode("utf-8")):
        raise ForbiddenError("跨站请求校验失败：请刷新页面后重试 (the form's CSRF token is missing or stale)")
