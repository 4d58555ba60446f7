"""Verdicts and pauses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matcher.errors import NotFoundError
from matcher.models import VERDICTS, now_iso
from matcher.records import (
    FeedbackEntry,
    Pause,
)
from matcher.store.database import Database


class Feedback(Database):
    """Verdicts staff recorded on experts for demands, and paused experts."""

    def add_feedback(self, demand_id: str, expert_id: str, verdict: str, note: str = "") -> int:
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}")
        with self.transaction():
            table = self.db["feedback"].insert(
                {"demand_id": demand_id, "expert_id": expert_id, "verdict": verdict, "note": note,
                 "created_at": now_iso()}
            )
            return int(table.last_pk)

    def list_feedback(self, demand_id: str | None = None) -> list[dict[str, Any]]:
        where, params = (None, None) if demand_id is None else ("demand_id = ?", [demand_id])
        return list(self.db["feedback"].rows_where(where, params, order_by="id"))

    _FEEDBACK_COLUMNS = ("id, demand_id, expert_id, verdict, coalesce(note, ''), created_at, "
                         "coalesce(actor, '')")

    def record_feedback(self, demand_id: str, expert_id: str, verdict: str, note: str = "",
                        actor: str = "", at: str | None = None) -> FeedbackEntry:
        """Store a verdict and return it (`add_feedback`, with who recorded it); `at` (ISO time,
        default now) for verdicts recorded elsewhere first."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}")
        with self.transaction():
            cur = self.db.execute(
                "INSERT INTO feedback (demand_id, expert_id, verdict, note, created_at, actor) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [demand_id, expert_id, verdict, note, at or now_iso(), actor],
            )
            fid = int(cur.lastrowid or 0)
        return self.feedback_entries(where="id = ?", params=[fid])[0]

    def feedback_entries(self, *, where: str = "1 = 1", params: Sequence[Any] = ()) -> list[FeedbackEntry]:
        rows = self.db.execute(f"SELECT {self._FEEDBACK_COLUMNS} FROM feedback WHERE {where} ORDER BY id",
                               list(params))
        return [FeedbackEntry(int(r[0]), *r[1:]) for r in rows.fetchall()]

    def get_feedback(self, feedback_id: int) -> FeedbackEntry:
        found = self.feedback_entries(where="id = ?", params=[feedback_id])
        if not found:
            raise NotFoundError(f"no verdict with id {feedback_id}")
        return found[0]

    def delete_feedback(self, feedback_id: int) -> FeedbackEntry:
        """Withdraw a verdict (recorded by mistake): it is gone, and with it what it ruled out and
        what learning drew from it; the verdict as it was is returned (for the audit log)."""
        with self.transaction():
            entry = self.get_feedback(feedback_id)
            self.db.execute("DELETE FROM feedback WHERE id = ?", [feedback_id])
        return entry

    def latest_verdicts(self, demand_id: str) -> dict[str, FeedbackEntry]:
        """Each expert's latest verdict for a demand."""
        return {f.expert_id: f for f in self.feedback_entries(where="demand_id = ?", params=[demand_id])}

    def excluding_feedback(self, demand_id: str, verdicts: Sequence[str]) -> dict[str, FeedbackEntry]:
        """The first verdict among `verdicts` (婉拒, 不合适) each expert got for a demand."""
        marks = ", ".join("?" * len(verdicts))
        out: dict[str, FeedbackEntry] = {}
        for f in self.feedback_entries(where=f"demand_id = ? AND verdict IN ({marks})",
                                       params=[demand_id, *verdicts]):
            out.setdefault(f.expert_id, f)
        return out

    _PAUSE_COLUMNS = "expert_id, until, coalesce(reason, ''), coalesce(actor, ''), created_at"

    def set_pause(self, expert_id: str, until: str, reason: str, actor: str) -> Pause:
        with self.transaction():
            self.db.execute(
                "INSERT INTO expert_pauses (expert_id, until, reason, actor, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(expert_id) DO UPDATE SET until = excluded.until, "
                "reason = excluded.reason, "
                "actor = excluded.actor, created_at = excluded.created_at",
                [expert_id, until, reason, actor, now_iso()],
            )
        pause = self.get_pause(expert_id)
        assert pause is not None
        return pause

    def clear_pause(self, expert_id: str) -> bool:
        with self.transaction():
            return self.db.execute("DELETE FROM expert_pauses WHERE expert_id = ?", [expert_id]).rowcount > 0

    def get_pause(self, expert_id: str) -> Pause | None:
        row = self.db.execute(f"SELECT {self._PAUSE_COLUMNS} FROM expert_pauses WHERE expert_id = ?",
                              [expert_id]).fetchone()
        return Pause(*row) if row else None

    def active_pauses(self, on: str) -> dict[str, Pause]:
        """Pauses in force on the date `on` (YYYY-MM-DD): `until` is that day or later."""
        rows = self.db.execute(f"SELECT {self._PAUSE_COLUMNS} FROM expert_pauses WHERE until >= ?", [on])
        return {r[0]: Pause(*r) for r in rows.fetchall()}

    def expert_feedback_counts(self, expert_id: str) -> dict[str, int]:
        """How many demands an expert was recommended for (by any run, or saved from a live ranking)
        and got each verdict for."""
        out = {
            "recommended": self._count(
                "SELECT count(DISTINCT demand_id) FROM recommended WHERE expert_id = ?", [expert_id]
            )
        }
        rows = self.db.execute("SELECT verdict, count(DISTINCT demand_id) FROM feedback WHERE expert_id = ? "
                               "GROUP BY verdict", [expert_id])
        for verdict in VERDICTS:
            out[verdict] = 0
        for verdict, n in rows.fetchall():
            out[verdict] = int(n)
        return out

    def expert_excluded_demands(self, expert_id: str, verdicts: Sequence[str]) -> set[str]:
        """Demands this expert got one of `verdicts` (婉拒, 不合适) for."""
        marks = ", ".join("?" * len(verdicts))
        rows = self.db.execute("SELECT DISTINCT demand_id FROM feedback WHERE expert_id = ? "
                               f"AND verdict IN ({marks})", [expert_id, *verdicts])
        return {r[0] for r in rows.fetchall()}
