"""De-duplication: who is the same person, how records merge, and merges logged and undone."""

from __future__ import annotations

import openpyxl
import pytest
from typer.testing import CliRunner

from matcher.cli import app
from matcher.dedupe import (
    DEFAULT_THRESHOLD,
    canonical_institution,
    institution_evidence,
    merge_experts,
    name_key,
    plan_import,
    same_person,
)
from matcher.errors import InputError
from matcher.models import Expert

from .conftest import make_settings

# The table of the module docstring: (a, b, the same institution?)
INSTITUTIONS = [
    ("浙江大学", "浙大", True),
    ("浙大", "浙江大学机械工程学院", True),
    ("浙江大学", "浙江大学机械工程学院", True),
    ("浙江大学机械工程学院", "浙江大学机械学院", True),  # ratio 88.9, same root
    ("杭州电子科技大学通信工程学院", "杭州电子科技大学通讯工程学院", True),  # ratio 92.9
    ("中科院宁波材料所", "中国科学院", True),
    ("中科院宁波材料所", "中国科学院宁波材料技术与工程研究所", True),  # an abbreviated sub-unit
    ("哈工大材料学院", "哈尔滨工业大学材料科学与工程学院", True),
    ("浙江大学化学系", "浙江大学化学工程与生物工程学院", False),
    ("浙江大学机械工程学院", "浙江大学材料科学与工程学院", False),
    ("浙工大", "浙江工业大学", True),
    ("上海交大", "上海交通大学", True),
    ("浙江大学（紫金港校区）", "浙江大学", True),
    ("永康市恒创杯业有限公司", "永康市恒创杯业股份有限公司", True),
    ("浙江省农业科学院", "浙江省林业科学院", False),  # ratio 87.5
    ("杭州市农业科学研究院", "杭州市林业科学研究院", False),  # ratio 90, different roots
    ("温州医科大学附属第一医院", "温州医科大学附属第二医院", False),  # ratio 91.7, numbers differ
    ("浙江理工大学", "浙江工业大学", False),  # ratio 83.3
    ("浙江大学", "浙江工业大学", False),  # ratio 80
    ("浙大", "浙工大", False),
    ("浙大城市学院", "浙江大学", False),  # an independent college
    ("北大荒集团", "北京大学", False),  # an abbreviation inside a company name is not expanded
    ("上交所", "上海交通大学", False),
    ("浙江", "浙江大学", False),
    ("", "浙江大学", False),
]


@pytest.mark.parametrize(("a", "b", "same"), INSTITUTIONS)
def test_institution_table(a: str, b: str, same: bool) -> None:
    assert (institution_evidence(a, b) is not None) is same
    assert (institution_evidence(b, a) is not None) is same


def test_threshold_is_the_documented_one() -> None:
    assert DEFAULT_THRESHOLD == 88.0
    a, b = "杭州电子科技大学通信工程学院", "杭州电子科技大学通讯工程学院"
    assert institution_evidence(a, b, threshold=92).score == pytest.approx(92.86, abs=0.01)
    assert institution_evidence(a, b, threshold=93) is None
    assert canonical_institution("浙大 机械学院") == "浙江大学机械学院"
    assert name_key("王  五") == name_key("王五") and name_key("買買提•艾力") == "买买提·艾力"


def person(eid: str, name: str = "张三", institution: str = "浙江大学", **kw) -> Expert:
    return Expert.from_dict({"id": eid, "name": name, "institution": institution,
                             "research_fields": kw.pop("research_fields", ["激光焊接"]), **kw})


def test_same_person_needs_the_same_name_and_evidence() -> None:
    assert same_person(person("1"), person("2", institution="浙大")) is not None
    assert same_person(person("1"), person("2", name="张山", institution="浙大")) is None
    assert same_person(person("1"), person("2", institution="浙江工业大学")) is None
    # people move: a shared phone or e-mail is stronger than the institution
    moved = person("2", institution="宁波大学", contact={"phone": "138-0000-0001"})
    assert same_person(person("1", contact={"phone": "13800000001"}), moved).reason == "同一电话"
    no_institution = person("2", institution="", contact={"email": "z@x.org"})
    assert same_person(person("1", contact={"email": "Z@x.org"}), no_institution) is not None
    # a missing institution is no evidence
    assert same_person(person("1"), person("2", institution="")) is None


def test_merging_unites_lists_and_newer_values_win() -> None:
    old = person("1", institution="浙江大学", title="副教授", research_fields=["激光焊接"], tags=["金桥工程"],
                 documents=[{"kind": "paper", "title": "焊接气孔"}], contact={"phone": "0571-1"})
    new = person("2", institution="浙大机械工程学院", title="教授", research_fields=["激光焊接", "真空保温"],
                 documents=[{"kind": "paper", "title": "焊接气孔", "year": 2021},
                            {"kind": "patent", "title": "一种保温杯"}],
                 contact={"email": "z@x.org"})
    merged = merge_experts(old, new)
    assert merged.id == "1" and merged.title == "教授"
    assert merged.institution == "浙江大学机械工程学院"  # the more specific, abbreviation written out
    assert merged.research_fields == ("激光焊接", "真空保温") and merged.tags == ("金桥工程",)
    assert [(d.kind, d.title, d.year) for d in merged.documents] == [("paper", "焊接气孔", 2021),
                                                                     ("patent", "一种保温杯", None)]
    assert (merged.contact.phone, merged.contact.email) == ("0571-1", "z@x.org")
    assert merge_experts(merged, new) == merged  # idempotent


def test_the_plan_merges_into_stored_and_earlier_rows() -> None:
    stored = person("S1", institution="浙江大学")
    rows = [person("E1", institution="浙大机械工程学院", research_fields=["真空保温"]),
            person("E2", name="李四", institution="宁波大学"),
            person("E3", name="李四", institution="宁波大学海洋学院", research_fields=["海洋生物"]),
            person("E4", name="王五")]
    plan = plan_import(rows, [2, 3, 4, 5], [stored])
    assert [(m.kept_id, m.merged.id, m.row, m.kept_row) for m in plan.merges] == [("S1", "E1", 2, None),
                                                                                ("E2", "E3", 4, 3)]
    ids = [r.id for r in plan.records]
    assert sorted(ids) == ["E2", "E4", "S1"]
    s1 = next(r for r in plan.records if r.id == "S1")
    assert s1.research_fields == ("激光焊接", "真空保温")
    # rows with their own ids are the record: never merged
    explicit = plan_import(rows, [2, 3, 4, 5], [stored], explicit_ids=[True] * 4)
    assert explicit.merges == () and len(explicit.records) == 4
    # a pair whose merge was undone stays apart
    apart = plan_import(rows[:1], [2], [stored], distinct={frozenset(("S1", "E1"))})
    assert apart.merges == () and [r.id for r in apart.records] == ["E1"]


def two_year_sheets(tmp_path):
    def sheet(name: str, rows: list[list[object]]):
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.append(["姓名", "职称", "工作单位", "研究方向", "代表性成果", "联系电话"])
        for r in rows:
            ws.append(r)
        wb.save(tmp_path / name)
        return tmp_path / name

    y2023 = sheet("2023.xlsx", [
        ["张三", "副教授", "浙江大学", "激光焊接", "薄板激光焊接气孔控制", None],
        ["李四", "研究员", "中国科学院宁波材料技术与工程研究所", "石墨烯导热膜", None, None],
    ])
    y2024 = sheet("2024.xlsx", [["张三", "教授", "浙大机械工程学院", "异种金属连接", "不锈钢保温杯真空焊接",
                                 None],
                                ["张三", "教授", "浙江工业大学", "过程装备", None, None],  # another 张三
                                ["李四", "研究员", "中科院宁波材料所", "导热界面材料", None, "13800000002"]])
    return y2023, y2024


def test_importing_two_years_merges_the_same_people(tmp_path, engine) -> None:
    y2023, y2024 = two_year_sheets(tmp_path)
    engine.import_experts(y2023)
    dry = engine.import_experts(y2024, dry_run=True)
    assert [(m.row, m.reason) for m in dry.merges] == [
        (2, "浙江大学机械工程学院隶属于浙江大学"),
        (4, "「宁波材料所」是「宁波材料技术与工程研究所」的简称（中国科学院）"),
    ]
    assert engine.store.count_experts() == 2 and engine.store.list_merges() == []
    report = engine.import_experts(y2024)
    assert (report.inserted, report.updated, report.merged) == (1, 2, 2)
    assert engine.store.count_experts() == 3
    zhang = next(e for e in engine.store.iter_experts() if e.name == "张三" and "浙江大学" in e.institution)
    assert zhang.title == "教授" and zhang.institution == "浙江大学机械工程学院"
    assert zhang.research_fields == ("激光焊接", "异种金属连接") and len(zhang.documents) == 2
    # found by what either year said
    assert engine.match("不锈钢保温杯真空焊接", top_k=1)[0].expert.id == zhang.id
    assert engine.match("薄板激光焊接气孔", top_k=1)[0].expert.id == zhang.id
    # the log, newest first, with the record merged away
    log = engine.store.list_merges()
    assert log[1].kept_id == zhang.id and log[1].merged.institution == "浙大机械工程学院"
    # importing the same sheet again changes nothing and logs nothing
    again = engine.import_experts(y2024)
    assert (again.inserted, again.updated) == (0, 0) and len(engine.store.list_merges()) == 2


def test_a_merge_is_undone_and_not_redone(tmp_path, engine) -> None:
    y2023, y2024 = two_year_sheets(tmp_path)
    engine.import_experts(y2023)
    engine.import_experts(y2024)
    entry = next(m for m in engine.store.list_merges() if m.merged.name == "张三")
    before = engine.store.get_expert(entry.kept_id)
    engine.undo_merge(entry.id)
    assert engine.store.get_expert(entry.kept_id) == entry.before != before
    assert engine.store.get_expert(entry.merged_id) == entry.merged
    assert engine.store.count_experts() == 4
    # at once in the results: the 2024 record is its own expert again
    assert engine.match("不锈钢保温杯真空焊接", top_k=1)[0].expert.id == entry.merged_id
    with pytest.raises(InputError, match="undone already"):
        engine.undo_merge(entry.id)
    # staff said they are two people: the next import keeps them apart
    assert [m.merged.name for m in engine.import_experts(y2024).merges] == ["李四"]
    assert engine.store.count_experts() == 4


def test_undo_is_refused_when_the_kept_expert_changed_since(tmp_path, engine) -> None:
    y2023, y2024 = two_year_sheets(tmp_path)
    engine.import_experts(y2023)
    engine.import_experts(y2024)
    entry = next(m for m in engine.store.list_merges() if m.merged.name == "张三")
    kept = engine.store.get_expert(entry.kept_id)
    engine.upsert_experts([Expert.from_dict({**kept.to_dict(), "bio": "后来补充的简介"})])
    with pytest.raises(InputError, match="changed after merge"):
        engine.undo_merge(entry.id)


def test_the_threshold_is_a_setting(tmp_path, tokenizer) -> None:
    from matcher.engine import Engine

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["姓名", "工作单位", "研究方向"])
    ws.append(["张三", "杭州电子科技大学通信工程学院", "激光焊接"])
    ws.append(["张三", "杭州电子科技大学通讯工程学院", "异种金属连接"])
    wb.save(tmp_path / "x.xlsx")
    for threshold, merged in ((88, 1), (95, 0)):
        e = Engine(make_settings(tmp_path / str(threshold), dedupe_threshold=threshold), tokenizer=tokenizer)
        assert e.import_experts(tmp_path / "x.xlsx", dry_run=True).merged == merged
        e.close()


def test_the_cli_shows_merges_and_undoes_them(tmp_path) -> None:
    y2023, y2024 = two_year_sheets(tmp_path)
    db = str(tmp_path / "m.db")
    runner = CliRunner()
    assert runner.invoke(app, ["import", "experts", str(y2023), "--db", db]).exit_code == 0
    res = runner.invoke(app, ["import", "experts", str(y2024), "--db", db, "--dry-run"])
    assert "2024.xlsx: 第2行 张三（浙大机械工程学院）would merge into" in res.output
    assert "2 would be merged" in res.output
    res = runner.invoke(app, ["import", "experts", str(y2024), "--db", db])
    assert "2 merged" in res.output, res.output
    res = runner.invoke(app, ["merges", "list", "--db", db])
    lines = res.output.strip().splitlines()
    assert len(lines) == 2 and "张三（浙大机械工程学院）" in lines[1]
    merge_id = lines[1].split()[0]
    res = runner.invoke(app, ["merges", "undo", merge_id, "--db", db])
    assert res.exit_code == 0 and f"merge {merge_id} undone" in res.output
    res = runner.invoke(app, ["merges", "undo", merge_id, "--db", db])
    assert res.exit_code == 2 and "undone already" in res.output
    res = runner.invoke(app, ["merges", "list", "--all", "--db", db])
    assert "[undone" in res.output
