"""What makes the engine scale, proved on small data against plain reference implementations:
the token cache and parallel tokenising, memory-mapped loading, the query work budget, the lazy
best-first order, the candidate search behind the kNN vote, batched explanations."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.engine import Engine
from matcher.rank import ExpertIndex, Query, best_first, top_candidates
from matcher.ranking.aggregate import knn_vote
from matcher.tokens import TokenSource

from .conftest import THERMOS, demo_demands, demo_experts, make_settings

TEXTS = ["不锈钢保温杯真空层激光焊接", "锂电池BMS均衡策略", "蚕桑病虫害绿色防控", "不锈钢保温杯真空层激光焊接",
         "PLC 控制的五金冲压生产线", ""]


class CountingStore:
    """The two token-cache methods of `matcher.store.Store`, in memory, counting lookups."""

    def __init__(self) -> None:
        self.rows: dict[str, list[str]] = {}

    def cached_tokens(self, keys):
        return {k: self.rows[k] for k in keys if k in self.rows}

    def cache_tokens(self, entries):
        self.rows.update(entries)


def test_token_source_tokenises_each_distinct_text_once_and_caches_it(tokenizer) -> None:
    calls: list[str] = []

    def tok(text: str) -> list[str]:
        calls.append(text)
        return tokenizer(text)

    store = CountingStore()
    src = TokenSource(tok, fingerprint="v1", store=store, processes=1)
    first = src.many(TEXTS)
    assert first == [tokenizer(t) for t in TEXTS]
    assert sorted(calls) == sorted(set(TEXTS))  # the repeated text once
    calls.clear()
    again = TokenSource(tok, fingerprint="v1", store=store, processes=1)
    assert again.many(TEXTS) == first and calls == []  # all from the cache
    assert again.stats["cached"] == len(set(TEXTS)) and again.stats["tokenised"] == 0
    # another dictionary (fingerprint): nothing cached applies
    other = TokenSource(tok, fingerprint="v2", store=store, processes=1)
    other.many(TEXTS[:2])
    assert sorted(calls) == sorted(TEXTS[:2])


def test_parallel_tokenising_equals_serial(tokenizer) -> None:
    texts = [f"{t}{i}号产线的焊接与检测" for i in range(60) for t in TEXTS[:3]]
    serial = TokenSource(tokenizer, processes=1).many(texts)
    parallel = TokenSource(tokenizer, processes=2, parallel_min_chars=10)
    assert parallel.many(texts) == serial


def test_a_rebuild_reuses_the_token_cache_in_the_database(tmp_path, tokenizer) -> None:
    engine = Engine(make_settings(tmp_path), tokenizer=tokenizer)
    engine.load_demo()
    first = engine.rebuild()
    assert engine.tokens.stats["tokenised"] > 0
    fresh = Engine(make_settings(tmp_path), tokenizer=tokenizer)  # a new process, as after a restart
    second = fresh.rebuild()
    assert fresh.tokens.stats["tokenised"] == 0 and fresh.tokens.stats["cached"] > 0
    q = fresh.query(THERMOS)
    assert np.array_equal(first.score(q, {"bm25": 1.0}).total, second.score(q, {"bm25": 1.0}).total)
    fresh.close()
    engine.close()


def test_a_loaded_index_is_memory_mapped_and_scores_the_same(tmp_path, tokenizer) -> None:
    index = ExpertIndex(lsa_dims=16).fit(demo_experts(), tokenizer)
    index.save(tmp_path / "ix")
    mapped = ExpertIndex.load(tmp_path / "ix")
    read = ExpertIndex.load(tmp_path / "ix", mmap=False)
    assert isinstance(mapped.words_._base.data, np.memmap)
    assert isinstance(mapped.part("lsa").embeddings_, np.memmap)
    assert not isinstance(read.words_._base.data, np.memmap)
    for d in demo_demands()[:10]:
        q = Query.build(d.text, tokenizer)
        a, b, c = index.score(q), mapped.score(q), read.score(q)
        assert np.array_equal(a.total, b.total) and np.array_equal(a.total, c.total)


def test_a_large_index_scores_characters_on_a_second_thread_with_the_same_result(tokenizer, monkeypatch) -> None:
    import matcher.ranking.scoring as rank

    index = ExpertIndex(lsa_dims=16).fit(demo_experts(), tokenizer)
    queries = [Query.build(d.text, tokenizer) for d in demo_demands()[:8]]
    serial = [index.signal_scores(q).signals for q in queries]
    monkeypatch.setattr(rank, "PARALLEL_MIN_UNITS", 0)  # the demo corpus counts as large
    submitted: list[str] = []
    pool = rank.scoring_pool()

    def spy():
        submitted.append(threading.current_thread().name)
        return pool

    monkeypatch.setattr(rank, "scoring_pool", spy)
    threaded = [index.signal_scores(q).signals for q in queries]
    assert len(submitted) == len(queries)  # every query handed its characters to the pool
    for a, b in zip(serial, threaded, strict=True):
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(s["chars"].any() for s in threaded)


def test_a_loaded_index_takes_its_tfidf_norms_from_the_files_not_from_every_entry(tmp_path, tokenizer,
                                                                                  monkeypatch) -> None:
    import matcher.index.terms as index_module

    experts = demo_experts()
    index = ExpertIndex(lsa_dims=16).fit(experts[:-5], tokenizer)
    index.save(tmp_path / "ix")
    updated = index.updated(experts[-5:], [experts[0].id], tokenizer)
    passes: list[int] = []
    real = index_module._sums
    monkeypatch.setattr(index_module, "_sums", lambda m, L: (passes.append(m.shape[0]), real(m, L))[1])
    for saved in (index, updated):
        if saved is updated:
            updated.save_delta(tmp_path / "ix")
        loaded = ExpertIndex.load(tmp_path / "ix")
        assert passes == []  # no pass over the count matrices
        for name in ("words_tfidf_", "chars_"):
            assert np.array_equal(getattr(loaded, name)._norm, getattr(saved, name)._norm)
        q = Query.build(THERMOS, tokenizer)
        assert np.array_equal(loaded.score(q).total, saved.score(q).total)


def test_the_work_budget_keeps_the_most_informative_terms(tokenizer) -> None:
    index = ExpertIndex(lsa_dims=16).fit(demo_experts(), tokenizer)
    q = Query.build("不锈钢保温杯真空层激光焊接合格率低，寻求焊接工艺改进方案，技术研究与应用", tokenizer)
    units = index.words_
    ids, ws = units.query_vector(q.weights)
    postings = int(units.df_[ids].sum())
    # A budget above the query's postings changes nothing.
    assert np.array_equal(units.score(q.weights, max_postings=postings), units.score(q.weights))
    # A smaller one scores exactly the terms with the highest weight x idf that fit in it.
    budget = postings // 3
    order = np.argsort(-(ws * units.idf_[ids]), kind="stable")
    fit = order[np.cumsum(units.df_[ids][order]) <= budget]
    kept = {units.terms_[ids[j]]: q.weights[units.terms_[ids[j]]] for j in fit}
    assert 0 < len(kept) < len(ids)
    assert np.allclose(units.score(q.weights, max_postings=budget), units.score(kept))


def test_the_semantic_signal_of_a_large_index_rescores_the_lexical_candidates(tokenizer) -> None:
    full = ExpertIndex(lsa_dims=16, weights={"bm25": 1, "lsa": 1}).fit(demo_experts(), tokenizer)
    q = Query.build(THERMOS, tokenizer)
    exact = full.signal_scores(q).signals["lsa"]
    # "large": fewer units than this are scanned exhaustively
    two_stage = full.with_params(semantic_exhaustive=10).signal_scores(q).signals["lsa"]
    # the neighbourhood of a thermos-welding demand is lexical: the two agree on the best experts
    top = lambda v: set(np.argsort(-v, kind="stable")[:5])  # noqa: E731
    assert top(exact) == top(two_stage)
    assert (two_stage <= exact + 1e-5).all() or np.count_nonzero(two_stage) <= np.count_nonzero(exact)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-3, 6), max_size=300), st.integers(1, 7))
def test_best_first_is_a_stable_sort_of_the_positive_scores(values, chunk) -> None:
    x = np.asarray(values, dtype=np.float32)
    expected = [int(i) for i in np.argsort(-x, kind="stable") if x[i] > 0]
    assert list(best_first(x, chunk=chunk)) == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 5, width=32), min_size=1, max_size=3000), st.integers(1, 40))
def test_top_candidates_hold_the_m_best(values, m) -> None:
    x = np.asarray(values, dtype=np.float32)
    cand = top_candidates(x, m)
    assert (x[cand] > 0).all()
    positive = np.sort(x[x > 0])[::-1]
    if len(positive):
        kth = positive[min(m, len(positive)) - 1]
        assert set(np.flatnonzero(x >= kth)) <= set(cand.tolist())


def reference_vote(index: ExpertIndex, scores: np.ndarray) -> np.ndarray:
    """The kNN vote written plainly: documents are units of equal content; the k documents with
    the best score each add every one of their units' scores to the unit's expert."""
    doc_score: dict[int, float] = {}
    for u, s in enumerate(scores):
        if s > 0:
            h = int(index.unit_hash_[u])
            doc_score[h] = max(doc_score.get(h, 0.0), float(s))
    best = set(sorted(doc_score, key=lambda h: -doc_score[h])[: index.params.knn_k])
    out = np.zeros(len(index.expert_ids_), dtype=np.float64)
    for u, s in enumerate(scores):
        if s > 0 and int(index.unit_hash_[u]) in best:
            out[index.unit_expert_[u]] += s
    return out


@pytest.mark.parametrize("k", [1, 5, 40])
def test_the_knn_vote_equals_a_plain_reference(tokenizer, k) -> None:
    experts = demo_experts()
    # co-written documents: every seventh expert also holds the first expert's documents
    shared = [replace(e, documents=e.documents + experts[0].documents) if i % 7 == 3 else e
              for i, e in enumerate(experts)]
    index = ExpertIndex(knn_k=k, lsa_dims=16).fit(shared, tokenizer)
    assert len(np.unique(index.unit_hash_)) < len(index.unit_hash_)
    rng = np.random.default_rng(k)
    for _ in range(5):
        scores = np.where(rng.random(len(index.unit_expert_)) < 0.6, 0.0,
                          rng.random(len(index.unit_expert_))).astype(np.float32)
        vote = knn_vote(scores, index.layout(), index.unit_expert_, len(index.expert_ids_),
                        index.params.knn_k)
        assert np.allclose(vote, reference_vote(index, scores), rtol=1e-5)


def test_explaining_many_equals_explaining_each(tokenizer) -> None:
    index = ExpertIndex(lsa_dims=16).fit(demo_experts(), tokenizer)
    q = Query.build(THERMOS, tokenizer)
    scored = index.score(q)
    top = [int(i) for i in np.argsort(-scored.total, kind="stable")[:8]]
    many = index.explain_many(top, q, scored)
    assert many[0].evidence  # the best expert's documents are cited
    for expert, expl in zip(top, many, strict=True):
        # reference: the units' rows of the whole BM25 weight matrix, term by term
        units = [u for u in np.flatnonzero(index.unit_expert_ == expert) if scored.unit_scores[u] > 0]
        vocab = index.words_.vocabulary_
        rows = index.words_.weighted(units)
        weight: dict[str, float] = {}
        for t in q.weights:
            if t in vocab and (v := float(rows[:, vocab[t]].sum())) > 0:
                weight[t] = v
        assert set(expl.terms) == set(weight)
        assert np.allclose([weight[t] for t in expl.terms], sorted(weight.values(), reverse=True), rtol=1e-5)
        best = max(units, key=lambda u: scored.unit_scores[u])
        assert expl.evidence[0].text == index.unit_text_[best]
