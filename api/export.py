"""The match list as an .xlsx workbook, for staff who forward results by e-mail or print them."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font

from matcher.cells import append_row, set_cell
from matcher.models import Match

FIELD_NAMES = {
    "research_fields": "研究方向",
    "bio": "简介",
    "paper": "论文",
    "patent": "专利",
    "project": "项目",
    "achievement": "成果",
}
COLUMNS = ("排名", "专家编号", "姓名", "职称", "单位", "地区", "强度", "等级", "匹配词", "依据")
CONTACT_COLUMNS = ("电话", "邮箱")
WIDTHS = (6, 14, 10, 16, 28, 12, 8, 6, 30, 60, 16, 24)


def evidence_text(match: Match) -> str:
    return "\n".join(f"{FIELD_NAMES.get(e.field, e.field)}：{e.text}" for e in match.explanation.evidence)


def matches_xlsx(text: str, matches: Sequence[Match], *, include_contact: bool) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = "匹配结果"
    header = COLUMNS + (CONTACT_COLUMNS if include_contact else ())
    append_row(ws, header)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row, m in enumerate(matches, start=2):
        e = m.expert
        values: list[object] = [
            m.rank,
            e.id,
            e.name,
            e.title,
            e.institution,
            e.region,
            "" if m.strength is None else round(m.strength, 4),
            m.level,
            "、".join(m.explanation.terms),
            evidence_text(m),
        ]
        if include_contact:
            values += [e.contact.phone, e.contact.email]
        for col, value in enumerate(values, start=1):
            set_cell(ws.cell(row=row, column=col), value)
        wrap = Alignment(wrap_text=True, vertical="top")
        ws.cell(row=row, column=COLUMNS.index("依据") + 1).alignment = wrap
    for col, width in enumerate(WIDTHS[: len(header)], start=1):
        ws.column_dimensions[ws.cell(row=1, column=col).column_letter].width = width
    ws.freeze_panes = "A2"

    demand = wb.create_sheet("需求")
    set_cell(demand.cell(row=1, column=1), "需求原文")
    set_cell(demand.cell(row=1, column=2), text)
    set_cell(demand.cell(row=2, column=1), "导出时间")
    set_cell(demand.cell(row=2, column=2), datetime.now().replace(microsecond=0).isoformat(sep=" "))
    demand.column_dimensions["A"].width = 12
    demand.column_dimensions["B"].width = 100
    demand["B1"].alignment = Alignment(wrap_text=True, vertical="top")

    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
