"""The staff's working loop: the demand inbox, stored recommendations, verdicts that count, paused
experts, and the audit log every write and every view of contact details goes through.

    loop = Workflow(engine)
    loop.inbox(status="matched", region="永康")               -> Inbox (rows with their top three)
    loop.recommendations("Q0001")                              -> Recommendations (batch, or live)
    loop.record_feedback("staff:lihua", "Q0001", "X0004", "declined", "出差在外")
    loop.withdraw_feedback("staff:lihua", 17)                 -> the verdict withdrawn (audited)
    loop.pause("staff:lihua", "X0004", "2026-12-31", "出国访学")

The faces (the API, the pages, the CLI) say who acts (`actor`: `staff:NAME` for a signed-in staff
member, `key:FINGERPRINT` for an API key, `cli:USER`); each write here and its audit entry commit
in one transaction, so no write goes unrecorded and a failed write records nothing. Verdicts act
where the ranking's rules act (`Engine.match_demand`, `Engine.demand_candidates`), not here.

Demand statuses move forward with the verdicts: 已联系 on any expert makes a new or recommended
demand 已联系 (contacted), 同意对接 or 对接成功 makes it 已对接 (connected); a verdict never moves
a status back and never reopens a closed demand. `set_status` sets any status.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from matcher import validate
from matcher.engine import Engine
from matcher.errors import InputError, NotFoundError
from matcher.models import (
    DEMAND_STATUSES,
    EXCLUDING_VERDICTS,
    OUTCOME_KINDS,
    VERDICT_LABELS,
    VERDICTS,
    Contact,
    Demand,
    Expert,
    Explanation,
    demand_status,
)
from matcher.records import AuditEntry, BatchRun, FeedbackEntry, Outcome, Pause

MAX_NOTE_CHARS = 2000
MAX_OUTCOME_VALUE = 1_000_000_000
MAX_OUTCOME_EXPERTS = 20
# How a verdict moves a demand's status on (never back): the statuses it lifts, and to what.
_ADVANCE: dict[str, tuple[tuple[str, ...], str]] = {
    "contacted": (("new", "matched"), "contacted"),
    "accepted": (("new", "matched", "contacted"), "connected"),
    "succeeded": (("new", "matched", "contacted"), "connected"),
}


def key_actor(key: str) -> str:
    """How an API key appears in the audit log: a fingerprint, never the key."""
    return "key:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


#: How the fields that take a date are named to staff.
DATE_FIELDS = {"date": "日期", "from": "起始日期", "to": "结束日期", "until": "暂停截止日期",
               "deadline": "截止日期", "visit": "走访日期"}


def parse_date(value: str | date, what: str = "date") -> date:
    """A day written YYYY-MM-DD that exists; `InputError` naming the field (`what`) otherwise."""
    if isinstance(value, date):
        return value
    text = str(value).strip()
    why = validate.date_problem(text)
    if why:
        raise InputError(
            f"{DATE_FIELDS.get(what, what)}：{why} ({what} {text!r} is not a date like 2026-12-31)"
        )
    return date.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One expert recommended for a demand, with the latest verdict staff recorded on them."""

    rank: int
    expert: Expert
    score: float
    explanation: Explanation
    run_key: str | None  # None for a live ranking
    verdict: FeedbackEntry | None
    paused: Pause | None


@dataclass(frozen=True, slots=True)
class Excluded:
    """An expert ruled out for a demand by a verdict (婉拒, 不合适)."""

    expert: Expert
    verdict: FeedbackEntry


@dataclass(frozen=True, slots=True)
class Recommendations:
    """A demand's recommendations: the last batch run's (`source` "batch"), those staff saved from a
    live ranking on the match page (`source` "saved", 实时匹配: `saved_at`, `saved_by`), whichever is
    newer; or, when neither exists, a live ranking made now (`source` "live"). Experts ruled out by
    a verdict are never among `items` (they are listed in `excluded`), and the others are ranked
    1, 2, 3 … again: a list never starts at 2 because its first expert was found unsuitable."""

    demand: Demand
    source: str
    run: BatchRun | None
    items: list[Recommendation]
    excluded: list[Excluded]
    error: str = ""  # why a live ranking could not be made (a demand with no text)
    saved_at: str = ""
    saved_by: str = ""


@dataclass(frozen=True, slots=True)
class InboxRow:
    demand: Demand
    top: list[tuple[str, str]]  # (expert id, name) of its first three recommendations


@dataclass(frozen=True, slots=True)
class Inbox:
    rows: list[InboxRow]
    total: int
    statuses: dict[str, int]  # every status's count (not filtered): the inbox's tabs
    industries: dict[str, int]


@dataclass(frozen=True, slots=True)
class HistoryItem:
    demand_id: str
    title: str
    enterprise: str
    verdict: str
    note: str
    at: str
    actor: str


@dataclass(frozen=True, slots=True)
class ExpertHistory:
    """How often an expert was recommended (distinct demands, any batch run) and got each verdict."""

    expert_id: str
    recommended: int
    contacted: int
    accepted: int
    succeeded: int
    declined: int
    unsuitable: int
    pause: Pause | None
    events: list[HistoryItem]


class Workflow:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store

    # -- reading --------------------------------------------------------------------------------
    def inbox(
        self,
        *,
        status: str | None = None,
        industry: str | None = None,
        region: str | None = None,
        date_from: str | date | None = None,
        date_to: str | date | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Inbox:
        """Demands newest first, filtered, each with its first three recommendations."""
        if status:
            status = demand_status(status)
        if not 1 <= limit <= 500 or not 0 <= offset <= 10**9:
            raise InputError("limit must be 1 to 500 and offset 0 to 1,000,000,000")
        lo = parse_date(date_from, "from").isoformat() if date_from else None
        hi = parse_date(date_to, "to").isoformat() if date_to else None
        page = self.store.list_demands(
            status=status or None,
            industry=(industry or "").strip() or None,
            region=(region or "").strip() or None,
            date_from=lo,
            date_to=hi,
            limit=limit,
            offset=offset,
        )
        top = self.store.top_recommended([d.id for d in page.demands], 3)
        facets = self.store.demand_facets()
        statuses = {s: facets["status"].get(s, 0) for s in DEMAND_STATUSES}
        return Inbox([InboxRow(d, top[d.id]) for d in page.demands], page.total, statuses, facets["industry"])

    def recommendations(self, demand_id: str, *, top_k: int = 10) -> Recommendations:
        demand = self.store.get_demand(demand_id)
        latest = self.store.latest_verdicts(demand_id)
        ruled_out = self.store.excluding_feedback(demand_id, EXCLUDING_VERDICTS)
        pauses = self.engine.pauses()
        experts = {e.id: e for e in self.store.get_experts(ruled_out)}
        excluded = [Excluded(experts.get(i) or Expert(id=i), f) for i, f in ruled_out.items()]
        stored = self.store.last_recommendations(demand_id)
        if stored.matches:
            kept = [m for m in stored.matches if m.expert_id not in ruled_out]
            records = {e.id: e for e in self.store.get_experts(m.expert_id for m in kept)}
            run_key = stored.run.run_key if stored.run is not None else None
            items = [
                Recommendation(
                    rank,
                    records.get(m.expert_id) or Expert(id=m.expert_id),
                    m.score,
                    m.explanation,
                    run_key,
                    latest.get(m.expert_id),
                    pauses.get(m.expert_id),
                )
                for rank, m in enumerate(kept, start=1)
            ]
            if stored.source == "live":
                return Recommendations(demand, "saved", None, items, excluded, saved_at=stored.saved_at,
                                       saved_by=stored.saved_by)
            return Recommendations(demand, "batch", stored.run, items, excluded)
        try:
            live = self.engine.match_demand(demand, top_k=top_k)
        except InputError as exc:
            return Recommendations(demand, "live", None, [], excluded, error=exc.message)
        items = [
            Recommendation(
                m.rank,
                m.expert,
                m.score,
                m.explanation,
                None,
                latest.get(m.expert.id),
                pauses.get(m.expert.id),
            )
            for m in live
        ]
        return Recommendations(demand, "live", None, items, excluded)

    def expert_history(self, expert_id: str, *, limit: int = 50) -> ExpertHistory:
        self.store.get_expert(expert_id)  # 404 for an unknown id
        counts = self.store.expert_feedback_counts(expert_id)
        entries = self.store.feedback_entries(where="expert_id = ?", params=[expert_id])[::-1][:limit]
        demands: dict[str, Demand] = {}
        for f in entries:
            if f.demand_id not in demands:
                try:
                    demands[f.demand_id] = self.store.get_demand(f.demand_id)
                except NotFoundError:
                    demands[f.demand_id] = Demand(id=f.demand_id)
        events = [
            HistoryItem(
                f.demand_id,
                demands[f.demand_id].title,
                demands[f.demand_id].enterprise,
                f.verdict,
                f.note,
                f.created_at,
                f.actor,
            )
            for f in entries
        ]
        return ExpertHistory(
            expert_id,
            counts["recommended"],
            counts["contacted"],
            counts["accepted"],
            counts["succeeded"],
            counts["declined"],
            counts["unsuitable"],
            self.store.get_pause(expert_id),
            events,
        )

    # -- writing (each with its audit entry, in one transaction) --------------------------------
    def set_status(self, actor: str, demand_id: str, status: str, *, ip: str = "") -> Demand:
        code = demand_status(status)
        with self.store.transaction():
            before = self.store.get_demand(demand_id)
            demand = self.store.update_demand_status(demand_id, code)
            self.store.audit(
                actor, "demand.status", f"demand:{demand_id}", {"from": before.status, "to": code}, ip=ip
            )
        return demand

    def record_feedback(
        self, actor: str, demand_id: str, expert_id: str, verdict: str, note: str = "", *, ip: str = ""
    ) -> FeedbackEntry:
        """Record a verdict (contacted, accepted, declined, unsuitable, succeeded, or their Chinese
        labels) and move the demand's status on (see the module docstring)."""
        code = self.verdict(verdict)
        note = (note or "").strip()
        if len(note) > MAX_NOTE_CHARS:
            raise InputError(f"备注最多 {MAX_NOTE_CHARS:,} 字，现有 {len(note):,} 字 "
                             f"(note: at most {MAX_NOTE_CHARS} characters, not {len(note)})")
        with self.store.transaction():
            demand = self.store.get_demand(demand_id)  # NotFoundError: nothing is written
            self.store.get_expert(expert_id)
            entry = self.store.record_feedback(demand_id, expert_id, code, note, actor=actor)
            moved = ""
            lifts = _ADVANCE.get(code)
            if lifts and demand.status in lifts[0]:
                self.store.update_demand_status(demand_id, lifts[1])
                moved = lifts[1]
            detail: dict[str, object] = {"expert_id": expert_id, "verdict": code, "feedback_id": entry.id}
            if moved:
                detail["status"] = moved
            if note:
                detail["note"] = note
            self.store.audit(actor, "feedback.add", f"demand:{demand_id}", detail, ip=ip)
        return entry

    def withdraw_feedback(self, actor: str, feedback_id: int, *, ip: str = "") -> FeedbackEntry:
        """Withdraw a verdict recorded by mistake: it is deleted, so whatever it did goes with it (an
        expert it ruled out may be recommended again; `matcher.learning` no longer counts it); the
        audit entry keeps what it said and who recorded it. The demand's status stays where it is
        (a verdict never moves a status back; `set_status` does)."""
        with self.store.transaction():
            gone = self.store.delete_feedback(feedback_id)
            detail: dict[str, object] = {"feedback_id": gone.id, "expert_id": gone.expert_id,
                                         "verdict": gone.verdict, "recorded_by": gone.actor,
                                         "recorded_at": gone.created_at}
            if gone.note:
                detail["note"] = gone.note
            self.store.audit(actor, "feedback.withdraw", f"demand:{gone.demand_id}", detail, ip=ip)
        return gone

    @staticmethod
    def verdict(value: str) -> str:
        text = str(value).strip()
        if text in VERDICTS:
            return text
        for code, label in VERDICT_LABELS.items():
            if text == label:
                return code
        choices = "、".join(VERDICT_LABELS[c] for c in VERDICTS)
        raise InputError(f"反馈「{text}」无效，应为：{choices} (verdict is not one of {', '.join(VERDICTS)})")

    def pause(
        self, actor: str, expert_id: str, until: str | date, reason: str = "", *, ip: str = ""
    ) -> Pause:
        """Pause an expert's recommendations until a date (inclusive): travelling, ill, overloaded.
        A date already past is stored as given and pauses nothing (the page refuses one)."""
        day = parse_date(until, "until")
        reason = (reason or "").strip()
        if len(reason) > 200:
            raise InputError(f"原因最多 200 字，现有 {len(reason)} 字 (reason: at most 200 characters)")
        with self.store.transaction():
            self.store.get_expert(expert_id)
            pause = self.store.set_pause(expert_id, day.isoformat(), reason, actor)
            self.store.audit(
                actor,
                "expert.pause",
                f"expert:{expert_id}",
                {"until": pause.until, **({"reason": reason} if reason else {})},
                ip=ip,
            )
        return pause

    def resume(self, actor: str, expert_id: str, *, ip: str = "") -> bool:
        """End a pause; False when the expert was not paused (nothing is written then)."""
        with self.store.transaction():
            self.store.get_expert(expert_id)
            ended = self.store.clear_pause(expert_id)
            if ended:
                self.store.audit(actor, "expert.resume", f"expert:{expert_id}", ip=ip)
        return ended

    def contact(self, actor: str, expert_id: str, *, ip: str = "", where: str = "") -> Contact:
        """An expert's phone and e-mail, and an audit entry saying who saw them (PIPL)."""
        expert = self.store.get_expert(expert_id)
        self.log_contact_view(actor, [expert_id], where=where, ip=ip)
        return expert.contact

    def log_contact_view(
        self, actor: str, expert_ids: Sequence[str], *, where: str = "", ip: str = ""
    ) -> None:
        """Record that `actor` was shown these experts' contact details (one entry per response)."""
        ids = list(dict.fromkeys(expert_ids))
        if not ids:
            return
        target = f"expert:{ids[0]}" if len(ids) == 1 else f"experts:{len(ids)}"
        detail: dict[str, object] = {"experts": ids}
        if where:
            detail["where"] = where
        self.store.audit(actor, "contact.view", target, detail, ip=ip)

    def record(
        self, actor: str, action: str, target: str, detail: dict[str, object] | None = None, *, ip: str = ""
    ) -> None:
        """An audit entry for a write made elsewhere (an expert created through the API, say)."""
        self.store.audit(actor, action, target, detail, ip=ip)

    # -- outcomes (issue 17) --------------------------------------------------------------------
    def record_outcome(
        self,
        actor: str,
        demand_id: str,
        expert_ids: Sequence[str],
        kind: str,
        value: float,
        day: str | date,
        note: str = "",
        *,
        unit: str | None = None,
        ip: str = "",
    ) -> Outcome:
        """Record what a match produced, linked to the demand and its expert(s); audited. The unit
        follows the kind (`OUTCOME_KINDS`); counts (件, 项, 人) are whole numbers."""
        if kind not in OUTCOME_KINDS:
            raise InputError(
                f"成果类别「{kind}」无效，应为：{'、'.join(OUTCOME_KINDS)} (kind is not one of them)"
            )
        expected = OUTCOME_KINDS[kind]
        if unit not in (None, "", expected):
            raise InputError(
                f"单位：{kind}以「{expected}」计，不是「{unit}」 (unit: {kind} is counted in {expected})"
            )
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise InputError("数值应是数字 (value must be a number)")
        if not 0 < value <= MAX_OUTCOME_VALUE:
            raise InputError(f"数值应大于 0、不超过 {MAX_OUTCOME_VALUE:,}，现为 {value:g} "
                             f"(value must be above 0 and at most {MAX_OUTCOME_VALUE:,})")
        if expected != "万元" and not float(value).is_integer():
            raise InputError(f"数值：{kind}以整数「{expected}」计，不能是 {value:g} "
                             f"(value: {kind} is counted in whole {expected})")
        when = parse_date(day, "date").isoformat()
        note = (note or "").strip()
        if len(note) > MAX_NOTE_CHARS:
            raise InputError(f"备注最多 {MAX_NOTE_CHARS:,} 字，现有 {len(note):,} 字 "
                             f"(note: at most {MAX_NOTE_CHARS} characters, not {len(note)})")
        experts = list(dict.fromkeys(e.strip() for e in expert_ids if e and e.strip()))
        if not 1 <= len(experts) <= MAX_OUTCOME_EXPERTS:
            raise InputError(
                f"expert_ids: name 1 to {MAX_OUTCOME_EXPERTS} experts (the ones the outcome is with)"
            )
        with self.store.transaction():
            self.store.get_demand(demand_id)
            known = {e.id for e in self.store.get_experts(experts)}
            missing = [e for e in experts if e not in known]
            if missing:
                raise NotFoundError(f"没有编号为「{missing[0]}」的专家 (no expert with id {missing[0]!r})")
            outcome = self.store.add_outcome(
                demand_id, experts, kind, float(value), expected, when, note, actor
            )
            self.store.audit(
                actor,
                "outcome.add",
                f"demand:{demand_id}",
                {
                    "outcome_id": outcome.id,
                    "kind": kind,
                    "value": outcome.value,
                    "unit": expected,
                    "date": when,
                    "experts": experts,
                },
                ip=ip,
            )
        return outcome

    def delete_outcome(self, actor: str, outcome_id: int, *, ip: str = "") -> Outcome:
        """Remove an outcome recorded by mistake; the audit entry keeps what it said."""
        with self.store.transaction():
            gone = self.store.delete_outcome(outcome_id)
            self.store.audit(
                actor,
                "outcome.delete",
                f"demand:{gone.demand_id}",
                {
                    "outcome_id": gone.id,
                    "kind": gone.kind,
                    "value": gone.value,
                    "unit": gone.unit,
                    "date": gone.date,
                    "experts": list(gone.expert_ids),
                },
                ip=ip,
            )
        return gone

    def outcomes(self, *, limit: int | None = 200, offset: int = 0, **filters: str | None) -> list[Outcome]:
        """Outcomes by date, newest first; `filters`: demand_id, expert_id, date_from, date_to."""
        return self.store.list_outcomes(**filters, limit=limit, offset=offset)  # type: ignore[arg-type]

    def count_outcomes(self, **filters: str | None) -> int:
        return self.store.count_outcomes(**filters)  # type: ignore[arg-type]

    def outcome(self, outcome_id: int) -> Outcome:
        return self.store.get_outcome(outcome_id)

    def audit_log(self, *, actor: str | None = None, action: str | None = None, date_from: str | None = None,
                  date_to: str | None = None, limit: int = 500) -> tuple[list[AuditEntry], int]:
        """The audit log, newest first (what /audit shows admins), and how many entries match."""
        return self.store.list_audit(actor=actor, action=action, date_from=date_from, date_to=date_to,
                                     limit=limit)

    def demands(self, *, status: str | None = None, industry: str | None = None, region: str | None = None,
                date_from: str | date | None = None, date_to: str | date | None = None,
                limit: int = 200_000) -> list[Demand]:
        """Every demand the inbox's filters select, newest first (its Excel download)."""
        lo = parse_date(date_from, "from").isoformat() if date_from else None
        hi = parse_date(date_to, "to").isoformat() if date_to else None
        return self.store.list_demands(status=demand_status(status) if status else None,
                                       industry=(industry or "").strip() or None,
                                       region=(region or "").strip() or None, date_from=lo, date_to=hi,
                                       limit=limit, offset=0).demands
