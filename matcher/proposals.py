"""Proposed thesaurus entries: what the 科协's verdicts taught, for an administrator to accept into
the 科协's own thesaurus or to silence (`matcher thesaurus proposals`, the page /admin/proposals).

    proposals = Proposals(engine)
    proposals.list()                                  -> [Proposal] (open ones, strongest first)
    proposals.accept("staff:admin", "起皮", "涂层", kind="症状", weight=0.8)
                                                      -> the new own-thesaurus version
    proposals.reject("staff:admin", "一半", "发酵")   -> the decision (the pair is silenced)
    proposals.reopen("staff:admin", "一半", "发酵")   -> proposed again (an accepted one leaves the file)
    proposals.import_text("staff:admin", text)        -> a new version from an edited file

`export_learning` / `import_learning` carry everything learning rests on to another database (with
`matcher export learning` and `matcher import learning`, after the experts and demands): the
verdicts and outcomes (the evidence), the decisions on proposals and every version of the own
thesaurus. The associations themselves are not exported: they follow from the evidence, so the
importing database learns the same ones.

A proposal is a learned association (`matcher.learning`) with its evidence and the demands it came
from. Accepting writes it to the 科协's own thesaurus, a thesaurus file kept in the database apart
from the shipped `corpora/thesaurus.txt`, every change a new version (export, edit and import it
back, or go back to an older one); from then on the thesaurus source adds it (at the entry's
weight) and the learned source no longer does. Rejecting silences it: it is neither proposed nor
used. Every decision is audited, with the evidence it had.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from matcher.engine import Engine
from matcher.errors import DataImportError, InputError, NotFoundError, RowError
from matcher.learning import Association
from matcher.models import OUTCOME_KINDS, VERDICTS
from matcher.records import Decision, ThesaurusVersion
from matcher.thesaurus import KINDS, OWN_HEADER, Target, Thesaurus, with_target, without_target

OWN_SECTION = "本会"
__all__ = ["KINDS", "OWN_SECTION", "STATUSES", "LearningImport", "Proposal", "Proposals", "export_learning",
           "import_learning", "suggested_weight"]
STATUSES: tuple[str, ...] = ("open", "accepted", "rejected", "all")
MAX_THESAURUS_CHARS = 1_000_000


@dataclass(frozen=True, slots=True)
class Proposal:
    """A learned association, its decision (None: open) and the demands that taught it."""

    association: Association
    decision: Decision | None
    examples: tuple[tuple[str, str], ...]  # (demand id, title)

    @property
    def status(self) -> str:
        return self.decision.decision if self.decision else "open"

    @property
    def weight(self) -> float:
        """The thesaurus weight suggested for it: 0.5 plus half its strength, to one decimal."""
        return suggested_weight(self.association.strength)


def suggested_weight(strength: float) -> float:
    return round(min(1.0, 0.5 + strength / 2), 1)


class Proposals:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store

    # -- reading ------------------------------------------------------------------------------------
    def list(self, status: str = "open", *, limit: int = 500) -> list[Proposal]:
        """Proposals with this status (open, accepted, rejected or all), strongest first. A decided
        pair is listed even when its evidence has gone since (a withdrawn verdict), with what it
        had when it was decided."""
        if status not in STATUSES:
            raise InputError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        learned = self.engine.learning.associations()
        decisions = self.store.decisions()
        found = {(a.phrase, a.concept): a for a in learned.all()}
        for key, d in decisions.items():
            if key not in found:
                found[key] = _from_evidence(d)
        out = []
        for key, a in found.items():
            decision = decisions.get(key)
            state = decision.decision if decision else "open"
            if status != "all" and state != status:
                continue
            out.append((a, decision))
        out.sort(key=lambda t: (-t[0].strength, -t[0].demands, t[0].phrase, t[0].concept))
        out = out[:limit]
        titles = {d.id: d.title or d.text[:40] for d in
                  self.store.get_demands({x for a, _ in out for x in a.examples})}
        return [Proposal(a, d, tuple((x, titles.get(x, x)) for x in a.examples)) for a, d in out]

    def get(self, phrase: str, concept: str) -> Proposal:
        for p in self.list("all", limit=10**6):
            if (p.association.phrase, p.association.concept) == (phrase, concept):
                return p
        raise NotFoundError(f"没有「{phrase} → {concept}」这条学到的关联 (no such learned association)")

    def own_text(self, version: int | None = None) -> str:
        """The text of the 科协's own thesaurus (the current version, or `version`)."""
        found = self.store.own_thesaurus(version)
        if found is None:
            if version is not None:
                raise NotFoundError(f"本会词表没有第 {version} 版 (no such version)")
            return OWN_HEADER
        return found.text

    def versions(self) -> list[ThesaurusVersion]:
        return self.store.own_thesaurus_versions()

    def own_entries(self) -> int:
        return len(Thesaurus.parse(self.own_text(), name="本会词表"))

    def own(self, version: int | None = None) -> tuple[ThesaurusVersion | None, str, int]:
        """(the version, its text, its number of entries): the current one, or `version`."""
        text = self.own_text(version)
        return self.store.own_thesaurus(version), text, len(Thesaurus.parse(text, name="本会词表"))

    # -- deciding (each audited) ------------------------------------------------------------------
    def accept(self, actor: str, phrase: str, concept: str, *, kind: str = "症状",
               weight: float | None = None, note: str = "", ip: str = "") -> ThesaurusVersion:
        """Write the association into the 科协's own thesaurus (a new version) as `kind`
        (产品, 症状 or 俗称) at `weight` (default: suggested from its strength)."""
        if kind not in KINDS:
            raise InputError(f"类别应为 {' / '.join(KINDS)} 之一，不是「{kind}」")
        proposal = self.get(phrase, concept)
        w = proposal.weight if weight is None else float(weight)
        if not 0 < w <= 1:
            raise InputError(f"权重应在 0 到 1 之间（不含 0），不是 {weight}")
        evidence = proposal.association.to_dict()
        with self.store.transaction():
            text = with_target(self.own_text(), OWN_SECTION, kind, phrase, Target(concept, w))
            version = self.store.add_own_thesaurus(text, actor, f"采纳：{phrase} → {concept}")
            self.store.decide(phrase, concept, "accepted", actor, note=note, evidence=evidence)
            self.store.audit(actor, "proposal.accept", f"proposal:{phrase}->{concept}",
                             {"phrase": phrase, "concept": concept, "kind": kind, "weight": w,
                              "version": version.version, "evidence": evidence,
                              **({"note": note} if note else {})}, ip=ip)
        return version

    def reject(self, actor: str, phrase: str, concept: str, *, note: str = "", ip: str = "") -> Decision:
        """Silence the association: no longer proposed, no longer used."""
        proposal = self.get(phrase, concept)
        evidence = proposal.association.to_dict()
        with self.store.transaction():
            if proposal.status == "accepted":
                self._drop_from_file(actor, phrase, concept)
            decision = self.store.decide(phrase, concept, "rejected", actor, note=note, evidence=evidence)
            self.store.audit(actor, "proposal.reject", f"proposal:{phrase}->{concept}",
                             {"phrase": phrase, "concept": concept, "evidence": evidence,
                              **({"note": note} if note else {})}, ip=ip)
        return decision

    def reopen(self, actor: str, phrase: str, concept: str, *, ip: str = "") -> Decision:
        """Undo a decision: the association is proposed (and used) again; an accepted one leaves
        the own thesaurus (a new version)."""
        decision = self.store.get_decision(phrase, concept)
        if decision is None:
            raise NotFoundError(f"「{phrase} → {concept}」没有被采纳或忽略过 (no decision to undo)")
        with self.store.transaction():
            if decision.decision == "accepted":
                self._drop_from_file(actor, phrase, concept)
            self.store.undecide(phrase, concept)
            self.store.audit(actor, "proposal.reopen", f"proposal:{phrase}->{concept}",
                             {"phrase": phrase, "concept": concept, "was": decision.decision}, ip=ip)
        return decision

    def _drop_from_file(self, actor: str, phrase: str, concept: str) -> None:
        text = self.own_text()
        after = without_target(text, phrase, concept)
        if after != text:
            self.store.add_own_thesaurus(after, actor, f"撤下：{phrase} → {concept}")

    # -- the own thesaurus as a file --------------------------------------------------------------
    def import_text(self, actor: str, text: str, *, note: str = "", ip: str = "") -> ThesaurusVersion:
        """Make `text` (an edited export) the own thesaurus' next version; a malformed line is
        refused with its line number, and nothing is written."""
        if len(text) > MAX_THESAURUS_CHARS:
            raise InputError(f"本会词表最多 {MAX_THESAURUS_CHARS:,} 字，这份有 {len(text):,} 字")
        parsed = Thesaurus.parse(text, name="本会词表")
        with self.store.transaction():
            version = self.store.add_own_thesaurus(text if text.endswith("\n") else text + "\n", actor,
                                                   note or "导入")
            self.store.audit(actor, "thesaurus.import", f"thesaurus:v{version.version}",
                             {"version": version.version, "entries": len(parsed), "chars": len(text)}, ip=ip)
        return version

    def revert(self, actor: str, version: int, *, ip: str = "") -> ThesaurusVersion:
        """Make an older version the current one again (as a new version)."""
        text = self.own_text(version)
        with self.store.transaction():
            made = self.store.add_own_thesaurus(text, actor, f"恢复到第 {version} 版")
            self.store.audit(actor, "thesaurus.revert", f"thesaurus:v{made.version}",
                             {"version": made.version, "from": version}, ip=ip)
        return made


def _from_evidence(d: Decision) -> Association:
    """A decided association whose evidence is gone, as it was when decided."""
    e = d.evidence

    def num(key: str) -> int:
        v = e.get(key, 0)
        return int(v) if isinstance(v, int | float) else 0

    strength = e.get("strength", 0.0)
    p_value = e.get("p_value", 1.0)
    examples = e.get("examples", [])
    return Association(d.phrase, d.concept, float(strength) if isinstance(strength, int | float) else 0.0,
                       num("demands"), num("judged"), num("accepted"), num("declined"),
                       float(p_value) if isinstance(p_value, int | float) else 1.0,
                       tuple(str(x) for x in examples) if isinstance(examples, list) else ())


# -- carrying learned data to another database ----------------------------------------------------
@dataclass(frozen=True, slots=True)
class LearningImport:
    """What `import_learning` added (what the database held already is not added twice)."""

    verdicts: int
    outcomes: int
    decisions: int
    versions: int
    skipped: int  # lines the database held already

    def summary(self) -> str:
        return (f"learning: {self.verdicts} verdicts, {self.outcomes} outcomes, {self.decisions} decisions, "
                f"{self.versions} own-thesaurus versions imported; {self.skipped} already there")


def export_learning(engine: Engine, out: IO[str]) -> int:
    """Write what learning rests on as JSON lines (module docstring); the number of lines."""
    store = engine.store
    n = 0

    def line(record: dict[str, Any]) -> None:
        nonlocal n
        out.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        n += 1

    for f in store.feedback_entries():
        line({"type": "verdict", "demand_id": f.demand_id, "expert_id": f.expert_id, "verdict": f.verdict,
              "note": f.note, "created_at": f.created_at, "actor": f.actor})
    for o in reversed(store.list_outcomes(limit=None)):
        line({"type": "outcome", "demand_id": o.demand_id, "expert_ids": list(o.expert_ids), "kind": o.kind,
              "value": o.value, "unit": o.unit, "date": o.date, "note": o.note, "actor": o.actor,
              "created_at": o.created_at})
    for d in store.decisions().values():
        line({"type": "decision", "phrase": d.phrase, "concept": d.concept, "decision": d.decision,
              "actor": d.actor, "at": d.at, "note": d.note, "evidence": d.evidence})
    for v in reversed(store.own_thesaurus_versions()):
        line({"type": "thesaurus", "version": v.version, "text": v.text, "actor": v.actor, "at": v.at,
              "note": v.note})
    return n


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataImportError(f"{path.name}: 不是 UTF-8 编码的文本 (not UTF-8)") from exc
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataImportError(f"{path.name} 第{number}行不是 JSON ({exc.msg})；未导入任何数据",
                                  [RowError(number, "", f"不是 JSON ({exc.msg})", path.name)]) from exc
        if not isinstance(record, dict):
            raise DataImportError(f"{path.name} 第{number}行不是一个对象；未导入任何数据",
                                  [RowError(number, "", "不是一个 JSON 对象", path.name)])
        yield number, record


def import_learning(engine: Engine, path: Path | str, actor: str) -> LearningImport:
    """Read an `export_learning` file into this database, in one transaction: the verdicts and
    outcomes it lacks (their demands and experts must be here: import those first), the decisions
    (a later one replaces an earlier), and the own-thesaurus versions it lacks (in their order). A
    line naming an unknown demand or expert, or malformed, refuses the whole file."""
    path = Path(path)
    records = list(_lines(path))
    errors = _check_learning(engine, records, path.name)
    if errors:
        raise DataImportError(f"{path.name}: {len(errors)} 行有错，未导入任何数据 (nothing was imported)",
                              errors)
    return _write_learning(engine, records, path.name, actor)


def _check_learning(engine: Engine, records: list[tuple[int, dict[str, Any]]], source: str) -> list[RowError]:
    """What is wrong with the lines of a learning file (nothing: [])."""
    store = engine.store
    errors: list[RowError] = []
    demand_ids = {r.get("demand_id") for _, r in records if r.get("type") in ("verdict", "outcome")}
    expert_ids = {r.get("expert_id") for _, r in records if r.get("type") == "verdict"}
    expert_ids |= {e for _, r in records if r.get("type") == "outcome" for e in r.get("expert_ids") or []}
    known_d = {d.id for d in store.get_demands({x for x in demand_ids if isinstance(x, str)})}
    known_e = {e.id for e in store.get_experts({x for x in expert_ids if isinstance(x, str)})}
    for number, r in records:
        kind = r.get("type")
        if kind not in ("verdict", "outcome", "decision", "thesaurus"):
            errors.append(RowError(number, "type", f"未知的类型 {kind!r}（应为 verdict、outcome、decision 或 "
                                   "thesaurus）", source))
        elif kind in ("verdict", "outcome") and r.get("demand_id") not in known_d:
            errors.append(RowError(number, "demand_id",
                                   f"需求 {r.get('demand_id')!r} 不在本数据库中，请先导入需求", source))
        elif kind == "verdict" and r.get("expert_id") not in known_e:
            errors.append(RowError(number, "expert_id",
                                   f"专家 {r.get('expert_id')!r} 不在本数据库中，请先导入专家", source))
        elif kind == "outcome" and any(e not in known_e for e in r.get("expert_ids") or [None]):
            errors.append(RowError(number, "expert_ids", "成果所列的专家不全在本数据库中，请先导入专家",
                                   source))
        elif kind == "outcome" and r.get("kind") not in OUTCOME_KINDS:
            errors.append(RowError(number, "kind",
                                   f"成果类别 {r.get('kind')!r} 不是 {'、'.join(OUTCOME_KINDS)} 之一",
                                   source))
        elif kind == "verdict" and r.get("verdict") not in VERDICTS:
            errors.append(RowError(number, "verdict",
                                   f"反馈 {r.get('verdict')!r} 不是 {', '.join(VERDICTS)} 之一", source))
        elif kind == "decision" and r.get("decision") not in ("accepted", "rejected"):
            errors.append(RowError(number, "decision", f"{r.get('decision')!r} 应为 accepted 或 rejected",
                                   source))
        elif kind == "thesaurus":
            try:
                Thesaurus.parse(str(r.get("text", "")), name=f"第{number}行的词表")
            except InputError as exc:
                errors.append(RowError(number, "text", exc.message, source))
    return errors


def _write_learning(engine: Engine, records: list[tuple[int, dict[str, Any]]], source: str,
                    actor: str) -> LearningImport:
    store = engine.store
    added = {"verdict": 0, "outcome": 0, "decision": 0, "thesaurus": 0}
    skipped = 0
    with store.transaction():
        have_v = {(f.demand_id, f.expert_id, f.verdict, f.created_at) for f in store.feedback_entries()}
        have_o = {(o.demand_id, tuple(sorted(o.expert_ids)), o.kind, o.value, o.date, o.note)
                  for o in store.list_outcomes(limit=None)}
        decided = store.decisions()
        texts = [v.text for v in reversed(store.own_thesaurus_versions())]
        for number, r in records:
            kind = r["type"]
            try:
                if kind == "verdict":
                    key = (r["demand_id"], r["expert_id"], r["verdict"], r.get("created_at"))
                    if key in have_v:
                        skipped += 1
                        continue
                    store.record_feedback(r["demand_id"], r["expert_id"], r["verdict"],
                                          str(r.get("note", "")), actor=str(r.get("actor", "")),
                                          at=r.get("created_at") or None)
                    have_v.add(key)
                elif kind == "outcome":
                    key = (r["demand_id"], tuple(sorted(r["expert_ids"])), r["kind"], float(r["value"]),
                           r["date"], str(r.get("note", "")))
                    if key in have_o:
                        skipped += 1
                        continue
                    store.add_outcome(r["demand_id"], r["expert_ids"], r["kind"], float(r["value"]),
                                      str(r.get("unit", "")), r["date"], str(r.get("note", "")),
                                      str(r.get("actor", "")))
                    have_o.add(key)
                elif kind == "decision":
                    old = decided.get((r["phrase"], r["concept"]))
                    if old is not None and old.at >= str(r.get("at", "")):
                        skipped += 1
                        continue
                    store.decide(r["phrase"], r["concept"], r["decision"], str(r.get("actor", "")),
                                 note=str(r.get("note", "")), evidence=r.get("evidence") or {},
                                 at=r.get("at"))
                else:
                    text = str(r["text"])
                    if text in texts:
                        skipped += 1
                        continue
                    store.add_own_thesaurus(text, str(r.get("actor", "")), str(r.get("note", "")),
                                            at=r.get("at"))
                    texts.append(text)
            except (KeyError, TypeError, ValueError) as exc:
                raise DataImportError(f"{source} 第{number}行缺少字段或字段有误 ({exc})；未导入任何数据",
                                      [RowError(number, "", f"缺少字段或字段有误 ({exc})", source)]) from exc
            added[kind] += 1
        result = LearningImport(added["verdict"], added["outcome"], added["decision"], added["thesaurus"],
                                skipped)
        store.audit(actor, "learning.import", f"file:{source}",
                    {"verdicts": result.verdicts, "outcomes": result.outcomes, "decisions": result.decisions,
                     "versions": result.versions, "skipped": result.skipped})
    return result
