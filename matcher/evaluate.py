"""Benchmark protocol: rank a folder's queries against its experts and score against its qrels.

A benchmark folder holds `experts.jsonl` ({id, research_fields, documents: [{title, keywords,
abstract}]}), `queries.jsonl` ({id, title, keywords, description}) and `qrels.tsv` (query_id,
expert_id, relevance, with a header line). The project's ranker and a BM25 reference (bm25 over the
expert's whole text concatenated, on the very same tokens) run side by side. Metrics follow the
usual definitions (binary relevance, cut-offs in the names); MRR and MAP look at the top 100.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from matcher.errors import InputError, MatcherError
from matcher.index import TermIndex
from matcher.learning import Association, Judgment
from matcher.models import Demand, Expert
from matcher.rank import ExpertIndex, Query, Scored
from matcher.records import FeedbackEntry

if TYPE_CHECKING:
    from matcher.engine import Engine

METRICS: tuple[str, ...] = ("nDCG@10", "MRR", "Recall@10", "Recall@50", "Hit@1", "Hit@10", "MAP@100")


@dataclass(frozen=True)
class Benchmark:
    experts: list[Expert]
    queries: list[Demand]
    qrels: dict[str, set[str]]


def load_benchmark(folder: Path | str) -> Benchmark:
    folder = Path(folder)
    for name in ("experts.jsonl", "queries.jsonl", "qrels.tsv"):
        if not (folder / name).exists():
            raise InputError(f"{folder} is not a benchmark folder: {name} is missing")
    experts = [Expert.from_dict(json.loads(line)) for line in _lines(folder / "experts.jsonl")]
    queries = [Demand.from_dict(json.loads(line)) for line in _lines(folder / "queries.jsonl")]
    qrels: dict[str, set[str]] = defaultdict(set)
    for i, line in enumerate(_lines(folder / "qrels.tsv")):
        parts = line.split("\t") if "\t" in line else line.split()
        if i == 0 and not parts[-1].strip().lstrip("-").isdigit():
            continue  # header
        if len(parts) < 3:
            raise InputError(f"qrels.tsv line {i + 1}: expected query_id, expert_id, relevance")
        if int(parts[2]) > 0:
            qrels[parts[0]].add(parts[1])
    return Benchmark(experts, queries, dict(qrels))


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def metrics_for(ranked: Sequence[str], relevant: set[str]) -> dict[str, float]:
    gains = [1.0 if e in relevant else 0.0 for e in ranked[:100]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains[:10]))
    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
    first = next((i + 1 for i, g in enumerate(gains) if g), None)
    hits, ap = 0, 0.0
    for i, g in enumerate(gains):
        if g:
            hits += 1
            ap += hits / (i + 1)
    n = len(relevant)
    return {
        "nDCG@10": dcg / idcg if idcg else 0.0,
        "MRR": 1.0 / first if first else 0.0,
        "Recall@10": sum(gains[:10]) / n,
        "Recall@50": sum(gains[:50]) / n,
        "Hit@1": gains[0] if gains else 0.0,
        "Hit@10": float(any(gains[:10])),
        "MAP@100": ap / n,
    }


def mean_metrics(runs: Mapping[str, Sequence[str]], qrels: Mapping[str, set[str]]) -> dict[str, float]:
    """Mean of each metric over the judged queries; a query missing from `runs` scores zero."""
    sums: dict[str, float] = defaultdict(float)
    judged = [q for q, rel in qrels.items() if rel]
    for q in judged:
        for k, v in metrics_for(list(runs.get(q, [])), qrels[q]).items():
            sums[k] += v
    return {k: round(sums[k] / len(judged), 4) if judged else 0.0 for k in METRICS}


@dataclass(frozen=True)
class Hub:
    """The expert listed most often, and the share of queries whose top `depth` holds them.

    A ranker that offers the same few experts for every problem (prolific academicians with
    documents in many fields) shows here long before its averages move; the same share over the
    qrels (how often the most-relevant expert is relevant) is what a fair ranker should stay near.
    """

    expert: str
    share: float

    def to_json(self) -> dict[str, object]:
        return {"expert": self.expert, "share": self.share}


def hub_of(runs: Mapping[str, Sequence[str]], queries: Sequence[str], depth: int = 10) -> Hub:
    """The most-listed expert of `runs` (each query's ranking, best first) over `queries`."""
    listed: Counter[str] = Counter()
    for q in queries:
        listed.update(set(runs.get(q, [])[:depth]))
    if not listed or not queries:
        return Hub("", 0.0)
    expert, count = min(listed.items(), key=lambda kv: (-kv[1], kv[0]))
    return Hub(expert, round(count / len(queries), 3))


def qrels_hub(qrels: Mapping[str, set[str]], queries: Sequence[str]) -> Hub:
    """The expert relevant to the most queries, and the share of `queries` they are relevant to."""
    return hub_of({q: sorted(qrels.get(q, ())) for q in queries}, queries, depth=10**9)


def expert_text(expert: Expert) -> str:
    parts = [*expert.research_fields, expert.bio]
    for d in expert.documents:
        parts.extend([d.title, " ".join(d.keywords), d.abstract])
    return "\n".join(p for p in parts if p)


@dataclass
class EvalResult:
    ranker: dict[str, float]
    bm25: dict[str, float]
    queries: int
    seconds: float
    runs: dict[str, list[tuple[str, float]]] = field(default_factory=dict, repr=False)
    hub: dict[str, Hub] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"ranker": self.ranker, "bm25": self.bm25, "hub": {k: h.to_json() for k, h in self.hub.items()},
                "queries": self.queries, "seconds": round(self.seconds, 2)}


def evaluate(
    bench: Benchmark,
    tokenize: Callable[[str], list[str]],
    make_index: Callable[[], ExpertIndex],
    make_query: Callable[[str, str], Query],
    *,
    top: int = 100,
    progress: Callable[[int, int], None] | None = None,
    prepare: Callable[[ExpertIndex, Sequence[Expert]], ExpertIndex] | None = None,
    inspect: Callable[[Demand, ExpertIndex, Query, Scored], None] | None = None,
) -> EvalResult:
    """Rank every query of `bench` and score the rankings. `prepare` finishes the fitted index
    (the engine attaches the dense vectors, encoding what its cache lacks); `inspect` sees each
    query's scoring (`benchmarks/fit_strength.py` explains the first ten there)."""
    start = time.perf_counter()
    cached = lru_cache(maxsize=None)(tokenize)
    tok = lambda s: list(cached(s))  # noqa: E731 - callers must not mutate the cached lists
    index = make_index().fit(bench.experts, tok)
    if prepare is not None:
        index = prepare(index, bench.experts)
    reference = TermIndex("bm25").fit([tok(expert_text(e)) for e in bench.experts])
    ids = np.asarray([e.id for e in bench.experts])
    ranker_runs: dict[str, list[tuple[str, float]]] = {}
    bm25_runs: dict[str, list[str]] = {}
    for n, q in enumerate(bench.queries, start=1):
        emphasis = " ".join([q.title, *q.keywords])
        query = make_query(q.text, emphasis)
        scored = index.score(query)
        total = scored.total
        if inspect is not None:
            inspect(q, index, query, scored)
        order = np.argsort(-total, kind="stable")[:top]
        ranker_runs[q.id] = [(str(ids[i]), float(total[i])) for i in order if total[i] > 0]
        ref = reference.score(list(query.tokens))
        ref_order = np.argsort(-ref, kind="stable")[:top]
        bm25_runs[q.id] = [str(ids[i]) for i in ref_order if ref[i] > 0]
        if progress:
            progress(n, len(bench.queries))
    judged = {q.id for q in bench.queries}
    qrels = {q: r for q, r in bench.qrels.items() if q in judged}
    listed = {q: [e for e, _ in r] for q, r in ranker_runs.items()}
    asked = [q for q in (q.id for q in bench.queries) if qrels.get(q)]
    return EvalResult(
        ranker=mean_metrics(listed, qrels),
        bm25=mean_metrics(bm25_runs, qrels),
        queries=len(qrels),
        seconds=time.perf_counter() - start,
        runs=ranker_runs,
        hub={"matcher": hub_of(listed, asked), "bm25": hub_of(bm25_runs, asked), "qrels": qrels_hub(qrels, asked)},
    )


def write_trec_run(path: Path | str, runs: Mapping[str, Sequence[tuple[str, float]]], tag: str = "matcher") -> None:
    with Path(path).open("w", encoding="utf-8") as f:
        for qid, ranked in runs.items():
            for rank, (eid, score) in enumerate(ranked, start=1):
                f.write(f"{qid} Q0 {eid} {rank} {score:.6f} {tag}\n")


def format_table(result: EvalResult) -> str:
    head = f"{'ranker':<10}" + "".join(f"{m:>11}" for m in METRICS)
    rows = [head]
    for name, vals in (("matcher", result.ranker), ("bm25", result.bm25)):
        rows.append(f"{name:<10}" + "".join(f"{vals[m]:>11.4f}" for m in METRICS))
    if result.hub:
        rows.append("hub (share of queries whose top 10 holds the most-listed expert): " + ", ".join(
            f"{name} {h.share:.3f} ({h.expert or '-'})" for name, h in result.hub.items()))
    rows.append(f"{result.queries} queries, {result.seconds:.1f} s")
    return "\n".join(rows)


def ablation(
    bench: Benchmark,
    tokenize: Callable[[str], list[str]],
    make_index: Callable[[], ExpertIndex],
    make_query: Callable[[str, str], Query],
    variants: Mapping[str, Mapping[str, float]],
    *,
    top: int = 100,
    prepare: Callable[[ExpertIndex, Sequence[Expert]], ExpertIndex] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of several fusion weightings in one pass: signals are computed once per query.

    `variants` maps a label to fusion weights, e.g. {"bm25 only": {"bm25": 1}, "all": {...}}.
    The BM25 reference (whole profile concatenated, same tokens) is added as "bm25 reference".
    """
    cached = lru_cache(maxsize=None)(tokenize)
    tok = lambda s: list(cached(s))  # noqa: E731
    index = make_index().fit(bench.experts, tok)
    if prepare is not None:
        index = prepare(index, bench.experts)
    reference = TermIndex("bm25").fit([tok(expert_text(e)) for e in bench.experts])
    ids = [e.id for e in bench.experts]
    runs: dict[str, dict[str, list[str]]] = {name: {} for name in [*variants, "bm25 reference"]}
    for q in bench.queries:
        query = make_query(q.text, " ".join([q.title, *q.keywords]))
        scores = index.signal_scores(query)
        for name, weights in variants.items():
            total = index.fuse(scores, weights)
            order = np.argsort(-total, kind="stable")[:top]
            runs[name][q.id] = [ids[i] for i in order if total[i] > 0]
        ref = reference.score(list(query.tokens))
        runs["bm25 reference"][q.id] = [ids[i] for i in np.argsort(-ref, kind="stable")[:top] if ref[i] > 0]
    judged = {q.id for q in bench.queries}
    qrels = {q: r for q, r in bench.qrels.items() if q in judged}
    return {name: mean_metrics(run, qrels) for name, run in runs.items()}


# -- the ranker against the 科协's own verdicts (`matcher eval --feedback`) ----------------------
RELEVANT_VERDICTS: tuple[str, ...] = ("accepted", "succeeded")
NON_RELEVANT_VERDICTS: tuple[str, ...] = ("declined", "unsuitable")


@dataclass
class FeedbackEval:
    """How the ranker orders the experts staff judged. A pair (demand, expert) counts as relevant
    when its latest decisive verdict is 同意对接 or 对接成功, as not relevant when it is 婉拒 or
    不合适; 已联系 alone decides nothing. Demands are ranked without their verdicts' exclusions.

    `full`: the usual metrics over the whole ranking (unjudged experts count as not relevant, so
    these are lower bounds). `condensed`: the same over the ranking with unjudged experts removed
    (Sakai's condensed lists, the standard answer to incomplete judgments). `pairs_ordered`: the
    share of (relevant, not relevant) pairs of one demand that the ranker puts in that order."""

    demands: int  # demands with at least one judged pair
    with_relevant: int  # … of which have at least one relevant expert (the metrics' denominators)
    relevant: int
    non_relevant: int
    full: dict[str, float]
    condensed: dict[str, float]
    pairs_ordered: float | None
    non_relevant_in_top10: float | None  # share of the 婉拒/不合适 experts the ranker puts in its top 10
    seconds: float
    runs: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, object]:
        return {"demands": self.demands, "with_relevant": self.with_relevant, "relevant": self.relevant,
                "non_relevant": self.non_relevant, "full": self.full, "condensed": self.condensed,
                "pairs_ordered": self.pairs_ordered, "non_relevant_in_top10": self.non_relevant_in_top10,
                "seconds": round(self.seconds, 2)}


def feedback_judgments(entries: Sequence[FeedbackEntry]) -> dict[str, dict[str, bool]]:
    """{demand: {expert: relevant?}} from verdicts in the order recorded (the latest decisive wins)."""
    out: dict[str, dict[str, bool]] = defaultdict(dict)
    for f in entries:
        if f.verdict in RELEVANT_VERDICTS or f.verdict in NON_RELEVANT_VERDICTS:
            out[f.demand_id][f.expert_id] = f.verdict in RELEVANT_VERDICTS
    return dict(out)


def evaluate_feedback(engine: Engine, *, top: int = 100) -> FeedbackEval:
    """Score the ranker on the stored verdicts (see `FeedbackEval`)."""
    start = time.perf_counter()
    judged = feedback_judgments(engine.store.feedback_entries())
    if not judged:
        raise InputError("no verdicts to score against: record 同意对接, 对接成功, 婉拒 or 不合适 on "
                         "recommended experts first (the demand page, or POST /api/v1/feedback)")
    runs: dict[str, list[str]] = {}
    qrels: dict[str, set[str]] = {}
    condensed: dict[str, list[str]] = {}
    ordered = 0.0
    pairs = in_top = n_bad = 0
    for demand_id, verdicts in sorted(judged.items()):
        try:
            demand = engine.store.get_demand(demand_id)
            ranked = [m.expert.id for m in engine.match_demand(demand, top_k=top, feedback=False)]
        except MatcherError:  # deleted since, or no text left to rank
            ranked = []
        runs[demand_id] = ranked
        position = {e: i for i, e in enumerate(ranked)}
        good = {e for e, ok in verdicts.items() if ok}
        bad = {e for e, ok in verdicts.items() if not ok}
        n_bad += len(bad)
        in_top += sum(1 for e in bad if position.get(e, top) < 10)
        for g in good:
            for b in bad:
                pairs += 1
                pg, pb = position.get(g, top), position.get(b, top)
                ordered += 1.0 if pg < pb else 0.5 if pg == pb else 0.0  # both unranked: a tie, as in AUC
        if good:
            qrels[demand_id] = good
            condensed[demand_id] = [e for e in ranked if e in verdicts]
    return FeedbackEval(
        demands=len(judged), with_relevant=len(qrels), relevant=sum(len(v) for v in qrels.values()),
        non_relevant=n_bad, full=mean_metrics(runs, qrels), condensed=mean_metrics(condensed, qrels),
        pairs_ordered=round(ordered / pairs, 4) if pairs else None,
        non_relevant_in_top10=round(in_top / n_bad, 4) if n_bad else None,
        seconds=time.perf_counter() - start, runs=runs,
    )


def format_feedback_table(result: FeedbackEval) -> str:
    head = f"{'ranking':<10}" + "".join(f"{m:>11}" for m in METRICS)
    rows = [f"{result.demands} demands with verdicts ({result.with_relevant} with an accepted or "
            f"successful expert): {result.relevant} relevant, {result.non_relevant} declined or unsuitable",
            head]
    for name, vals in (("full", result.full), ("condensed", result.condensed)):
        rows.append(f"{name:<10}" + "".join(f"{vals[m]:>11.4f}" for m in METRICS))
    if result.pairs_ordered is not None:
        rows.append(f"accepted ranked above declined in {100 * result.pairs_ordered:.1f}% of the pairs")
    if result.non_relevant_in_top10 is not None:
        share = 100 * result.non_relevant_in_top10
        rows.append(f"{share:.1f}% of the declined/unsuitable experts are in the top 10")
    rows.append(f"{result.seconds:.1f} s")
    return "\n".join(rows)


# -- an honest simulation of a 科协 learning from its verdicts (`matcher eval --simulate-feedback`) --
#: The seed that splits a benchmark's queries into history and test (fixed: every run the same split).
SIMULATION_SEED = 28
SIMULATION_METRICS: tuple[str, ...] = ("nDCG@10", "Recall@50", "hub")


@dataclass
class Simulation:
    """What learning from the history queries' verdicts did to the test queries' rankings.

    The queries are split by a fixed seed; the top 10 of each history query get the verdicts staff
    would give (relevant: 同意对接; shown and not relevant: 不合适); the matcher learns from them
    (`matcher.learning`); the test queries are ranked before and after. `before`/`after`: nDCG@10,
    Recall@50 and hub (the share of test queries whose top 10 holds the most-listed expert)."""

    history: int
    test: int
    seed: int
    judgments: int
    before: dict[str, float]
    after: dict[str, float]
    learned: int
    examples: list[Association]
    changed: int  # test queries whose understanding gained a learned concept
    seconds: float
    hubs: dict[str, Hub] = field(default_factory=dict)
    #: every association learned (strongest first) and the test queries' rankings before and after:
    #: what a test compares when it shuffles the test queries' qrels
    associations: list[Association] = field(default_factory=list)
    runs: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"before": self.before, "after": self.after, "learned": self.learned,
                "examples": [a.to_dict() for a in self.examples], "history": self.history, "test": self.test,
                "seed": self.seed, "judgments": self.judgments, "changed": self.changed,
                "seconds": round(self.seconds, 2)}


def split_queries(ids: Sequence[str], history: float,
                  seed: int = SIMULATION_SEED) -> tuple[list[str], list[str]]:
    """(history, test): the ids shuffled by `seed` (from their sorted order), the first `history` share."""
    if not 0 < history < 1:
        raise InputError(f"--history is the share of queries whose verdicts are learned from: between 0 and "
                         f"1, not {history}")
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    n = min(max(round(history * len(order)), 1), len(order) - 1)
    return order[:n], order[n:]


def staff_verdicts(ranked: Mapping[str, Sequence[str]], relevant: Callable[[str], set[str]],
                   shown: int = 10) -> list[Judgment]:
    """The verdicts staff would give on each query's first `shown` experts: 同意对接 for the
    relevant ones, 不合适 for the others (`relevant(query)`: the qrels of that query only)."""
    out = []
    for q in sorted(ranked):
        good = relevant(q)
        for e in ranked[q][:shown]:
            verdict = "accepted" if e in good else "unsuitable"
            out.append(Judgment(q, e, 1.0 if e in good else -1.0, verdict))
    return out


def simulate_feedback(bench: Benchmark, engine: Engine, *, history: float = 0.5, seed: int = SIMULATION_SEED,
                      top: int = 100, progress: Callable[[int, int], None] | None = None,
                      prepare: Callable[[ExpertIndex, Sequence[Expert]], ExpertIndex] | None = None,
                      examples: int = 10) -> Simulation:
    """Split, judge the history, learn, rank the test half before and after (see `Simulation`).
    The test queries' qrels are read only once both rankings are made."""
    start = time.perf_counter()
    queries = {q.id: q for q in bench.queries}
    hist_ids, test_ids = split_queries(list(queries), history, seed)
    cached = lru_cache(maxsize=None)(engine.tokenizer)
    index = engine.new_index().fit(bench.experts, lambda s: list(cached(s)))
    if prepare is not None:
        index = prepare(index, bench.experts)
    ids = np.asarray([e.id for e in bench.experts])
    done = 0

    def rank(qid: str) -> tuple[list[str], bool]:
        nonlocal done
        q = queries[qid]
        emphasis = " ".join([q.title, *q.keywords])
        u = engine.understand(q.text, emphasis, index=index)  # the benchmark's experts judge expansions
        total = index.score(engine.query(q.text, emphasis, understanding=u, index=index)).total
        order = np.argsort(-total, kind="stable")[:top]
        done += 1
        if progress:
            progress(done, len(hist_ids) + 2 * len(test_ids))
        return [str(ids[i]) for i in order if total[i] > 0], any(e.source == "learned" for e in u.expanded)

    engine.learning.pin(None)  # nothing learned: the shipped ranking
    try:
        shown = {q: rank(q)[0] for q in hist_ids}
        found = staff_verdicts(shown, lambda q: set(bench.qrels.get(q, ())) if q in shown else set())
        learned = engine.learning.learn_from(found, queries, {e.id: e for e in bench.experts}, index)
        before = {q: rank(q)[0] for q in test_ids}
        engine.learning.pin(learned)
        after, changed = {}, 0
        for q in test_ids:
            after[q], gained = rank(q)
            changed += gained
    finally:
        engine.learning.unpin()
    # Only now are the test queries' qrels read.
    qrels = {q: bench.qrels[q] for q in test_ids if bench.qrels.get(q)}
    asked = sorted(qrels)
    scores = {}
    hubs = {}
    for name, runs in (("before", before), ("after", after)):
        m = mean_metrics(runs, qrels)
        hubs[name] = hub_of(runs, asked)
        scores[name] = {"nDCG@10": m["nDCG@10"], "Recall@50": m["Recall@50"], "hub": hubs[name].share}
    everything = learned.all()
    return Simulation(len(hist_ids), len(test_ids), seed, len(found), scores["before"], scores["after"],
                      len(learned), everything[:examples], changed, time.perf_counter() - start, hubs,
                      everything, {"before": before, "after": after})


def format_simulation(result: Simulation) -> str:
    rows = [f"{result.history} history queries judged ({result.judgments} verdicts on their top 10), "
            f"{result.test} test queries (seed {result.seed})",
            f"{'':<8}" + "".join(f"{m:>11}" for m in SIMULATION_METRICS)]
    for name, vals in (("before", result.before), ("after", result.after)):
        rows.append(f"{name:<8}" + "".join(f"{vals[m]:>11.4f}" for m in SIMULATION_METRICS))
    rows.append(f"{result.learned} associations learned; {result.changed} test queries gained a learned "
                "concept")
    for a in result.examples:
        rows.append(f"  {a.phrase} -> {a.concept}  strength {a.strength:.2f}, {a.demands} of {a.judged} "
                    f"demands, {a.accepted} accepted / {a.declined} declined experts hold it, "
                    f"p {a.p_value:.2g}")
    rows.append(f"{result.seconds:.1f} s")
    return "\n".join(rows)
