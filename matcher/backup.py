"""Backups of the SQLite database, taken and restored while the server keeps running.

    backup(settings, dest)    -> DatabaseInfo    `dest` a file, or a folder for a time-stamped file
    restore(settings, source) -> RestoreResult   checks `source`, keeps the old database aside

Both go through SQLite's online backup API (`Store.backup_to` / `Store.restore_from`, where the
SQL lives): a backup is the database as of one instant, even while imports write; a restore is one
write transaction, so a running server sees the old data or the restored data, never a mix, and
rebuilds its index because the restore moves `data_version` on. A file that is not a sound matcher
database (not SQLite, failing `integrity_check`, missing the matcher's tables, from a newer
version) is refused before anything is touched.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from matcher.config import Settings
from matcher.errors import InputError, StoreError
from matcher.records import DatabaseInfo
from matcher.store import Store, check_database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RestoreResult:
    restored: DatabaseInfo
    aside: Path | None  # the database as it was before the restore (None: there was none)


def _stamped(folder: Path, stem: str, suffix: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stem}{stamp}{suffix}"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{stem}{stamp}-{n}{suffix}"
    return path


def _existing_db(settings: Settings) -> Path:
    db = Path(settings.db)
    if str(db) == ":memory:" or not db.is_file():
        raise StoreError(f"there is no database at {db}: check --db or MATCHER_DB")
    return db


def backup(settings: Settings, dest: Path | str, *, overwrite: bool = False) -> DatabaseInfo:
    """Copy the database of `settings` to `dest` (a folder gets `<db name>-<time>.db` inside)."""
    db = _existing_db(settings)
    dest = Path(dest)
    if dest.is_dir():
        dest = _stamped(dest, f"{db.stem}-", ".db")
    elif dest.exists() and not overwrite:
        raise InputError(f"{dest} already exists: choose another name, a folder, "
                         "or overwrite it with --force")
    if dest.resolve() == db.resolve():
        raise InputError(f"{dest} is the database itself: back up to another file")
    store = Store(db, busy_timeout=settings.busy_timeout)
    try:
        info = store.backup_to(dest)
    finally:
        store.close()
    log.info("backed up %s to %s (%d experts, %d demands)", db, dest, info.experts, info.demands)
    return info


def restore(settings: Settings, source: Path | str, *, actor: str = "cli") -> RestoreResult:
    """Replace the database of `settings` with the backup `source`; the old one is kept aside.

    The restore is audited in both logs: in the database it replaces (so the copy kept aside says
    who put it aside, and when) and in the restored one. The replaced log's entries later than the
    backup's last one (written after the backup was taken: sign-ins, verdicts, contact views) are
    carried into the restored log, which would otherwise forget them; the files they are about are
    not carried (that is what a restore undoes), but who did what stays on record."""
    source = Path(source)
    info = check_database(source)  # refuse a bad file before touching the live database
    db = Path(settings.db)
    if str(db) == ":memory:":
        raise InputError("cannot restore into an in-memory database: pass --db")
    if db.exists() and source.resolve() == db.resolve():
        raise InputError(f"{source} is the database itself: restore from a backup file")
    existed = db.is_file()
    store = Store(db, busy_timeout=settings.busy_timeout)
    try:
        aside = None
        carried: list[tuple[str, str, str, str, str, str]] = []
        detail = {"source": str(source.resolve()), "backup_last_entry": info.last_audit_at}
        if existed:
            aside = _stamped(db.parent, f"{db.name}.before-restore-", "")
            store.audit(actor, "backup.restore", "database", {**detail, "kept_aside_as": str(aside)})
            store.backup_to(aside)
            carried = store.audit_rows_from(info.last_audit_at)
        restored = store.restore_from(source)
        with store.transaction():
            n = store.append_audit_rows(carried)
            store.audit(actor, "backup.restore", "database", {
                **detail, "kept_aside_as": str(aside) if aside else None, "carried_entries": n})
    finally:
        store.close()
    log.info("restored %s from %s (old database kept at %s; %d audit entries carried over)",
             db, source, aside, len(carried))
    return RestoreResult(restored, aside)
