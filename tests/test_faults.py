"""Faults a long-running office server meets: a locked database, a full disk, a damaged index, a
stop signal mid-request. Each must end in a clear message and no half-written data, never a
traceback. (A nightly batch killed with SIGKILL mid-run is proven in tests/test_batch.py.)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api import create_app
from matcher.cli import app as cli_app
from matcher.config import Settings
from matcher.engine import Engine
from matcher.errors import StoreError
from matcher.models import Expert
from matcher.store import Store

from .conftest import THERMOS, free_port

runner = CliRunner()
KEY = "faults-test-key-0001-8630cca7521f49"

EXPERTS = [
    {"id": "f-weld", "name": "周焊", "institution": "浙江工业大学",
     "research_fields": ["激光焊接", "不锈钢焊接"],
     "documents": [{"kind": "paper", "title": "不锈钢真空保温杯激光焊接气孔缺陷的成因与控制"}]},
    {"id": "f-bms", "name": "吴电", "institution": "江苏储能研究院", "research_fields": ["锂电池", "BMS"],
     "documents": [{"kind": "project", "title": "动力锂电池BMS均衡控制策略研究"}]},
    {"id": "f-sic", "name": "郑芯", "institution": "北京半导体研究所", "research_fields": ["SiC功率器件"],
     "documents": [{"kind": "paper", "title": "SiC MOSFET 可靠性与栅氧退化机理"}]},
    {"id": "f-ferm", "name": "陈酵", "institution": "江南大学", "research_fields": ["食品发酵", "乳酸菌"],
     "documents": [{"kind": "paper", "title": "乳酸菌发酵酸奶的风味物质形成"}]},
]


def newcomers(n: int, prefix: str = "n", bio_chars: int = 200) -> list[Expert]:
    return [Expert.from_dict({"id": f"{prefix}{i:04d}", "name": f"新专家{i}", "research_fields": ["激光焊接"],
                              "bio": "焊接工艺" * (bio_chars // 4)}) for i in range(n)]


def write_jsonl(path: Path, experts: list[Expert]) -> Path:
    lines = (json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in experts)
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture()
def engine(tmp_path: Path, tokenizer) -> Iterator[Engine]:
    e = Engine(Settings(db=tmp_path / "m.db", busy_timeout=0.5), tokenizer=tokenizer)
    e.upsert_experts(Expert.from_dict(x) for x in EXPERTS)
    e.ensure_index()
    yield e
    e.close()


def state(db: Path) -> tuple[list[str], str]:
    """The expert ids and the data_version, read by an independent connection."""
    conn = sqlite3.connect(db)
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM experts ORDER BY id")]
        row = conn.execute("SELECT value FROM meta WHERE key = 'data_version'").fetchone()
        return ids, row[0] if row else "0"
    finally:
        conn.close()


@contextmanager
def write_locked(db: Path) -> Iterator[sqlite3.Connection]:
    """Another program holding the write lock: BEGIN EXCLUSIVE plus an uncommitted write."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("INSERT INTO meta(key, value) VALUES('held-by-other-writer', '1')")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


FAULTS: list[str] = []  # one line per fault injected, printed at the end of the module


@pytest.fixture(scope="module", autouse=True)
def _count_faults() -> Iterator[None]:
    yield
    print(f"\n[faults] {len(FAULTS)} faults injected: " + "; ".join(sorted(set(FAULTS))))


# -- a locked database ----------------------------------------------------------------------------
def test_a_locked_database_fails_writes_cleanly_and_keeps_reads_going(engine: Engine) -> None:
    db = engine.settings.db
    before = state(db)
    with write_locked(db):
        FAULTS.append("database locked by another writer")
        # Reading and ranking go on: WAL readers do not wait for writers.
        assert engine.match(THERMOS)[0].expert.id == "f-weld"
        start = time.monotonic()
        with pytest.raises(StoreError) as err:
            engine.upsert_experts(newcomers(3))
        waited = time.monotonic() - start
        assert 0.45 <= waited < 5, "the write waits for the busy timeout, then gives up"
        assert "locked by another writer" in err.value.message
        assert "MATCHER_BUSY_TIMEOUT" in err.value.message and "nothing was written" in err.value.message
        assert err.value.status == 503
        with pytest.raises(StoreError, match="locked"):
            engine.import_experts(write_jsonl(db.parent / "in.jsonl", newcomers(5, "imp")))
    assert state(db) == before, "nothing half-written"
    assert [m.expert.id for m in engine.match("激光焊接")][:1] == ["f-weld"]
    # Once the other writer is done, the same write goes through and is findable at once.
    engine.upsert_experts(newcomers(3))
    assert len(state(db)[0]) == len(EXPERTS) + 3


def test_a_writer_that_read_first_waits_for_the_lock_instead_of_failing(tmp_path: Path) -> None:
    """Regression: with a deferred BEGIN, a transaction that read before another connection committed
    could not upgrade its stale WAL snapshot and failed at once with "database is locked"."""
    db = tmp_path / "m.db"
    a, b = Store(db, busy_timeout=0.3), Store(db, busy_timeout=0.3)
    a.upsert_experts([Expert.from_dict({"id": "x1", "name": "甲"})])

    def interleaved() -> Iterator[Expert]:
        yield Expert.from_dict({"id": "x1", "name": "甲"})  # unchanged: a's transaction only reads
        FAULTS.append("concurrent writer mid-transaction")
        with pytest.raises(StoreError, match="locked"):  # a holds the write lock: b waits, then gives up
            b.upsert_experts([Expert.from_dict({"id": "y1", "name": "乙"})])
        yield Expert.from_dict({"id": "x2", "name": "丙"})

    summary = a.upsert_experts(interleaved())
    assert (summary.inserted, summary.unchanged) == (1, 1)
    assert state(db)[0] == ["x1", "x2"]
    a.close()
    b.close()


def test_cli_and_api_report_a_locked_database_without_a_traceback(tmp_path: Path, tokenizer) -> None:
    settings = Settings(db=tmp_path / "m.db", busy_timeout=0.3, api_keys=(KEY,))
    with Engine(settings, tokenizer=tokenizer) as e:
        e.upsert_experts(Expert.from_dict(x) for x in EXPERTS)
    src = write_jsonl(tmp_path / "in.jsonl", newcomers(4))
    app = create_app(settings)
    with TestClient(app) as client, write_locked(settings.db):
        FAULTS.append("database locked (CLI import, API write)")
        res = runner.invoke(cli_app, ["import", "experts", str(src), "--db", str(settings.db)],
                            env={"MATCHER_BUSY_TIMEOUT": "0.3"})
        assert res.exit_code == 2
        assert res.output.startswith("error: the database is locked") and "Traceback" not in res.output
        api = client.post("/api/v1/experts", json={"id": "api1", "name": "王五", "research_fields": ["焊接"]},
                          headers={"X-API-Key": KEY})
        assert api.status_code == 503
        assert api.json()["error"]["type"] == "StoreError" and "locked" in api.json()["error"]["message"]
        assert client.post("/api/v1/match", json={"text": THERMOS}).status_code == 200
    assert state(settings.db)[0] == sorted(x["id"] for x in EXPERTS)


# -- a full disk ----------------------------------------------------------------------------------
def test_a_full_disk_fails_an_import_cleanly_with_nothing_written(engine: Engine) -> None:
    """`PRAGMA max_page_count` caps the file: SQLite then fails exactly as on a full disk (SQLITE_FULL)."""
    db = engine.settings.db
    before = state(db)
    pages = engine.store.db.execute("PRAGMA page_count").fetchone()[0]
    engine.store.db.execute(f"PRAGMA max_page_count = {pages + 4}")
    FAULTS.append("disk full (max_page_count)")
    with pytest.raises(StoreError) as err:
        engine.import_experts(write_jsonl(db.parent / "big.jsonl", newcomers(300, bio_chars=2000)))
    assert "disk holding the database is full" in err.value.message
    assert "nothing was written" in err.value.message
    with pytest.raises(StoreError, match="full"):
        engine.upsert_experts(newcomers(300, "u", bio_chars=2000))
    assert state(db) == before
    assert engine.match(THERMOS)[0].expert.id == "f-weld", "matching goes on while the disk is full"
    engine.store.db.execute("PRAGMA max_page_count = 1073741823")  # space freed
    engine.upsert_experts(newcomers(300, "u", bio_chars=2000))
    assert len(state(db)[0]) == len(EXPERTS) + 300


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MB tmpfs (needs root, as in CI's container); skipped where mounting is not allowed."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root; the max_page_count test covers SQLite's side")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode(errors='replace').strip()})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """Fill the file system of `folder` up to `leave` free bytes."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    filler = folder / "filler"
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def test_a_really_full_disk_loses_nothing_and_recovers(tiny_disk: Path, tokenizer, caplog) -> None:
    settings = Settings(db=tiny_disk / "m.db", busy_timeout=0.5)
    e = Engine(settings, tokenizer=tokenizer)
    e.upsert_experts(Expert.from_dict(x) for x in EXPERTS)
    assert e.match(THERMOS)[0].expert.id == "f-weld"
    before = state(settings.db)
    filler = fill(tiny_disk, leave=48 * 1024)
    FAULTS.append("disk full (tmpfs)")
    with pytest.raises(StoreError, match="full"):
        e.upsert_experts(newcomers(200, bio_chars=2000))
    assert state(settings.db) == before
    # A write small enough to fit goes through even though the index cannot be saved any more:
    # the database has it, the index in memory has it, and the saved index stays whole (older).
    small = [Expert.from_dict({"id": "s1", "name": "小写入", "research_fields": ["真空保温杯激光焊接"]})]
    with caplog.at_level("ERROR", logger="matcher.engine"):
        e.upsert_experts(small)
    assert any("could not save the index" in r.getMessage() and "No space left" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert "s1" in state(settings.db)[0]
    assert "s1" in [m.expert.id for m in e.match("真空保温杯激光焊接")]
    assert not list(tiny_disk.glob("*.tmp")) and not list(e.index_dir.glob("*.tmp")), "no partial index left"
    # A backup onto the full disk fails cleanly too, leaving no half file.
    with pytest.raises(StoreError, match="full|failed"):
        e.store.backup_to(tiny_disk / "b.db")
    assert not (tiny_disk / "b.db").exists() and not (tiny_disk / "b.db.partial").exists()
    e.close()
    filler.unlink()
    with Engine(settings, tokenizer=tokenizer) as again:  # space freed, next start
        assert sqlite3.connect(settings.db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        again.upsert_experts(newcomers(200, bio_chars=2000))
        assert len(state(settings.db)[0]) == len(EXPERTS) + 1 + 200
        assert "s1" in [m.expert.id for m in again.match("真空保温杯激光焊接")]


# -- a missing or damaged index ------------------------------------------------------------------
def _garble(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    start = len(data) // 3
    for i in range(start, min(len(data), start + 48)):
        data[i] = rng.randrange(256)
    path.write_bytes(bytes(data))


DAMAGE = {
    "folder deleted": lambda d, rng: shutil.rmtree(d),
    "meta.json truncated": lambda d, rng: (d / "meta.json").write_bytes((d / "meta.json").read_bytes()[:50]),
    "meta.json a list": lambda d, rng: (d / "meta.json").write_text("[1, 2]"),
    "state.json garbage": lambda d, rng: (d / "state.json").write_text("{not json"),
    "every .npz truncated": lambda d, rng: [p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
                                             for p in d.rglob("*.npz")],
    "every .npy garbled": lambda d, rng: [_garble(p, rng) for p in d.rglob("*.npy")],
    "every file emptied": lambda d, rng: [p.write_bytes(b"") for p in d.rglob("*") if p.is_file()],
    "an array deleted": lambda d, rng: (d / "unit_expert.npy").unlink(),
    "older format": lambda d, rng: (d / "meta.json").write_text(
        (d / "meta.json").read_text().replace('"format_version": ', '"format_version": -1, "x": ')),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_missing_or_damaged_index_is_rebuilt(tmp_path: Path, tokenizer, damage: str, caplog) -> None:
    settings = Settings(db=tmp_path / "m.db")
    with Engine(settings, tokenizer=tokenizer) as e:
        e.upsert_experts(Expert.from_dict(x) for x in EXPERTS)
        e.upsert_experts(newcomers(2))  # a delta beside the base, too
        expected = [(m.expert.id, round(m.score, 6)) for m in e.match(THERMOS)]
        folder = e.index_dir
    DAMAGE[damage](folder, random.Random(7))
    FAULTS.append(f"index {damage}")
    with caplog.at_level("WARNING", logger="matcher.engine"), Engine(settings, tokenizer=tokenizer) as e:
        assert [(m.expert.id, round(m.score, 6)) for m in e.match(THERMOS)] == expected
    if damage != "folder deleted":
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any("rebuilding it from the database now" in w for w in warned), warned
    # The rebuilt index was saved whole: the next start loads it without rebuilding.
    caplog.clear()
    with caplog.at_level("INFO", logger="matcher.engine"), Engine(settings, tokenizer=tokenizer) as e:
        e.ensure_index()
    assert not [r for r in caplog.records if "rebuild" in r.getMessage() or "building" in r.getMessage()]


def test_the_cli_says_what_happened_to_a_damaged_index(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    src = write_jsonl(tmp_path / "in.jsonl", [Expert.from_dict(x) for x in EXPERTS])
    assert runner.invoke(cli_app, ["import", "experts", str(src), "--db", str(db)]).exit_code == 0
    assert runner.invoke(cli_app, ["index", "--db", str(db)]).exit_code == 0
    index = Path(f"{db}.index")
    for p in index.glob("*.npz"):
        p.write_bytes(b"PK\x03\x04 garbage")
    FAULTS.append("index garbled (CLI)")
    proc = subprocess.run([sys.executable, "-m", "matcher", "match", THERMOS, "--db", str(db), "--top", "2"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "damaged" in proc.stderr and "rebuilding it from the database now" in proc.stderr
    assert "周焊" in proc.stdout


# -- SIGTERM during a request ----------------------------------------------------------------------
def test_sigterm_during_a_request_finishes_it_and_exits_0(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    src = write_jsonl(tmp_path / "in.jsonl", [Expert.from_dict(x) for x in EXPERTS])
    assert runner.invoke(cli_app, ["import", "experts", str(src), "--db", str(db)]).exit_code == 0
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A long demand (limit raised for this server) keeps the request busy for seconds.
    env = {**os.environ, "MATCHER_MAX_TEXT_CHARS": "400000"}
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        cmd = [sys.executable, "-m", "matcher", "serve", "--port", str(port), "--db", str(db)]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    if httpx.get(url + "/api/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            rng = random.Random(3)
            slow = THERMOS + "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(150_000))
            result: dict[str, object] = {}

            def request() -> None:
                try:
                    result["response"] = httpx.post(url + "/api/v1/match", json={"text": slow, "top_k": 3},
                                                    timeout=120)
                except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                    result["error"] = exc

            t = threading.Thread(target=request)
            started = time.monotonic()
            t.start()
            time.sleep(1.0)
            assert t.is_alive(), "the request finished before the signal: make it slower"
            proc.send_signal(signal.SIGTERM)
            FAULTS.append("SIGTERM during a request")
            t.join(120)
            rc = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    text = log.read_text()
    assert "error" not in result, result
    res = result["response"]
    assert isinstance(res, httpx.Response) and res.status_code == 200, text
    assert res.json()["data"][0]["expert"]["id"] == "f-weld"
    assert time.monotonic() - started > 1.0
    assert rc == 0, text
    assert "Application shutdown complete" in text and "Traceback" not in text
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/api/v1/health", timeout=2)
