"""Data in from the staff's pages: a demand typed into a form, a pasted demand saved with the list
the match page showed for it, a file of demands or experts checked before it is imported, an
expert's record corrected or given a paper, patent or project.

    intake = Intake(engine)
    intake.new_demand("staff:lihua", DemandForm(title="…", description="…"))  -> the stored Demand
    intake.save_live("staff:lihua", text, DemandForm(enterprise="…"), exclude_terms=["外观"])
    staged = intake.stage("demands", "2026年需求.xlsx", data)     -> Staged (a token for the page)
    intake.preview(staged.token)                                  -> ImportReport (a dry run)
    intake.confirm("staff:lihua", staged.token)                    -> ImportReport (the rows imported)

A file goes through exactly the import of `matcher import` (`Engine.import_demands`,
`Engine.import_experts`: the same limits, the same row checks, the same merges), first as a dry
run, then for real with the invalid rows left out; between the two it waits in a folder beside
the database under a random token, and is deleted once imported. Every write here and its audit
entry commit in one transaction; a refused write writes nothing.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from matcher import io as mio
from matcher import validate
from matcher.engine import Engine
from matcher.errors import DataImportError, InputError, NotFoundError, PayloadTooLargeError
from matcher.models import (
    DOCUMENT_KINDS,
    Demand,
    Document,
    Expert,
    Match,
    has_lone_surrogate,
    now_iso,
    split_list,
)
from matcher.ranking.filters import Filters
from matcher.records import MergeEntry
from matcher.timefmt import now_local

log = logging.getLogger(__name__)

#: How the fields of a demand and of an expert are named on the pages and in their messages.
DEMAND_FIELDS = {"id": "编号", "enterprise": "企业名称", "contact": "联系人", "region": "所在地区",
                 "industry": "所属行业", "title": "需求名称", "description": "需求描述", "keywords": "关键词",
                 "deadline": "截止日期", "created_at": "提交日期"}
EXPERT_FIELDS = {"name": "姓名", "title": "职称", "institution": "工作单位", "region": "所在地区",
                 "research_fields": "研究方向", "bio": "简介", "tags": "标签", "phone": "联系电话",
                 "email": "邮箱"}
DOCUMENT_LABELS = {"paper": "论文", "patent": "专利", "project": "项目", "achievement": "成果"}
KINDS = {"demands": "需求", "experts": "专家"}
UPLOAD_SUFFIXES = (".xlsx", ".csv")
STAGED_HOURS = 24  # a file checked but never imported is deleted after this long
# How far down the ranking an expert the match page showed may have moved and still be saved as shown.
SHOWN_DEPTH = 100
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_FIELD_CHARS = {"enterprise": 200, "contact": 200, "region": 100, "industry": 100, "title": 500,
                "name": 100, "institution": 200, "tags": 1000, "research_fields": 2000, "bio": 10_000}


@dataclass(frozen=True)
class DemandForm:
    """What the 新建需求 form (and the match page's 保存到收件箱) asks about a demand."""

    title: str = ""
    description: str = ""
    enterprise: str = ""
    contact: str = ""
    region: str = ""
    industry: str = ""
    deadline: str = ""
    keywords: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Staged:
    """A file waiting between its dry run and its import."""

    token: str
    kind: str  # demands or experts
    name: str  # as uploaded
    path: Path


def _refuse(problems: Iterable[validate.Problem], labels: dict[str, str]) -> None:
    found = list(problems)
    if found:
        raise InputError("；".join(f"{labels.get(p.field, p.field)}：{p.text(lambda f: labels.get(f, f))}"
                                  for p in found))


def _clean(value: str, name: str, labels: dict[str, str]) -> str:
    text = (value or "").strip()
    limit = _FIELD_CHARS.get(name)
    if limit and len(text) > limit:
        raise InputError(f"{labels.get(name, name)}最多 {limit:,} 字，现有 {len(text):,} 字")
    if has_lone_surrogate(text):
        raise InputError(f"{labels.get(name, name)}含有无效的字符，请检查复制来源")
    return text


def new_demand_id(tz: str) -> str:
    """W (网页) + the local date + 6 random hex digits: W20261207-3fa9c2."""
    return f"W{now_local(tz):%Y%m%d}-{secrets.token_hex(3)}"


class Intake:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store
        self.settings = engine.settings

    # -- demands typed or pasted ----------------------------------------------------------------
    def build_demand(self, form: DemandForm, *, exclude_terms: Iterable[str] = (),
                     extra_terms: Iterable[str] = (), status: str = "new") -> Demand:
        """The demand a form describes, checked by the rules an import applies (`matcher.validate`);
        `InputError` names each problem by the form's own labels."""
        values = {
            k: _clean(getattr(form, k), k, DEMAND_FIELDS)
            for k in ("title", "description", "enterprise", "contact", "region", "industry", "deadline")
        }
        demand = Demand(id=new_demand_id(self.settings.timezone), keywords=tuple(form.keywords),
                        created_at=now_iso(), status=status, exclude_terms=split_list(list(exclude_terms)),
                        extra_terms=split_list(list(extra_terms)), **values)
        _refuse(validate.demand_problems(demand, max_chars=self.settings.max_text_chars), DEMAND_FIELDS)
        return demand

    def new_demand(self, actor: str, form: DemandForm, *, ip: str = "") -> Demand:
        """Store a demand typed into the 新建需求 form (status 新需求: the next batch recommends for it)."""
        demand = self.build_demand(form)
        with self.store.transaction():
            self.engine.add_demands([demand])
            self.store.audit(
                actor,
                "demand.create",
                f"demand:{demand.id}",
                {"source": "form", "title": demand.title, "enterprise": demand.enterprise},
                ip=ip,
            )
        return demand

    def save_live(self, actor: str, text: str, form: DemandForm, *, top_k: int | None = None,
                  filters: Filters | None = None, exclude_terms: Iterable[str] = (),
                  extra_terms: Iterable[str] = (), shown: Sequence[str] = (),
                  ip: str = "") -> tuple[Demand, list[Match], bool]:
        """Store a demand pasted on the match page, with the staff's corrections of what the engine
        understood, and the list the page showed for it as its recommendations (实时匹配). The list
        is ranked again here, by the same call the page made, so a browser cannot store an expert
        the ranking does not give; `shown` (the ids the page listed, in its order) is kept when the
        ranking still gives each of them, since the library may have changed in between (an expert
        added, a vector encoded in the background) and staff act on what they saw. The third value
        says whether the stored list is the one shown. The demand is 已推荐 when the list has
        anyone, else 新需求."""
        excluded, added = split_list(list(exclude_terms)), split_list(list(extra_terms))
        self.engine.check_text(text)
        title = form.title.strip() or _first_words(text)
        demand = self.build_demand(replace(form, title=title, description=text), exclude_terms=excluded,
                                   extra_terms=added)
        matches, as_shown = self._as_shown(text, top_k, filters, excluded, added, list(shown))
        if matches:
            demand = replace(demand, status="matched")
        with self.store.transaction():
            self.engine.add_demands([demand])
            self.store.save_matches(
                demand.id, [(m.expert.id, m.score, m.explanation) for m in matches], actor
            )
            self.store.audit(actor, "demand.save", f"demand:{demand.id}", {
                "source": "live", "title": demand.title, "experts": [m.expert.id for m in matches],
                **({"exclude_terms": list(excluded)} if excluded else {}),
                **({"extra_terms": list(added)} if added else {}),
                **({} if as_shown or not shown else {"shown": list(shown)}),
            }, ip=ip)
        return demand, matches, as_shown

    def _as_shown(self, text: str, top_k: int | None, filters: Filters | None, excluded: list[str],
                  added: list[str], shown: list[str]) -> tuple[list[Match], bool]:
        """The ranking's list for the pasted demand, in the order the page showed it when the ranking
        (looked at as far as `SHOWN_DEPTH`) still gives every expert shown; else the ranking's own."""
        def rank(k: int | None) -> list[Match]:
            analysis = self.engine.analyse(text, k, filters, exclude_terms=excluded, extra_terms=added)
            return list(analysis.matches)

        matches = rank(top_k)
        if not shown or [m.expert.id for m in matches] == shown:
            return matches, True
        if len(set(shown)) != len(shown) or len(shown) > len(matches):
            return matches, False
        deeper = {m.expert.id: m for m in rank(max(SHOWN_DEPTH, len(shown)))}
        if any(i not in deeper for i in shown):
            return matches, False
        return [deeper[i] for i in shown], True

    # -- files: staged, checked, imported -------------------------------------------------------
    @property
    def staging(self) -> Path:
        db = Path(str(self.settings.db))
        return db.with_name(db.name + ".uploads")

    def stage(self, kind: str, name: str, data: bytes) -> Staged:
        """Keep an uploaded file (a workbook or a CSV of `kind`) for its dry run and its import.
        Refused whole (nothing kept) when it is over the import limit or not of a known type."""
        if kind not in KINDS:
            raise InputError(f"未知的导入类型「{kind}」")
        base = _file_name(name) or f"{KINDS[kind]}.xlsx"
        if Path(base).suffix.lower() not in UPLOAD_SUFFIXES:
            raise DataImportError(
                f"{base}: 不支持的文件类型，请上传 Excel 工作簿（.xlsx）或 CSV 文件（.csv）；"
                "未导入任何数据 (unsupported file type)"
            )
        if not data:
            raise DataImportError(f"{base}: 文件是空的；未导入任何数据 (the file is empty)")
        limit = self.settings.max_import_bytes
        if len(data) > limit:
            raise PayloadTooLargeError(
                f"{base}: 文件有 {mio.size_text(len(data))}，超过导入上限 {mio.size_text(limit)}"
                "；请拆分后分批导入。未导入任何数据 "
                "(the file is over the import limit, setting MATCHER_MAX_IMPORT_BYTES)"
            )
        self._sweep()
        token = secrets.token_hex(16)
        folder = self.staging / kind / token  # the file keeps its name: rows read "需求.xlsx: 第5行 …"
        folder.mkdir(parents=True)
        path = folder / base
        path.write_bytes(data)
        return Staged(token, kind, base, path)

    def staged(self, token: str) -> Staged:
        """The file waiting under `token`; `NotFoundError` when there is none (imported, expired)."""
        if _TOKEN.match(token or ""):
            for kind in KINDS:
                found = [p for p in (self.staging / kind / token).glob("*") if p.is_file()]
                if found:
                    return Staged(token, kind, found[0].name, found[0])
        raise NotFoundError("找不到待导入的文件：它已导入，或已超过 24 小时被清理。请重新上传 "
                            "(no staged file with this token)")

    def preview(self, token: str) -> mio.ImportReport:
        """The dry run of a staged file: every row that would be imported and what happens to it,
        every row error, every merge (experts). Nothing is written."""
        staged = self.staged(token)
        return self._import(staged, dry_run=True)

    def confirm(self, actor: str, token: str, *, ip: str = "") -> mio.ImportReport:
        """Import a staged file (its invalid rows left out) and its audit entry in one transaction;
        the file is then deleted."""
        staged = self.staged(token)
        with self.store.transaction():
            report = self._import(staged, dry_run=False)
            self.store.audit(actor, f"import.{staged.kind}", f"file:{staged.name}", {
                "inserted": report.inserted, "updated": report.updated, "unchanged": report.unchanged,
                "merged": report.merged, "rejected": report.rejected, "import_id": report.import_id}, ip=ip)
        self.discard(token)
        return report

    def discard(self, token: str) -> None:
        """Delete a staged file (imported, or given up)."""
        staged = self.staged(token)
        shutil.rmtree(staged.path.parent, ignore_errors=True)

    def _import(self, staged: Staged, *, dry_run: bool) -> mio.ImportReport:
        run = self.engine.import_demands if staged.kind == "demands" else self.engine.import_experts
        return run(staged.path, skip_invalid=True, dry_run=dry_run)

    def _sweep(self) -> None:
        """Delete staged files older than `STAGED_HOURS` (checked and then left)."""
        cutoff = time.time() - STAGED_HOURS * 3600
        for folder in self.staging.glob("*/*"):
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder)
            except OSError:  # another request removed it first
                continue

    # -- experts corrected on their page --------------------------------------------------------
    def update_expert(self, actor: str, expert_id: str, values: dict[str, str], *, ip: str = "") -> Expert:
        """Correct an expert's fields (name, title, institution, region, research fields, bio, tags;
        lists 、-separated). The index follows at once; the audit entry lists what changed."""
        unknown = set(values) - {"name", "title", "institution", "region", "research_fields", "bio", "tags"}
        if unknown:
            raise InputError(f"不能修改的字段：{'、'.join(sorted(unknown))}")
        before = self.store.get_expert(expert_id)
        clean = {k: _clean(v, k, EXPERT_FIELDS) for k, v in values.items()}
        for k in ("research_fields", "tags"):
            if k in clean:
                clean[k] = split_list(clean[k])  # type: ignore[assignment]
        if "name" in clean and not clean["name"]:
            raise InputError("姓名不能为空")
        after = replace(before, **clean)  # type: ignore[arg-type]
        return self._write_expert(actor, before, after, "expert.update", ip=ip)

    def add_document(self, actor: str, expert_id: str, *, kind: str, title: str, year: str = "",
                     keywords: str = "", abstract: str = "", ip: str = "") -> Expert:
        """Add a paper, patent, project or achievement to an expert's record (the index follows)."""
        if kind not in DOCUMENT_KINDS:
            raise InputError(f"类别「{kind}」无效，应为：{'、'.join(DOCUMENT_LABELS.values())}")
        title = _clean(title, "title", {"title": "题目"})
        if not title:
            raise InputError("题目不能为空")
        abstract = _clean(abstract, "bio", {"bio": "摘要"})
        year = (year or "").strip()
        if year and not (year.isdigit() and 1900 <= int(year) <= now_local(self.settings.timezone).year + 1):
            raise InputError(f"年份「{year}」无效，应为 1900 至今的四位数字")
        doc = Document(
            title=title,
            kind=kind,
            keywords=split_list(_clean(keywords, "tags", {"tags": "关键词"})),
            abstract=abstract,
            year=int(year) if year else None,
        )
        before = self.store.get_expert(expert_id)
        after = replace(before, documents=(*before.documents, doc))
        return self._write_expert(actor, before, after, "expert.document", ip=ip,
                                  detail={"kind": kind, "title": title})

    def _write_expert(self, actor: str, before: Expert, after: Expert, action: str, *, ip: str,
                      detail: dict[str, object] | None = None) -> Expert:
        validate.check_expert(after)
        changed = [k for k in ("name", "title", "institution", "region", "research_fields", "bio", "tags",
                               "documents") if getattr(before, k) != getattr(after, k)]
        if not changed:
            return before
        with self.store.transaction():
            self.engine.upsert_experts([after])
            self.store.audit(actor, action, f"expert:{after.id}", detail or {"fields": changed}, ip=ip)
        return self.store.get_expert(after.id)

    def undo_merge(self, actor: str, merge_id: int, *, ip: str = "") -> MergeEntry:
        """Split a logged merge again (`Engine.undo_merge`), audited."""
        entry = self.engine.undo_merge(merge_id)
        self.store.audit(actor, "merge.undo", f"expert:{entry.kept_id}",
                         {"merge_id": merge_id, "merged_id": entry.merged_id}, ip=ip)
        return entry


def _file_name(name: str) -> str:
    """An uploaded file's own name, safe as a file name here: no folders, no control characters."""
    base = Path((name or "").replace("\\", "/")).name
    base = "".join(c for c in base if c.isprintable() and c not in '<>:"|?*').strip().lstrip(".")
    if len(base) > 120:
        base = base[:100] + Path(base).suffix[-10:]
    return base


def _first_words(text: str, n: int = 30) -> str:
    """A title for a pasted demand: its first line, cut to `n` characters."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= n else first[:n] + "…"
