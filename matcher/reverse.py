"""Reverse matching (院士专家企业行): for an expert, the open demands they could help with, and a
visit plan for a day.

    index = demand_index(engine)                         # one per engine, kept current
    index.for_expert("X0001", top_k=10)                  -> list[DemandMatch], explained
    index.for_profile("哈工大教授，研究激光焊接…")        -> the same for a visiting expert's text
    plan_visit(engine, "X0001", date(2026, 12, 3))       -> the best enterprises of one district

The index is the project's own `matcher.index.TermIndex` (BM25) over every stored demand's tokens
(title, keywords, description, with the engine's tokenizer and token cache), not a loop over the
demands. It follows the store incrementally: triggers log every insert, update and delete of a
demand (table `demand_changes`, migration 10), so a query first compares the log's last sequence
number with the one it indexed (one lookup) and, when it moved, reads only the demands written
since: a changed text is re-tokenised and appended (`TermIndex.updated`, the old row masked), a
changed status flips whether the demand is open (new, matched, contacted). The expert's side is a query
built like a demand's (`Engine.query`: synonyms, generic words down-weighted) from their research
fields, their documents' titles and keywords, and their bio. A demand is left out when the expert
may not serve it, by the rules every ranking follows (`matcher.engine.rules.rule_out`): its 回避
rules, and a 婉拒/不合适 verdict on that pair.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

import numpy as np

from matcher.engine import Engine, Rules, rule_out
from matcher.errors import InputError
from matcher.index import TermIndex
from matcher.models import EXCLUDING_VERDICTS, Demand, Evidence, Expert, Explanation
from matcher.records import Pause
from matcher.regions import parse_region
from matcher.text import normalize, show

OPEN_STATUSES: tuple[str, ...] = ("new", "matched", "contacted")


@dataclass(frozen=True, slots=True)
class DemandMatch:
    rank: int
    demand: Demand
    score: float  # the demand index's BM25: it orders one expert's demands, on no fixed scale
    explanation: Explanation

    @property
    def strength(self) -> float | None:
        """The pair's calibrated strength in the demand's own ranking (`strengths_of`), or None."""
        return self.explanation.strength

    @property
    def level(self) -> str:
        return self.explanation.level


def expert_profile(expert: Expert) -> tuple[str, str]:
    """(text, emphasis) of an expert as a query: fields, documents' titles and keywords, bio."""
    parts = [*expert.research_fields]
    for d in expert.documents:
        parts.append(d.title)
        parts.extend(d.keywords)
    parts.append(expert.bio)
    return "\n".join(p for p in parts if p), " ".join(expert.research_fields)


def _text_key(demand: Demand) -> str:
    return hashlib.sha1(demand.text.encode("utf-8")).hexdigest()[:16]


class DemandIndex:
    """BM25 over the stored demands (see the module docstring). Thread-safe: readers use the index
    they picked up; a sync builds a new one and swaps it in."""

    def __init__(self, engine: Engine, *, write_lock: threading.Lock | None = None) -> None:
        self.engine = engine
        # Tokens go through the engine's token cache, which writes to the store: a server passes the
        # lock its writers share (one SQLite connection), and it is never held by our caller.
        self.write_lock = write_lock
        self._lock = threading.Lock()
        self._index: TermIndex | None = None
        self._rows: list[str] = []  # demand id by row (masked rows keep their id)
        self._row_of: dict[str, int] = {}
        self._keys: dict[str, str] = {}  # demand id -> its text's key, as indexed
        self._demands: dict[str, Demand] = {}
        self._open = np.zeros(0, dtype=bool)
        self._mark = -1

    # -- keeping current ------------------------------------------------------------------------
    def stale(self) -> bool:
        return self.engine.store.demand_change_mark() != self._mark

    def sync(self) -> None:
        """Bring the index up to the store: only the demands written since the last sync are read
        (the store logs every insert, update and delete of a demand, by trigger)."""
        if not self.stale():
            return
        with self._lock:
            store = self.engine.store
            mark = store.demand_change_mark()
            if mark == self._mark:
                return
            if self._index is None or mark < self._mark:  # first use, or a restored older database
                self._rebuild(list(store.iter_demands()))
            else:
                ids = store.changed_demand_ids(self._mark)
                found = {d.id: d for d in store.get_demands(ids)}
                self._apply([found[i] for i in ids if i in found], [i for i in ids if i not in found])
            self._mark = mark

    def _tokens(self, texts: list[str]) -> list[list[str]]:
        if not texts:
            return []
        with self.write_lock or contextlib.nullcontext():
            return self.engine.tokens.many(texts)

    def _rebuild(self, demands: list[Demand]) -> None:
        tokens = self._tokens([d.text for d in demands])
        index = TermIndex("bm25", self.engine.settings.bm25_k1, self.engine.settings.bm25_b).fit(tokens)
        self._rows = [d.id for d in demands]
        self._row_of = {d.id: i for i, d in enumerate(demands)}
        self._keys = {d.id: _text_key(d) for d in demands}
        self._demands = {d.id: d for d in demands}
        self._open = np.asarray([d.status in OPEN_STATUSES for d in demands], dtype=bool)
        self._index = index

    def _apply(self, changed: list[Demand], deleted: list[str]) -> None:
        """Changed demands: a new text is appended as a new row (the old one masked), a new status
        only flips whether the demand is open. Deleted ones are masked."""
        assert self._index is not None
        retext = [d for d in changed if self._keys.get(d.id) != _text_key(d)]
        gone = [self._row_of[i] for i in [*(d.id for d in retext), *deleted] if i in self._row_of]
        added = self._tokens([d.text for d in retext])
        index = self._index.updated(added, gone) if (added or gone) else self._index
        rows = list(self._rows)
        row_of = dict(self._row_of)
        for i in deleted:
            row_of.pop(i, None)
        for d in retext:
            row_of[d.id] = len(rows)
            rows.append(d.id)
        demands = {k: v for k, v in self._demands.items() if k not in deleted}
        demands.update({d.id: d for d in changed})
        open_ = np.zeros(len(rows), dtype=bool)
        open_[: len(self._open)] = self._open
        open_[gone] = False
        for d in changed:
            open_[row_of[d.id]] = d.status in OPEN_STATUSES
        keys = {k: v for k, v in self._keys.items() if k not in deleted}
        keys.update({d.id: _text_key(d) for d in retext})
        # One assignment each, the index last: a reader that picked the old index reads old rows.
        self._rows, self._row_of, self._demands, self._open, self._keys = rows, row_of, demands, open_, keys
        self._index = index

    @property
    def size(self) -> int:
        return len(self._row_of)

    # -- querying -------------------------------------------------------------------------------
    def for_expert(
        self, expert_id: str, top_k: int = 10, *, include_closed: bool = False, strengths: bool = True,
    ) -> list[DemandMatch]:
        """The open demands this expert could help with, best first; with `strengths`, each carries
        the strength the demand's own ranking gives the pair (`strengths_of`)."""
        expert = self.engine.store.get_expert(expert_id)
        text, emphasis = expert_profile(expert)
        if not text.strip():  # nothing to match on: no demand is for them (not an error)
            self._check_top_k(top_k)
            return []
        found = self._match(text, emphasis, top_k, expert=expert, include_closed=include_closed)
        return strengths_of(self.engine, expert.id, found) if strengths else found

    def for_profile(self, text: str, top_k: int = 10, *, include_closed: bool = False) -> list[DemandMatch]:
        """Open demands for a pasted profile (a visiting expert not in the store)."""
        self.engine.check_text(text)
        return self._match(text, "", top_k, expert=None, include_closed=include_closed)

    def _match(
        self, text: str, emphasis: str, top_k: int, *, expert: Expert | None, include_closed: bool
    ) -> list[DemandMatch]:
        self._check_top_k(top_k)
        self.sync()
        index, rows, demands, open_ = self._index, self._rows, self._demands, self._open
        if index is None or not rows:
            return []
        # The demands are scored by their words only: encoding the profile would be wasted.
        q = self.engine.query(text, emphasis, encode=False)
        scores = index.score(q.weights)
        # A demand is a candidate only when it shares a word that counts: one matched on generic
        # words alone (管理, 大, 多) is no reason to visit an enterprise.
        content = {t: w for t, w in q.weights.items() if t not in q.quiet}
        scores = np.where(index.score(content) > 0, scores, 0.0) if content else np.zeros_like(scores)
        if not include_closed:
            scores = np.where(open_[: len(scores)], scores, 0.0)
        declined = (
            self.engine.store.expert_excluded_demands(expert.id, EXCLUDING_VERDICTS) if expert else set()
        )
        out: list[tuple[int, float]] = []
        candidates = np.flatnonzero(scores > 0)
        order = candidates[np.lexsort((candidates, -scores[candidates]))]
        for r in order:
            demand = demands[rows[r]]
            if expert is not None and rule_out(expert, Rules(demand=demand, declined={
                    expert.id: "婉拒/不合适"} if demand.id in declined else {})):
                continue
            out.append((int(r), float(scores[r])))
            if len(out) >= top_k:
                break
        return self._explain(index, out, demands, rows, q.weights, expert, q.quiet, q.shown)

    @staticmethod
    def _check_top_k(top_k: int) -> None:
        if not 1 <= top_k <= 200:
            raise InputError(f"top_k must be between 1 and 200, not {top_k}")

    def _explain(
        self,
        index: TermIndex,
        picked: Sequence[tuple[int, float]],
        demands: dict[str, Demand],
        rows: list[str],
        weights: dict[str, float] | object,
        expert: Expert | None,
        quiet: frozenset[str] = frozenset(),
        shown: Mapping[str, str] | None = None,
    ) -> list[DemandMatch]:
        if not picked:
            return []
        w = dict(weights)  # type: ignore[call-overload]
        known = [t for t in w if t in index.vocabulary_ and t not in quiet]  # never cite a generic word
        table = shown or {}
        ids = np.asarray([index.vocabulary_[t] for t in known], dtype=np.int64)
        entry = index.entry_weights(np.asarray([r for r, _ in picked], dtype=np.int64), ids)
        pieces = _expert_pieces(expert) if expert is not None else []
        out: list[DemandMatch] = []
        for rank, ((r, score), row) in enumerate(zip(picked, entry, strict=True), start=1):
            contrib = {known[j]: float(row[j]) * w[known[j]] for j in np.flatnonzero(row > 0)}
            found = sorted(contrib, key=lambda t: -contrib[t])
            terms = tuple(table.get(t) or show(t, table) for t in found)  # Latin as written: BMS
            demand = demands[rows[r]]
            evidence = [Evidence("demand", demand.title or demand.description[:80], terms[:8], score)]
            for field, piece in pieces:
                hit = tuple(shown_t for t, shown_t in zip(found, terms, strict=True) if t in normalize(piece))
                if hit:
                    evidence.append(Evidence(field, piece, hit, 0.0))
                if len(evidence) >= 3:
                    break
            out.append(DemandMatch(rank, demand, score, Explanation(terms, tuple(evidence), {"bm25": score})))
        return out


def strengths_of(engine: Engine, expert_id: str, found: Sequence[DemandMatch]) -> list[DemandMatch]:
    """`found` with the strength each pair has in the demand's own ranking (`Engine.explain_demand`:
    the match page's scale), so that the expert page, the visit plan and the match page agree.
    One ranking of each demand: call it for the matches that are shown."""
    out: list[DemandMatch] = []
    for m in found:
        if engine.encoder is not None:
            # the demand's vector, cached in the store (the bank's are already): its ranking then
            # encodes nothing, and the next request for it reads the cache too
            engine.query_vector(m.demand.text)
        forward = engine.explain_demand(m.demand, [expert_id]).get(expert_id)
        x = m.explanation
        if forward is not None:
            x = replace(x, strength=forward.strength, level=forward.level, measures=forward.measures)
        out.append(replace(m, explanation=x))
    return out


def _expert_pieces(expert: Expert) -> list[tuple[str, str]]:
    """The expert's own evidence for a match: research fields, then documents by title."""
    out = [("research_fields", f) for f in expert.research_fields]
    out += [(d.kind, d.title) for d in expert.documents if d.title]
    return out


def demand_index(engine: Engine, *, write_lock: threading.Lock | None = None) -> DemandIndex:
    """The engine's demand index (one per engine, kept by the engine and made on first use; see
    `DemandIndex.write_lock`)."""
    index = engine.service(DemandIndex, lambda: DemandIndex(engine, write_lock=write_lock))
    if write_lock is not None and index.write_lock is None:
        index.write_lock = write_lock
    return index


# -- a day's visit --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Stop:
    order: int
    enterprise: str
    district: str
    region: str
    score: float
    demands: tuple[DemandMatch, ...]

    @property
    def strength(self) -> float | None:
        """The strongest of its demands (the match page's scale)."""
        known = [m.strength for m in self.demands if m.strength is not None]
        return max(known) if known else None


@dataclass(frozen=True, slots=True)
class DistrictOption:
    district: str
    city: str
    enterprises: int
    score: float


@dataclass(frozen=True, slots=True)
class VisitPlan:
    """For one expert and one day: `stops`, the best enterprises of the best district (then of its
    city's other districts while places are left), and the other districts worth a day."""

    expert_id: str
    day: date
    stops: tuple[Stop, ...]
    districts: tuple[DistrictOption, ...]
    paused: Pause | None  # the expert's recommendations are paused that day


def plan_visit(engine: Engine, expert_id: str, day: date, *, stops: int = 4, depth: int = 40) -> VisitPlan:
    """A day's route: the open demands the expert could help with, by enterprise, grouped by district;
    the district whose best `stops` enterprises score most is the day, filled up from the same city."""
    if not 1 <= stops <= 10:
        raise InputError(f"stops must be between 1 and 10, not {stops}")
    matches = demand_index(engine).for_expert(expert_id, top_k=depth, strengths=False)
    by_enterprise: dict[str, list[DemandMatch]] = defaultdict(list)
    for m in matches:
        by_enterprise[m.demand.enterprise or f"（未填企业）{m.demand.id}"].append(m)
    places = []
    for name, ms in by_enterprise.items():
        region = parse_region(ms[0].demand.region)
        places.append((name, region, sum(m.score for m in ms), tuple(ms)))
    districts: dict[str, list[tuple]] = defaultdict(list)  # type: ignore[type-arg]
    for place in places:
        districts[place[1].district_label].append(place)
    options = []
    for label, ps in districts.items():
        ps.sort(key=lambda p: -p[2])
        options.append(DistrictOption(label, ps[0][1].city, len(ps), round(sum(p[2] for p in ps[:stops]), 4)))
    options.sort(key=lambda o: (-o.score, o.district))
    route: list[tuple] = []  # type: ignore[type-arg]
    if options:
        best = options[0]
        route = list(districts[best.district][:stops])
        if len(route) < stops and best.city:  # fill up from the same city's other districts
            rest = sorted(
                (p for o in options[1:] if o.city == best.city for p in districts[o.district]),
                key=lambda p: -p[2],
            )
            route += rest[: stops - len(route)]
    # The strengths of the demands on the route only: each is one ranking of the demand.
    plan_stops = tuple(
        Stop(i, name, region.district_label, region.text, round(score, 4),
             tuple(strengths_of(engine, expert_id, ms)))
        for i, (name, region, score, ms) in enumerate(route, start=1)
    )
    paused = engine.pauses(day).get(expert_id)
    return VisitPlan(expert_id, day, plan_stops, tuple(options), paused)
