"""One SQLite database: its connections (one per thread), its transactions and its meta table.

Every resource class of the store derives from `Database`, so all of them write through the
same connection and transaction rules."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from matcher.errors import StoreError
from matcher.store.migrations import MIGRATIONS

log = logging.getLogger(__name__)


def write_error(exc: sqlite3.Error, busy_timeout: float) -> StoreError:
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


class Database:
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
    between connections and keep one connection for every thread."""

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
    def transaction(self) -> Iterator[Database]:
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
            raise write_error(exc, self.busy_timeout) from exc
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

    def _count(self, sql: str, params: Sequence[Any]) -> int:
        return int(self.db.execute(sql, list(params)).fetchone()[0] or 0)
