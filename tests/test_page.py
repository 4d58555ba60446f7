"""The staff page in a real headless Chromium (Debian's, driven by Playwright) against a real
uvicorn server on loopback, on the demo corpus. Also the body limit over a real socket.

CI installs `chromium` with apt; the browser tests skip only when /usr/bin/chromium is absent.
The screenshot lands in test-artifacts/page.png (git-ignored) for a human to look at.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import httpx
import openpyxl
import pytest

from matcher.config import DEFAULT_CORPORA
from matcher.text import normalize

from .conftest import ARTIFACTS, THERMOS, XSS_DEMAND, XSS_EXPERT, XSS_NAME, Live  # noqa: F401
from .conftest import PAGE_BODY_LIMIT as BODY_LIMIT
from .conftest import PAGE_KEY as KEY

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def welding_experts() -> set[str]:
    """Demo experts whose declared fields are about welding or vacuum insulation."""
    out = set()
    for line in (DEFAULT_CORPORA / "demo" / "experts.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            e = json.loads(line)
            if any("焊接" in f or "真空" in f or "保温" in f for f in e.get("research_fields", [])):
                out.add(e["id"])
    return out


# -- the body limit over a real socket -----------------------------------------------------------
def read_response(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def test_a_chunked_body_over_the_limit_is_cut_off_with_413(live: Live) -> None:
    head = (
        b"POST /api/v1/match HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"a" * 16_384
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for _ in range(4 * BODY_LIMIT // len(chunk)):  # never ends the body: only counting stops it
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending
        raw = read_response(sock)
    status_line, _, rest = raw.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), raw[:300]
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["type"] == "PayloadTooLargeError"


def test_a_declared_length_over_the_limit_is_refused_before_reading(live: Live) -> None:
    res = httpx.post(f"{live.url}/api/v1/match", json={"text": "焊" * BODY_LIMIT}, timeout=30)
    assert res.status_code == 413
    assert "MATCHER_MAX_BODY_BYTES" in res.json()["error"]["message"]


# -- the page in a browser -----------------------------------------------------------------------
def run_match(page, live: Live, text: str, **filters: str) -> None:  # noqa: ANN001
    page.goto(live.url + "/")
    page.fill("#demand", text)
    for name, value in filters.items():
        page.fill(f"#{name}", value)
    page.get_by_role("button", name="匹配", exact=True).click()
    # CSS, not a JS predicate: the page's CSP (rightly) forbids the eval Playwright would need.
    page.wait_for_selector("#status[data-state=done], #status[data-state=error]")


def test_the_page_ranks_and_highlights_the_thermos_demand(page, live: Live) -> None:  # noqa: ANN001
    run_match(page, live, THERMOS)
    assert "找到" in page.locator("#status").text_content()
    rows = page.locator("#results-table tbody tr")
    assert rows.count() == 10
    header = page.locator("#results-table thead th").all_text_contents()
    assert header == ["排名", "姓名", "职称", "单位", "地区", "匹配强度", "匹配依据"]

    top_ids = [page.locator("td.name a").nth(i).get_attribute("href").rsplit("/", 1)[1] for i in range(3)]
    assert set(top_ids) & welding_experts(), f"no welding/vacuum expert in the first rows: {top_ids}"

    api = httpx.post(f"{live.url}/api/v1/match", json={"text": THERMOS, "top_k": 10}, timeout=30).json()[
        "data"
    ]
    assert [r["expert"]["name"] for r in api] == page.locator("td.name a").all_text_contents()
    first = rows.first
    assert first.locator("td").first.text_content() == "1"
    marks = [normalize(m) for m in first.locator("td.evidence mark").all_text_contents()]
    assert marks, "the evidence of the first expert has no highlighted term"
    assert any("焊接" in m for m in marks)
    assert set(marks) <= set(api[0]["explanation"]["terms"])

    # The demand shows every matched term highlighted, each term in its own <mark>.
    demand_marks = [normalize(m) for m in page.locator("#demand-text mark").all_text_contents()]
    assert "激光焊接" in demand_marks and "不锈钢" in demand_marks
    assert set(demand_marks) <= {t for r in api for t in r["explanation"]["terms"]}
    assert page.locator("#demand-text").text_content() == THERMOS  # marks wrap the text, never change it

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)

    # "在需求中标出" highlights one expert's terms in the demand.
    rows.nth(1).get_by_role("button", name="在需求中标出").click()
    assert "selected" in (rows.nth(1).get_attribute("class") or "")
    second = [normalize(m) for m in page.locator("#demand-text mark").all_text_contents()]
    assert second and set(second) <= set(api[1]["explanation"]["terms"])

    # The download is a real workbook holding the rows on screen.
    with page.expect_download() as info:
        page.get_by_role("button", name="下载 Excel").click()
    target = ARTIFACTS / "page-download.xlsx"
    info.value.save_as(target)
    table = list(openpyxl.load_workbook(target)["匹配结果"].values)
    names = page.locator("td.name a").all_text_contents()
    assert [r[2] for r in table[1:]] == names

    # The profile link opens the expert's full record.
    href = page.locator("td.name a").first.get_attribute("href")
    profile = httpx.get(live.url + href, timeout=30)
    assert profile.status_code == 200 and names[0] in profile.text and "论文、专利与项目" in profile.text
    assert page.problems == []


def test_the_title_filter_narrows_the_list(page, live: Live) -> None:  # noqa: ANN001
    run_match(page, live, THERMOS, title="院士")
    titles = page.locator("#results-table tbody tr td:nth-child(3)").all_text_contents()
    assert titles and all("院士" in t for t in titles)
    assert page.problems == []


def test_the_page_shows_markup_as_text_and_runs_none_of_it(page, live: Live) -> None:  # noqa: ANN001
    res = httpx.post(f"{live.url}/api/v1/experts", json=XSS_EXPERT, headers={"X-API-Key": KEY}, timeout=60)
    assert res.status_code in (201, 409), res.text  # 409: a rerun on the same module server
    run_match(page, live, XSS_DEMAND)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#demand-text").text_content() == XSS_DEMAND
    row = page.locator("#results-table tbody tr").first
    assert row.locator("td.name a").text_content() == XSS_NAME
    assert row.locator("td").nth(2).text_content() == "<b>副教授</b>"
    assert "<img src=x" in row.locator("td.evidence").text_content()
    # No element was made from the data: no <img>, no <b>, and the only scripts are our own files.
    assert page.locator("main img, main b, main i").count() == 0
    scripts = page.locator("script").evaluate_all("s => s.map(e => [e.getAttribute('src'), e.text.trim()])")
    assert sorted(scripts) == [["/static/app.js", ""], ["/static/pages.js", ""]]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-xss.png"), full_page=True)

    page.goto(live.url + row_href(page, live))
    assert page.locator("h1").text_content() == XSS_NAME
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img, main b, main i, main script").count() == 0
    assert page.problems == []


def row_href(page, live: Live) -> str:  # noqa: ANN001
    run_match(page, live, XSS_DEMAND)
    href = page.locator("td.name a").first.get_attribute("href")
    assert re.fullmatch(r"/experts/x-xss", href)
    return href


def test_an_error_is_shown_in_words(page, live: Live) -> None:  # noqa: ANN001
    page.goto(live.url + "/")
    page.fill("#demand", "   ")
    page.get_by_role("button", name="匹配", exact=True).click()
    assert page.locator("#status.error").text_content() == "请先填写企业需求。"
    page.fill("#demand", "xyzzy qwerty")  # no word any expert uses
    page.get_by_role("button", name="匹配", exact=True).click()
    page.wait_for_selector("#status[data-state=done]")
    assert "没有专家" in page.locator("#status").text_content()
    assert page.locator("#results").is_hidden()
    assert page.problems == []


POT = "锅底用久了发黑起斑、涂层一块块掉"


def test_the_understanding_is_shown_as_chips_and_staff_correct_it_in_one_click(page, live: Live) -> None:  # noqa: ANN001
    run_match(page, live, POT)
    api = httpx.post(f"{live.url}/api/v1/match", json={"text": POT}, timeout=30).json()
    u = api["understanding"]
    # the demand's own terms, then (another colour) what was added, each with where it came from
    own = page.locator("#own-terms .chip").evaluate_all("els => els.map(e => e.dataset.term)")
    assert own == [t["term"] for t in u["terms"] if t["kind"] == "content"]
    low = page.locator("#low-terms .chip").evaluate_all("els => els.map(e => e.dataset.term)")
    assert low == [t["term"] for t in u["terms"] if t["kind"] != "content"]  # generic words apart
    added = page.locator("#added-terms .chip.added")
    assert added.count() == len(u["expanded"]) + len(u["synonyms"]) > 0
    first = u["expanded"][0]
    assert added.first.text_content().startswith(f"{first['term']} ← {first['from']}")
    assert page.locator("#added-terms .chip.added").first.evaluate("e => getComputedStyle(e).backgroundColor") != \
        page.locator("#own-terms .chip").first.evaluate("e => getComputedStyle(e).backgroundColor")
    # evidence reached through an added term says so: 「涂层附着力」← 涂层一块块掉
    via = page.locator("#results-table .term.added")
    assert via.count() > 0 and re.fullmatch(r"「.+」← .+", via.first.text_content())
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-understanding.png"), full_page=True)

    # one click removes an added concept: the list re-ranks without it (as the API ranks it)
    term = first["term"]
    page.locator(f'#added-terms .chip[data-term="{term}"] .chip-x').click()
    page.wait_for_selector(f'#added-terms .chip[data-term="{term}"]', state="detached")
    page.wait_for_selector("#status[data-state=done]")
    without = httpx.post(f"{live.url}/api/v1/match", json={"text": POT, "exclude_terms": [term]}, timeout=30).json()
    assert term not in [e["term"] for e in without["understanding"]["expanded"]]
    assert page.locator("td.name a").all_text_contents() == [m["expert"]["name"] for m in without["data"]]

    # a term staff add counts as the demand's own, and re-ranks too
    page.fill("#extra-term", "盐雾试验")
    page.get_by_role("button", name="补充", exact=True).click()
    page.wait_for_selector('#own-terms .chip.extra[data-term="盐雾试验"]')
    page.wait_for_selector("#status[data-state=done]")
    both = httpx.post(f"{live.url}/api/v1/match", json={"text": POT, "exclude_terms": [term],
                                                       "extra_terms": ["盐雾试验"]}, timeout=30).json()
    assert page.locator("td.name a").all_text_contents() == [m["expert"]["name"] for m in both["data"]]
    # and the system's understanding comes back in one click
    page.get_by_role("button", name="恢复系统理解").click()
    page.wait_for_selector(f'#added-terms .chip[data-term="{term}"]')
    assert page.problems == []


COOKWARE = "我们厂的不锈钢炒锅用了半年就起皮掉渣，客户投诉多，想找专家看看涂层怎么改进"


def test_weak_matches_are_folded_and_every_row_shows_its_strength(page, live: Live) -> None:  # noqa: ANN001
    run_match(page, live, COOKWARE)
    api = httpx.post(f"{live.url}/api/v1/match", json={"text": COOKWARE, "top_k": 10}, timeout=30).json()
    levels = [m["level"] for m in api["data"]]
    weak = levels.count("弱")
    assert 0 < weak < len(levels) and set(levels) <= {"强", "中", "弱"}
    shown = page.locator("#results-table tbody:not([hidden]) tr")
    assert shown.count() == len(levels) - weak  # strong and medium listed
    assert page.locator("#weak-rows").is_hidden()
    more = page.locator("#show-weak")
    assert more.text_content().startswith(f"另有 {weak} 位弱匹配")
    assert f"另有 {weak} 位弱匹配" in page.locator("#count").text_content()
    cells = page.locator("#results-table tbody:not([hidden]) td.strength").all_text_contents()
    assert cells == [f"{m['level']}{m['strength']:.2f}" for m in api["data"] if m["level"] != "弱"]
    more.click()
    assert page.locator("#weak-rows").is_visible() and page.locator("#weak-rows tr").count() == weak
    # the demand's substance, not its fillers: 起皮 and 掉渣 whole, no 半年 or 看看 among the chips
    chips = page.locator("#own-terms .chip").evaluate_all("els => els.map(e => e.dataset.term)")
    assert {"起皮", "掉渣", "炒锅", "涂层"} <= set(chips) and not {"半年", "看看", "厂", "多"} & set(chips)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-strength.png"), full_page=True)
    assert page.problems == []
