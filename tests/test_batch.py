"""The nightly batch on the demo corpus: rules, capacities, idempotency, kill -9, reports, the CLI."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from matcher import assign
from matcher.batch import (
    PROBLEM_COLUMNS,
    RECOMMENDATION_COLUMNS,
    BatchOptions,
    exclusive,
    run_batch,
    write_report,
)
from matcher.cli import app
from matcher.config import DEFAULT_CORPORA
from matcher.engine import Engine
from matcher.errors import InputError, StoreError
from matcher.models import Demand
from matcher.records import BatchRun
from matcher.store import Store

from .conftest import build_template, copy_db, open_engine

DEMO = DEFAULT_CORPORA / "demo"
FORMULA_TITLE = "=HYPERLINK(\"http://x\")不锈钢保温杯激光焊接"


@pytest.fixture(scope="module")
def template(tmp_path_factory, tokenizer) -> Path:
    return build_template(tmp_path_factory.mktemp("batch-template"), tokenizer)


@pytest.fixture(scope="module")
def small_template(tmp_path_factory, tokenizer) -> Path:
    """Demo experts and the first 12 demo demands: for tests that run the batch several times."""
    return build_template(tmp_path_factory.mktemp("batch-small"), tokenizer, n_demands=12)


def rows(store: Store, run: BatchRun) -> list[tuple[str, str, int, float]]:
    return [(m.demand_id, m.expert_id, m.rank, round(m.score, 6)) for m in store.list_batch_matches(run.id)]


@pytest.fixture(scope="module")
def done(tmp_path_factory, template, tokenizer):
    """One finished run over all demo demands, plus a demand with no text and one whose title is a
    formula; read-only for the tests that use it."""
    db = copy_db(template, tmp_path_factory.mktemp("batch-done"))
    engine = open_engine(db, tokenizer)
    # A demand with no text is refused by every writer (`matcher.validate`); one stored by an older
    # version, or by hand, must still not stop the night.
    engine.store.upsert_demands([Demand.from_dict({"id": "Z-EMPTY", "enterprise": "某公司"})])
    engine.add_demands([
        Demand.from_dict({"id": "Z-FORMULA", "title": FORMULA_TITLE, "description": "真空层焊接合格率低"}),
    ])
    new_before = {d.id for d in engine.store.iter_demands("new")}
    result = run_batch(engine, BatchOptions(run_key="2026-11-23", top=10, max_per_expert=5))
    yield engine, result.run, new_before
    engine.close()


# -- the rules ---------------------------------------------------------------------------------------
def test_every_new_demand_is_matched_within_the_capacities(done) -> None:
    engine, run, new_before = done
    store = engine.store
    assert run.status == "done" and run.demands == len(new_before) >= 50
    matches = store.list_batch_matches(run.id)
    assert len(matches) == run.recommendations > 0
    pairs = Counter((m.demand_id, m.expert_id) for m in matches)
    assert max(pairs.values()) == 1, "a (demand, expert) pair was written twice"
    per_expert = Counter(m.expert_id for m in matches)
    assert max(per_expert.values()) <= 5
    assert sum(v == 5 for v in per_expert.values()) > 0, "the capacity should bind on the demo corpus"
    by_demand = defaultdict(list)
    for m in matches:
        by_demand[m.demand_id].append(m)
    for ms in by_demand.values():
        assert [m.rank for m in ms] == list(range(1, len(ms) + 1)) and len(ms) <= 10
        assert [m.score for m in ms] == sorted((m.score for m in ms), reverse=True)
        assert all(m.explanation.signals for m in ms), "every recommendation is stored explained"
        assert sum(bool(m.explanation.terms) for m in ms) >= len(ms) // 2
    matched = {d.id for d in store.iter_demands("matched")}
    assert set(by_demand) == matched & new_before and len(by_demand) == run.matched
    assert {d.id for d in store.iter_demands("new")} == new_before - set(by_demand) == {"Z-EMPTY"}


def test_no_recommendation_breaks_a_rule_and_every_exclusion_is_recorded(done) -> None:
    engine, run, new_before = done
    store = engine.store
    experts = {e.id: e for e in store.iter_experts()}
    for m in store.list_batch_matches(run.id):
        assert Engine.conflicts(store.get_demand(m.demand_id), [experts[m.expert_id]]) == []
    recorded = {(x.demand_id, x.expert_id): x.reason for x in store.list_batch_exclusions(run.id)}
    assert len(recorded) == run.exclusions
    # Independently: rank with the rules switched off, then ask the rules who among the ranked is out.
    expected = {}
    for demand in store.iter_demands():
        if demand.id not in new_before or not demand.text:
            continue
        free = replace(demand, enterprise="", avoid_institutions=(), avoid_experts=())
        ranked = engine.demand_candidates(free, 1000).ranked
        assert not engine.demand_candidates(free, 1000).excluded
        for expert, reason in Engine.conflicts(demand, [m.expert for m in ranked]):
            expected[(demand.id, expert.id)] = reason
    assert recorded == expected
    rules = {
        "就职于提出需求的企业": "enterprise",
        "在需求的回避单位中": "institution",
        "在需求的回避专家中": "named",
    }
    kinds = {next((k for w, k in rules.items() if w in r), r) for r in recorded.values()}
    assert {"enterprise", "institution", "named"} <= kinds, "the demo corpus exercises all three 回避 rules"


def test_candidates_are_ranked_like_matcher_match(done) -> None:
    engine, _, _ = done
    for demand in list(engine.store.iter_demands())[:12]:
        if not demand.text:
            continue
        found = engine.demand_candidates(demand, 10, explain=10)
        live = engine.match_demand(demand, top_k=10)
        assert [(m.expert.id, m.score) for m in found.ranked] == [(m.expert.id, m.score) for m in live]
        assert [m.explanation for m in found.ranked] == [m.explanation for m in live]


def test_short_demands_say_why_and_the_assignment_is_optimal(done) -> None:
    engine, run, _ = done
    store = engine.store
    outcomes = {o.demand_id: o for o in store.list_batch_outcomes(run.id)}
    assert outcomes["Z-EMPTY"].error and "empty" in outcomes["Z-EMPTY"].reason
    short = [o for o in outcomes.values() if o.assigned < run.top]
    assert short and all(o.reason for o in short)
    assert sum(bool(o.reason) for o in outcomes.values()) == run.unfilled
    table = store.batch_candidate_table(run.id)
    load = Counter(m.expert_id for m in store.list_batch_matches(run.id))
    chosen_pairs = {(m.demand_id, m.expert_id) for m in store.list_batch_matches(run.id)}
    for d, e in zip(table.demand_ids, table.expert_ids, strict=True):
        if outcomes[d].assigned < run.top and (d, e) not in chosen_pairs:
            assert load[e] == run.max_per_expert, f"{d} is short but expert {e} had room"
    # The joint solution carries at least the weight that greedy first-come would.
    d_ix = {d: i for i, d in enumerate(dict.fromkeys(table.demand_ids))}
    e_ix = {e: i for i, e in enumerate(dict.fromkeys(table.expert_ids))}
    d_arr = np.array([d_ix[d] for d in table.demand_ids])
    e_arr = np.array([e_ix[e] for e in table.expert_ids])
    w = assign.rank_weights(table.scores, table.ranks)
    chosen = np.array([p in chosen_pairs for p in zip(table.demand_ids, table.expert_ids, strict=True)])
    gr = assign.greedy(d_arr, e_arr, w, per_demand=run.top, per_expert=run.max_per_expert)
    assert w[chosen].sum() >= gr.objective - 1e-9
    assert run.total_score == pytest.approx(table.scores[chosen].sum())


# -- idempotency, selection ------------------------------------------------------------------------
def test_the_same_run_key_twice_writes_nothing_and_force_recomputes(tmp_path, small_template,
                                                                    tokenizer) -> None:
    engine = open_engine(copy_db(small_template, tmp_path), tokenizer)
    store = engine.store
    first = run_batch(engine, BatchOptions(run_key="k", top=5, max_per_expert=3))
    before = rows(store, first.run)
    again = run_batch(engine, BatchOptions(run_key="k", top=5, max_per_expert=3))
    assert again.reused and again.scored == 0 and rows(store, again.run) == before
    assert len(store.list_batch_matches()) == len(before) and len(store.list_batch_runs()) == 1
    late = Demand.from_dict({"id": "LATE", "title": "保温杯激光焊接", "description": "焊缝漏气"})
    engine.add_demands([late])
    assert run_batch(engine, BatchOptions(run_key="k", top=5, max_per_expert=3)).reused
    forced = run_batch(engine, BatchOptions(run_key="k", top=5, max_per_expert=1, force=True))
    assert not forced.reused and forced.run.attempts == 2 and forced.run.id == first.run.id
    after = store.list_batch_matches()
    assert len(after) == forced.run.recommendations and forced.run.demands == first.run.demands + 1
    assert max(Counter(m.expert_id for m in after).values()) == 1
    assert "LATE" in {m.demand_id for m in after}
    assert len(set((m.demand_id, m.expert_id) for m in after)) == len(after)
    engine.close()


def test_a_later_run_key_takes_only_what_is_new(tmp_path, small_template, tokenizer) -> None:
    engine = open_engine(copy_db(small_template, tmp_path), tokenizer)
    store = engine.store
    first = run_batch(engine, BatchOptions(run_key="day1", top=5, max_per_expert=3)).run
    later = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0).isoformat()
    engine.add_demands([
        Demand.from_dict({"id": "NEW", "title": "指纹锁识别慢", "description": "湿手识别率低"}),
        # marked matched by hand after the last run, never recommended anything: taken too
        Demand.from_dict({"id": "MARKED", "title": "割草机器人定位", "status": "matched",
                          "created_at": later}),
        # matched long before the last run: left alone
        Demand.from_dict({"id": "OLD", "title": "割草机器人定位", "status": "matched",
                          "created_at": "2000-01-01T00:00:00+00:00"}),
    ])
    second = run_batch(engine, BatchOptions(run_key="day2", top=5, max_per_expert=3)).run
    assert second.demands == 2
    assert {m.demand_id for m in store.list_batch_matches(second.id)} == {"NEW", "MARKED"}
    assert len(store.list_batch_matches(first.id)) == first.recommendations
    assert run_batch(engine, BatchOptions(run_key="day3")).run.demands == 0
    engine.close()


def test_a_run_left_running_by_a_dead_process_is_interrupted_and_taken_over(tmp_path, small_template,
                                                                           tokenizer) -> None:
    engine = open_engine(copy_db(small_template, tmp_path), tokenizer)
    store = engine.store
    dead = store.create_batch_run("dead", top=5, max_per_expert=3, candidates=300)
    assert store.select_batch_demands(dead.id, None) == 12
    now = run_batch(engine, BatchOptions(run_key="now", top=5, max_per_expert=3)).run
    assert store.get_batch_run("dead").status == "interrupted" and now.demands == 12
    # Finishing the old key later duplicates nothing: its demands were matched meanwhile.
    old = run_batch(engine, BatchOptions(run_key="dead", top=5, max_per_expert=3)).run
    assert old.status == "done" and old.demands == 0 and old.recommendations == 0
    assert len(store.list_batch_matches()) == now.recommendations
    engine.close()


def test_a_failed_run_is_marked_and_the_next_attempt_finishes_it(tmp_path, small_template, tokenizer) -> None:
    engine = open_engine(copy_db(small_template, tmp_path), tokenizer)
    store = engine.store

    def crash(phase: str, done: int, total: int) -> None:
        if phase == "score" and done == 4:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        run_batch(engine, BatchOptions(run_key="k", top=5, max_per_expert=3), progress=crash)
    failed = store.get_batch_run("k")
    assert failed.status == "failed" and "disk on fire" in failed.message and not store.list_batch_matches()
    result = run_batch(engine, BatchOptions(run_key="k", top=5, max_per_expert=3))
    assert result.resumed == 4 and result.scored == 8 and result.run.status == "done"
    engine.close()


def test_a_second_batch_on_the_same_database_is_refused(tmp_path, small_template, tokenizer) -> None:
    db = copy_db(small_template, tmp_path)
    engine = open_engine(db, tokenizer)
    with exclusive(db), pytest.raises(StoreError, match="another `matcher batch` is running"):
        run_batch(engine, BatchOptions(run_key="k"))
    assert engine.store.list_batch_runs() == []
    engine.close()


@pytest.mark.parametrize("options,message", [
    (BatchOptions(run_key=""), "run key"),
    (BatchOptions(run_key="k", top=0), "--top"),
    (BatchOptions(run_key="k", max_per_expert=0), "--max-per-expert"),
    (BatchOptions(run_key="k", top=20, candidates=10), "candidates"),
])
def test_bad_options_are_refused(options, message, engine) -> None:
    with pytest.raises(InputError, match=message):
        run_batch(engine, options)


def test_an_empty_database_is_a_clear_error(engine) -> None:
    with pytest.raises(InputError, match="no experts"):
        run_batch(engine, BatchOptions(run_key="k"))


# -- kill -9 -----------------------------------------------------------------------------------------
def batch_process(db: Path, key: str) -> list[str]:
    return [sys.executable, "-m", "matcher", "batch", "--db", str(db), "--run-key", key]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATCHER_")}
    return {**env, **extra}


def test_phase_one_explains_the_head_so_phase_two_scores_only_what_capacity_moved_down(
        tmp_path, small_template, tokenizer, monkeypatch) -> None:
    engine = open_engine(copy_db(small_template, tmp_path / "head"), tokenizer)
    asked: list[tuple[str, tuple[str, ...]]] = []
    real = engine.explain_demand

    def counting(demand, expert_ids):
        ids = tuple(expert_ids)
        asked.append((demand.id, ids))
        return real(demand, ids)

    monkeypatch.setattr(engine, "explain_demand", counting)
    # Room for everyone: the assignment takes each demand's first five, all explained in phase 1.
    run = run_batch(engine, BatchOptions(run_key="roomy", top=5, max_per_expert=1000)).run
    assert asked == []
    matches = engine.store.list_batch_matches(run.id)
    assert matches and all(m.candidate_rank <= 5 for m in matches)
    # Those explanations are the ones a separate explanation of the same demand gives.
    for m in matches[:10]:
        again = real(engine.store.get_demand(m.demand_id), [m.expert_id])[m.expert_id]
        stored = m.explanation  # the store keeps scores to 4 decimals
        assert stored.terms == again.terms and stored.terms
        assert [(e.field, e.text, e.terms) for e in stored.evidence] == [(e.field, e.text, e.terms) for e in again.evidence]
        assert [e.score for e in stored.evidence] == pytest.approx([e.score for e in again.evidence], abs=1e-3)
        assert stored.signals == pytest.approx(again.signals, abs=1e-3)
    # Tight capacity pushes some assignments below the head: only their demands are scored again,
    # and only for those experts.
    engine.close()
    engine = open_engine(copy_db(small_template, tmp_path / "tight"), tokenizer)
    real = engine.explain_demand
    monkeypatch.setattr(engine, "explain_demand", counting)
    tight = run_batch(engine, BatchOptions(run_key="tight", top=5, max_per_expert=1)).run
    moved = {(m.demand_id, m.expert_id) for m in engine.store.list_batch_matches(tight.id) if m.candidate_rank > 5}
    assert moved
    assert {(d, e) for d, ids in asked for e in ids} == moved
    engine.close()


def start_and_kill(db: Path, cwd: Path, delay: str, ready) -> None:
    """Start a real `matcher batch` process, SIGKILL it as soon as `ready()` is true."""
    proc = subprocess.Popen(batch_process(db, "night"), env=child_env(MATCHER_BATCH_TEST_DELAY=delay),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    deadline = time.monotonic() + 240
    try:
        while not ready():
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "the batch never got there"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def test_a_run_killed_twice_with_sigkill_resumes_losing_and_duplicating_nothing(tmp_path, template,
                                                                               tokenizer) -> None:
    db = copy_db(template, tmp_path / "killed")
    store = Store(db)

    def scored(at_least: int) -> bool:
        run = store.get_batch_run("night")
        return run is not None and store.count_batch_demands(run.id, scored=True) >= at_least

    def explained() -> int:
        """Demands with an explanation made in phase 2: phase 1 explains each demand's first `top`
        candidates, phase 2 the assigned experts below them (capacity moved them down)."""
        run = store.get_batch_run("night")
        return store.db.execute(
            "SELECT count(DISTINCT demand_id) FROM batch_candidates "
            "WHERE run_id = ? AND rank > ? AND explanation IS NOT NULL", [run.id, run.top]).fetchone()[0]

    # Killed while scoring (phase 1) ...
    start_and_kill(db, tmp_path, "0.4", lambda: scored(5))
    run = store.get_batch_run("night")
    total = store.count_batch_demands(run.id)
    first = store.count_batch_demands(run.id, scored=True)
    assert run.status == "running" and 5 <= first < total
    assert store.list_batch_matches() == [] and not list(store.iter_demands("matched"))
    # ... then, resumed, killed again while explaining the assigned experts (phase 2).
    start_and_kill(db, tmp_path, "0.15", lambda: scored(total) and explained() >= 3)
    run = store.get_batch_run("night")
    assert run.status == "running" and run.attempts == 2 and 3 <= explained() < total
    assert store.list_batch_matches() == []

    rerun = subprocess.run(batch_process(db, "night"), env=child_env(), capture_output=True, text=True,
                           cwd=tmp_path, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming (attempt 3); {total} of {total} demands were scored already" in rerun.stderr
    run = store.get_batch_run("night")
    assert run.status == "done" and run.attempts == 3 and run.demands == total
    matches = store.list_batch_matches()
    assert len(matches) == run.recommendations
    assert max(Counter((m.demand_id, m.expert_id) for m in matches).values()) == 1
    outcomes = store.list_batch_outcomes(run.id)
    assert len(outcomes) == total and all(o.candidates > 0 for o in outcomes)
    assert {m.demand_id for m in matches} == {o.demand_id for o in outcomes}
    assert not list(store.iter_demands("new"))
    # The same night without the kills gives the very same recommendations, explained alike.
    clean = open_engine(copy_db(template, tmp_path / "clean"), tokenizer)
    clean_run = run_batch(clean, BatchOptions(run_key="night")).run
    assert rows(clean.store, clean_run) == rows(store, run)
    assert [m.explanation for m in clean.store.list_batch_matches()] == [m.explanation for m in matches]
    clean.close()
    store.close()


# -- reports -----------------------------------------------------------------------------------------
def test_the_xlsx_report_reads_back(done, tmp_path) -> None:
    engine, run, _ = done
    [path] = write_report(engine.store, run, tmp_path / "out.xlsx")
    wb = load_workbook(path)
    assert wb.sheetnames == ["推荐", "排除与未满额", "运行"]
    recs = list(wb["推荐"].iter_rows(values_only=True))
    assert recs[0] == RECOMMENDATION_COLUMNS and len(recs) - 1 == run.recommendations
    first = engine.store.list_batch_matches(run.id)[0]
    demand = engine.store.get_demand(first.demand_id)
    expert = engine.store.get_expert(first.expert_id)
    x = first.explanation
    terms = "、".join(f"{t}←{x.expanded[t]}" if t in x.expanded else t for t in x.terms)
    assert x.strength is not None  # stored with the explanation, read back with it
    assert recs[1] == (demand.id, demand.title, demand.enterprise, 1, expert.id, expert.name,
                       expert.institution, round(x.strength, 4), x.level, terms,
                       None, None)  # 组团, 覆盖方面: empty for a ranked list (no --team)
    # 匹配词 says which terms the understanding stage added, and for which of the demand's phrases
    stored = engine.store.list_batch_matches(run.id)
    added = [(m, t) for m in stored for t in m.explanation.terms if t in m.explanation.expanded]
    assert added, "the demo demands have expanded terms among their matches"
    m, t = added[0]
    cell = next(r[9] for r in recs[1:] if (r[0], r[4]) == (m.demand_id, m.expert_id))
    assert f"{t}←{m.explanation.expanded[t]}" in cell.split("、")
    problems = list(wb["排除与未满额"].iter_rows(values_only=True))
    assert problems[0] == PROBLEM_COLUMNS
    kinds = Counter(r[0] for r in problems[1:])
    assert kinds == {"回避排除": run.exclusions, "未满额": run.unfilled}
    assert all(r[8] for r in problems[1:]), "every row says why"
    formula = [c for row in wb["推荐"].iter_rows() for c in row if c.value == FORMULA_TITLE]
    assert formula and all(c.data_type == "s" for c in formula), "user text must stay text"
    info = dict(wb["运行"].iter_rows(values_only=True))
    assert info["运行编号 run key"] == run.run_key and info["推荐 recommendations"] == run.recommendations


def test_the_csv_report_reads_back_like_the_xlsx(done, tmp_path) -> None:
    engine, run, _ = done
    recs_path, problems_path = write_report(engine.store, run, tmp_path / "out.csv")
    assert problems_path.name == "out.exclusions.csv"
    assert recs_path.read_bytes().startswith(b"\xef\xbb\xbf"), "a BOM, so that Excel reads UTF-8"
    with recs_path.open(encoding="utf-8-sig", newline="") as fh:
        recs = list(csv.reader(fh))
    with problems_path.open(encoding="utf-8-sig", newline="") as fh:
        problems = list(csv.reader(fh))
    [xlsx] = write_report(engine.store, run, tmp_path / "out.xlsx")
    wb = load_workbook(xlsx)

    def cell(v: object) -> str:
        text = "" if v is None else str(v)
        try:
            return repr(float(text))  # openpyxl reads a score of 2.0 back as 2
        except ValueError:
            return text

    def text(row) -> list[str]:
        return [cell(v) for v in row]

    # CSV has no cell types: a leading ' keeps a formula-like text from running in a spreadsheet.
    assert ["'" + FORMULA_TITLE in row for row in recs].count(True) == sum(
        1 for m in engine.store.list_batch_matches(run.id) if m.demand_id == "Z-FORMULA")
    recs = [[cell(c[1:] if c.startswith("'=") else c) for c in row] for row in recs]
    problems = [[cell(c[1:] if c.startswith("'=") else c) for c in row] for row in problems]
    assert recs == [text(r) for r in wb["推荐"].iter_rows(values_only=True)]
    assert problems == [text(r) for r in wb["排除与未满额"].iter_rows(values_only=True)]


def test_a_report_must_be_xlsx_or_csv(done, tmp_path) -> None:
    engine, run, _ = done
    with pytest.raises(InputError, match="xlsx or .csv"):
        write_report(engine.store, run, tmp_path / "out.pdf")


# -- the command line --------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_batch_runs_logs_plain_lines_and_writes_the_report(tmp_path, small_template) -> None:
    db = copy_db(small_template, tmp_path)
    help_ = runner.invoke(app, ["batch", "--help"])
    assert help_.exit_code == 0
    for option in ("--run-key", "--top", "--max-per-expert", "--force", "--report", "--db"):
        assert option in help_.output
    res = runner.invoke(app, ["batch", "--db", str(db), "--run-key", "n1", "--top", "4",
                              "--max-per-expert", "2", "--report", str(tmp_path / "r.csv")])
    assert res.exit_code == 0, res.output
    assert "run n1: done; 12 demands, 12 matched" in res.stdout
    assert "run n1: scoring demands 12/12" in res.stderr, "plain progress lines when not on a terminal"
    assert "run n1: explaining the recommendations of demands 12/12" in res.stderr
    assert (tmp_path / "r.csv").exists() and (tmp_path / "r.exclusions.csv").exists()
    again = runner.invoke(app, ["batch", "--db", str(db), "--run-key", "n1"])
    assert again.exit_code == 0 and "done already" in again.stdout
    store = Store(db)
    run = store.get_batch_run("n1")
    assert run.top == 4 and run.max_per_expert == 2
    assert max(Counter(m.expert_id for m in store.list_batch_matches()).values()) <= 2
    store.close()


def test_cli_batch_fails_with_a_message_and_exit_code_2(tmp_path, small_template) -> None:
    db = copy_db(small_template, tmp_path)
    bad = runner.invoke(app, ["batch", "--db", str(db), "--report", str(tmp_path / "r.txt")])
    assert bad.exit_code == 2 and "xlsx or .csv" in bad.stderr
    empty = runner.invoke(app, ["batch", "--db", str(tmp_path / "empty.db")])
    assert empty.exit_code == 2 and "no experts" in empty.stderr
    top = runner.invoke(app, ["batch", "--db", str(db), "--top", "0"])
    assert top.exit_code == 2 and "--top" in top.stderr


# -- the docs ----------------------------------------------------------------------------------------
def test_the_batch_page_shows_the_deploy_files_and_their_options_exist() -> None:
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "batch.md").read_text(encoding="utf-8")
    assert "## Nightly batch" in page and "docs/batch.md" in (root / "README.md").read_text(encoding="utf-8")
    deploy = root / "deploy"
    for name in ("matcher-batch.cron", "matcher-batch.service", "matcher-batch.timer"):
        text = (deploy / name).read_text(encoding="utf-8").strip()
        assert text in page, f"docs/batch.md must show deploy/{name} as it is"
    help_text = runner.invoke(app, ["batch", "--help"]).output
    cron = (deploy / "matcher-batch.cron").read_text(encoding="utf-8")
    service = (deploy / "matcher-batch.service").read_text(encoding="utf-8")
    for text in (cron, service):
        command = text[text.index("matcher batch"):].split("\n")[0]
        for option in (w for w in command.split() if w.startswith("--")):
            assert option in help_text, option
    assert "OnCalendar=*-*-* 02:30:00" in (deploy / "matcher-batch.timer").read_text(encoding="utf-8")
    assert "30 2 * * *" in cron
