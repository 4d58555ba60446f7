"""The batch on the page: the last run (when, how many demands, recommendations, exclusions by kind,
its report to download), the runs before it, and for administrators 立即运行, which starts
`matcher batch` in a process of its own (`matcher.batch.start_batch`) and shows its progress. Two
never run at once: the run holds `<db>.batch.lock`, and the page refuses while it is held. The
nightly timer (deploy/) is unchanged."""

from __future__ import annotations

import threading
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import ClientIp, EngineDep
from api.render import problem, render
from api.session import SessionDep, login_redirect, require_writer
from matcher.batch import batch_status, exclusion_counts, exclusions_text, start_batch
from matcher.errors import ForbiddenError, MatcherError
from matcher.records import BatchRun

router = APIRouter(include_in_schema=False)
STATUS_LABELS = {"running": "运行中", "done": "已完成", "failed": "失败", "interrupted": "中断"}
PAGE_TOP = 10  # experts per demand of a run started here, as the nightly timer's (deploy/)
_STARTING = threading.Lock()  # one start at a time in this process (the lock file covers the others)


def _run_row(engine: EngineDep, run: BatchRun) -> dict[str, object]:
    done = run.status == "done"
    return {"run": run, "status": STATUS_LABELS.get(run.status, run.status),
            "exclusions": exclusions_text(exclusion_counts(engine.store, run)) if done else ""}


@router.get("/batch", response_class=HTMLResponse)
def batch_page(request: Request, session: SessionDep, engine: EngineDep,
               done: Annotated[str, Query(max_length=100)] = "") -> Response:
    if session is None:
        return login_redirect(request)
    status = batch_status(engine.store)
    runs = sorted(engine.store.list_batch_runs(), key=lambda r: (r.started_at, r.id), reverse=True)[:10]
    flash = f"批处理 {done} 已启动，本页每 3 秒刷新一次进度。" if done else ""
    return render(request, "batch.html", {
        "session": session, "nav": "batch", "status": status, "runs": [_run_row(engine, r) for r in runs],
        "last": _run_row(engine, status.last_done) if status.last_done else None,
        "status_labels": STATUS_LABELS, "flash": flash, "top": PAGE_TOP,
        "per_expert": engine.settings.max_per_expert,
        "percent": round(100 * status.scored / status.total) if status.total else 0,
    })


@router.post("/batch/run")
def run_now(request: Request, session: SessionDep, engine: EngineDep, ip: ClientIp,
            csrf_token: Annotated[str, Form(max_length=200)] = "") -> Response:
    """立即运行 (administrators): `matcher batch` in its own process; the page shows its progress."""
    try:
        writer = require_writer(request, session, csrf_token)
        if writer.user.role != "admin":
            raise ForbiddenError("只有管理员可以立即运行批处理")
        with _STARTING:
            key, proc = start_batch(engine, writer.actor, ip=ip, top=PAGE_TOP)
    except MatcherError as exc:
        return problem(request, session, exc, back="/batch")
    # Reaped by a thread of its own: the page never waits for it, and it leaves no zombie behind.
    threading.Thread(target=proc.wait, name=f"batch-{key}", daemon=True).start()
    return RedirectResponse(f"/batch?{urlencode({'done': key})}", status_code=303)
