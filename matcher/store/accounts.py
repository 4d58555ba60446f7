"""Staff accounts, sessions and the audit log."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from matcher.errors import StoreError
from matcher.models import now_iso
from matcher.records import (
    AuditEntry,
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
