"""The experts' records."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from matcher.errors import NotFoundError
from matcher.models import Expert, now_iso
from matcher.records import WriteSummary
from matcher.store.database import Database
from matcher.store.rows import (
    EXPERT_COLUMNS,
    expert_from_row,
    expert_to_row,
)


class Experts(Database):
    """The experts' records."""

    def upsert_experts(self, experts: Iterable[Expert]) -> WriteSummary:
        """Insert new experts, update changed ones, leave identical ones alone (one transaction)."""
        inserted = updated = unchanged = 0
        now = now_iso()
        with self.transaction():
            cols = [c[0] for c in self.db.execute("SELECT * FROM experts LIMIT 0").description]
            for expert in experts:
                row = expert_to_row(expert)
                old = self.db.execute("SELECT * FROM experts WHERE id = ?", [expert.id]).fetchone()
                if old is None:
                    self.db["experts"].insert({**row, "created_at": now, "updated_at": now})
                    inserted += 1
                    continue
                old_row = dict(zip(cols, old, strict=True))
                if all(old_row.get(k) == v for k, v in row.items()):
                    unchanged += 1
                    continue
                self.db["experts"].update(expert.id, {**row, "updated_at": now})
                updated += 1
            if inserted or updated:
                self._bump_data_version()
        return WriteSummary(inserted, updated, unchanged)

    def get_expert(self, expert_id: str) -> Expert:
        rows = list(self.db["experts"].rows_where("id = ?", [expert_id]))
        if not rows:
            raise NotFoundError(f"没有编号为「{expert_id}」的专家 (no expert with id {expert_id!r})")
        return expert_from_row(rows[0])

    def delete_expert(self, expert_id: str) -> None:
        with self.transaction():
            cur = self.db.execute("DELETE FROM experts WHERE id = ?", [expert_id])
            if cur.rowcount == 0:
                raise NotFoundError(f"没有编号为「{expert_id}」的专家 (no expert with id {expert_id!r})")
            self._bump_data_version()

    def iter_experts(self) -> Iterator[Expert]:
        for row in self.db["experts"].rows_where(order_by="id"):
            yield expert_from_row(row)

    def iter_expert_cards(self) -> Iterator[tuple[Expert, str | None]]:
        """(card, digest) of every expert in id order: the record without its documents and bio
        (what `matcher.engine.card` keeps), read without reading those columns, and the stored
        digest of the whole record (None if a write outside this class left it empty)."""
        cols = [c for c in EXPERT_COLUMNS if c not in ("documents", "bio")]
        rows = self.db.execute(f"SELECT {', '.join(cols)}, digest FROM experts ORDER BY id")
        for r in rows:
            yield expert_from_row(dict(zip(cols, r[:-1], strict=True))), r[-1]

    def count_experts(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM experts").fetchone()[0])

    def search_experts(self, q: str = "", limit: int = 50, offset: int = 0) -> tuple[list[Expert], int]:
        """Experts whose name, institution, fields or region contain `q` (a page, and the total)."""
        where, params = "1 = 1", []
        if q:
            where = ("(name LIKE ? ESCAPE '\\' OR institution LIKE ? ESCAPE '\\' "
                     "OR research_fields LIKE ? ESCAPE '\\' OR region LIKE ? ESCAPE '\\' OR id = ?)")
            # `%` and `_` in what staff type are literal characters, not LIKE wildcards ("100%", "a_b").
            like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            params = [like, like, like, like, q]
        total = int(self.db.execute(f"SELECT count(*) FROM experts WHERE {where}", params).fetchone()[0])
        rows = self.db["experts"].rows_where(where, params, order_by="id", limit=limit, offset=offset)
        return [expert_from_row(r) for r in rows], total

    def expert_names(self) -> list[tuple[str, str]]:
        """(id, name) of every expert: cheap, for finding possible duplicates."""
        return [(r[0], r[1] or "") for r in self.db.execute("SELECT id, name FROM experts")]

    def get_experts(self, ids: Iterable[str]) -> list[Expert]:
        """The experts with these ids that exist, in id order."""
        wanted = list(dict.fromkeys(ids))
        out: list[Expert] = []
        for i in range(0, len(wanted), 500):  # SQLite caps the number of parameters
            chunk = wanted[i : i + 500]
            where = f"id IN ({', '.join('?' * len(chunk))})"
            out.extend(expert_from_row(r) for r in self.db["experts"].rows_where(where, chunk))
        return sorted(out, key=lambda e: e.id)
