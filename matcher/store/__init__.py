"""The SQLite store: every SQL statement of the project lives in this package, one file a resource.

  database.py    Database: connections (one per thread), transactions, the meta table
  migrations.py  the schema, as steps run once each (`PRAGMA user_version` counts them)
  rows.py        records to rows and back (lists and explanations as JSON text)
  experts.py     Experts                  merges.py    Merges (the import and merge logs)
  demands.py     Demands, Recommendations feedback.py  Feedback (verdicts, pauses)
  outcomes.py    Outcomes (and the statistics)
  accounts.py    Users (sessions, failures), ApiKeys, AuditLog
  replays.py     Replays (idempotent writes)
  caches.py      Caches (tokens, vectors, popularity)  batch.py     BatchRuns
  backup.py      Backups (SQLite's online backup API), check_database
  learning.py    LearnedData (evidence for learning, decisions on proposals, the own thesaurus)

Each resource is a small class deriving from `Database`, so all of them write through the same
connection and transaction rules; `Store` is their union, what the engine and the services hold.
The records they return are in `matcher.records`.

Built on sqlite-utils. The schema grows only through `MIGRATIONS`, each step run once in a
transaction. Writes go through `Store.transaction()` (BEGIN IMMEDIATE, waiting up to `busy_timeout`
for another writer; nested blocks become savepoints), so an import of a thousand rows is all or
nothing, and a locked database or a full disk becomes a `StoreError` that says so. List-valued
fields are stored as JSON text. `data_version` in the meta table counts changes to the experts, so
a saved index knows whether it is stale."""

from __future__ import annotations

from matcher.records import (
    RUN_STATUSES,
    ApiKey,
    AuditEntry,
    BatchCandidate,
    BatchExclusion,
    BatchMatch,
    BatchOutcome,
    BatchRun,
    CandidateTable,
    DatabaseInfo,
    Decision,
    DemandFact,
    DemandPage,
    Engagement,
    Failures,
    FeedbackEntry,
    MergeEntry,
    Outcome,
    Pause,
    Replay,
    SessionRow,
    StoredRecommendations,
    ThesaurusVersion,
    User,
    WriteSummary,
)
from matcher.store.accounts import ApiKeys, AuditLog, Users
from matcher.store.backup import Backups, check_database
from matcher.store.batch import BatchRuns
from matcher.store.caches import Caches
from matcher.store.database import Database
from matcher.store.demands import Demands, Recommendations
from matcher.store.experts import Experts
from matcher.store.feedback import Feedback
from matcher.store.learning import DECISIONS, LearnedData
from matcher.store.merges import Merges
from matcher.store.migrations import MIGRATIONS
from matcher.store.outcomes import Outcomes
from matcher.store.replays import Replays


class Store(Experts, Merges, Demands, Recommendations, Feedback, Outcomes, Users, ApiKeys, AuditLog,
            Replays, Caches, BatchRuns, Backups, LearnedData):
    """One SQLite database (a path, or ":memory:"), every resource of it: the union of the
    resource classes, which share one set of connections and transaction rules (`Database`).
    `busy_timeout`: seconds a write waits for another connection's write lock before it fails."""


__all__ = ["ApiKey", "ApiKeys", "AuditEntry", "AuditLog", "Backups", "BatchCandidate", "BatchExclusion",
           "BatchMatch", "BatchOutcome", "BatchRun", "BatchRuns", "Caches", "CandidateTable", "DECISIONS",
           "Database", "DatabaseInfo", "Decision", "DemandFact", "DemandPage", "Demands", "Engagement",
           "Experts", "Failures", "Feedback", "FeedbackEntry", "LearnedData", "MIGRATIONS", "MergeEntry",
           "Merges", "Outcome", "Outcomes", "Pause", "RUN_STATUSES", "Recommendations", "Replay", "Replays",
           "SessionRow", "Store", "StoredRecommendations", "ThesaurusVersion", "User", "Users",
           "WriteSummary", "check_database"]
