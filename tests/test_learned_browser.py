"""A matcher that learns from its staff, end to end in a real headless Chromium against a real
uvicorn server (issue 28): verdicts given on a demand's page -> the association they complete is
proposed on /admin/proposals with its evidence, and the next match shows it as a learned chip ->
an administrator accepts it -> it is in the 科协's own thesaurus, the next match reads it from
there, and `matcher thesaurus proposals` lists it as accepted.

The world is `conftest.learned_world` with three of its 烂筒 demands judged: one short of what the
learner needs (four agreeing demands; `tests/test_learned.py`). The fourth is judged on its page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api import create_app
from matcher.accounts import Accounts
from matcher.cli import app
from matcher.config import Settings
from matcher.engine import Engine

from .conftest import ARTIFACTS, MUSHROOM_IDS, browser_tab, learned_world, serve_in_thread

pytestmark = pytest.mark.slow
PASSWORD = "庆元县科协-learned-7"
OWNER = "今年花菇烂筒特别多，想找专家"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Iterator[tuple[str, Engine, Path]]:
    db = tmp_path_factory.mktemp("learned-browser") / "l.db"
    settings = Settings(db=db)
    engine = Engine(settings, tokenizer=tokenizer)
    assert engine.load_demo()
    learned_world(engine, rotten_judged=3)
    Accounts(engine.store, settings).add_user("zhaomin", PASSWORD, "admin")
    with serve_in_thread(create_app(settings, engine=engine)) as url:
        yield url, engine, db
    engine.close()


@pytest.fixture()
def tab(browser):  # noqa: ANN001, ANN201 - Playwright types; `browser` is conftest's
    with browser_tab(browser, timeout_ms=60_000) as pg:
        yield pg


def chip(tab, url: str, term: str):  # noqa: ANN001, ANN201
    """Match the owner's demand on the page; the chip of the added concept `term` (or None)."""
    tab.goto(url + "/")
    tab.fill("#demand", OWNER)
    tab.get_by_role("button", name="匹配", exact=True).click()
    tab.wait_for_selector("#status[data-state=done], #status[data-state=error]")
    found = tab.locator(f'#added-terms .chip.added[data-term="{term}"]')
    return found if found.count() else None


def test_verdicts_on_the_page_teach_a_proposal_an_admin_accepts_and_the_next_match_uses(
        tab, server) -> None:  # noqa: ANN001
    url, engine, db = server
    tab.goto(url + "/admin/proposals")
    assert "/login" in tab.url
    tab.fill("#username", "zhaomin")
    tab.fill("#password", PASSWORD)
    tab.click("#login-button")
    tab.wait_for_url(url + "/admin/proposals")
    # three agreeing demands are not yet enough: nothing proposed, nothing learned in a match
    assert tab.locator('#proposals tr[data-phrase="烂筒"]').count() == 0
    assert chip(tab, url, "木霉") is None

    # the fourth 烂筒 demand judged on its page: its mushroom expert 同意对接, three others 不合适
    tab.goto(url + "/demands/L-3")
    expert = MUSHROOM_IDS[1]
    rows = tab.locator("#recs tbody tr")
    listed = [r.get_attribute("data-expert") for r in rows.all()]
    assert expert in listed
    tab.locator(f'#recs tr[data-expert="{expert}"]').get_by_role("button", name="同意对接").click()
    tab.wait_for_selector("#flash")
    for _ in range(3):
        other = next(r for r in tab.locator("#recs tbody tr").all()
                     if r.get_attribute("data-expert") not in MUSHROOM_IDS
                     and r.locator(".badge").count() == 0)
        other.get_by_role("button", name="不合适").click()
        tab.wait_for_selector("#flash")
    verdicts = [(f.expert_id, f.verdict) for f in engine.store.feedback_entries() if f.demand_id == "L-3"]
    assert verdicts[0] == (expert, "accepted") and [v for _, v in verdicts[1:]] == ["unsuitable"] * 3

    # the next match shows the learned concept, with its evidence
    learned = chip(tab, url, "木霉")
    assert learned is not None and "learned" in learned.get_attribute("class")
    assert learned.text_content().startswith("木霉 ← 烂筒 · 4次对接")
    assert "本会对接记录" in learned.get_attribute("title") and "4 个写有「烂筒」的需求中 4 个" in \
        learned.get_attribute("title")
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "learned-chip.png"), full_page=True)

    # proposed, with its evidence and the demands that taught it
    tab.goto(url + "/admin/proposals")
    row = tab.locator('#proposals tr[data-phrase="烂筒"][data-concept="木霉"]')
    assert row.count() == 1
    assert "4/4 个需求" in row.locator(".evidence").text_content()
    assert "香菇烂筒以后出菇少" in row.text_content()  # L-3, judged a minute ago
    tab.screenshot(path=str(ARTIFACTS / "proposals.png"), full_page=True)
    row.locator('select[name="kind"]').select_option("俗称")
    row.get_by_role("button", name="采纳").click()
    tab.wait_for_selector("#flash")
    flash = tab.locator("#flash").text_content()
    assert "已采纳" in flash and "第 1 版" in flash
    mould = '#proposals tr[data-phrase="烂筒"][data-concept="木霉"]'
    assert tab.locator(mould).count() == 0  # no longer open
    assert "第 1 版（当前）" in tab.locator("#thesaurus-versions").text_content()
    tab.get_by_role("link", name="已采纳（1）").click()
    assert tab.locator(mould).count() == 1

    # the next match reads it from the own thesaurus, as a 俗称 entry, not from the learned source
    used = chip(tab, url, "木霉")
    assert used is not None and "thesaurus" in used.get_attribute("class")
    assert used.text_content().startswith("木霉 ← 烂筒") and "次对接" not in used.text_content()
    got = {e.term: e for e in engine.understand(OWNER).expanded}
    assert (got["木霉"].source, got["木霉"].kind) == ("thesaurus", "俗称")
    entries, _ = engine.store.list_audit(actor="zhaomin", action="proposal.accept")
    assert entries and entries[0].detail["evidence"]["demands"] == 4

    # and the command line sees the same
    res = CliRunner().invoke(app, ["thesaurus", "proposals", "--status", "accepted", "--db", str(db)])
    assert res.exit_code == 0, res.output
    assert "已采纳  烂筒 -> 木霉" in res.stdout
    assert tab.problems == []
