"""The staff's pages through FastAPI's TestClient: sign-in and lock-out, the inbox, a demand and its
feedback buttons, pausing an expert, contact details, the audit log; and the refusals: no write
without a signed-in staff member, a forged or cross-site POST refused, bad input answered with a
Chinese message and nothing written. The real-browser flow is in tests/test_page.py."""

from __future__ import annotations

import re
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from matcher.accounts import Accounts
from matcher.batch import BatchOptions, run_batch
from matcher.config import Settings
from matcher.engine import Engine
from matcher.models import Demand

from .conftest import PASSWORD, copy_db, csrf_of, sign_in


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    folder = tmp_path_factory.mktemp("pages")
    engine = Engine(Settings(db=folder / "t.db"), tokenizer=tokenizer)
    assert engine.load_demo()
    engine.ensure_index()
    accounts = Accounts(engine.store, engine.settings)
    accounts.add_user("lihua", PASSWORD, "staff")
    accounts.add_user("admin1", PASSWORD, "admin")
    engine.close()
    return folder / "t.db"


@pytest.fixture()
def app_client(tmp_path: Path, template: Path, tokenizer) -> TestClient:
    db = copy_db(template, tmp_path)
    settings = Settings(db=db, api_keys=("staff-pages-key-9d2e7c41b0a6f3",), login_max_failures=3)
    engine = Engine(settings, tokenizer=tokenizer)
    with TestClient(create_app(settings, engine=engine), base_url="http://testserver") as c:
        c.engine = engine  # type: ignore[attr-defined]
        yield c
    engine.close()


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-expert="([^"]+)"', html)


def audit(client: TestClient) -> list[tuple[str, str]]:
    entries, _ = client.engine.store.list_audit(limit=1000)
    return [(a.actor, a.action) for a in reversed(entries)]


# -- signing in ----------------------------------------------------------------------------------
def test_pages_need_a_signed_in_staff_member(app_client: TestClient) -> None:
    for path in ("/demands", "/demands/Q0001", "/audit"):
        res = app_client.get(path, follow_redirects=False)
        assert res.status_code == 303 and res.headers["location"].startswith("/login?next=%2F"), path
    public = app_client.get("/experts/X0001")
    assert public.status_code == 200 and 'id="expert-history"' not in public.text and "登录" in public.text
    assert 'id="edit-form"' not in public.text and 'id="contact-link"' not in public.text


def test_sign_in_sets_an_httponly_samesite_cookie_and_goes_back(app_client: TestClient) -> None:
    res = sign_in(app_client, next_="/demands/Q0002")
    assert res.status_code == 303 and res.headers["location"] == "/demands/Q0002"
    cookie = res.headers["set-cookie"]
    assert cookie.startswith("jq_session=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Max-Age=43200" in cookie and "Secure" not in cookie
    page = app_client.get("/demands/Q0002")
    assert page.status_code == 200 and "lihua（工作人员）" in page.text
    assert audit(app_client)[-1] == ("staff:lihua", "login")


def test_a_secure_cookie_when_configured(tmp_path: Path, template: Path, tokenizer) -> None:
    db = tmp_path / "s.db"
    shutil.copy(template, db)
    settings = Settings(db=db, secure_cookies=True, session_hours=2)
    engine = Engine(settings, tokenizer=tokenizer)
    with TestClient(create_app(settings, engine=engine), base_url="https://testserver") as c:
        cookie = sign_in(c).headers["set-cookie"]
        assert "Secure" in cookie and "Max-Age=7200" in cookie
    engine.close()


def test_only_local_paths_are_followed_after_sign_in(app_client: TestClient) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        app_client.cookies.clear()
        assert sign_in(app_client, next_=target).headers["location"] == "/demands"


def test_wrong_passwords_then_lock_out_shown_in_chinese(app_client: TestClient) -> None:
    for _ in range(2):
        res = sign_in(app_client, password="wrong password")
        assert res.status_code == 401 and "用户名或密码错误" in res.text
    res = sign_in(app_client, password="wrong password")
    assert res.status_code == 429 and "锁定" in res.text
    res = sign_in(app_client)  # the right password, while locked
    assert res.status_code == 429 and "jq_session" not in res.headers.get("set-cookie", "")
    assert app_client.get("/demands", follow_redirects=False).status_code == 303


def test_the_login_form_refuses_a_post_without_its_token(app_client: TestClient) -> None:
    res = app_client.post(
        "/login",
        data={"username": "lihua", "password": PASSWORD, "login_token": "forged"},
        follow_redirects=False,
    )
    assert (
        res.status_code == 403
        and "重新登录" in res.text
        and "jq_session" not in res.headers.get("set-cookie", "")
    )


def test_sign_out_ends_the_session(app_client: TestClient) -> None:
    sign_in(app_client)
    page = app_client.get("/demands")
    res = app_client.post("/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == "/login"
    assert app_client.get("/demands", follow_redirects=False).status_code == 303
    assert audit(app_client)[-1] == ("staff:lihua", "logout")


# -- the inbox and a demand ----------------------------------------------------------------------
def test_the_inbox_page_filters_and_shows_the_top_three(app_client: TestClient) -> None:
    run_batch(app_client.engine, BatchOptions(run_key="n"))
    sign_in(app_client)
    page = app_client.get("/demands", params={"region": "永康", "industry": "保温杯"})
    assert page.status_code == 200
    listed = re.findall(r'<tr data-demand="([^"]+)"', page.text)
    assert listed == ["Q0005", "Q0004", "Q0002", "Q0001"]  # newest first
    top = app_client.engine.store.top_recommended(["Q0005"])["Q0005"]
    block = page.text[page.text.index('data-demand="Q0005"') : page.text.index('data-demand="Q0004"')]
    assert [name for _, name in top] == re.findall(r'<a href="/experts/[^"]+">([^<]+)</a>', block)
    assert (
        "共 4 条需求" in page.text
        and 'id="status-tabs"' in page.text
        and "已推荐 <small>56</small>" in page.text
    )
    second = app_client.get("/demands", params={"page": 2})
    assert len(re.findall(r"<tr data-demand=", second.text)) == 26 and 'id="prev"' in second.text
    bad = app_client.get("/demands", params={"from": "2026-02-30"})
    assert bad.status_code == 422 and "2026-02-30" in bad.text


def test_feedback_buttons_write_and_婉拒_removes_the_expert(app_client: TestClient) -> None:
    sign_in(app_client)
    page = app_client.get("/demands/Q0001")
    assert 'data-source="live"' in page.text and "实时排序" in page.text
    experts = rows(page.text)
    assert len(experts) == 10
    for button in ("已联系", "同意对接", "婉拒", "不合适", "对接成功"):
        assert f">{button}</button>" in page.text
    res = app_client.post(
        "/demands/Q0001/feedback",
        data={
            "csrf_token": csrf_of(page.text),
            "expert_id": experts[0],
            "verdict": "declined",
            "note": "出差三个月",
        },
    )
    assert res.status_code == 200 and res.url.path == "/demands/Q0001"
    assert experts[0] not in rows(res.text) and "婉拒。该专家不会再被推荐给这条需求" in res.text
    assert 'id="excluded"' in res.text and "出差三个月" in res.text
    res = app_client.post(
        "/demands/Q0001/feedback",
        data={"csrf_token": csrf_of(page.text), "expert_id": experts[1], "verdict": "contacted"},
    )
    assert "已联系" in res.text and experts[1] in rows(res.text)
    assert app_client.engine.store.get_demand("Q0001").status == "contacted"
    assert [a for _, a in audit(app_client)][-2:] == ["feedback.add", "feedback.add"]


def test_bad_feedback_is_refused_in_chinese_and_nothing_is_written(app_client: TestClient) -> None:
    sign_in(app_client)
    page = app_client.get("/demands/Q0001")
    token = csrf_of(page.text)
    before = len(audit(app_client))
    res = app_client.post(
        "/demands/Q0001/feedback", data={"csrf_token": token, "expert_id": "X0001", "verdict": "liked"}
    )
    assert res.status_code == 422 and "liked" in res.text and 'id="error"' in res.text
    res = app_client.post(
        "/demands/Q0001/feedback",
        data={"csrf_token": token, "expert_id": "X0001", "verdict": "declined", "note": "长" * 2001},
    )
    assert res.status_code == 422 and "note" in res.text
    res = app_client.post(
        "/demands/Q0001/feedback", data={"csrf_token": token, "expert_id": "X9999", "verdict": "declined"}
    )
    assert res.status_code == 404 and "X9999" in res.text
    res = app_client.post("/demands/Q0001/status", data={"csrf_token": token, "status": "完成"})
    assert res.status_code == 422 and "已关闭" in res.text
    assert app_client.engine.store.feedback_entries() == [] and len(audit(app_client)) == before


def test_the_status_form_changes_the_status(app_client: TestClient) -> None:
    sign_in(app_client)
    page = app_client.get("/demands/Q0006")
    res = app_client.post(
        "/demands/Q0006/status", data={"csrf_token": csrf_of(page.text), "status": "closed"}
    )
    assert res.status_code == 200 and "状态已改为「已关闭」" in res.text
    assert app_client.engine.store.get_demand("Q0006").status == "closed"


def test_stored_recommendations_are_marked_with_their_run(app_client: TestClient) -> None:
    run_batch(app_client.engine, BatchOptions(run_key="2026-11-20"))
    sign_in(app_client)
    page = app_client.get("/demands/Q0001")
    assert 'data-source="batch"' in page.text and "批处理 2026-11-20 的推荐" in page.text
    stored = [m.expert_id for m in app_client.engine.store.list_batch_matches(demand_id="Q0001")]
    assert rows(page.text) == stored


# -- refusals: no session, no token, another site ------------------------------------------------
def test_no_write_without_a_signed_in_staff_member(app_client: TestClient) -> None:
    res = app_client.post(
        "/demands/Q0001/feedback", data={"expert_id": "X0001", "verdict": "declined"}, follow_redirects=False
    )
    assert res.status_code == 303 and res.headers["location"] == "/login?next=%2Fdemands%2FQ0001"
    # An API key does not sign anyone in on the pages.
    res = app_client.post(
        "/demands/Q0001/status", data={"status": "closed"}, headers={"X-API-Key": "k"}, follow_redirects=False
    )
    assert res.status_code == 303
    assert app_client.engine.store.feedback_entries() == []
    assert app_client.engine.store.get_demand("Q0001").status == "new"


@pytest.mark.parametrize(
    ("token", "headers"),
    [
        (None, {}),  # a forged form carries no token
        ("a-guess", {}),
        ("OWN", {"Origin": "http://evil.example"}),  # the right token, sent from another site
        ("OWN", {"Sec-Fetch-Site": "cross-site"}),
        ("OWN", {"Sec-Fetch-Site": "same-site"}),  # a sibling port of this host
    ],
)
def test_a_forged_or_cross_site_post_is_refused(
    app_client: TestClient, token: str | None, headers: dict[str, str]
) -> None:
    sign_in(app_client)
    own = csrf_of(app_client.get("/demands/Q0001").text)
    data = {"expert_id": "X0001", "verdict": "declined"}
    if token is not None:
        data["csrf_token"] = own if token == "OWN" else token
    before = len(audit(app_client))
    res = app_client.post("/demands/Q0001/feedback", data=data, headers=headers, follow_redirects=False)
    assert res.status_code == 403 and "请求被拒绝" in res.text
    assert app_client.engine.store.feedback_entries() == [] and len(audit(app_client)) == before


@pytest.mark.parametrize("origin", ["http://testserver", "null"])  # null: what no-referrer pages send
def test_a_same_origin_post_with_its_token_passes(app_client: TestClient, origin: str) -> None:
    sign_in(app_client)
    own = csrf_of(app_client.get("/demands/Q0001").text)
    before = len(audit(app_client))
    res = app_client.post(
        "/demands/Q0001/feedback",
        data={"csrf_token": own, "expert_id": "X0001", "verdict": "contacted"},
        headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
    )
    assert res.status_code == 303 and res.headers["location"].startswith("/demands/Q0001")
    # the verdict was written, by the signed-in staff member, with its audit entry
    [entry] = app_client.engine.store.feedback_entries()
    assert (entry.demand_id, entry.expert_id, entry.verdict, entry.actor) == ("Q0001", "X0001", "contacted",
                                                                           "staff:lihua")
    assert len(audit(app_client)) == before + 1


def test_another_sessions_token_does_not_pass(app_client: TestClient, tmp_path: Path) -> None:
    sign_in(app_client, user="admin1")
    other = csrf_of(app_client.get("/demands").text)
    app_client.cookies.clear()
    sign_in(app_client)
    res = app_client.post(
        "/demands/Q0001/feedback", data={"csrf_token": other, "expert_id": "X0001", "verdict": "declined"}
    )
    assert res.status_code == 403 and app_client.engine.store.feedback_entries() == []


# -- experts: pause, history, contact details ----------------------------------------------------
def test_pausing_from_the_expert_page(app_client: TestClient) -> None:
    sign_in(app_client)
    page = app_client.get("/experts/X0001")
    assert 'id="expert-history"' in page.text and 'id="n-recommended">0<' in page.text
    until = (date.today() + timedelta(days=7)).isoformat()
    res = app_client.post(
        "/experts/X0001/pause", data={"csrf_token": csrf_of(page.text), "until": until, "reason": "出国访学"}
    )
    assert (
        res.status_code == 200 and f"暂停推荐至 {until}（出国访学）" in res.text and "已暂停推荐" in res.text
    )
    assert app_client.engine.store.get_pause("X0001").until == until
    demand = app_client.get("/demands/Q0001")
    assert f"暂停推荐至 {until}" in demand.text  # flagged in the live list
    past = (date.today() - timedelta(days=1)).isoformat()
    res = app_client.post("/experts/X0002/pause", data={"csrf_token": csrf_of(page.text), "until": past})
    assert (
        res.status_code == 422
        and "今天或以后" in res.text
        and app_client.engine.store.get_pause("X0002") is None
    )
    res = app_client.post("/experts/X0001/resume", data={"csrf_token": csrf_of(page.text)})
    assert (
        res.status_code == 200
        and "已恢复推荐" in res.text
        and app_client.engine.store.get_pause("X0001") is None
    )


def test_the_expert_page_counts_the_history(app_client: TestClient) -> None:
    sign_in(app_client)
    token = csrf_of(app_client.get("/demands/Q0001").text)
    for demand, verdict in (("Q0001", "contacted"), ("Q0002", "contacted"), ("Q0002", "succeeded")):
        app_client.post(
            f"/demands/{demand}/feedback",
            data={"csrf_token": token, "expert_id": "X0004", "verdict": verdict},
        )
    page = app_client.get("/experts/X0004").text
    assert 'id="n-contacted">2<' in page and 'id="n-succeeded">1<' in page and 'id="n-declined">0<' in page


def test_contact_details_for_staff_and_each_view_audited(app_client: TestClient) -> None:
    """The contact page is a POST from this site with the session's CSRF token: a link from another
    site (a GET, or a POST without the token) cannot record a view in the staff member's name."""
    sign_in(app_client)
    expert = app_client.engine.store.get_expert("X0003")
    token = csrf_of(app_client.get("/demands/Q0002").text)
    assert expert.contact.phone not in app_client.get("/demands/Q0002").text  # not without the click
    refused = [
        app_client.get("/experts/X0003/contact", params={"demand": "Q0002"}, follow_redirects=False),
        app_client.post("/experts/X0003/contact", data={"demand": "Q0002"}),  # no token
        app_client.post("/experts/X0003/contact", data={"csrf_token": token, "demand": "Q0002"},
                        headers={"Sec-Fetch-Site": "cross-site"}),
    ]
    assert refused[0].status_code == 303 and refused[0].headers["location"] == "/experts/X0003"
    assert [r.status_code for r in refused[1:]] == [403, 403]
    assert all(expert.contact.phone not in r.text for r in refused)
    assert app_client.engine.store.list_audit(action="contact.view")[1] == 0, "nothing recorded"
    res = app_client.post("/experts/X0003/contact", data={"csrf_token": token, "demand": "Q0002"})
    assert res.status_code == 200 and expert.contact.phone in res.text and expert.contact.email in res.text
    assert "个人信息保护法" in res.text and res.headers["cache-control"] == "no-store"
    app_client.post("/experts/X0003/contact", data={"csrf_token": token})
    entries, _ = app_client.engine.store.list_audit(action="contact.view")
    assert [(e.actor, e.target, e.detail["where"]) for e in reversed(entries)] == [
        ("staff:lihua", "expert:X0003", "demand Q0002"),
        ("staff:lihua", "expert:X0003", "expert page"),
    ]


def test_the_audit_page_is_for_admins(app_client: TestClient) -> None:
    sign_in(app_client)
    assert app_client.get("/audit").status_code == 403
    app_client.cookies.clear()
    sign_in(app_client, user="admin1")
    page = app_client.get("/audit", params={"user": "lihua"})
    table = page.text.split('id="audit"')[1]
    assert page.status_code == 200 and "<td>lihua</td>" in table and "<td>admin1</td>" not in table
    assert 'data-action="login"' in table and "<td>登录</td>" in table


def test_user_strings_are_escaped_on_the_staff_pages(app_client: TestClient) -> None:
    hostile = Demand.from_dict(
        {
            "id": "D-xss",
            "title": "<script>alert(1)</script>保温杯激光焊接",
            "enterprise": '<img src=x onerror="alert(2)">',
            "region": "<b>永康</b>",
        }
    )
    app_client.engine.add_demands([hostile])
    sign_in(app_client)
    for path in ("/demands", "/demands/D-xss"):
        html = app_client.get(path).text
        assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert '<img src=x onerror="alert(2)">' not in html
