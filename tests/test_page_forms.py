"""Every form and upload of the staff's pages, found by walking the routes: each refuses a write with
no session, with no or a wrong CSRF token and from another site (and writes nothing, byte for byte);
each takes its happy path with the right token; and each, fuzzed with hypothesis (any text, any
length, odd numbers and ids), answers with a page, never a server error, and a refusal says why in
Chinese and changes nothing."""

from __future__ import annotations

import hashlib
import importlib
import io
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import openpyxl
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import create_app
from matcher.accounts import Accounts
from matcher.apikeys import ApiKeys
from matcher.batch import is_running
from matcher.config import Settings
from matcher.engine import Engine
from matcher.intake import Intake
from matcher.workflow import Workflow

from .conftest import PASSWORD, THERMOS, copy_db, csrf_of, demo_template, english_words, sign_in, visible_text

ROOT = Path(__file__).resolve().parents[1]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def page_post_routes() -> list[str]:
    """Every POST route of the pages (the routers that stay out of the API's schema)."""
    paths = []
    for file in sorted((ROOT / "api" / "routes").glob("*.py")):
        module = importlib.import_module(f"api.routes.{file.stem}")
        router = getattr(module, "router", None)
        for r in getattr(router, "routes", ()):
            if isinstance(r, APIRoute) and "POST" in r.methods and not r.include_in_schema:
                paths.append(r.path)
    return paths


def workbook(header: list[str], rows: list[list[object]]) -> bytes:
    wb = openpyxl.Workbook()
    wb.active.append(header)
    for r in rows:
        wb.active.append(r)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


DEMANDS_XLSX = workbook(
    ["需求编号", "企业名称", "需求名称", "需求描述"], [["F1", "甲公司", "焊接", "焊缝气孔"]]
)
EXPERTS_XLSX = workbook(["姓名", "工作单位", "研究方向"], [["钱新", "宁波大学", "机器人抓取"]])


class World:
    """A demo database with what every form needs: a staged upload, a merge, an outcome, a key."""

    def __init__(self, client: TestClient) -> None:
        engine: Engine = client.engine  # type: ignore[attr-defined]
        intake = Intake(engine)
        self.token = intake.stage("demands", "需求.xlsx", DEMANDS_XLSX).token
        x1 = engine.get_expert("X0001")
        dup = workbook(["姓名", "工作单位", "研究方向"], [[x1.name, x1.institution, "超快激光"]])
        merged = intake.stage("experts", "专家.xlsx", dup).token
        intake.confirm("cli:test", merged)
        self.merge_id = engine.merges()[-1].id
        self.outcome_id = Workflow(engine).record_outcome("cli:test", "Q0001", ["X0001"], "合作意向", 1,
                                                          "2026-12-01").id
        key, _ = ApiKeys(engine.store, engine.settings).add("省平台", "read", actor="cli:test")
        self.key_id = key.id
        Workflow(engine).pause("cli:test", "X0003", "2099-12-31", "出国访学")  # for 恢复推荐


# Each page POST with a body that succeeds (the happy path); `{…}` in a path is filled from World.
FORMS: dict[str, Callable[[World], tuple[str, dict[str, Any], dict[str, Any] | None]]] = {
    "/demands/new": lambda w: ("/demands/new", {"title": "焊缝气孔", "description": THERMOS}, None),
    "/demands/save": lambda w: ("/demands/save", {"text": THERMOS, "exclude_terms": '["保温杯"]'}, None),
    "/demands/upload": lambda w: ("/demands/upload", {}, {"file": ("需求.xlsx", DEMANDS_XLSX, XLSX)}),
    "/experts/upload": lambda w: ("/experts/upload", {}, {"file": ("专家.xlsx", EXPERTS_XLSX, XLSX)}),
    "/uploads/{token}/confirm": lambda w: (f"/uploads/{w.token}/confirm", {}, None),
    "/uploads/{token}/discard": lambda w: (f"/uploads/{w.token}/discard", {}, None),
    "/merges/{merge_id}/undo": lambda w: (f"/merges/{w.merge_id}/undo", {}, None),
    "/experts/{expert_id}/edit": lambda w: ("/experts/X0002/edit", {"name": "新名字", "title": "教授"}, None),
    "/experts/{expert_id}/documents": lambda w: (
        "/experts/X0002/documents",
        {"kind": "paper", "title": "新论文"},
        None,
    ),
    "/logout": lambda w: ("/logout", {}, None),
    "/demands/{demand_id}/feedback": lambda w: (
        "/demands/Q0001/feedback",
        {"expert_id": "X0002", "verdict": "contacted"},
        None,
    ),
    "/demands/{demand_id}/status": lambda w: ("/demands/Q0001/status", {"status": "closed"}, None),
    "/experts/{expert_id}/contact": lambda w: ("/experts/X0001/contact", {"demand": "Q0001"}, None),
    "/experts/{expert_id}/pause": lambda w: ("/experts/X0001/pause", {"until": "2099-12-31"}, None),
    "/experts/{expert_id}/resume": lambda w: ("/experts/X0003/resume", {}, None),
    "/demands/{demand_id}/outcomes": lambda w: (
        "/demands/Q0001/outcomes",
        {"kind": "合作意向", "value": "1", "date": "2026-12-01", "expert_ids": "X0001"},
        None,
    ),
    "/outcomes/{outcome_id}/delete": lambda w: (f"/outcomes/{w.outcome_id}/delete", {}, None),
    "/batch/run": lambda w: ("/batch/run", {}, None),
    "/admin/users": lambda w: ("/admin/users", {"username": "zhaoliu", "role": "staff"}, None),
    "/admin/users/{username}/{action}": lambda w: ("/admin/users/lihua/unlock", {}, None),
    "/account": lambda w: (
        "/account",
        {"current": PASSWORD, "new": "新的密码-永康-2027", "again": "新的密码-永康-2027"},
        None,
    ),
    "/admin/keys": lambda w: ("/admin/keys", {"name": "办公系统", "role": "read"}, None),
    "/admin/keys/{key_id}/revoke": lambda w: (f"/admin/keys/{w.key_id}/revoke", {}, None),
}
UNGUARDED = {"/login"}  # no session yet: a double-submit token of its own (tests/test_staff_pages.py)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    db = demo_template(tmp_path_factory.mktemp("forms"), tokenizer)
    engine = Engine(Settings(db=db), tokenizer=tokenizer)
    accounts = Accounts(engine.store, engine.settings)
    accounts.add_user("lihua", PASSWORD, "staff")
    accounts.add_user("admin1", PASSWORD, "admin")
    engine.close()
    return db


@pytest.fixture()
def app_client(tmp_path: Path, template: Path, tokenizer):  # noqa: ANN201
    settings = Settings(db=copy_db(template, tmp_path), api_keys=("page-forms-key-0b7d2e4f6a8c1359",))
    engine = Engine(settings, tokenizer=tokenizer)
    with TestClient(create_app(settings, engine=engine), base_url="http://testserver") as c:
        c.engine = engine  # type: ignore[attr-defined]
        c.world = World(c)  # type: ignore[attr-defined]
        yield c
    engine.close()


#: Caches a read may fill (a demand's tokens, a text's vector, the popularity of experts): not data.
CACHES = ("token_cache", "vector_cache", "expert_popularity")


def fingerprint(client: TestClient) -> str:
    """Every table but the caches, byte for byte as SQL, and the staged files: what "nothing
    written" means."""
    path = client.engine.store.path  # type: ignore[attr-defined]
    conn = sqlite3.connect(path)
    try:
        dump = "\n".join(line for line in conn.iterdump() if not any(f'"{c}"' in line for c in CACHES))
    finally:
        conn.close()
    staged = sorted(str(p) for p in Path(f"{path}.uploads").rglob("*"))
    return hashlib.sha256((dump + "\n".join(staged)).encode()).hexdigest()


def test_every_page_form_is_covered_here() -> None:
    assert set(page_post_routes()) == set(FORMS) | UNGUARDED


@pytest.mark.parametrize("route", sorted(FORMS))
def test_every_form_takes_its_happy_path_with_the_sessions_token(app_client: TestClient, route: str) -> None:
    sign_in(app_client, user="admin1")
    csrf = csrf_of(app_client.get("/demands").text)
    path, data, files = FORMS[route](app_client.world)  # type: ignore[attr-defined]
    if route == "/account":
        data = {**data, "current": PASSWORD}
    before = fingerprint(app_client)
    res = app_client.post(path, data={"csrf_token": csrf, **data}, files=files, follow_redirects=False)
    assert res.status_code in (200, 201, 303), (route, res.status_code, visible_text(res.text)[:300])
    if route not in ("/demands/upload", "/experts/upload", "/experts/{expert_id}/contact"):  # dry runs, views
        assert fingerprint(app_client) != before, route  # it wrote (what the refusals below must not)
    if route == "/batch/run":  # let the run finish before the test's database goes away
        deadline = time.monotonic() + 600
        while is_running(app_client.engine.store.path) or not app_client.engine.store.list_batch_runs():
            assert time.monotonic() < deadline
            time.sleep(0.5)


REFUSALS = {
    "no-session": (None, {}),
    "no-token": ("", {}),
    "wrong-token": ("not-the-sessions-token", {}),
    "other-origin": ("OWN", {"Origin": "http://evil.example"}),
    "cross-site": ("OWN", {"Sec-Fetch-Site": "cross-site"}),
    "same-site-sibling": ("OWN", {"Sec-Fetch-Site": "same-site"}),
}


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
@pytest.mark.parametrize("route", sorted(FORMS))
def test_every_form_refuses_a_forged_post_and_writes_nothing(app_client: TestClient, route: str,
                                                             refusal: str) -> None:
    token, headers = REFUSALS[refusal]
    if token is not None:
        sign_in(app_client, user="admin1")
        own = csrf_of(app_client.get("/demands").text)
    path, data, files = FORMS[route](app_client.world)  # type: ignore[attr-defined]
    if token is not None:
        data = {**data, "csrf_token": own if token == "OWN" else token}
    before = fingerprint(app_client)
    res = app_client.post(path, data=data, files=files, headers=headers, follow_redirects=False)
    if token is None:
        assert res.status_code == 303 and res.headers["location"].startswith("/login"), (
            route,
            res.status_code,
        )
    else:
        assert res.status_code == 403 and "请求被拒绝" in res.text, (route, res.status_code)
        assert english_words(visible_text(res.text), {"admin1"}) == []
    assert fingerprint(app_client) == before, route


# -- fuzzing: any value in any field ----------------------------------------------------------------
TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=3000),
    st.sampled_from(["", " ", "0", "-1", "1e309", "NaN", "2026-11-31", "2026-02-30", "9999-99-99",
                     "<script>alert(1)</script>", "' OR 1=1 --", "../../etc/passwd", "=cmd|' /C calc'!A0",
                     "焊" * 20_001, "x" * 5_001, "\x00\x07", "[]", '["a"]', "{}", "null"]),
)


def fields_of(route: str) -> list[str]:
    names = {
        "/demands/new": [
            "title",
            "description",
            "enterprise",
            "contact",
            "region",
            "industry",
            "deadline",
            "keywords",
        ],
        "/demands/save": [
            "text",
            "top_k",
            "filter_region",
            "filter_title",
            "exclude_terms",
            "extra_terms",
            "title",
            "enterprise",
            "deadline",
        ],
        "/experts/{expert_id}/edit": [
            "name",
            "title",
            "institution",
            "region",
            "research_fields",
            "tags",
            "bio",
        ],
        "/experts/{expert_id}/documents": ["kind", "title", "year", "keywords", "abstract"],
        "/demands/{demand_id}/feedback": ["expert_id", "verdict", "note"],
        "/demands/{demand_id}/status": ["status"],
        "/experts/{expert_id}/pause": ["until", "reason"],
        "/demands/{demand_id}/outcomes": ["kind", "value", "date", "note", "expert_ids"],
        "/admin/users": ["username", "role"],
        "/account": ["current", "new", "again"],
        "/admin/keys": ["name", "role"],
    }
    return names.get(route, [])


FUZZED = sorted(r for r in FORMS if fields_of(r)) + [
    "/demands/upload",
    "/experts/upload",
    "/admin/users/{username}/{action}",
    "/merges/{merge_id}/undo",
    "/uploads/{token}/confirm",
    "/outcomes/{outcome_id}/delete",
]


@pytest.mark.parametrize("route", FUZZED)
def test_fuzzed_forms_answer_with_a_page_and_a_refusal_changes_nothing(
    app_client: TestClient, route: str
) -> None:
    sign_in(app_client, user="admin1")
    csrf = csrf_of(app_client.get("/demands").text)
    names = fields_of(route)
    allowed = {"admin1", "lihua", "testclient"}

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        values=st.fixed_dictionaries({n: TEXT for n in names}), path_part=TEXT, blob=st.binary(max_size=4000)
    )
    def run(values: dict[str, str], path_part: str, blob: bytes) -> None:
        path, _, files = FORMS[route](app_client.world)  # type: ignore[attr-defined]
        if "{" in route:  # an id of any shape in the path
            part = quote(path_part[:200], safe="") or "_"
            path = {"/admin/users/{username}/{action}": f"/admin/users/{part}/unlock",
                    "/merges/{merge_id}/undo": f"/merges/{part}/undo",
                    "/uploads/{token}/confirm": f"/uploads/{part}/confirm",
                    "/outcomes/{outcome_id}/delete": f"/outcomes/{part}/delete"}.get(route, path)
        if files is not None:
            files = {"file": (path_part[:60] + ".xlsx", blob, XLSX)}
        before = fingerprint(app_client)
        res = app_client.post(path, data={"csrf_token": csrf, **values}, files=files, follow_redirects=False)
        assert res.status_code < 500, (route, values, res.text[:500])
        if res.status_code >= 400:
            assert res.headers["content-type"].startswith("text/html"), (route, res.status_code)
            shown = visible_text(res.text)
            assert re.search(r"[\u4e00-\u9fff]", shown)
            said = visible_text(res.text.split('id="problem"')[-1].split("</p>")[0]) \
                if 'id="problem"' in res.text else ""
            said = re.sub(
                r"^>?[^:：]*\.(xlsx|csv): ", "", said
            )  # an upload's message starts with its file name
            # what was sent comes back (an id in the path is sent cut to 200 characters)
            typed = " ".join([*values.values(), path_part, quote(path_part), path_part[:200]])
            words = english_words(said, allowed | set(english_words(typed)))
            assert words == [], (route, said)
            if route not in ("/account",):  # a wrong current password is counted nowhere either
                assert fingerprint(app_client) == before, (route, values)

    run()
