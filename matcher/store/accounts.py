"""Staff accounts (their sessions, sign-in failures), API keys and the audit log."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from matcher.errors import NotFoundError, StoreError
from matcher.models import now_iso
from matcher.records import (
    ApiKey,
    AuditEntry,
    Failures,
    SessionRow,
    User,
)
from matcher.store.database import Database


class Users(Database):
    """Staff accounts and their sessions."""

    _USER_COLUMNS = ("id, username, role, password_hash, created_at, coalesce(failed_logins, 0), "
                     "locked_until, coalesce(disabled, 0), last_login_at, coalesce(must_change, 0)")

    def _user(self, where: str, params: Sequence[Any]) -> User | None:
        sql = f"SELECT {self._USER_COLUMNS} FROM users WHERE {where}"
        row = self.db.execute(sql, list(params)).fetchone()
        if row is None:
            return None
        return User(int(row[0]), row[1], row[2], row[3], row[4], int(row[5]), row[6], bool(row[7]), row[8],
                    bool(row[9]))

    def get_user(self, username: str) -> User | None:
        return self._user("username = ?", [username])

    def get_user_by_id(self, user_id: int) -> User | None:
        return self._user("id = ?", [user_id])

    def list_users(self) -> list[User]:
        ids = [r[0] for r in self.db.execute("SELECT id FROM users ORDER BY username")]
        return [u for i in ids if (u := self.get_user_by_id(int(i))) is not None]

    def create_user(self, username: str, role: str, password_hash: str) -> User:
        with self.transaction():
            if self.get_user(username) is not None:
                raise StoreError(f"a user named {username!r} exists")
            self.db.execute(
                "INSERT INTO users (username, role, password_hash, created_at, failed_logins, disabled) "
                "VALUES (?, ?, ?, ?, 0, 0)", [username, role, password_hash, now_iso()])
        user = self.get_user(username)
        assert user is not None
        return user

    def update_user(self, user_id: int, **fields: Any) -> None:
        """Set columns of a user: password_hash, role, failed_logins, locked_until, disabled,
        last_login_at, must_change."""
        allowed = {"password_hash", "role", "failed_logins", "locked_until", "disabled", "last_login_at",
                   "must_change"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot set {sorted(set(fields) - allowed)} on a user")
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction():
            self.db.execute(f"UPDATE users SET {sets} WHERE id = ?", [*fields.values(), user_id])

    def create_session(self, token_hash: str, user_id: int, csrf_token: str, expires_at: str,
                       ip: str) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at, ip) "
                "VALUES (?, ?, ?, ?, ?, ?)", [token_hash, user_id, csrf_token, now_iso(), expires_at, ip])

    def get_session(self, token_hash: str) -> SessionRow | None:
        row = self.db.execute("SELECT token_hash, user_id, csrf_token, created_at, expires_at, "
                              "coalesce(ip, '') FROM sessions WHERE token_hash = ?", [token_hash]).fetchone()
        return SessionRow(row[0], int(row[1]), row[2], row[3], row[4], row[5]) if row else None

    def delete_sessions(self, *, token_hash: str | None = None, user_id: int | None = None,
                        expired_before: str | None = None, keep_hash: str | None = None) -> int:
        clauses, params = [], []
        if keep_hash is not None:  # every other session (of `user_id`) but this one
            clauses.append("token_hash != ?")
            params.append(keep_hash)
        if token_hash is not None:
            clauses.append("token_hash = ?")
            params.append(token_hash)
        if user_id is not None:
            clauses.append("user_id = ?")
            params.append(user_id)
        if expired_before is not None:
            clauses.append("expires_at < ?")
            params.append(expired_before)
        if not clauses or clauses == ["token_hash != ?"]:
            raise ValueError("say which sessions to delete")
        with self.transaction():
            return self.db.execute(f"DELETE FROM sessions WHERE {' AND '.join(clauses)}", params).rowcount

    def get_failures(self, subject: str) -> Failures | None:
        row = self.db.execute("SELECT failures, first_at, locked_until FROM auth_failures WHERE subject = ?",
                              [subject]).fetchone()
        return Failures(int(row[0] or 0), row[1] or "", row[2]) if row else None

    def set_failures(self, subject: str, failures: int, first_at: str, locked_until: str | None) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO auth_failures (subject, failures, first_at, locked_until) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(subject) DO UPDATE SET failures = excluded.failures, first_at = excluded.first_at, "
                "locked_until = excluded.locked_until", [subject, failures, first_at, locked_until])

    def clear_failures(self, subject: str) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM auth_failures WHERE subject = ?", [subject])


class AuditLog(Database):
    """The audit log: every write, every sign-in, every view of contact details."""

    def audit(self, actor: str, action: str, target: str = "", detail: Mapping[str, Any] | None = None,
              ip: str = "") -> int:
        """Append to the audit log (in the caller's transaction, when there is one)."""
        with self.transaction():
            cur = self.db.execute(
                "INSERT INTO audit_log (at, actor, action, target, detail, ip) VALUES (?, ?, ?, ?, ?, ?)",
                [now_iso(), actor, action, target,
                 json.dumps(dict(detail or {}), ensure_ascii=False, sort_keys=True), ip],
            )
            return int(cur.lastrowid or 0)

    _AUDIT_ROW = "at, actor, action, coalesce(target, ''), coalesce(detail, '{}'), coalesce(ip, '')"

    def audit_rows_from(self, at: str | None) -> list[tuple[str, str, str, str, str, str]]:
        """The audit log's rows (at, actor, action, target, detail, ip) at or after `at`, oldest first
        (all of them for None)."""
        where, params = ("WHERE at >= ?", [at]) if at else ("", [])
        rows = self.db.execute(f"SELECT {self._AUDIT_ROW} FROM audit_log {where} ORDER BY id", params)
        return [tuple(r) for r in rows.fetchall()]  # type: ignore[misc]

    def append_audit_rows(self, rows: Sequence[Sequence[str]]) -> int:
        """Add rows (as `audit_rows_from` gives them) to the audit log, skipping any it holds already
        (the same time, actor, action, target, detail and address); returns how many were added."""
        with self.transaction():
            have = set(self.audit_rows_from(min((r[0] for r in rows), default=None))) if rows else set()
            new = [tuple(r) for r in rows if tuple(r) not in have]
            self.db.conn.executemany(
                "INSERT INTO audit_log (at, actor, action, target, detail, ip) VALUES (?, ?, ?, ?, ?, ?)", new)
        return len(new)

    def list_audit(self, *, actor: str | None = None, action: str | None = None, target: str | None = None,
                   date_from: str | None = None, date_to: str | None = None, limit: int = 200,
                   offset: int = 0) -> tuple[list[AuditEntry], int]:
        """Audit entries newest first, filtered (actor: exact, or a bare user name for `staff:NAME`;
        action: exact or a prefix ending in `.`; dates: YYYY-MM-DD inclusive, UTC); and the total."""
        clauses, params = ["1 = 1"], []
        if actor:
            clauses.append("(actor = ? OR actor = ?)")
            params += [actor, f"staff:{actor}"]
        if action:
            if action.endswith("."):
                clauses.append("substr(action, 1, ?) = ?")
                params += [len(action), action]
            else:
                clauses.append("action = ?")
                params.append(action)
        if target:
            clauses.append("target = ?")
            params.append(target)
        if date_from:
            clauses.append("substr(at, 1, 10) >= ?")
            params.append(date_from)
        if date_to:
            clauses.append("substr(at, 1, 10) <= ?")
            params.append(date_to)
        where = " AND ".join(clauses)
        total = self._count(f"SELECT count(*) FROM audit_log WHERE {where}", params)
        rows = self.db.execute(
            f"SELECT id, at, actor, action, coalesce(target, ''), coalesce(detail, '{{}}'), coalesce(ip, '') "
            f"FROM audit_log WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?", [*params, limit, offset])
        entries = [AuditEntry(int(r[0]), r[1], r[2], r[3], r[4], json.loads(r[5]), r[6])
                   for r in rows.fetchall()]
        return entries, total


class ApiKeys(Database):
    """API keys with their roles, stored by the SHA-256 of the key."""

    @staticmethod
    def _api_key_from_row(r: Sequence[Any]) -> ApiKey:
        return ApiKey(int(r[0]), r[1], r[2], r[3] or "", r[4] or "", r[5] or "", r[6], r[7])

    _KEY_COLUMNS = "id, name, role, prefix, created_at, created_by, revoked_at, last_used_at"

    def add_api_key(self, name: str, role: str, key_hash: str, prefix: str, created_by: str) -> ApiKey:
        with self.transaction():
            if self.db.execute("SELECT 1 FROM api_keys WHERE name = ?", [name]).fetchone():
                raise StoreError(f"an API key named {name!r} exists; choose another name")
            cur = self.db.execute(
                "INSERT INTO api_keys (name, role, key_hash, prefix, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?)", [name, role, key_hash, prefix, now_iso(), created_by])
            key_id = int(cur.lastrowid or 0)
        return self.get_api_key(key_id)

    def get_api_key(self, key_id: int) -> ApiKey:
        row = self.db.execute(f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE id = ?", [key_id]).fetchone()
        if row is None:
            raise NotFoundError(f"no API key with id {key_id}")
        return self._api_key_from_row(row)

    def list_api_keys(self, *, include_revoked: bool = True) -> list[ApiKey]:
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        rows = self.db.execute(f"SELECT {self._KEY_COLUMNS} FROM api_keys {where} ORDER BY id")
        return [self._api_key_from_row(r) for r in rows]

    def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The live (not revoked) key with this SHA-256, or None."""
        row = self.db.execute(f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE key_hash = ? "
                              "AND revoked_at IS NULL", [key_hash]).fetchone()
        return self._api_key_from_row(row) if row else None

    def revoke_api_key(self, key_id: int) -> ApiKey:
        with self.transaction():
            key = self.get_api_key(key_id)
            if key.revoked_at is None:
                self.db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", [now_iso(), key_id])
        return self.get_api_key(key_id)

    def touch_api_key(self, key_id: int, at: str) -> None:
        with self.transaction():
            self.db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", [at, key_id])
