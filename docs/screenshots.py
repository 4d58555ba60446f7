"""Make the README's screenshots of the staff's pages (docs/screenshots/*.png).

    python docs/screenshots.py [--out docs/screenshots]

Builds a throw-away database from the demo corpus, runs one nightly batch, records a few verdicts
the way staff would (one 婉拒, one 已联系, one 同意对接), starts the real server (uvicorn) and drives
Debian's Chromium with Playwright (never `playwright install`): sign in, the inbox filtered to
永康 保温杯, the thermos demand after the 婉拒, an expert's page with their history, the statistics,
the match page for an owner's cookware demand and a team for a demand of three problems; and,
signed in as an administrator, what the verdicts taught (/admin/proposals: a 科协 whose six 烂筒
demands, in an owner's words, each accepted a mushroom expert who writes 木霉 and 杂菌).
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api import create_app  # noqa: E402 - after the path is set
from matcher.accounts import Accounts  # noqa: E402
from matcher.batch import BatchOptions, run_batch  # noqa: E402
from matcher.config import Settings  # noqa: E402
from matcher.engine import Engine  # noqa: E402
from matcher.models import Demand, Expert  # noqa: E402
from matcher.workflow import Workflow  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "screenshot-password-1"
MUSHROOM = [
    {"id": "M-001", "name": "林菇", "title": "研究员", "institution": "丽水市农林科学研究院",
     "research_fields": ["食用菌栽培", "菌棒杂菌污染防控"],
     "documents": [{"kind": "paper", "title": "香菇菌棒木霉污染的发生规律与防控",
                    "keywords": ["木霉", "杂菌"]}]},
    {"id": "M-002", "name": "叶耳", "title": "副教授", "institution": "浙江农林大学",
     "research_fields": ["食用菌病害", "木霉鉴定"],
     "documents": [{"kind": "paper", "title": "段木香菇杂菌与木霉的分子鉴定", "keywords": ["木霉", "杂菌"]}]},
]
ROTTEN = ["今年香菇烂筒特别多，一片一片的", "花菇大棚烂筒严重，损失大", "菇棚里烂筒，菇农着急",
          "香菇烂筒以后出菇少", "冬菇烂筒，想找人看看", "我们合作社香菇烂筒，怎么防"]


def teach(engine: Engine, loop: Workflow) -> None:
    """Verdicts that teach 烂筒 -> 木霉: each 烂筒 demand accepts a mushroom expert and finds three
    others unsuitable; 40 demo demands accept their first expert and find the next three unsuitable."""
    engine.add_experts(Expert.from_dict(e) for e in MUSHROOM)
    engine.add_demands(Demand(id=f"L-{i}", title=t, enterprise=f"庆元县第{i}菇业合作社")
                       for i, t in enumerate(ROTTEN))
    for i in range(len(ROTTEN)):
        loop.record_feedback("staff:wangfang", f"L-{i}", MUSHROOM[i % 2]["id"], "accepted")
        for e in ("X0001", "X0002", "X0003", "X0004", "X0005", "X0006")[i % 2 * 3: i % 2 * 3 + 3]:
            loop.record_feedback("staff:wangfang", f"L-{i}", e, "unsuitable")
    judged = {f.demand_id for f in engine.store.feedback_entries()}
    for d in sorted(engine.store.iter_demands(), key=lambda d: d.id)[:48]:
        if d.id not in judged:
            for j, m in enumerate(engine.match_demand(d, top_k=4)):
                verdict = "accepted" if j == 0 else "unsuitable"
                loop.record_feedback("staff:wangfang", d.id, m.expert.id, verdict)


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def prepare(db: Path) -> Settings:
    settings = Settings(db=db)
    engine = Engine(settings)
    try:
        engine.load_demo()
        run_batch(engine, BatchOptions(run_key="2026-11-25"))
        Accounts(engine.store, settings).add_user("wangfang", PASSWORD, "staff")
        Accounts(engine.store, settings).add_user("zhaomin", PASSWORD, "admin")
        loop = Workflow(engine)
        recs = loop.recommendations("Q0001").items
        loop.record_feedback(
            "staff:wangfang", "Q0001", recs[0].expert.id, "declined", "近期在外地，暂不接企业项目"
        )
        loop.record_feedback(
            "staff:wangfang", "Q0001", recs[1].expert.id, "contacted", "电话联系，约下周到厂"
        )
        loop.record_feedback("staff:wangfang", "Q0001", recs[2].expert.id, "accepted", "同意 12 月初到厂")
        loop.record_feedback("staff:wangfang", "Q0002", "X0004", "contacted")
        loop.record_feedback("staff:wangfang", "Q0005", "X0004", "contacted")
        loop.record_feedback("staff:wangfang", "Q0005", "X0004", "succeeded", "自动氦检工装上线")
        for demand, expert, kind, value, day in (
            ("Q0005", "X0004", "技术难题解决", 1, "2026-11-20"),
            ("Q0005", "X0004", "经济效益", 85.5, "2026-11-24"),
            ("Q0001", recs[2].expert.id, "合作意向", 1, "2026-11-22"),
            ("Q0001", recs[2].expert.id, "授权专利", 2, "2026-11-25"),
            ("Q0002", "X0004", "人才培养", 6, "2026-11-26"),
        ):
            loop.record_outcome("staff:wangfang", demand, [expert], kind, value, day)
        teach(engine, loop)
    finally:
        engine.close()
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        serving(prepare(Path(tmp) / "shots.db")) as url,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 860}, locale="zh-CN")
        page.goto(url + "/login?next=/demands")
        page.fill("#username", "wangfang")
        page.fill("#password", PASSWORD)
        page.click("#login-button")
        page.wait_for_url(url + "/demands")
        shots = [
            ("demands.png", "/demands?region=%E6%B0%B8%E5%BA%B7"),
            ("demand.png", "/demands/Q0001?done=declined:X0002"),
            ("expert.png", "/experts/X0004?visit=2026-12-03"),
            ("stats.png", "/stats"),
        ]
        for name, path in shots:
            page.goto(url + path)
            page.screenshot(path=str(args.out / name), full_page=True)
            print(args.out / name)
        # The match page (issue 24): the cookware demand as an owner writes it, its understanding,
        # the strong and medium matches and the weak ones folded; then a team for three problems.
        for name, text, team in (
            ("match.png", COOKWARE, False),
            ("team.png", THREE_PROBLEMS, True),
        ):
            page.goto(url + "/")
            page.fill("#demand", text)
            if team:
                page.get_by_label("组团推荐").check()
            page.get_by_role("button", name="匹配", exact=True).click()
            page.wait_for_selector("#status[data-state=done]")
            page.screenshot(path=str(args.out / name), full_page=True)
            print(args.out / name)
        admin = browser.new_page(viewport={"width": 1280, "height": 860}, locale="zh-CN")
        admin.goto(url + "/login?next=/admin/proposals")
        admin.fill("#username", "zhaomin")
        admin.fill("#password", PASSWORD)
        admin.click("#login-button")
        admin.wait_for_url(url + "/admin/proposals")
        admin.screenshot(path=str(args.out / "proposals.png"), full_page=True)
        print(args.out / "proposals.png")
        browser.close()


COOKWARE = "我们厂的不锈钢炒锅用了半年就起皮掉渣，客户投诉多，想找专家看看涂层怎么改进"
THREE_PROBLEMS = "锂电池包在高温下容易过热，齿轮箱噪声大寿命短，还想上MES"


if __name__ == "__main__":
    main()
