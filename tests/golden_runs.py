"""Golden rankings of the demo corpus, for refactorings that must not move a ranking.

    python -m tests.golden_runs        # rewrite tests/golden/demo_runs/*.jsonl.gz from the current code

Every demo demand is ranked through each door a ranking leaves by: `Engine.match` on its text,
`Engine.match_demand` (its 回避 rules and verdicts), the nightly batch (stored candidates and
recommendations, joint assignment), a team (`recommend_team` with the demand's rules), and, from
the expert's side, reverse matching and a visit plan. A few verdicts and a pause are recorded first
so that every rule acts somewhere. Three configurations: the defaults, every optional signal and
bound switched on (profile, fields, prior, corpus expansion, diversified places, the two-stage
semantic scan, a postings budget), and the same with top-k pruning. Scores are written as `%.6f`,
as a TREC run file writes them; `tests/test_golden_runs.py` compares a fresh run with these files.
Regenerate them only for a change that is meant to move rankings, and say so in its commit.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from matcher.config import DEFAULT_CORPORA, Settings

GOLDEN = Path(__file__).resolve().parent / "golden" / "demo_runs"
TOP = 100
EXPLAINED = 5  # the first five of each ranking carry their explanation

CONFIGS: dict[str, dict[str, object]] = {
    "default": {},
    "all_on": {
        "weight_profile": 0.4, "weight_fields": 0.3, "weight_prior": 0.2, "diversify_slots": 2,
        "corpus_expansion_weight": 0.3, "semantic_exhaustive": 150, "max_postings": 3000,
    },
    "pruned": {
        "weight_profile": 0.4, "weight_fields": 0.3, "weight_prior": 0.2,
        "corpus_expansion_weight": 0.3, "semantic_exhaustive": 150, "max_postings": 3000,
        "topk_pruning": True,
    },
}

# Staff's working loop, so that the verdict and pause rules act on the rankings: (demand, expert,
# verdict) and (expert, until). Chosen among experts each demand ranks high under the defaults.
VERDICTS = (("Q0001", "X0001", "declined"), ("Q0001", "X0002", "unsuitable"),
            ("Q0003", "X0010", "declined"), ("Q0010", "X0020", "accepted"))
PAUSED = (("X0005", "2999-12-31"), ("X0030", "2000-01-01"))  # the second is over: no effect
REVERSE_EXPERTS = 30
VISIT_DAY = date(2026, 12, 3)


def _fmt(x: float) -> str:
    return f"{x:.6f}"


def _explanation(e: object) -> dict[str, object]:
    return {"terms": list(e.terms),  # type: ignore[attr-defined]
            "evidence": [[v.field, v.text, list(v.terms), _fmt(v.score), v.match]
                         for v in e.evidence],  # type: ignore[attr-defined]
            "expanded": dict(e.expanded)}  # type: ignore[attr-defined]


def _ranked(matches: list, explained: int = EXPLAINED) -> list[object]:  # type: ignore[type-arg]
    return [[m.expert.id, _fmt(m.score), *([_explanation(m.explanation)] if m.rank <= explained else [])]
            for m in matches]


def runs(config: str, workdir: Path) -> Iterator[dict[str, object]]:
    """Every ranking of `config` on a fresh copy of the demo corpus, one record a line."""
    from matcher.batch import BatchOptions, run_batch
    from matcher.engine import Engine
    from matcher.reverse import demand_index, plan_visit
    from matcher.team import recommend_team

    settings = Settings(db=workdir / f"{config}.db", **CONFIGS[config])  # type: ignore[arg-type]
    with Engine(settings) as engine:
        assert engine.load_demo()
        store = engine.store
        for demand_id, expert_id, verdict in VERDICTS:
            store.record_feedback(demand_id, expert_id, verdict, actor="golden", at="2026-11-20T10:00:00")
        for expert_id, until in PAUSED:
            store.set_pause(expert_id, until, "golden", "golden")
        demands = sorted(store.iter_demands(), key=lambda d: d.id)
        for d in demands:
            yield {"path": "match", "demand": d.id, "ranking": _ranked(engine.match(d.text, top_k=TOP))}
            yield {"path": "match_demand", "demand": d.id,
                   "ranking": _ranked(engine.match_demand(d, top_k=TOP), 3)}
        for d in demands:
            team = recommend_team(engine, d.text, demand=d)
            yield {"path": "team", "demand": d.id,
                   "aspects": [[a.text, list(a.terms), list(a.covered_by)] for a in team.aspects],
                   "members": [[m.expert.id, _fmt(m.score), _fmt(m.gain), list(m.covers),
                                [_fmt(r) for r in m.relevance], _explanation(m.explanation)]
                               for m in team.members],
                   "ranking": list(team.ranking), "unmatched": list(team.unmatched),
                   "excluded": sorted([x.expert.id, x.reason] for x in team.excluded),
                   "method": team.method}
        index = demand_index(engine)
        experts = [e.id for e in sorted(store.iter_experts(), key=lambda e: e.id)][:REVERSE_EXPERTS]
        for eid in experts:
            found = index.for_expert(eid, top_k=20)
            yield {"path": "reverse", "expert": eid,
                   "ranking": [[m.demand.id, _fmt(m.score), list(m.explanation.terms)] for m in found]}
        for eid in experts[:10]:
            plan = plan_visit(engine, eid, VISIT_DAY)
            yield {"path": "visit", "expert": eid,
                   "stops": [[s.enterprise, s.district, _fmt(s.score), [m.demand.id for m in s.demands]]
                             for s in plan.stops],
                   "districts": [[o.district, o.enterprises, _fmt(o.score)] for o in plan.districts],
                   "paused": plan.paused is not None}
        result = run_batch(engine, BatchOptions(run_key="golden", top=10, max_per_expert=5))
        run = result.run
        table = store.batch_candidate_table(run.id)
        by_demand: dict[str, list[list[str]]] = {}
        for d, e, r, s in zip(table.demand_ids, table.expert_ids, table.ranks, table.scores, strict=True):
            if r <= TOP:
                by_demand.setdefault(d, []).append([e, _fmt(float(s))])
        for d, ranked in by_demand.items():
            yield {"path": "batch_candidates", "demand": d, "ranking": ranked}
        excluded: dict[str, list[list[str]]] = {}
        for x in store.list_batch_exclusions(run.id):
            excluded.setdefault(x.demand_id, []).append([x.expert_id, x.reason, _fmt(x.score)])
        for d, xs in excluded.items():
            yield {"path": "batch_exclusions", "demand": d, "excluded": xs}
        matches: dict[str, list[object]] = {}
        for m in store.list_batch_matches(run.id):
            matches.setdefault(m.demand_id, []).append(
                [m.expert_id, m.rank, m.candidate_rank, _fmt(m.score), _explanation(m.explanation)])
        for d, ms in matches.items():
            yield {"path": "batch_matches", "demand": d, "matches": ms}


def compute(config: str) -> list[str]:
    """The lines of `config`'s golden file, computed now."""
    tmp = Path(tempfile.mkdtemp(prefix=f"golden-{config}-"))
    try:
        return [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in runs(config, tmp)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for config in CONFIGS:
        lines = compute(config)
        write(config, lines)
        print(f"{config}: {len(lines)} records")


def path(config: str) -> Path:
    return GOLDEN / f"{config}.jsonl.gz"


def write(config: str, lines: list[str]) -> None:
    # gzip without a timestamp: the same rankings give the same bytes
    data = gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0)
    path(config).write_bytes(data)


def read(config: str) -> list[str]:
    return gzip.decompress(path(config).read_bytes()).decode("utf-8").splitlines()


assert DEFAULT_CORPORA.exists()

if __name__ == "__main__":
    main()
