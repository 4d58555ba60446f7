"""Reading the files staff have: JSONL, CSV in UTF-8 and GBK, real .xlsx; every bad row named."""

from __future__ import annotations

import csv
import json

import openpyxl
import pytest

from matcher.config import Settings
from matcher.engine import Engine
from matcher.errors import DataImportError, InputError, StoreError
from matcher.io import load_mapping, parse_file, read_demands, read_experts, rejects_path, write_rejects
from matcher.store import Store

HEADER = ["姓名", "职称", "工作单位", "所在地区", "研究方向", "联系电话", "邮箱"]
ROWS = [
    ["王五", "教授", "浙江工业大学", "浙江省杭州市", "激光焊接、异种金属连接", "0571-0000-0001",
     "w@example.org"],
    ["赵六", "正高级工程师", "永康某杯业有限公司", "浙江省金华市永康市", "真空保温；保温杯", "", ""],
]


def write_csv(path, rows, encoding="utf-8", header=HEADER) -> None:
    lines = [",".join(header)] + [",".join(r) for r in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_in_every_common_encoding(tmp_path, encoding) -> None:
    p = tmp_path / "experts.csv"
    write_csv(p, ROWS, encoding)
    experts = read_experts(p)
    assert [e.name for e in experts] == ["王五", "赵六"]
    assert experts[0].research_fields == ("激光焊接", "异种金属连接")
    assert experts[1].research_fields == ("真空保温", "保温杯")
    assert experts[0].contact.email == "w@example.org"
    # ids are stable for the same person, so re-importing the sheet updates instead of duplicating
    assert [e.id for e in read_experts(p)] == [e.id for e in experts]


def test_xlsx_made_by_openpyxl(tmp_path) -> None:
    p = tmp_path / "experts.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER)
    for r in ROWS:
        ws.append(r)
    ws.append([None] * len(HEADER))  # trailing blank rows are common
    wb.save(p)
    experts = read_experts(p)
    assert [e.institution for e in experts] == ["浙江工业大学", "永康某杯业有限公司"]


def test_bad_rows_are_named_and_nothing_is_returned(tmp_path) -> None:
    p = tmp_path / "experts.csv"
    no_name = ["", "教授", "某大学", "", "焊接", "", ""]
    no_fields = ["孙七", "教授", "某大学", "", "", "", ""]
    write_csv(p, [ROWS[0], no_name, no_fields])
    with pytest.raises(DataImportError) as exc:
        read_experts(p)
    text = str(exc.value)
    assert "第3行" in text and "姓名" in text
    assert "第4行" in text and "研究方向" in text
    assert [e.row for e in exc.value.errors] == [3, 4]


def test_wrong_encoding_is_a_clear_error(tmp_path) -> None:
    p = tmp_path / "experts.csv"
    p.write_bytes(("\n".join([",".join(HEADER), ",".join(ROWS[0])])).encode("utf-16"))
    with pytest.raises(DataImportError, match="neither UTF-8 nor GBK"):
        read_experts(p)


def test_jsonl_broken_line_and_duplicate_ids(tmp_path) -> None:
    p = tmp_path / "experts.jsonl"
    good = {"id": "A", "name": "甲", "research_fields": "焊接"}
    p.write_text(json.dumps(good, ensure_ascii=False) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataImportError, match="第2行"):
        read_experts(p)
    p.write_text("\n".join(json.dumps(good, ensure_ascii=False) for _ in range(2)), encoding="utf-8")
    with pytest.raises(DataImportError, match="编号「A」重复（第 1 行已有）"):
        read_experts(p)


def test_demands_need_a_title_or_description(tmp_path) -> None:
    p = tmp_path / "demands.csv"
    header = ["企业名称", "需求名称", "需求描述"]
    write_csv(p, [["某公司", "焊接合格率低", ""], ["某公司", "", ""]], header=header)
    with pytest.raises(DataImportError, match="第3行"):
        read_demands(p)
    write_csv(p, [["某公司", "焊接合格率低", "我司…"]], header=["企业名称", "需求名称", "需求描述"])
    (d,) = read_demands(p)
    assert (d.enterprise, d.title, d.status) == ("某公司", "焊接合格率低", "new")


def test_unsupported_and_missing_files(tmp_path) -> None:
    with pytest.raises(InputError, match="unsupported file type"):
        read_experts(tmp_path / "x.doc")
    with pytest.raises(InputError, match="no such file"):
        read_experts(tmp_path / "x.csv")


# -- the sheets staff actually have -------------------------------------------------------------
def test_xlsx_with_a_title_row_numbers_and_dates(tmp_path) -> None:
    import datetime

    p = tmp_path / "名单.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["2024年金桥工程专家库（第一批）"])  # a title above the header is common
    ws.append([])
    ws.append(["姓名", "性别", "职称", "单位", "地区", "专业特长", "联系电话", "是否院士", "入库日期"])
    ws.append(["钱七", "男", "研究员", "浙江省农业科学院", "浙江省杭州市", "茶树育种", 13800138000, "是",
               datetime.datetime(2024, 5, 1)])
    ws.append(["孙八", "女", "教授", "宁波大学", "浙江省宁波市", "海洋生物", 5.748765432e9, "否", None])
    wb.save(p)
    parsed = parse_file(p, "experts")
    assert parsed.errors == [] and parsed.rows == [4, 5]
    a, b = parsed.records
    assert a.contact.phone == "13800138000" and b.contact.phone == "5748765432"
    assert a.title == "院士 研究员" and a.is_academician and not b.is_academician
    assert a.research_fields == ("茶树育种",)
    assert set(parsed.ignored_columns) == {"性别", "入库日期"}


def test_every_problem_is_named_with_row_and_column(tmp_path) -> None:
    header = ["姓名", "性别", "工作单位", "专业特长", "联系电话", "邮箱", "是否院士"]
    rows = [[f"专家{i}", "男", "某大学", "焊接", "0571-88880000", "a@example.org", "否"] for i in range(15)]
    rows.append(["周九", "男", "某大学", "", "", "", "否"])  # row 17: nothing to match on
    rows.append(["吴十", "未知", "某大学", "焊接", "123", "not-an-email", "也许"])
    write_csv(tmp_path / "x.csv", rows, "gbk", header=header)
    with pytest.raises(DataImportError) as exc:
        read_experts(tmp_path / "x.csv")
    text = str(exc.value)
    assert "x.csv: 第17行 列「专业特长」: 为空" in text  # the file's own header, not ours
    for column in ("性别", "联系电话", "邮箱", "是否院士"):
        assert f"第18行 列「{column}」" in text
    assert sorted({e.row for e in exc.value.errors}) == [17, 18]
    assert all(e.source == "x.csv" for e in exc.value.errors)


def test_mapping_files_name_the_other_headers(tmp_path) -> None:
    header = ["导师姓名", "所在院系", "主攻方向", "备注"]
    write_csv(tmp_path / "x.csv", [["郑一", "浙江大学化学系", "催化剂", "无"]], header=header)
    with pytest.raises(DataImportError, match="没有「姓名」或「编号」列.*--mapping"):
        parse_file(tmp_path / "x.csv", "experts")
    (tmp_path / "m.json").write_text(json.dumps({"导师姓名": "name", "所在院系": "工作单位",
                                                 "主攻方向": "research_fields"}, ensure_ascii=False),
                                     encoding="utf-8")
    (tmp_path / "m.csv").write_text("表头,字段\n导师姓名,name\n所在院系,institution\n主攻方向,研究方向\n",
                                    encoding="utf-8")
    for name in ("m.json", "m.csv"):
        mapping = load_mapping(tmp_path / name, "experts")
        parsed = parse_file(tmp_path / "x.csv", "experts", mapping=mapping)
        (e,) = parsed.records
        assert (e.name, e.institution, e.research_fields) == ("郑一", "浙江大学化学系", ("催化剂",))
        assert parsed.ignored_columns == ("备注",)
    (tmp_path / "bad.json").write_text('{"导师姓名": "nmae"}', encoding="utf-8")
    with pytest.raises(InputError, match="'nmae'.*not a field of experts.*research_fields"):
        load_mapping(tmp_path / "bad.json", "experts")


def test_csv_delimiters_and_quoted_cells(tmp_path) -> None:
    text = '姓名;工作单位;研究方向;简介\n王五;"浙江工业大学";"激光焊接";"多行\n简介, 含逗号; 和分号"\n'
    (tmp_path / "semi.csv").write_text(text, encoding="utf-8")
    (e,) = read_experts(tmp_path / "semi.csv")
    assert e.bio == "多行\n简介, 含逗号; 和分号" and e.institution == "浙江工业大学"
    (tmp_path / "tab.csv").write_text("姓名\t研究方向\n王五\t激光焊接、真空\n", encoding="gb18030")
    assert read_experts(tmp_path / "tab.csv")[0].research_fields == ("激光焊接", "真空")


def test_demand_budgets_and_deadlines_are_checked(tmp_path) -> None:
    header = ["企业名称", "需求名称", "需求描述", "技术领域", "所在地区", "预算", "截止日期"]
    rows = [
        ["甲公司", "焊接合格率低", "我司…", "焊接", "永康市", "50万元", "2025-06-30"],
        ["乙公司", "保温性能", "", "保温", "永康市", "面议", "2025年7月1日"],
        ["丙公司", "涂层", "", "涂层", "", "很多", "下个月"],
        ["丁公司", "", "", "", "", "", ""],
    ]
    write_csv(tmp_path / "d.csv", rows, header=header)
    parsed = parse_file(tmp_path / "d.csv", "demands")
    assert [d.enterprise for d in parsed.records] == ["甲公司", "乙公司"]
    messages = [str(e) for e in parsed.errors]
    assert any("第4行 列「预算」" in m for m in messages)
    assert any("第4行 列「截止日期」" in m for m in messages)
    assert any("第5行 列「需求描述」: 为空（需求名称也为空）" in m for m in messages)
    assert [r.row for r in parsed.rejects] == [4, 5]


def test_demands_marked_as_needing_a_team(tmp_path) -> None:
    header = ["企业名称", "需求描述", "组团需求"]
    rows = [["甲公司", "焊缝发黑，另外要上MES", "是"], ["乙公司", "保温性能差", "否"], ["丙公司", "涂层", ""],
            ["丁公司", "电镀", "要"]]
    write_csv(tmp_path / "d.csv", rows, header=header)
    parsed = parse_file(tmp_path / "d.csv", "demands")
    assert [(d.enterprise, d.needs_team) for d in parsed.records] == [("甲公司", True), ("乙公司", False),
                                                                      ("丙公司", False)]
    assert [str(e) for e in parsed.errors] == ["d.csv: 第5行 列「组团需求」: 「要」应为「是」或「否」"]
    (tmp_path / "d.jsonl").write_text(json.dumps({"id": "D1", "title": "焊缝", "needs_team": "maybe"}) + "\n",
                                      encoding="utf-8")
    with pytest.raises(InputError, match="第1行 列「needs_team」: 「maybe」应为「是」或「否」"):
        read_demands(tmp_path / "d.jsonl")


def test_progress_is_reported(tmp_path) -> None:
    write_csv(tmp_path / "x.csv", ROWS * 1)
    seen: list[tuple[int, int]] = []
    parse_file(tmp_path / "x.csv", "experts", progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (2, 2)


# -- imports through the engine: one transaction, rejects, dry runs --------------------------------
def test_an_invalid_file_writes_nothing_and_skip_invalid_writes_the_rest(tmp_path, engine) -> None:
    bad = [*ROWS, ["", "教授", "某大学", "", "焊接", "", ""]]
    write_csv(tmp_path / "x.csv", bad)
    with pytest.raises(DataImportError, match="nothing was imported.*--skip-invalid"):
        engine.import_experts(tmp_path / "x.csv")
    assert engine.store.count_experts() == 0
    report = engine.import_experts(tmp_path / "x.csv", skip_invalid=True)
    assert (report.inserted, report.rejected) == (2, 1)
    assert engine.store.count_experts() == 2
    # the rejects, as they were plus what is wrong, in a file that imports once fixed
    target = rejects_path(tmp_path / "x.csv")
    assert target.name == "x.rejects.csv"
    write_rejects(target, report.rejects)
    with target.open(encoding="utf-8-sig", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["原行号"] == "4" and "姓名" in row["错误"] and row["研究方向"] == "焊接"
    fixed = target.read_text(encoding="utf-8-sig").replace(",教授,", "孙七,教授,", 1)
    target.write_text(fixed, encoding="utf-8")
    assert engine.import_experts(target).inserted == 1


def test_a_crash_while_writing_writes_nothing(tmp_path, tokenizer) -> None:
    class Failing(Store):
        def log_import(self, *args, **kwargs) -> int:
            raise StoreError("disk full")

    write_csv(tmp_path / "x.csv", ROWS)
    engine = Engine(Settings(db=tmp_path / "m.db"), tokenizer=tokenizer, store=Failing(tmp_path / "m.db"))
    with pytest.raises(StoreError):
        engine.import_experts(tmp_path / "x.csv")
    assert engine.store.count_experts() == 0
    engine.close()


def test_dry_run_counts_without_writing(tmp_path, engine) -> None:
    write_csv(tmp_path / "x.csv", ROWS)
    report = engine.import_experts(tmp_path / "x.csv", dry_run=True)
    assert (report.inserted, report.dry_run) == (2, True) and engine.store.count_experts() == 0
    assert "2 would be inserted" in report.summary()
    engine.import_experts(tmp_path / "x.csv")
    again = engine.import_experts(tmp_path / "x.csv", dry_run=True)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)


def test_the_cli_import_reports_and_writes_rejects(tmp_path) -> None:
    from typer.testing import CliRunner

    from matcher.cli import app

    write_csv(tmp_path / "x.csv", [*ROWS, ["", "教授", "某大学", "", "焊接", "", ""]])
    db = str(tmp_path / "m.db")
    runner = CliRunner()
    res = runner.invoke(app, ["import", "experts", str(tmp_path / "x.csv"), "--db", db])
    assert res.exit_code == 2 and "第4行" in res.output and "nothing was imported" in res.output
    res = runner.invoke(app, ["import", "experts", str(tmp_path / "x.csv"), "--db", db, "--dry-run",
                              "--skip-invalid", "--rejects", str(tmp_path / "bad.xlsx")])
    assert res.exit_code == 0, res.output
    assert "2 would be inserted" in res.output and (tmp_path / "bad.xlsx").exists()
    res = runner.invoke(app, ["import", "experts", str(tmp_path / "x.csv"), "--db", db, "--skip-invalid"])
    assert "experts: 2 inserted, 0 updated, 0 unchanged, 0 merged, 1 rejected" in res.output
    assert (tmp_path / "x.rejects.csv").exists()
    res = runner.invoke(app, ["match", "激光焊接", "--db", db])
    assert "王五" in res.output


def test_the_data_page_lists_every_chinese_header() -> None:
    from pathlib import Path

    from matcher.io import DEMAND_HEADERS, EXPERT_HEADERS

    page = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text(encoding="utf-8")
    section = page.split("## Importing and exporting", 1)[1].split("\n## ", 1)[0]
    for headers in (EXPERT_HEADERS, DEMAND_HEADERS):
        for name, aliases in headers.items():
            if name != "contact":  # the nested JSONL shape, not a column
                assert f"`{name}`" in section, name
            for alias in aliases:
                assert alias.isascii() or alias in section, alias
