"""Reading and writing records: JSONL, CSV (UTF-8 or GBK/GB18030) and XLSX.

Staff spreadsheets have Chinese headers (姓名, 工作单位, 研究方向 …); `HEADER_ALIASES` maps the
common ones, and English ones, onto our fields. Every problem is reported with its file, row and
column, and a file with any bad row is rejected whole by default: `read_experts`/`read_demands`
raise `DataImportError` listing every `RowError`, before anything is written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matcher.errors import DataImportError, InputError, MatcherError, RowError
from matcher.models import Demand, Expert

SUPPORTED = (".jsonl", ".json", ".csv", ".xlsx")

EXPERT_HEADERS: dict[str, tuple[str, ...]] = {
    "id": ("id", "编号", "专家编号", "expert_id"),
    "name": ("name", "姓名", "专家姓名"),
    "title": ("title", "职称", "职务", "职称/职务"),
    "institution": ("institution", "工作单位", "单位", "所在单位", "单位名称", "affiliation"),
    "region": ("region", "所在地区", "地区", "所在地", "城市"),
    "research_fields": ("research_fields", "研究方向", "研究领域", "专业特长", "专业领域", "fields"),
    "bio": ("bio", "简介", "个人简介", "专家简介", "biography"),
    "achievements": ("achievements", "代表性成果", "主要成果", "代表成果"),
    "tags": ("tags", "标签", "人才类别"),
    "phone": ("phone", "联系电话", "电话", "手机", "手机号"),
    "email": ("email", "邮箱", "电子邮箱", "e-mail"),
    "academician": ("academician", "是否院士"),
    "gender": ("gender", "性别"),
}
DEMAND_HEADERS: dict[str, tuple[str, ...]] = {
    "id": ("id", "编号", "需求编号", "demand_id"),
    "enterprise": ("enterprise", "企业名称", "企业", "单位名称", "company"),
    "title": ("title", "需求名称", "需求标题", "项目名称"),
    "description": ("description", "需求描述", "需求内容", "技术需求", "问题描述"),
    "industry": ("industry", "技术领域", "所属行业", "行业"),
    "region": ("region", "所在地区", "地区"),
    "keywords": ("keywords", "关键词"),
    "budget": ("budget", "预算", "预算(万元)"),
    "deadline": ("deadline", "截止日期"),
    "created_at": ("created_at", "提交日期", "创建时间"),
    "status": ("status", "状态"),
    "avoid_institutions": ("avoid_institutions", "回避单位"),
    "avoid_experts": ("avoid_experts", "回避专家"),
}


@dataclass(frozen=True)
class RawRow:
    """A record as read from a file, with its row number (header = row 1 in sheets, 1-based lines in JSONL)."""

    row: int
    data: Mapping[str, Any]


@dataclass
class Parsed:
    records: list[Any] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # the source row of each record
    errors: list[RowError] = field(default_factory=list)


def decode_bytes(raw: bytes, source: str = "") -> str:
    """UTF-8 (with or without BOM), else GB18030 (a superset of GBK and GB2312); else a clear error."""
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise DataImportError(
        f"{source or 'file'}: the text is neither UTF-8 nor GBK/GB18030; save it as UTF-8 (CSV UTF-8 in Excel)"
    )


def read_rows(path: Path | str) -> Iterator[RawRow]:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise InputError(f"{path.name}: unsupported file type {suffix or '(none)'}; use .jsonl, .csv or .xlsx")
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if suffix in (".jsonl", ".json"):
        yield from _read_jsonl(path)
    elif suffix == ".csv":
        yield from _read_csv(path)
    else:
        yield from _read_xlsx(path)


def _read_jsonl(path: Path) -> Iterator[RawRow]:
    text = decode_bytes(path.read_bytes(), path.name)
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" and stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DataImportError(f"{path.name}: not valid JSON ({exc})") from exc
        for i, item in enumerate(items, start=1):
            yield RawRow(i, item if isinstance(item, dict) else {"__invalid__": item})
        return
    bad: list[RowError] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(RowError(lineno, "", f"not valid JSON ({exc.msg})", path.name))
            continue
        if not isinstance(item, dict):
            bad.append(RowError(lineno, "", "a line must hold one JSON object", path.name))
            continue
        yield RawRow(lineno, item)
    if bad:
        raise DataImportError(f"{path.name}: {len(bad)} unreadable line(s); nothing was imported", bad)


def _read_csv(path: Path) -> Iterator[RawRow]:
    text = decode_bytes(path.read_bytes(), path.name)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",\t;")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    header = next(reader, None)
    if not header:
        raise DataImportError(f"{path.name}: the file is empty")
    header = [h.strip() for h in header]
    for i, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue
        yield RawRow(i, dict(zip(header, values, strict=False)))


def _read_xlsx(path: Path) -> Iterator[RawRow]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken zip or sheet
        raise DataImportError(f"{path.name}: not a readable .xlsx workbook ({exc})") from exc
    try:
        ws = wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        if not header:
            raise DataImportError(f"{path.name}: the first sheet is empty")
        names = ["" if h is None else str(h).strip() for h in header]
        for i, values in enumerate(rows, start=2):
            if not any(v not in (None, "") for v in values):
                continue
            yield RawRow(i, {n: v for n, v in zip(names, values, strict=False) if n})
    finally:
        wb.close()


def _map_headers(data: Mapping[str, Any], aliases: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """Rename known headers to field names; unknown columns are kept as they are."""
    lookup = {alias.lower(): name for name, alist in aliases.items() for alias in alist}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = lookup.get(str(key).strip().lower(), key)
        if isinstance(value, str):
            value = value.strip()
        out.setdefault(name, value)
    return out


def _stable_id(prefix: str, *parts: str) -> str:
    digest = hashlib.sha1("|".join(parts).encode("utf-8")).hexdigest()[:10]
    return f"{prefix}{digest}"


def _flat_expert(d: dict[str, Any]) -> dict[str, Any]:
    """A spreadsheet row (one cell per field) into the nested expert shape."""
    if "documents" not in d and d.get("achievements"):
        from matcher.models import split_list

        titles = [t for t in split_list(str(d["achievements"]).replace("；", "\n")) if t]
        d["documents"] = [{"kind": "achievement", "title": t} for t in titles]
    if isinstance(d.get("documents"), str):
        try:
            d["documents"] = json.loads(d["documents"])
        except json.JSONDecodeError:
            d["documents"] = [{"kind": "achievement", "title": d["documents"]}]
    if "contact" not in d and (d.get("phone") or d.get("email")):
        d["contact"] = {"phone": d.get("phone") or "", "email": d.get("email") or ""}
    if isinstance(d.get("contact"), str):
        try:
            d["contact"] = json.loads(d["contact"])
        except json.JSONDecodeError:
            d["contact"] = None
    if str(d.get("academician", "")).strip() in ("是", "1", "true", "yes", "Y") and "院士" not in str(d.get("title", "")):
        d["title"] = f"院士 {d.get('title') or ''}".strip()
    return d


def parse_experts(rows: Iterator[RawRow] | list[RawRow], source: str = "") -> Parsed:
    out = Parsed()
    for raw in rows:
        d = _flat_expert(_map_headers(raw.data, EXPERT_HEADERS))
        if not d.get("id"):
            if not d.get("name"):
                out.errors.append(RowError(raw.row, "姓名/name", "is empty (a row needs an id or a name)", source))
                continue
            d["id"] = _stable_id("E", str(d.get("name", "")), str(d.get("institution", "")))
        has_content = d.get("research_fields") or d.get("bio") or d.get("documents")
        if not has_content:
            out.errors.append(
                RowError(raw.row, "研究方向/research_fields", "is empty, and there is no bio or document to match on", source)
            )
            continue
        try:
            out.records.append(Expert.from_dict(d))
            out.rows.append(raw.row)
        except MatcherError as exc:
            out.errors.append(RowError(raw.row, "", exc.message, source))
    _check_duplicate_ids(out, source)
    return out


def parse_demands(rows: Iterator[RawRow] | list[RawRow], source: str = "") -> Parsed:
    out = Parsed()
    for raw in rows:
        d = _map_headers(raw.data, DEMAND_HEADERS)
        if not (str(d.get("title") or "").strip() or str(d.get("description") or "").strip()):
            out.errors.append(RowError(raw.row, "需求描述/description", "is empty (and so is 需求名称/title)", source))
            continue
        if not d.get("id"):
            d["id"] = _stable_id("D", str(d.get("enterprise", "")), str(d.get("title", "")), str(d.get("description", "")))
        if d.get("created_at") is not None and not isinstance(d["created_at"], str):
            d["created_at"] = d["created_at"].isoformat() if hasattr(d["created_at"], "isoformat") else str(d["created_at"])
        try:
            out.records.append(Demand.from_dict(d))
            out.rows.append(raw.row)
        except MatcherError as exc:
            out.errors.append(RowError(raw.row, "", exc.message, source))
    _check_duplicate_ids(out, source)
    return out


def _check_duplicate_ids(parsed: Parsed, source: str) -> None:
    seen: dict[str, int] = {}
    for rec, row in zip(parsed.records, parsed.rows, strict=True):
        if rec.id in seen:
            parsed.errors.append(RowError(row, "id", f"duplicate id {rec.id!r} (first on row {seen[rec.id]})", source))
        seen.setdefault(rec.id, row)


def read_experts(path: Path | str) -> list[Expert]:
    """All experts of a file, or `DataImportError` naming every bad row (nothing partial)."""
    path = Path(path)
    parsed = parse_experts(read_rows(path), path.name)
    if parsed.errors:
        raise DataImportError(f"{path.name}: {len(parsed.errors)} invalid row(s); nothing was imported", parsed.errors)
    return parsed.records


def read_demands(path: Path | str) -> list[Demand]:
    path = Path(path)
    parsed = parse_demands(read_rows(path), path.name)
    if parsed.errors:
        raise DataImportError(f"{path.name}: {len(parsed.errors)} invalid row(s); nothing was imported", parsed.errors)
    return parsed.records


def write_jsonl(path: Path | str, records: list[Mapping[str, Any]]) -> None:
    with Path(path).open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
