"""`matcher report --from --to --out 年度报告.xlsx`: the statistics of `matcher.stats` as sheets a 科协
can paste into its annual report (the same figures as /stats and GET /api/v1/stats)."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font

from matcher.cells import append_row
from matcher.engine import Engine
from matcher.errors import InputError
from matcher.models import OUTCOME_KINDS
from matcher.stats import FUNNEL, FUNNEL_LABELS, GroupRow, Stats, compute

SHEETS: tuple[str, ...] = ("概览", "成果", "成果明细", "按月", "按行业", "按地区", "专家", "专家库缺口")
_STAGE_HEADERS = [FUNNEL_LABELS[s] for s in FUNNEL]


Rows = list[list[object]]


def annual_report(engine: Engine, date_from: date | None, date_to: date | None, path: Path | str) -> Stats:
    """The annual report of a period written to `path`: what `matcher report` and the statistics
    page's 导出年度报告 both write. Returns the figures it holds."""
    stats = compute(engine, date_from, date_to)
    ids = {o.demand_id for o in stats.outcome_rows}
    titles = {d.id: (d.title, d.enterprise) for d in engine.get_demands(ids)}
    named = {x for o in stats.outcome_rows for x in o.expert_ids}
    names = {e.id: e.name for e in engine.get_experts(named)}
    write_report(stats, path, demand_titles=titles, expert_names=names)
    return stats


def write_report(
    stats: Stats,
    path: Path | str,
    *,
    demand_titles: dict[str, tuple[str, str]] | None = None,
    expert_names: dict[str, str] | None = None,
) -> Path:
    """Write the workbook (aside, then renamed into place: never half a report at `path`). Every
    cell goes through `matcher.cells` (text stays text; characters a workbook refuses are dropped)."""
    path = Path(path)
    if path.suffix.lower() != ".xlsx":
        raise InputError(f"the report must be an .xlsx file, not {path.name!r}")
    wb = Workbook()
    sheets = [("概览", _overview(stats)), ("成果", _outcome_totals(stats)),
              ("成果明细", _outcome_rows(stats, demand_titles or {}, expert_names or {})),
              *_groups(stats), ("专家", _experts(stats)), ("专家库缺口", _gaps(stats))]
    assert tuple(t for t, _ in sheets) == SHEETS
    for n, (title, rows) in enumerate(sheets):
        ws = wb.active if n == 0 else wb.create_sheet()
        ws.title = title
        for row in rows:
            append_row(ws, row)
        for cell in ws[1]:
            cell.font = Font(bold=True)
        ws.freeze_panes = "A2"
        for column in ws.columns:
            width = max(len(str(c.value or "")) for c in column)
            ws.column_dimensions[column[0].column_letter].width = min(max(10, 2 * width), 60)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        wb.save(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _overview(stats: Stats) -> Rows:
    period = f"{stats.date_from or '最早'} 至 {stats.date_to or '最新'}"
    rows: Rows = [["指标", "数值", "说明"],
                  ["统计期间", period, "漏斗与专家：期间内提交的需求；成果：成果日期在期间内"]]
    rows += [[FUNNEL_LABELS[stage], stats.funnel[stage], f"funnel.{stage}"] for stage in FUNNEL]
    rows.append(["从提交到首次联系（天，中位数）", stats.median_days_to_contact,
                 f"{stats.contacted_demands} 条需求"])
    rows += [[f"{kind}（{unit}）", _num(stats.outcomes[kind]), f"{stats.outcome_counts[kind]} 条成果记录"]
             for kind, unit in OUTCOME_KINDS.items()]
    return rows


def _outcome_totals(stats: Stats) -> Rows:
    return [["成果类别", "合计", "单位", "条数"],
            *([kind, _num(stats.outcomes[kind]), unit, stats.outcome_counts[kind]]
              for kind, unit in OUTCOME_KINDS.items())]


def _outcome_rows(stats: Stats, titles: dict[str, tuple[str, str]], names: dict[str, str]) -> Rows:
    rows: Rows = [["编号", "日期", "成果类别", "数值", "单位", "需求编号", "需求名称", "企业", "专家", "备注",
                   "记录人"]]
    for o in sorted(stats.outcome_rows, key=lambda o: (o.date, o.id)):
        title, enterprise = titles.get(o.demand_id, ("", ""))
        rows.append([o.id, o.date, o.kind, _num(o.value), o.unit, o.demand_id, title, enterprise,
                     "、".join(names.get(e, e) for e in o.expert_ids), o.note, o.actor])
    return rows


def _groups(stats: Stats) -> list[tuple[str, Rows]]:
    out = []
    for title, key, groups in (("按月", "月份", stats.by_month), ("按行业", "行业", stats.by_industry),
                               ("按地区", "地区（地级市）", stats.by_region)):
        extra = ["成果条数"] if title == "按月" else []
        out.append((title, [[key, *_STAGE_HEADERS, *extra],
                            *(_group_row(r, with_outcomes=bool(extra)) for r in groups)]))
    return out


def _experts(stats: Stats) -> Rows:
    return [["专家编号", "姓名", "单位", "被推荐", "已联系", "同意对接", "对接成功", "成果"],
            *([e.expert_id, e.name, e.institution, e.recommended, e.contacted, e.accepted, e.succeeded,
               e.outcomes] for e in stats.experts)]


def _gaps(stats: Stats) -> Rows:
    threshold = stats.gaps.threshold if stats.gaps else None
    head = f"弱匹配：最佳专家覆盖需求内容不足 {threshold:.0%}" if threshold else ""
    return [["概念", "需求数", "需求编号", head],
            *([g.concept, g.demands, "、".join(g.demand_ids)]
              for g in (stats.gaps.gaps if stats.gaps else ()))]


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else round(v, 4)


def _group_row(r: GroupRow, *, with_outcomes: bool) -> list[object]:
    return [r.name, *(getattr(r, s) for s in FUNNEL), *([r.outcomes] if with_outcomes else [])]
