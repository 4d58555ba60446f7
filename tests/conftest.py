from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import jieba
import pytest

from matcher.config import DEFAULT_CORPORA, Settings
from matcher.engine import Engine
from matcher.text import ChineseTokenizer

jieba.setLogLevel(logging.WARNING)

SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCH = SHARED / "bench" / "cdl"
THERMOS = "我司生产不锈钢保温杯，真空层激光焊接合格率低，寻求焊接工艺改进方案"


@pytest.fixture(scope="session")
def tokenizer() -> ChineseTokenizer:
    return ChineseTokenizer(DEFAULT_CORPORA / "domain_dict.txt", DEFAULT_CORPORA / "stopwords.txt").initialize()


def make_settings(tmp: Path, **kw: object) -> Settings:
    return Settings(db=tmp / "matcher.db", **kw)


@pytest.fixture(scope="session")
def demo_engine(tmp_path_factory: pytest.TempPathFactory, tokenizer: ChineseTokenizer) -> Engine:
    """One engine over the demo corpus for read-only tests (building it costs a second)."""
    tmp = tmp_path_factory.mktemp("demo")
    engine = Engine(make_settings(tmp), tokenizer=tokenizer)
    assert engine.load_demo()
    engine.ensure_index()
    yield engine
    engine.close()


def demo_template(folder: Path, tokenizer: ChineseTokenizer) -> Path:
    """A database of the demo corpus with its index built, for tests to copy (`copy_db`): a
    build costs seconds, a copy milliseconds."""
    engine = Engine(Settings(db=folder / "t.db"), tokenizer=tokenizer)
    assert engine.load_demo()
    engine.ensure_index()
    engine.close()
    return folder / "t.db"


def copy_db(template: Path, dest: Path) -> Path:
    """A copy of the database `template` and its index folder in `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    db = dest / "m.db"
    shutil.copy2(template, db)
    shutil.copytree(Path(f"{template}.index"), Path(f"{db}.index"))
    return db


@pytest.fixture()
def engine(tmp_path: Path, tokenizer: ChineseTokenizer) -> Engine:
    """A fresh, empty engine on a real SQLite file."""
    e = Engine(make_settings(tmp_path), tokenizer=tokenizer)
    yield e
    e.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(tmp: Path, db: Path, *, workers: int = 1, env: dict[str, str] | None = None,
                   startup: float = 180) -> Iterator[str]:
    """`matcher serve` as a real process on a free port (the demo corpus in an empty `db`); yields
    its URL once it answers, and stops it with SIGTERM (its log is in `tmp/server.log`)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "matcher", "serve", "--port", str(port), "--db", str(db),
           "--workers", str(workers)]
    log = tmp / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp, env={**os.environ, **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + startup
            while True:
                assert proc.poll() is None, f"matcher serve exited:\n{log.read_text()}"
                try:
                    if httpx.get(url + "/api/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"matcher serve did not answer:\n{log.read_text()}"
                time.sleep(0.2)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


#: The password of the staff accounts tests make (10+ characters, not the user name).
PASSWORD = "金华市科协-2026-loop"


def sign_in(client, user: str = "lihua", password: str = PASSWORD, next_: str = "/demands"):  # noqa: ANN001, ANN201
    """Sign `user` in through the real form (its double-submit token included); the response."""
    import re

    form = client.get(f"/login?next={next_}")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)
    return client.post(
        "/login",
        data={"username": user, "password": password, "login_token": token, "next": next_},
        follow_redirects=False,
    )


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    import re

    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
