"""One set of rules for a record, whoever writes it: a file imported (each problem named by its row and
the file's own column, `matcher.io`), the HTTP API (a 422 naming the field, `api/schemas.py` says the
same rules in its schema) and the engine's writes (`Engine.upsert_experts`, `Engine.add_demands`).

    validate.expert_problems(expert)           -> [Problem("research_fields", "is empty, and ...")]
    validate.check_expert(expert)              -> the expert, or InputError("research_fields: is empty, ...")

A problem's message may name another field as `{field}`: the import shows the file's column for it,
the API the field's name. Checks of how a cell is written (a date, 是/否, a JSON list) belong to the
reader that met the cell; what makes a record unusable is decided here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from matcher.errors import InputError
from matcher.models import Demand, Expert

#: White space as Python's `str.isspace` and `str.strip` see it, spelled out: a JSON-schema pattern is
#: read with ECMA-262's `\s` (which leaves out \x1c-\x1f and \x85), so a rule written with `\s` would
#: let the API's schema promise what this module refuses.
SPACE = r"\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_ADDRESS_PART = rf"[^@\x00-\x1f\x7f{SPACE}\ufeff]+"  # no @, no white space, no control character
EMAIL = re.compile(rf"{_ADDRESS_PART}@{_ADDRESS_PART}\.{_ADDRESS_PART}")
PHONE_DIGITS = 7
#: The same rules as JSON-schema patterns, for the API's schema (blank is allowed: no value).
EMAIL_PATTERN = rf"^$|^{EMAIL.pattern}$"
#: A value that is not blank once stripped (an id, a name): at least one character `strip` keeps.
NOT_BLANK_PATTERN = rf"[^{SPACE}]"
PHONE_PATTERN = r"^$|^(\D*\d){7}"


@dataclass(frozen=True, slots=True)
class Problem:
    field: str
    message: str  # may name other fields as {field}

    def text(self, label: Callable[[str], str] = str) -> str:
        """The message, other fields named by `label` (the file's column, or the field's name)."""
        return self.message.format_map(_Labels(label))


class _Labels(dict):  # type: ignore[type-arg]
    def __init__(self, label: Callable[[str], str]) -> None:
        super().__init__()
        self._label = label

    def __missing__(self, key: str) -> str:
        return self._label(key)


def expert_problems(expert: Expert) -> list[Problem]:
    """What makes an expert's record unusable or wrong."""
    out = []
    if not (expert.research_fields or expert.bio.strip() or expert.documents):
        out.append(Problem("research_fields", "is empty, and there is no bio or document to match on"))
    phone, email = expert.contact.phone, expert.contact.email
    if phone and len(re.sub(r"\D", "", phone)) < PHONE_DIGITS:
        out.append(Problem("phone", f"{phone!r} is not a phone number"))
    if email and not EMAIL.fullmatch(email):
        out.append(Problem("email", f"{email!r} is not an e-mail address"))
    return out


def demand_problems(demand: Demand, *, max_chars: int | None = None) -> list[Problem]:
    """What makes a demand unusable: nothing to match on, or more text than a match reads."""
    out = []
    if not (demand.title.strip() or demand.description.strip() or any(k.strip() for k in demand.keywords)):
        out.append(Problem("description", "is empty (and so is {title})"))
    said = len(demand.title) + len(demand.description) + len(" ".join(demand.keywords))
    if max_chars is not None and said > max_chars:
        out.append(Problem("description", f"需求名称、关键词和描述共 {said:,} 字，超过上限 {max_chars:,} 字"
                                          "（与接口相同，设置 MATCHER_MAX_TEXT_CHARS） "
                                          "(the demand's text is over the limit)"))
    return out


def _refuse(what: str, problems: Sequence[Problem]) -> None:
    if problems:
        raise InputError(f"{what}: " + "; ".join(f"{p.field}: {p.text()}" for p in problems))


def check_expert(expert: Expert) -> Expert:
    _refuse(f"expert {expert.id}", expert_problems(expert))
    return expert


def check_experts(experts: Iterable[Expert]) -> list[Expert]:
    return [check_expert(e) for e in experts]


def check_demand(demand: Demand, *, max_chars: int | None = None) -> Demand:
    _refuse(f"demand {demand.id}", demand_problems(demand, max_chars=max_chars))
    return demand
