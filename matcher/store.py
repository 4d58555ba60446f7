"""The SQLite store: every SQL statement of the project lives here.

Built on sqlite-utils. The schema is versioned with `PRAGMA user_version` and grows only through
the `MIGRATIONS` list, each step run once in a transaction. Writes go through `Database.atomic()`
(nested blocks become savepoints), so an import of a thousand rows is all or nothing.
List-valued fields are stored as JSON text. `data_version` in the meta table counts changes to the
experts, so a saved index knows whether it is stale.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from matcher.errors import NotFoundError, StoreError
from matcher.models import VERDICTS, Demand, Expert, now_iso

_EXPERT_JSON = ("research_fields", "documents", "tags", "contact")
_DEMAND_JSON = ("keywords", "avoid_institutions", "avoid_experts")


def _m1_initial(db: sqlite_utils.Database) -> None:
    db["experts"].create(
        {
            "id": str, "name": str, "title": str, "institution": str, "region": str,
            "research_fields": str, "bio": str, "documents": str, "tags": str, "contact": str,
            "created_at": str, "updated_at": str,
        },
        pk="id",
    )
    db["experts"].create_index(["name"])
    db["demands"].create(
        {
            "id": str, "enterprise": str, "region": str, "industry": str, "title": str,
            "description": str, "keywords": str, "created_at": str, "status": str,
            "avoid_institutions": str, "avoid_experts": str, "updated_at": str,
        },
        pk="id",
    )
    db["demands"].create_index(["status"])
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["feedback"].create(
        {"id": int, "demand_id": str, "expert_id": str, "verdict": str, "note": str, "created_at": str},
        pk="id",
    )
    db["feedback"].create_index(["demand_id"])


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_m1_initial]


@dataclass(frozen=True, slots=True)
class WriteSummary:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


class Store:
    """One SQLite database. Open with a path (or ":memory:")."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        try:
            if self.path == ":memory:":
                self.db = sqlite_utils.Database(memory=True)
            else:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
                self.db = sqlite_utils.Database(conn)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA busy_timeout=10000")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    # -- schema ---------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        current = self.schema_version
        for version, step in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            with self.db.atomic():
                step(self.db)
                self.db.execute(f"PRAGMA user_version = {version}")

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """All writes inside commit together or not at all (nested: a savepoint)."""
        try:
            with self.db.atomic():
                yield self
        except sqlite3.OperationalError as exc:
            raise StoreError(f"database write failed ({exc}); nothing was written") from exc

    # -- meta -----------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str = "") -> str:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.db["meta"].upsert({"key": key, "value": value}, pk="key")

    @property
    def data_version(self) -> int:
        return int(self.get_meta("data_version", "0"))

    def _bump_data_version(self) -> None:
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES('data_version', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    # -- experts --------------------------------------------------------------------------------
    @staticmethod
    def _expert_row(expert: Expert) -> dict[str, Any]:
        d = expert.to_dict(include_contact=True)
        for key in _EXPERT_JSON:
            d[key] = json.dumps(d[key], ensure_ascii=False)
        return d

    @staticmethod
    def _expert_from_row(row: dict[str, Any]) -> Expert:
        d = dict(row)
        for key in _EXPERT_JSON:
            d[key] = json.loads(d[key]) if d.get(key) else None
        return Expert.from_dict(d)

    def upsert_experts(self, experts: Iterable[Expert]) -> WriteSummary:
        """Insert new experts, update changed ones, leave identical ones alone (one transaction)."""
        inserted = updated = unchanged = 0
        now = now_iso()
        with self.transaction():
            for expert in experts:
                row = self._expert_row(expert)
                old = self.db.execute("SELECT * FROM experts WHERE id = ?", [expert.id]).fetchone()
                if old is None:
                    self.db["experts"].insert({**row, "created_at": now, "updated_at": now})
                    inserted += 1
                    continue
                cols = [c[0] for c in self.db.execute("SELECT * FROM experts LIMIT 0").description]
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
            raise NotFoundError(f"no expert with id {expert_id!r}")
        return self._expert_from_row(rows[0])

    def delete_expert(self, expert_id: str) -> None:
        with self.transaction():
            cur = self.db.execute("DELETE FROM experts WHERE id = ?", [expert_id])
            if cur.rowcount == 0:
                raise NotFoundError(f"no expert with id {expert_id!r}")
            self._bump_data_version()

    def iter_experts(self) -> Iterator[Expert]:
        for row in self.db["experts"].rows_where(order_by="id"):
            yield self._expert_from_row(row)

    def count_experts(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM experts").fetchone()[0])

    def search_experts(self, q: str = "", limit: int = 50, offset: int = 0) -> tuple[list[Expert], int]:
        """Experts whose name, institution, fields or region contain `q` (a page, and the total)."""
        where, params = "1 = 1", []
        if q:
            where = "(name LIKE ? OR institution LIKE ? OR research_fields LIKE ? OR region LIKE ? OR id = ?)"
            like = f"%{q}%"
            params = [like, like, like, like, q]
        total = int(self.db.execute(f"SELECT count(*) FROM experts WHERE {where}", params).fetchone()[0])
        rows = self.db["experts"].rows_where(where, params, order_by="id", limit=limit, offset=offset)
        return [self._expert_from_row(r) for r in rows], total

    # -- demands --------------------------------------------------------------------------------
    @staticmethod
    def _demand_row(demand: Demand) -> dict[str, Any]:
        d = demand.to_dict()
        for key in _DEMAND_JSON:
            d[key] = json.dumps(d[key], ensure_ascii=False)
        return d

    @staticmethod
    def _demand_from_row(row: dict[str, Any]) -> Demand:
        d = dict(row)
        for key in _DEMAND_JSON:
            d[key] = json.loads(d[key]) if d.get(key) else None
        return Demand.from_dict(d)

    def upsert_demands(self, demands: Iterable[Demand]) -> WriteSummary:
        inserted = updated = unchanged = 0
        now = now_iso()
        with self.transaction():
            for demand in demands:
                row = self._demand_row(demand)
                existing = list(self.db["demands"].rows_where("id = ?", [demand.id]))
                if not existing:
                    self.db["demands"].insert({**row, "updated_at": now})
                    inserted += 1
                elif all(existing[0].get(k) == v for k, v in row.items()):
                    unchanged += 1
                else:
                    self.db["demands"].update(demand.id, {**row, "updated_at": now})
                    updated += 1
        return WriteSummary(inserted, updated, unchanged)

    def get_demand(self, demand_id: str) -> Demand:
        rows = list(self.db["demands"].rows_where("id = ?", [demand_id]))
        if not rows:
            raise NotFoundError(f"no demand with id {demand_id!r}")
        return self._demand_from_row(rows[0])

    def iter_demands(self, status: str | None = None) -> Iterator[Demand]:
        where, params = (None, None) if status is None else ("status = ?", [status])
        for row in self.db["demands"].rows_where(where, params, order_by="created_at, id"):
            yield self._demand_from_row(row)

    def count_demands(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM demands").fetchone()[0])

    def set_demand_status(self, demand_ids: Sequence[str], status: str) -> None:
        with self.transaction():
            self.db.executemany(
                "UPDATE demands SET status = ?, updated_at = ? WHERE id = ?",
                [(status, now_iso(), d) for d in demand_ids],
            )

    # -- feedback -------------------------------------------------------------------------------
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
