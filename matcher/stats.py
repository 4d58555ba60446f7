"""The figures a 科协 is judged on: the funnel from demand to solved problem, the outcomes by kind,
by month, industry and region, the most engaged experts, the days from a demand to its first
contact, and the expert-gap list. A period is a range of days as the timestamps write them
(`2026-11-30T20:00:00+00:00` is received on 2026-11-30). `/stats`, `GET /api/v1/stats` and
`matcher report` all show `compute()`'s figures, so they cannot disagree.

**The funnel** counts the demands *received* in the period (created on those days) by the furthest
stage each reached, so every stage holds the ones after it:

* recommended (已推荐): a nightly run recommended someone for it, or staff recorded any verdict on
  it, or its status is 已推荐, 已联系 or 已对接;
* contacted (已联系): an expert was contacted about it: a verdict 已联系, 同意对接, 婉拒 (a refusal
  is an answer to a contact) or 对接成功, or its status is 已联系 or 已对接;
* accepted (同意对接): a verdict 同意对接 or 对接成功, or its status is 已对接;
* succeeded (对接成功): a verdict 对接成功.

**Outcomes** are summed by kind over the outcomes *dated* in the period (whatever the demand's
date). **Engaged experts** are ranked by the demands of the period's cohort they succeeded on,
accepted, were contacted about (婉拒 included) and were recommended for, then by outcomes dated in
the period that name them. **Days to first contact**: for the demands
received in the period that were contacted, the median of (first contact-implying verdict - the
demand's creation), in days. Timestamps without a zone are China Standard Time (UTC+8), as staff
type them; the server's own are UTC.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from matcher.engine import Engine
from matcher.gaps import GapReport, gap_list
from matcher.models import OUTCOME_KINDS
from matcher.records import DemandFact, Engagement, Outcome
from matcher.regions import parse_region

CHINA = timezone(timedelta(hours=8))
FUNNEL: tuple[str, ...] = ("received", "recommended", "contacted", "accepted", "succeeded")
FUNNEL_LABELS: dict[str, str] = {
    "received": "收到需求",
    "recommended": "已推荐",
    "contacted": "已联系",
    "accepted": "同意对接",
    "succeeded": "对接成功",
}
_CONTACTED_STATUSES = ("contacted", "connected")
_RECOMMENDED_STATUSES = ("matched", "contacted", "connected")


def stage(f: DemandFact) -> int:
    """How far a demand got: 0 received … 4 succeeded (see the module docstring)."""
    if f.succeeded:
        return 4
    if f.accepted or f.status == "connected":
        return 3
    if f.first_contact_at or f.status in _CONTACTED_STATUSES:
        return 2
    if f.recommended or f.status in _RECOMMENDED_STATUSES:
        return 1
    return 0


def parse_time(text: str) -> datetime | None:
    """An ISO date or time; one without a zone is China Standard Time. None for a time that is not
    one (a database written before imports refused impossible dates may hold one, such as 2026-11-31)."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=CHINA)


def funnel_of(facts: Iterable[DemandFact]) -> dict[str, int]:
    out = dict.fromkeys(FUNNEL, 0)
    for f in facts:
        for i in range(stage(f) + 1):
            out[FUNNEL[i]] += 1
    return out


@dataclass(frozen=True, slots=True)
class GroupRow:
    """The funnel of one group of demands (a month, an industry, a city)."""

    name: str
    received: int
    recommended: int
    contacted: int
    accepted: int
    succeeded: int
    outcomes: int = 0  # outcomes recorded (by their date), for months


@dataclass
class Stats:
    date_from: str | None
    date_to: str | None
    funnel: dict[str, int]
    outcomes: dict[str, float]  # kind -> total value, every kind (0 when none)
    outcome_counts: dict[str, int]
    by_month: list[GroupRow]
    by_industry: list[GroupRow]
    by_region: list[GroupRow]
    experts: list[Engagement]
    median_days_to_contact: float | None
    contacted_demands: int  # … over this many demands
    gaps: GapReport | None = None
    outcome_rows: list[Outcome] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, object]:
        def rows(items: list[GroupRow], key: str) -> list[dict[str, object]]:
            return [
                {
                    key: r.name,
                    **{s: getattr(r, s) for s in FUNNEL},
                    **({"outcomes": r.outcomes} if key == "month" else {}),
                }
                for r in items
            ]

        return {
            "from": self.date_from,
            "to": self.date_to,
            "funnel": self.funnel,
            "outcomes": {k: _number(v) for k, v in self.outcomes.items()},
            "outcome_units": dict(OUTCOME_KINDS),
            "outcome_counts": self.outcome_counts,
            "by_month": rows(self.by_month, "month"),
            "by_industry": rows(self.by_industry, "industry"),
            "by_region": rows(self.by_region, "region"),
            "experts": [
                {
                    "expert_id": e.expert_id,
                    "name": e.name,
                    "institution": e.institution,
                    "recommended": e.recommended,
                    "contacted": e.contacted,
                    "accepted": e.accepted,
                    "succeeded": e.succeeded,
                    "outcomes": e.outcomes,
                }
                for e in self.experts
            ],
            "median_days_to_first_contact": self.median_days_to_contact,
            "contacted_demands": self.contacted_demands,
            "gap_threshold": self.gaps.threshold if self.gaps else None,
            "gaps": [
                {"concept": g.concept, "demands": g.demands, "demand_ids": list(g.demand_ids)}
                for g in (self.gaps.gaps if self.gaps else ())
            ],
        }


def _number(v: float) -> float | int:
    return int(v) if float(v).is_integer() else round(v, 4)


def _group(facts: list[DemandFact], key: object) -> list[GroupRow]:
    groups: dict[str, list[DemandFact]] = defaultdict(list)
    for f in facts:
        groups[key(f)].append(f)  # type: ignore[operator]
    out = [GroupRow(name, **funnel_of(fs)) for name, fs in groups.items()]
    return sorted(out, key=lambda r: (-r.received, r.name))


def compute(
    engine: Engine,
    date_from: date | None = None,
    date_to: date | None = None,
    *,
    gaps: bool = True,
    top_experts: int = 10,
) -> Stats:
    store = engine.store
    lo = date_from.isoformat() if date_from else None
    hi = date_to.isoformat() if date_to else None
    facts = store.demand_facts(lo, hi)
    outcomes = store.list_outcomes(date_from=lo, date_to=hi, limit=None)
    totals = dict.fromkeys(OUTCOME_KINDS, 0.0)
    counts = dict.fromkeys(OUTCOME_KINDS, 0)
    for o in outcomes:
        totals[o.kind] += o.value
        counts[o.kind] += 1
    months = {r.name: r for r in _group(facts, lambda f: _month(f.created_at))}
    outcome_months = Counter(o.date[:7] for o in outcomes)
    by_month = [
        GroupRow(
            m,
            *(getattr(months[m], s) if m in months else 0 for s in FUNNEL),
            outcomes=outcome_months.get(m, 0),
        )
        for m in sorted(set(months) | set(outcome_months))
    ]
    days = []
    for f in facts:
        contact, created = parse_time(f.first_contact_at or ""), parse_time(f.created_at)
        if contact is not None and created is not None:
            days.append(max((contact - created).total_seconds(), 0.0) / 86400)
    engaged = store.expert_engagement(lo, hi)
    experts = sorted(
        engaged,
        key=lambda e: (-e.succeeded, -e.accepted, -e.contacted, -e.outcomes, -e.recommended, e.expert_id),
    )[:top_experts]
    report = None
    if gaps:
        demands = store.get_demands([f.demand_id for f in facts])
        report = gap_list(engine, demands)
    return Stats(
        date_from=lo,
        date_to=hi,
        funnel=funnel_of(facts),
        outcomes=totals,
        outcome_counts=counts,
        by_month=by_month,
        by_industry=_group(facts, lambda f: f.industry or "（未填行业）"),
        by_region=_group(facts, lambda f: parse_region(f.region).city_label),
        experts=[e for e in experts if e.contacted or e.recommended or e.outcomes],
        median_days_to_contact=round(statistics.median(days), 2) if days else None,
        contacted_demands=len(days),
        gaps=report,
        outcome_rows=outcomes,
    )


def _month(created_at: str) -> str:
    return created_at[:7]  # as the period filter reads the date: the day the timestamp names
