"""A matcher that learns from its staff (issue 28), in the engine and its services: verdicts teach an
association that the next demand's understanding uses with its evidence; a withdrawn verdict takes
its evidence along; proposals accepted into the 科协's own thesaurus or silenced; learned data that
survives backup/restore and export/import; and a database without verdicts ranks as before.

The world: the demo corpus, two mushroom experts who write 木霉 and 杂菌, six demands saying 烂筒
(a word experts never write) that accept them, and 48 demo demands judged as staff would
(`conftest.learned_world`)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from matcher.backup import backup, restore
from matcher.cli import app
from matcher.config import Settings
from matcher.engine import Engine
from matcher.errors import DataImportError, InputError, NotFoundError
from matcher.proposals import Proposals, export_learning, import_learning
from matcher.workflow import Workflow

from .conftest import ROTTEN_LOGS, copy_db, demo_template, learned_world

ADMIN = "staff:admin"
OWNER_TEXT = "今年花菇烂筒特别多，想找专家"


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    return demo_template(tmp_path_factory.mktemp("plain"), tokenizer)


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory, tokenizer, plain: Path) -> Path:
    """A copy of the demo database with the verdicts of `learned_world`."""
    db = copy_db(plain, tmp_path_factory.mktemp("taught"))
    engine = Engine(Settings(db=db), tokenizer=tokenizer)
    learned_world(engine)
    engine.ensure_index()
    engine.close()
    return db


@pytest.fixture()
def engine(tmp_path: Path, taught: Path, tokenizer) -> Engine:
    e = Engine(Settings(db=copy_db(taught, tmp_path)), tokenizer=tokenizer)
    yield e
    e.close()


def learned_terms(engine: Engine, text: str = OWNER_TEXT) -> dict[str, object]:
    return {e.term: e for e in engine.understand(text).expanded if e.source == "learned"}


def pairs(engine: Engine) -> set[tuple[str, str]]:
    return {(a.phrase, a.concept) for a in engine.learning.associations().all()}


# -- verdicts teach the next demand ---------------------------------------------------------------
def test_verdicts_teach_an_association_the_next_demand_uses_with_its_evidence(engine: Engine) -> None:
    a = engine.learning.current().find("烂筒", "木霉")
    assert a is not None and (a.demands, a.judged, a.accepted, a.declined) == (6, 6, 6, 0)
    assert set(a.examples) <= {f"L-{i}" for i in range(6)}
    added = learned_terms(engine)
    assert {"木霉", "杂菌"} <= set(added)
    mould = added["木霉"]
    assert mould.origin == "烂筒" and mould.evidence.demands == 6 and mould.evidence.accepted == 6
    assert mould.weight == pytest.approx(engine.settings.learned_weight * a.strength)
    own = [t.weight for t in engine.understand(OWNER_TEXT).terms if t.term == "烂筒"]
    assert own and mould.weight < min(own)  # never outweighs the demand's own words
    assert engine.understand(OWNER_TEXT).to_dict()["expanded"][0]["source"] in ("learned", "thesaurus")
    # ... and the ranking reads it: the explanation of a mould expert cites 木霉 as added for 烂筒
    matches = engine.match(OWNER_TEXT, top_k=10)
    mould_expert = next(m for m in matches if m.expert.id == "M-002")
    assert mould_expert.explanation.expanded.get("木霉") == "烂筒"


def test_a_demand_that_does_not_say_the_phrase_gains_nothing(engine: Engine) -> None:
    assert learned_terms(engine, "不锈钢保温杯真空层激光焊接合格率低") == {}


def test_a_withdrawn_verdict_withdraws_its_evidence(engine: Engine) -> None:
    loop = Workflow(engine)
    accepted = [f for f in engine.store.feedback_entries()
                if f.demand_id.startswith("L-") and f.verdict == "accepted"]
    assert len(accepted) == 6
    loop.withdraw_feedback("staff:lihua", accepted[0].id)
    a = engine.learning.current().find("烂筒", "木霉")
    assert a is not None and a.demands == 5 and a.judged == 5
    for f in accepted[1:]:
        loop.withdraw_feedback("staff:lihua", f.id)
    assert engine.learning.current().find("烂筒", "木霉") is None
    assert learned_terms(engine) == {}
    entries, _ = engine.store.list_audit(action="feedback.withdraw")
    assert len(entries) == 6 and entries[-1].detail["verdict"] == "accepted"
    assert entries[-1].detail["recorded_by"] == "staff:test" and entries[-1].actor == "staff:lihua"
    with pytest.raises(NotFoundError):
        loop.withdraw_feedback("staff:lihua", accepted[0].id)


def test_a_database_without_verdicts_ranks_exactly_as_before(tmp_path: Path, plain: Path, tokenizer) -> None:
    """No verdicts: nothing learned, and every demo demand ranks as with learning switched off."""
    on = Engine(Settings(db=copy_db(plain, tmp_path / "on")), tokenizer=tokenizer)
    off = Engine(Settings(db=copy_db(plain, tmp_path / "off"), learned_weight=0.0), tokenizer=tokenizer)
    try:
        assert len(on.learning.current()) == 0
        for d in on.store.iter_demands():
            got = [(m.expert.id, round(m.score, 6)) for m in on.match_demand(d, top_k=10)]
            assert got == [(m.expert.id, round(m.score, 6)) for m in off.match_demand(d, top_k=10)], d.id
            assert not [e for e in on.understand(d.text).expanded if e.source == "learned"]
    finally:
        on.close()
        off.close()


# -- proposals and the 科协's own thesaurus ------------------------------------------------------------
def test_accepting_a_proposal_writes_the_own_thesaurus_and_the_thesaurus_source_uses_it(
        engine: Engine) -> None:
    proposals = Proposals(engine)
    listed = {(p.association.phrase, p.association.concept): p for p in proposals.list()}
    assert ("烂筒", "木霉") in listed and listed[("烂筒", "木霉")].status == "open"
    titles = dict(listed[("烂筒", "木霉")].examples)
    assert set(titles.values()) <= set(ROTTEN_LOGS)
    version = proposals.accept(ADMIN, "烂筒", "木霉", kind="症状", weight=0.7)
    assert version.version == 1 and "症状  烂筒  =>  木霉:0.7" in version.text and "[本会]" in version.text
    u = engine.understand(OWNER_TEXT)
    mould = next(e for e in u.expanded if e.term == "木霉")
    assert mould.source == "thesaurus" and mould.kind == "症状"
    assert mould.weight == pytest.approx(engine.settings.thesaurus_weight * 0.7)
    assert "杂菌" in learned_terms(engine)  # the other association is still learned
    assert [p.status for p in proposals.list("accepted")] == ["accepted"]
    assert ("烂筒", "木霉") not in {(p.association.phrase, p.association.concept) for p in proposals.list()}
    # the shipped thesaurus is untouched
    assert engine.thesaurus.name == "thesaurus.txt" and "烂筒" not in engine.thesaurus.sources()
    # undoing the accept takes it out of the file (a new version) and learning uses it again
    proposals.reopen(ADMIN, "烂筒", "木霉")
    assert "木霉" not in proposals.own_text() and len(proposals.versions()) == 2
    assert learned_terms(engine)["木霉"].source == "learned"
    actions = [e.action for e in engine.store.list_audit(action="proposal.")[0]]
    assert actions == ["proposal.reopen", "proposal.accept"]


def test_rejecting_a_proposal_silences_it(engine: Engine) -> None:
    proposals = Proposals(engine)
    proposals.reject(ADMIN, "烂筒", "食用菌", note="太泛")
    assert "食用菌" not in learned_terms(engine)
    assert ("烂筒", "食用菌") not in {(p.association.phrase, p.association.concept) for p in proposals.list()}
    rejected = proposals.list("rejected")
    assert [(p.association.concept, p.decision.note) for p in rejected] == [("食用菌", "太泛")]
    entry = engine.store.list_audit(action="proposal.reject")[0][0]
    assert entry.detail["evidence"]["demands"] == 6 and entry.detail["note"] == "太泛"
    proposals.reopen(ADMIN, "烂筒", "食用菌")
    assert "食用菌" in learned_terms(engine)


def test_proposal_errors_are_clear_and_write_nothing(engine: Engine) -> None:
    proposals = Proposals(engine)
    with pytest.raises(NotFoundError, match="没有"):
        proposals.accept(ADMIN, "烂筒", "不存在的词")
    with pytest.raises(InputError, match="类别"):
        proposals.accept(ADMIN, "烂筒", "木霉", kind="别的")
    with pytest.raises(InputError, match="权重"):
        proposals.accept(ADMIN, "烂筒", "木霉", weight=1.5)
    with pytest.raises(InputError, match="第2行"):
        proposals.import_text(ADMIN, "[本会]\n症状  烂筒  =>\n")
    assert proposals.versions() == [] and engine.store.decisions() == {}


def test_the_own_thesaurus_is_versioned_imported_and_reverted(engine: Engine) -> None:
    proposals = Proposals(engine)
    proposals.import_text(ADMIN, "[本会]\n俗称  烂筒  =>  菌棒污染\n")
    added = engine.understand(OWNER_TEXT).expanded
    assert next(e for e in added if e.term == "菌棒污染").source == "thesaurus"
    proposals.import_text(ADMIN, "[本会]\n俗称  烂棒  =>  菌棒污染\n")
    assert "菌棒污染" not in {e.term for e in engine.understand(OWNER_TEXT).expanded}
    made = proposals.revert(ADMIN, 1)
    assert made.version == 3 and proposals.own_text() == proposals.own_text(1)
    assert "菌棒污染" in {e.term for e in engine.understand(OWNER_TEXT).expanded}
    assert [v.version for v in proposals.versions()] == [3, 2, 1]


# -- learned data survives backup/restore and export/import -------------------------------------------
def state(engine: Engine) -> tuple:
    learned = engine.learning.associations()
    return ([a.to_dict() for a in learned.all()],
            sorted((k, d.decision) for k, d in engine.store.decisions().items()),
            [(v.version, v.text) for v in engine.store.own_thesaurus_versions()])


def test_learned_data_survives_a_backup_and_restore(engine: Engine, tmp_path: Path) -> None:
    proposals = Proposals(engine)
    proposals.accept(ADMIN, "烂筒", "木霉")
    proposals.reject(ADMIN, "烂筒", "食用菌")
    before = state(engine)
    assert before[0] and before[1] and before[2]
    copy = tmp_path / "backup.db"
    backup(engine.settings, copy)
    loop = Workflow(engine)
    for f in engine.store.feedback_entries()[:8]:  # damage after the backup
        loop.withdraw_feedback("staff:lihua", f.id)
    proposals.reopen(ADMIN, "烂筒", "木霉")
    assert state(engine) != before
    restore(engine.settings, copy, actor="cli:test")
    assert state(engine) == before
    restored = [e.action for e in engine.store.list_audit(action="backup.restore")[0]]
    assert restored  # the restore is audited (in both logs: tests/test_backup.py)


def test_learned_data_survives_export_and_import(engine: Engine, tmp_path: Path, tokenizer) -> None:
    Proposals(engine).accept(ADMIN, "烂筒", "木霉")
    Proposals(engine).reject(ADMIN, "烂筒", "食用菌")
    out = io.StringIO()
    lines = export_learning(engine, out)
    assert lines == len(out.getvalue().splitlines()) == len(engine.store.feedback_entries()) + 2 + 1
    path = tmp_path / "learning.jsonl"
    path.write_text(out.getvalue(), encoding="utf-8")
    fresh = Engine(Settings(db=tmp_path / "fresh.db"), tokenizer=tokenizer)
    try:
        with pytest.raises(DataImportError, match="未导入任何数据") as exc:
            import_learning(fresh, path, "cli:test")  # its demands and experts are not there yet
        assert "请先导入" in str(exc.value) and fresh.store.feedback_entries() == []
        fresh.add_experts(engine.store.iter_experts())
        fresh.add_demands(engine.store.iter_demands())
        result = import_learning(fresh, path, "cli:test")
        assert result.verdicts == len(engine.store.feedback_entries()) and result.versions == 1
        assert result.decisions == 2 and result.skipped == 0
        assert state(fresh) == state(engine)
        again = import_learning(fresh, path, "cli:test")  # nothing twice
        assert (again.verdicts, again.decisions, again.versions) == (0, 0, 0) and again.skipped == lines
    finally:
        fresh.close()


def test_a_malformed_learning_file_imports_nothing(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"type": "verdict", "demand_id": "L-0", "expert_id": "M-001", "verdict": "maybe"}\n'
                    '{"type": "thesaurus", "text": "[本会]\\n症状 烂筒 =>\\n"}\nnot json\n', encoding="utf-8")
    n = len(engine.store.feedback_entries())
    with pytest.raises(DataImportError):
        import_learning(engine, path, "cli:test")
    path.write_text(path.read_text(encoding="utf-8").rsplit("\n", 2)[0] + "\n", encoding="utf-8")
    with pytest.raises(DataImportError) as exc:
        import_learning(engine, path, "cli:test")
    assert "第1行" in str(exc.value) and "第2行" in str(exc.value)
    assert len(engine.store.feedback_entries()) == n


# -- the command line --------------------------------------------------------------------------------
def test_the_thesaurus_commands_end_to_end(tmp_path: Path, taught: Path) -> None:
    db = copy_db(taught, tmp_path)
    runner = CliRunner()
    listed = runner.invoke(app, ["thesaurus", "proposals", "--json", "--db", str(db)])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(x) for x in listed.output.splitlines() if x.startswith("{")]
    assert {("烂筒", "木霉"), ("烂筒", "杂菌")} <= {(r["phrase"], r["concept"]) for r in rows}
    assert all(r["status"] == "open" for r in rows)
    ok = runner.invoke(app, ["thesaurus", "accept", "烂筒", "木霉", "--kind", "俗称", "--weight", "0.9",
                             "--db", str(db)])
    assert ok.exit_code == 0 and "version 1" in ok.output
    shown = runner.invoke(app, ["thesaurus", "export", "--db", str(db)])
    assert "俗称  烂筒  =>  木霉:0.9" in shown.output
    bad = runner.invoke(app, ["thesaurus", "accept", "烂筒", "没有这个", "--db", str(db)])
    assert bad.exit_code == 2 and "没有" in bad.output
    assert runner.invoke(app, ["thesaurus", "reject", "烂筒", "杂菌", "--db", str(db)]).exit_code == 0
    versions = runner.invoke(app, ["thesaurus", "versions", "--db", str(db)])
    assert "v1" in versions.output and "北京时间" in versions.output
    exported = tmp_path / "learning.jsonl"
    assert runner.invoke(app, ["export", "learning", "-o", str(exported), "--db", str(db)]).exit_code == 0
    kinds = {json.loads(x)["type"] for x in exported.read_text(encoding="utf-8").splitlines()}
    assert kinds == {"verdict", "decision", "thesaurus"}
    assert runner.invoke(app, ["import", "learning", str(exported), "--db", str(db)]).exit_code == 0


def test_an_engine_follows_another_process_decisions(tmp_path: Path, taught: Path, tokenizer) -> None:
    """Two engines on one database (two server workers): a decision taken through one is used by
    the other at its next understanding."""
    db = copy_db(taught, tmp_path)
    a = Engine(Settings(db=db), tokenizer=tokenizer)
    b = Engine(Settings(db=db), tokenizer=tokenizer)
    try:
        assert "杂菌" in learned_terms(b)
        Proposals(a).reject(ADMIN, "烂筒", "杂菌")
        assert "杂菌" not in learned_terms(b)
    finally:
        a.close()
        b.close()
        shutil.rmtree(tmp_path / "m.db.index", ignore_errors=True)


def test_a_fresh_engine_on_a_taught_library_builds_its_index_without_waiting_on_itself(
        tmp_path: Path, taught: Path, tokenizer) -> None:
    """Found when issue 28 met the demand bank: building the index attaches the bank, whose demand
    words go through the understanding, which asked what verdicts taught, which asked the live index
    for the library, whose lock this thread held: the nightly batch waited on itself for ever. Now
    the learning keeps what it had while this thread builds the index, and learns at the next look."""
    import threading

    db = copy_db(taught, tmp_path)
    shutil.rmtree(db.with_name(db.name + ".index"), ignore_errors=True)  # built afresh, bank and all
    engine = Engine(Settings(db=db), tokenizer=tokenizer)
    assert engine.settings.dense_bank_weight > 0 and engine.store.feedback_entries()
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(engine.ensure_index().index), daemon=True)
    worker.start()
    worker.join(300)  # a deadlock, not a speed limit: the build takes seconds
    try:
        assert not worker.is_alive() and done, "ensure_index waited on its own lock"
        assert engine.live.lock.held_here() is False
        assert {"木霉", "杂菌"} <= set(learned_terms(engine))  # learned at the next look
    finally:
        engine.close()
