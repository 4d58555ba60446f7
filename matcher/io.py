"""Reading and writing records: JSONL, CSV (UTF-8 or GBK/GB18030) and XLSX.

Reading. Staff spreadsheets have Chinese headers (姓名, 工作单位, 研究方向 …), often below a title
row; `EXPERT_HEADERS`/`DEMAND_HEADERS` map the common ones and English ones onto our fields, a
`--mapping` file (`load_mapping`) the rest. The header row is the first of the first ten rows that
names at least two known columns. Cells are read as text (an Excel number 13800138000 stays
13800138000, a date becomes 2024-05-01). Every problem is a `RowError` with its file, row (as
Excel numbers it: header = 1 on a sheet) and column as written in the file. `parse_file` returns
the valid records and the rejected rows; `read_experts`/`read_demands` reject a file with any bad
row, before anything is written.

Writing. `export_experts`/`export_demands` write records as JSONL (the canonical nested shape),
CSV (UTF-8 with BOM, so Excel opens it) or XLSX, with the same Chinese headers the reader maps, so
an export re-imports unchanged. List cells are joined with 、, or written as a JSON array when an item
itself holds a separator; documents travel whole as JSON in 成果明细 (their titles also in 代表性成果
for people to read). `export_matches` writes ranked matches per demand.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any

from matcher import validate
from matcher.cells import csv_row, csv_unsafe, set_cell
from matcher.dedupe import Merge
from matcher.errors import DataImportError, InputError, MatcherError, RowError
from matcher.models import (
    Demand,
    Expert,
    Match,
    demand_status,
    has_lone_surrogate,
    parse_flag,
    replace_lone_surrogates,
    split_list,
)
from matcher.validate import Problem

SUPPORTED = (".jsonl", ".json", ".csv", ".xlsx")
FORMATS = ("jsonl", "csv", "xlsx")
Progress = Callable[[int, int], None]  # (rows done, rows in all)


@dataclass(frozen=True, slots=True)
class Limits:
    """What an import accepts, as the API does (settings `max_import_bytes`,
    `max_import_unpacked_bytes`, `max_cell_chars`, `max_text_chars`). A file over a limit is refused
    whole before it is read; a cell or a demand over one is an error of its row, naming the limit."""

    file_bytes: int = 50_000_000
    unpacked_bytes: int = 200_000_000
    cell_chars: int = 100_000
    text_chars: int = 20_000

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(settings.max_import_bytes, settings.max_import_unpacked_bytes, settings.max_cell_chars,
                   settings.max_text_chars)


def size_text(n: int) -> str:
    """A size as staff read it: 50 MB, 2,000 字节."""
    return f"{n / 1_000_000:,.0f} MB" if n >= 1_000_000 else f"{n:,} 字节"


EXPERT_HEADERS: dict[str, tuple[str, ...]] = {
    "id": ("id", "编号", "专家编号", "expert_id"),
    "name": ("name", "姓名", "专家姓名"),
    "title": ("title", "职称", "职务", "职称/职务"),
    "institution": ("institution", "工作单位", "单位", "所在单位", "单位名称", "affiliation", "organization"),
    "region": ("region", "所在地区", "地区", "所在地", "城市"),
    "research_fields": ("research_fields", "研究方向", "研究领域", "专业特长", "专业领域", "fields"),
    "bio": ("bio", "简介", "个人简介", "专家简介", "biography"),
    "achievements": ("achievements", "代表性成果", "主要成果", "代表成果"),
    "documents": ("documents", "成果明细"),
    "tags": ("tags", "标签", "人才类别"),
    "phone": ("phone", "联系电话", "电话", "手机", "手机号", "mobile"),
    "email": ("email", "邮箱", "电子邮箱", "e-mail", "mail"),
    "academician": ("academician", "是否院士"),
    "gender": ("gender", "性别"),
    "contact": ("contact",),
}
DEMAND_HEADERS: dict[str, tuple[str, ...]] = {
    "id": ("id", "编号", "需求编号", "demand_id"),
    "enterprise": ("enterprise", "企业名称", "企业", "单位名称", "company"),
    "title": ("title", "需求名称", "需求标题", "项目名称"),
    "description": ("description", "需求描述", "需求内容", "技术需求", "问题描述"),
    "industry": ("industry", "技术领域", "所属行业", "行业"),
    "region": ("region", "所在地区", "地区"),
    "keywords": ("keywords", "关键词"),
    "budget": ("budget", "预算", "预算(万元)", "预算金额"),
    "deadline": ("deadline", "截止日期", "截止时间"),
    "created_at": ("created_at", "提交日期", "创建时间"),
    "status": ("status", "状态"),
    "avoid_institutions": ("avoid_institutions", "回避单位"),
    "avoid_experts": ("avoid_experts", "回避专家"),
    "needs_team": ("needs_team", "组团需求", "组团", "需要组团", "是否组团"),
    "contact": ("contact", "联系人", "企业联系人", "联系方式"),
    "exclude_terms": ("exclude_terms", "排除的词", "排除词"),
    "extra_terms": ("extra_terms", "补充的词", "补充词"),
}
HEADERS = {"experts": EXPERT_HEADERS, "demands": DEMAND_HEADERS}
# Checked, then not kept: the records have no place for them (yet).
UNSTORED = {"experts": ("gender",), "demands": ("budget",)}

# Export columns: (field, header). The headers are the readers' first Chinese aliases.
EXPERT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "编号"), ("name", "姓名"), ("title", "职称"), ("institution", "工作单位"), ("region", "所在地区"),
    ("research_fields", "研究方向"), ("bio", "简介"), ("achievements", "代表性成果"), ("tags", "标签"),
    ("phone", "联系电话"), ("email", "邮箱"), ("documents", "成果明细"),
)
DEMAND_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "编号"),
    ("enterprise", "企业名称"),
    ("title", "需求名称"),
    ("description", "需求描述"),
    ("industry", "技术领域"),
    ("region", "所在地区"),
    ("keywords", "关键词"),
    ("created_at", "提交日期"),
    ("status", "状态"),
    ("avoid_institutions", "回避单位"),
    ("avoid_experts", "回避专家"),
    ("needs_team", "组团需求"),
    ("contact", "联系人"),
    ("deadline", "截止日期"),
    ("exclude_terms", "排除的词"),
    ("extra_terms", "补充的词"),
)
MATCH_COLUMNS = ("需求编号", "企业名称", "需求名称", "排名", "专家编号", "姓名", "职称", "单位", "地区",
                 "强度", "等级", "匹配词", "依据")
# How a field is named in messages when the file has no column for it: its first Chinese header.
_LABELS = {kind: {f: al[min(1, len(al) - 1)] for f, al in h.items()} for kind, h in HEADERS.items()}

_GENDERS = {"男", "女", "m", "f", "male", "female"}
_LIST_SEPARATORS = re.compile(r"[、，,；;|/\n\r\t]")


@dataclass(frozen=True)
class RawRow:
    """A record as read from a file, with its row number (header = 1 in sheets; lines count in JSONL)."""

    row: int
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Reject:
    """A row left out of an import, as it was in the file, with everything wrong with it."""

    row: int
    data: Mapping[str, Any]
    errors: tuple[RowError, ...]


@dataclass
class Parsed:
    records: list[Any] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # the source row of each record
    errors: list[RowError] = field(default_factory=list)
    explicit_ids: list[bool] = field(default_factory=list)  # the row carried its own id
    rejects: list[Reject] = field(default_factory=list)
    ignored_columns: tuple[str, ...] = ()
    total_rows: int = 0
    # False when the file has no phone, e-mail or contact column at all (an export without contact
    # details): its rows then leave the stored contact details as they are.
    has_contact: bool = True


@dataclass(frozen=True)
class PreviewRow:
    """One valid row of an imported file and what the import does with it: `action` is insert,
    update, unchanged or merge (into `into`, an expert already stored or met earlier in the file)."""

    row: int
    id: str
    label: str  # the demand's title, the expert's name
    detail: str  # the enterprise, the institution
    action: str
    into: str = ""


@dataclass(frozen=True)
class ImportReport:
    """What an import did (or, with `dry_run`, would do)."""

    kind: str
    source: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    merges: tuple[Merge, ...] = ()
    rejects: tuple[Reject, ...] = ()
    ignored_columns: tuple[str, ...] = ()
    dry_run: bool = False
    import_id: int | None = None
    preview: tuple[PreviewRow, ...] = ()  # every valid row, in file order, with its action

    @property
    def merged(self) -> int:
        return len(self.merges)

    @property
    def rejected(self) -> int:
        return len(self.rejects)

    @property
    def errors(self) -> list[RowError]:
        return [e for r in self.rejects for e in r.errors]

    def summary(self) -> str:
        verb = "would be " if self.dry_run else ""
        return (f"{self.kind}: {self.inserted} {verb}inserted, {self.updated} {verb}updated, "
                f"{self.unchanged} unchanged, {self.merged} {verb}merged, {self.rejected} rejected")


# -- reading --------------------------------------------------------------------------------------
def decode_bytes(raw: bytes, source: str = "") -> str:
    """UTF-8 (with or without BOM), else GB18030 (a superset of GBK and GB2312); else a clear error."""
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise DataImportError(
        f"{source or '文件'}: 文字既不是 UTF-8 也不是 GBK 编码，请在 Excel 中另存为「CSV UTF-8」后重试 "
        "(the text is neither UTF-8 nor GBK/GB18030)"
    )


def _header_key(header: Any) -> str:
    """Headers compare without case, width, spaces, required-markers (*) or trailing colons."""
    text = unicodedata.normalize("NFKC", str(header)).strip().lower()
    return re.sub(r"[\s*:]", "", text)


_KNOWN_HEADERS = frozenset(_header_key(a) for h in HEADERS.values() for al in h.values() for a in al)


def read_rows(path: Path | str, known_headers: Collection[str] = (), *,
              limits: Limits | None = None) -> Iterator[RawRow]:
    """The rows of a file as {header: cell text}. `known_headers` help find the header row."""
    path = Path(path)
    limits = limits or Limits()
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise InputError(
            f"{path.name}: 不支持的文件类型 {suffix or '（无扩展名）'}，请用 .xlsx、.csv 或 .jsonl "
            f"(unsupported file type; use .jsonl, .csv or .xlsx)"
        )
    if not path.exists():
        raise InputError(f"{path}: no such file")
    size = path.stat().st_size
    if size > limits.file_bytes:
        raise DataImportError(
            f"{path.name}: 文件有 {size_text(size)}，超过导入上限 {size_text(limits.file_bytes)}"
            "；请拆分后分批导入。未导入任何数据 "
            "(the file is over the import limit, setting MATCHER_MAX_IMPORT_BYTES; "
            "nothing was imported)"
        )
    known = _KNOWN_HEADERS | {_header_key(h) for h in known_headers}
    if suffix in (".jsonl", ".json"):
        yield from _read_jsonl(path)
    elif suffix == ".csv":
        yield from _with_header(_csv_values(path, limits), path.name, known)
    else:
        _check_workbook(path, limits)
        yield from _with_header(_xlsx_values(path), path.name, known)


def _check_workbook(path: Path, limits: Limits) -> None:
    """Refuse what is not a workbook, and a workbook that unpacks to more than the limit (a zip bomb:
    1.7 MB that expands to a 456 MB sheet ran past 300 s at 1.7 GB), before openpyxl reads it. A zip
    member cannot yield more than the size its header declares (zipfile checks it while reading)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            members = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DataImportError(f"{path.name}: 不是有效的 Excel 工作簿（.xlsx），"
                              "请在 Excel 中另存为 .xlsx 后重试 "
                              f"(not a readable .xlsx workbook: {exc})") from exc
    if not any(m.filename.startswith("xl/worksheets/") for m in members):
        raise DataImportError(f"{path.name}: 不是有效的 Excel 工作簿（没有工作表） "
                              "(not an .xlsx workbook: no sheet)")
    unpacked = sum(m.file_size for m in members)
    if unpacked > limits.unpacked_bytes:
        raise DataImportError(f"{path.name}: 工作簿解压后有 {size_text(unpacked)}，"
                              f"超过上限 {size_text(limits.unpacked_bytes)}"
                              "；未导入任何数据 (the workbook unpacks to more than the limit, setting "
                              "MATCHER_MAX_IMPORT_UNPACKED_BYTES; nothing was imported)")


def _read_jsonl(path: Path) -> Iterator[RawRow]:
    text = decode_bytes(path.read_bytes(), path.name)
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" and stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DataImportError(f"{path.name}: 不是有效的 JSON 文件 (not valid JSON: {exc})") from exc
        for i, item in enumerate(items, start=1):
            yield RawRow(i, item if isinstance(item, dict) else {"__invalid__": item})
        return
    bad: list[RowError] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            bad.append(RowError(lineno, "", "不是有效的 JSON", path.name))
            continue
        if not isinstance(item, dict):
            bad.append(RowError(lineno, "", "每行应是一个 JSON 对象", path.name))
            continue
        yield RawRow(lineno, item)
    if bad:
        raise DataImportError(f"{path.name}: {len(bad)} 行无法读取，未导入任何数据 "
                              f"({len(bad)} unreadable line(s); nothing was imported)", bad)


def _csv_values(path: Path, limits: Limits) -> Iterator[tuple[int, list[Any]]]:
    text = decode_bytes(path.read_bytes(), path.name)
    first = text.split("\n", 1)[0]
    # The delimiter is the one the header line uses most; sniffing the body misfires on cells full
    # of commas (documents as JSON, lists written with commas).
    counts = {d: first.count(d) for d in (",", "\t", ";")}
    delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    # The csv module refuses a field over its limit (131,072 by default) with a bare csv.Error: a
    # traceback. It reads up to our own cell limit, and a longer cell is an error naming its row.
    before = csv.field_size_limit(max(limits.cell_chars + 1, 131_072))
    try:
        i = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line = reader.line_num
                raise DataImportError(
                    f"{path.name}: 第{line}行附近的单元格超过 {limits.cell_chars:,} 字的上限，"
                    "或引号不成对；未导入任何数据 "
                    f"(line {line}: {exc}; setting MATCHER_MAX_CELL_CHARS; nothing was imported)",
                    [RowError(line, "", f"单元格超过 {limits.cell_chars:,} 字，或引号不成对 ({exc})",
                              path.name)],
                ) from exc
            i += 1
            yield i, [csv_unsafe(c) for c in row]
    finally:
        csv.field_size_limit(before)


def _xlsx_values(path: Path) -> Iterator[tuple[int, list[Any]]]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken zip or sheet
        raise DataImportError(
            f"{path.name}: 不是可读取的 Excel 工作簿（.xlsx），请在 Excel 中另存为 .xlsx 后重试 "
            f"(not a readable .xlsx workbook: {exc})"
        ) from exc
    try:
        ws = wb.worksheets[0]
        for i, values in enumerate(ws.iter_rows(values_only=True), start=1):
            yield i, list(values)
    finally:
        wb.close()


def cell_text(value: Any) -> str | None:
    """A spreadsheet cell as text: numbers without a spurious .0, dates in ISO form, blanks None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    return text or None


def _with_header(values: Iterator[tuple[int, list[Any]]], source: str,
                 known: Collection[str]) -> Iterator[RawRow]:
    header: list[str] | None = None
    leading: list[tuple[int, list[Any]]] = []
    for i, row in values:
        cells = [cell_text(v) for v in row]
        if header is None:
            if not any(cells):
                continue
            leading.append((i, cells))
            hits = sum(1 for c in cells if c and _header_key(c) in known)
            if hits >= 2:
                header = [c or "" for c in cells]
            elif len(leading) >= 10:
                header = [c or "" for c in leading[0][1]]  # no known header: trust the first row
                for j, rest in leading[1:]:
                    if any(rest):
                        yield RawRow(j, _cells(header, rest))
            continue
        if any(cells):
            yield RawRow(i, _cells(header, cells))
    if header is None:
        if not leading:
            raise DataImportError(f"{source}: 文件是空的，没有可导入的行 (the file is empty)")
        header = [c or "" for c in leading[0][1]]
        for j, rest in leading[1:]:
            if any(rest):
                yield RawRow(j, _cells(header, rest))


def _cells(header: Sequence[str], cells: Sequence[str | None]) -> dict[str, str | None]:
    # Every column of the header, empty cells included: a column empty in every row still exists
    # (and a rejected row is written back with all its columns).
    padded = [*cells, *([None] * (len(header) - len(cells)))]
    return {h: v for h, v in zip(header, padded, strict=False) if h}


def load_mapping(path: Path | str, kind: str) -> dict[str, str]:
    """A column mapping file: {header in the file: field}.

    `.json`: one object, e.g. {"导师姓名": "name", "所在院系": "institution"}. `.csv`/`.txt`: one pair a
    line, `header,field` (a first line `header,field` or `表头,字段` is skipped). Fields are the
    names in the README's table (name, institution, research_fields …) or their Chinese headers.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such mapping file")
    text = decode_bytes(path.read_bytes(), path.name)
    pairs: list[tuple[str, str]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path.name}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
        if not isinstance(data, dict):
            raise InputError(f"{path.name}: a mapping must be one JSON object {{\"header\": \"field\"}}")
        pairs = [(str(k), str(v)) for k, v in data.items()]
    else:
        for values in csv.reader(io.StringIO(text)):
            if len(values) >= 2 and values[0].strip():
                pairs.append((values[0].strip(), values[1].strip()))
        if pairs and {pairs[0][1].lower(), pairs[0][1]} & {"field", "字段"}:
            pairs = pairs[1:]
    aliases = HEADERS[kind]
    by_alias = {_header_key(a): f for f, al in aliases.items() for a in al}
    mapping: dict[str, str] = {}
    for header, target in pairs:
        fld = by_alias.get(_header_key(target))
        if fld is None:
            raise InputError(f"{path.name}: {target!r} (for column {header!r}) is not a field of {kind}; "
                             f"use one of {', '.join(aliases)}")
        mapping[header] = fld
    return mapping


def _column_map(headers: Iterable[str], kind: str, mapping: Mapping[str, str]) -> dict[str, str]:
    """{header as in the file: field} for the headers we know; the mapping wins over the aliases."""
    by_alias = {_header_key(a): f for f, al in HEADERS[kind].items() for a in al}
    by_mapping = {_header_key(h): f for h, f in mapping.items()}
    out: dict[str, str] = {}
    for h in headers:
        key = _header_key(h)
        fld = by_mapping.get(key) or by_alias.get(key) or by_alias.get(re.sub(r"\(.*\)$", "", key))
        if fld:
            out[h] = fld
    return out


def _cell_list(value: Any) -> Any:
    """A list cell: a JSON array as written by our exports, else left for `split_list`."""
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        try:
            items = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(items, list) and all(isinstance(x, str) for x in items):
            return items
    return value


def _stable_id(prefix: str, *parts: str) -> str:
    digest = hashlib.sha1("|".join(parts).encode("utf-8")).hexdigest()[:10]
    return f"{prefix}{digest}"


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return replace_lone_surrogates(value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {k: _replace_surrogates(v) for k, v in value.items()}
    return value


class _Row:
    """One row being parsed: fields by name, and errors named after the file's own columns."""

    def __init__(self, raw: RawRow, kind: str, columns: Mapping[str, str], source: str,
                 limits: Limits) -> None:
        self.raw, self.kind, self.source = raw, kind, source
        self.errors: list[RowError] = []
        self.data: dict[str, Any] = {}
        self.header_of: dict[str, str] = {}
        for h, fld in columns.items():
            self.header_of.setdefault(fld, h)  # the file's own name for the column, even where empty
        for h, v in raw.data.items():
            fld = columns.get(h, h)
            if isinstance(v, str):
                v = v.strip()
            if v in (None, "", [], {}):
                continue
            if fld not in self.data:
                self.data[fld] = v
                self.header_of[fld] = h
                self._check_cell(fld, v, limits)

    def _check_cell(self, fld: str, value: Any, limits: Limits) -> None:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if len(text) > limits.cell_chars:
            self.error(fld, f"有 {len(text):,} 字，超过单元格上限 {limits.cell_chars:,} 字 "
                            "(the cell is over the limit, setting MATCHER_MAX_CELL_CHARS)")
        elif has_lone_surrogate(text):
            self.error(fld, "含有无效的字符（孤立的代理项），请检查来源 "
                            "(a lone surrogate: not valid text)")
            # U+FFFD in its place, so that the row can still be written to the rejects file
            self.data[fld] = _replace_surrogates(value)

    def label(self, fld: str) -> str:
        return self.header_of.get(fld) or _LABELS[self.kind].get(fld, fld)

    def error(self, fld: str, message: str) -> None:
        self.errors.append(RowError(self.raw.row, self.label(fld) if fld else "", message, self.source))

    def text(self, fld: str) -> str:
        v = self.data.get(fld)
        return "" if v is None else str(v).strip()


def _record(row: _Row, make: Callable[[dict[str, Any]], Any],
            problems: Callable[[Any], list[Problem]]) -> Any:
    """The record of a row whose cells were read: built, then checked by the rules every writer
    shares (`matcher.validate`); None, with the row's errors, when anything is wrong."""
    try:
        record = make(row.data)
    except MatcherError as exc:
        if not row.errors:  # else a cell already said what is wrong
            row.error("", exc.message)
        return None
    for p in problems(record):
        row.error(p.field, p.text(row.label))
    return None if row.errors else record


def _parse_expert(row: _Row, limits: Limits) -> Expert | None:
    """A row of a file of experts as an `Expert` (its cells read; the record checked)."""
    d = row.data
    explicit = bool(row.text("id"))
    if not explicit and not row.text("name"):
        row.error("name", "为空（每行需要编号或姓名）")
    for fld in ("research_fields", "tags"):
        if fld in d:
            d[fld] = _cell_list(d[fld])
    docs = d.get("documents")
    if isinstance(docs, str):
        try:
            docs = json.loads(docs)
        except json.JSONDecodeError:
            docs = [{"kind": "achievement", "title": t} for t in split_list(docs.replace("；", "\n"))]
    if docs is not None and not isinstance(docs, list):
        row.error("documents", "应是论文、专利、项目的列表")
        docs = None
    if not docs and d.get("achievements"):
        titles = split_list(str(d["achievements"]).replace("；", "\n"))
        docs = [{"kind": "achievement", "title": t} for t in titles]
    d["documents"] = docs or []
    phone, email = row.text("phone"), row.text("email")
    if isinstance(d.get("contact"), str):
        try:
            d["contact"] = json.loads(d["contact"])
        except json.JSONDecodeError:
            row.error("contact", "不是有效的 JSON")
    if "contact" not in d and (phone or email):
        d["contact"] = {"phone": phone, "email": email}
    acad = row.text("academician")
    try:
        if parse_flag(acad, also_yes=("院士",)) and "院士" not in row.text("title"):
            d["title"] = f"院士 {row.text('title')}".strip()
    except InputError:
        row.error("academician", f"「{acad}」应为「是」或「否」")
    gender = row.text("gender").lower()
    if gender and gender not in _GENDERS:
        row.error("gender", f"「{row.text('gender')}」应为「男」或「女」")
    if not explicit:
        d["id"] = _stable_id("E", row.text("name"), row.text("institution"))
    return _record(row, Expert.from_dict, validate.expert_problems)


_BUDGET = re.compile(r"^\d+(\.\d+)?$")
_BUDGET_WORDS = {"面议", "待定", "不限", "无", "-"}
_DATE = re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?([ t].*)?$")


def _iso_date(text: str, *, time_allowed: bool = False) -> str:
    """A date cell as staff type it (2026/11/5, 2026年11月5日, 2026.11.05, with a time for
    `time_allowed`) in ISO form; a cell that is not one (or names a day that does not exist) is left
    as it is, for `matcher.validate` to name."""
    m = _DATE.match(text.strip().lower())
    if m is None:
        return text
    day = f"{int(m[1]):04d}-{int(m[2]):02d}-{int(m[3]):02d}"
    if validate.date_problem(day):
        return text
    rest = (m[4] or "").strip().lstrip("t").strip()
    if not rest:
        return day
    if not time_allowed:
        return text
    try:
        return datetime.fromisoformat(f"{day}T{rest}").isoformat()
    except ValueError:
        return text


def _parse_demand(row: _Row, limits: Limits) -> Demand | None:
    """A row of a file of demands as a `Demand` (its cells read; the record checked, its text within
    the API's limit)."""
    d = row.data
    for fld in ("keywords", "avoid_institutions", "avoid_experts"):
        if fld in d:
            d[fld] = _cell_list(d[fld])
    budget = row.text("budget")
    amount = re.sub(r"[,，\s]|万元|万|元$", "", budget)
    if budget and budget not in _BUDGET_WORDS and not _BUDGET.match(amount):
        row.error("budget", f"「{budget}」不是金额（如 50、50万元、面议）")
    for fld in (
        "created_at",
        "deadline",
    ):  # 2026/11/5, 2026年11月5日 -> 2026-11-05; validate checks it is real
        if row.text(fld):
            d[fld] = _iso_date(row.text(fld), time_allowed=fld == "created_at")
    for fld in ("exclude_terms", "extra_terms"):
        if fld in d:
            d[fld] = _cell_list(d[fld])
    status = row.text("status")
    if status:
        try:
            d["status"] = demand_status(status)
        except MatcherError as exc:
            row.error("status", exc.message)
    try:
        d["needs_team"] = parse_flag(d.get("needs_team"))
    except InputError:
        row.error("needs_team", f"「{row.text('needs_team')}」应为「是」或「否」")
    if not row.text("id"):
        d["id"] = _stable_id("D", row.text("enterprise"), row.text("title"), row.text("description"))
    return _record(row, Demand.from_dict, lambda r: validate.demand_problems(r, max_chars=limits.text_chars))


def _parse(kind: str, rows: Iterable[RawRow], source: str, mapping: Mapping[str, str] | None,
           progress: Progress | None, limits: Limits | None = None) -> Parsed:
    limits = limits or Limits()
    rows = list(rows)
    out = Parsed(total_rows=len(rows))
    headers = list(dict.fromkeys(h for r in rows for h in r.data))
    columns = _column_map(headers, kind, mapping or {})
    _check_columns(kind, headers, columns, source)
    unstored = set(UNSTORED[kind])
    out.ignored_columns = tuple(h for h in headers if h not in columns or columns[h] in unstored)
    out.has_contact = bool({"phone", "email", "contact"} & set(columns.values()))
    make = _parse_expert if kind == "experts" else _parse_demand
    for n, raw in enumerate(rows, start=1):
        row = _Row(raw, kind, columns, source, limits)
        explicit = bool(row.text("id"))
        record = make(row, limits)
        if record is None:
            out.errors.extend(row.errors)
            out.rejects.append(Reject(raw.row, raw.data, tuple(row.errors)))
        else:
            out.records.append(record)
            out.rows.append(raw.row)
            out.explicit_ids.append(explicit)
        if progress is not None and (n % 100 == 0 or n == len(rows)):
            progress(n, len(rows))
    return out


def _check_columns(kind: str, headers: Sequence[str], columns: Mapping[str, str], source: str) -> None:
    """A file none of whose rows could be valid is refused whole, with what to do."""
    if not headers:
        return
    have = set(columns.values())
    if kind == "experts":
        needs = [("name", "id"), ("research_fields", "bio", "achievements", "documents")]
    else:
        needs = [("title", "description")]
    for alternatives in needs:
        if not have & set(alternatives):
            wanted = "或".join(f"「{_LABELS[kind][f]}」" for f in alternatives)
            raise DataImportError(
                f"{source}: 没有{wanted}列（文件的列为：{'、'.join(headers)}），请把表头改为{wanted}后重试 "
                f"(no column for {' or '.join(alternatives)}; rename a header, or map it with --mapping)"
            )


def parse_experts(rows: Iterable[RawRow], source: str = "", *, mapping: Mapping[str, str] | None = None,
                  progress: Progress | None = None) -> Parsed:
    return _parse("experts", rows, source, mapping, progress)


def parse_demands(rows: Iterable[RawRow], source: str = "", *, mapping: Mapping[str, str] | None = None,
                  progress: Progress | None = None) -> Parsed:
    return _parse("demands", rows, source, mapping, progress)


def parse_file(path: Path | str, kind: str, *, mapping: Mapping[str, str] | None = None,
               progress: Progress | None = None, limits: Limits | None = None) -> Parsed:
    """Every row of a file checked: the valid records, and the rejected rows with their errors.

    Ids given twice in the file are errors (for rows without an id, two rows of one person are the
    de-duplication's business, not an error)."""
    if kind not in HEADERS:
        raise InputError(f"kind must be experts or demands, not {kind!r}")
    path = Path(path)
    rows = read_rows(path, known_headers=(mapping or {}).keys(), limits=limits)
    parsed = _parse(kind, rows, path.name, mapping, progress, limits)
    check_duplicate_ids(parsed, path.name, computed=kind == "demands")
    return parsed


def check_duplicate_ids(parsed: Parsed, source: str, *, computed: bool = True) -> None:
    """Flag a repeated id as an error of its later rows (and move those rows to the rejects)."""
    seen: dict[str, int] = {}
    keep: list[int] = []
    triples = zip(parsed.records, parsed.rows, parsed.explicit_ids, strict=True)
    for k, (rec, row, explicit) in enumerate(triples):
        if (explicit or computed) and rec.id in seen:
            message = f"编号「{rec.id}」重复（第 {seen[rec.id]} 行已有）"
            err = RowError(row, "编号" if explicit else "", message, source)
            parsed.errors.append(err)
            parsed.rejects.append(Reject(row, {"id": rec.id}, (err,)))
            continue
        seen.setdefault(rec.id, row)
        keep.append(k)
    if len(keep) != len(parsed.records):
        parsed.records = [parsed.records[k] for k in keep]
        parsed.rows = [parsed.rows[k] for k in keep]
        parsed.explicit_ids = [parsed.explicit_ids[k] for k in keep]


def _strict(parsed: Parsed, source: str) -> list[Any]:
    if parsed.errors:
        raise DataImportError(f"{source}: {len(parsed.errors)} 处错误，未导入任何数据 "
                              f"({len(parsed.errors)} invalid row(s); nothing was imported)",
                              sorted(parsed.errors, key=lambda e: e.row))
    return parsed.records


def read_experts(path: Path | str, *, mapping: Mapping[str, str] | None = None) -> list[Expert]:
    """All experts of a file, or `DataImportError` naming every bad row (nothing partial)."""
    path = Path(path)
    parsed = parse_experts(read_rows(path, (mapping or {}).keys()), path.name, mapping=mapping)
    check_duplicate_ids(parsed, path.name, computed=True)
    return _strict(parsed, path.name)


def read_demands(path: Path | str, *, mapping: Mapping[str, str] | None = None) -> list[Demand]:
    path = Path(path)
    parsed = parse_demands(read_rows(path, (mapping or {}).keys()), path.name, mapping=mapping)
    check_duplicate_ids(parsed, path.name, computed=True)
    return _strict(parsed, path.name)


# -- writing --------------------------------------------------------------------------------------
def _join(items: Sequence[str]) -> str:
    """A list as one cell: 、-joined, or a JSON array when an item would be split on re-import."""
    if any(_LIST_SEPARATORS.search(i) for i in items) or (items and items[0].startswith("[")):
        return json.dumps(list(items), ensure_ascii=False)
    return "、".join(items)


def expert_row(expert: Expert, *, include_contact: bool = True) -> dict[str, str]:
    """An expert as one spreadsheet row {header: cell} that `parse_experts` reads back unchanged."""
    values = {
        "id": expert.id, "name": expert.name, "title": expert.title, "institution": expert.institution,
        "region": expert.region, "research_fields": _join(expert.research_fields), "bio": expert.bio,
        "achievements": "；".join(d.title for d in expert.documents if d.title),
        "tags": _join(expert.tags), "phone": expert.contact.phone, "email": expert.contact.email,
        "documents": json.dumps([d.to_dict() for d in expert.documents], ensure_ascii=False)
        if expert.documents else "",
    }
    return {h: values[f] for f, h in EXPERT_COLUMNS if include_contact or f not in ("phone", "email")}


def demand_row(demand: Demand) -> dict[str, str]:
    d = demand.to_dict()
    for key in ("keywords", "avoid_institutions", "avoid_experts", "exclude_terms", "extra_terms"):
        d[key] = _join(d[key])
    d["needs_team"] = "是" if demand.needs_team else "否"
    return {h: d[f] for f, h in DEMAND_COLUMNS}


def match_rows(demand: Demand, matches: Sequence[Match], *,
               include_contact: bool = False) -> list[dict[str, Any]]:
    out = []
    for m in matches:
        e = m.expert
        row: dict[str, Any] = {
            "需求编号": demand.id, "企业名称": demand.enterprise, "需求名称": demand.title, "排名": m.rank,
            "专家编号": e.id, "姓名": e.name, "职称": e.title, "单位": e.institution, "地区": e.region,
            # the calibrated strength (0-1, the scale of every page), not the ranking's relative score
            "强度": "" if m.strength is None else round(m.strength, 4), "等级": m.level,
            "匹配词": "、".join(m.explanation.terms),
            "依据": "\n".join(f"{ev.field}: {ev.text}" for ev in m.explanation.evidence),
        }
        if include_contact:
            row.update({"联系电话": e.contact.phone, "邮箱": e.contact.email})
        out.append(row)
    return out


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InputError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def write_jsonl(out: Path | str | IO[str], records: Iterable[Mapping[str, Any]]) -> int:
    n = 0
    with _open_text(out) as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


@contextmanager
def _open_text(out: Path | str | IO[str], *, bom: bool = False) -> Iterator[IO[str]]:
    """A path opened for writing text, or a stream (stdout) used as it is and left open."""
    if not isinstance(out, str | Path):
        yield out
        return
    with Path(out).open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        yield f


def write_table(out: Path | str | IO[str], fmt: str, header: Sequence[str], rows: Iterable[Mapping[str, Any]],
                *, sheet: str = "Sheet1") -> int:
    """Rows {header: value} as CSV (UTF-8 with BOM on files, for Excel) or XLSX (`out` a path)."""
    _check_format(fmt)
    n = 0
    if fmt == "csv":
        with _open_text(out, bom=True) as f:
            w = csv.writer(f, lineterminator="\r\n")
            w.writerow(header)
            for row in rows:
                w.writerow(csv_row("" if row.get(h) is None else row.get(h) for h in header))
                n += 1
        return n
    if fmt != "xlsx":
        raise InputError(f"write_table writes csv or xlsx, not {fmt}")
    if not isinstance(out, str | Path):
        raise InputError("an .xlsx export needs a file: give --out PATH")
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(list(header))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for r, row in enumerate(rows, start=2):
        for c, h in enumerate(header, start=1):
            # text stays text: "=1+1" and "0571…" are not formulas or numbers
            set_cell(ws.cell(row=r, column=c), row.get(h))
        n += 1
    ws.freeze_panes = "A2"
    wb.save(out)
    return n


def export_experts(experts: Iterable[Expert], fmt: str, out: Path | str | IO[str], *,
                   include_contact: bool = True) -> int:
    """Experts in a format `matcher import experts` reads back unchanged; returns how many."""
    _check_format(fmt)
    if fmt == "jsonl":
        return write_jsonl(out, (e.to_dict(include_contact=include_contact) for e in experts))
    header = [h for f, h in EXPERT_COLUMNS if include_contact or f not in ("phone", "email")]
    rows = (expert_row(e, include_contact=include_contact) for e in experts)
    return write_table(out, fmt, header, rows, sheet="专家")


def export_demands(demands: Iterable[Demand], fmt: str, out: Path | str | IO[str]) -> int:
    """Demands in a format `matcher import demands` reads back unchanged; returns how many."""
    _check_format(fmt)
    if fmt == "jsonl":
        return write_jsonl(out, (d.to_dict() for d in demands))
    header = [h for _, h in DEMAND_COLUMNS]
    return write_table(out, fmt, header, (demand_row(d) for d in demands), sheet="需求")


def export_matches(results: Iterable[tuple[Demand, Sequence[Match]]], fmt: str, out: Path | str | IO[str], *,
                   include_contact: bool = False) -> int:
    """Ranked matches per demand: JSONL one line per demand, CSV/XLSX one row per match."""
    _check_format(fmt)
    if fmt == "jsonl":
        return write_jsonl(out, ({"demand_id": d.id, "enterprise": d.enterprise, "title": d.title,
                                  "matches": [m.to_dict(include_contact=include_contact) for m in ms]}
                                 for d, ms in results))
    header = [*MATCH_COLUMNS, *(("联系电话", "邮箱") if include_contact else ())]
    rows = (row for d, ms in results for row in match_rows(d, ms, include_contact=include_contact))
    return write_table(out, fmt, header, rows, sheet="匹配结果")


def write_rejects(path: Path | str, rejects: Sequence[Reject]) -> None:
    """The rejected rows as they were, plus 原行号 (their row in the file) and 错误 (what is wrong),
    in the format of `path`'s suffix: fix them there and import that file."""
    path = Path(path)
    fmt = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".xlsx": "xlsx"}.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path.name}: the rejects file must end in .csv, .xlsx or .jsonl")
    if fmt == "jsonl":
        write_jsonl(path, ({**r.data, "原行号": r.row, "错误": [str(e) for e in r.errors]} for r in rejects))
        return
    header = list(dict.fromkeys(h for r in rejects for h in r.data))
    header += ["原行号", "错误"]
    rows = ({**{k: _cell_out(v) for k, v in r.data.items()}, "原行号": r.row,
             "错误": "；".join(e.message if not e.column else f"{e.column} {e.message}" for e in r.errors)}
            for r in rejects)
    write_table(path, fmt, header, rows, sheet="未导入")


def _cell_out(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value


def rejects_path(source: Path | str) -> Path:
    """Where rejects go by default: beside the file, `name.rejects.ext` (JSON files as .jsonl)."""
    source = Path(source)
    suffix = ".jsonl" if source.suffix.lower() in (".json", ".jsonl") else source.suffix.lower()
    return source.with_name(f"{source.stem}.rejects{suffix}")
