"""The schema, as steps run once each in order (`PRAGMA user_version` counts them)."""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

from matcher.models import expert_digest
from matcher.store.rows import expert_from_row


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
    digests = [(expert_digest(expert_from_row(dict(zip(cols, r, strict=True)))), r[0]) for r in rows]
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


def _m12_demands_from_the_page(db: sqlite_utils.Database) -> None:
    """Demands and accounts on the pages (issue 23): the enterprise's contact person, a deadline, the
    staff's corrections of what the engine understood (terms left out, terms added; JSON lists);
    recommendations saved from a live ranking (实时匹配) on the match page; and one view of every
    recommendation, nightly or saved, that the inbox, the statistics and the histories read.
    Idempotent, like the steps before it."""
    for column in ("contact", "deadline", "exclude_terms", "extra_terms"):
        if column not in db["demands"].columns_dict:
            db.execute(f"ALTER TABLE demands ADD COLUMN {column} TEXT")
    # An account whose password an administrator reset on the page: a one-time password, changed by
    # its owner at the next sign-in.
    if "must_change" not in db["users"].columns_dict:
        db.execute("ALTER TABLE users ADD COLUMN must_change INTEGER NOT NULL DEFAULT 0")
    db["saved_matches"].create(
        {"demand_id": str, "expert_id": str, "rank": int, "score": float, "explanation": str,
         "created_at": str, "actor": str},
        pk=("demand_id", "expert_id"), not_null={"rank", "created_at"}, if_not_exists=True,
    )
    db["saved_matches"].create_index(["expert_id"], if_not_exists=True)
    db.execute("CREATE VIEW IF NOT EXISTS recommended AS "
               "SELECT demand_id, expert_id, rank, created_at, 'batch' AS source FROM matches "
               "UNION ALL SELECT demand_id, expert_id, rank, created_at, 'live' AS source FROM saved_matches")


MIGRATIONS.append(_m12_demands_from_the_page)


def _m13_learning(db: sqlite_utils.Database) -> None:
    """What the matcher learns from verdicts (issue 28): the admins' decisions on proposed thesaurus
    entries, the 科协's own thesaurus (every version kept), and `learning_version` in the meta
    table, moved on by triggers at every change to what learning reads (verdicts, outcomes and
    their experts, decisions, the own thesaurus, a demand's words), whoever writes it."""
    db["proposal_decisions"].create(
        {"phrase": str, "concept": str, "decision": str, "actor": str, "at": str, "note": str,
         "evidence": str},
        pk=("phrase", "concept"), not_null={"decision", "at"}, if_not_exists=True,
    )
    db["own_thesaurus"].create(
        {"version": int, "text": str, "actor": str, "at": str, "note": str},
        pk="version", not_null={"text", "at"}, if_not_exists=True,
    )
    bump = ("INSERT INTO meta(key, value) VALUES('learning_version', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1")
    for table in ("feedback", "outcomes", "outcome_experts", "proposal_decisions", "own_thesaurus"):
        for event in ("INSERT", "UPDATE", "DELETE"):
            db.execute(f"CREATE TRIGGER IF NOT EXISTS learning_{table}_{event.lower()} AFTER {event} "
                       f"ON {table} BEGIN {bump}; END")
    db.execute("CREATE TRIGGER IF NOT EXISTS learning_demands_words AFTER UPDATE OF title, description, "
               f"keywords ON demands BEGIN {bump}; END")
    db.execute("CREATE TRIGGER IF NOT EXISTS learning_demands_delete AFTER DELETE ON demands "
               f"BEGIN {bump}; END")


MIGRATIONS.append(_m13_learning)
