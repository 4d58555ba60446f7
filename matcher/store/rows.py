"""Records to rows and back: list-valued fields as JSON text, explanations as JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from matcher.models import Demand, Expert, Explanation, expert_digest

EXPERT_COLUMNS = ("id", "name", "title", "institution", "region", "research_fields", "bio", "documents",
                   "tags", "contact")


EXPERT_JSON = ("research_fields", "documents", "tags", "contact")


DEMAND_JSON = ("keywords", "avoid_institutions", "avoid_experts", "exclude_terms", "extra_terms")


def explanation_json(expl: Explanation) -> str:
    return json.dumps(expl.to_dict(), ensure_ascii=False)


def explanation_from_json(text: str) -> Explanation:
    return Explanation.from_dict(json.loads(text))


def aspects_json(aspects: Sequence[Mapping[str, Any]]) -> str | None:
    return json.dumps([dict(a) for a in aspects], ensure_ascii=False) if aspects else None


def aspects_from_json(text: str | None) -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(text)) if text else ()


def expert_to_row(expert: Expert) -> dict[str, Any]:
    d = expert.to_dict(include_contact=True)
    for key in EXPERT_JSON:
        d[key] = json.dumps(d[key], ensure_ascii=False)
    d["digest"] = expert_digest(expert)
    return d


def expert_from_row(row: dict[str, Any]) -> Expert:
    d = dict(row)
    for key in EXPERT_JSON:
        d[key] = json.loads(d[key]) if d.get(key) else None
    return Expert.from_dict(d)


def demand_to_row(demand: Demand) -> dict[str, Any]:
    d = demand.to_dict()
    for key in DEMAND_JSON:
        d[key] = json.dumps(d[key], ensure_ascii=False)
    return d


def demand_from_row(row: dict[str, Any]) -> Demand:
    d = dict(row)
    for key in DEMAND_JSON:
        d[key] = json.loads(d[key]) if d.get(key) else None
    return Demand.from_dict(d)
