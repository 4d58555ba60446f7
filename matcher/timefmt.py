"""Times as staff read them: in the 科协's own time zone (setting `timezone`, Asia/Shanghai by
default), labelled, as `YYYY-MM-DD HH:MM`. The store keeps UTC (`now_iso`); a time without a zone
is taken as already local (staff type them so)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from matcher.errors import InputError

_LABELS = {"Asia/Shanghai": "北京时间", "Asia/Chongqing": "北京时间", "Asia/Harbin": "北京时间",
           "Asia/Urumqi": "乌鲁木齐时间", "Asia/Hong_Kong": "香港时间", "Asia/Taipei": "台北时间",
           "Asia/Macau": "澳门时间", "UTC": "协调世界时"}


@lru_cache(maxsize=16)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InputError(f"未知时区 {name!r} (unknown time zone {name!r}; use an IANA name such as "
                         "Asia/Shanghai)") from exc


def zone_label(name: str) -> str:
    return _LABELS.get(name, name)


def to_local(value: str | datetime, tz: str) -> datetime | None:
    """`value` (ISO text or a datetime; naive means local already) in zone `tz`; None if unreadable."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if value.tzinfo is None:
        return value.replace(tzinfo=zone(tz))
    return value.astimezone(zone(tz))


def local_time(value: str | datetime | None, tz: str, *, label: bool = True, seconds: bool = False) -> str:
    """`2026-12-07 10:43（北京时间）` for a UTC `2026-12-07T02:43:00+00:00`; the text itself when it is
    not a time."""
    if value is None:
        return ""
    local = to_local(value, tz)
    if local is None:
        return str(value)
    text = local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{text}（{zone_label(tz)}）" if label else text


def now_local(tz: str) -> datetime:
    return datetime.now(UTC).astimezone(zone(tz))
