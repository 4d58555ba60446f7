"""The import log and the merge log."""

from __future__ import annotations

import json
from typing import Any

from matcher.errors import NotFoundError
from matcher.models import Expert, now_iso
from matcher.records import MergeEntry
from matcher.store.database import Database


class Merges(Database):
    """The import log and the log of merged duplicates (each can be undone)."""

    def log_import(self, kind: str, source: str, *, inserted: int, updated: int, unchanged: int,
                   merged: int, rejected: int) -> int:
        with self.transaction():
            table = self.db["imports"].insert(
                {"kind": kind, "source": source, "inserted": inserted, "updated": updated,
                 "unchanged": unchanged, "merged": merged, "rejected": rejected, "created_at": now_iso()}
            )
            return int(table.last_pk)

    def log_merge(self, *, import_id: int | None, kept_id: str, merged: Expert, before: Expert, after: Expert,
                  reason: str, score: float, source: str = "", row: int | None = None) -> int:
        def dump(e: Expert) -> str:
            return json.dumps(e.to_dict(include_contact=True), ensure_ascii=False)

        with self.transaction():
            table = self.db["merges"].insert(
                {"import_id": import_id, "kept_id": kept_id, "merged_id": merged.id, "reason": reason,
                 "score": score, "source": source, "row": row, "merged_record": dump(merged),
                 "kept_before": dump(before), "kept_after": dump(after), "created_at": now_iso(),
                 "undone_at": None}
            )
            return int(table.last_pk)

    @staticmethod
    def _merge_from_row(r: dict[str, Any]) -> MergeEntry:
        def load(text: str) -> Expert:
            return Expert.from_dict(json.loads(text))

        return MergeEntry(
            id=int(r["id"]), import_id=r["import_id"], kept_id=r["kept_id"], merged=load(r["merged_record"]),
            before=load(r["kept_before"]), after=load(r["kept_after"]), reason=r["reason"] or "",
            score=float(r["score"] or 0.0), source=r["source"] or "", row=r["row"],
            created_at=r["created_at"], undone_at=r["undone_at"],
        )

    def list_merges(self, expert_id: str | None = None, *, include_undone: bool = True) -> list[MergeEntry]:
        """Merges, newest first; of one expert (kept or merged away) when `expert_id` is given."""
        clauses, params = [], []
        if expert_id is not None:
            clauses.append("(kept_id = ? OR merged_id = ?)")
            params += [expert_id, expert_id]
        if not include_undone:
            clauses.append("undone_at IS NULL")
        where = " AND ".join(clauses) or None
        rows = self.db["merges"].rows_where(where, params or None, order_by="id DESC")
        return [self._merge_from_row(r) for r in rows]

    def get_merge(self, merge_id: int) -> MergeEntry:
        rows = list(self.db["merges"].rows_where("id = ?", [merge_id]))
        if not rows:
            raise NotFoundError(
                f"没有编号为 {merge_id} 的合并记录 "
                f"(no merge with id {merge_id}; `matcher merges list` shows them)"
            )
        return self._merge_from_row(rows[0])

    def mark_merge_undone(self, merge_id: int) -> None:
        with self.transaction():
            self.db.execute("UPDATE merges SET undone_at = ? WHERE id = ?", [now_iso(), merge_id])

    def undone_merge_pairs(self) -> set[frozenset[str]]:
        """Pairs of expert ids whose merge was undone: staff said they are two people."""
        rows = self.db.execute("SELECT kept_id, merged_id FROM merges WHERE undone_at IS NOT NULL")
        return {frozenset(r) for r in rows}
