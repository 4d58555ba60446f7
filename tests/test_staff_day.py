"""One staff day in a real browser (issue 23, "Done when"): Playwright drives Debian's Chromium
against a real `matcher serve`; the only commands are the first administrator and the server.
The day itself is tests/staff_day.py (docs/screenshots.py plays it too, for the README's pictures).
Every page it meets is checked for English words: none but product names and terms in the data."""

from __future__ import annotations

import getpass
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from matcher.auditlog import actor_label
from matcher.store import Store

from . import staff_day
from .conftest import ARTIFACTS, corpus_words, data_words, english_words, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium():  # noqa: ANN201 - Playwright's type
    if not Path(staff_day.CHROMIUM).exists():
        pytest.skip("no /usr/bin/chromium: install Debian's chromium (apt-get install chromium); CI does")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=staff_day.CHROMIUM, headless=True,
                                    args=staff_day.CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_one_staff_day_in_the_browser_with_no_command_after_the_server(chromium, tmp_path: Path) -> None:
    db = tmp_path / "day.db"
    staff_day.first_admin(db)
    shots = ARTIFACTS / "staff-day"
    shots.mkdir(parents=True, exist_ok=True)
    with running_server(tmp_path, db, env={"MATCHER_LOGIN_MAX_FAILURES": "5"}) as url:
        def shot(page, name: str) -> None:  # noqa: ANN001 - Playwright's type
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

        day = staff_day.play(chromium, url, tmp_path, shot=shot)
        store = Store(db)
        try:
            check(day, store)
        finally:
            store.close()


def check(day: staff_day.Day, store: Store) -> None:
    f = day.facts
    assert day.problems == []  # no script error, no refused inline style or script (CSP)
    assert f["one_time_shown_again"] is False

    # the demands workbook: the bad row named in Chinese, the rest imported
    [error] = f["demand_row_errors"]
    assert "第 3 行" in error and "提交日期" in error and "2026 年 11 月没有 31 日" in error
    assert [r.split("\t")[1] for r in f["demand_preview"]] == ["WY2026-001", "WY2026-003"]
    assert "新增 2 条" in f["demands_flash"] and "1 行有误" in f["demands_flash"]
    assert store.get_demand("WY2026-003").contact == "吴经理 13700000003"
    assert not store.get_demands(["WY2026-002"])

    # the experts workbook: one merge, into the expert the library held
    kept_id, name = f["merged_expert"]
    [merge] = f["merges"]
    assert name in merge and kept_id in merge
    assert "真空排气工艺" in store.get_expert(kept_id).research_fields and len(store.list_merges()) == 1

    # the form's demand, the pasted one with its exclusion and its list
    created = store.get_demand(f["created_id"])
    assert created.title == staff_day.NEW_DEMAND["title"] and created.deadline == "2027-03-31"
    assert f["created_source"] == "live"
    saved = store.get_demand(f["saved_id"])
    assert saved.exclude_terms == (staff_day.EXCLUDED_TERM,) and saved.description == staff_day.PASTED
    assert f"「{staff_day.EXCLUDED_TERM}」" in f["save_edits"] and f["saved_source"] == "saved"
    names = {e.id: e.name for e in store.get_experts(f["saved_list"])}
    assert [names[i] for i in f["saved_list"]] == f["shown_after_exclusion"]  # what the page showed

    # a demand of three problems: a team with one named aspect for each (issue 24)
    assert len(f["team_aspects"]) == 3 and not any(a.startswith("方面") for a in f["team_aspects"])

    # 不合适: gone, renumbered, never ticked
    assert f["after_unsuitable"] == f["saved_list"][1:]
    assert f["ranks_after"] == [str(i) for i in range(1, len(f["saved_list"]))]
    offered = dict(f["outcome_choices"])
    assert f["unsuitable"] not in offered and not any(offered.values())

    # the annual report of the period holds the outcome
    wb = openpyxl.load_workbook(f["report"])
    assert f["report_name"].startswith("年度报告_") and "成果明细" in wb.sheetnames
    rows = [[str(c) for c in row] for row in wb["成果明细"].iter_rows(values_only=True)]
    assert any("焊接合格率从 82% 提到 97%" in row and "12.5" in row for row in rows), rows

    # the batch from the page: its summary is the run's
    run = max(store.list_batch_runs(), key=lambda r: r.id)
    assert run.status == "done" and "手动" in run.run_key
    assert f"{run.demands} 条，其中 {run.matched} 条得到推荐" in f["last_run"]
    assert f"{run.recommendations} 条" in f["last_run"] and run.run_key in f["last_run"]
    assert f["created_id"] in {o.demand_id for o in store.list_batch_outcomes(run.id)}  # the form's demand
    assert f["saved_id"] not in {o.demand_id for o in store.list_batch_outcomes(run.id)}  # had its list

    # the audit log: every step, in Chinese, in Beijing time
    assert "时间（北京时间）" in f["audit_header"]
    steps = [row[0] for row in f["audit"]]
    for action in ("user.add", "user.passwd", "import.demands", "import.experts", "demand.create",
                   "demand.save", "feedback.add", "outcome.add", "report.download", "batch.start"):
        assert action in steps, action
    entries, _ = store.list_audit(limit=len(f["audit"]))
    for (code, at, who, label, sentence, _ip), entry in zip(f["audit"], entries, strict=True):
        assert code == entry.action and who == actor_label(entry.actor)
        assert re.search(r"[\u4e00-\u9fff]", sentence) and re.search(r"[\u4e00-\u9fff]", label)
        local = datetime.fromisoformat(entry.at).astimezone(ZoneInfo("Asia/Shanghai"))
        assert at == local.strftime("%Y-%m-%d %H:%M:%S")
    said = dict((row[0], row[4]) for row in reversed(f["audit"]))
    assert said["feedback.add"].endswith("记为「不合适」（备注：方向不符：做的是真空钎焊）")
    assert said["demand.save"].endswith(f"排除的词：「{staff_day.EXCLUDED_TERM}」")
    assert said["import.demands"] == ("导入需求文件「武义县12月需求.xlsx」："
                                      "新增 2，更新 0，不变 0，跳过有误的行 1")

    # no page shows an English word but product names and terms in the data
    allowed = data_words(store) | corpus_words()
    allowed |= {staff_day.ADMIN, staff_day.STAFF, getpass.getuser()}
    allowed |= set(english_words(f["one_time"]))  # the one-time password, in letters and digits
    for page, text in day.texts.items():
        assert english_words(text, allowed) == [], (page, english_words(text, allowed))
    pages = {"login", "admin_users", "account", "upload_demands", "demands", "upload_experts", "experts",
             "demand_new", "match", "demand", "expert", "stats", "batch", "audit", "admin_keys", "proposals"}
    assert pages <= set(day.texts)
