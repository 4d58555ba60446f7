"""Who may be recommended: one function, `rule_out`, that every ranking path calls (a match, a
stored demand's ranking, the nightly batch, a team, reverse matching and the visit plan).

A path says which rules act on it by the `Rules` it builds: the filters staff chose (region,
title, institutions to leave out), a stored demand's 回避 rules (its enterprise, the institutions
and experts it avoids), the verdicts staff recorded for it (婉拒 and 不合适: never again for that
demand) and the experts paused (暂停推荐; the batch and teams leave them out, live lists flag them).
A new rule is a field here and a line in `rule_out`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from matcher.models import EXCLUDING_VERDICTS, Demand, Expert
from matcher.ranking.filters import Filters, same_institution
from matcher.records import Pause
from matcher.store import Store

FILTERED = "left out by the filters"  # `rule_out`'s reason for a filter, not a 回避 rule


@dataclass(frozen=True)
class Rules:
    """The rules one ranking is made under (module docstring)."""

    filters: Filters = field(default_factory=Filters)
    demand: Demand | None = None  # its 回避 rules act
    declined: Mapping[str, str] = field(default_factory=dict)  # expert id -> why (a verdict)
    paused: Mapping[str, Pause] = field(default_factory=dict)


def rule_out(expert: Expert, rules: Rules) -> str:
    """Why `expert` must not be recommended under `rules`, or "" when they may be."""
    if not rules.filters.allows(expert):
        return FILTERED
    if rules.demand is not None:
        why = conflict(rules.demand, expert)
        if why:
            return why
    if expert.id in rules.declined:
        return rules.declined[expert.id]
    if expert.id in rules.paused:
        return pause_reason(rules.paused[expert.id])
    return ""


def conflict(demand: Demand, e: Expert) -> str:
    """Why a demand must not be matched with expert `e` (回避), or ""."""
    if demand.enterprise and same_institution(demand.enterprise, e.institution):
        return f"works at the demanding enterprise {demand.enterprise}"
    if any(same_institution(i, e.institution) for i in demand.avoid_institutions):
        return f"institution {e.institution} is on the demand's avoid list"
    if e.id in demand.avoid_experts or (e.name and e.name in demand.avoid_experts):
        return "named on the demand's avoid list"
    return ""


def declined(store: Store, demand_id: str) -> dict[str, str]:
    """Experts that staff declined (婉拒) or found unsuitable (不合适) for a demand, and why."""
    out: dict[str, str] = {}
    for expert_id, f in store.excluding_feedback(demand_id, EXCLUDING_VERDICTS).items():
        what = "declined this demand (婉拒)" if f.verdict == "declined" else \
            "found unsuitable for this demand (不合适)"
        who = f" by {f.actor}" if f.actor else ""
        out[expert_id] = f"{what} on {f.created_at[:10]}{who}"
    return out


def paused(store: Store, on: date | None = None) -> dict[str, Pause]:
    """Experts whose recommendations are paused (暂停推荐) on `on` (default: today)."""
    return store.active_pauses((on or date.today()).isoformat())


def pause_reason(pause: Pause) -> str:
    why = f": {pause.reason}" if pause.reason else ""
    return f"recommendations paused (暂停推荐) until {pause.until}{why}"
