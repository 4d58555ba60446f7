"""The nightly batch's runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from matcher.errors import NotFoundError
from matcher.models import Demand, Explanation, now_iso
from matcher.records import (
    BatchCandidate,
    BatchExclusion,
    BatchMatch,
    BatchOutcome,
    BatchRun,
    CandidateTable,
)
from matcher.store.database import Database
from matcher.store.rows import (
    aspects_from_json,
    aspects_json,
    demand_from_row,
    explanation_from_json,
    explanation_json,
)


class BatchRuns(Database):
    """The nightly batch's runs, their demands, candidates, exclusions and recommendations."""

    _RUN_COLUMNS = tuple(BatchRun.__dataclass_fields__)

    def _run_from_row(self, row: Sequence[Any]) -> BatchRun:
        d = dict(zip(self._RUN_COLUMNS, row, strict=True))
        for key in ("demands", "matched", "unfilled", "recommendations", "exclusions", "attempts"):
            d[key] = int(d[key] or 0)
        d["total_score"] = float(d["total_score"] or 0.0)
        d["seconds"] = float(d["seconds"] or 0.0)
        d["method"] = d["method"] or ""
        d["message"] = d["message"] or ""
        d["team_size"] = int(d["team_size"] or 0)
        return BatchRun(**d)

    def _select_runs(self, where: str, params: Sequence[Any]) -> list[BatchRun]:
        cols = ", ".join(self._RUN_COLUMNS)
        rows = self.db.execute(f"SELECT {cols} FROM batch_runs WHERE {where} ORDER BY id", list(params))
        return [self._run_from_row(r) for r in rows.fetchall()]

    def get_batch_run(self, run_key: str) -> BatchRun | None:
        runs = self._select_runs("run_key = ?", [run_key])
        return runs[0] if runs else None

    def get_batch_run_by_id(self, run_id: int) -> BatchRun:
        runs = self._select_runs("id = ?", [run_id])
        if not runs:
            raise NotFoundError(f"no batch run with id {run_id}")
        return runs[0]

    def list_batch_runs(self) -> list[BatchRun]:
        return self._select_runs("1 = 1", [])

    def last_done_batch_start(self) -> str | None:
        """When the last successful run started: demands created after it are selected too."""
        row = self.db.execute("SELECT max(started_at) FROM batch_runs WHERE status = 'done'").fetchone()
        return row[0] if row else None

    def create_batch_run(self, run_key: str, *, top: int, max_per_expert: int, candidates: int,
                         team_size: int = 0) -> BatchRun:
        with self.transaction():
            self.db.execute(
                "INSERT INTO batch_runs (run_key, status, top, max_per_expert, candidates, started_at, "
                "attempts, team_size) VALUES (?, 'running', ?, ?, ?, ?, 1, ?)",
                [run_key, top, max_per_expert, candidates, now_iso(), team_size],
            )
        run = self.get_batch_run(run_key)
        assert run is not None
        return run

    def restart_batch_run(self, run_id: int, *, top: int, max_per_expert: int, candidates: int,
                          discard: bool, team_size: int = 0) -> BatchRun:
        """Mark a run running again. `discard` forgets everything it did: its recommendations are
        deleted and their demands become `new` again, its selection and candidates are dropped."""
        with self.transaction():
            if discard:
                self.db.execute(
                    "UPDATE demands SET status = 'new', updated_at = ? WHERE status = 'matched' "
                    "AND id IN (SELECT demand_id FROM matches WHERE run_id = ?)",
                    [now_iso(), run_id],
                )
                for table in ("matches", "batch_candidates", "batch_exclusions", "batch_demands"):
                    self.db.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            self.db.execute(
                "UPDATE batch_runs SET status = 'running', top = ?, max_per_expert = ?, candidates = ?, "
                "team_size = ?, started_at = CASE WHEN ? THEN ? ELSE started_at END, finished_at = NULL, "
                "attempts = attempts + 1, message = NULL WHERE id = ?",
                [top, max_per_expert, candidates, team_size, int(discard), now_iso(), run_id],
            )
        return self.get_batch_run_by_id(run_id)

    def interrupt_batch_runs(self, except_id: int) -> list[str]:
        """Runs left `running` by a process that died: mark them `interrupted` (their run keys)."""
        with self.transaction():
            keys = [r[0] for r in self.db.execute(
                "SELECT run_key FROM batch_runs WHERE status = 'running' AND id != ?", [except_id])]
            self.db.execute(
                "UPDATE batch_runs SET status = 'interrupted', message = 'the process stopped before the "
                "run finished; run it again with the same run key to finish it' "
                "WHERE status = 'running' AND id != ?",
                [except_id],
            )
        return keys

    def select_batch_demands(self, run_id: int, since: str | None) -> int:
        """Pin the run's demands: status `new`, and demands created after `since` that are marked
        `matched` but nothing was recommended for (by a run, or saved from a live ranking). Returns
        how many were added."""
        with self.transaction():
            before = self._count("SELECT count(*) FROM batch_demands WHERE run_id = ?", [run_id])
            start = self._count("SELECT coalesce(max(position), 0) FROM batch_demands WHERE run_id = ?",
                                [run_id])
            self.db.execute(
                "INSERT OR IGNORE INTO batch_demands (run_id, demand_id, position) "
                "SELECT ?, id, ? + row_number() OVER (ORDER BY created_at, id) FROM demands "
                "WHERE status = 'new' OR (status = 'matched' AND ? IS NOT NULL AND created_at > ? "
                "AND id NOT IN (SELECT demand_id FROM recommended)) ORDER BY created_at, id",
                [run_id, start, since, since],
            )
            return self._count("SELECT count(*) FROM batch_demands WHERE run_id = ?", [run_id]) - before

    def drop_settled_batch_demands(self, run_id: int) -> int:
        """Unpin demands closed, deleted, recommended by another run or given recommendations from a
        live ranking (实时匹配) since this run pinned them."""
        settled = (
            "SELECT b.demand_id FROM batch_demands b LEFT JOIN demands d ON d.id = b.demand_id "
            "WHERE b.run_id = ? AND (d.id IS NULL OR d.status = 'closed' OR EXISTS "
            "(SELECT 1 FROM matches m WHERE m.demand_id = b.demand_id AND m.run_id != b.run_id) "
            "OR EXISTS (SELECT 1 FROM saved_matches s WHERE s.demand_id = b.demand_id))"
        )
        with self.transaction():
            ids = [r[0] for r in self.db.execute(settled, [run_id])]
            for table in ("batch_candidates", "batch_exclusions", "batch_demands"):
                self.db.conn.executemany(f"DELETE FROM {table} WHERE run_id = ? AND demand_id = ?",
                                    [(run_id, d) for d in ids])
        return len(ids)

    def pending_batch_demands(self, run_id: int) -> list[Demand]:
        """The run's demands whose candidates are not stored yet, in selection order."""
        rows = self.db.execute(
            "SELECT d.* FROM batch_demands b JOIN demands d ON d.id = b.demand_id "
            "WHERE b.run_id = ? AND b.scored_at IS NULL ORDER BY b.position",
            [run_id],
        )
        cols = [c[0] for c in rows.description]
        return [demand_from_row(dict(zip(cols, r, strict=True))) for r in rows.fetchall()]

    def count_batch_demands(self, run_id: int, *, scored: bool | None = None) -> int:
        cond = {None: "", True: " AND scored_at IS NOT NULL", False: " AND scored_at IS NULL"}[scored]
        return self._count(f"SELECT count(*) FROM batch_demands WHERE run_id = ?{cond}", [run_id])

    def save_batch_scores(self, run_id: int, demand_id: str, ranked: Sequence[BatchCandidate],
                          excluded: Sequence[BatchExclusion], error: str = "") -> None:
        """Store one demand's ranking for a run, all or nothing: a run killed later skips it."""
        with self.transaction():
            for table in ("batch_candidates", "batch_exclusions"):
                self.db.execute(f"DELETE FROM {table} WHERE run_id = ? AND demand_id = ?",
                                [run_id, demand_id])
            self.db.conn.executemany(
                "INSERT INTO batch_candidates (run_id, demand_id, expert_id, rank, score, explanation, team, "
                "aspects) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, demand_id, c.expert_id, c.rank, c.score,
                  None if c.explanation is None else explanation_json(c.explanation), int(c.team),
                  aspects_json(c.aspects)) for c in ranked],
            )
            self.db.conn.executemany(
                "INSERT INTO batch_exclusions (run_id, demand_id, expert_id, reason, score) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run_id, demand_id, x.expert_id, x.reason, x.score) for x in excluded],
            )
            self.db.execute(
                "UPDATE batch_demands SET scored_at = ?, candidates = ?, excluded = ?, error = ? "
                "WHERE run_id = ? AND demand_id = ?",
                [now_iso(), len(ranked), len(excluded), error or None, run_id, demand_id],
            )

    def batch_candidate_table(self, run_id: int) -> CandidateTable:
        rows = self.db.execute(
            "SELECT c.demand_id, c.expert_id, c.rank, c.score, c.team FROM batch_candidates c "
            "JOIN batch_demands b ON b.run_id = c.run_id AND b.demand_id = c.demand_id "
            "WHERE c.run_id = ? ORDER BY b.position, c.rank",
            [run_id],
        ).fetchall()
        return CandidateTable(
            demand_ids=[r[0] for r in rows], expert_ids=[r[1] for r in rows],
            ranks=np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows)),
            scores=np.fromiter((r[3] for r in rows), dtype=np.float64, count=len(rows)),
            team=np.fromiter((bool(r[4]) for r in rows), dtype=bool, count=len(rows)),
        )

    def batch_team_aspects(self, run_id: int, demand_id: str) -> dict[str, tuple[dict[str, Any], ...]]:
        """The aspects each team member of a demand covers, by expert id (team candidates only)."""
        rows = self.db.execute(
            "SELECT expert_id, aspects FROM batch_candidates WHERE run_id = ? AND demand_id = ? AND team = 1",
            [run_id, demand_id],
        )
        return {r[0]: aspects_from_json(r[1]) for r in rows.fetchall()}

    def batch_explanations(self, run_id: int, demand_id: str) -> dict[str, Explanation]:
        """The stored explanations of a demand's candidates (only those explained in phase 1)."""
        rows = self.db.execute(
            "SELECT expert_id, explanation FROM batch_candidates WHERE run_id = ? AND demand_id = ? "
            "AND explanation IS NOT NULL",
            [run_id, demand_id],
        )
        return {r[0]: explanation_from_json(r[1]) for r in rows.fetchall()}

    def save_batch_explanations(self, run_id: int, demand_id: str,
                                explanations: Mapping[str, Explanation]) -> None:
        """Store explanations of some of a demand's candidates (those the run assigned)."""
        with self.transaction():
            self.db.conn.executemany(
                "UPDATE batch_candidates SET explanation = ? "
                "WHERE run_id = ? AND demand_id = ? AND expert_id = ?",
                [(explanation_json(x), run_id, demand_id, e) for e, x in explanations.items()],
            )

    def finish_batch_run(self, run_id: int, matches: Sequence[BatchMatch], outcomes: Sequence[BatchOutcome],
                         *, total_score: float, seconds: float, method: str) -> BatchRun:
        """Write a run's recommendations, mark their demands `matched` and the run `done`: one transaction."""
        now = now_iso()
        with self.transaction():
            self.db.execute("DELETE FROM matches WHERE run_id = ?", [run_id])
            self.db.conn.executemany(
                "INSERT INTO matches (run_id, demand_id, expert_id, rank, score, candidate_rank, "
                "explanation, created_at, team, aspects) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, m.demand_id, m.expert_id, m.rank, m.score, m.candidate_rank,
                  explanation_json(m.explanation), now, int(m.team), aspects_json(m.aspects))
                 for m in matches],
            )
            self.db.conn.executemany(
                "UPDATE batch_demands SET assigned = ?, unfilled_reason = ? "
                "WHERE run_id = ? AND demand_id = ?",
                [(o.assigned, o.reason or None, run_id, o.demand_id) for o in outcomes],
            )
            matched = sorted({m.demand_id for m in matches})
            self.db.conn.executemany(
                "UPDATE demands SET status = 'matched', updated_at = ? WHERE id = ? AND status = 'new'",
                [(now, d) for d in matched],
            )
            self.db.execute(
                "UPDATE batch_runs SET status = 'done', finished_at = ?, demands = ?, matched = ?, "
                "unfilled = ?, recommendations = ?, exclusions = ?, total_score = ?, seconds = ?, "
                "method = ?, message = NULL WHERE id = ?",
                [now, len(outcomes), len(matched), sum(1 for o in outcomes if o.reason),
                 len(matches), sum(o.excluded for o in outcomes), total_score, seconds, method, run_id],
            )
        return self.get_batch_run_by_id(run_id)

    def fail_batch_run(self, run_id: int, message: str) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE batch_runs SET status = 'failed', finished_at = ?, message = ? WHERE id = ?",
                [now_iso(), message, run_id],
            )

    def list_batch_matches(self, run_id: int | None = None, demand_id: str | None = None) -> list[BatchMatch]:
        """Recommendations, by demand then rank; of one run and/or one demand when given."""
        clauses, params = ["1 = 1"], []
        if run_id is not None:
            clauses.append("m.run_id = ?")
            params.append(run_id)
        if demand_id is not None:
            clauses.append("m.demand_id = ?")
            params.append(demand_id)
        rows = self.db.execute(
            "SELECT m.run_id, m.demand_id, m.expert_id, m.rank, m.score, m.candidate_rank, m.explanation, "
            "m.team, m.aspects "
            "FROM matches m LEFT JOIN batch_demands b ON b.run_id = m.run_id AND b.demand_id = m.demand_id "
            f"WHERE {' AND '.join(clauses)} ORDER BY m.run_id, b.position, m.demand_id, m.rank",
            params,
        )
        return [BatchMatch(int(r[0]), r[1], r[2], int(r[3]), float(r[4]), int(r[5]),
                           explanation_from_json(r[6]), bool(r[7]), aspects_from_json(r[8]))
                for r in rows.fetchall()]

    def list_batch_exclusions(self, run_id: int) -> list[BatchExclusion]:
        rows = self.db.execute(
            "SELECT x.demand_id, x.expert_id, x.reason, x.score FROM batch_exclusions x "
            "JOIN batch_demands b ON b.run_id = x.run_id AND b.demand_id = x.demand_id "
            "WHERE x.run_id = ? ORDER BY b.position, x.score DESC, x.expert_id",
            [run_id],
        )
        return [BatchExclusion(r[0], r[1], r[2], float(r[3])) for r in rows.fetchall()]

    def list_batch_outcomes(self, run_id: int) -> list[BatchOutcome]:
        rows = self.db.execute(
            "SELECT demand_id, candidates, excluded, assigned, error, unfilled_reason FROM batch_demands "
            "WHERE run_id = ? ORDER BY position",
            [run_id],
        )
        return [BatchOutcome(r[0], int(r[1] or 0), int(r[2] or 0), int(r[3] or 0), r[4] or "", r[5] or "")
                for r in rows.fetchall()]
