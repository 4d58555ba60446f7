"""Backups and restores through SQLite's online backup API, and checking a database file."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from matcher.errors import StoreError
from matcher.records import DatabaseInfo
from matcher.store.database import Database, write_error
from matcher.store.migrations import MIGRATIONS

_MATCHER_TABLES = frozenset({"experts", "demands", "meta"})


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


class Backups(Database):
    """Consistent copies of the whole database and restoring one."""

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
            raise write_error(sqlite3.OperationalError(str(exc)), self.busy_timeout) from exc
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
