"""The multi-aspect benchmark for team recommendation, built at run time from a benchmark folder.

    bench = load_benchmark("../shared/bench/enterprise")
    joined = joined_demands(bench, seed=JOIN_SEED)          # 2- and 3-part demands, fixed seed
    engine = bench_engine(bench, folder)                     # the folder's experts in a fresh store
    result = evaluate_teams(engine, joined, sizes=(3, 5))

A joined demand is two or three of the folder's demands put one after the other, as staff receive
a demand with several parts. Parts are drawn only from demands whose judged experts are disjoint
(different fields, so the parts need different experts); the relevant experts are the union, each
tagged with the part it came from. Nothing of the folder is copied: it is read when this runs.

Metrics, for the team of size k (`recommend_team`) against the plain top-k list (`Engine.match`)
of the same joined text:

- **coverage@k**: the share of a joined demand's parts with at least one of their relevant experts
  among the k, averaged over joined demands;
- **nDCG@10 of the union** (binary, as `matcher.evaluate`): the plain top 10 against the team's
  ranking (the team of 3, then the greedy continuation of its objective to 10).

The folder's demands are split by a fixed seed into two halves, `tune` and `held-out`; joined
demands never mix halves. Parameters of `matcher.team` were chosen on `tune` only.
"""

from __future__ import annotations

import itertools
import logging
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from matcher.config import Settings
from matcher.dense import QUERY_CHARS, text_key
from matcher.engine import Engine
from matcher.evaluate import Benchmark, metrics_for
from matcher.models import Demand
from matcher.store import Store
from matcher.team import recommend_team
from matcher.text import ChineseTokenizer

log = logging.getLogger(__name__)

JOIN_SEED = 20261126
CONNECTIVES = ("", "另外，", "还有，", "同时，", "此外，")


@dataclass(frozen=True, slots=True)
class JoinedDemand:
    id: str
    text: str
    parts: tuple[str, ...]  # ids of the demands joined
    relevant: tuple[frozenset[str], ...]  # per part: its judged experts
    split: str  # "tune" or "held-out"

    @property
    def union(self) -> set[str]:
        return set().union(*self.relevant)


def split_queries(bench: Benchmark, seed: int = JOIN_SEED) -> dict[str, str]:
    """Each judged demand's half: "tune" or "held-out" (a seeded shuffle, cut in the middle)."""
    ids = sorted(q.id for q in bench.queries if bench.qrels.get(q.id))
    random.Random(seed).shuffle(ids)
    half = len(ids) // 2
    return {q: ("tune" if i < half else "held-out") for i, q in enumerate(ids)}


def _text(q: Demand) -> str:
    text = q.text.strip()
    return text if text[-1:] in "。！？!?." else text + "。"


def joined_demands(bench: Benchmark, *, seed: int = JOIN_SEED,
                   per_split: Sequence[tuple[int, int]] = ((2, 40), (3, 20))) -> list[JoinedDemand]:
    """Joined demands of each half: for (parts, n) in `per_split`, n demands of that many parts,
    each a distinct combination, parts with pairwise disjoint judged experts, in a seeded order."""
    rng = random.Random(seed)
    halves = split_queries(bench, seed)
    by_id = {q.id: q for q in bench.queries}
    out: list[JoinedDemand] = []
    for split in ("tune", "held-out"):
        ids = sorted(q for q, h in halves.items() if h == split)
        for parts, n in per_split:
            seen: set[frozenset[str]] = set()
            tries = 0
            while sum(1 for j in out if j.split == split and len(j.parts) == parts) < n and tries < 10_000:
                tries += 1
                pick = rng.sample(ids, parts)
                key = frozenset(pick)
                rels = [frozenset(bench.qrels[p]) for p in pick]
                if key in seen or any(a & b for i, a in enumerate(rels) for b in rels[i + 1:]):
                    continue
                seen.add(key)
                text = "".join((rng.choice(CONNECTIVES) if i else "") + _text(by_id[p])
                               for i, p in enumerate(pick))
                out.append(JoinedDemand(f"{split[0].upper()}{len(out) + 1:03d}-{'+'.join(pick)}", text,
                                        tuple(pick), tuple(rels), split))
    return out


def bench_engine(bench: Benchmark, folder: Path | str | None = None, *,
                 tokenizer: ChineseTokenizer | None = None, vectors: Store | None = None,
                 settings: Settings | None = None) -> Engine:
    """An engine over the benchmark's experts in a fresh SQLite file in `folder` (default: a new
    temporary folder, left for the caller or the system to clean), with the benchmark's own
    demands stored as its demand bank, as a 科协's are. Dense vectors are taken from `vectors` (a
    store whose cache holds them, e.g. `matcher eval`'s) and the rest encoded."""
    tmp = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="team-bench-"))
    base = settings or Settings()
    engine = Engine(base.model_copy(update={"db": tmp / "bench.db"}), tokenizer=tokenizer)
    engine.store.upsert_experts(bench.experts)
    engine.store.upsert_demands(bench.queries)
    index = engine.ensure_index().index
    if engine.encoder is not None:
        if vectors is not None:
            keys = list(index.dense_texts(bench.experts))
            keys += [text_key("query: " + q.text[:QUERY_CHARS]) for q in bench.queries]
            engine.store.cache_vectors(engine.encoder.name, vectors.cached_vectors(engine.encoder.name, keys))
        engine.encode_missing()
    engine.refresh_bank()
    return engine


@dataclass
class TeamEvalResult:
    """Mean figures per half ("tune", "held-out") and per row label; `per_demand` has the detail."""

    table: dict[str, dict[str, dict[str, float]]]
    single: dict[str, float]  # the folder's own (one-topic) demands: one aspect? same first expert?
    seconds: float
    per_demand: list[dict[str, object]] = field(default_factory=list, repr=False)
    timing: dict[str, float] = field(default_factory=dict)  # ms per joined demand, p50 and p95


def coverage_at(ranked: Sequence[str], relevant: Sequence[frozenset[str]]) -> float:
    chosen = set(ranked)
    return sum(1 for r in relevant if r & chosen) / len(relevant)


def evaluate_teams(engine: Engine, joined: Sequence[JoinedDemand], singles: Sequence[Demand] = (),
                   *, sizes: Sequence[int] = (3, 5),
                   progress: Callable[[int, int], None] | None = None) -> TeamEvalResult:
    start = time.perf_counter()
    rows: list[dict[str, object]] = []
    plain_ms: list[float] = []
    team_ms: list[float] = []
    for n, j in enumerate(joined, start=1):
        t = time.perf_counter()
        found = engine.match(j.text, top_k=10)
        plain_ms.append(1000 * (time.perf_counter() - t))
        plain = [m.expert.id for m in found]
        # the rankings themselves, for comparing two versions' runs (`team_bench.py --run`)
        row: dict[str, object] = {"id": j.id, "split": j.split, "parts": len(j.parts),
                                  "plain": [(m.expert.id, round(m.score, 6)) for m in found]}
        for k in sizes:
            t = time.perf_counter()
            team = recommend_team(engine, j.text, size=k, depth=10)
            if k == sizes[0]:
                team_ms.append(1000 * (time.perf_counter() - t))
            row[f"team of {k}"] = [(m.expert.id, round(m.score, 6), list(m.covers)) for m in team.members]
            row[f"team ranking of {k}"] = list(team.ranking)
            row[f"team coverage@{k}"] = coverage_at([m.expert.id for m in team.members], j.relevant)
            row[f"plain coverage@{k}"] = coverage_at(plain[:k], j.relevant)
            if k == sizes[0]:
                row["team nDCG@10"] = metrics_for(list(team.ranking), j.union)["nDCG@10"]
                row["aspects"] = len(team.aspects)
                row["method"] = team.method
        row["plain nDCG@10"] = metrics_for(plain, j.union)["nDCG@10"]
        rows.append(row)
        if progress:
            progress(n, len(joined))
    table: dict[str, dict[str, dict[str, float]]] = {}
    keys = [f"coverage@{k}" for k in sizes] + ["nDCG@10"]
    for split in ("tune", "held-out", "all"):
        mine = [r for r in rows if split == "all" or r["split"] == split]
        if not mine:
            continue
        table[split] = {
            who: {key: round(sum(float(r[f"{who} {key}"]) for r in mine) / len(mine), 4) for key in keys}
            for who in ("team", "plain")
        }
        table[split]["demands"] = {
            "n": float(len(mine)),
            "aspects found": round(sum(int(r["aspects"]) for r in mine) / len(mine), 2),
            "parts": round(sum(int(r["parts"]) for r in mine) / len(mine), 2),
        }
    single = {"demands": float(len(singles)), "one aspect": 0.0, "same first expert": 0.0}
    for q in singles:
        team = recommend_team(engine, q.text, size=1)
        first = engine.match(q.text, top_k=1)
        single["one aspect"] += len(team.aspects) == 1
        single["same first expert"] += bool(first) and bool(team.members) and \
            team.members[0].expert.id == first[0].expert.id
    timing = {f"{who} {q}": round(float(np.percentile(ms, 50 if q == "p50" else 95)), 1)
              for who, ms in (("match", plain_ms), (f"team of {sizes[0]}", team_ms)) if ms
              for q in ("p50", "p95")}
    return TeamEvalResult(table, single, time.perf_counter() - start, rows, timing)


def part_ceiling(engine: Engine, bench: Benchmark, joined: Sequence[JoinedDemand],
                 k: int, per_demand: dict[str, float] | None = None) -> dict[str, float]:
    """What any team built from the parts' own rankings can reach: for each joined demand, the best
    split of k places among its parts (each part's first n_i of `match` on its own text), chosen
    knowing the answers. Mean per half (and, into `per_demand`, each joined demand's own). A method
    that finds the parts and allocates well gets close; beyond it only a better ranker helps."""
    by_id = {q.id: q for q in bench.queries}
    cache: dict[str, list[str]] = {}

    def ranked(q: str) -> list[str]:
        if q not in cache:
            cache[q] = [m.expert.id for m in engine.match(_text(by_id[q]), top_k=k)]
        return cache[q]

    sums: dict[str, list[float]] = {}
    for j in joined:
        best = 0.0
        for alloc in itertools.product(range(k + 1), repeat=len(j.parts)):
            if sum(alloc) != k:
                continue
            chosen = [e for p, n in zip(j.parts, alloc, strict=True) for e in ranked(p)[:n]]
            best = max(best, coverage_at(chosen, j.relevant))
        sums.setdefault(j.split, []).append(best)
        sums.setdefault("all", []).append(best)
        if per_demand is not None:
            per_demand[j.id] = best
    return {split: round(sum(v) / len(v), 4) for split, v in sums.items()}


def ceiling_reached(result: TeamEvalResult, ceiling: dict[str, float], k: int = 3) -> dict[str, float]:
    """The share of joined demands, per half, whose team of k covers as many parts as the ceiling
    of its parts' own rankings allows (`part_ceiling`'s `per_demand`)."""
    out: dict[str, list[bool]] = {}
    for row in result.per_demand:
        reached = float(row[f"team coverage@{k}"]) >= ceiling[str(row["id"])] - 1e-9
        out.setdefault(str(row["split"]), []).append(reached)
        out.setdefault("all", []).append(reached)
    return {split: round(sum(v) / len(v), 4) for split, v in out.items()}


def format_team_table(result: TeamEvalResult, sizes: Sequence[int] = (3, 5)) -> str:
    keys = [f"coverage@{k}" for k in sizes] + ["nDCG@10"]
    lines = [f"{'demands':<10}{'list':<8}" + "".join(f"{k:>14}" for k in keys)]
    for split, t in result.table.items():
        for who in ("team", "plain"):
            lines.append(f"{split:<10}{who:<8}" + "".join(f"{t[who][k]:>14.4f}" for k in keys))
        d = t["demands"]
        gain = t["team"][keys[0]] - t["plain"][keys[0]]
        lines.append(f"{'':<10}{int(d['n'])} joined demands, {d['parts']:.2f} parts and "
                     f"{d['aspects found']:.2f} aspects found on average; {keys[0]} gain {gain:+.4f}")
    s = result.single
    if s["demands"]:
        lines.append(f"one-topic demands: {int(s['demands'])}; one aspect found for {int(s['one aspect'])}, "
                     f"same first expert as match for {int(s['same first expert'])}")
    if result.timing:
        lines.append("ms per joined demand: " + ", ".join(f"{k} {v:.0f}" for k, v in result.timing.items()))
    lines.append(f"{result.seconds:.1f} s")
    return "\n".join(lines)
