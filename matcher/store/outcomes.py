"""Outcomes and the statistics over demands and experts."""

from __future__ import annotations

from collections.abc import Sequence

from matcher.errors import NotFoundError
from matcher.models import now_iso
from matcher.records import (
    DemandFact,
    Engagement,
    Outcome,
)
from matcher.store.database import Database


class Outcomes(Database):
    """What matches produced, and the statistics over demands and experts."""

    def add_outcome(self, demand_id: str, expert_ids: Sequence[str], kind: str, value: float, unit: str,
                    day: str, note: str, actor: str) -> Outcome:
        with self.transaction():
            cur = self.db.execute(
                "INSERT INTO outcomes (demand_id, kind, value, unit, date, note, actor, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [demand_id, kind, value, unit, day, note, actor, now_iso()])
            oid = int(cur.lastrowid or 0)
            self.db.conn.executemany("INSERT INTO outcome_experts (outcome_id, expert_id) VALUES (?, ?)",
                                     [(oid, e) for e in dict.fromkeys(expert_ids)])
        return self.get_outcome(oid)

    def get_outcome(self, outcome_id: int) -> Outcome:
        found = self.list_outcomes(outcome_id=outcome_id, limit=None)
        if not found:
            raise NotFoundError(f"没有编号为 {outcome_id} 的成果记录 (no outcome with id {outcome_id})")
        return found[0]

    def delete_outcome(self, outcome_id: int) -> Outcome:
        with self.transaction():
            outcome = self.get_outcome(outcome_id)
            self.db.execute("DELETE FROM outcome_experts WHERE outcome_id = ?", [outcome_id])
            self.db.execute("DELETE FROM outcomes WHERE id = ?", [outcome_id])
        return outcome

    def list_outcomes(self, *, outcome_id: int | None = None, demand_id: str | None = None,
                      expert_id: str | None = None, date_from: str | None = None, date_to: str | None = None,
                      limit: int | None = 200, offset: int = 0) -> list[Outcome]:
        """Outcomes by date (newest first), filtered; `limit=None` for all of them."""
        clauses, params = ["1 = 1"], []
        for column, value in (("o.id", outcome_id), ("o.demand_id", demand_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if expert_id is not None:
            clauses.append("o.id IN (SELECT outcome_id FROM outcome_experts WHERE expert_id = ?)")
            params.append(expert_id)
        if date_from:
            clauses.append("o.date >= ?")
            params.append(date_from)
        if date_to:
            clauses.append("o.date <= ?")
            params.append(date_to)
        page = "" if limit is None else " LIMIT ? OFFSET ?"
        rows = self.db.execute(
            "SELECT o.id, o.demand_id, (SELECT group_concat(expert_id, char(9)) FROM "
            "(SELECT expert_id FROM outcome_experts x WHERE x.outcome_id = o.id ORDER BY expert_id)), "
            "o.kind, o.value, o.unit, o.date, coalesce(o.note, ''), coalesce(o.actor, ''), o.created_at "
            f"FROM outcomes o WHERE {' AND '.join(clauses)} ORDER BY o.date DESC, o.id DESC{page}",
            [*params, *(() if limit is None else (limit, offset))],
        )
        return [Outcome(int(r[0]), r[1], tuple((r[2] or "").split("\t")) if r[2] else (), r[3], float(r[4]),
                        r[5], r[6], r[7], r[8], r[9]) for r in rows.fetchall()]

    def count_outcomes(self, *, demand_id: str | None = None, expert_id: str | None = None,
                       date_from: str | None = None, date_to: str | None = None) -> int:
        return len(self.list_outcomes(demand_id=demand_id, expert_id=expert_id, date_from=date_from,
                                      date_to=date_to, limit=None))

    def demand_facts(self, date_from: str | None, date_to: str | None) -> list[DemandFact]:
        """One row per demand created in the period (days, inclusive): what `matcher.stats` counts."""
        where, params = self._demand_filters(None, None, None, date_from, date_to)
        rows = self.db.execute(
            "SELECT d.id, d.created_at, coalesce(d.industry, ''), coalesce(d.region, ''), d.status, "
            "EXISTS (SELECT 1 FROM recommended m WHERE m.demand_id = d.id) "
            "OR EXISTS (SELECT 1 FROM feedback f WHERE f.demand_id = d.id), "
            "(SELECT min(f.created_at) FROM feedback f WHERE f.demand_id = d.id "
            "AND f.verdict IN ('contacted', 'accepted', 'declined', 'succeeded')), "
            "EXISTS (SELECT 1 FROM feedback f WHERE f.demand_id = d.id "
            "AND f.verdict IN ('accepted', 'succeeded')), "
            "EXISTS (SELECT 1 FROM feedback f WHERE f.demand_id = d.id AND f.verdict = 'succeeded') "
            f"FROM demands d WHERE {where.replace('created_at', 'd.created_at')} ORDER BY d.created_at, d.id",
            params,
        )
        return [DemandFact(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], bool(r[7]), bool(r[8]))
                for r in rows.fetchall()]

    def expert_engagement(self, date_from: str | None, date_to: str | None) -> list[Engagement]:
        """Per expert, over the demands created in the period (the funnel's cohort): how many they
        were recommended for, contacted about, accepted and succeeded on; and the outcomes dated in
        the period that name them."""
        where, params = self._demand_filters(None, None, None, date_from, date_to)
        cohort = f"SELECT id FROM demands WHERE {where}"
        o_clauses, o_params = [], []
        if date_from:
            o_clauses.append("o.date >= ?")
            o_params.append(date_from)
        if date_to:
            o_clauses.append("o.date <= ?")
            o_params.append(date_to)
        o_where = "".join(f" AND {c}" for c in o_clauses)
        rows = self.db.execute(
            "WITH rec AS (SELECT expert_id, count(DISTINCT demand_id) n FROM recommended "
            f"WHERE demand_id IN ({cohort}) GROUP BY expert_id), "
            "fb AS (SELECT expert_id, "
            "count(DISTINCT CASE WHEN verdict IN ('contacted', 'accepted', 'declined', 'succeeded') "
            "THEN demand_id END) contacted, "
            "count(DISTINCT CASE WHEN verdict IN ('accepted', 'succeeded') THEN demand_id END) accepted, "
            "count(DISTINCT CASE WHEN verdict = 'succeeded' THEN demand_id END) succeeded "
            f"FROM feedback WHERE demand_id IN ({cohort}) GROUP BY expert_id), "
            "oc AS (SELECT x.expert_id, count(*) n FROM outcome_experts x "
            "JOIN outcomes o ON o.id = x.outcome_id "
            f"WHERE 1 = 1{o_where} GROUP BY x.expert_id), "
            "ids AS (SELECT expert_id FROM rec UNION SELECT expert_id FROM fb "
            "UNION SELECT expert_id FROM oc) "
            "SELECT ids.expert_id, coalesce(e.name, ''), coalesce(e.institution, ''), coalesce(rec.n, 0), "
            "coalesce(fb.contacted, 0), coalesce(fb.accepted, 0), coalesce(fb.succeeded, 0), "
            "coalesce(oc.n, 0) FROM ids LEFT JOIN experts e ON e.id = ids.expert_id "
            "LEFT JOIN rec ON rec.expert_id = ids.expert_id "
            "LEFT JOIN fb ON fb.expert_id = ids.expert_id LEFT JOIN oc ON oc.expert_id = ids.expert_id",
            [*params, *params, *o_params],
        )
        return [Engagement(r[0], r[1], r[2], *(int(v) for v in r[3:])) for r in rows.fetchall()]
