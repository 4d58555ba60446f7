"""Security defaults for a service on a shared office network with untrusted input.

API keys (constant-time, never logged), contact details only with a key, parameterised SQL for
every store method under hostile strings, body limits, CORS closed by default, security headers,
and the page escaping every user string in a real browser even with its CSP switched off.
"""

from __future__ import annotations

import hmac
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import openpyxl
import pytest
from fastapi.testclient import TestClient

from api import create_app
from matcher.config import Settings
from matcher.engine import Engine
from matcher.models import Demand, Expert, Explanation
from matcher.records import BatchCandidate, BatchExclusion, BatchMatch, BatchOutcome
from matcher.store import Store

from .conftest import free_port, serve_in_thread

KEY = "sec-key-5b1e0c97d2a44f-8793908c3adeba"
OTHER_KEY = "sec-key-second-8a1f33-c40e9b7d25"
READ_KEY = "sec-read-key-4c1b9e07a2d6f8"  # the read role: the working data, never contacts
WRITE_KEY = "sec-write-key-7e2a5d18c9b3f0"  # the write role: changes, never contacts
THERMOS = "我司生产不锈钢保温杯，真空层激光焊接合格率低，寻求焊接工艺改进方案"
PHONE, EMAIL = "13912345678", "zhou.han@example.edu.cn"
EXPERTS = [
    {"id": "s-weld", "name": "周焊", "title": "教授", "institution": "浙江工业大学", "region": "浙江省",
     "research_fields": ["激光焊接", "不锈钢焊接"], "contact": {"phone": PHONE, "email": EMAIL},
     "documents": [{"kind": "paper", "title": "不锈钢真空保温杯激光焊接气孔缺陷的成因与控制"}]},
    {"id": "s-bms", "name": "吴电", "institution": "江苏储能研究院", "research_fields": ["锂电池", "BMS"],
     "contact": {"phone": "13700000002", "email": "wu@example.org"}},
]


def make_settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(db=tmp_path / "sec.db", api_keys=(KEY, OTHER_KEY, "sec-key-third-77-e1a5f0c3b8d2",
                                                       f"read:{READ_KEY}", f"write:{WRITE_KEY}"), **kw)


@pytest.fixture()
def client(tmp_path: Path, tokenizer) -> Iterator[TestClient]:
    settings = make_settings(tmp_path)
    engine = Engine(settings, tokenizer=tokenizer)
    engine.upsert_experts(Expert.from_dict(e) for e in EXPERTS)
    with TestClient(create_app(settings, engine=engine)) as c:
        yield c
    engine.close()


# -- API keys -------------------------------------------------------------------------------------
def test_keys_are_compared_in_constant_time_against_every_key(client: TestClient, monkeypatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    ok = client.get("/api/v1/experts/s-weld", headers={"X-API-Key": OTHER_KEY})
    assert ok.status_code == 200 and ok.json()["contact"]["phone"] == PHONE
    assert len(calls) == 5, "every configured key is compared, even after a match (no early exit)"
    assert all(isinstance(a, bytes) and a == OTHER_KEY.encode() for a, _ in calls)
    calls.clear()
    near = KEY[:-1] + ("0" if KEY[-1] != "0" else "1")
    bad = client.get("/api/v1/experts/s-weld", headers={"X-API-Key": near})
    assert bad.status_code == 401 and len(calls) == 5
    assert bad.headers["www-authenticate"] == "APIKey"
    assert near not in bad.text and KEY not in bad.text, "a refused key is not echoed"


@pytest.mark.parametrize("header", [b"x", (KEY + "x").encode(), KEY[:-1].encode(), KEY.upper().encode(),
                                    KEY.encode() * 40, "ключ-密钥".encode(), b"\xff\xfe"],
                         ids=["short", "longer", "prefix", "case", "huge", "utf8", "binary"])
def test_wrong_keys_of_every_shape_get_401_never_500(client: TestClient, header: bytes) -> None:
    res = client.post("/api/v1/experts", json={"name": "新"}, headers={"X-API-Key": header})
    assert res.status_code == 401, res.text
    assert res.json()["error"]["type"] == "AuthError"


def test_writes_need_a_key_and_reads_do_not(client: TestClient) -> None:
    assert client.post("/api/v1/experts", json={"name": "无钥匙"}).status_code == 401
    assert client.delete("/api/v1/experts/s-weld").status_code == 401
    assert client.post("/api/v1/match", json={"text": THERMOS}).status_code == 200
    assert client.delete("/api/v1/experts/s-bms", headers={"X-API-Key": KEY}).status_code == 204


def test_settings_never_show_a_key() -> None:
    s = Settings(api_keys=("very-secret-key-123",))
    assert "very-secret-key-123" not in repr(s) and "very-secret-key-123" not in str(s.model_dump())


def test_keys_never_reach_the_server_log(tmp_path: Path) -> None:
    """A real `matcher serve` with uvicorn's access log: every kind of request with a key, then
    the whole log is searched for the keys."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MATCHER_API_KEYS": f"{KEY},{OTHER_KEY}"}
    log = tmp_path / "server.log"
    wrong = "sec-wrong-key-0f9e8d7c"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "matcher", "serve", "--port", str(port),
                                 "--db", str(tmp_path / "served.db")],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    httpx.get(url + "/api/v1/health", timeout=2)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
            with httpx.Client(base_url=url, timeout=60) as http:
                for key in (KEY, OTHER_KEY, wrong):
                    h = {"X-API-Key": key}
                    http.post("/api/v1/match", json={"text": THERMOS}, headers=h)
                    expert = {"id": "log-1", "name": "日志", "bio": "焊接"}
                    http.post("/api/v1/experts", json=expert, headers=h)
                    http.post("/api/v1/experts", json=expert, headers=h)  # 409
                    http.post("/api/v1/experts", json={"nam": "typo"}, headers=h)  # 422
                    http.get("/api/v1/experts/nope", headers=h)  # 404
                    http.post("/api/v1/match", content=b"{" * 2_000_000, headers=h)  # 413
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    text = log.read_text()
    assert "POST /api/v1/match" in text, "the access log was on"
    for key in (KEY, OTHER_KEY, wrong):
        assert key not in text


# -- contact details -------------------------------------------------------------------------------
def _xlsx_text(content: bytes) -> str:
    wb = openpyxl.load_workbook(io.BytesIO(content))
    return "\n".join(str(v) for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for v in row)


def test_contact_details_only_with_an_admin_key(client: TestClient) -> None:
    """Phone and e-mail are personal information: no key, a read key and a write key never see them
    (a bare MATCHER_API_KEYS key is an admin key); the working data needs at least a read key."""
    body = {"id": "d-sec", "title": "保温杯激光焊接", "description": THERMOS}
    demand = client.post("/api/v1/demands", json=body, headers={"X-API-Key": KEY})
    assert demand.status_code == 201, demand.text
    reads = {
        "list": lambda h: client.get("/api/v1/experts", headers=h),
        "search": lambda h: client.get("/api/v1/experts", params={"q": "周焊"}, headers=h),
        "one": lambda h: client.get("/api/v1/experts/s-weld", headers=h),
        "match": lambda h: client.post("/api/v1/match", json={"text": THERMOS}, headers=h),
        "xlsx": lambda h: client.post("/api/v1/match.xlsx", json={"text": THERMOS}, headers=h),
        "demand matches": lambda h: client.get("/api/v1/demands/d-sec/matches", headers=h),
        "recommendations": lambda h: client.get("/api/v1/demands/d-sec/recommendations", headers=h),
        "team": lambda h: client.post("/api/v1/team", json={"text": THERMOS}, headers=h),
        "profile page": lambda h: client.get("/experts/s-weld", headers=h),
    }
    working_data = {"demand matches", "recommendations"}

    def text(res: Any) -> str:
        return _xlsx_text(res.content) if res.headers["content-type"].startswith("application/vnd") else res.text

    for name, read in reads.items():
        for who, headers in (("no key", {}), ("a read key", {"X-API-Key": READ_KEY}),
                             ("a write key", {"X-API-Key": WRITE_KEY})):
            res = read(headers)
            if name in working_data and who == "no key":
                assert res.status_code == 401, (name, res.text)
                continue
            assert res.status_code == 200, (name, who, res.text)
            assert "周焊" in text(res), (name, who)
            assert PHONE not in text(res) and EMAIL not in text(res), f"{name} shows contact details to {who}"
        if name != "profile page":  # the page is for browsing; contacts go through the API with a key
            keyed = text(read({"X-API-Key": KEY}))
            assert PHONE in keyed and EMAIL in keyed, f"{name} hides contact details from an admin key"


# -- parameterised SQL -----------------------------------------------------------------------------
HOSTILE = [
    "'); DROP TABLE experts;--ZQX",
    "\" OR 1=1 --ZQX",
    "x' OR '1'='1ZQX",
    "ZQX'; DELETE FROM meta; SELECT '",
    "ZQX%_\\",
    "ZQX*/ /* ]]> `id` [experts]",
    "ZQX\u0000nul",
    "ZQX 王' UNION SELECT * FROM experts --",
]
_LITERAL = re.compile(r"'(?:[^']|'')*'|X'[0-9A-Fa-f]*'")


def hostile_expert(i: int, h: str) -> Expert:
    return Expert.from_dict({
        "id": f"h{i}{h}", "name": h, "title": h, "institution": h, "region": h,
        "research_fields": [h, "焊接"],
        "bio": h, "tags": [h], "contact": {"phone": h, "email": h},
        "documents": [{"kind": "paper", "title": h, "keywords": [h], "abstract": h}],
    })


def test_hostile_strings_through_every_store_method_stay_data(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.db")
    traced: list[str] = []
    store.db.conn.set_trace_callback(traced.append)
    schema_before = store.db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    experts = [hostile_expert(i, h) for i, h in enumerate(HOSTILE)]
    assert store.upsert_experts(experts).inserted == len(HOSTILE)
    for e, h in zip(experts, HOSTILE, strict=True):
        assert store.get_expert(e.id) == e, "stored and read back byte for byte"
        found, total = store.search_experts(h)
        assert e.id in [x.id for x in found] and total == len(found)
        assert [x.id for x in store.get_experts([e.id])] == [e.id]
    assert store.search_experts("ZQX")[1] == len(HOSTILE)
    assert store.search_experts("%")[1] == 1, "% is a character, not a wildcard"
    assert store.search_experts("_")[1] == 1
    assert len(store.expert_names()) == len(HOSTILE)
    demands = [Demand.from_dict({"id": f"d{i}{h}", "title": h, "description": h + " 焊接", "enterprise": h,
                                 "region": h, "industry": h, "keywords": [h], "avoid_institutions": [h],
                                 "avoid_experts": [h]}) for i, h in enumerate(HOSTILE)]
    assert store.upsert_demands(demands).inserted == len(HOSTILE)
    for d in demands:
        got = store.get_demand(d.id)
        assert (got.title, got.description, got.keywords, got.avoid_experts) == (
            d.title, d.description, d.keywords, d.avoid_experts)
    assert list(store.iter_demands(status=HOSTILE[0])) == []
    for i, h in enumerate(HOSTILE):
        store.set_meta(h, h)
        assert store.get_meta(h) == h
        fid = store.add_feedback(demands[i].id, experts[i].id, "accepted", note=h)
        assert store.list_feedback(demands[i].id)[-1]["id"] == fid
        store.log_import(h, h, inserted=1, updated=0, unchanged=0, merged=0, rejected=0)
        store.log_merge(import_id=None, kept_id=experts[i].id, merged=experts[i], before=experts[i],
                        after=experts[i], reason=h, score=1.0, source=h)
        assert store.list_merges(experts[i].id)[0].reason == h
    run = store.create_batch_run(HOSTILE[0], top=3, max_per_expert=5, candidates=10)
    assert store.get_batch_run(HOSTILE[0]).id == run.id
    assert store.select_batch_demands(run.id, None) == len(HOSTILE)
    expl = Explanation(terms=(HOSTILE[1],), evidence=())
    for d, e in zip(demands, experts, strict=True):
        store.save_batch_scores(run.id, d.id, [BatchCandidate(d.id, e.id, 1, 0.9)],
                                [BatchExclusion(d.id, experts[0].id, HOSTILE[2], 0.1)], error="")
    store.finish_batch_run(run.id, [BatchMatch(run.id, d.id, e.id, 1, 0.9, 1, expl)
                                    for d, e in zip(demands, experts, strict=True)],
                           [BatchOutcome(d.id, 1, 1, 1, "", HOSTILE[3]) for d in demands],
                           total_score=1.0, seconds=0.1, method="greedy")
    assert {m.expert_id for m in store.list_batch_matches(run.id)} == {e.id for e in experts}
    assert {m.demand_id for m in store.list_batch_matches(demand_id=demands[1].id)} == {demands[1].id}
    store.fail_batch_run(run.id, HOSTILE[4])
    store.set_demand_status([d.id for d in demands], "matched")
    for e in experts:
        store.delete_expert(e.id)
    assert store.count_experts() == 0 and store.count_demands() == len(HOSTILE)

    schema_after = store.db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    assert schema_after == schema_before, "no table dropped or created by data"
    # Every statement SQLite ran: with the string literals (bound values, as the trace expands
    # them) removed, the marker of the hostile strings is gone; it was only ever data.
    assert len(traced) > 50
    for sql in traced:
        assert "ZQX" not in _LITERAL.sub("''", sql), f"a value became SQL: {sql[:300]}"
    store.close()


def test_hostile_strings_through_the_api(client: TestClient) -> None:
    h = {"X-API-Key": KEY}
    for i, s in enumerate(HOSTILE):
        if "\u0000" in s:
            continue  # JSON can carry it, but it is covered at the store level
        clean = re.sub(r"[/\s]", "", s)
        body = {"id": f"api{i}-{clean}", "name": s, "institution": s,
                "research_fields": [s, "激光焊接"]}
        res = client.post("/api/v1/experts", json=body, headers=h)
        assert res.status_code == 201, res.text
        # Regression: a non-Latin-1 id in the Location header was a 500 after the write.
        assert res.headers["location"] == "/api/v1/experts/" + quote(body["id"], safe="")
        got = client.get("/api/v1/experts/" + httpx.URL(path=body["id"]).raw_path.decode(), headers=h)
        assert got.status_code == 200 and got.json()["name"] == s
        listed = client.get("/api/v1/experts", params={"q": s})
        assert body["id"] in [e["id"] for e in listed.json()["data"]]
        assert client.post("/api/v1/match", json={"text": s + " 激光焊接"}).status_code == 200
    everyone = client.get("/api/v1/experts", params={"limit": 200}).json()["count"]
    assert everyone == len(EXPERTS) + len(HOSTILE) - 1


# -- body limits ------------------------------------------------------------------------------------
def test_oversized_bodies_and_texts_are_refused_cleanly(tmp_path: Path, tokenizer) -> None:
    settings = make_settings(tmp_path, max_body_bytes=300_000)
    engine = Engine(settings, tokenizer=tokenizer)
    engine.upsert_experts(Expert.from_dict(e) for e in EXPERTS)
    app = create_app(settings, engine=engine)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        big = {"text": "焊" * 200_000}  # 600 kB of UTF-8
        res = http.post("/api/v1/match", json=big)
        assert res.status_code == 413 and res.json()["error"]["type"] == "PayloadTooLargeError"
        assert "MATCHER_MAX_BODY_BYTES" in res.json()["error"]["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
            yield b'{"text": "'
            for _ in range(100):
                yield "焊接".encode() * 1000
            yield b'"}'

        res = http.post("/api/v1/match", content=chunks(), headers={"Content-Type": "application/json"})
        assert res.status_code == 413
        # Under the body limit but over the text limit: the library's message, as a 422.
        res = http.post("/api/v1/match", json={"text": "a" * 250_000})
        assert res.status_code == 422 and "limit is 20000" in res.json()["error"]["message"]
        big_expert = {"name": "大", "bio": "焊" * 150_000}
        res = http.post("/api/v1/experts", json=big_expert, headers={"X-API-Key": KEY})
        assert res.status_code == 413
        after = http.post("/api/v1/match", json={"text": THERMOS})
        assert after.status_code == 200, "the server is fine after"
    engine.close()


# -- CORS and headers ------------------------------------------------------------------------------
def test_cors_is_closed_by_default(client: TestClient) -> None:
    evil = "https://evil.example"
    pre = client.options("/api/v1/match", headers={
        "Origin": evil, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key"})
    assert "access-control-allow-origin" not in pre.headers
    res = client.post("/api/v1/match", json={"text": THERMOS}, headers={"Origin": evil})
    assert res.status_code == 200 and "access-control-allow-origin" not in res.headers
    assert "access-control-allow-credentials" not in res.headers


def test_cors_opens_only_to_configured_origins(tmp_path: Path, tokenizer) -> None:
    settings = make_settings(tmp_path, cors_origins=("https://kexie.example.gov.cn",))
    engine = Engine(settings, tokenizer=tokenizer)
    engine.upsert_experts(Expert.from_dict(e) for e in EXPERTS)
    with TestClient(create_app(settings, engine=engine)) as c:
        ok = c.options("/api/v1/match", headers={"Origin": "https://kexie.example.gov.cn",
                                                 "Access-Control-Request-Method": "POST"})
        assert ok.headers.get("access-control-allow-origin") == "https://kexie.example.gov.cn"
        assert ok.headers.get("access-control-allow-credentials") is None
        other = c.post("/api/v1/match", json={"text": THERMOS}, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    engine.close()


def test_security_headers_on_the_page_the_api_and_errors(client: TestClient) -> None:
    for res in (client.get("/"), client.get("/experts/s-weld"), client.get("/experts/nope"),
                client.post("/api/v1/match", json={"text": THERMOS}), client.get("/api/v1/nope"),
                client.post("/api/v1/match", content=b"x" * 2_000_000)):
        h = res.headers
        assert h["x-content-type-options"] == "nosniff", res.url
        assert h["x-frame-options"] == "DENY"
        assert h["referrer-policy"] == "no-referrer"
        csp = h["content-security-policy"]
        for directive in ("default-src 'self'", "script-src 'self'", "object-src 'none'",
                          "frame-ancestors 'none'", "base-uri 'none'"):
            assert directive in csp, (res.url, csp)
        assert "unsafe-inline" not in csp.split("style-src")[0] and "unsafe-eval" not in csp
    page = client.get("/")
    kind = page.headers["content-type"]
    assert kind.startswith("text/html") and "charset=utf-8" in kind


# -- escaping, in the browser ----------------------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'  # fits the 100-char fields
XSS_LONG = XSS + '<svg onload="window.__pwned=3"><iframe src="javascript:window.__pwned=4">'


@pytest.mark.slow
def test_the_page_escapes_every_user_string_even_without_its_csp(tmp_path: Path, tokenizer) -> None:
    """The CSP would block inline scripts anyway; the browser context bypasses it so the test proves
    the escaping itself: markup in a demand and in every field of an expert shows as text."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install Debian's chromium (apt-get install chromium); CI does")
    from playwright.sync_api import sync_playwright

    settings = make_settings(tmp_path)
    engine = Engine(settings, tokenizer=tokenizer)
    engine.upsert_experts(Expert.from_dict(e) for e in EXPERTS)
    hostile = {
        "id": "x-script", "name": f"{XSS}林瓷", "title": f"<b>{XSS}</b>", "institution": f"<i>{XSS}</i>",
        "region": XSS, "research_fields": ["窑变釉", XSS_LONG], "bio": f"窑变釉{XSS_LONG}",
        "tags": [XSS_LONG],
        "documents": [{"kind": "patent", "title": f"窑变釉呈色{XSS_LONG}机理",
                       "keywords": ["窑变釉", XSS_LONG], "abstract": XSS_LONG}],
    }
    demand = f"{XSS_LONG}窑变釉颜色不稳定{XSS}"
    with serve_in_thread(create_app(settings, engine=engine)) as url:
        assert httpx.post(f"{url}/api/v1/experts", json=hostile, headers={"X-API-Key": KEY},
                          timeout=60).status_code == 201
        raw = httpx.get(f"{url}/experts/x-script", timeout=30).text
        assert "<script>window.__pwned" not in raw and "&lt;script&gt;window.__pwned" in raw
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(bypass_csp=True, locale="zh-CN")
                page = context.new_page()
                page.set_default_timeout(30_000)
                events: list[str] = []
                page.on("dialog", lambda d: (events.append(d.message), d.dismiss()))
                page.on("pageerror", lambda exc: events.append(f"page error: {exc}"))
                page.goto(url + "/")
                scripts_before = page.locator("script").count()
                page.fill("#demand", demand)
                page.get_by_role("button", name="匹配", exact=True).click()
                page.wait_for_selector("#status[data-state=done], #status[data-state=error]")
                assert page.locator("#status").get_attribute("data-state") == "done"
                assert page.evaluate("window.__pwned") is None
                assert page.locator("#demand-text").text_content() == demand
                row = page.locator("#results-table tbody tr").first
                assert row.locator("td.name a").text_content() == hostile["name"]
                assert XSS in row.text_content()
                assert page.locator("main img, main svg, main b, main i, main iframe").count() == 0
                assert page.locator("script").count() == scripts_before
                page.goto(url + "/experts/x-script")
                assert page.evaluate("window.__pwned") is None
                assert page.locator("h1").text_content() == hostile["name"]
                made = page.locator("main img, main svg, main b, main i, main script, main iframe")
                assert made.count() == 0
                body = page.locator("body").text_content()
                assert body.count("<script>window.__pwned=1</script>") >= 5
                assert events == []
            finally:
                browser.close()
    engine.close()
