"""`matcher eval --simulate-feedback` (issue 28): the history half's top 10 get the verdicts staff
would give, the matcher learns from them, and the test half is scored before and after. Nothing of
the test half's qrels is read before it is scored: shuffling them leaves what is learned and both
rankings exactly as they were, and only the scores move.

The benchmark: the demo corpus' experts and demands (each demand's relevant expert is the one the
shipped ranking puts first, as staff who agree with it would judge) and the two mushroom experts of
`conftest`, with twelve owner demands saying 烂筒 (a word no expert writes) whose relevant expert is
a mushroom expert."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from matcher.cli import app
from matcher.config import Settings
from matcher.engine import Engine
from matcher.errors import InputError
from matcher.evaluate import Benchmark, load_benchmark, simulate_feedback, split_queries

from .conftest import MUSHROOM_EXPERTS, MUSHROOM_IDS, ROTTEN_LOGS, demo_demands, demo_records

ROTTEN_MORE = ["香菇菌棒烂筒怎么办", "烂筒的菌棒还能出菇吗", "花菇烂筒发黑", "今年菇场烂筒比去年多",
               "我家香菇烂筒了，急", "烂筒问题年年有，想请专家"]


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    folder = tmp_path_factory.mktemp("simbench")
    engine = Engine(Settings(db=folder / "judge.db"), tokenizer=tokenizer)
    try:
        assert engine.load_demo()
        first = {d.id: engine.match_demand(d, top_k=1)[0].expert.id for d in demo_demands()}
    finally:
        engine.close()
    experts = [*demo_records("experts"), *MUSHROOM_EXPERTS]
    queries = demo_records("demands")
    qrels = [(q, e) for q, e in first.items()]
    for i, text in enumerate([*ROTTEN_LOGS, *ROTTEN_MORE]):
        queries.append({"id": f"L{i:02d}", "title": text, "keywords": [], "description": ""})
        qrels.append((f"L{i:02d}", MUSHROOM_IDS[i % 2]))
    (folder / "experts.jsonl").write_text("\n".join(json.dumps(e, ensure_ascii=False) for e in experts),
                                          encoding="utf-8")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in queries),
                                          encoding="utf-8")
    (folder / "qrels.tsv").write_text("query_id\texpert_id\trelevance\n"
                                      + "".join(f"{q}\t{e}\t1\n" for q, e in qrels), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Engine:
    e = Engine(Settings(db=tmp_path_factory.mktemp("sim") / "eval.db"), tokenizer=tokenizer)
    yield e
    e.close()


def shuffled_test_qrels(bench: Benchmark, seed: int) -> Benchmark:
    """The same benchmark with the test half's qrels scrambled: each test query gets another test
    query's relevant experts, or random ones."""
    _, test = split_queries([q.id for q in bench.queries], 0.5)
    rnd = random.Random(seed)
    experts = [e.id for e in bench.experts]
    moved = [set(bench.qrels.get(q, ())) for q in test]
    rnd.shuffle(moved)
    qrels = {q: r for q, r in bench.qrels.items() if q not in test}
    for q, r in zip(test, moved, strict=True):
        qrels[q] = r or set(rnd.sample(experts, 2))
    return replace(bench, qrels=qrels)


def learned_state(sim) -> tuple:  # noqa: ANN001 - a Simulation
    return (sim.judgments, [a.to_dict() for a in sim.associations], sim.runs, sim.changed)


def test_shuffling_the_test_halfs_qrels_changes_nothing_learned_or_ranked(bench_dir: Path,
                                                                         engine: Engine) -> None:
    bench = load_benchmark(bench_dir)
    stamp = (engine.store.learning_version, len(engine.store.feedback_entries()))
    base = simulate_feedback(bench, engine)
    assert (engine.store.learning_version, len(engine.store.feedback_entries())) == stamp  # writes nothing
    hist, test = split_queries([q.id for q in bench.queries], 0.5)
    assert (base.history, base.test) == (len(hist), len(test)) == (34, 34)
    # it learned what the history's 烂筒 demands teach (the words of the two mushroom experts)
    pairs = {(a.phrase, a.concept) for a in base.associations}
    assert ("烂筒", "木霉") in pairs and base.learned == len(base.associations) > 0
    assert base.changed > 0  # test queries saying 烂筒 gained a learned concept
    for seed in (1, 2):
        other = simulate_feedback(shuffled_test_qrels(bench, seed), engine)
        assert learned_state(other) == learned_state(base)
        assert other.before != base.before  # the shuffle did reach the scores: only they moved


def test_learning_lifts_the_demands_that_say_the_learned_phrase(bench_dir: Path, engine: Engine) -> None:
    bench = load_benchmark(bench_dir)
    sim = simulate_feedback(bench, engine)
    _, test = split_queries([q.id for q in bench.queries], 0.5)
    rotten = [q for q in test if q.startswith("L")]
    assert rotten, "the split leaves some 烂筒 demands to test"
    for q in rotten:
        before, after = sim.runs["before"][q], sim.runs["after"][q]
        want = next(iter(bench.qrels[q]))
        assert (after.index(want) if want in after else 99) <= (before.index(want) if want in before else 99)
    assert sim.after["nDCG@10"] > sim.before["nDCG@10"]
    assert sim.after["Recall@50"] >= sim.before["Recall@50"]
    # demands that do not say 烂筒 rank as before
    assert all(sim.runs["after"][q] == sim.runs["before"][q] for q in test if not q.startswith("L"))


def test_the_split_is_fixed_by_the_seed_and_refuses_a_bad_share() -> None:
    ids = [f"Q{i:03d}" for i in range(40)]
    a = split_queries(ids, 0.5)
    assert a == split_queries(list(reversed(ids)), 0.5)  # the order given does not matter
    assert len(a[0]) == len(a[1]) == 20 and not set(a[0]) & set(a[1])
    assert a != split_queries(ids, 0.5, seed=29)
    assert len(split_queries(ids, 0.25)[0]) == 10
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(InputError, match="--history"):
            split_queries(ids, bad)


def test_the_command_prints_before_after_and_what_was_learned(bench_dir: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["eval", str(bench_dir), "--simulate-feedback", "--json",
                                   "--cache", str(tmp_path / "c.db")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert {"before", "after", "learned"} <= set(out)
    assert set(out["before"]) == set(out["after"]) == {"nDCG@10", "Recall@50", "hub"}
    assert out["learned"] == len(out["examples"]) or len(out["examples"]) == 10
    assert any(x["phrase"] == "烂筒" and x["concept"] == "木霉" for x in out["examples"])
    assert out["after"]["nDCG@10"] > out["before"]["nDCG@10"]
    assert "associations learned" in res.stdout and "烂筒 -> 木霉" in res.stdout

