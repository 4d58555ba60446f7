"""Serving while the index is rebuilt elsewhere: an engine adopts an index saved by another process
(`Engine.follow_saved`, `rebuild_elsewhere`), and `matcher serve --workers N` serves from several
processes that share the saved index and follow writes and rebuilds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from matcher.config import Settings
from matcher.engine import Engine, settings_env
from matcher.models import Document, Expert

from .conftest import THERMOS, make_settings

ROOT = Path(__file__).resolve().parents[1]
KEY = "serving-test-key-1-502eb36643a297"


def page(engine: Engine, text: str = THERMOS) -> list[tuple[str, float]]:
    return [(m.expert.id, round(m.score, 6)) for m in engine.match(text, top_k=10)]


def test_an_engine_adopts_the_index_another_engine_rebuilt(tmp_path: Path, tokenizer) -> None:
    serving = Engine(make_settings(tmp_path), tokenizer=tokenizer)
    serving.live.FOLLOW_EVERY = float("inf")  # no background adoption: this test adopts by hand
    serving.load_demo()
    before = serving.ensure_index().index.base_id_
    expected = page(serving)
    builder = Engine(make_settings(tmp_path), tokenizer=tokenizer)  # `matcher index`, as another process
    rebuilt = builder.rebuild()
    assert rebuilt.base_id_ != before and serving.saved_base_id() == rebuilt.base_id_
    assert serving.ensure_index().index.base_id_ == before  # the loaded index serves meanwhile
    assert serving.follow_saved()
    assert serving.ensure_index().index.base_id_ == rebuilt.base_id_
    assert page(serving) == expected == page(builder)
    assert not serving.follow_saved()  # nothing new to adopt
    builder.close()
    serving.close()


def test_a_write_made_after_the_rebuild_is_kept_when_adopting(tmp_path: Path, tokenizer) -> None:
    serving = Engine(make_settings(tmp_path), tokenizer=tokenizer)
    serving.live.FOLLOW_EVERY = float("inf")
    serving.load_demo()
    serving.ensure_index()
    builder = Engine(make_settings(tmp_path), tokenizer=tokenizer)
    builder.rebuild()
    doc = Document(title="真空保温杯激光焊接密封工艺", keywords=("激光焊接", "保温杯"))
    builder.store.upsert_experts([Expert(id="NEWX", name="新专家", research_fields=("激光焊接",),
                                         documents=(doc,))])
    assert serving.follow_saved()  # the saved index predates the write: brought up to the store
    assert "NEWX" in [m.expert.id for m in serving.match("保温杯激光焊接", top_k=20)]
    builder.close()
    serving.close()


def test_ensure_index_adopts_in_the_background(tmp_path: Path, tokenizer) -> None:
    serving = Engine(make_settings(tmp_path), tokenizer=tokenizer)
    serving.load_demo()
    serving.ensure_index()
    builder = Engine(make_settings(tmp_path), tokenizer=tokenizer)
    target = builder.rebuild().base_id_
    serving.live.FOLLOW_EVERY = 0.0
    deadline = time.monotonic() + 30
    while serving.ensure_index().index.base_id_ != target:
        assert time.monotonic() < deadline, "the saved index was never adopted"
        time.sleep(0.05)
    builder.close()
    serving.close()


def test_rebuild_elsewhere_runs_matcher_index_in_another_process(tmp_path: Path, tokenizer) -> None:
    serving = Engine(make_settings(tmp_path, encoder="none", weight_dense=0.0), tokenizer=tokenizer)
    serving.live.FOLLOW_EVERY = float("inf")
    serving.load_demo()
    before = serving.ensure_index().index.base_id_
    expected = page(serving)
    serving.rebuild_elsewhere(timeout=300)
    after = serving.ensure_index().index.base_id_
    assert after != before and after == serving.saved_base_id()
    assert page(serving) == expected
    serving.close()


def test_settings_travel_to_a_child_process_unchanged(tmp_path: Path) -> None:
    s = Settings(db=tmp_path / "x.db", weight_dense=0.25, api_keys=("a", "b"), cors_origins=("http://x",),
                 topk_pruning=True)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MATCHER_")}, **settings_env(s)}
    code = ("from matcher.config import Settings; s = Settings(); print(s.db, s.weight_dense, "
            "[k.get_secret_value() for k in s.api_keys], s.cors_origins, s.topk_pruning)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str((tmp_path / "x.db").resolve()), "0.25", "['a',", "'b']", "('http://x',)",
                                  "True"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


@pytest.mark.slow
def test_serve_with_workers_shares_the_index_and_follows_writes_and_rebuilds(tmp_path: Path) -> None:
    port = _port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MATCHER_DB": str(tmp_path / "w.db"),
           "MATCHER_API_KEYS": KEY, "MATCHER_ENCODER": "none", "MATCHER_WEIGHT_DENSE": "0"}
    cmd = [sys.executable, "-m", "matcher", "serve", "--port", str(port), "--workers", "2"]
    quiet = subprocess.DEVNULL
    server = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=quiet, stderr=quiet)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, "the server exited"
            try:
                if httpx.get(url + "/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        time.sleep(1.0)  # both workers up
        assert len(_children(server.pid)) >= 2  # two worker processes under uvicorn's supervisor
        with httpx.Client(base_url=url, timeout=60) as http:
            first = http.post("/api/v1/match", json={"text": THERMOS}).json()["data"]
            assert first
            # a write through one worker is seen by every worker (each follows the store)
            res = http.post("/api/v1/experts", headers={"X-API-Key": KEY}, json={
                "id": "WORKERS1", "name": "工人专家", "research_fields": ["保温杯真空激光焊接"],
                "documents": [{"kind": "paper", "title": "不锈钢保温杯真空层激光焊接气孔控制"}]})
            assert res.status_code == 201
            for _ in range(8):
                got = http.post("/api/v1/match", json={"text": THERMOS, "top_k": 20}).json()["data"]
                ids = [r["expert"]["id"] for r in got]
                assert "WORKERS1" in ids
            # an index rebuilt by another process: answers go on, and the workers adopt it (a write
            # after the adoption does not write the old base back; workers save no deltas)
            errors: list[str] = []
            stop = threading.Event()

            def ask() -> None:
                with httpx.Client(base_url=url, timeout=60) as h:
                    while not stop.is_set():
                        r = h.post("/api/v1/match", json={"text": THERMOS})
                        if r.status_code != 200 or not r.json()["data"]:
                            errors.append(str(r.status_code))

            threads = [threading.Thread(target=ask) for _ in range(4)]
            for t in threads:
                t.start()
            done = subprocess.run([sys.executable, "-m", "matcher", "index"], env=env, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=300, check=False)
            time.sleep(3.0)
            stop.set()
            for t in threads:
                t.join(60)
            assert done.returncode == 0, done.stderr
            assert not errors
            state = json.loads((tmp_path / "w.db.index" / "state.json").read_text(encoding="utf-8"))
            for i in range(4):
                res = http.post("/api/v1/experts", headers={"X-API-Key": KEY}, json={
                    "id": f"AFTER{i}", "name": "后来专家", "research_fields": ["激光焊接"]})
                assert res.status_code == 201
            now = json.loads((tmp_path / "w.db.index" / "state.json").read_text(encoding="utf-8"))
            assert now == state  # the rebuilt index, untouched by the workers' writes
            for _ in range(4):  # which every worker serves
                got = http.post("/api/v1/match", json={"text": "激光焊接", "top_k": 50}).json()["data"]
                assert {f"AFTER{j}" for j in range(4)} <= {r["expert"]["id"] for r in got}
    finally:
        server.terminate()
        server.wait(60)


def test_saved_vectors_are_memory_mapped_and_rank_alike(tmp_path: Path, tokenizer) -> None:
    first = Engine(make_settings(tmp_path), tokenizer=tokenizer)
    first.load_demo()
    built = first.rebuild()
    assert built.dense_ is not None and built.dense_.complete
    assert (first.index_dir / "dense" / "units.npy").exists()
    expected = page(first)
    second = Engine(make_settings(tmp_path), tokenizer=tokenizer)  # another process serving it
    index = second.ensure_index().index

    assert isinstance(index.dense_.units, np.memmap)  # mapped, not assembled from the cache
    assert np.array_equal(np.asarray(index.dense_.units), built.dense_.units)
    assert page(second) == expected
    doc = Document(title="真空保温杯激光焊接密封工艺", keywords=("激光焊接", "保温杯"))
    second.upsert_experts([Expert(id="MM1", name="新专家", research_fields=("激光焊接",),
                                  documents=(doc,))])
    assert "MM1" in [m.expert.id for m in second.match("保温杯激光焊接", top_k=20)]
    # vectors of another index are not taken: a rebuilt base with other units assembles its own
    assert second.ensure_index().index.dense_.units.shape[0] == len(second.ensure_index().index.unit_dkey_)
    second.close()
    first.close()


def test_attaching_vectors_copies_the_matrix_only_when_something_is_found() -> None:
    from matcher import dense

    rng = np.random.default_rng(1)
    keys = rng.integers(0, 256, size=(40, 16), dtype=np.uint8)
    table = {k.tobytes(): rng.standard_normal(8).astype(np.float32) for k in keys[:30]}
    v = dense.assemble("m", keys, lambda ks: {k: table[k] for k in ks if k in table})
    assert v is not None and v.units_ok.sum() == 30
    nothing_new = v.filled(keys, keys[:0], lambda ks: {k: table[k] for k in ks if k in table})
    assert nothing_new.units is v.units  # no copy of the matrix for nothing
    table.update({k.tobytes(): rng.standard_normal(8).astype(np.float32) for k in keys[30:]})
    later = v.filled(keys, keys[:0], lambda ks: {k: table[k] for k in ks if k in table})
    assert later.units is not v.units and later.complete and v.units_ok.sum() == 30  # v untouched
    want = dense.assemble("m", keys, lambda ks: {k: table[k] for k in ks if k in table}, mean=v.mean)
    assert np.array_equal(later.units, want.units)
    grown = v.extended(45, 0)
    assert grown.units.shape[0] == 45 and not grown.units_ok[40:].any()
