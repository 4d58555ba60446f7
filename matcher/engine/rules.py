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

FILTERED = "不符合筛选条件"  # `rule_out`'s reason for a filter, not a 回避 rule
#: What kind of rule a reason of `rule_out` names: its words up to the first "：". The batch's log and
#: report count them apart (a 不合适 verdict is not a 回避 rule).
EXCLUSION_KINDS: tuple[str, ...] = ("回避", "婉拒", "不合适", "暂停推荐")


def exclusion_kind(reason: str) -> str:
    """回避, 婉拒, 不合适 or 暂停推荐: which rule a reason of `rule_out` names ("" for another)."""
    head = reason.split("：", 1)[0]
    return head if head in EXCLUSION_KINDS else ""


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
        return f"回避：就职于提出需求的企业（{demand.enterprise}）"
    if any(same_institution(i, e.institution) for i in demand.avoid_institutions):
        return f"回避：单位「{e.institution}」在需求的回避单位中"
    if e.id in demand.avoid_experts or (e.name and e.name in demand.avoid_experts):
        return "回避：在需求的回避专家中"
    return ""


def declined(store: Store, demand_id: str) -> dict[str, str]:
    """Experts that staff declined (婉拒) or found unsuitable (不合适) for a demand, and why."""
    out: dict[str, str] = {}
    for expert_id, f in store.excluding_feedback(demand_id, EXCLUDING_VERDICTS).items():
        what = "婉拒" if f.verdict == "declined" else "不合适"
        who = f"，{f.actor} 记录" if f.actor else ""
        out[expert_id] = f"{what}：{f.created_at[:10]}{who}"
    return out


def paused(store: Store, on: date | None = None) -> dict[str, Pause]:
    """Experts whose recommendations are paused (暂停推荐) on `on` (default: today)."""
    return store.active_pauses((on or date.today()).isoformat())


def pause_reason(pause: Pause) -> str:
    why = f"（{pause.reason}）" if pause.reason else ""
    return f"暂停推荐：至 {pause.until}{why}"
