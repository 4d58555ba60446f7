"""Data in from the pages (`matcher.intake`): the 新建需求 form, 保存到收件箱 from the match page,
the uploads of a demands or experts workbook (a dry run first, then 确认导入), the expert library
(专家库) with its merges and their undo, and the forms that correct an expert's record.

Every write is an HTML form POST checked by `api.session.require_writer` (session, same site, CSRF
token); a refused write shows why, in Chinese, and writes nothing.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import ClientIp, EngineDep, SettingsDep, WriteLock
from api.render import problem, render
from api.session import SessionDep, login_redirect, require_writer
from matcher import Filters
from matcher.accounts import Session
from matcher.engine import Engine
from matcher.errors import InputError, MatcherError
from matcher.intake import DEMAND_FIELDS, KINDS, DemandForm, Intake
from matcher.io import ImportReport

router = APIRouter(include_in_schema=False)

FormToken = Annotated[str, Form(max_length=200)]
# Generous: the rules (and their Chinese messages, with what was typed kept) are matcher.intake's.
Short = Annotated[str, Form(max_length=5000)]
ACTIONS = {"insert": "新增", "update": "更新", "unchanged": "不变", "merge": "合并"}
EXPERTS_PAGE = 30


def _intake(engine: Engine) -> Intake:
    return Intake(engine)


# -- a demand by the form ------------------------------------------------------------------------
def _new_form(request: Request, session: Session, values: dict[str, str] | None = None, error: str = "",
              status_code: int = 200) -> Response:
    return render(
        request,
        "demand_new.html",
        {
            "session": session,
            "nav": "demands",
            "values": values or {},
            "labels": DEMAND_FIELDS,
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/demands/new", response_class=HTMLResponse)
def new_demand_form(request: Request, session: SessionDep) -> Response:
    if session is None:
        return login_redirect(request)
    return _new_form(request, session)


@router.post("/demands/new")
def new_demand(request: Request, session: SessionDep, engine: EngineDep, lock: WriteLock, ip: ClientIp,
               csrf_token: FormToken = "", title: Short = "", enterprise: Short = "", contact: Short = "",
               region: Short = "", industry: Short = "", deadline: Annotated[str, Form(max_length=40)] = "",
               keywords: Short = "", description: Annotated[str, Form(max_length=40_000)] = "") -> Response:
    try:
        writer = require_writer(request, session, csrf_token)
    except MatcherError as exc:
        return problem(request, session, exc)
    values = {"title": title, "enterprise": enterprise, "contact": contact, "region": region,
              "industry": industry, "deadline": deadline, "keywords": keywords, "description": description}
    form = DemandForm(title=title, description=description, enterprise=enterprise, contact=contact,
                      region=region, industry=industry, deadline=deadline.strip(),
                      keywords=tuple(k for k in _split(keywords)))
    try:
        with lock:
            demand = _intake(engine).new_demand(writer.actor, form, ip=ip)
    except InputError as exc:
        return _new_form(request, writer, values, exc.message, status_code=422)
    except MatcherError as exc:
        return problem(request, writer, exc, back="/demands/new")
    return RedirectResponse(f"/demands/{quote(demand.id, safe='')}?done=created:", status_code=303)


def _split(text: str) -> list[str]:
    from matcher.models import split_list

    return list(split_list(text))


def _terms(raw: str, what: str = "排除或补充的词") -> list[str]:
    """The match page sends its term corrections (and the ids it listed) as a JSON list; anything
    else is refused."""
    if not raw.strip():
        return []
    try:
        items = json.loads(raw)
    except json.JSONDecodeError:
        raise InputError(f"{what}格式有误，请回到专家匹配页面重新保存") from None
    if not isinstance(items, list) or not all(isinstance(i, str) and len(i) <= 100 for i in items) \
            or len(items) > 100:
        raise InputError(f"{what}格式有误，请回到专家匹配页面重新保存")
    return items


@router.post("/demands/save")
def save_live(
    request: Request,
    session: SessionDep,
    engine: EngineDep,
    lock: WriteLock,
    ip: ClientIp,
    csrf_token: FormToken = "",
    text: Annotated[str, Form(max_length=40_000)] = "",
    top_k: Annotated[int, Form(ge=1, le=100)] = 10,
    filter_region: Short = "",
    filter_title: Short = "",
    exclude_terms: Annotated[str, Form(max_length=12_000)] = "",
    extra_terms: Annotated[str, Form(max_length=12_000)] = "",
    shown: Annotated[str, Form(max_length=12_000)] = "",
    title: Short = "",
    enterprise: Short = "",
    contact: Short = "",
    region: Short = "",
    industry: Short = "",
    deadline: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """保存到收件箱: the pasted demand, its term corrections and the list the page showed."""
    try:
        writer = require_writer(request, session, csrf_token)
    except MatcherError as exc:
        return problem(request, session, exc)
    try:
        form = DemandForm(title=title, enterprise=enterprise, contact=contact, region=region,
                          industry=industry, deadline=deadline.strip())
        filters = Filters(region=filter_region.strip(), title=filter_title.strip())
        with lock:
            demand, _, as_shown = _intake(engine).save_live(
                writer.actor, text, form, top_k=top_k, filters=filters, exclude_terms=_terms(exclude_terms),
                extra_terms=_terms(extra_terms), shown=_terms(shown, "页面列出的专家"), ip=ip)
    except MatcherError as exc:
        return problem(request, writer, exc, back="/")
    done = "saved" if as_shown else "saved-updated"
    return RedirectResponse(f"/demands/{quote(demand.id, safe='')}?done={done}:", status_code=303)


# -- uploads: checked first, then imported -------------------------------------------------------
async def _read_upload(file: UploadFile, limit: int) -> bytes:
    """The uploaded file, read up to one byte over `limit` (the caller refuses a file that long)."""
    data = await file.read(limit + 1)
    await file.close()
    return data


def _preview_page(request: Request, session: Session, kind: str, token: str, name: str,
                  report: ImportReport) -> Response:
    return render(request, "upload.html", {
        "session": session, "nav": kind, "kind": kind, "kind_label": KINDS[kind], "token": token,
        "name": name, "report": report, "actions": ACTIONS,
        "merges": {m.row: m for m in report.merges},
    })


async def _upload(request: Request, kind: str, session: Session | None, engine: Engine,
                  settings: Any, file: UploadFile | None, csrf_token: str) -> Response:
    back = "/demands" if kind == "demands" else "/experts"
    try:
        writer = require_writer(request, session, csrf_token)
    except MatcherError as exc:
        return problem(request, session, exc)
    intake = _intake(engine)
    if file is None or not file.filename:
        return problem(
            request, writer, InputError("请选择要导入的文件（Excel 工作簿 .xlsx 或 CSV）"), back=back
        )
    data = await _read_upload(file, settings.max_import_bytes)
    try:
        staged = intake.stage(kind, file.filename or "", data)
    except MatcherError as exc:
        return problem(request, writer, exc, back=back)
    try:
        report = intake.preview(staged.token)
    except MatcherError as exc:  # the whole file refused (not a workbook, a zip bomb, no usable column)
        intake.discard(staged.token)
        return problem(request, writer, exc, back=back)
    return _preview_page(request, writer, kind, staged.token, staged.name, report)


@router.post("/demands/upload")
async def upload_demands(
    request: Request,
    session: SessionDep,
    engine: EngineDep,
    settings: SettingsDep,
    file: Annotated[UploadFile | None, File()] = None,
    csrf_token: FormToken = "",
) -> Response:
    return await _upload(request, "demands", session, engine, settings, file, csrf_token)


@router.post("/experts/upload")
async def upload_experts(
    request: Request,
    session: SessionDep,
    engine: EngineDep,
    settings: SettingsDep,
    file: Annotated[UploadFile | None, File()] = None,
    csrf_token: FormToken = "",
) -> Response:
    return await _upload(request, "experts", session, engine, settings, file, csrf_token)


@router.post("/uploads/{token}/confirm")
def confirm_upload(request: Request, token: str, session: SessionDep, engine: EngineDep, lock: WriteLock,
                   ip: ClientIp, csrf_token: FormToken = "") -> Response:
    try:
        writer = require_writer(request, session, csrf_token)
    except MatcherError as exc:
        return problem(request, session, exc)
    intake = _intake(engine)
    try:
        kind = intake.staged(token).kind
        with lock:
            report = intake.confirm(writer.actor, token, ip=ip)
    except MatcherError as exc:
        return problem(request, writer, exc, back="/demands")
    done = f"imported:{report.inserted}:{report.updated}:{report.unchanged}:{report.merged}:{report.rejected}"
    return RedirectResponse(f"/{kind}?{urlencode({'done': done})}", status_code=303)


@router.post("/uploads/{token}/discard")
def discard_upload(request: Request, token: str, session: SessionDep, engine: EngineDep,
                   csrf_token: FormToken = "") -> Response:
    try:
        require_writer(request, session, csrf_token)
        intake = _intake(engine)
        kind = intake.staged(token).kind
        intake.discard(token)
    except MatcherError as exc:
        return problem(request, session, exc, back="/demands")
    return RedirectResponse(f"/{kind}?done=discarded", status_code=303)


def imported_flash(done: str) -> str:
    """The flash after an import (`imported:inserted:updated:unchanged:merged:rejected`)."""
    if done == "discarded":
        return "已取消导入，没有写入任何数据。"
    parts = done.split(":")
    if parts[0] != "imported" or len(parts) != 6 or not all(p.isdigit() for p in parts[1:]):
        return ""
    ins, upd, same, merged, rejected = (int(p) for p in parts[1:])
    text = f"导入完成：新增 {ins} 条，更新 {upd} 条，不变 {same} 条"
    if merged:
        text += f"，合并 {merged} 条"
    if rejected:
        text += f"；{rejected} 行有误，未导入"
    return text + "。"


# -- the expert library --------------------------------------------------------------------------
@router.get("/experts", response_class=HTMLResponse)
def experts_page(
    request: Request,
    session: SessionDep,
    engine: EngineDep,
    q: Annotated[str, Query(max_length=100)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    done: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    if session is None:
        return login_redirect(request)
    experts, total = engine.search_experts(q.strip(), limit=EXPERTS_PAGE, offset=(page - 1) * EXPERTS_PAGE)
    merges = engine.merges()[::-1][:20]
    first = (page - 1) * EXPERTS_PAGE + 1

    def url(**changes: Any) -> str:
        params = {k: v for k, v in {"q": q.strip(), **changes}.items() if v}
        return "/experts" + ("?" + urlencode(params) if params else "")

    return render(
        request,
        "experts.html",
        {
            "session": session,
            "nav": "experts",
            "experts": experts,
            "total": total,
            "q": q,
            "merges": merges,
            "first": first,
            "last": first + len(experts) - 1,
            "flash": imported_flash(done) or _MERGE_FLASH.get(done, ""),
            "prev_url": url(page=str(page - 1)) if page > 1 else "",
            "next_url": url(page=str(page + 1)) if first - 1 + len(experts) < total else "",
            "download_url": "/experts.xlsx" + (f"?{urlencode({'q': q.strip()})}" if q.strip() else ""),
        },
    )


_MERGE_FLASH = {"undone": "已撤销合并：两位专家重新分开，匹配立即按分开后的档案进行。"}


@router.post("/merges/{merge_id}/undo")
def undo_merge(request: Request, merge_id: int, session: SessionDep, engine: EngineDep, lock: WriteLock,
               ip: ClientIp, csrf_token: FormToken = "") -> Response:
    try:
        writer = require_writer(request, session, csrf_token)
        with lock:
            _intake(engine).undo_merge(writer.actor, merge_id, ip=ip)
    except MatcherError as exc:
        return problem(request, session, exc, back="/experts")
    return RedirectResponse("/experts?done=undone", status_code=303)


# -- an expert's record, corrected on their page -------------------------------------------------
@router.post("/experts/{expert_id}/edit")
def edit_expert(
    request: Request,
    expert_id: str,
    session: SessionDep,
    engine: EngineDep,
    lock: WriteLock,
    ip: ClientIp,
    csrf_token: FormToken = "",
    name: Annotated[str, Form(max_length=200)] = "",
    title: Short = "",
    institution: Short = "",
    region: Short = "",
    research_fields: Annotated[str, Form(max_length=4000)] = "",
    tags: Annotated[str, Form(max_length=2000)] = "",
    bio: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    back = f"/experts/{quote(expert_id, safe='')}"
    try:
        writer = require_writer(request, session, csrf_token)
    except MatcherError as exc:
        return problem(request, session, exc)
    try:
        before = engine.get_expert(expert_id)
        with lock:
            after = _intake(engine).update_expert(writer.actor, expert_id, {
                "name": name, "title": title, "institution": institution, "region": region,
                "research_fields": research_fields, "tags": tags, "bio": bio}, ip=ip)
    except MatcherError as exc:
        return problem(request, writer, exc, back=back)
    return RedirectResponse(f"{back}?done={'edited' if after != before else 'unchanged'}", status_code=303)


@router.post("/experts/{expert_id}/documents")
def add_document(
    request: Request,
    expert_id: str,
    session: SessionDep,
    engine: EngineDep,
    lock: WriteLock,
    ip: ClientIp,
    csrf_token: FormToken = "",
    kind: Annotated[str, Form(max_length=20)] = "paper",
    title: Short = "",
    year: Annotated[str, Form(max_length=10)] = "",
    keywords: Annotated[str, Form(max_length=2000)] = "",
    abstract: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    back = f"/experts/{quote(expert_id, safe='')}"
    try:
        writer = require_writer(request, session, csrf_token)
    except MatcherError as exc:
        return problem(request, session, exc)
    try:
        with lock:
            _intake(engine).add_document(writer.actor, expert_id, kind=kind, title=title, year=year,
                                         keywords=keywords, abstract=abstract, ip=ip)
    except MatcherError as exc:
        return problem(request, writer, exc, back=back)
    return RedirectResponse(f"{back}?done=document#edit", status_code=303)

