"""`matcher report --from --to --out 年度报告.xlsx`: the statistics of `matcher.stats` as sheets a 科协
can paste into its annual report (the same figures as /stats and GET /api/v1/stats)."""

from __future__ import annotations

import os
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font

from matcher.errors import InputError
from matcher.models import OUTCOME_KINDS
from matcher.stats import FUNNEL, FUNNEL_LABELS, GroupRow, Stats

SHEETS: tuple[str, ...] = ("概览", "成果", "成果明细", "按月", "按行业", "按地区", "专家", "专家库缺口")
_STAGE_HEADERS = [FUNNEL_LABELS[s] for s in FUNNEL]


def write_report(
    stats: Stats,
    path: Path | str,
    *,
    demand_titles: dict[str, tuple[str, str]] | None = None,
    expert_names: dict[str, str] | None = None,
) -> Path:
    """Write the workbook (aside, then renamed into place: never half a report at `path`)."""
    path = Path(path)
    if path.suffix.lower() != ".xlsx":
        raise InputError(f"the report must be an .xlsx file, not {path.name!r}")
    titles = demand_titles or {}
    names = expert_names or {}
    wb = Workbook()
    period = f"{stats.date_from or '最早'} 至 {stats.date_to or '最新'}"

    ws = wb.active
    ws.title = "概览"
    ws.append(["指标", "数值", "说明"])
    ws.append(["统计期间", period, "漏斗与专家：期间内提交的需求；成果：成果日期在期间内"])
    for stage in FUNNEL:
        ws.append([FUNNEL_LABELS[stage], stats.funnel[stage], f"funnel.{stage}"])
    ws.append(
        ["从提交到首次联系（天，中位数）", stats.median_days_to_contact, f"{stats.contacted_demands} 条需求"]
    )
    for kind, unit in OUTCOME_KINDS.items():
        ws.append(
            [f"{kind}（{unit}）", _num(stats.outcomes[kind]), f"{stats.outcome_counts[kind]} 条成果记录"]
        )

    ws = wb.create_sheet("成果")
    ws.append(["成果类别", "合计", "单位", "条数"])
    for kind, unit in OUTCOME_KINDS.items():
        ws.append([kind, _num(stats.outcomes[kind]), unit, stats.outcome_counts[kind]])

    ws = wb.create_sheet("成果明细")
    ws.append(
        ["编号", "日期", "成果类别", "数值", "单位", "需求编号", "需求名称", "企业", "专家", "备注", "记录人"]
    )
    for o in sorted(stats.outcome_rows, key=lambda o: (o.date, o.id)):
        title, enterprise = titles.get(o.demand_id, ("", ""))
        ws.append(
            [
                o.id,
                o.date,
                o.kind,
                _num(o.value),
                o.unit,
                o.demand_id,
                title,
                enterprise,
                "、".join(names.get(e, e) for e in o.expert_ids),
                o.note,
                o.actor,
            ]
        )

    for title, key, rows in (
        ("按月", "月份", stats.by_month),
        ("按行业", "行业", stats.by_industry),
        ("按地区", "地区（地级市）", stats.by_region),
    ):
        ws = wb.create_sheet(title)
        extra = ["成果条数"] if title == "按月" else []
        ws.append([key, *_STAGE_HEADERS, *extra])
        for r in rows:
            ws.append(_group_row(r, with_outcomes=bool(extra)))

    ws = wb.create_sheet("专家")
    ws.append(["专家编号", "姓名", "单位", "被推荐", "已联系", "同意对接", "对接成功", "成果"])
    for e in stats.experts:
        ws.append(
            [
                e.expert_id,
                e.name,
                e.institution,
                e.recommended,
                e.contacted,
                e.accepted,
                e.succeeded,
                e.outcomes,
            ]
        )

    ws = wb.create_sheet("专家库缺口")
    threshold = stats.gaps.threshold if stats.gaps else None
    ws.append(
        [
            "概念",
            "需求数",
            "需求编号",
            f"弱匹配：最佳专家覆盖需求内容不足 {threshold:.0%}" if threshold else "",
        ]
    )
    for g in stats.gaps.gaps if stats.gaps else ():
        ws.append([g.concept, g.demands, "、".join(g.demand_ids)])

    for sheet in wb.worksheets:
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for cells in sheet.iter_rows(min_row=2):
            for cell in cells:
                if isinstance(cell.value, str) and cell.value.startswith("="):
                    cell.data_type = "s"  # text from staff (a note, an enterprise), never a formula
        sheet.freeze_panes = "A2"
        for column in sheet.columns:
            width = max(len(str(c.value or "")) for c in column)
            sheet.column_dimensions[column[0].column_letter].width = min(max(10, 2 * width), 60)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        wb.save(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else round(v, 4)


def _group_row(r: GroupRow, *, with_outcomes: bool) -> list[object]:
    return [r.name, *(getattr(r, s) for s in FUNNEL), *([r.outcomes] if with_outcomes else [])]
