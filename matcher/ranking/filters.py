"""Rules on who may be recommended: filters by region and title, institutions and experts excluded."""

from __future__ import annotations

import re
from dataclasses import dataclass

from matcher.models import Expert
from matcher.text import normalize

# -- filters -------------------------------------------------------------------------------------
_SPLIT = re.compile(r"[,，、;；\s]+")


@dataclass(frozen=True, slots=True)
class Filters:
    """Who may be recommended: region and title contain these, institutions and ids excluded."""

    region: str = ""
    title: str = ""
    exclude_institutions: tuple[str, ...] = ()
    exclude_experts: tuple[str, ...] = ()

    def allows(self, expert: Expert) -> bool:
        if self.region and self.region not in expert.region:
            return False
        if self.title and not any(t and t in expert.title for t in _SPLIT.split(self.title)):
            return False
        if expert.id in self.exclude_experts or expert.name in self.exclude_experts:
            return False
        return not any(inst and same_institution(inst, expert.institution) for inst in self.exclude_institutions)


def same_institution(a: str, b: str) -> bool:
    """One institution names the other: 浙江大学 ~ 浙江大学机械工程学院 (prefix), exact otherwise."""
    a, b = normalize(a), normalize(b)
    if not a or not b:
        return False
    return a == b or b.startswith(a) or a.startswith(b)
