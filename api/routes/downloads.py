"""Every table page's Excel download, for signed-in staff: the inbox (as the import reads it back),
the expert library (without contact details), the audit log (admins), the annual report of /stats
(the workbook `matcher report` writes) and a batch run's report (the one `matcher batch --report`
writes). Each download is audited with its row count; every cell goes through `matcher.cells`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.deps import ClientIp, EngineDep, WorkflowDep, WriteLock
from api.render import problem
from api.routes.audit import admin_period
from api.session import SessionDep, login_redirect
from matcher import io as mio
from matcher.auditlog import ACTIONS, actor_label, describe, expert_ids
from matcher.batch import write_report as write_batch_report
from matcher.errors import MatcherError, NotFoundError
from matcher.report import annual_report
from matcher.timefmt import local_time, now_local, zone_label
from matcher.workflow import parse_date

router = APIRouter(include_in_schema=False)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_ROWS = 200_000  # one download; a province's whole library is ~100,000 experts
Day = Annotated[str, Query(max_length=10)]


def xlsx_response(write: Callable[[Path], object], filename: str) -> Response:
    """A workbook written by `write(path)` as a download named `filename` (Chinese allowed)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.xlsx"
        write(path)
        data = path.read_bytes()
    return Response(content=data, media_type=XLSX, headers={
        "Content-Disposition": f"attachment; filename=\"download.xlsx\"; filename*=UTF-8''{quote(filename)}",
        "Cache-Control": "no-store",
    })


def _today(engine: EngineDep) -> str:
    return now_local(engine.settings.timezone).strftime("%Y%m%d")


@router.get("/demands.xlsx")
def demands_xlsx(request: Request, session: SessionDep, engine: EngineDep, workflow: WorkflowDep,
                 lock: WriteLock, ip: ClientIp, status: Annotated[str, Query(max_length=20)] = "",
                 industry: Annotated[str, Query(max_length=100)] = "",
                 region: Annotated[str, Query(max_length=100)] = "",
                 date_from: Annotated[str, Query(alias="from", max_length=10)] = "",
                 date_to: Annotated[str, Query(alias="to", max_length=10)] = "") -> Response:
    """The inbox's demands with its filters, in the columns `matcher import demands` reads."""
    if session is None:
        return login_redirect(request)
    try:
        demands = workflow.demands(status=status, industry=industry, region=region, date_from=date_from,
                                   date_to=date_to, limit=MAX_ROWS)
    except MatcherError as exc:
        return problem(request, session, exc, back="/demands")
    with lock:
        workflow.record(
            session.actor, "export.download", "demands", {"what": "需求", "rows": len(demands)}, ip=ip
        )
    return xlsx_response(lambda p: mio.export_demands(demands, "xlsx", p), f"需求_{_today(engine)}.xlsx")


@router.get("/experts.xlsx")
def experts_xlsx(request: Request, session: SessionDep, engine: EngineDep, workflow: WorkflowDep,
                 lock: WriteLock, ip: ClientIp, q: Annotated[str, Query(max_length=100)] = "") -> Response:
    """The expert library (or the experts found), without phone and e-mail (personal information)."""
    if session is None:
        return login_redirect(request)
    experts, _ = engine.search_experts(q.strip(), limit=MAX_ROWS)
    with lock:
        workflow.record(
            session.actor, "export.download", "experts", {"what": "专家", "rows": len(experts)}, ip=ip
        )
    return xlsx_response(lambda p: mio.export_experts(experts, "xlsx", p, include_contact=False),
                         f"专家库_{_today(engine)}.xlsx")


AUDIT_COLUMNS = ("时间", "操作者", "操作", "内容", "来源地址", "操作代码", "对象")


@router.get("/audit.xlsx")
def audit_xlsx(
    request: Request,
    session: SessionDep,
    engine: EngineDep,
    workflow: WorkflowDep,
    lock: WriteLock,
    ip: ClientIp,
    user: Annotated[str, Query(max_length=100)] = "",
    action: Annotated[str, Query(max_length=40)] = "",
    date_from: Annotated[str, Query(alias="from", max_length=10)] = "",
    date_to: Annotated[str, Query(alias="to", max_length=10)] = "",
) -> Response:
    """The audit log (admins), filtered as on its page: each entry a sentence, its time local."""
    period = admin_period(request, session, date_from, date_to)
    if isinstance(period, Response):
        return period
    lo, hi = period
    tz = engine.settings.timezone
    entries, _ = workflow.audit_log(actor=user.strip() or None, action=action or None, date_from=lo,
                                    date_to=hi, limit=MAX_ROWS)
    names = {e.id: e.name for e in engine.get_experts({i for a in entries for i in expert_ids(a)})}
    when = f"时间（{zone_label(tz)}）"
    header = [when, *AUDIT_COLUMNS[1:]]
    rows = [{when: local_time(a.at, tz, label=False, seconds=True), "操作者": actor_label(a.actor),
             "操作": ACTIONS.get(a.action, "其他操作"), "内容": describe(a, names, tz), "来源地址": a.ip,
             "操作代码": a.action, "对象": a.target} for a in entries]
    with lock:
        workflow.record(
            session.actor, "export.download", "audit", {"what": "审计日志", "rows": len(rows)}, ip=ip
        )
    return xlsx_response(lambda p: mio.write_table(p, "xlsx", header, rows, sheet="审计日志"),
                         f"审计日志_{_today(engine)}.xlsx")


@router.get("/stats/report.xlsx")
def report_xlsx(
    request: Request,
    session: SessionDep,
    engine: EngineDep,
    workflow: WorkflowDep,
    lock: WriteLock,
    ip: ClientIp,
    date_from: Annotated[str, Query(alias="from", max_length=10)] = "",
    date_to: Annotated[str, Query(alias="to", max_length=10)] = "",
) -> Response:
    """导出年度报告: the same workbook as `matcher report --from --to` for the period chosen on /stats."""
    if session is None:
        return login_redirect(request)
    try:
        lo = parse_date(date_from, "from") if date_from else None
        hi = parse_date(date_to, "to") if date_to else None
    except MatcherError as exc:
        return problem(request, session, exc, back="/stats")
    with lock:
        workflow.record(session.actor, "report.download", "report",
                        {"from": lo.isoformat() if lo else "", "to": hi.isoformat() if hi else ""}, ip=ip)
    period = f"{lo or '最早'}至{hi or _today(engine)}".replace("-", "")
    return xlsx_response(lambda p: annual_report(engine, lo, hi, p), f"年度报告_{period}.xlsx")


@router.get("/batch/runs/{run_key}/report.xlsx")
def batch_report_xlsx(request: Request, run_key: str, session: SessionDep, engine: EngineDep,
                      workflow: WorkflowDep, lock: WriteLock, ip: ClientIp) -> Response:
    """A batch run's report: its recommendations, exclusions and unfilled demands, and its figures."""
    if session is None:
        return login_redirect(request)
    run = engine.store.get_batch_run(run_key)
    if run is None:
        return problem(request, session, NotFoundError(f"没有运行编号为「{run_key}」的批处理"), back="/batch")
    with lock:
        workflow.record(session.actor, "export.download", f"batch:{run_key}",
                        {"what": f"批处理 {run_key} 的报告", "rows": run.recommendations}, ip=ip)
    return xlsx_response(lambda p: write_batch_report(engine.store, run, p), f"批处理报告_{run_key}.xlsx")
