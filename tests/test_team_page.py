"""The staff page's 组团推荐 switch in a real headless Chromium against a real uvicorn server on the
demo corpus (conftest's `live` server, `browser` and `page`): the aspects x members matrix, the
members' evidence per aspect, highlighting an aspect, a markup-laden expert shown as text, and
errors in words."""

from __future__ import annotations

import httpx
import pytest

from matcher.text import normalize

from .conftest import ARTIFACTS, XSS_DEMAND, XSS_EXPERT
from .conftest import PAGE_KEY as KEY

pytestmark = pytest.mark.slow

WELD_BMS = "不锈钢保温杯真空层激光焊接合格率低；另外，锂电池包BMS均衡策略不成熟"


def run_team(page, live, text: str, size: str = "3", *, one_per_institution: bool = False) -> None:  # noqa: ANN001
    page.goto(live.url + "/")
    assert page.locator("#team-size").is_hidden()  # team options show only when the switch is on
    page.fill("#demand", text)
    page.get_by_label("组团推荐").check()
    assert page.locator("#team-size").is_visible() and page.locator("#top-k").is_hidden()
    page.select_option("#team-size", size)
    if one_per_institution:
        page.get_by_label("每个单位限一人").check()
    page.get_by_role("button", name="匹配", exact=True).click()
    page.wait_for_selector("#status[data-state=done], #status[data-state=error]")


def test_the_team_switch_shows_the_aspects_by_members_matrix(page, live) -> None:  # noqa: ANN001
    run_team(page, live, WELD_BMS)
    status = page.locator("#status").text_content()
    assert "组成 3 人团队" in status and "100%" in status
    assert page.locator("#results").is_hidden() and page.locator("#team-results").is_visible()
    assert page.locator("#download").is_disabled()

    api = httpx.post(f"{live.url}/api/v1/team", json={"text": WELD_BMS, "size": 3}, timeout=60).json()
    names = [m["expert"]["name"] for m in api["team"]]
    head = page.locator("#team-matrix thead th").all_text_contents()
    assert head == ["需求方面", "关键词", *names]
    rows = page.locator("#team-matrix tbody tr")
    assert rows.count() == len(api["aspects"]) == 2
    for i, aspect in enumerate(api["aspects"]):
        cells = rows.nth(i).locator("td.cell").all_text_contents()
        assert rows.nth(i).locator("th").text_content() == aspect["name"]  # named, not 方面1
        assert rows.nth(i).locator("td.aspect-terms").text_content() == "、".join(aspect["terms"])
        for m, cell in zip(api["team"], cells, strict=True):
            if aspect["id"] in m["covers"]:
                assert cell == ("★" if aspect["lead"] == m["expert"]["id"] else "●")  # ★ leads it
            else:
                assert cell == f"{round(100 * m['relevance'][i])}%"
    assert page.locator("#team-matrix td.covered").count() == sum(len(m["covers"]) for m in api["team"])
    assert "叶青松" in names  # the BMS expert, whom the plain top 3 leaves out
    summary = page.locator("#team-summary").text_content()
    assert "2 个方面" in summary and "覆盖其中 2 个" in summary

    members = page.locator("#team-table tbody tr")
    assert members.count() == 3
    assert members.locator("td.name a").all_text_contents() == names
    bms = members.nth(names.index("叶青松"))
    bms_aspect = api["aspects"][1]["name"]
    assert bms.locator("td.covers").text_content().startswith(bms_aspect)
    assert bms.locator(".aspect-label").all_text_contents() == [bms_aspect]
    # every member shows the calibrated strength, the scale of the ranked list
    levels = members.locator("td.strength .level").all_text_contents()
    assert levels == [m["level"] for m in api["team"]] and set(levels) <= {"强", "中", "弱"}
    # the understanding's chips are shown in team mode too, read only (a team reads the demand as written)
    chips = page.locator("#own-terms .chip").evaluate_all("els => els.map(e => e.dataset.term)")
    assert chips == [t["term"] for t in api["understanding"]["terms"] if t["kind"] == "content"]
    assert page.locator("#understanding .chip-x").count() == 0
    marks = {normalize(m) for m in bms.locator("td.evidence mark").all_text_contents()}
    assert "bms" in marks

    # Clicking an aspect highlights its key terms in the demand.
    rows.nth(1).click()
    assert "selected" in (rows.nth(1).get_attribute("class") or "")
    marked = [normalize(m) for m in page.locator("#demand-text mark").all_text_contents()]
    assert marked and set(marked) <= {normalize(t) for t in api["aspects"][1]["terms"]}
    assert page.locator("#demand-text").text_content() == WELD_BMS
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-team.png"), full_page=True)

    # Switching back gives the ranked list again.
    page.get_by_label("组团推荐").uncheck()
    page.get_by_role("button", name="匹配", exact=True).click()
    page.wait_for_selector("#status[data-state=done]")
    assert page.locator("#team-results").is_hidden() and page.locator("#results-table tbody tr").count() == 10
    assert page.problems == []


def test_team_size_and_one_per_institution(page, live) -> None:  # noqa: ANN001
    text = "保温杯真空层吸气剂失效。另外，PVD涂层耐磨性差。此外，固态电池硅基负极膨胀"
    run_team(page, live, text, size="5", one_per_institution=True)
    assert page.locator("#team-table tbody tr").count() == 5
    institutions = page.locator("#team-table tbody tr td:nth-child(4)").all_text_contents()
    assert len(set(institutions)) == 5
    assert page.problems == []


def test_a_team_shows_markup_as_text_and_errors_in_words(page, live) -> None:  # noqa: ANN001
    res = httpx.post(f"{live.url}/api/v1/experts", json=XSS_EXPERT, headers={"X-API-Key": KEY}, timeout=60)
    assert res.status_code in (201, 409), res.text
    run_team(page, live, XSS_DEMAND + "。另外，锂电池包BMS均衡策略不成熟")
    assert page.evaluate("window.__pwned") is None
    assert XSS_EXPERT["name"] in page.locator("#team-matrix thead").text_content()
    assert page.locator("main img, main b, main i").count() == 0
    scripts = page.locator("script").evaluate_all("s => s.map(e => [e.getAttribute('src'), e.text.trim()])")
    assert sorted(scripts) == [["/static/app.js", ""], ["/static/pages.js", ""]]

    page.fill("#demand", "xyzzy qwerty")
    page.get_by_role("button", name="匹配", exact=True).click()
    page.wait_for_selector("#status[data-state=done]")
    assert "没有专家" in page.locator("#status").text_content() and page.locator("#team-results").is_hidden()
    page.evaluate("document.getElementById('demand').removeAttribute('maxlength')")
    page.fill("#demand", "焊" * 20_001)
    page.get_by_role("button", name="匹配", exact=True).click()
    page.wait_for_selector("#status[data-state=error]")
    assert "超过上限 20,000 字" in page.locator("#status").text_content()  # the API's 422, in Chinese
    # The browser logs the 422 itself; the page showed it in words.
    assert [p for p in page.problems if "status of 422" not in p] == []


def test_a_demand_of_one_problem_says_so(page, live) -> None:  # noqa: ANN001
    text = "我们厂的不锈钢炒锅用了半年就起皮掉渣，客户投诉多，想找专家看看涂层怎么改进"
    run_team(page, live, text)
    api = httpx.post(f"{live.url}/api/v1/team", json={"text": text, "size": 3}, timeout=60).json()
    assert api["single"] and len(api["aspects"]) == 1
    note = page.locator("#team-single")
    assert note.is_visible() and "只有一个方面" in note.text_content() and "前 3 位" in note.text_content()
    plain = httpx.post(f"{live.url}/api/v1/match", json={"text": text, "top_k": 3}, timeout=60).json()
    assert [m["expert"]["id"] for m in api["team"]] == [m["expert"]["id"] for m in plain["data"]]
    assert page.problems == []
