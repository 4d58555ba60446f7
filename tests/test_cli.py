"""The command line through Typer's runner (and once as a real process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from matcher.cli import app

from .conftest import SHARED, THERMOS

runner = CliRunner()

COMMANDS = ("match", "import", "index", "eval")


def test_help_lists_every_command_with_help_text() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in COMMANDS:
        assert cmd in res.output
        sub = runner.invoke(app, [cmd, "--help"])
        assert sub.exit_code == 0, cmd
        assert len(sub.output.strip().splitlines()) > 3, cmd


def test_match_on_an_empty_db_loads_the_demo_and_ranks(tmp_path) -> None:
    db = tmp_path / "m.db"
    res = runner.invoke(app, ["match", THERMOS, "--db", str(db), "--top", "5"])
    assert res.exit_code == 0, res.output
    assert "demo corpus" in res.output
    lines = [ln for ln in res.output.splitlines() if ln[:3].strip().isdigit()]
    assert len(lines) == 5
    assert "焊接" in res.output


def test_match_json_shape(tmp_path) -> None:
    db = tmp_path / "m.db"
    runner.invoke(app, ["match", "保温杯", "--db", str(db)])
    res = runner.invoke(app, ["match", THERMOS, "--db", str(db), "--json", "--top", "3"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["query"] == THERMOS
    assert [m["rank"] for m in payload["matches"]] == [1, 2, 3]
    first = payload["matches"][0]
    assert {"rank", "expert_id", "name", "score", "explanation"} <= set(first)
    assert first["explanation"]["terms"] and first["explanation"]["evidence"]
    assert {"field", "text"} <= set(first["explanation"]["evidence"][0])
    assert "contact" not in first, "the CLI's JSON must not leak contact details"
    scores = [m["score"] for m in payload["matches"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("text,message", [("   ", "empty"), ("焊" * 20_001, "limit is 20000")])
def test_bad_text_is_a_clear_error(tmp_path, text, message) -> None:
    res = runner.invoke(app, ["match", text, "--db", str(tmp_path / "m.db")])
    assert res.exit_code == 2
    assert message in res.output


def test_import_is_all_or_nothing_and_names_the_row(tmp_path) -> None:
    db = tmp_path / "m.db"
    good = tmp_path / "experts.csv"
    good.write_text("姓名,工作单位,研究方向\n王五,浙江工业大学,激光焊接\n", encoding="gbk")
    res = runner.invoke(app, ["import", "experts", str(good), "--db", str(db)])
    assert res.exit_code == 0, res.output
    assert "1 inserted" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("姓名,工作单位,研究方向\n赵六,某大学,焊接\n,某大学,焊接\n", encoding="utf-8")
    res = runner.invoke(app, ["import", "experts", str(bad), "--db", str(db)])
    assert res.exit_code == 2
    assert "第3行" in res.output
    res = runner.invoke(app, ["match", "激光焊接", "--db", str(db), "--json"])
    names = [m["name"] for m in json.loads(res.stdout)["matches"]]
    assert names == ["王五"], "the rejected file must not have written 赵六"
    res = runner.invoke(app, ["import", "people", str(good), "--db", str(db)])
    assert res.exit_code != 0


def test_index_rebuilds(tmp_path) -> None:
    db = tmp_path / "m.db"
    runner.invoke(app, ["match", "保温杯", "--db", str(db)])
    res = runner.invoke(app, ["index", "--db", str(db)])
    assert res.exit_code == 0, res.output
    assert "index rebuilt" in res.output
    assert (tmp_path / "m.db.index" / "meta.json").exists()


def make_bench(folder) -> None:
    folder.mkdir()
    experts = [
        {"id": "E1", "research_fields": "激光焊接", "documents": [{"title": "不锈钢激光焊接工艺", "keywords": ["激光焊接"], "abstract": "焊缝"}]},
        {"id": "E2", "research_fields": "", "documents": [{"title": "锂离子电池管理系统", "keywords": ["BMS"], "abstract": "电池"}]},
        {"id": "E3", "research_fields": "蚕桑", "documents": [{"title": "家蚕品种选育", "keywords": ["蚕桑"], "abstract": "桑叶"}]},
        {"id": "E4", "research_fields": "真空保温", "documents": [{"title": "保温杯真空层", "keywords": ["真空"], "abstract": "抽真空"}]},
    ]
    queries = [
        {"id": "Q1", "title": "保温杯激光焊接", "keywords": ["激光焊接"], "description": "焊缝合格率低"},
        {"id": "Q2", "title": "电池BMS", "keywords": ["BMS"], "description": "锂离子电池"},
        {"id": "Q3", "title": "家蚕", "keywords": ["蚕桑"], "description": "品种"},
    ]
    (folder / "experts.jsonl").write_text("\n".join(json.dumps(e, ensure_ascii=False) for e in experts), encoding="utf-8")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in queries), encoding="utf-8")
    (folder / "qrels.tsv").write_text(
        "query_id\texpert_id\trelevance\nQ1\tE1\t1\nQ1\tE4\t1\nQ2\tE2\t1\nQ3\tE1\t1\n", encoding="utf-8"
    )


def test_eval_json_and_run_file_rescored_independently(tmp_path) -> None:
    bench = tmp_path / "bench"
    make_bench(bench)
    run = tmp_path / "run.trec"
    res = runner.invoke(app, ["eval", str(bench), "--json", "--run", str(run), "--cache", str(tmp_path / "c.db")])
    assert res.exit_code == 0, res.output
    last = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(last) == {"ranker", "bm25", "hub", "queries", "seconds"}
    assert set(last["hub"]) == {"matcher", "bm25", "qrels"} and 0 < last["hub"]["matcher"]["share"] <= 1
    assert last["queries"] == 3
    expected_keys = {"nDCG@10", "MRR", "Recall@10", "Recall@50", "Hit@1", "Hit@10", "MAP@100"}
    assert set(last["ranker"]) == set(last["bm25"]) == expected_keys
    # Q1 and Q2 find their experts first; Q3's judged expert is unrelated: MRR = (1 + 1 + 0) / 3
    assert last["ranker"]["Hit@1"] == pytest.approx(2 / 3, abs=1e-3)
    lines = run.read_text().splitlines()
    assert all(len(ln.split()) == 6 and ln.split()[1] == "Q0" for ln in lines)
    scorer = SHARED / "bench" / "score_run.py"
    if scorer.exists():
        out = subprocess.run([sys.executable, str(scorer), str(bench), str(run)], capture_output=True, text=True, check=True)
        independent = json.loads(out.stdout)
        for k in expected_keys:
            assert independent[k] == pytest.approx(last["ranker"][k], abs=1e-4), k


def test_eval_on_a_folder_that_is_not_a_benchmark(tmp_path) -> None:
    res = runner.invoke(app, ["eval", str(tmp_path)])
    assert res.exit_code == 2
    assert "experts.jsonl is missing" in res.output


def test_console_script_runs_as_a_real_process(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "matcher", "match", "--db", str(tmp_path / "m.db"), "--json", THERMOS],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["matches"]
    assert "Building prefix dict" not in out.stderr, "jieba's start-up chatter must be silenced"
