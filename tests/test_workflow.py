"""The staff's working loop in the library: verdicts that count (live, in the batch, in its exclusion
trace), paused experts, statuses that follow the verdicts, the inbox, an expert's history, and the
audit entry every write leaves. On the demo corpus, a real SQLite file per test."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from matcher.batch import BatchOptions, run_batch
from matcher.config import Settings
from matcher.engine import Engine, exclusion_kind
from matcher.errors import InputError, NotFoundError
from matcher.models import Demand
from matcher.workflow import Workflow, key_actor

from .conftest import THERMOS, copy_db, demo_template

STAFF = "staff:lihua"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    """The demo corpus with its index built; each test copies it (a build costs seconds)."""
    return demo_template(tmp_path_factory.mktemp("loop-template"), tokenizer)


@pytest.fixture()
def engine(tmp_path: Path, template: Path, tokenizer) -> Engine:
    db = copy_db(template, tmp_path)
    e = Engine(Settings(db=db), tokenizer=tokenizer)
    yield e
    e.close()


def ranked(engine: Engine, demand_id: str, k: int = 10) -> list[str]:
    return [m.expert.id for m in engine.match_demand(engine.store.get_demand(demand_id), top_k=k)]


def audit_actions(engine: Engine) -> list[tuple[str, str, str]]:
    entries, _ = engine.store.list_audit(limit=1000)
    return [(a.actor, a.action, a.target) for a in reversed(entries)]


# -- verdicts that count -------------------------------------------------------------------------
@pytest.mark.parametrize("verdict", ["declined", "unsuitable", "婉拒", "不合适"])
def test_a_declined_expert_leaves_the_live_ranking_of_that_demand_only(engine: Engine, verdict: str) -> None:
    loop = Workflow(engine)
    before = ranked(engine, "Q0001")
    top = before[0]
    entry = loop.record_feedback(STAFF, "Q0001", top, verdict, "出差三个月")
    assert entry.verdict in ("declined", "unsuitable") and entry.actor == STAFF and entry.note == "出差三个月"
    after = ranked(engine, "Q0001")
    assert top not in after
    assert after == [e for e in ranked_without_feedback(engine, "Q0001", 11) if e != top][:10]
    # Another demand that ranks the same expert still gets them.
    assert top in ranked(engine, "Q0005", 20)
    # The API's live ranking and the engine's exclusions name the reason.
    reasons = engine.feedback_exclusions("Q0001")
    assert list(reasons) == [top]
    assert exclusion_kind(reasons[top]) in ("婉拒", "不合适") and STAFF in reasons[top]


def ranked_without_feedback(engine: Engine, demand_id: str, k: int) -> list[str]:
    d = engine.store.get_demand(demand_id)
    return [m.expert.id for m in engine.match_demand(d, top_k=k, feedback=False)]


def test_contacted_and_accepted_do_not_exclude(engine: Engine) -> None:
    loop = Workflow(engine)
    top = ranked(engine, "Q0001")[:2]
    loop.record_feedback(STAFF, "Q0001", top[0], "contacted")
    loop.record_feedback(STAFF, "Q0001", top[1], "accepted")
    assert ranked(engine, "Q0001")[:2] == top


def test_declined_pairs_never_reappear_in_the_batch_even_under_a_new_run_key(engine: Engine) -> None:
    loop = Workflow(engine)
    first = run_batch(engine, BatchOptions(run_key="night-1"))
    recs = {m.expert_id for m in engine.store.list_batch_matches(first.run.id, "Q0001")}
    declined = sorted(recs)[:2]
    loop.record_feedback(STAFF, "Q0001", declined[0], "declined", "不接企业项目")
    loop.record_feedback(STAFF, "Q0001", declined[1], "unsuitable")
    # Staff send the demand round again: it is `new`, so the next night's run takes it.
    loop.set_status(STAFF, "Q0001", "new")
    second = run_batch(engine, BatchOptions(run_key="night-2"))
    again = {m.expert_id for m in engine.store.list_batch_matches(second.run.id, "Q0001")}
    assert again and not again & set(declined)
    trace = {
        x.expert_id: x.reason
        for x in engine.store.list_batch_exclusions(second.run.id)
        if x.demand_id == "Q0001"
    }
    assert trace[declined[0]].startswith("婉拒：") and exclusion_kind(trace[declined[0]]) == "婉拒"
    assert trace[declined[1]].startswith("不合适：") and exclusion_kind(trace[declined[1]]) == "不合适"
    # The other demands of the night were not re-run (they were not new) and the stored list of the
    # demand is the second run's.
    assert {m.demand_id for m in engine.store.list_batch_matches(second.run.id)} == {"Q0001"}
    recs2 = loop.recommendations("Q0001")
    assert recs2.source == "batch" and recs2.run.run_key == "night-2"
    assert not {r.expert.id for r in recs2.items} & set(declined)
    assert {x.expert.id for x in recs2.excluded} == set(declined)


def test_a_forced_rerun_of_the_same_key_also_leaves_declined_pairs_out(engine: Engine) -> None:
    loop = Workflow(engine)
    run_batch(engine, BatchOptions(run_key="k"))
    top = loop.recommendations("Q0002").items[0].expert.id
    loop.record_feedback(STAFF, "Q0002", top, "declined")
    rerun = run_batch(engine, BatchOptions(run_key="k", force=True))
    assert top not in {m.expert_id for m in engine.store.list_batch_matches(rerun.run.id, "Q0002")}
    assert any(
        x.expert_id == top and x.demand_id == "Q0002"
        for x in engine.store.list_batch_exclusions(rerun.run.id)
    )


def test_stored_recommendations_drop_an_expert_declined_after_the_run(engine: Engine) -> None:
    loop = Workflow(engine)
    run_batch(engine, BatchOptions(run_key="n"))
    items = loop.recommendations("Q0003").items
    assert items and all(r.run_key == "n" for r in items)
    gone = items[1].expert.id
    loop.record_feedback(STAFF, "Q0003", gone, "不合适")
    kept = loop.recommendations("Q0003")
    assert [r.expert.id for r in kept.items] == [r.expert.id for r in items if r.expert.id != gone]
    # renumbered: a list never starts at 2 or skips a rank because an expert was ruled out (issue 23)
    assert [r.rank for r in kept.items] == list(range(1, len(items)))
    assert engine.store.top_recommended(["Q0003"])["Q0003"] == [
        (r.expert.id, r.expert.name) for r in kept.items[:3]
    ]


def test_live_recommendations_when_no_run_made_any(engine: Engine) -> None:
    recs = Workflow(engine).recommendations("Q0001")
    assert recs.source == "live" and recs.run is None
    assert [r.expert.id for r in recs.items] == ranked(engine, "Q0001")
    assert all(r.run_key is None and r.verdict is None for r in recs.items)


# -- paused experts ------------------------------------------------------------------------------
def test_a_paused_expert_is_left_out_of_the_batch_and_flagged_live(engine: Engine) -> None:
    loop = Workflow(engine)
    top = ranked(engine, "Q0001")[0]
    until = date.today() + timedelta(days=30)
    pause = loop.pause(STAFF, top, until, "出国访学")
    assert (pause.until, pause.reason, pause.actor) == (until.isoformat(), "出国访学", STAFF)
    # Live: still ranked, and flagged.
    assert ranked(engine, "Q0001")[0] == top
    recs = loop.recommendations("Q0001")
    assert recs.items[0].expert.id == top and recs.items[0].paused == pause
    # The batch: left out, with the reason in its trace.
    run = run_batch(engine, BatchOptions(run_key="p")).run
    assert top not in {m.expert_id for m in engine.store.list_batch_matches(run.id)}
    reasons = {x.reason for x in engine.store.list_batch_exclusions(run.id) if x.expert_id == top}
    assert reasons == {f"暂停推荐：至 {until.isoformat()}（出国访学）"}
    assert loop.resume(STAFF, top) is True and loop.resume(STAFF, top) is False
    again = run_batch(engine, BatchOptions(run_key="p", force=True)).run
    assert top in {m.expert_id for m in engine.store.list_batch_matches(again.id)}


def test_a_pause_ends_after_its_last_day(engine: Engine) -> None:
    loop = Workflow(engine)
    loop.pause(STAFF, "X0001", date.today(), "")
    assert "X0001" in engine.pauses()
    assert "X0001" not in engine.pauses(date.today() + timedelta(days=1))
    loop.pause(STAFF, "X0002", date.today() - timedelta(days=1))  # a day past pauses nothing
    assert "X0002" not in engine.pauses()


def test_pause_input_is_checked_and_nothing_is_written(engine: Engine) -> None:
    loop = Workflow(engine)
    with pytest.raises(InputError, match="2026-13-01"):
        loop.pause(STAFF, "X0001", "2026-13-01")
    with pytest.raises(InputError, match="reason"):
        loop.pause(STAFF, "X0001", date.today(), "很长" * 101)
    with pytest.raises(NotFoundError, match="nobody"):
        loop.pause(STAFF, "nobody", date.today())
    assert engine.store.get_pause("X0001") is None
    assert audit_actions(engine) == []


# -- statuses ------------------------------------------------------------------------------------
def test_verdicts_move_the_status_forward_never_back(engine: Engine) -> None:
    loop = Workflow(engine)
    store = engine.store
    assert store.get_demand("Q0004").status == "new"
    loop.record_feedback(STAFF, "Q0004", "X0008", "declined")
    assert store.get_demand("Q0004").status == "new"
    loop.record_feedback(STAFF, "Q0004", "X0008", "contacted")
    assert store.get_demand("Q0004").status == "contacted"
    loop.record_feedback(STAFF, "Q0004", "X0093", "accepted")
    assert store.get_demand("Q0004").status == "connected"
    loop.record_feedback(STAFF, "Q0004", "X0093", "contacted")
    assert store.get_demand("Q0004").status == "connected"
    loop.set_status(STAFF, "Q0004", "已关闭")
    loop.record_feedback(STAFF, "Q0004", "X0093", "succeeded")
    assert store.get_demand("Q0004").status == "closed"  # a verdict never reopens a closed demand


def test_bad_statuses_and_verdicts_are_refused_with_the_choices(engine: Engine) -> None:
    loop = Workflow(engine)
    with pytest.raises(InputError, match=r"已联系.*contacted"):
        loop.set_status(STAFF, "Q0001", "done")
    with pytest.raises(InputError, match=r"不合适.*unsuitable"):
        loop.record_feedback(STAFF, "Q0001", "X0001", "liked")
    with pytest.raises(InputError, match="note"):
        loop.record_feedback(STAFF, "Q0001", "X0001", "contacted", "字" * 2001)
    with pytest.raises(NotFoundError, match="X9999"):
        loop.record_feedback(STAFF, "Q0001", "X9999", "contacted")
    with pytest.raises(NotFoundError, match="Q9999"):
        loop.set_status(STAFF, "Q9999", "closed")
    assert engine.store.feedback_entries() == [] and audit_actions(engine) == []
    assert engine.store.get_demand("Q0001").status == "new"


def test_the_batch_still_reads_new_demands_and_imports_take_chinese_statuses(engine: Engine) -> None:
    d = Demand.from_dict({"id": "Z1", "title": "激光焊接气孔", "status": "已对接"})
    assert d.status == "connected"
    with pytest.raises(InputError, match="已关闭"):
        Demand.from_dict({"id": "Z2", "title": "x", "status": "finished"})
    engine.add_demands([d, Demand.from_dict({"id": "Z3", "title": "激光焊接气孔"})])
    run = run_batch(engine, BatchOptions(run_key="z")).run
    picked = {o.demand_id for o in engine.store.list_batch_outcomes(run.id)}
    assert "Z3" in picked and "Z1" not in picked


# -- the inbox and the history -------------------------------------------------------------------
def test_the_inbox_filters_pages_and_shows_the_top_three(engine: Engine) -> None:
    loop = Workflow(engine)
    run_batch(engine, BatchOptions(run_key="i"))
    everything = loop.inbox(limit=500)
    assert everything.total == 56 and len(everything.rows) == 56
    created = [r.demand.created_at for r in everything.rows]
    assert created == sorted(created, reverse=True)  # newest first
    assert everything.statuses == {"new": 0, "matched": 56, "contacted": 0, "connected": 0, "closed": 0}
    for row in everything.rows:
        stored = engine.store.list_batch_matches(demand_id=row.demand.id)
        assert [e for e, _ in row.top] == [m.expert_id for m in stored][:3]
    yk = loop.inbox(region="永康", industry="保温杯", limit=500)
    assert {r.demand.id for r in yk.rows} == {"Q0001", "Q0002", "Q0004", "Q0005"}
    window = loop.inbox(date_from="2026-11-03", date_to="2026-11-04", limit=500)
    assert sorted(r.demand.id for r in window.rows) == ["Q0003", "Q0004", "Q0034", "Q0035"]
    loop.set_status(STAFF, "Q0010", "closed")
    closed = loop.inbox(status="已关闭")
    assert [r.demand.id for r in closed.rows] == ["Q0010"] and closed.statuses["closed"] == 1
    page2 = loop.inbox(limit=20, offset=20)
    assert [r.demand.id for r in page2.rows] == [r.demand.id for r in everything.rows[20:40]]
    with pytest.raises(InputError, match="2026-02-30"):
        loop.inbox(date_from="2026-02-30")
    with pytest.raises(InputError, match="limit"):
        loop.inbox(limit=0)


def test_an_experts_history_counts_distinct_demands(engine: Engine) -> None:
    loop = Workflow(engine)
    run = run_batch(engine, BatchOptions(run_key="h")).run
    expert = "X0004"
    recommended = {m.demand_id for m in engine.store.list_batch_matches(run.id) if m.expert_id == expert}
    assert recommended
    for verdict, demand in (
        ("contacted", "Q0001"),
        ("contacted", "Q0001"),
        ("contacted", "Q0002"),
        ("accepted", "Q0002"),
        ("succeeded", "Q0002"),
        ("declined", "Q0005"),
    ):
        loop.record_feedback(STAFF, demand, expert, verdict)
    h = loop.expert_history(expert)
    assert (h.recommended, h.contacted, h.accepted, h.succeeded, h.declined, h.unsuitable) == (
        len(recommended),
        2,
        1,
        1,
        1,
        0,
    )
    assert [e.verdict for e in h.events] == [
        "declined",
        "succeeded",
        "accepted",
        "contacted",
        "contacted",
        "contacted",
    ]
    assert h.events[0].title == engine.store.get_demand("Q0005").title


# -- the audit log -------------------------------------------------------------------------------
def test_every_write_and_contact_view_leaves_one_audit_entry(engine: Engine) -> None:
    loop = Workflow(engine)
    key = key_actor("secret-key-1")
    assert key.startswith("key:") and "secret" not in key
    loop.record_feedback(STAFF, "Q0001", "X0001", "contacted", "电话")
    loop.set_status(key, "Q0001", "closed")
    loop.pause(STAFF, "X0002", date.today(), "住院")
    loop.resume(STAFF, "X0002")
    contact = loop.contact(STAFF, "X0003", where="demand Q0002", ip="10.0.0.7")
    assert contact == engine.store.get_expert("X0003").contact and contact.phone
    loop.log_contact_view(key, ["X0001", "X0002", "X0001"], where="match")
    assert audit_actions(engine) == [
        (STAFF, "feedback.add", "demand:Q0001"),
        (key, "demand.status", "demand:Q0001"),
        (STAFF, "expert.pause", "expert:X0002"),
        (STAFF, "expert.resume", "expert:X0002"),
        (STAFF, "contact.view", "expert:X0003"),
        (key, "contact.view", "experts:2"),
    ]
    entries, total = engine.store.list_audit(limit=10)
    assert total == 6
    assert entries[0].detail == {"experts": ["X0001", "X0002"], "where": "match"}
    assert entries[1].ip == "10.0.0.7"
    assert entries[4].detail == {"from": "contacted", "to": "closed"}
    # Filters: by user (a bare name means staff:NAME), by action family, by day.
    assert {a.actor for a in engine.store.list_audit(actor="lihua")[0]} == {STAFF}
    assert [a.action for a in engine.store.list_audit(action="expert.")[0]] == [
        "expert.resume",
        "expert.pause",
    ]
    today = date.today().isoformat()
    assert engine.store.list_audit(date_from=today, date_to=today)[1] == 6
    assert engine.store.list_audit(date_to="2000-01-01")[1] == 0


def test_a_write_and_its_audit_entry_commit_together(engine: Engine, monkeypatch) -> None:
    loop = Workflow(engine)

    def broken(*args, **kwargs):
        raise RuntimeError("disk trouble")

    monkeypatch.setattr(engine.store, "audit", broken)
    with pytest.raises(RuntimeError):
        loop.record_feedback(STAFF, "Q0001", "X0001", "declined")
    with pytest.raises(RuntimeError):
        loop.set_status(STAFF, "Q0001", "closed")
    monkeypatch.undo()
    assert engine.store.feedback_entries() == []
    assert engine.store.get_demand("Q0001").status == "new"
    assert "X0001" in ranked(engine, "Q0001")


def test_match_text_is_unaffected_by_feedback(engine: Engine) -> None:
    """A pasted text belongs to no demand: verdicts on demands do not touch it."""
    before = [m.expert.id for m in engine.match(THERMOS)]
    Workflow(engine).record_feedback(STAFF, "Q0001", before[0], "declined")
    assert [m.expert.id for m in engine.match(THERMOS)] == before
