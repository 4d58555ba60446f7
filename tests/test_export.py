"""Exports: experts, demands and matches as JSONL, CSV and XLSX; an export re-imports unchanged."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from matcher.cells import csv_safe, csv_unsafe
from matcher.cli import app
from matcher.config import DEFAULT_CORPORA
from matcher.engine import Engine
from matcher.io import (
    export_demands,
    export_experts,
    export_matches,
    read_demands,
    read_experts,
)
from matcher.models import Demand, Expert

from .conftest import make_settings

FORMATS = ("jsonl", "csv", "xlsx")

# Values that break naive exports: separators inside list items, line breaks and commas in cells,
# text that looks like a formula or a number, an academician, documents with every field.
TRICKY = [
    Expert.from_dict({
        "id": "T1", "name": "欧阳·明", "title": "院士 教授", "institution": "浙江大学, 机械学院",
        "region": "浙江省杭州市", "research_fields": ["CAD/CAM", "激光焊接、切割", "5G"],
        "bio": "第一行\n第二行, 含逗号；和\"引号\"", "tags": ["=1+1", "金桥工程"],
        "documents": [{"kind": "patent", "title": "一种保温杯", "keywords": ["真空", "焊接"],
                       "abstract": "摘要, 有逗号\n和换行", "year": 2021},
                      {"kind": "achievement", "title": "省科技进步奖"}],
        "contact": {"phone": "0571-88880000", "email": "ouyang@example.org"},
    }),
    Expert.from_dict({"id": "T2", "name": "李四", "research_fields": "[方括号开头]", "bio": "00123",
                      "contact": {"phone": "013800000000"}}),
    Expert.from_dict({"id": "T3", "name": "王五", "bio": "只有简介"}),
]


def demo(name: str) -> list[str]:
    return (DEFAULT_CORPORA / "demo" / name).read_text(encoding="utf-8").splitlines()


@pytest.fixture()
def stocked(engine: Engine) -> Engine:
    """An engine holding the demo corpus plus the tricky experts."""
    engine.load_demo()
    engine.add_experts(TRICKY)
    return engine


def records_of(path) -> list[Expert]:
    return sorted(read_experts(path), key=lambda e: e.id)


@pytest.mark.parametrize("fmt", FORMATS)
def test_experts_round_trip(stocked: Engine, tmp_path, tokenizer, fmt: str) -> None:
    original = sorted(stocked.store.iter_experts(), key=lambda e: e.id)
    first = tmp_path / f"a.{fmt}"
    assert export_experts(original, fmt, first) == len(original)
    # import the export into a new database, export again: the same records, the same file
    fresh = Engine(make_settings(tmp_path / "fresh"), tokenizer=tokenizer)
    report = fresh.import_experts(first)
    assert (report.inserted, report.merged, report.rejected) == (len(original), 0, 0)
    again = sorted(fresh.store.iter_experts(), key=lambda e: e.id)
    assert again == original
    second = tmp_path / f"b.{fmt}"
    export_experts(again, fmt, second)
    if fmt == "xlsx":
        assert records_of(second) == records_of(first) == original
    else:
        assert second.read_bytes() == first.read_bytes()
    # and importing it back into the first database changes nothing
    assert stocked.import_experts(second).unchanged == len(original)
    fresh.close()


def test_the_sheet_reads_like_a_staff_sheet(tmp_path) -> None:
    export_experts(TRICKY, "xlsx", tmp_path / "e.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "e.xlsx").active
    header = [c.value for c in ws[1]]
    assert header[:7] == ["编号", "姓名", "职称", "工作单位", "所在地区", "研究方向", "简介"]
    row = dict(zip(header, (c.value for c in ws[2]), strict=True))
    assert row["研究方向"] == '["CAD/CAM", "激光焊接、切割", "5G"]'  # items with separators: a JSON list
    assert row["代表性成果"] == "一种保温杯；省科技进步奖"
    tags = ws.cell(row=2, column=header.index("标签") + 1)
    assert tags.value == "=1+1、金桥工程" and tags.data_type == "s"  # text, not a formula
    row3 = dict(zip(header, (c.value for c in ws[3]), strict=True))
    assert row3["联系电话"] == "013800000000" and row3["简介"] == "00123"  # text stays text
    export_experts(TRICKY, "csv", tmp_path / "e.csv", include_contact=False)
    raw = (tmp_path / "e.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # a BOM: Excel opens UTF-8 CSV correctly
    assert "联系电话" not in raw.decode("utf-8-sig") and "ouyang" not in raw.decode("utf-8-sig")
    # CSV has no cell types: a formula-like cell gets an apostrophe, which Excel shows as text
    # instead of running it (CSV injection); reading the CSV back takes it off (the round trips).
    cells = [c for row in csv.reader(io.StringIO(raw.decode("utf-8-sig"))) for c in row]
    assert "'=1+1、金桥工程" in cells and "=1+1、金桥工程" not in cells


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("'=+-@\t\r a保"), max_size=8) | st.text(max_size=8))
def test_csv_cells_never_start_a_formula_and_read_back_unchanged(text: str) -> None:
    cell = csv_safe(text)
    assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r")
    assert csv_unsafe(cell) == text
    assert csv_safe(3.5) == 3.5 and csv_safe(-2) == -2  # numbers are numbers, not text


@pytest.mark.parametrize("fmt", FORMATS)
def test_demands_round_trip(tmp_path, fmt: str) -> None:
    demands = [Demand.from_dict(json.loads(x)) for x in demo("demands.jsonl") if x.strip()]
    demands.append(Demand.from_dict({"id": "D-X", "title": "涂层/镀层", "description": "多行\n描述, 逗号",
                                     "keywords": ["PVD/CVD", "耐磨"], "avoid_experts": ["X0001"],
                                     "created_at": "2026-01-02T03:04:05", "status": "matched",
                                     "needs_team": True}))
    export_demands(demands, fmt, tmp_path / f"d.{fmt}")
    assert read_demands(tmp_path / f"d.{fmt}") == demands


@pytest.mark.parametrize("fmt", FORMATS)
def test_matches_export(demo_engine: Engine, tmp_path, fmt: str) -> None:
    demands = list(demo_engine.store.iter_demands())[:3]
    results = [(d, demo_engine.match_demand(d, top_k=5)) for d in demands]
    out = tmp_path / f"m.{fmt}"
    assert export_matches(results, fmt, out) == (3 if fmt == "jsonl" else sum(len(m) for _, m in results))
    if fmt == "jsonl":
        lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
        assert [x["demand_id"] for x in lines] == [d.id for d in demands]
        assert [m["expert_id"] for m in lines[0]["matches"]] == [m.expert.id for m in results[0][1]]
        assert "contact" not in lines[0]["matches"][0]
        return
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    else:
        ws = openpyxl.load_workbook(out).active
        header = [c.value for c in ws[1]]
        rows = [dict(zip(header, (c.value for c in r), strict=True)) for r in ws.iter_rows(min_row=2)]
    first = results[0][1]
    assert [str(r["专家编号"]) for r in rows[: len(first)]] == [m.expert.id for m in first]
    assert str(rows[0]["排名"]) == "1" and rows[0]["需求编号"] == demands[0].id
    assert rows[0]["匹配词"] and rows[0]["依据"] and "联系电话" not in rows[0]


def test_the_cli_exports_to_stdout_and_files(tmp_path) -> None:
    runner = CliRunner()
    db = str(tmp_path / "m.db")
    (tmp_path / "e.jsonl").write_text(
        "\n".join(json.dumps(e.to_dict(), ensure_ascii=False) for e in TRICKY) + "\n", encoding="utf-8")
    assert runner.invoke(app, ["import", "experts", str(tmp_path / "e.jsonl"), "--db", db]).exit_code == 0
    res = runner.invoke(app, ["export", "experts", "--contact", "--db", db])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [Expert.from_dict(x) for x in lines] == TRICKY
    assert res.stdout == (tmp_path / "e.jsonl").read_text(encoding="utf-8")
    res = runner.invoke(app, ["export", "experts", "--format", "csv", "--db", db])
    header = "编号,姓名,职称,工作单位,所在地区,研究方向,简介,代表性成果,标签,成果明细"
    assert res.stdout.splitlines()[0] == header, "no contact details unless asked for"
    res = runner.invoke(app, ["export", "experts", "--format", "xlsx", "--db", db])
    assert res.exit_code != 0 and "--out" in res.output
    res = runner.invoke(app, ["export", "experts", "-f", "xlsx", "--contact", "-o", str(tmp_path / "x.xlsx"),
                              "--db", db])
    assert res.exit_code == 0 and records_of(tmp_path / "x.xlsx") == TRICKY
    res = runner.invoke(app, ["export", "people", "--db", db])
    assert res.exit_code != 0


def test_contact_details_leave_only_when_asked_and_audited_and_an_export_without_them_keeps_them(
        tmp_path) -> None:
    """`matcher export experts` wrote every phone and e-mail by default and the audit log did not
    move (issue 27, finding 4). Now they leave only with --contact, audited with the row count; and
    a file exported without them, edited and imported back, does not wipe the stored ones."""
    from matcher.store import Store

    runner = CliRunner()
    db = str(tmp_path / "m.db")
    (tmp_path / "e.jsonl").write_text(
        "\n".join(json.dumps(e.to_dict(), ensure_ascii=False) for e in TRICKY) + "\n", encoding="utf-8")
    assert runner.invoke(app, ["import", "experts", str(tmp_path / "e.jsonl"), "--db", db]).exit_code == 0
    plain = tmp_path / "plain.xlsx"
    res = runner.invoke(app, ["export", "experts", "-f", "xlsx", "-o", str(plain), "--db", db])
    assert res.exit_code == 0
    store = Store(db)
    try:
        assert store.list_audit(action="contact.export")[1] == 0, "an export without contacts is not audited"
        wb = openpyxl.load_workbook(plain)
        ws = wb.active
        headers = [c.value for c in ws[1]]
        assert "联系电话" not in headers and "邮箱" not in headers
        ws.cell(row=2, column=headers.index("职称") + 1, value="院士 研究员")  # an edit in Excel
        wb.save(plain)
        assert runner.invoke(app, ["import", "experts", str(plain), "--db", db]).exit_code == 0
        t1 = store.get_expert("T1")
        assert t1.title == "院士 研究员" and t1.contact == TRICKY[0].contact, "contacts kept"
        res = runner.invoke(app, ["export", "experts", "-f", "csv", "--contact",
                                  "-o", str(tmp_path / "c.csv"), "--db", db])
        assert res.exit_code == 0
        (tmp_path / "d.jsonl").write_text(json.dumps({"id": "Q1", "title": "保温杯真空焊接漏气"},
                                                     ensure_ascii=False) + "\n", encoding="utf-8")
        assert runner.invoke(app, ["import", "demands", str(tmp_path / "d.jsonl"), "--db", db]).exit_code == 0
        res = runner.invoke(app, ["export", "matches", "--top", "2", "--contact", "-f", "csv",
                                  "-o", str(tmp_path / "m.csv"), "--db", db])
        assert res.exit_code == 0, res.output
        entries, total = store.list_audit(action="contact.export")
        assert total == 2
        by_kind = {e.detail["kind"]: e for e in entries}
        assert by_kind["experts"].detail["rows"] == 3 and by_kind["experts"].actor.startswith("cli")
        written = list(csv.DictReader((tmp_path / "m.csv").open(encoding="utf-8-sig")))
        assert by_kind["matches"].detail["rows"] == len(written) and "联系电话" in written[0]
    finally:
        store.close()


def test_the_cli_exports_matches(tmp_path) -> None:
    runner = CliRunner()
    db = str(tmp_path / "m.db")
    runner.invoke(app, ["match", "保温杯激光焊接", "--db", db])  # loads the demo corpus
    res = runner.invoke(app, ["export", "matches", "--status", "new", "--top", "3", "-f", "csv", "--db", db])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert rows and {r["排名"] for r in rows} <= {"1", "2", "3"}


# -- one sanitiser for every writer ---------------------------------------------------------------
BELL = "铃\x07声"  # a control character pasted from another program: openpyxl refuses it
FORMULA = "=HYPERLINK(\"http://x\",\"点我\")"


def staff_text_of(path) -> list[tuple[object, str]]:  # noqa: ANN001
    """(value, data type) of every cell of a workbook holding staff text."""
    wb = openpyxl.load_workbook(path)
    return [(c.value, c.data_type) for ws in wb.worksheets for row in ws.iter_rows() for c in row
            if isinstance(c.value, str) and ("铃" in c.value or "HYPERLINK" in c.value)]


def test_every_writer_keeps_text_as_text_and_drops_what_a_workbook_refuses(tmp_path, demo_engine) -> None:
    from api.export import matches_xlsx
    from matcher.batch import Report, _write_csv, _write_xlsx
    from matcher.report import write_report
    from matcher.stats import compute

    def check(path) -> None:  # noqa: ANN001
        cells = staff_text_of(path)
        assert ("铃声", "s") in cells and (FORMULA, "s") in cells, cells

    expert = Expert.from_dict({"id": "W1", "name": BELL, "bio": FORMULA, "research_fields": ["焊接"]})
    export_experts([expert], "xlsx", tmp_path / "experts.xlsx")  # matcher.io
    check(tmp_path / "experts.xlsx")
    match = demo_engine.match("激光焊接", top_k=1)[0]
    tricky = replace(match, expert=replace(match.expert, name=BELL, institution=FORMULA))
    (tmp_path / "match.xlsx").write_bytes(matches_xlsx(BELL, [tricky], include_contact=False))  # the API
    check(tmp_path / "match.xlsx")
    run = demo_engine.store.create_batch_run("writers", top=1, max_per_expert=1, candidates=1)
    rows = [("Q1", BELL, FORMULA, 1, "X1", "张三", "某大学", 0.5, "焊接", "", "")]
    # the batch
    _write_xlsx(Report(run, rows, [("回避排除", *rows[0][:8], FORMULA)]), tmp_path / "batch.xlsx")
    check(tmp_path / "batch.xlsx")
    _write_csv(tmp_path / "batch.csv", ("a", "b", "c"), [(BELL, FORMULA, 1)])
    assert (tmp_path / "batch.csv").read_text(encoding="utf-8-sig").splitlines()[1].startswith(f"{BELL},\"'=")
    stats = compute(demo_engine, gaps=False)
    stats.experts = [replace(stats.experts[0], name=BELL, institution=FORMULA)] if stats.experts else []
    stats.outcome_rows = []
    stats.by_industry = [replace(g, name=BELL) for g in stats.by_industry[:1]] + \
        [replace(g, name=FORMULA) for g in stats.by_industry[1:2]]
    write_report(stats, tmp_path / "annual.xlsx")  # the annual report
    check(tmp_path / "annual.xlsx")
