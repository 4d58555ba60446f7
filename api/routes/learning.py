"""What the matcher learned from its staff (issue 28): the proposals page for administrators
(/admin/proposals: accept a learned association into the 科协's own thesaurus, or silence it; the
own thesaurus' versions, its download and upload), withdrawing a verdict from a demand's page, and
the same as JSON under /api/v1 (`matcher.proposals`; the CLI is `matcher thesaurus`).

Page writes are HTML form POSTs checked like every page write (session, same site, CSRF token) and
audited; deciding on proposals and changing the own thesaurus is for administrators.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from api.deps import (
    READ_AUTH,
    WRITE_AUTH,
    AdminActor,
    ClientIp,
    EngineDep,
    ReaderActor,
    SettingsDep,
    WorkflowDep,
    WriteLock,
)
from api.routes.staff import FormText, FormToken, problem, render
from api.schemas import AcceptIn, ErrorOut, OwnThesaurusOut, ProposalIn, ProposalList, RejectIn
from api.session import SessionDep, login_redirect, require_writer
from matcher.accounts import Session
from matcher.errors import ForbiddenError, InputError, MatcherError
from matcher.proposals import KINDS, STATUSES, Proposal, Proposals
from matcher.timefmt import local_time, zone_label

pages = APIRouter(include_in_schema=False)
api = APIRouter(tags=["learning"])

STATUS_LABELS = {"open": "待定", "accepted": "已采纳", "rejected": "已忽略", "all": "全部"}
_FLASH = {
    "accepted": "已采纳，写入本会词表（第 {} 版）。下一次匹配起生效。",
    "rejected": "已忽略：这条关联不再提出，也不再使用。",
    "reopened": "已恢复为待定：这条关联重新提出并使用。",
    "imported": "已导入本会词表（第 {} 版）。",
    "reverted": "已恢复旧版本，现为第 {} 版。",
}
MAX_UPLOAD_BYTES = 2_000_000


def get_proposals(engine: EngineDep) -> Proposals:
    return Proposals(engine)


ProposalsDep = Annotated[Proposals, Depends(get_proposals)]


def _admin(session: Session | None) -> Session:
    if session is not None and session.user.role != "admin":
        raise ForbiddenError("只有管理员可以处理学到的关联和本会词表")
    return session  # type: ignore[return-value]


def chance(p_value: float) -> str:
    """How likely the evidence is by chance, as staff read it: a percentage, not 6e-05."""
    if p_value < 0.0001:
        return "不到万分之一"
    if p_value < 0.001:
        return "不到千分之一"
    return f"约 {p_value:.1%}"


def _row(p: Proposal) -> dict[str, Any]:
    a = p.association
    return {"chance": chance(a.p_value), "phrase": a.phrase, "concept": a.concept, "strength": a.strength,
            "demands": a.demands,
            "judged": a.judged, "accepted": a.accepted, "declined": a.declined, "p_value": a.p_value,
            "status": p.status, "suggested_weight": p.weight,
            "examples": [{"id": i, "title": t} for i, t in p.examples]}


# -- the page ---------------------------------------------------------------------------------------
@pages.get("/admin/proposals")
def proposals_page(request: Request, session: SessionDep, proposals: ProposalsDep, settings: SettingsDep,
                   status: Annotated[str, Query(max_length=10)] = "open",
                   done: Annotated[str, Query(max_length=40)] = "") -> Response:
    if session is None:
        return login_redirect(request)
    try:
        _admin(session)
        found = proposals.list(status if status in STATUSES else "open")
        counts = {s: len(proposals.list(s)) for s in ("open", "accepted", "rejected")}
        versions = proposals.versions()
        entries = proposals.own_entries()
    except MatcherError as exc:
        return problem(request, session, exc)
    kind, _, value = done.partition(":")
    flash = _FLASH.get(kind, "").format(value) if kind in _FLASH else ""
    tz = settings.timezone
    learned = proposals.engine.learning.associations()
    return render(request, "admin_proposals.html", {
        "session": session, "nav": "proposals", "status": status if status in STATUSES else "open",
        "status_labels": STATUS_LABELS, "counts": counts, "rows": [_row(p) for p in found],
        "kinds": KINDS, "flash": flash, "zone": zone_label(tz), "entries": entries,
        "versions": [{"version": v.version, "at": local_time(v.at, tz, label=False), "actor": v.actor,
                      "note": v.note} for v in versions],
        "judged": learned.demands, "tested": learned.tested,
    })


def _decided(kind: str, value: object = "", status: str = "open") -> RedirectResponse:
    return RedirectResponse(f"/admin/proposals?status={status}&done={kind}:{quote(str(value))}",
                            status_code=303)


@pages.post("/admin/proposals/accept")
def accept_form(request: Request, session: SessionDep, proposals: ProposalsDep, lock: WriteLock, ip: ClientIp,
                csrf_token: FormToken = "", phrase: Annotated[str, Form(max_length=100)] = "",
                concept: Annotated[str, Form(max_length=100)] = "",
                kind: Annotated[str, Form(max_length=4)] = "症状",
                weight: Annotated[str, Form(max_length=10)] = "") -> Response:
    try:
        writer = _admin(require_writer(request, session, csrf_token))
        try:
            w = float(weight) if weight.strip() else None
        except ValueError:
            raise InputError(f"权重应是 0 到 1 之间的数，不是「{weight}」") from None
        with lock:
            version = proposals.accept(writer.actor, phrase, concept, kind=kind, weight=w, ip=ip)
    except MatcherError as exc:
        return problem(request, session, exc, back="/admin/proposals")
    return _decided("accepted", version.version)


@pages.post("/admin/proposals/reject")
def reject_form(request: Request, session: SessionDep, proposals: ProposalsDep, lock: WriteLock, ip: ClientIp,
                csrf_token: FormToken = "", phrase: Annotated[str, Form(max_length=100)] = "",
                concept: Annotated[str, Form(max_length=100)] = "", note: FormText = "") -> Response:
    try:
        writer = _admin(require_writer(request, session, csrf_token))
        with lock:
            proposals.reject(writer.actor, phrase, concept, note=note, ip=ip)
    except MatcherError as exc:
        return problem(request, session, exc, back="/admin/proposals")
    return _decided("rejected")


@pages.post("/admin/proposals/reopen")
def reopen_form(request: Request, session: SessionDep, proposals: ProposalsDep, lock: WriteLock, ip: ClientIp,
                csrf_token: FormToken = "", phrase: Annotated[str, Form(max_length=100)] = "",
                concept: Annotated[str, Form(max_length=100)] = "") -> Response:
    try:
        writer = _admin(require_writer(request, session, csrf_token))
        with lock:
            was = proposals.reopen(writer.actor, phrase, concept, ip=ip)
    except MatcherError as exc:
        return problem(request, session, exc, back="/admin/proposals")
    return _decided("reopened", status=was.decision)


@pages.get("/admin/thesaurus.txt")
def thesaurus_download(request: Request, session: SessionDep, proposals: ProposalsDep,
                       version: Annotated[int | None, Query(ge=1, le=10**9)] = None) -> Response:
    if session is None:
        return login_redirect(request)
    try:
        _admin(session)
        text = proposals.own_text(version)
    except MatcherError as exc:
        return problem(request, session, exc, back="/admin/proposals")
    name = f"thesaurus-own-v{version}.txt" if version else "thesaurus-own.txt"
    return PlainTextResponse(text, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@pages.post("/admin/thesaurus/import")
async def thesaurus_upload(request: Request, session: SessionDep, proposals: ProposalsDep, lock: WriteLock,
                           ip: ClientIp, csrf_token: FormToken = "",
                           file: Annotated[UploadFile | None, File()] = None) -> Response:
    try:
        writer = _admin(require_writer(request, session, csrf_token))
        if file is None or not file.filename:
            raise InputError("请选择要导入的词表文件（UTF-8 文本，格式同 corpora/thesaurus.txt）")
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise InputError(f"词表文件超过 {MAX_UPLOAD_BYTES // 1_000_000} MB")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(f"{file.filename}: 不是 UTF-8 编码的文本，请另存为 UTF-8 后再导入") from None
        with lock:
            version = proposals.import_text(writer.actor, text, note=f"导入 {file.filename}", ip=ip)
    except MatcherError as exc:
        return problem(request, session, exc, back="/admin/proposals")
    return _decided("imported", version.version)


@pages.post("/admin/thesaurus/revert")
def thesaurus_revert(request: Request, session: SessionDep, proposals: ProposalsDep, lock: WriteLock,
                     ip: ClientIp, csrf_token: FormToken = "",
                     version: Annotated[int, Form(ge=1, le=10**9)] = 1) -> Response:
    try:
        writer = _admin(require_writer(request, session, csrf_token))
        with lock:
            made = proposals.revert(writer.actor, version, ip=ip)
    except MatcherError as exc:
        return problem(request, session, exc, back="/admin/proposals")
    return _decided("reverted", made.version)


@pages.post("/feedback/{feedback_id}/withdraw")
def withdraw_form(request: Request, feedback_id: int, session: SessionDep, workflow: WorkflowDep,
                  lock: WriteLock, ip: ClientIp, csrf_token: FormToken = "") -> Response:
    """A verdict given by mistake, withdrawn from its demand's page (staff; audited)."""
    try:
        writer = require_writer(request, session, csrf_token)
        with lock:
            gone = workflow.withdraw_feedback(writer.actor, feedback_id, ip=ip)
    except MatcherError as exc:
        return problem(request, session, exc, back="/demands")
    return RedirectResponse(f"/demands/{quote(gone.demand_id, safe='')}?done=withdrawn:"
                            f"{quote(gone.expert_id, safe='')}#history", status_code=303)


# -- the JSON API ---------------------------------------------------------------------------------
@api.get("/proposals", response_model=ProposalList, operation_id="listProposals", responses=READ_AUTH)
def list_proposals(proposals: ProposalsDep, _reader: ReaderActor,
                   status: Annotated[str, Query(pattern="^(open|accepted|rejected|all)$")] = "open",
                   ) -> dict[str, Any]:
    """What the 科协's verdicts taught: demand phrase -> expert concept with its evidence (open:
    not decided yet; accepted: in the own thesaurus; rejected: silenced)."""
    rows = [_row(p) for p in proposals.list(status)]
    return {"data": rows, "count": len(rows)}


_DECIDE = {**WRITE_AUTH, 404: {"model": ErrorOut, "description": "No such learned association"},
           422: {"model": ErrorOut, "description": "Invalid input; the message names the field."}}


@api.post("/proposals/accept", response_model=OwnThesaurusOut, operation_id="acceptProposal",
          responses=_DECIDE)
def accept_proposal(body: AcceptIn, proposals: ProposalsDep, lock: WriteLock, actor: AdminActor,
                    ip: ClientIp) -> dict[str, Any]:
    """Write a learned association into the 科协's own thesaurus (a new version; an admin key)."""
    with lock:
        version = proposals.accept(actor, body.phrase, body.concept, kind=body.kind, weight=body.weight,
                                   ip=ip)
    return _own(proposals, version.version)


@api.post("/proposals/reject", response_model=ProposalList, operation_id="rejectProposal", responses=_DECIDE)
def reject_proposal(body: RejectIn, proposals: ProposalsDep, lock: WriteLock, actor: AdminActor,
                    ip: ClientIp) -> dict[str, Any]:
    """Silence a learned association: neither proposed nor used again (an admin key). Returns it."""
    with lock:
        proposals.reject(actor, body.phrase, body.concept, note=body.note, ip=ip)
    return {"data": [_row(proposals.get(body.phrase, body.concept))], "count": 1}


@api.post("/proposals/reopen", response_model=ProposalList, operation_id="reopenProposal", responses=_DECIDE)
def reopen_proposal(body: ProposalIn, proposals: ProposalsDep, lock: WriteLock, actor: AdminActor,
                    ip: ClientIp) -> dict[str, Any]:
    """Undo an accept or a reject (an admin key); an accepted one leaves the own thesaurus."""
    with lock:
        proposals.reopen(actor, body.phrase, body.concept, ip=ip)
    return {"data": [_row(proposals.get(body.phrase, body.concept))], "count": 1}


@api.get("/thesaurus/own", response_model=OwnThesaurusOut, operation_id="getOwnThesaurus",
         responses={**READ_AUTH, 404: {"model": ErrorOut, "description": "No such version"}})
def own_thesaurus(proposals: ProposalsDep, _reader: ReaderActor,
                  version: Annotated[int | None, Query(ge=1, le=10**9)] = None) -> dict[str, Any]:
    """The 科协's own thesaurus (the current version, or `version`)."""
    return _own(proposals, version)


def _own(proposals: Proposals, version: int | None) -> dict[str, Any]:
    found, text, entries = proposals.own(version)
    return {"version": found.version if found else 0, "text": text, "entries": entries,
            "at": found.at if found else None, "actor": found.actor if found else None}
