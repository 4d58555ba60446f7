"""API keys (only their SHA-256), the answers to idempotent writes, counts of failed attempts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from matcher.errors import NotFoundError, StoreError
from matcher.models import now_iso
from matcher.records import ApiKey, Failures, Replay
from matcher.store.database import Database


class ApiKeys(Database):
    """API keys with roles, replays of writes sent with an Idempotency-Key, failed sign-ins and
    key guesses per subject."""

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

    def get_replay(self, scope: str) -> Replay | None:
        row = self.db.execute("SELECT fingerprint, state, status, headers, body, created_at FROM idempotency "
                              "WHERE scope = ?", [scope]).fetchone()
        if row is None:
            return None
        headers = tuple((str(k), str(v)) for k, v in json.loads(row[3] or "[]"))
        return Replay(row[0], row[1], row[2], headers, bytes(row[4] or b""), row[5])

    def begin_replay(self, scope: str, fingerprint: str, *, expired_before: str, stale_before: str) -> Replay | None:
        """Claim `scope` for a request about to run: None when claimed (new, expired, or pending
        since before `stale_before`: its process died), else the row that stands (done, or pending
        in another request). Rows older than `expired_before` are dropped on the way."""
        with self.transaction():
            self.db.execute("DELETE FROM idempotency WHERE created_at < ?", [expired_before])
            current = self.get_replay(scope)
            if current is not None and not (current.state == "pending" and current.created_at < stale_before):
                return current
            self.db.execute(
                "INSERT INTO idempotency (scope, fingerprint, state, created_at) VALUES (?, ?, 'pending', ?) "
                "ON CONFLICT(scope) DO UPDATE SET fingerprint = excluded.fingerprint, state = 'pending', "
                "status = NULL, headers = NULL, body = NULL, created_at = excluded.created_at",
                [scope, fingerprint, now_iso()])
        return None

    def finish_replay(self, scope: str, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
        with self.transaction():
            self.db.execute("UPDATE idempotency SET state = 'done', status = ?, headers = ?, body = ? "
                            "WHERE scope = ?", [status, json.dumps(list(headers)), body, scope])

    def drop_replay(self, scope: str) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM idempotency WHERE scope = ?", [scope])

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
