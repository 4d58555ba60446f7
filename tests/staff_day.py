"""One staff day in the browser (issue 23), played against a real `matcher serve` by Playwright in
Debian's Chromium: the only commands are the first administrator (`matcher users add`) and the
server; everything after is done on the pages.

    admin signs in, adds a staff member (a one-time password, shown once)
    staff signs in with it, sets their own password
    staff uploads a demands workbook with one bad row: sees the row error, imports the rest
    staff uploads an experts workbook: sees one merge, imports it
    staff creates a demand by the form
    staff pastes another on the match page, excludes one term, saves it to the inbox
    staff opens it from the inbox, marks one expert 不合适 (renumbered, not ticked anywhere)
    staff records an outcome, downloads the annual report for the period
    admin runs the batch from the page and sees its summary, then reads the audit log

`play(...)` returns what it saw (every page's text, the report, the audit rows) for the test to
check; `docs/screenshots.py` plays the same day and keeps one screenshot per page.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl

ADMIN, ADMIN_PASSWORD = "zhangwei", "金华市科协-管理员-2026"
STAFF, STAFF_PASSWORD = "wangfang", "永康科协-王芳-2026!"
PASTED = ("我司生产不锈钢保温杯，真空层激光焊接合格率低，焊缝常有气孔，外观也不好看，"
          "寻求焊接工艺改进方案和在线检测办法")
EXCLUDED_TERM = "外观"
NEW_DEMAND = {"enterprise": "武义县明达五金工具有限公司", "contact": "陈经理 13905790000",
              "region": "浙江省金华市武义县", "industry": "五金工具", "title": "电动工具齿轮箱噪音大",
              "keywords": "齿轮、降噪",
              "description": ("我公司生产角磨机，齿轮箱运转噪音超过 85 分贝，客户投诉多，"
                              "希望有专家帮助分析齿形和润滑，降低噪音。"),
              "deadline": "2027-03-31"}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--lang=zh-CN"]


def workbook(header: list[str], rows: list[list[object]]) -> bytes:
    wb = openpyxl.Workbook()
    wb.active.append(header)
    for r in rows:
        wb.active.append(r)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def demands_workbook() -> bytes:
    """Three demands of a county's month; the second is dated a day that does not exist."""
    header = ["需求编号", "企业名称", "需求名称", "需求描述", "所在地区", "所属行业", "提交日期", "联系人"]
    return workbook(header, [
        ["WY2026-001", "武义县恒泰保温容器有限公司", "保温杯抽真空效率低",
         "真空排气台效率低，一天只能排两千只，想提高排气效率和真空度",
         "浙江省金华市武义县", "保温杯", "2026-12-01", "李厂长 13700000001"],
        ["WY2026-002", "武义县宏达电机有限公司", "电机温升过高", "小型电机满载温升超标，想优化散热结构",
         "浙江省金华市武义县", "电机", "2026-11-31", "周工 13700000002"],
        ["WY2026-003", "武义县绿源茶业有限公司", "茶叶杀青色泽不稳定",
         "滚筒杀青机温度波动大，茶叶色泽不一，想做温度闭环控制",
         "浙江省金华市武义县", "茶叶加工", "2026-12-02", "吴经理 13700000003"],
    ])


def experts_workbook(name: str, institution: str) -> bytes:
    """This year's list from a university: one expert the library holds already, one new."""
    return workbook(["姓名", "工作单位", "职称", "研究方向", "联系电话"], [
        [name, institution, "教授", "真空排气工艺、保温容器真空度检测", "13800001111"],
        ["钱柔", "浙江师范大学工学院", "副教授", "茶叶加工装备、温度闭环控制、PLC控制", "13800002222"],
    ])


@dataclass
class Day:
    """What the day saw: each page's visible text (by screenshot name), and the facts to check."""

    url: str
    texts: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


def first_admin(db: Path) -> None:
    """The one command besides the server: the first administrator."""
    command = [sys.executable, "-m", "matcher", "users", "add", ADMIN, "--role", "admin", "--password-stdin",
               "--db", str(db)]
    subprocess.run(command, input=ADMIN_PASSWORD + "\n", text=True, check=True, capture_output=True)


#: an owner's demand of three problems (the team page names each as an aspect)
THREE_PROBLEMS = "锂电池包在高温下容易过热，齿轮箱噪声大寿命短，还想上MES"


def new_page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai", accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    return page


def play(browser: Any, url: str, workdir: Path, *, shot: Callable[[Any, str], None] | None = None,
         batch_timeout: float = 900) -> Day:
    """Play the day against the server at `url`; `shot(page, name)` is called on every page."""
    day = Day(url)
    page = new_page(browser)
    page.on("pageerror", lambda exc: day.problems.append(f"page error: {exc}"))
    page.on("console", lambda m: day.problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("response", lambda r: day.problems.append(f"{r.status} {r.request.method} {r.url}")
            if r.status >= 400 else None)

    def seen(name: str) -> None:
        page.wait_for_load_state("load")
        day.texts[name] = page.inner_text("body")
        if shot is not None:
            shot(page, name)

    def sign_in(user: str, password: str) -> None:
        page.goto(url + "/login")
        page.fill("#username", user)
        page.fill("#password", password)
        page.click("#login-button")
        page.wait_for_load_state("load")

    def sign_out() -> None:
        page.click("#logout")
        page.wait_for_url(re.compile(r".*/login.*"))

    # -- the administrator adds a staff member ------------------------------------------------
    page.goto(url + "/login")
    seen("login")
    sign_in(ADMIN, ADMIN_PASSWORD)
    page.goto(url + "/admin/users")
    page.fill("#new-username", STAFF)
    page.select_option("#new-role", "staff")
    page.click("#add-user-button")
    one_time = page.locator("#one-time-password").inner_text().strip()
    day.facts["one_time"] = one_time
    seen("admin_users")
    page.goto(url + "/admin/users")  # shown once: not on the page again
    day.facts["one_time_shown_again"] = one_time in page.content()
    sign_out()

    # -- staff: the first sign-in sets their own password -------------------------------------
    sign_in(STAFF, one_time)
    page.wait_for_url(re.compile(r".*/account.*"))
    seen("account")
    page.fill("#current", one_time)
    page.fill("#new", STAFF_PASSWORD)
    page.fill("#again", STAFF_PASSWORD)
    page.click("#change-password")
    page.wait_for_url(re.compile(r".*/demands.*"))

    # -- a demands workbook with one bad row --------------------------------------------------
    upload = workdir / "武义县12月需求.xlsx"
    upload.write_bytes(demands_workbook())
    page.set_input_files("#demands-file", str(upload))
    page.click("#demands-upload-button")
    page.wait_for_selector("#row-errors")
    day.facts["demand_row_errors"] = page.locator("#row-errors tbody tr").all_inner_texts()
    day.facts["demand_preview"] = page.locator("#preview tbody tr").all_inner_texts()
    seen("upload_demands")
    page.click("#confirm-import")
    page.wait_for_url(re.compile(r".*/demands\?done=imported.*"))
    day.facts["demands_flash"] = page.locator("#flash").inner_text()
    seen("demands")

    # -- an experts workbook with one merge ---------------------------------------------------
    page.goto(url + "/experts")
    first = page.locator("#experts tbody tr").first
    name = first.locator("td.name a").inner_text()
    institution = first.locator("td").nth(2).inner_text()
    day.facts["merged_expert"] = (first.get_attribute("data-expert"), name)
    upload = workdir / "浙师大专家2026.xlsx"
    upload.write_bytes(experts_workbook(name, institution))
    page.set_input_files("#experts-file", str(upload))
    page.click("#experts-upload-button")
    page.wait_for_selector("#preview")
    merges = page.locator("#merges tbody tr")
    day.facts["merges"] = merges.all_inner_texts() if page.locator("#merges").count() else []
    seen("upload_experts")
    page.click("#confirm-import")
    page.wait_for_url(re.compile(r".*/experts\?done=imported.*"))
    seen("experts")

    # -- a demand by the form -----------------------------------------------------------------
    page.goto(url + "/demands")
    page.click("#new-demand")
    page.wait_for_url(url + "/demands/new")
    for key, value in NEW_DEMAND.items():
        page.fill(f"#{key}", value)
    seen("demand_new")
    page.click("#create-button")
    page.wait_for_url(re.compile(r".*/demands/W\d{8}-[0-9a-f]{6}\?done=created.*"))
    day.facts["created_id"] = page.url.split("/demands/")[1].split("?")[0]
    day.facts["created_source"] = page.locator("#source").get_attribute("data-source")

    # -- a pasted demand, one term excluded, saved to the inbox -------------------------------
    page.goto(url + "/")
    page.fill("#demand", PASTED)
    page.click("#match-button")
    page.wait_for_selector('#status[data-state="done"]')
    before = page.locator("#results-table tbody tr").count()
    page.locator(f'#own-terms .chip[data-term="{EXCLUDED_TERM}"] .chip-x').click()
    page.wait_for_selector(f'#own-terms .chip[data-term="{EXCLUDED_TERM}"]', state="detached")
    page.wait_for_selector('#status[data-state="done"]')
    # in rank order: the weak matches are folded into a table of their own below the others, so the
    # page's row order is not the ranking's when a weak match ranks above a medium one
    ranked = page.locator("#results-table tbody tr").evaluate_all(
        "rows => rows.map(r => [Number(r.cells[0].innerText), r.querySelector('td.name a').innerText])")
    day.facts["shown_after_exclusion"] = [name for _, name in sorted(ranked)]
    day.facts["save_edits"] = page.locator("#save-edits").inner_text()
    page.fill("#save-enterprise", "永康市恒创杯业有限公司")
    page.fill("#save-contact", "王经理 13800000000")
    seen("match")
    page.click("#save-button")
    page.wait_for_url(re.compile(r".*/demands/W\d{8}-[0-9a-f]{6}\?done=saved.*"))
    saved_id = page.url.split("/demands/")[1].split("?")[0]
    day.facts["saved_id"], day.facts["shown_before_exclusion"] = saved_id, before

    # -- a demand of three problems, answered by a team -------------------------------------
    page.goto(url + "/")
    page.fill("#demand", THREE_PROBLEMS)
    page.get_by_label("组团推荐").check()
    page.click("#match-button")
    page.wait_for_selector('#status[data-state="done"]')
    day.facts["team_aspects"] = page.locator("#team-results tr.aspect th").all_inner_texts()
    seen("team")

    # -- opened from the inbox; one expert 不合适 ---------------------------------------------
    page.goto(url + "/demands")
    page.locator(f'tr[data-demand="{saved_id}"] a.demand-link').click()
    page.wait_for_url(url + f"/demands/{saved_id}")
    day.facts["saved_source"] = page.locator("#source").get_attribute("data-source")
    rows = page.locator("#recs tbody tr")
    listed = [r.get_attribute("data-expert") for r in rows.all()]
    day.facts["saved_list"] = listed
    unsuitable = listed[0]
    rows.first.locator('input[name="note"]').fill("方向不符：做的是真空钎焊")
    rows.first.get_by_role("button", name="不合适").click()
    page.wait_for_selector("#flash")
    after = page.locator("#recs tbody tr")
    day.facts["unsuitable"] = unsuitable
    day.facts["after_unsuitable"] = [r.get_attribute("data-expert") for r in after.all()]
    day.facts["ranks_after"] = [r.locator("td.num").first.inner_text() for r in after.all()]
    day.facts["outcome_choices"] = page.locator('#outcome-experts input[type="checkbox"]').evaluate_all(
        "boxes => boxes.map(b => [b.value, b.checked])")

    # -- an outcome, then the annual report of the period ------------------------------------
    partner = day.facts["after_unsuitable"][0]
    page.select_option("#outcome-kind", "经济效益")
    page.fill("#outcome-value", "12.5")
    page.check(f'#outcome-experts input[value="{partner}"]')
    page.fill('#outcome-form input[name="note"]', "焊接合格率从 82% 提到 97%")
    page.click('#outcome-form button[type="submit"]')
    page.wait_for_selector('#outcome-list tbody tr')
    day.facts["outcome_date"] = page.locator("#outcome-list tbody tr td").first.inner_text()
    seen("demand")
    page.goto(url + f"/experts/{partner}")
    seen("expert")

    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    page.goto(url + "/stats")
    page.fill("#from", f"{today.year}-01-01")
    page.fill("#to", today.isoformat())
    page.get_by_role("button", name="统计").click()
    page.wait_for_url(re.compile(r".*/stats\?from=.*"))
    seen("stats")
    with page.expect_download() as download:
        page.click("#report-download")
    report = workdir / "年度报告.xlsx"
    download.value.save_as(report)
    day.facts["report"] = report
    day.facts["report_name"] = download.value.suggested_filename
    sign_out()

    # -- the administrator runs the batch, then reads the audit log ---------------------------
    sign_in(ADMIN, ADMIN_PASSWORD)
    page.goto(url + "/batch")
    day.facts["waiting"] = page.locator("#batch-waiting").inner_text()
    page.click("#batch-run")
    deadline = time.monotonic() + batch_timeout
    while page.locator("#last-run").count() == 0 or page.locator("#batch-progress").count():
        if time.monotonic() > deadline:
            raise AssertionError("the batch started from the page did not finish: " + page.inner_text("body"))
        time.sleep(2)
        page.goto(url + "/batch")
    day.facts["last_run"] = page.locator("#last-run").inner_text()
    seen("batch")
    page.goto(url + "/audit")
    day.facts["audit"] = page.locator("#audit tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.action, ...[...r.cells].map(c => c.innerText)])")
    day.facts["audit_header"] = page.locator("#audit thead").inner_text()
    seen("audit")
    page.goto(url + "/admin/keys")
    seen("admin_keys")
    page.goto(url + "/admin/proposals")  # what the day's verdicts taught (one 不合适 teaches nothing yet)
    day.facts["proposals_heading"] = page.locator("h1").first.inner_text()
    seen("proposals")
    page.context.close()
    return day
