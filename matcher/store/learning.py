"""What learning reads and keeps: the verdicts and outcomes as evidence, the admins' decisions on
proposed thesaurus entries, and the 科协's own thesaurus, every version of it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from matcher.models import now_iso
from matcher.records import Decision, ThesaurusVersion
from matcher.store.database import Database

DECISIONS: tuple[str, ...] = ("accepted", "rejected")


class LearnedData(Database):
    """Evidence for learning, decisions on proposals, the own thesaurus' versions."""

    @property
    def learning_version(self) -> int:
        """Moves on at every change to what learning reads (triggers of migration 12)."""
        return int(self.get_meta("learning_version", "0"))

    def verdict_evidence(self, verdicts: Sequence[str]) -> list[tuple[str, str, str]]:
        """(demand, expert, verdict) of every verdict among `verdicts`, in the order recorded."""
        marks = ", ".join("?" * len(verdicts))
        rows = self.db.execute(f"SELECT demand_id, expert_id, verdict FROM feedback "
                               f"WHERE verdict IN ({marks}) ORDER BY id", list(verdicts))
        return [(r[0], r[1], r[2]) for r in rows.fetchall()]

    def outcome_evidence(self) -> list[tuple[str, str]]:
        """(demand, expert) of every outcome recorded with an expert."""
        rows = self.db.execute("SELECT DISTINCT o.demand_id, x.expert_id FROM outcomes o "
                               "JOIN outcome_experts x ON x.outcome_id = o.id ORDER BY o.id, x.expert_id")
        return [(r[0], r[1]) for r in rows.fetchall()]

    # -- decisions on proposals -------------------------------------------------------------------
    _DECISION_COLUMNS = "phrase, concept, decision, coalesce(actor, ''), at, coalesce(note, ''), evidence"

    @staticmethod
    def _decision(r: Sequence[Any]) -> Decision:
        return Decision(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}"))

    def decisions(self) -> dict[tuple[str, str], Decision]:
        rows = self.db.execute(f"SELECT {self._DECISION_COLUMNS} FROM proposal_decisions "
                               "ORDER BY at, phrase, concept")
        return {(d.phrase, d.concept): d for d in map(self._decision, rows.fetchall())}

    def get_decision(self, phrase: str, concept: str) -> Decision | None:
        row = self.db.execute(f"SELECT {self._DECISION_COLUMNS} FROM proposal_decisions WHERE phrase = ? "
                              "AND concept = ?", [phrase, concept]).fetchone()
        return self._decision(row) if row else None

    def decide(self, phrase: str, concept: str, decision: str, actor: str, *, note: str = "",
               evidence: Mapping[str, object] | None = None, at: str | None = None) -> Decision:
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
        with self.transaction():
            self.db.execute(
                "INSERT INTO proposal_decisions (phrase, concept, decision, actor, at, note, evidence) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(phrase, concept) DO UPDATE SET "
                "decision = excluded.decision, actor = excluded.actor, at = excluded.at, "
                "note = excluded.note, evidence = excluded.evidence",
                [phrase, concept, decision, actor, at or now_iso(), note,
                 json.dumps(dict(evidence or {}), ensure_ascii=False, sort_keys=True)])
            made = self.get_decision(phrase, concept)
        assert made is not None
        return made

    def undecide(self, phrase: str, concept: str) -> Decision | None:
        """Remove a decision (the association is proposed again); the decision it was, or None."""
        with self.transaction():
            gone = self.get_decision(phrase, concept)
            if gone is not None:
                self.db.execute("DELETE FROM proposal_decisions WHERE phrase = ? AND concept = ?",
                                [phrase, concept])
        return gone

    # -- the 科协's own thesaurus ------------------------------------------------------------------
    _VERSION_COLUMNS = "version, text, coalesce(actor, ''), at, coalesce(note, '')"

    def own_thesaurus(self, version: int | None = None) -> ThesaurusVersion | None:
        """The current version (or `version`), None when there is none."""
        if version is None:
            row = self.db.execute(f"SELECT {self._VERSION_COLUMNS} FROM own_thesaurus "
                                  "ORDER BY version DESC LIMIT 1").fetchone()
        else:
            row = self.db.execute(f"SELECT {self._VERSION_COLUMNS} FROM own_thesaurus WHERE version = ?",
                                  [version]).fetchone()
        return ThesaurusVersion(int(row[0]), *row[1:]) if row else None

    def own_thesaurus_versions(self) -> list[ThesaurusVersion]:
        """Every version, newest first."""
        rows = self.db.execute(f"SELECT {self._VERSION_COLUMNS} FROM own_thesaurus ORDER BY version DESC")
        return [ThesaurusVersion(int(r[0]), *r[1:]) for r in rows.fetchall()]

    def add_own_thesaurus(self, text: str, actor: str, note: str = "", *,
                          at: str | None = None) -> ThesaurusVersion:
        """Store `text` as the next version."""
        with self.transaction():
            cur = self.db.execute("INSERT INTO own_thesaurus (version, text, actor, at, note) VALUES "
                                  "((SELECT coalesce(max(version), 0) + 1 FROM own_thesaurus), ?, ?, ?, ?)",
                                  [text, actor, at or now_iso(), note])
            version = self.own_thesaurus(int(cur.lastrowid or 0))
        assert version is not None
        return version
