"""Reading the files staff have: JSONL, CSV in UTF-8 and GBK, real .xlsx; every bad row named."""

from __future__ import annotations

import json

import openpyxl
import pytest

from matcher.errors import DataImportError, InputError
from matcher.io import read_demands, read_experts

HEADER = ["姓名", "职称", "工作单位", "所在地区", "研究方向", "联系电话", "邮箱"]
ROWS = [
    ["王五", "教授", "浙江工业大学", "浙江省杭州市", "激光焊接、异种金属连接", "0571-0000-0001", "w@example.org"],
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
    write_csv(p, [ROWS[0], ["", "教授", "某大学", "", "焊接", "", ""], ["孙七", "教授", "某大学", "", "", "", ""]])
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
    with pytest.raises(DataImportError, match="duplicate id 'A'"):
        read_experts(p)


def test_demands_need_a_title_or_description(tmp_path) -> None:
    p = tmp_path / "demands.csv"
    write_csv(p, [["某公司", "焊接合格率低", ""], ["某公司", "", ""]], header=["企业名称", "需求名称", "需求描述"])
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
