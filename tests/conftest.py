from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jieba
import pytest
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings

from api import create_app
from matcher.config import DEFAULT_CORPORA, Settings
from matcher.engine import Engine
from matcher.models import Demand, Expert
from matcher.text import ChineseTokenizer

jieba.setLogLevel(logging.WARNING)

# The property tests draw the same examples on every run (derived from each test's name), so CI's
# verdict is reproducible: a red run can be replayed, a green one is not luck. To explore new
# examples, run with HYPOTHESIS_PROFILE=explore (and keep what it finds as a regression test).
hypothesis_settings.register_profile("repeatable", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
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


# -- the HTTP API through a TestClient (tests/test_api.py and the tests of other routes) ------------
API_KEY = "k-7f3a9c0e-test-3451cc474d5698"
API_AUTH = {"X-API-Key": API_KEY}
#: a key with the read role: the working data, no contacts
API_READ_KEY = "k-r7f3a9c0e-test-3451cc474d5698-read"
API_READ = {"X-API-Key": API_READ_KEY}

#: A handful of made-up experts with distinct topics: the rankings of the API tests are obvious.
API_EXPERTS = [
    {
        "id": "e-weld",
        "name": "周焊",
        "title": "教授",
        "institution": "浙江工业大学材料学院",
        "region": "浙江省杭州市",
        "research_fields": ["激光焊接", "不锈钢焊接", "真空保温器具"],
        "bio": "长期从事不锈钢薄壁件激光焊接工艺与焊缝质量控制研究。",
        "documents": [
            {
                "kind": "paper",
                "title": "不锈钢真空保温杯激光焊接气孔缺陷的成因与控制",
                "keywords": ["激光焊接", "气孔", "真空层"],
                "year": 2021,
            },
            {"kind": "patent", "title": "一种双层真空杯体的激光焊接夹具", "year": 2020},
        ],
        "contact": {"phone": "13800000001", "email": "zhou.han@example.edu.cn"},
    },
    {
        "id": "e-bms",
        "name": "吴电",
        "title": "研究员",
        "institution": "江苏省储能研究院",
        "region": "江苏省南京市",
        "research_fields": ["锂电池", "电池管理系统", "BMS"],
        "documents": [{"kind": "project", "title": "动力锂电池BMS均衡控制策略研究", "year": 2022}],
        "contact": {"phone": "13800000002", "email": "wu.dian@example.org"},
    },
    {
        "id": "e-sic",
        "name": "郑芯",
        "title": "中国工程院院士",
        "institution": "北京半导体研究所",
        "region": "北京市",
        "research_fields": ["SiC功率器件", "宽禁带半导体"],
        "documents": [{"kind": "paper", "title": "SiC MOSFET 可靠性与栅氧退化机理", "year": 2019}],
        "contact": {"phone": "13800000003", "email": "zheng.xin@example.cn"},
    },
    {
        "id": "e-plc",
        "name": "冯控",
        "title": "高级工程师",
        "institution": "宁波自动化有限公司",
        "region": "浙江省宁波市",
        "research_fields": ["PLC控制", "工业自动化", "机器视觉检测"],
        "documents": [{"kind": "project", "title": "基于PLC的焊接生产线自动化改造"}],
        "contact": {"phone": "13800000004", "email": "feng.kong@example.com"},
    },
    {
        "id": "e-ferm",
        "name": "陈酵",
        "title": "教授",
        "institution": "江南大学食品学院",
        "region": "江苏省无锡市",
        "research_fields": ["食品发酵", "乳酸菌", "酸奶品质"],
        "documents": [{"kind": "paper", "title": "乳酸菌发酵酸奶的风味物质形成", "year": 2023}],
        "contact": {"phone": "13800000005", "email": "chen.jiao@example.edu.cn"},
    },
]


API_DEMAND = {
    "id": "d-thermos",
    "title": "保温杯真空层激光焊接合格率低",
    "enterprise": "永康杯业有限公司",
    "description": THERMOS,
    "region": "浙江省金华市",
    "industry": "日用金属制品",
    "keywords": ["激光焊接", "真空"],
}


def api_settings(tmp_path: Path, **kw: object) -> Settings:
    """Settings of an API test: a database in `tmp_path`, the test key (admin) and a read key."""
    return Settings(db=tmp_path / "api.db", api_keys=(API_KEY, f"read:{API_READ_KEY}"), **kw)


def make_client(settings: Settings, tokenizer: ChineseTokenizer) -> Iterator[TestClient]:
    """A TestClient over an engine holding `API_EXPERTS` (`client.engine`, for checks behind the API)."""
    engine = Engine(settings, tokenizer=tokenizer)
    engine.add_experts(Expert.from_dict(e) for e in API_EXPERTS)
    with TestClient(create_app(settings, engine=engine)) as client:
        client.engine = engine  # type: ignore[attr-defined] - for checks behind the API
        yield client
    engine.close()


def assert_error(res, status: int, type_: str, *needles: str) -> None:  # noqa: ANN001
    """An error response as the API writes them: this status, this type, a message with `needles`."""
    assert res.status_code == status, res.text
    err = res.json()["error"]
    assert err["type"] == type_
    for needle in needles:
        assert needle in err["message"], err["message"]


# -- the nightly batch on the demo corpus ---------------------------------------------------------
def build_template(folder: Path, tokenizer, n_demands: int | None = None) -> Path:
    """A demo database with its index built; tests copy it (building the index costs seconds)."""
    engine = Engine(Settings(db=folder / "t.db"), tokenizer=tokenizer)
    engine.add_experts(Expert.from_dict(r) for r in demo_records("experts"))
    demands = [Demand.from_dict(r) for r in demo_records("demands")]
    engine.add_demands(demands[:n_demands])
    engine.ensure_index()
    engine.close()
    return folder / "t.db"


def open_engine(db: Path, tokenizer) -> Engine:
    return Engine(Settings(db=db), tokenizer=tokenizer)


# -- real servers and a real browser ----------------------------------------------------------------
@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """A real uvicorn server for `app` on a free loopback port, in a thread of this process."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def synthetic_expert(i: int) -> dict[str, Any]:
    """Made-up expert number `i` (six topics in turn), as the API takes one."""
    topics = [("激光焊接", "不锈钢薄壁件激光焊接气孔控制"), ("电池管理系统", "锂电池BMS均衡策略"),
              ("SiC功率器件", "SiC MOSFET 栅氧退化"), ("机器视觉检测", "焊缝缺陷视觉检测"),
              ("乳酸菌发酵", "酸奶风味物质"), ("光伏组件", "EL图像隐裂识别")]
    field, title = topics[i % len(topics)]
    return {"id": f"L{i:05d}", "name": f"负载专家{i}", "institution": f"第{i % 17}研究院",
            "research_fields": [field], "documents": [{"kind": "paper", "title": f"{title}（{i}）"}],
            "contact": {"phone": f"1390000{i:04d}", "email": f"l{i}@example.org"}}


ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PAGE_KEY = "page-test-key-41c2-3acfabde0a3aaa"
PAGE_BODY_LIMIT = 200_000

XSS_NAME = "<script>window.__pwned = 1; alert(1)</script>林瓷"
XSS_EXPERT = {
    "id": "x-xss",
    "name": XSS_NAME,
    "title": "<b>副教授</b>",
    "institution": "<i>景德镇</i>陶瓷大学",
    "region": "江西省",
    "research_fields": ["窑变釉", '<img src=x onerror="window.__pwned = 2">'],
    "documents": [{"kind": "paper", "title": '窑变釉呈色<img src=y onerror="window.__pwned = 3">机理'}],
}
XSS_DEMAND = '<script>window.__pwned = 4; alert(4)</script>窑变釉颜色不稳定<img src=z onerror="alert(5)">'


@dataclass
class Live:
    url: str
    port: int


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A real uvicorn server in a thread, on a fresh database filled with the demo corpus."""
    db = tmp_path_factory.mktemp("live") / "live.db"
    settings = Settings(db=db, api_keys=(PAGE_KEY,), max_body_bytes=PAGE_BODY_LIMIT)
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, demo_if_empty=True),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # jieba and the demo index load during start-up
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            pytest.fail("the uvicorn test server did not start")
        time.sleep(0.05)
    try:
        yield Live(f"http://127.0.0.1:{port}", port)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "the uvicorn test server did not stop"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install Debian's chromium (apt-get install chromium); CI does")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def browser_tab(browser: Any, *, timeout_ms: int = 30_000, **context_options: Any) -> Iterator[Any]:
    """A tab of `browser` as staff see it (1366×900, zh-CN) whose script errors and console errors
    collect in `tab.problems`; closed with its context."""
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN", **context_options)
    pg = context.new_page()
    pg.set_default_timeout(timeout_ms)
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on(
        "console",
        lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None,
    )
    pg.problems = problems
    try:
        yield pg
    finally:
        context.close()


@pytest.fixture()
def page(browser, live: Live):  # noqa: ANN001, ANN201 - Playwright types
    with browser_tab(browser, accept_downloads=True) as pg:
        pg.on("dialog", lambda d: (pg.problems.append(f"dialog: {d.message}"), d.dismiss()))
        yield pg


# -- staff pages -------------------------------------------------------------------------------------
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


# -- no English on a page ---------------------------------------------------------------------------
#: Latin-letter words a staff page may show besides the data: product and format names, and units.
PRODUCT_WORDS = frozenset({"Matcher", "Excel", "API", "xlsx", "csv", "CSV", "MB", "KB"})
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def english_words(text: str, allowed: Iterable[str] = ()) -> list[str]:
    """The words in Latin letters in `text` that are neither product names nor `allowed` (terms in
    the data, user names): what must not appear on a staff page. Single letters (a 型号 like "A")
    and digits are not words."""
    ok = PRODUCT_WORDS | set(allowed)
    return [w for w in _LATIN_WORD.findall(text) if len(w) > 1 and w not in ok]


def data_words(engine: Any) -> set[str]:
    """Every Latin-letter word in the experts' and demands' own texts (PLC, SiC, BMS …), of an
    engine or a store."""
    store = getattr(engine, "store", engine)
    words: set[str] = set()
    for e in store.iter_experts():
        words.update(_LATIN_WORD.findall(json.dumps(e.to_dict(), ensure_ascii=False)))
    for d in store.iter_demands():
        words.update(_LATIN_WORD.findall(json.dumps(d.to_dict(), ensure_ascii=False)))
    return words


def visible_text(html: str) -> str:
    """The text a page shows (tags, scripts and styles dropped; entities unescaped)."""
    import html as html_lib

    body = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S | re.I)
    body = re.sub(r"<[^>]+>", " ", body)
    return re.sub(r"\s+", " ", html_lib.unescape(body)).strip()


def corpus_words() -> set[str]:
    """The Latin-letter words of the product's own vocabulary (the domain dictionary, the synonyms,
    the thesaurus: SPC, PLC, stainless …): the match page shows the concepts it added from them."""
    words: set[str] = set()
    for name in ("domain_dict.txt", "synonyms.txt", "thesaurus.txt"):
        words.update(_LATIN_WORD.findall((DEFAULT_CORPORA / name).read_text(encoding="utf-8")))
    return words


# -- a 科协 that has learned something from its verdicts (issue 28) -------------------------------------
#: Two mushroom experts who write 木霉 and 杂菌 (the demo's X0068 grows shiitake too); owners say 烂筒
#: (a trade word experts never write) for logs spoilt by moulds.
MUSHROOM_EXPERTS = [
    {"id": "M-001", "name": "林菇", "title": "研究员", "institution": "丽水市农林科学研究院",
     "region": "浙江省丽水市", "research_fields": ["食用菌栽培", "菌棒杂菌污染防控"],
     "documents": [{"kind": "paper", "title": "香菇菌棒木霉污染的发生规律与防控",
                    "keywords": ["木霉", "杂菌", "菌棒"]},
                   {"kind": "project", "title": "花菇栽培菌棒灭菌工艺优化", "keywords": ["灭菌", "菌棒"]}]},
    {"id": "M-002", "name": "叶耳", "title": "副教授", "institution": "浙江农林大学",
     "region": "浙江省杭州市", "research_fields": ["食用菌病害", "木霉鉴定"],
     "documents": [{"kind": "paper", "title": "段木香菇杂菌与木霉的分子鉴定",
                    "keywords": ["木霉", "杂菌", "分子鉴定"]}]},
]
#: Demands in an owner's words, each saying 烂筒.
ROTTEN_LOGS = ["今年香菇烂筒特别多，一片一片的", "花菇大棚烂筒严重，损失大", "菇棚里烂筒，菇农着急",
               "香菇烂筒以后出菇少", "冬菇烂筒，想找人看看", "我们合作社香菇烂筒，怎么防"]
MUSHROOM_IDS = ("M-001", "M-002")


def learned_world(engine: Engine, demo_judged: int = 48, rotten_judged: int = len(ROTTEN_LOGS)) -> None:
    """Verdicts that teach 烂筒 -> 木霉 (and 杂菌): the six 烂筒 demands each accept a mushroom
    expert (M-001 and M-002 in turn) and find three others unsuitable; `demo_judged` demo demands
    accept their first expert and find the next three unsuitable (what every other demand says:
    without them, nothing could be told from chance). Only the first `rotten_judged` 烂筒 demands are
    judged (the others wait for a test to judge them)."""
    from matcher.workflow import Workflow

    engine.add_experts(Expert.from_dict(e) for e in MUSHROOM_EXPERTS)
    engine.add_demands(Demand(id=f"L-{i}", title=t, enterprise=f"庆元县第{i}菇业合作社",
                              region="浙江省丽水市") for i, t in enumerate(ROTTEN_LOGS))
    loop = Workflow(engine)
    others = ["X0001", "X0002", "X0003", "X0004", "X0005", "X0006"]
    for i in range(rotten_judged):
        loop.record_feedback("staff:test", f"L-{i}", MUSHROOM_IDS[i % 2], "accepted")
        for e in others[i % 2 * 3: i % 2 * 3 + 3]:
            loop.record_feedback("staff:test", f"L-{i}", e, "unsuitable")
    for d in sorted(engine.store.iter_demands(), key=lambda d: d.id)[:demo_judged]:
        if d.id.startswith("L-"):
            continue
        ranked = [m.expert.id for m in engine.match_demand(d, top_k=4)]
        for j, e in enumerate(ranked):
            loop.record_feedback("staff:test", d.id, e, "accepted" if j == 0 else "unsuitable")
