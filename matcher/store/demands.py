"""Demands (their statuses, their change log) and what the nightly runs recommended for them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from matcher.errors import NotFoundError
from matcher.models import Demand, Explanation, now_iso
from matcher.records import (
    BatchMatch,
    DemandPage,
    StoredRecommendations,
    WriteSummary,
)
from matcher.store.database import Database
from matcher.store.rows import (
    demand_from_row,
    demand_to_row,
    explanation_from_json,
    explanation_json,
)

log = logging.getLogger(__name__)


class Demands(Database):
    """The demands, their statuses and their change log."""

    def upsert_demands(self, demands: Iterable[Demand]) -> WriteSummary:
        inserted = updated = unchanged = 0
        now = now_iso()
        with self.transaction():
            for demand in demands:
                row = demand_to_row(demand)
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
            raise NotFoundError(f"没有编号为「{demand_id}」的需求 (no demand with id {demand_id!r})")
        return demand_from_row(rows[0])

    def iter_demands(self, status: str | None = None) -> Iterator[Demand]:
        """The demands, oldest first. Read whole before the first is handed out: a caller that
        writes while it iterates (matching each demand refreshes the demand bank) would otherwise
        write with this connection's read still open ("database table is locked")."""
        where, params = (None, None) if status is None else ("status = ?", [status])
        rows = list(self.db["demands"].rows_where(where, params, order_by="created_at, id"))
        for row in rows:
            yield demand_from_row(row)

    def recent_demand_texts(self, limit: int) -> list[tuple[str, str, str]]:
        """(id, text, emphasis) of the `limit` most recently created demands (the demand bank)."""
        rows = self.db.execute(
            "SELECT id, title, keywords, description FROM demands ORDER BY created_at DESC, id DESC LIMIT ?", [limit])
        out = []
        for demand_id, title, keywords, description in rows:
            kws = json.loads(keywords) if keywords else []
            text = "\n".join(p for p in (title or "", " ".join(kws), description or "") if p)
            if text.strip():
                out.append((demand_id, text, " ".join([title or "", *kws])))
        return out

    def demands_stamp(self) -> str:
        """Changes whenever a demand is added, edited or removed."""
        row = self.db.execute("SELECT count(*), max(updated_at), max(created_at) FROM demands").fetchone()
        return f"{row[0]}|{row[1] or ''}|{row[2] or ''}"

    def count_demands(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM demands").fetchone()[0])

    def set_demand_status(self, demand_ids: Sequence[str], status: str) -> None:
        with self.transaction():
            self.db.conn.executemany(
                "UPDATE demands SET status = ?, updated_at = ? WHERE id = ?",
                [(status, now_iso(), d) for d in demand_ids],
            )

    @staticmethod
    def _demand_filters(status: str | None, industry: str | None, region: str | None, date_from: str | None,
                        date_to: str | None) -> tuple[str, list[Any]]:
        clauses, params = ["1 = 1"], []
        if status:
            clauses.append("status = ?")
            params.append(status)
        if industry:
            clauses.append("industry = ?")
            params.append(industry)
        if region:
            # `%` and `_` typed by staff are literal characters (see search_experts)
            clauses.append("region LIKE ? ESCAPE '\\'")
            params.append("%" + region.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if date_from:
            clauses.append("substr(created_at, 1, 10) >= ?")
            params.append(date_from)
        if date_to:
            clauses.append("substr(created_at, 1, 10) <= ?")
            params.append(date_to)
        return " AND ".join(clauses), params

    def list_demands(self, *, status: str | None = None, industry: str | None = None,
                     region: str | None = None, date_from: str | None = None, date_to: str | None = None,
                     limit: int = 50, offset: int = 0) -> DemandPage:
        """Demands newest first, filtered (region: contains; dates: YYYY-MM-DD, inclusive)."""
        where, params = self._demand_filters(status, industry, region, date_from, date_to)
        total = self._count(f"SELECT count(*) FROM demands WHERE {where}", params)
        rows = self.db.execute(f"SELECT * FROM demands WHERE {where} ORDER BY created_at DESC, id DESC "
                               "LIMIT ? OFFSET ?", [*params, limit, offset])
        cols = [c[0] for c in rows.description]
        found = [demand_from_row(dict(zip(cols, r, strict=True))) for r in rows.fetchall()]
        return DemandPage(found, total)

    def demand_facets(self) -> dict[str, dict[str, int]]:
        """How many demands there are of each status and each industry (the inbox's tabs and menu)."""
        out: dict[str, dict[str, int]] = {}
        for col in ("status", "industry"):
            rows = self.db.execute(f"SELECT coalesce({col}, ''), count(*) FROM demands GROUP BY 1 ORDER BY 1")
            out[col] = {r[0]: int(r[1]) for r in rows.fetchall()}
        return out

    def update_demand_status(self, demand_id: str, status: str) -> Demand:
        with self.transaction():
            cur = self.db.execute("UPDATE demands SET status = ?, updated_at = ? WHERE id = ?",
                                  [status, now_iso(), demand_id])
            if cur.rowcount == 0:
                raise NotFoundError(f"没有编号为「{demand_id}」的需求 (no demand with id {demand_id!r})")
        return self.get_demand(demand_id)

    def get_demands(self, ids: Iterable[str]) -> list[Demand]:
        """The demands with these ids that exist, in the order asked."""
        wanted = list(dict.fromkeys(ids))
        found: dict[str, Demand] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT * FROM demands WHERE id IN ({marks})", chunk)
            cols = [c[0] for c in rows.description]
            for r in rows.fetchall():
                d = demand_from_row(dict(zip(cols, r, strict=True)))
                found[d.id] = d
        return [found[i] for i in wanted if i in found]

    def demand_change_mark(self) -> int:
        """The last entry of the demands' change log (0 when empty)."""
        return self._count("SELECT coalesce(max(seq), 0) FROM demand_changes", [])

    def changed_demand_ids(self, since: int) -> list[str]:
        """Demands written (inserted, updated, deleted) after log entry `since`, first written first."""
        rows = self.db.execute("SELECT demand_id FROM demand_changes WHERE seq > ? GROUP BY demand_id "
                               "ORDER BY min(seq)", [since])
        return [r[0] for r in rows.fetchall()]


class Recommendations(Database):
    """What the nightly runs recommended, and what staff saved from a live ranking (实时匹配), as the
    inbox and the pages read it. Of the two, a demand's newest set is the one that counts."""

    def _latest_saved(self, demand_id: str) -> tuple[str, str] | None:
        row = self.db.execute("SELECT max(created_at), max(actor) FROM saved_matches WHERE demand_id = ?",
                              [demand_id]).fetchone()
        return (row[0], row[1] or "") if row and row[0] else None

    def last_recommendations(self, demand_id: str) -> StoredRecommendations:
        """The newer of: the recommendations of the latest batch run that recommended anyone for this
        demand, and those saved from a live ranking."""
        row = self.db.execute("SELECT max(run_id), max(created_at) FROM matches WHERE demand_id = ?",
                              [demand_id]).fetchone()
        saved = self._latest_saved(demand_id)
        if saved is not None and (row is None or row[0] is None or saved[0] >= (row[1] or "")):
            return StoredRecommendations(None, self.saved_matches(demand_id), "live", saved[0], saved[1])
        if not row or row[0] is None:
            return StoredRecommendations(None, [])
        run_id = int(row[0])
        return StoredRecommendations(self.get_batch_run_by_id(run_id),
                                     self.list_batch_matches(run_id=run_id, demand_id=demand_id))

    def saved_matches(self, demand_id: str) -> list[BatchMatch]:
        """The recommendations saved from a live ranking for a demand, by rank (`run_id` 0)."""
        rows = self.db.execute("SELECT expert_id, rank, score, explanation FROM saved_matches "
                               "WHERE demand_id = ? ORDER BY rank", [demand_id])
        return [BatchMatch(0, demand_id, r[0], int(r[1]), float(r[2] or 0.0), int(r[1]),
                           explanation_from_json(r[3]) if r[3] else Explanation(terms=(), evidence=()))
                for r in rows.fetchall()]

    def save_matches(self, demand_id: str, matches: Sequence[tuple[str, float, Explanation]],
                     actor: str) -> str:
        """Store (expert id, score, explanation) in rank order as the demand's recommendations from a
        live ranking (实时匹配), replacing any saved before; the time they were saved."""
        at = now_iso()
        with self.transaction():
            self.db.execute("DELETE FROM saved_matches WHERE demand_id = ?", [demand_id])
            self.db.conn.executemany(
                "INSERT INTO saved_matches (demand_id, expert_id, rank, score, explanation, created_at, "
                "actor) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (demand_id, e, rank, score, explanation_json(expl), at, actor)
                    for rank, (e, score, expl) in enumerate(matches, start=1)
                ],
            )
        return at

    def top_recommended(self, demand_ids: Sequence[str], n: int = 3) -> dict[str, list[tuple[str, str]]]:
        """(expert id, name) of the first `n` stored recommendations of each demand (its newest set:
        its latest run's, or those saved from a live ranking), leaving out experts declined or found
        unsuitable for it."""
        out: dict[str, list[tuple[str, str]]] = {d: [] for d in demand_ids}
        not_ruled_out = ("NOT EXISTS (SELECT 1 FROM feedback f WHERE f.demand_id = m.demand_id "
                         "AND f.expert_id = m.expert_id AND f.verdict IN ('declined', 'unsuitable'))")
        for i in range(0, len(demand_ids), 400):
            chunk = list(demand_ids[i : i + 400])
            marks = ", ".join("?" * len(chunk))
            batch = self.db.execute(
                "SELECT m.demand_id, m.expert_id, coalesce(e.name, m.expert_id), m.created_at FROM matches m "
                "LEFT JOIN experts e ON e.id = m.expert_id "
                f"WHERE m.demand_id IN ({marks}) AND m.run_id = (SELECT max(run_id) FROM matches x "
                f"WHERE x.demand_id = m.demand_id) AND {not_ruled_out} ORDER BY m.demand_id, m.rank",
                chunk,
            ).fetchall()
            saved = self.db.execute(
                "SELECT m.demand_id, m.expert_id, coalesce(e.name, m.expert_id), m.created_at "
                "FROM saved_matches m LEFT JOIN experts e ON e.id = m.expert_id "
                f"WHERE m.demand_id IN ({marks}) AND {not_ruled_out} ORDER BY m.demand_id, m.rank",
                chunk,
            ).fetchall()
            latest: dict[tuple[str, str], str] = {}  # (demand, source) -> when that set was written
            for source, found in (("batch", batch), ("live", saved)):
                for demand_id, _, _, at in found:
                    latest[demand_id, source] = max(latest.get((demand_id, source), ""), at or "")
            for source, found in (("batch", batch), ("live", saved)):
                for demand_id, expert_id, name, _ in found:
                    other = "live" if source == "batch" else "batch"
                    newer = latest[demand_id, source] > latest.get((demand_id, other), "") or (
                        source == "live" and latest[demand_id, source] == latest.get((demand_id, other)))
                    if newer and len(out[demand_id]) < n:
                        out[demand_id].append((expert_id, name))
        return out

    def expert_recommendation_demands(self, expert_id: str,
                                      limit: int = 50) -> list[tuple[str, str, int, str]]:
        """(demand id, run key, rank, recommended at) of an expert's latest recommendations (the run
        key "" for one saved from a live ranking)."""
        rows = self.db.execute(
            "SELECT m.demand_id, r.run_key, m.rank, m.created_at FROM matches m "
            "JOIN batch_runs r ON r.id = m.run_id WHERE m.expert_id = ? "
            "UNION ALL SELECT demand_id, '', rank, created_at FROM saved_matches WHERE expert_id = ? "
            "ORDER BY 4 DESC LIMIT ?", [expert_id, expert_id, limit])
        return [(r[0], r[1], int(r[2]), r[3]) for r in rows.fetchall()]
