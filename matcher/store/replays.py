"""Idempotent writes: the answer to a write kept for a retry with the same key."""

from __future__ import annotations

import json
from collections.abc import Sequence

from matcher.models import now_iso
from matcher.records import Replay
from matcher.store.database import Database


class Replays(Database):
    """Answers to writes kept by their Idempotency-Key, replayed to a retry."""

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
