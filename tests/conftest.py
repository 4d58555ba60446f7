from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import jieba
import pytest

from matcher.config import DEFAULT_CORPORA, Settings
from matcher.engine import Engine
from matcher.models import Demand, Expert
from matcher.text import ChineseTokenizer

jieba.setLogLevel(logging.WARNING)

SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCH = SHARED / "bench" / "cdl"
THERMOS = "我司生产不锈钢保温杯，真空层激光焊接合格率低，寻求焊接工艺改进方案"
DEMO = DEFAULT_CORPORA / "demo"


def demo_records(kind: str) -> list[dict]:
    """The demo corpus's `experts` or `demands` as the JSON objects of its file."""
    lines = (DEMO / f"{kind}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(x) for x in lines if x.strip()]


def demo_experts() -> list[Expert]:
    return sorted((Expert.from_dict(r) for r in demo_records("experts")), key=lambda e: e.id)


def demo_demands() -> list[Demand]:
    return [Demand.from_dict(r) for r in demo_records("demands")]


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
