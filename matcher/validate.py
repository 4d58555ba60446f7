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

import calendar
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

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
        """The message, other fields named by `label` (the file's column, or the field's name). Only
        `{field}` is replaced: a message quotes what was typed, and "{" in a phone number or a date
        cell is text, not a placeholder (str.format raised on it)."""
        return _FIELD.sub(lambda m: label(m.group(1)), self.message)


_FIELD = re.compile(r"\{([a-z_]+)\}")


_ISO_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
#: A day that exists, as the API's schema states it (so that a client's generator makes only
#: these): months of 28, 30 and 31 days, 29 February in leap years; years 1000-9999; [0-9], not \d,
#: which matches other scripts' digits in Python.
_DAY = (r"(?:[1-9][0-9]{3}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
        r"|(?:0[13578]|1[02])-31)|(?:[1-9][0-9](?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[13579][26])00)"
        r"-02-29)")
DATE_PATTERN = rf"^$|^{_DAY}$"
#: The same day, or that day with an ISO time (hh:mm[:ss[.ffffff]], an optional Z or ±hh:mm).
DATETIME_PATTERN = (rf"^$|^{_DAY}(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{{1,6}})?)?"
                    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?)?$")
_ISO_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ]\d{2}:\d{2}")


def date_problem(value: str, *, time_allowed: bool = False) -> str:
    """Why `value` is not a real date written YYYY-MM-DD (with `time_allowed`, also an ISO time such
    as 2026-12-07T09:00:00+08:00), or "". 2026-11-31 is refused: November has 30 days."""
    text = value.strip()
    m = _ISO_DAY.match(text) or (_ISO_TIME.match(text) if time_allowed else None)
    if m is None:
        return f"「{text}」不是日期，请写成 2026-12-31 这样的年-月-日"
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    if not 1 <= month <= 12:
        return f"「{text}」不是有效日期：没有 {month} 月"
    if not year >= 1 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return f"「{text}」不是有效日期：{year} 年 {month} 月没有 {day} 日"
    try:
        (datetime.fromisoformat(text.replace("Z", "+00:00")) if len(text) > 10 else date.fromisoformat(text))
    except ValueError:
        return f"「{text}」不是有效的时间，请写成 2026-12-07T09:00:00 这样的形式"
    return ""


def expert_problems(expert: Expert) -> list[Problem]:
    """What makes an expert's record unusable or wrong."""
    out = []
    if not (expert.research_fields or expert.bio.strip() or expert.documents):
        out.append(Problem("research_fields", "为空，且没有简介或论文、专利、项目可供匹配"))
    phone, email = expert.contact.phone, expert.contact.email
    if phone and len(re.sub(r"\D", "", phone)) < PHONE_DIGITS:
        out.append(Problem("phone", f"「{phone}」不是电话号码（至少 {PHONE_DIGITS} 位数字）"))
    if email and not EMAIL.fullmatch(email):
        out.append(Problem("email", f"「{email}」不是电子邮箱地址"))
    return out


def demand_problems(demand: Demand, *, max_chars: int | None = None) -> list[Problem]:
    """What makes a demand unusable: nothing to match on, more text than a match reads, or a date
    that does not exist (2026-11-31 emptied the median days to first contact)."""
    out = []
    if demand.created_at and (why := date_problem(demand.created_at, time_allowed=True)):
        out.append(Problem("created_at", why))
    if demand.deadline and (why := date_problem(demand.deadline)):
        out.append(Problem("deadline", why))
    if not (demand.title.strip() or demand.description.strip() or any(k.strip() for k in demand.keywords)):
        out.append(Problem("description", "为空（{title}也为空），没有可供匹配的内容"))
    said = len(demand.title) + len(demand.description) + len(" ".join(demand.keywords))
    if max_chars is not None and said > max_chars:
        out.append(Problem("description", f"需求名称、关键词和描述共 {said:,} 字，超过上限 {max_chars:,} 字，"
                                          "请删减 (the demand's text is over the limit, setting "
                                          "MATCHER_MAX_TEXT_CHARS)"))
    return out


def _refuse(what: str, problems: Sequence[Problem]) -> None:
    if problems:
        raise InputError(f"{what}：" + "；".join(f"{p.field}：{p.text()}" for p in problems))


def check_expert(expert: Expert) -> Expert:
    _refuse(f"专家 {expert.id}", expert_problems(expert))
    return expert


def check_experts(experts: Iterable[Expert]) -> list[Expert]:
    return [check_expert(e) for e in experts]


def check_demand(demand: Demand, *, max_chars: int | None = None) -> Demand:
    _refuse(f"需求 {demand.id}", demand_problems(demand, max_chars=max_chars))
    return demand
