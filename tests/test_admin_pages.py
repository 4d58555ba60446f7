"""Accounts, the audit log, the batch and the downloads on the pages (issue 23), through FastAPI's
TestClient on a real SQLite file; the batch started from the page runs as a real process."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import openpyxl
import pytest
from fastapi.testclient import TestClient

from api import create_app
from matcher.accounts import Accounts
from matcher.auditlog import ACTIONS, describe
from matcher.batch import BatchOptions, is_running, run_batch
from matcher.config import Settings
from matcher.engine import Engine
from matcher.io import read_demands
from matcher.report import annual_report
from matcher.stats import compute
from matcher.workflow import Workflow

from .conftest import (
    PASSWORD,
    THERMOS,
    copy_db,
    csrf_of,
    data_words,
    demo_template,
    english_words,
    sign_in,
    visible_text,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    db = demo_template(tmp_path_factory.mktemp("admin"), tokenizer)
    engine = Engine(Settings(db=db), tokenizer=tokenizer)
    accounts = Accounts(engine.store, engine.settings)
    accounts.add_user("lihua", PASSWORD, "staff")
    accounts.add_user("admin1", PASSWORD, "admin")
    engine.close()
    return db


@pytest.fixture()
def app_client(tmp_path: Path, template: Path, tokenizer) -> TestClient:
    settings = Settings(db=copy_db(template, tmp_path), api_keys=("admin-pages-key-5e8b1c0d9f2a4736",))
    engine = Engine(settings, tokenizer=tokenizer)
    with TestClient(create_app(settings, engine=engine), base_url="http://testserver") as c:
        c.engine = engine  # type: ignore[attr-defined]
        yield c
    engine.close()


# -- accounts ---------------------------------------------------------------------------------------
def test_an_admin_adds_a_user_whose_one_time_password_is_shown_once_and_must_be_changed(
        app_client: TestClient) -> None:
    sign_in(app_client, user="admin1")
    csrf = csrf_of(app_client.get("/admin/users").text)
    res = app_client.post("/admin/users", data={"csrf_token": csrf, "username": "wangfang", "role": "staff"})
    assert res.status_code == 201 and res.headers["cache-control"] == "no-store"
    password = re.search(r'id="one-time-password">([^<]+)<', res.text).group(1)
    assert len(password) == 16 and password not in app_client.get("/admin/users").text  # shown once
    user = app_client.engine.store.get_user("wangfang")
    assert user.role == "staff" and user.must_change and password not in user.password_hash
    app_client.cookies.clear()
    first = sign_in(app_client, "wangfang", password)
    assert first.status_code == 303 and first.headers["location"] == "/account?first=1"
    page = app_client.get("/account?first=1").text
    assert "一次性密码" in page
    csrf = csrf_of(page)
    bad = app_client.post("/account", data={"csrf_token": csrf, "current": password, "new": "short",
                                            "again": "short"})
    assert bad.status_code == 422 and "密码至少 10 个字符" in bad.text
    ok = app_client.post(
        "/account",
        data={
            "csrf_token": csrf,
            "current": password,
            "new": "永康科协-新密码-2026",
            "again": "永康科协-新密码-2026",
        },
        follow_redirects=False,
    )
    assert ok.status_code == 303 and not app_client.engine.store.get_user("wangfang").must_change
    assert "密码已修改" in app_client.get(ok.headers["location"]).text  # this session stays signed in
    app_client.cookies.clear()
    assert sign_in(app_client, "wangfang", password).status_code == 401
    assert sign_in(app_client, "wangfang", "永康科协-新密码-2026").headers["location"] == "/demands"


def test_an_admin_disables_enables_unlocks_and_resets_an_account(app_client: TestClient) -> None:
    store = app_client.engine.store
    for _ in range(5):
        sign_in(app_client, "lihua", "wrong-password-xx")
    assert store.get_user("lihua").locked_until
    sign_in(app_client, user="admin1")
    page = app_client.get("/admin/users").text
    assert "锁定至" in page.split('data-user="lihua"')[1].split("</tr>")[0]
    csrf = csrf_of(page)
    assert "已解锁" in app_client.post("/admin/users/lihua/unlock", data={"csrf_token": csrf}).text
    assert store.get_user("lihua").locked_until is None
    app_client.post("/admin/users/lihua/disable", data={"csrf_token": csrf})
    assert store.get_user("lihua").disabled
    refused = app_client.post("/admin/users/admin1/disable", data={"csrf_token": csrf})
    assert refused.status_code == 422 and "不能停用自己的账号" in refused.text
    app_client.post("/admin/users/lihua/enable", data={"csrf_token": csrf})
    res = app_client.post("/admin/users/lihua/reset", data={"csrf_token": csrf})
    one_time = re.search(r'id="one-time-password">([^<]+)<', res.text).group(1)
    assert store.get_user("lihua").must_change
    actions = [a.action for a in reversed(store.list_audit(actor="admin1", limit=100)[0])]
    assert actions[-4:] == ["user.unlock", "user.disable", "user.enable", "user.reset"]
    app_client.cookies.clear()
    assert sign_in(app_client, "lihua", PASSWORD).status_code == 401  # the old password no longer works
    assert sign_in(app_client, "lihua", one_time).headers["location"] == "/account?first=1"


def test_account_pages_are_for_admins_and_the_last_admin_stays(app_client: TestClient) -> None:
    sign_in(app_client)
    assert app_client.get("/admin/users").status_code == 403
    csrf = csrf_of(app_client.get("/demands").text)
    res = app_client.post("/admin/users", data={"csrf_token": csrf, "username": "x1", "role": "admin"})
    assert res.status_code == 403 and app_client.engine.store.get_user("x1") is None
    accounts = Accounts(app_client.engine.store, app_client.engine.settings)
    with pytest.raises(Exception, match="唯一的管理员"):
        accounts.set_disabled("admin1", True, actor="cli:root")


def test_the_login_page_names_no_command(app_client: TestClient) -> None:
    page = app_client.get("/login").text
    assert "请联系管理员" in page and "matcher" not in visible_text(page)


# -- the audit log in Chinese ---------------------------------------------------------------------
def test_every_audit_entry_is_a_chinese_sentence_with_local_time(app_client: TestClient) -> None:
    engine = app_client.engine
    sign_in(app_client, "lihua", "wrong-password-xx")
    sign_in(app_client)
    csrf = csrf_of(app_client.get("/demands/Q0001").text)
    app_client.post("/demands/Q0001/feedback", data={"csrf_token": csrf, "expert_id": "X0003",
                                                     "verdict": "unsuitable", "note": "方向不符"})
    app_client.post("/demands/Q0001/outcomes", data={"csrf_token": csrf, "kind": "合作意向", "value": "1",
                                                     "date": "2026-12-01", "expert_ids": "X0004"})
    app_client.post(
        "/demands/save", data={"csrf_token": csrf, "text": THERMOS, "exclude_terms": '["保温杯"]'}
    )
    app_client.post("/experts/X0002/contact", data={"csrf_token": csrf, "demand": "Q0001"})
    app_client.cookies.clear()
    sign_in(app_client, user="admin1")
    page = app_client.get("/audit").text
    rows = re.findall(
        r'<tr data-action="([^"]+)"><td class="num">([^<]+)</td><td>([^<]*)</td><td>([^<]*)</td>'
        r'<td class="sentence">([^<]*)</td>',
        page,
    )
    codes = [r[0] for r in rows]
    assert {"login.failed", "login", "feedback.add", "outcome.add", "demand.save", "contact.view"} <= set(
        codes
    )
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", r[1]) for r in rows)
    assert "时间（北京时间）" in page
    x3 = engine.get_expert("X0003").name
    said = dict(zip(codes, (r[4] for r in rows), strict=False))
    assert said["feedback.add"] == f"需求 Q0001：{x3}（X0003） 记为「不合适」（备注：方向不符）"
    assert said["login.failed"] == "登录失败（连续第 1 次）"
    assert "排除的词：「保温杯」" in said["demand.save"]
    assert all(label == ACTIONS[code] for code, _, _, label, _ in rows)
    allowed = data_words(engine) | {"lihua", "admin1", "testclient"}  # the data, user names, the address
    assert english_words(visible_text(page.split('id="audit"')[1]), allowed) == []
    # the code stays the filter's value
    only = app_client.get("/audit", params={"action": "feedback.add"}).text
    assert set(re.findall(r'<tr data-action="([^"]+)"', only)) == {"feedback.add"}


def test_every_action_the_code_writes_has_a_sentence() -> None:
    root = Path(__file__).resolve().parents[1]
    written = set()
    for path in [*root.glob("matcher/**/*.py"), *root.glob("api/**/*.py")]:
        text = path.read_text(encoding="utf-8")
        written |= set(re.findall(r'(?:audit|record)\([^,()]+, (?:f?)"([a-z_]+(?:\.[a-z_]+)?)"', text))
        written |= set(re.findall(r'"(import)\.\{staged\.kind\}"', text)) and {
            "import.demands",
            "import.experts",
        }
    written.discard("import")
    assert written and written <= set(ACTIONS), sorted(written - set(ACTIONS))


# -- the batch on the page ------------------------------------------------------------------------
def test_an_admin_runs_the_batch_from_the_page_and_sees_its_summary(app_client: TestClient) -> None:
    engine = app_client.engine
    sign_in(app_client, user="admin1")
    page = app_client.get("/batch").text
    assert "还没有完成过批处理" in page and "56</strong> 条新需求" in page
    csrf = csrf_of(page)
    res = app_client.post("/batch/run", data={"csrf_token": csrf}, follow_redirects=False)
    assert res.status_code == 303
    deadline = time.monotonic() + 600
    while True:
        page = app_client.get("/batch").text
        if 'id="last-run"' in page and not is_running(engine.store.path):
            break
        assert time.monotonic() < deadline, Path(f"{engine.store.path}.batch.log").read_text()
        time.sleep(1)
    run = max(engine.store.list_batch_runs(), key=lambda r: r.id)
    assert run.status == "done" and "手动" in run.run_key and run.demands == 56
    last = visible_text(page.split('id="last-run"')[1].split("</dl>")[0])
    assert f"{run.demands} 条，其中 {run.matched} 条得到推荐" in last and f"{run.recommendations} 条" in last
    assert engine.store.list_audit(action="batch.start")[0][0].detail["run_key"] == run.run_key
    report = app_client.get(f"/batch/runs/{run.run_key}/report.xlsx")
    wb = openpyxl.load_workbook(io.BytesIO(report.content))
    assert wb.sheetnames == ["推荐", "排除与未满额", "运行"] and wb["推荐"].max_row == run.recommendations + 1


def test_staff_cannot_run_the_batch_and_a_second_run_is_refused_while_one_holds_the_lock(
        app_client: TestClient) -> None:
    from matcher.batch import exclusive

    sign_in(app_client)
    page = app_client.get("/batch").text
    assert 'id="batch-run"' not in page and "只有管理员可以立即运行批处理" in page
    assert app_client.post("/batch/run", data={"csrf_token": csrf_of(page)}).status_code == 403
    app_client.cookies.clear()
    sign_in(app_client, user="admin1")
    csrf = csrf_of(app_client.get("/batch").text)
    with exclusive(app_client.engine.store.path):  # a batch (the nightly one) holds the lock
        page = app_client.get("/batch").text
        assert "正在运行" in page and 'http-equiv="refresh"' in page
        res = app_client.post("/batch/run", data={"csrf_token": csrf})
        assert res.status_code == 503 and "批处理正在运行" in res.text
    assert app_client.engine.store.list_audit(action="batch.start")[1] == 0


# -- downloads --------------------------------------------------------------------------------------
def test_the_inbox_download_reimports_to_the_same_demands(app_client: TestClient, tmp_path: Path) -> None:
    sign_in(app_client)
    res = app_client.get("/demands.xlsx", params={"region": "永康"})
    assert res.status_code == 200 and "filename*=UTF-8''" in res.headers["content-disposition"]
    (tmp_path / "d.xlsx").write_bytes(res.content)
    wanted = Workflow(app_client.engine).demands(region="永康")
    assert read_demands(tmp_path / "d.xlsx") == wanted and len(wanted) >= 4
    entry = app_client.engine.store.list_audit(action="export.download")[0][0]
    assert entry.detail == {"what": "需求", "rows": len(wanted)}


def test_the_report_download_is_the_workbook_of_matcher_report(
    app_client: TestClient, tmp_path: Path
) -> None:
    engine = app_client.engine
    run_batch(engine, BatchOptions(run_key="r1"))
    Workflow(engine).record_outcome(
        "staff:lihua", "Q0001", ["X0004"], "经济效益", 12.5, "2026-11-20", "节能改造"
    )
    sign_in(app_client)
    stats_page = app_client.get("/stats", params={"from": "2026-11-01", "to": "2026-11-30"}).text
    assert 'href="/stats/report.xlsx?from=2026-11-01&amp;to=2026-11-30"' in stats_page
    assert "matcher report" not in stats_page
    res = app_client.get("/stats/report.xlsx", params={"from": "2026-11-01", "to": "2026-11-30"})
    got = openpyxl.load_workbook(io.BytesIO(res.content))
    from datetime import date

    annual_report(engine, date(2026, 11, 1), date(2026, 11, 30), tmp_path / "cli.xlsx")
    want = openpyxl.load_workbook(tmp_path / "cli.xlsx")
    assert got.sheetnames == want.sheetnames
    for name in want.sheetnames:
        assert list(got[name].iter_rows(values_only=True)) == list(want[name].iter_rows(values_only=True)), (
            name
        )
    outcomes = list(got["成果明细"].iter_rows(values_only=True))
    assert any("节能改造" in [str(c) for c in row] for row in outcomes)
    assert compute(engine, date(2026, 11, 1), date(2026, 11, 30)).outcomes["经济效益"] == 12.5


def test_the_audit_download_holds_the_sentences(app_client: TestClient) -> None:
    sign_in(app_client, user="admin1")
    res = app_client.get("/audit.xlsx")
    ws = openpyxl.load_workbook(io.BytesIO(res.content)).active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][:4] == ("时间（北京时间）", "操作者", "操作", "内容")
    entries, _ = app_client.engine.store.list_audit(limit=100)
    assert entries[0].action == "export.download"  # the download itself, recorded after it was read
    names = {e.id: e.name for e in app_client.engine.get_experts({"X0001"})}
    assert [r[3] for r in rows[1:]] == [describe(e, names) for e in entries[1:]]
    assert [r[5] for r in rows[1:]] == [e.action for e in entries[1:]]
    app_client.cookies.clear()
    sign_in(app_client)
    assert app_client.get("/audit.xlsx").status_code == 403


def test_the_experts_download_has_no_contact_details(app_client: TestClient) -> None:
    sign_in(app_client)
    ws = openpyxl.load_workbook(io.BytesIO(app_client.get("/experts.xlsx").content)).active
    header = [c.value for c in ws[1]]
    assert "联系电话" not in header and "邮箱" not in header
    assert ws.max_row == app_client.engine.count_experts() + 1
