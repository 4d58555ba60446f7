"""`matcher backup` / `matcher restore`: consistent copies while others write, careful restores."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from matcher.backup import backup, restore
from matcher.cli import app
from matcher.config import Settings
from matcher.engine import Engine
from matcher.errors import InputError, StoreError
from matcher.models import Expert
from matcher.store import MIGRATIONS, Store, check_database

from .conftest import THERMOS

runner = CliRunner()
BATCH = 5  # the writer commits experts five at a time


def expert(i: str, **kw: object) -> Expert:
    return Expert.from_dict({"id": i, "name": f"专家{i}", "research_fields": ["激光焊接", "真空保温"], **kw})


def ids_in(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT id FROM experts ORDER BY id")]
    finally:
        conn.close()


def meta_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'data_version'").fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


class Writer(threading.Thread):
    """Another connection committing batches of five experts as fast as it can."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.batches = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        store = Store(self.db)
        try:
            while not self.stop.is_set():
                b = self.batches
                store.upsert_experts(expert(f"w{b:05d}-{k}") for k in range(BATCH))
                self.batches += 1
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            store.close()


def assert_consistent(copy: Path, base_version: int) -> int:
    """A copy is consistent when it holds whole batches 0..n-1 and the data_version that goes with them."""
    info = check_database(copy)
    written = [i for i in ids_in(copy) if i.startswith("w")]
    assert len(written) % BATCH == 0, f"a half-committed batch in {copy.name}"
    n = len(written) // BATCH
    assert written == sorted(f"w{b:05d}-{k}" for b in range(n) for k in range(BATCH))
    assert meta_version(copy) == base_version + n, "experts and data_version from different instants"
    assert info.experts == len(ids_in(copy))
    return n


def test_backups_taken_while_another_connection_writes_are_consistent(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    store = Store(db)
    store.upsert_experts([expert("a1"), expert("a2")])
    base = store.data_version - 0
    store.close()
    writer = Writer(db)
    writer.start()
    try:
        seen: list[int] = []
        deadline = time.monotonic() + 3
        k = 0
        while time.monotonic() < deadline or len(set(seen)) < 3:
            out = tmp_path / f"copy{k}.db"
            backup(Settings(db=db), out)
            seen.append(assert_consistent(out, base))
            assert not list(tmp_path.glob("*.partial")), "no half-written file is left behind"
            k += 1
            assert time.monotonic() < deadline + 20, "the writer made no progress during the backups"
    finally:
        writer.stop.set()
        writer.join(10)
    assert writer.error is None, writer.error
    assert seen == sorted(seen), "later backups hold at least as much"
    assert len(set(seen)) >= 3, f"the writer kept writing while backups ran ({seen})"
    assert writer.batches >= max(seen)


def test_the_cli_backs_up_during_writes_and_into_a_folder(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    Store(db).close()
    writer = Writer(db)
    writer.start()
    try:
        while writer.batches < 3:
            time.sleep(0.01)
        folder = tmp_path / "backups"
        folder.mkdir()
        res = runner.invoke(app, ["backup", str(folder), "--db", str(db)])
        assert res.exit_code == 0, res.output
        (copy,) = folder.glob("live-*.db")
        assert f"-> {copy}" in res.output and "integrity ok" in res.output
        assert assert_consistent(copy, 0) >= 3
    finally:
        writer.stop.set()
        writer.join(10)
    assert writer.error is None
    # A second backup to the same file needs --force; a missing database is named.
    again = runner.invoke(app, ["backup", str(copy), "--db", str(db)])
    assert again.exit_code == 2 and "already exists" in again.output and "--force" in again.output
    assert runner.invoke(app, ["backup", str(copy), "--force", "--db", str(db)]).exit_code == 0
    missing = runner.invoke(app, ["backup", str(tmp_path / "x.db"), "--db", str(tmp_path / "nope.db")])
    assert missing.exit_code == 2 and "there is no database at" in missing.output
    assert not (tmp_path / "nope.db").exists(), "backing up a missing database must not create one"
    assert "Traceback" not in missing.output


def test_a_backup_is_one_self_contained_file(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    s = Store(db)
    s.upsert_experts([expert("1")])
    s.close()
    out = tmp_path / "b.db"
    backup(Settings(db=db), out)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("b.db")) == ["b.db"]
    conn = sqlite3.connect(out)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()
    moved = tmp_path / "elsewhere" / "moved.db"
    moved.parent.mkdir()
    shutil.move(out, moved)
    assert check_database(moved).experts == 1


def test_restore_brings_back_the_backup_keeps_the_old_db_and_rebuilds(tmp_path: Path, tokenizer) -> None:
    settings = Settings(db=tmp_path / "live.db")
    with Engine(settings, tokenizer=tokenizer) as engine:
        assert engine.load_demo()
        before = [m.expert.id for m in engine.match(THERMOS, top_k=5)]
        assert before
    snapshot = tmp_path / "snapshot.db"
    backup(settings, snapshot)
    demo_ids = ids_in(snapshot)

    # Later: the best experts are deleted and a newcomer added (a mistaken bulk edit, say).
    server = Engine(settings, tokenizer=tokenizer)  # a running server keeps its engine open
    for eid in before[:3]:
        server.delete_expert(eid)
    server.upsert_experts([expert("NEW1", research_fields=["不锈钢保温杯激光焊接"])])
    after_edit = [m.expert.id for m in server.match(THERMOS, top_k=5)]
    assert not set(before[:3]) & set(after_edit)
    version_before_restore = server.store.data_version

    res = runner.invoke(app, ["restore", str(snapshot), "--db", str(settings.db)])
    assert res.exit_code == 0, res.output
    assert f"restored {len(demo_ids)} experts" in res.output
    (aside,) = tmp_path.glob("live.db.before-restore-*")
    assert f"kept at {aside}" in res.output
    kept = ids_in(aside)
    assert "NEW1" in kept and not set(before[:3]) & set(kept), "the old db is kept as it was"
    assert ids_in(settings.db) == demo_ids

    # The open engine sees the restored data on its next request, index included.
    assert server.store.data_version > max(version_before_restore, meta_version(snapshot))
    assert [m.expert.id for m in server.match(THERMOS, top_k=5)] == before
    server.close()


def _not_matcher_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes(x)")
    conn.commit()
    conn.close()


def _newer_schema(path: Path) -> None:
    s = Store(path)
    s.db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    s.close()


def _truncated(path: Path) -> None:
    s = Store(path)
    s.upsert_experts(expert(f"t{i:04d}", bio="长" * 400) for i in range(300))
    s.close()
    backup(Settings(db=path), path.with_suffix(".full"))
    data = path.with_suffix(".full").read_bytes()
    path.unlink()
    path.write_bytes(data[: len(data) // 2])


def _garbled(path: Path) -> None:
    s = Store(path)
    s.upsert_experts(expert(f"g{i:04d}", bio="长" * 400) for i in range(300))
    s.close()
    backup(Settings(db=path), path.with_suffix(".full"))
    data = bytearray(path.with_suffix(".full").read_bytes())
    for page in range(2, len(data) // 4096, 3):  # scribble over every third page past the header
        data[page * 4096 + 8 : page * 4096 + 200] = b"\xa5" * 192
    path.unlink()
    path.write_bytes(bytes(data))


BAD_FILES = {
    "text": (lambda p: p.write_text("id,name\n1,张三\n", encoding="utf-8"), "not a SQLite database"),
    "empty": (lambda p: p.write_bytes(b""), "not a SQLite database"),
    "header-only": (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\x00" * 84), "not"),
    "other-sqlite": (_not_matcher_sqlite, "not a matcher database"),
    "newer-schema": (_newer_schema, "newer matcher"),
    "truncated": (_truncated, "integrity check|malformed|not a readable"),
    "garbled": (_garbled, "integrity check|malformed|not a readable"),
    "folder": (lambda p: p.mkdir(), "not a file"),
    "missing": (lambda p: None, "does not exist"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_restore_refuses_what_is_not_a_sound_matcher_database(tmp_path: Path, kind: str) -> None:
    settings = Settings(db=tmp_path / "live.db")
    s = Store(settings.db)
    s.upsert_experts([expert("keep1"), expert("keep2")])
    version = s.data_version
    s.close()
    make, words = BAD_FILES[kind]
    bad = tmp_path / "bad" / "candidate.db"
    bad.parent.mkdir()
    make(bad)
    with pytest.raises(StoreError, match=words):
        restore(settings, bad)
    res = runner.invoke(app, ["restore", str(bad), "--db", str(settings.db)])
    assert res.exit_code == 2 and res.output.startswith("error: ") and "Traceback" not in res.output
    assert ids_in(settings.db) == ["keep1", "keep2"] and meta_version(settings.db) == version
    assert not list(tmp_path.glob("live.db.before-restore-*")), "nothing is moved aside for a refused file"


def test_integrity_check_is_what_catches_a_garbled_file(tmp_path: Path) -> None:
    bad = tmp_path / "g.db"
    _garbled(bad)
    with pytest.raises(StoreError, match="integrity check|malformed|not a readable"):
        check_database(bad)


def test_restore_migrates_an_older_backup(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    db["experts"].insert({"id": "o1", "name": "旧专家", "research_fields": '["焊接"]', "documents": "[]",
                          "tags": "[]", "contact": "{}", "created_at": "", "updated_at": ""})
    conn.commit()
    conn.close()
    settings = Settings(db=tmp_path / "live.db")
    Store(settings.db).close()
    restore(settings, old)
    s = Store(settings.db)
    assert s.schema_version == len(MIGRATIONS)
    assert s.get_expert("o1").name == "旧专家"
    s.close()


def test_restore_refuses_its_own_database_and_memory(tmp_path: Path) -> None:
    settings = Settings(db=tmp_path / "live.db")
    Store(settings.db).close()
    with pytest.raises(InputError, match="the database itself"):
        restore(settings, settings.db)
    with pytest.raises(InputError, match="the database itself"):
        backup(settings, settings.db, overwrite=True)


def test_a_restore_is_audited_in_both_logs_and_keeps_the_later_entries(tmp_path: Path, tokenizer) -> None:
    """A restore was in neither audit log, and the live log was replaced by the backup's: who
    signed in, recorded a verdict or viewed a phone number after the backup was taken survived
    only in the `.before-restore-` file (issue 27, finding 9)."""
    settings = Settings(db=tmp_path / "live.db")
    with Engine(settings, tokenizer=tokenizer) as engine:
        assert engine.load_demo()
        engine.store.audit("staff:lihua", "login", "user:lihua")
    snapshot = tmp_path / "snapshot.db"
    backup(settings, snapshot)
    time.sleep(1.1)  # audit times are to the second
    with Engine(settings, tokenizer=tokenizer) as engine:
        engine.store.record_feedback("Q0001", "X0001", "contacted", "电话已打", actor="staff:lihua")
        engine.store.audit("staff:lihua", "feedback.add", "demand:Q0001", {"expert": "X0001"})
        engine.store.audit("staff:wangfang", "contact.view", "expert:X0002", {"where": "expert page"})
    res = runner.invoke(app, ["restore", str(snapshot), "--db", str(settings.db)])
    assert res.exit_code == 0, res.output
    (aside,) = tmp_path.glob("live.db.before-restore-*")

    def log_of(path: Path) -> list[tuple[str, str, str]]:
        with sqlite3.connect(path) as con:
            return [tuple(r) for r in con.execute("SELECT actor, action, target FROM audit_log ORDER BY id")]

    restored, replaced = log_of(settings.db), log_of(aside)
    assert replaced[-1][1:] == ("backup.restore", "database"), "the replaced log says it was replaced"
    assert restored[-1][1:] == ("backup.restore", "database"), "the restored log says it was restored"
    assert restored[-1][0].startswith("cli")
    later = [("staff:lihua", "feedback.add", "demand:Q0001"),
             ("staff:wangfang", "contact.view", "expert:X0002")]
    assert restored[-4:-1] == [*later, replaced[-1]], "later entries carried over, in order, once"
    assert restored.count(("staff:lihua", "login", "user:lihua")) == 1, "what the backup has is not doubled"
    with sqlite3.connect(settings.db) as con:
        detail = json.loads(con.execute("SELECT detail FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()[0])
        assert con.execute("SELECT count(*) FROM feedback").fetchone()[0] == 0, "the data is the backup's"
    assert detail["carried_entries"] == 3 and detail["kept_aside_as"] == str(aside)
