"""The SQLite store: every SQL statement of the project lives here.

Built on sqlite-utils. The schema is versioned with `PRAGMA user_version` and grows only through
the `MIGRATIONS` list, each step run once in a transaction. Writes go through `Store.transaction()`
(BEGIN IMMEDIATE, waiting up to `busy_timeout` for another writer; nested blocks become savepoints),
so an import of a thousand rows is all or nothing, and a locked database or a full disk becomes a
`StoreError` that says so. `backup_to` / `restore_from` use SQLite's online backup API.
List-valued fields are stored as JSON text. `data_version` in the meta table counts changes to the
experts, so a saved index knows whether it is stale.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from matcher.errors import NotFoundError, StoreError
from matcher.models import VERDICTS, Demand, Evidence, Expert, Explanation, expert_digest, now_iso

log = logging.getLogger(__name__)

_EXPERT_COLUMNS = ("id", "name", "title", "institution", "region", "research_fields", "bio", "documents",
                   "tags", "contact")
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


def _m2_batch(db: sqlite_utils.Database) -> None:
    """The nightly batch: its runs, each run's demands and their stored candidates (what makes a
    killed run resumable), the experts its 回避 rules excluded, and the recommendations (`matches`)."""
    db["batch_runs"].create(
        {"id": int, "run_key": str, "status": str, "top": int, "max_per_expert": int, "candidates": int,
         "started_at": str, "finished_at": str, "attempts": int, "demands": int, "matched": int,
         "unfilled": int, "recommendations": int, "exclusions": int, "total_score": float,
         "seconds": float, "method": str, "message": str},
        pk="id", not_null={"run_key", "status"},
    )
    db["batch_runs"].create_index(["run_key"], unique=True)
    run_fk = [("run_id", "batch_runs", "id")]
    db["batch_demands"].create(
        {"run_id": int, "demand_id": str, "position": int, "scored_at": str, "candidates": int,
         "excluded": int, "assigned": int, "error": str, "unfilled_reason": str},
        pk=("run_id", "demand_id"), foreign_keys=run_fk,
    )
    db["batch_candidates"].create(
        {"run_id": int, "demand_id": str, "expert_id": str, "rank": int, "score": float, "explanation": str},
        pk=("run_id", "demand_id", "expert_id"), foreign_keys=run_fk,
    )
    db["batch_exclusions"].create(
        {"run_id": int, "demand_id": str, "expert_id": str, "reason": str, "score": float},
        pk=("run_id", "demand_id", "expert_id"), foreign_keys=run_fk,
    )
    db["matches"].create(
        {"id": int, "run_id": int, "demand_id": str, "expert_id": str, "rank": int, "score": float,
         "candidate_rank": int, "explanation": str, "created_at": str},
        pk="id", foreign_keys=run_fk,
    )
    db["matches"].create_index(["run_id", "demand_id", "expert_id"], unique=True)
    db["matches"].create_index(["demand_id"])


MIGRATIONS.append(_m2_batch)


def _m3_imports(db: sqlite_utils.Database) -> None:
    """A log of imports, and of the expert merges they made (each reversible)."""
    db["imports"].create(
        {"id": int, "kind": str, "source": str, "inserted": int, "updated": int, "unchanged": int,
         "merged": int, "rejected": int, "created_at": str},
        pk="id",
    )
    db["merges"].create(
        {"id": int, "import_id": int, "kept_id": str, "merged_id": str, "reason": str, "score": float,
         "source": str, "row": int, "merged_record": str, "kept_before": str, "kept_after": str,
         "created_at": str, "undone_at": str},
        pk="id",
    )
    db["merges"].create_index(["kept_id"])


MIGRATIONS.append(_m3_imports)


def _m4_token_cache(db: sqlite_utils.Database) -> None:
    """Tokens of every indexed text, keyed by a hash of the tokenizer and the text: a rebuild (or a
    re-import of unchanged experts) never tokenises the same text twice."""
    db["token_cache"].create({"key": str, "tokens": str}, pk="key")


MIGRATIONS.append(_m4_token_cache)  # after every migration above


def _m5_expert_digest(db: sqlite_utils.Database) -> None:
    """Each expert row's digest (`matcher.models.expert_digest`), kept by every write: start-up
    compares it with the index's instead of reading and digesting every record with its
    documents (42 s of the start-up at 100,000 experts). Rows of older databases get theirs here."""
    db.execute("ALTER TABLE experts ADD COLUMN digest TEXT")
    rows = db.execute("SELECT * FROM experts")
    cols = [c[0] for c in rows.description]
    digests = [(expert_digest(Store._expert_from_row(dict(zip(cols, r, strict=True)))), r[0]) for r in rows]
    db.conn.executemany("UPDATE experts SET digest = ? WHERE id = ?", digests)


MIGRATIONS.append(_m5_expert_digest)


def _m6_vectors(db: sqlite_utils.Database) -> None:
    """Dense vectors of indexed texts (`matcher.dense`), keyed by the encoder's name and a digest
    of the text: a rebuild, an import of unchanged experts or a restart never encodes a text twice,
    and a changed encoder only misses its own keys."""
    db["vector_cache"].create({"model": str, "key": bytes, "dim": int, "vec": bytes}, pk=("model", "key"),
                              if_not_exists=True)


MIGRATIONS.append(_m6_vectors)


def _m7_expert_popularity(db: sqlite_utils.Database) -> None:
    """How strongly each expert matches the demands a 科协 receives, on average (the demand bank,
    `matcher.ranking.bank`): what the ranking discounts so that one expert is not offered for every
    problem. Recomputed from the stored demands; `meta.popularity_stamp` says from which."""
    db["expert_popularity"].create({"expert_id": str, "value": float}, pk="expert_id", if_not_exists=True)


MIGRATIONS.append(_m7_expert_popularity)


def _m8_team_flag(db: sqlite_utils.Database) -> None:
    """Team recommendation (组团服务): demands marked as needing a team; a batch run's team size (0:
    no teams); which stored candidates and recommendations are team members, and the aspects of
    the demand each covers (JSON)."""
    # Each column only if missing: the step may run again on a database whose user_version was
    # set back (a test fakes an older schema that way) or renumbered when branches merge.
    wanted = [("demands", "needs_team", "INTEGER NOT NULL DEFAULT 0"),
              ("batch_runs", "team_size", "INTEGER NOT NULL DEFAULT 0"),
              ("batch_candidates", "team", "INTEGER NOT NULL DEFAULT 0"),
              ("batch_candidates", "aspects", "TEXT"),
              ("matches", "team", "INTEGER NOT NULL DEFAULT 0"),
              ("matches", "aspects", "TEXT")]
    for table, column, kind in wanted:
        if column not in db[table].columns_dict:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


MIGRATIONS.append(_m8_team_flag)


def _m9_working_loop(db: sqlite_utils.Database) -> None:
    """The staff's working loop: who recorded each verdict, paused experts, staff accounts and their
    sessions, and the audit log (every write, every view of an expert's phone or e-mail: PIPL).
    Idempotent, like the steps before it: a database whose version was set back runs it again."""
    if "actor" not in db["feedback"].columns_dict:
        db.execute("ALTER TABLE feedback ADD COLUMN actor TEXT")
    db["feedback"].create_index(["expert_id"], if_not_exists=True)
    db["expert_pauses"].create(
        {"expert_id": str, "until": str, "reason": str, "actor": str, "created_at": str}, pk="expert_id",
        if_not_exists=True,
    )
    db["users"].create(
        {"id": int, "username": str, "role": str, "password_hash": str, "created_at": str,
         "failed_logins": int, "locked_until": str, "disabled": int, "last_login_at": str},
        pk="id", not_null={"username", "role", "password_hash"}, if_not_exists=True,
    )
    db["users"].create_index(["username"], unique=True, if_not_exists=True)
    db["sessions"].create(
        {"token_hash": str, "user_id": int, "csrf_token": str, "created_at": str, "expires_at": str,
         "ip": str},
        pk="token_hash", foreign_keys=[("user_id", "users", "id")], if_not_exists=True,
    )
    db["audit_log"].create(
        {"id": int, "at": str, "actor": str, "action": str, "target": str, "detail": str, "ip": str},
        pk="id", not_null={"at", "actor", "action"}, if_not_exists=True,
    )
    db["audit_log"].create_index(["at"], if_not_exists=True)
    db["audit_log"].create_index(["actor"], if_not_exists=True)


MIGRATIONS.append(_m9_working_loop)


def _m10_outcomes(db: sqlite_utils.Database) -> None:
    """What matches produced (outcomes, each linked to a demand and its experts), and a log of every
    write to a demand, kept by triggers, from which the reverse-matching index follows the demands.
    Idempotent, like the steps before it."""
    db["outcomes"].create(
        {"id": int, "demand_id": str, "kind": str, "value": float, "unit": str, "date": str, "note": str,
         "actor": str, "created_at": str},
        pk="id", not_null={"demand_id", "kind", "value", "unit", "date"}, if_not_exists=True,
    )
    db["outcomes"].create_index(["demand_id"], if_not_exists=True)
    db["outcomes"].create_index(["date"], if_not_exists=True)
    db["outcome_experts"].create(
        {"outcome_id": int, "expert_id": str}, pk=("outcome_id", "expert_id"),
        foreign_keys=[("outcome_id", "outcomes", "id")], if_not_exists=True,
    )
    db["outcome_experts"].create_index(["expert_id"], if_not_exists=True)
    db.execute("CREATE TABLE IF NOT EXISTS demand_changes "
               "(seq INTEGER PRIMARY KEY AUTOINCREMENT, demand_id TEXT NOT NULL)")
    for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
        db.execute(f"CREATE TRIGGER IF NOT EXISTS demands_log_{event.lower()} AFTER {event} ON demands "
                   f"BEGIN INSERT INTO demand_changes (demand_id) VALUES ({row}.id); END")
    db["demands"].create_index(["created_at"], if_not_exists=True)


MIGRATIONS.append(_m10_outcomes)


def _m11_keys_and_replays(db: sqlite_utils.Database) -> None:
    """API keys with roles (only their SHA-256 is kept), the answers to writes sent with an
    `Idempotency-Key` (a retried write is answered again, not done twice), and counts of failed
    sign-ins and API keys per name or client (lock-out of unknown names, throttling of key guesses)."""
    db["api_keys"].create(
        {"id": int, "name": str, "role": str, "key_hash": str, "prefix": str, "created_at": str,
         "created_by": str, "revoked_at": str, "last_used_at": str},
        pk="id", not_null={"name", "role", "key_hash"}, if_not_exists=True,
    )
    db["api_keys"].create_index(["key_hash"], unique=True, if_not_exists=True)
    db["api_keys"].create_index(["name"], unique=True, if_not_exists=True)
    db["idempotency"].create(
        {"scope": str, "fingerprint": str, "state": str, "status": int, "headers": str, "body": bytes,
         "created_at": str},
        pk="scope", not_null={"fingerprint", "state", "created_at"}, if_not_exists=True,
    )
    db["auth_failures"].create(
        {"subject": str, "failures": int, "first_at": str, "locked_until": str},
        pk="subject", if_not_exists=True,
    )


MIGRATIONS.append(_m11_keys_and_replays)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a match produced: 合作意向, 技术难题解决, 项目合作, 授权专利, 人才培养 or 经济效益."""

    id: int
    demand_id: str
    expert_ids: tuple[str, ...]
    kind: str
    value: float
    unit: str
    date: str
    note: str
    actor: str
    created_at: str


@dataclass(frozen=True, slots=True)
class DemandFact:
    """What the statistics need of one demand (`matcher.stats`)."""

    demand_id: str
    created_at: str
    industry: str
    region: str
    status: str
    recommended: bool  # a stored recommendation or any verdict
    first_contact_at: str | None  # the first verdict implying a contact
    accepted: bool
    succeeded: bool


@dataclass(frozen=True, slots=True)
class Engagement:
    expert_id: str
    name: str
    institution: str
    recommended: int
    contacted: int
    accepted: int
    succeeded: int
    outcomes: int


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    """One verdict staff recorded on one expert for one demand."""

    id: int
    demand_id: str
    expert_id: str
    verdict: str
    note: str
    created_at: str
    actor: str


@dataclass(frozen=True, slots=True)
class Pause:
    """An expert not to be recommended until `until` (a date, inclusive), and why."""

    expert_id: str
    until: str
    reason: str
    actor: str
    created_at: str


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: str  # staff | admin
    password_hash: str
    created_at: str
    failed_logins: int
    locked_until: str | None
    disabled: bool
    last_login_at: str | None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key: its name, role (read, write or admin) and the first characters of the key
    (to tell keys apart in a list); the key itself is never stored, only its SHA-256."""

    id: int
    name: str
    role: str
    prefix: str
    created_at: str
    created_by: str
    revoked_at: str | None
    last_used_at: str | None


@dataclass(frozen=True, slots=True)
class Replay:
    """The stored answer to a write sent with an Idempotency-Key (state `pending` while it runs)."""

    fingerprint: str
    state: str
    status: int | None
    headers: tuple[tuple[str, str], ...]
    body: bytes
    created_at: str


@dataclass(frozen=True, slots=True)
class Failures:
    """Failed attempts in a row for one subject (a sign-in name, an API client)."""

    failures: int
    first_at: str
    locked_until: str | None


@dataclass(frozen=True, slots=True)
class SessionRow:
    token_hash: str
    user_id: int
    csrf_token: str
    created_at: str
    expires_at: str
    ip: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: str
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    ip: str


@dataclass(frozen=True, slots=True)
class DemandPage:
    """A page of demands (newest first) and how many match the filters in all."""

    demands: list[Demand]
    total: int


@dataclass(frozen=True, slots=True)
class StoredRecommendations:
    """A demand's recommendations from the last batch run that made any (empty when none did)."""

    run: BatchRun | None
    matches: list[BatchMatch]

RUN_STATUSES: tuple[str, ...] = ("running", "done", "failed", "interrupted")


@dataclass(frozen=True, slots=True)
class BatchRun:
    """One nightly run (one per run key) and its counts; counts are 0 until it is done."""

    id: int
    run_key: str
    status: str  # running | done | failed | interrupted
    top: int
    max_per_expert: int
    candidates: int
    started_at: str
    finished_at: str | None
    attempts: int
    demands: int
    matched: int
    unfilled: int
    recommendations: int
    exclusions: int
    total_score: float
    seconds: float
    method: str
    message: str
    team_size: int = 0  # teams of this size for demands marked needs_team (0: no teams)


@dataclass(frozen=True, slots=True)
class BatchCandidate:
    """One expert of a demand's stored ranking; `explanation` is None until one is needed.
    `team`: a member of the demand's team, covering `aspects` ({"id", "terms"} each)."""

    demand_id: str
    expert_id: str
    rank: int
    score: float
    explanation: Explanation | None = None
    team: bool = False
    aspects: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class BatchExclusion:
    """An expert a demand's 回避 rules removed from its ranking, and why."""

    demand_id: str
    expert_id: str
    reason: str
    score: float


@dataclass(frozen=True, slots=True)
class BatchMatch:
    """A recommendation written by a run: `rank` within the demand, `candidate_rank` in its ranking."""

    run_id: int
    demand_id: str
    expert_id: str
    rank: int
    score: float
    candidate_rank: int
    explanation: Explanation
    team: bool = False  # a member of the demand's team (组团)
    aspects: tuple[Mapping[str, Any], ...] = ()  # the demand's aspects this member covers


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What a run did with one demand; `reason` says why it got fewer than `top` experts."""

    demand_id: str
    candidates: int
    excluded: int
    assigned: int
    error: str
    reason: str


@dataclass(frozen=True)
class CandidateTable:
    """A run's stored candidates as columns (a night holds hundreds of thousands of them)."""

    demand_ids: list[str]
    expert_ids: list[str]
    ranks: np.ndarray
    scores: np.ndarray
    team: np.ndarray | None = None  # bool per candidate: a team member (None: no team in the run)


def _explanation_json(expl: Explanation) -> str:
    return json.dumps(expl.to_dict(), ensure_ascii=False)


def _explanation_from_json(text: str) -> Explanation:
    d = json.loads(text)
    evidence = tuple(
        Evidence(field=e["field"], text=e["text"], terms=tuple(e.get("terms", ())),
                 score=float(e.get("score", 0.0)), match=str(e.get("match", "words")))
        for e in d.get("evidence", ())
    )
    return Explanation(terms=tuple(d.get("terms", ())), evidence=evidence, signals=dict(d.get("signals", {})),
                       expanded=dict(d.get("expanded", {})))


def _aspects_json(aspects: Sequence[Mapping[str, Any]]) -> str | None:
    return json.dumps([dict(a) for a in aspects], ensure_ascii=False) if aspects else None


def _aspects_from_json(text: str | None) -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(text)) if text else ()


@dataclass(frozen=True, slots=True)
class WriteSummary:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True, slots=True)
class MergeEntry:
    """A logged merge: `merged` was folded into `kept_id`, turning `before` into `after`."""

    id: int
    import_id: int | None
    kept_id: str
    merged: Expert
    before: Expert
    after: Expert
    reason: str
    score: float
    source: str
    row: int | None
    created_at: str
    undone_at: str | None

    @property
    def merged_id(self) -> str:
        return self.merged.id


def _write_error(exc: sqlite3.Error, busy_timeout: float) -> StoreError:
    """A failed write as a message that says what happened and what to do."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the database is locked by another writer (an import, the nightly batch, a restore) and stayed "
            f"locked for more than {busy_timeout:g} s (setting MATCHER_BUSY_TIMEOUT); nothing was written. "
            "Try again when that job has finished"
        )
    if "full" in text:
        return StoreError("the disk holding the database is full; nothing was written. "
                          "Free some space (old backups, logs) and try again")
    return StoreError(f"database write failed ({exc}); nothing was written")


_MATCHER_TABLES = frozenset({"experts", "demands", "meta"})


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """What `check_database` found in a sound matcher database."""

    path: Path
    schema_version: int
    experts: int
    demands: int
    size_bytes: int
    last_audit_at: str | None = None  # the time of its audit log's last entry (None: none, or no log)


def check_database(path: Path | str) -> DatabaseInfo:
    """Check that `path` is a sound matcher database (read-only); `StoreError` says why it is not."""
    p = Path(path)
    if not p.is_file():
        raise StoreError(f"{p} does not exist or is not a file")
    with p.open("rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise StoreError(f"{p} is not a SQLite database (it does not start with the SQLite header)")
    try:
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {p}: {exc}") from exc
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            lines = [ln for ln in "\n".join(problems).splitlines() if ln and not ln.startswith("***")]
            more = f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
            raise StoreError(f"{p} fails SQLite's integrity check: {'; '.join(lines[:3])}{more}")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = sorted(_MATCHER_TABLES - tables)
        if version < 1 or missing:
            raise StoreError(f"{p} is a SQLite database but not a matcher database "
                             f"(schema version {version}, missing tables: {', '.join(missing) or 'none'})")
        if version > len(MIGRATIONS):
            raise StoreError(f"{p} was written by a newer matcher (schema version {version}; this one knows "
                             f"{len(MIGRATIONS)}): upgrade the matcher first")
        experts = int(conn.execute("SELECT count(*) FROM experts").fetchone()[0])
        demands = int(conn.execute("SELECT count(*) FROM demands").fetchone()[0])
        last_audit = (conn.execute("SELECT max(at) FROM audit_log").fetchone()[0]
                      if "audit_log" in tables else None)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{p} is not a readable SQLite database ({exc})") from exc
    finally:
        conn.close()
    return DatabaseInfo(p, version, experts, demands, p.stat().st_size, last_audit)


class _GaveUp(Exception):
    pass


def _give_up_when_busy(seconds: float) -> Callable[[int, int, int], None]:
    """A backup progress callback: Python's backup() retries a locked database forever; we do not."""
    deadline = time.monotonic() + seconds

    def progress(status: int, remaining: int, total: int) -> None:
        if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) and time.monotonic() > deadline:
            raise _GaveUp("database is locked")

    return progress


class Store:
    """One SQLite database. Open with a path (or ":memory:").

    `busy_timeout`: seconds a write waits for another connection's write lock before it fails.

    **One connection per thread.** A server writes from its request threads and from background
    threads (the dense encoder caching vectors, the bank refresh); sharing one `sqlite3` connection
    between them let a thread's write land inside another thread's open transaction (a savepoint
    where a BEGIN was meant: "cannot start a transaction within a transaction", "no such
    savepoint"), interleave cursors ("another row available") and report a failure for a write
    that the other thread then committed. Each thread now opens its own connection on first use
    (WAL, the same busy timeout, foreign keys), so every transaction is its own: SQLite's write lock
    serialises writers across threads as it does across processes, a write that fails has not
    happened, and a write that is answered has. `:memory:` databases (tests) cannot be shared
    between connections and keep one connection for every thread.
    """

    def __init__(self, path: Path | str, *, busy_timeout: float = 10.0) -> None:
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._conns: list[tuple[weakref.ref[threading.Thread], sqlite_utils.Database]] = []
        self._conns_lock = threading.Lock()
        self._shared: sqlite_utils.Database | None = None
        self._closed = False
        try:
            if self.path == ":memory:":
                self._shared = sqlite_utils.Database(memory=True)
                self._shared.execute("PRAGMA foreign_keys=ON")
            else:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection (opened on first use)."""
        if self._shared is not None:
            return self._shared
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._open()
        return db

    def _open(self) -> sqlite_utils.Database:
        if self._closed:
            raise StoreError(f"the database {self.path} was closed")
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False)
            db = sqlite_utils.Database(conn)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc
        me = threading.current_thread()
        with self._conns_lock:
            # Connections of threads that ended are closed here, so short-lived threads do not
            # leave one open each.
            alive = []
            for ref, other in self._conns:
                if ref() is None or not ref().is_alive():  # type: ignore[union-attr]
                    other.close()
                else:
                    alive.append((ref, other))
            self._conns = [*alive, (weakref.ref(me), db)]
        self._local.db = db
        return db

    def close(self) -> None:
        """Close every thread's connection."""
        self._closed = True
        if self._shared is not None:
            self._shared.close()
            return
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for _, db in conns:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        self._local = threading.local()

    # -- schema ---------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        if self.schema_version >= len(MIGRATIONS):
            return  # the common case takes no write lock, so opening works while another process writes
        for version, step in enumerate(MIGRATIONS, start=1):
            with self.transaction():
                # Read again under the write lock: another process may have migrated meanwhile.
                if version <= self.schema_version:
                    continue
                step(self.db)
                self.db.execute(f"PRAGMA user_version = {version}")

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """All writes inside commit together or not at all (nested: a savepoint).

        The outermost block starts with BEGIN IMMEDIATE: it takes the write lock first, waiting up to
        `busy_timeout`. A deferred BEGIN that reads before it writes fails at once, without waiting,
        when another connection committed in between (a stale WAL snapshot cannot be upgraded).
        What `after_commit` registered inside runs once the outermost block has committed, and is
        dropped when it rolls back.
        """
        conn = self.db.conn
        try:
            if conn.in_transaction:
                pending = getattr(self._local, "on_commit", None)
                mark = len(pending) if pending is not None else 0
                try:
                    with self.db.atomic():
                        yield self
                except BaseException:
                    if pending is not None:
                        del pending[mark:]  # what the rolled-back savepoint wrote will not commit
                    raise
                return
            conn.execute("BEGIN IMMEDIATE")
            self._local.on_commit = []
            try:
                try:
                    yield self
                except BaseException:
                    conn.rollback()
                    raise
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    conn.rollback()
                    raise
                callbacks = self._local.on_commit
            finally:
                self._local.on_commit = None
        except sqlite3.OperationalError as exc:
            raise _write_error(exc, self.busy_timeout) from exc
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - the write stands; what follows it must not say otherwise
                log.exception("after a committed write, %s failed", getattr(callback, "__name__", callback))

    @property
    def in_transaction(self) -> bool:
        """True inside `transaction()` on this thread."""
        return bool(self.db.conn.in_transaction)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` when this thread's open transaction commits (never, if it rolls back); at
        once when none is open. The engine follows a write into its index this way, so that an
        index never holds a write that a caller's enclosing transaction then rolled back."""
        pending = getattr(self._local, "on_commit", None)
        if self.in_transaction and pending is not None:
            pending.append(callback)
        else:
            callback()

    # -- backup and restore ---------------------------------------------------------------------
    def backup_to(self, target: Path | str) -> DatabaseInfo:
        """Copy the database to `target`, consistent as of one instant, while others keep working.

        SQLite's online backup API in one step (`pages=-1`) reads under a single snapshot; in WAL
        mode writers on other connections carry on meanwhile. The copy is a single file (rollback
        journal, no `-wal` beside it), written next to `target` and renamed into place only after
        it passed `integrity_check`: a failed backup never leaves a half-written file at `target`.
        """
        target = Path(target)
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        memory = self.path == ":memory:"
        try:
            src = self.db.conn if memory else sqlite3.connect(self.path, timeout=self.busy_timeout)
            try:
                dst = sqlite3.connect(partial)
                try:
                    src.backup(dst, pages=-1, progress=_give_up_when_busy(self.busy_timeout))
                    dst.execute("PRAGMA journal_mode=DELETE")
                finally:
                    dst.close()
            finally:
                if not memory:
                    src.close()
        except (sqlite3.Error, _GaveUp) as exc:
            partial.unlink(missing_ok=True)
            if "full" in str(exc).lower():
                raise StoreError(f"the disk holding {target} is full; no backup was written. "
                                 "Free some space or back up elsewhere") from exc
            raise StoreError(f"the backup to {target} failed ({exc}); nothing was written there") from exc
        try:
            check_database(partial)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return check_database(target)

    def restore_from(self, source: Path | str) -> DatabaseInfo:
        """Replace the whole database with the matcher database `source`, checked first.

        The copy into the live file goes through the backup API too, as one write transaction:
        other connections (a running server) see either the old or the restored data, never a mix.
        `data_version` moves past both the old and the restored value, so every saved index and
        every index a server holds in memory is stale and gets rebuilt. Keep a copy of the old
        database first (`backup_to`): the restore overwrites it.
        """
        info = check_database(source)
        old_version = self.data_version
        src = sqlite3.connect(f"{Path(source).resolve().as_uri()}?mode=ro", uri=True)
        try:
            src.backup(self.db.conn, pages=-1, progress=_give_up_when_busy(self.busy_timeout))
        except (sqlite3.Error, _GaveUp) as exc:
            raise _write_error(sqlite3.OperationalError(str(exc)), self.busy_timeout) from exc
        finally:
            src.close()
        self.migrate()
        with self.transaction():
            self.db.execute(
                "INSERT INTO meta(key, value) VALUES('data_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [str(max(old_version, self.data_version) + 1)],
            )
        return info

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
        d["digest"] = expert_digest(expert)
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
            cols = [c[0] for c in self.db.execute("SELECT * FROM experts LIMIT 0").description]
            for expert in experts:
                row = self._expert_row(expert)
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
            raise NotFoundError(f"no expert with id {expert_id!r}")
        return self._expert_from_row(rows[0])

    def delete_expert(self, expert_id: str) -> None:
        with self.transaction():
            cur = self.db.execute("DELETE FROM experts WHERE id = ?", [expert_id])
            if cur.rowcount == 0:
                raise NotFoundError(f"no expert with id {expert_id!r}")
            self._bump_data_version()

    # -- token cache ----------------------------------------------------------------------------
    def cached_tokens(self, keys: Sequence[str]) -> dict[str, list[str]]:
        """The cached token lists of those `keys` that are cached (see `matcher.tokens`)."""
        out: dict[str, list[str]] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, tokens in self.db.execute(f"SELECT key, tokens FROM token_cache WHERE key IN ({marks})", chunk):
                out[key] = tokens.split("\t") if tokens else []
        return out

    def cache_tokens(self, entries: Mapping[str, Sequence[str]]) -> None:
        """Store token lists by key (tokens never hold a tab: the tokenizer splits on whitespace)."""
        if not entries:
            return
        rows = [(k, "\t".join(v)) for k, v in entries.items()]
        with self.transaction():
            self.db.conn.executemany("INSERT OR REPLACE INTO token_cache (key, tokens) VALUES (?, ?)", rows)

    def cached_vectors(self, model: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached float32 vectors of those `keys` that `model` has encoded (see `matcher.dense`)."""
        out: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT key, vec FROM vector_cache WHERE model = ? AND key IN ({marks})",
                                   [model, *chunk])
            for key, blob in rows:
                out[bytes(key)] = np.frombuffer(blob, dtype=np.float32)
        return out

    def cache_vectors(self, model: str, entries: Mapping[bytes, np.ndarray]) -> None:
        """Store vectors by key for `model`, as float32."""
        if not entries:
            return
        rows = [(model, k, int(v.shape[-1]), np.asarray(v, dtype=np.float32).tobytes()) for k, v in entries.items()]
        with self.transaction():
            self.db.conn.executemany("INSERT OR REPLACE INTO vector_cache (model, key, dim, vec) VALUES (?, ?, ?, ?)",
                                     rows)

    def count_vectors(self, model: str) -> int:
        return int(self.db.execute("SELECT count(*) FROM vector_cache WHERE model = ?", [model]).fetchone()[0])

    def clear_token_cache(self) -> int:
        with self.transaction():
            return self.db.execute("DELETE FROM token_cache").rowcount

    def iter_experts(self) -> Iterator[Expert]:
        for row in self.db["experts"].rows_where(order_by="id"):
            yield self._expert_from_row(row)

    def iter_expert_cards(self) -> Iterator[tuple[Expert, str | None]]:
        """(card, digest) of every expert in id order: the record without its documents and bio
        (what `matcher.engine.card` keeps), read without reading those columns, and the stored
        digest of the whole record (None if a write outside this class left it empty)."""
        cols = [c for c in _EXPERT_COLUMNS if c not in ("documents", "bio")]
        rows = self.db.execute(f"SELECT {', '.join(cols)}, digest FROM experts ORDER BY id")
        for r in rows:
            yield self._expert_from_row(dict(zip(cols, r[:-1], strict=True))), r[-1]

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
        """The demands, oldest first. Read whole before the first is handed out: a caller that
        writes while it iterates (matching each demand refreshes the demand bank) would otherwise
        write with this connection's read still open ("database table is locked")."""
        where, params = (None, None) if status is None else ("status = ?", [status])
        rows = list(self.db["demands"].rows_where(where, params, order_by="created_at, id"))
        for row in rows:
            yield self._demand_from_row(row)

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

    def expert_popularity(self) -> dict[str, float]:
        return dict(self.db.execute("SELECT expert_id, value FROM expert_popularity").fetchall())

    def save_expert_popularity(self, values: Mapping[str, float], stamp: str) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM expert_popularity")
            self.db.conn.executemany("INSERT INTO expert_popularity (expert_id, value) VALUES (?, ?)",
                                     [(k, float(v)) for k, v in values.items() if v > 0])
            self.set_meta("popularity_stamp", stamp)

    def count_demands(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM demands").fetchone()[0])

    def set_demand_status(self, demand_ids: Sequence[str], status: str) -> None:
        with self.transaction():
            self.db.conn.executemany(
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

    # -- imports, merges ------------------------------------------------------------------------
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
            out.extend(self._expert_from_row(r) for r in self.db["experts"].rows_where(where, chunk))
        return sorted(out, key=lambda e: e.id)

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
            raise NotFoundError(f"no merge with id {merge_id}; `matcher merges list` shows them")
        return self._merge_from_row(rows[0])

    def mark_merge_undone(self, merge_id: int) -> None:
        with self.transaction():
            self.db.execute("UPDATE merges SET undone_at = ? WHERE id = ?", [now_iso(), merge_id])

    def undone_merge_pairs(self) -> set[frozenset[str]]:
        """Pairs of expert ids whose merge was undone: staff said they are two people."""
        rows = self.db.execute("SELECT kept_id, merged_id FROM merges WHERE undone_at IS NOT NULL")
        return {frozenset(r) for r in rows}

    # -- batch runs -----------------------------------------------------------------------------
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
        `matched` but no run recommended anything for. Returns how many were added."""
        with self.transaction():
            before = self._count("SELECT count(*) FROM batch_demands WHERE run_id = ?", [run_id])
            start = self._count("SELECT coalesce(max(position), 0) FROM batch_demands WHERE run_id = ?",
                                [run_id])
            self.db.execute(
                "INSERT OR IGNORE INTO batch_demands (run_id, demand_id, position) "
                "SELECT ?, id, ? + row_number() OVER (ORDER BY created_at, id) FROM demands "
                "WHERE status = 'new' OR (status = 'matched' AND ? IS NOT NULL AND created_at > ? "
                "AND id NOT IN (SELECT demand_id FROM matches)) ORDER BY created_at, id",
                [run_id, start, since, since],
            )
            return self._count("SELECT count(*) FROM batch_demands WHERE run_id = ?", [run_id]) - before

    def drop_settled_batch_demands(self, run_id: int) -> int:
        """Unpin demands closed, deleted or recommended by another run since this run pinned them."""
        settled = (
            "SELECT b.demand_id FROM batch_demands b LEFT JOIN demands d ON d.id = b.demand_id "
            "WHERE b.run_id = ? AND (d.id IS NULL OR d.status = 'closed' OR EXISTS "
            "(SELECT 1 FROM matches m WHERE m.demand_id = b.demand_id AND m.run_id != b.run_id))"
        )
        with self.transaction():
            ids = [r[0] for r in self.db.execute(settled, [run_id])]
            for table in ("batch_candidates", "batch_exclusions", "batch_demands"):
                self.db.conn.executemany(f"DELETE FROM {table} WHERE run_id = ? AND demand_id = ?",
                                    [(run_id, d) for d in ids])
        return len(ids)

    def _count(self, sql: str, params: Sequence[Any]) -> int:
        return int(self.db.execute(sql, list(params)).fetchone()[0] or 0)

    def pending_batch_demands(self, run_id: int) -> list[Demand]:
        """The run's demands whose candidates are not stored yet, in selection order."""
        rows = self.db.execute(
            "SELECT d.* FROM batch_demands b JOIN demands d ON d.id = b.demand_id "
            "WHERE b.run_id = ? AND b.scored_at IS NULL ORDER BY b.position",
            [run_id],
        )
        cols = [c[0] for c in rows.description]
        return [self._demand_from_row(dict(zip(cols, r, strict=True))) for r in rows.fetchall()]

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
                  None if c.explanation is None else _explanation_json(c.explanation), int(c.team),
                  _aspects_json(c.aspects)) for c in ranked],
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
        return {r[0]: _aspects_from_json(r[1]) for r in rows.fetchall()}

    def batch_explanations(self, run_id: int, demand_id: str) -> dict[str, Explanation]:
        """The stored explanations of a demand's candidates (only those explained in phase 1)."""
        rows = self.db.execute(
            "SELECT expert_id, explanation FROM batch_candidates WHERE run_id = ? AND demand_id = ? "
            "AND explanation IS NOT NULL",
            [run_id, demand_id],
        )
        return {r[0]: _explanation_from_json(r[1]) for r in rows.fetchall()}

    def save_batch_explanations(self, run_id: int, demand_id: str,
                                explanations: Mapping[str, Explanation]) -> None:
        """Store explanations of some of a demand's candidates (those the run assigned)."""
        with self.transaction():
            self.db.conn.executemany(
                "UPDATE batch_candidates SET explanation = ? "
                "WHERE run_id = ? AND demand_id = ? AND expert_id = ?",
                [(_explanation_json(x), run_id, demand_id, e) for e, x in explanations.items()],
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
                  _explanation_json(m.explanation), now, int(m.team), _aspects_json(m.aspects))
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
                           _explanation_from_json(r[6]), bool(r[7]), _aspects_from_json(r[8]))
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

    # -- the staff's working loop: verdicts, pauses, the inbox (migration 9) ---------------------
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
        found = [self._demand_from_row(dict(zip(cols, r, strict=True))) for r in rows.fetchall()]
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
                raise NotFoundError(f"no demand with id {demand_id!r}")
        return self.get_demand(demand_id)

    def last_recommendations(self, demand_id: str) -> StoredRecommendations:
        """The recommendations of the latest batch run that recommended anyone for this demand."""
        row = self.db.execute("SELECT max(run_id) FROM matches WHERE demand_id = ?", [demand_id]).fetchone()
        if not row or row[0] is None:
            return StoredRecommendations(None, [])
        run_id = int(row[0])
        return StoredRecommendations(self.get_batch_run_by_id(run_id),
                                     self.list_batch_matches(run_id=run_id, demand_id=demand_id))

    def top_recommended(self, demand_ids: Sequence[str], n: int = 3) -> dict[str, list[tuple[str, str]]]:
        """(expert id, name) of the first `n` stored recommendations of each demand (its latest run),
        leaving out experts declined or found unsuitable for it."""
        out: dict[str, list[tuple[str, str]]] = {d: [] for d in demand_ids}
        for i in range(0, len(demand_ids), 400):
            chunk = list(demand_ids[i : i + 400])
            marks = ", ".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT m.demand_id, m.expert_id, coalesce(e.name, m.expert_id) FROM matches m "
                "LEFT JOIN experts e ON e.id = m.expert_id "
                f"WHERE m.demand_id IN ({marks}) AND m.run_id = (SELECT max(run_id) FROM matches x "
                "WHERE x.demand_id = m.demand_id) AND NOT EXISTS (SELECT 1 FROM feedback f "
                "WHERE f.demand_id = m.demand_id AND f.expert_id = m.expert_id "
                "AND f.verdict IN ('declined', 'unsuitable')) "
                "ORDER BY m.demand_id, m.rank",
                chunk,
            )
            for demand_id, expert_id, name in rows.fetchall():
                if len(out[demand_id]) < n:
                    out[demand_id].append((expert_id, name))
        return out

    def expert_feedback_counts(self, expert_id: str) -> dict[str, int]:
        """How many demands an expert was recommended for (by any run) and got each verdict for."""
        out = {"recommended": self._count("SELECT count(DISTINCT demand_id) FROM matches WHERE expert_id = ?",
                                          [expert_id])}
        rows = self.db.execute("SELECT verdict, count(DISTINCT demand_id) FROM feedback WHERE expert_id = ? "
                               "GROUP BY verdict", [expert_id])
        for verdict in VERDICTS:
            out[verdict] = 0
        for verdict, n in rows.fetchall():
            out[verdict] = int(n)
        return out

    def expert_recommendation_demands(self, expert_id: str,
                                      limit: int = 50) -> list[tuple[str, str, int, str]]:
        """(demand id, run key, rank, recommended at) of an expert's latest recommendations."""
        rows = self.db.execute(
            "SELECT m.demand_id, r.run_key, m.rank, m.created_at FROM matches m "
            "JOIN batch_runs r ON r.id = m.run_id WHERE m.expert_id = ? "
            "ORDER BY m.created_at DESC, m.id DESC LIMIT ?", [expert_id, limit])
        return [(r[0], r[1], int(r[2]), r[3]) for r in rows.fetchall()]

    # -- staff accounts and sessions ------------------------------------------------------------
    _USER_COLUMNS = ("id, username, role, password_hash, created_at, coalesce(failed_logins, 0), "
                     "locked_until, coalesce(disabled, 0), last_login_at")

    def _user(self, where: str, params: Sequence[Any]) -> User | None:
        sql = f"SELECT {self._USER_COLUMNS} FROM users WHERE {where}"
        row = self.db.execute(sql, list(params)).fetchone()
        if row is None:
            return None
        return User(int(row[0]), row[1], row[2], row[3], row[4], int(row[5]), row[6], bool(row[7]), row[8])

    def get_user(self, username: str) -> User | None:
        return self._user("username = ?", [username])

    def get_user_by_id(self, user_id: int) -> User | None:
        return self._user("id = ?", [user_id])

    def list_users(self) -> list[User]:
        ids = [r[0] for r in self.db.execute("SELECT id FROM users ORDER BY username")]
        return [u for i in ids if (u := self.get_user_by_id(int(i))) is not None]

    def create_user(self, username: str, role: str, password_hash: str) -> User:
        with self.transaction():
            if self.get_user(username) is not None:
                raise StoreError(f"a user named {username!r} exists")
            self.db.execute(
                "INSERT INTO users (username, role, password_hash, created_at, failed_logins, disabled) "
                "VALUES (?, ?, ?, ?, 0, 0)", [username, role, password_hash, now_iso()])
        user = self.get_user(username)
        assert user is not None
        return user

    def update_user(self, user_id: int, **fields: Any) -> None:
        """Set columns of a user: password_hash, role, failed_logins, locked_until, disabled,
        last_login_at."""
        allowed = {"password_hash", "role", "failed_logins", "locked_until", "disabled", "last_login_at"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot set {sorted(set(fields) - allowed)} on a user")
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction():
            self.db.execute(f"UPDATE users SET {sets} WHERE id = ?", [*fields.values(), user_id])

    def create_session(self, token_hash: str, user_id: int, csrf_token: str, expires_at: str,
                       ip: str) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at, ip) "
                "VALUES (?, ?, ?, ?, ?, ?)", [token_hash, user_id, csrf_token, now_iso(), expires_at, ip])

    def get_session(self, token_hash: str) -> SessionRow | None:
        row = self.db.execute("SELECT token_hash, user_id, csrf_token, created_at, expires_at, "
                              "coalesce(ip, '') FROM sessions WHERE token_hash = ?", [token_hash]).fetchone()
        return SessionRow(row[0], int(row[1]), row[2], row[3], row[4], row[5]) if row else None

    def delete_sessions(self, *, token_hash: str | None = None, user_id: int | None = None,
                        expired_before: str | None = None) -> int:
        clauses, params = [], []
        if token_hash is not None:
            clauses.append("token_hash = ?")
            params.append(token_hash)
        if user_id is not None:
            clauses.append("user_id = ?")
            params.append(user_id)
        if expired_before is not None:
            clauses.append("expires_at < ?")
            params.append(expired_before)
        if not clauses:
            raise ValueError("say which sessions to delete")
        with self.transaction():
            return self.db.execute(f"DELETE FROM sessions WHERE {' AND '.join(clauses)}", params).rowcount

    # -- the audit log --------------------------------------------------------------------------
    # -- API keys, replays of idempotent writes, failed attempts ---------------------------------
    @staticmethod
    def _api_key_from_row(r: Sequence[Any]) -> ApiKey:
        return ApiKey(int(r[0]), r[1], r[2], r[3] or "", r[4] or "", r[5] or "", r[6], r[7])

    _KEY_COLUMNS = "id, name, role, prefix, created_at, created_by, revoked_at, last_used_at"

    def add_api_key(self, name: str, role: str, key_hash: str, prefix: str, created_by: str) -> ApiKey:
        with self.transaction():
            if self.db.execute("SELECT 1 FROM api_keys WHERE name = ?", [name]).fetchone():
                raise StoreError(f"an API key named {name!r} exists; choose another name")
            cur = self.db.execute(
                "INSERT INTO api_keys (name, role, key_hash, prefix, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?)", [name, role, key_hash, prefix, now_iso(), created_by])
            key_id = int(cur.lastrowid or 0)
        return self.get_api_key(key_id)

    def get_api_key(self, key_id: int) -> ApiKey:
        row = self.db.execute(f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE id = ?", [key_id]).fetchone()
        if row is None:
            raise NotFoundError(f"no API key with id {key_id}")
        return self._api_key_from_row(row)

    def list_api_keys(self, *, include_revoked: bool = True) -> list[ApiKey]:
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        rows = self.db.execute(f"SELECT {self._KEY_COLUMNS} FROM api_keys {where} ORDER BY id")
        return [self._api_key_from_row(r) for r in rows]

    def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The live (not revoked) key with this SHA-256, or None."""
        row = self.db.execute(f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE key_hash = ? "
                              "AND revoked_at IS NULL", [key_hash]).fetchone()
        return self._api_key_from_row(row) if row else None

    def revoke_api_key(self, key_id: int) -> ApiKey:
        with self.transaction():
            key = self.get_api_key(key_id)
            if key.revoked_at is None:
                self.db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", [now_iso(), key_id])
        return self.get_api_key(key_id)

    def touch_api_key(self, key_id: int, at: str) -> None:
        with self.transaction():
            self.db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", [at, key_id])

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

    def get_failures(self, subject: str) -> Failures | None:
        row = self.db.execute("SELECT failures, first_at, locked_until FROM auth_failures WHERE subject = ?",
                              [subject]).fetchone()
        return Failures(int(row[0] or 0), row[1] or "", row[2]) if row else None

    def set_failures(self, subject: str, failures: int, first_at: str, locked_until: str | None) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO auth_failures (subject, failures, first_at, locked_until) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(subject) DO UPDATE SET failures = excluded.failures, first_at = excluded.first_at, "
                "locked_until = excluded.locked_until", [subject, failures, first_at, locked_until])

    def clear_failures(self, subject: str) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM auth_failures WHERE subject = ?", [subject])

    def audit(self, actor: str, action: str, target: str = "", detail: Mapping[str, Any] | None = None,
              ip: str = "") -> int:
        """Append to the audit log (in the caller's transaction, when there is one)."""
        with self.transaction():
            cur = self.db.execute(
                "INSERT INTO audit_log (at, actor, action, target, detail, ip) VALUES (?, ?, ?, ?, ?, ?)",
                [now_iso(), actor, action, target,
                 json.dumps(dict(detail or {}), ensure_ascii=False, sort_keys=True), ip],
            )
            return int(cur.lastrowid or 0)

    _AUDIT_ROW = "at, actor, action, coalesce(target, ''), coalesce(detail, '{}'), coalesce(ip, '')"

    def audit_rows_from(self, at: str | None) -> list[tuple[str, str, str, str, str, str]]:
        """The audit log's rows (at, actor, action, target, detail, ip) at or after `at`, oldest first
        (all of them for None)."""
        where, params = ("WHERE at >= ?", [at]) if at else ("", [])
        rows = self.db.execute(f"SELECT {self._AUDIT_ROW} FROM audit_log {where} ORDER BY id", params)
        return [tuple(r) for r in rows.fetchall()]  # type: ignore[misc]

    def append_audit_rows(self, rows: Sequence[Sequence[str]]) -> int:
        """Add rows (as `audit_rows_from` gives them) to the audit log, skipping any it holds already
        (the same time, actor, action, target, detail and address); returns how many were added."""
        with self.transaction():
            have = set(self.audit_rows_from(min((r[0] for r in rows), default=None))) if rows else set()
            new = [tuple(r) for r in rows if tuple(r) not in have]
            self.db.conn.executemany(
                "INSERT INTO audit_log (at, actor, action, target, detail, ip) VALUES (?, ?, ?, ?, ?, ?)", new)
        return len(new)

    def list_audit(self, *, actor: str | None = None, action: str | None = None, target: str | None = None,
                   date_from: str | None = None, date_to: str | None = None, limit: int = 200,
                   offset: int = 0) -> tuple[list[AuditEntry], int]:
        """Audit entries newest first, filtered (actor: exact, or a bare user name for `staff:NAME`;
        action: exact or a prefix ending in `.`; dates: YYYY-MM-DD inclusive, UTC); and the total."""
        clauses, params = ["1 = 1"], []
        if actor:
            clauses.append("(actor = ? OR actor = ?)")
            params += [actor, f"staff:{actor}"]
        if action:
            if action.endswith("."):
                clauses.append("substr(action, 1, ?) = ?")
                params += [len(action), action]
            else:
                clauses.append("action = ?")
                params.append(action)
        if target:
            clauses.append("target = ?")
            params.append(target)
        if date_from:
            clauses.append("substr(at, 1, 10) >= ?")
            params.append(date_from)
        if date_to:
            clauses.append("substr(at, 1, 10) <= ?")
            params.append(date_to)
        where = " AND ".join(clauses)
        total = self._count(f"SELECT count(*) FROM audit_log WHERE {where}", params)
        rows = self.db.execute(
            f"SELECT id, at, actor, action, coalesce(target, ''), coalesce(detail, '{{}}'), coalesce(ip, '') "
            f"FROM audit_log WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?", [*params, limit, offset])
        entries = [AuditEntry(int(r[0]), r[1], r[2], r[3], r[4], json.loads(r[5]), r[6])
                   for r in rows.fetchall()]
        return entries, total

    # -- outcomes, statistics, the demands' change log (migration 10) ------------------------------
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
            raise NotFoundError(f"no outcome with id {outcome_id}")
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
            "EXISTS (SELECT 1 FROM matches m WHERE m.demand_id = d.id) "
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
            "WITH rec AS (SELECT expert_id, count(DISTINCT demand_id) n FROM matches "
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
                d = self._demand_from_row(dict(zip(cols, r, strict=True)))
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

    def expert_excluded_demands(self, expert_id: str, verdicts: Sequence[str]) -> set[str]:
        """Demands this expert got one of `verdicts` (婉拒, 不合适) for."""
        marks = ", ".join("?" * len(verdicts))
        rows = self.db.execute("SELECT DISTINCT demand_id FROM feedback WHERE expert_id = ? "
                               f"AND verdict IN ({marks})", [expert_id, *verdicts])
        return {r[0] for r in rows.fetchall()}
