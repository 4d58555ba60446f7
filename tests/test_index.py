"""The sparse indexes against independent implementations, and their persistence."""

from __future__ import annotations

import random

import bm25s
import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from matcher.errors import IndexStateError
from matcher.index import LsaSpace, TermIndex, char_ngrams

WORDS = ["焊接", "激光", "不锈钢", "保温杯", "真空", "电池", "bms", "plc", "sic", "蚕桑", "茶叶", "锂电池", "5g"]


def random_corpus(seed: int, n: int = 60) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(WORDS) for _ in range(rng.randint(1, 25))] for _ in range(n)]


@pytest.mark.parametrize("k1,b", [(1.2, 0.75), (1.5, 0.3), (0.9, 1.0)])
def test_bm25_equals_bm25s_on_the_same_tokens(k1: float, b: float) -> None:
    corpus = random_corpus(1)
    ours = TermIndex("bm25", k1=k1, b=b).fit(corpus)
    ref = bm25s.BM25(method="lucene", k1=k1, b=b)
    ref.index(corpus, show_progress=False)
    rng = random.Random(2)
    for _ in range(25):
        query = [rng.choice(WORDS) for _ in range(rng.randint(1, 6))]
        assert np.allclose(ours.score(query), ref.get_scores(query), rtol=1e-5, atol=1e-6), query


def test_bm25_equals_bm25s_on_real_chinese_tokens(tokenizer) -> None:
    texts = [
        "不锈钢保温杯真空层激光焊接工艺优化", "锂离子电池BMS电池管理系统的SOC估计",
        "电动工具无刷电机控制器设计", "桑蚕品种选育与蚕桑产业链", "智能门锁指纹识别模组的低功耗设计",
        "304不锈钢焊缝晶间腐蚀检测", "光伏组件回收与绿色低碳制造", "中药材种植与有效成分提取",
    ]
    corpus = [tokenizer.tokenize(t) for t in texts]
    ours = TermIndex("bm25").fit(corpus)
    ref = bm25s.BM25(method="lucene", k1=1.2, b=0.75)  # bm25s defaults to k1=1.5
    ref.index(corpus, show_progress=False)
    query = tokenizer.tokenize("保温杯激光焊接合格率低")
    assert np.allclose(ours.score(query), ref.get_scores(query), rtol=1e-5)
    assert int(np.argmax(ours.score(query))) == 0


def test_tfidf_cosine_equals_scikit_learn() -> None:
    corpus = random_corpus(3)
    ours = TermIndex("tfidf").fit(corpus)
    vec = TfidfVectorizer(analyzer=lambda d: d, sublinear_tf=True, smooth_idf=True, norm="l2")
    x = vec.fit_transform(corpus)
    query = ["焊接", "激光", "激光", "plc"]
    q = vec.transform([query])
    expected = (x @ q.T).toarray().ravel()
    from collections import Counter

    weights = {t: 1.0 + np.log(c) for t, c in Counter(query).items()}
    assert np.allclose(ours.score(weights), expected, atol=1e-6)


def test_save_and_load_round_trip_without_pickle(tmp_path) -> None:
    corpus = random_corpus(4)
    ix = TermIndex("bm25").fit(corpus)
    ix.save(tmp_path, "t")
    loaded = TermIndex.load(tmp_path, "t")
    for query in (["焊接"], ["bms", "plc", "焊接"], ["不存在"]):
        assert np.array_equal(ix.score(query), loaded.score(query))
    assert loaded.vocabulary_ == ix.vocabulary_
    # plain files only: JSON + npz loaded with allow_pickle=False
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "t.data.npy", "t.indices.npy", "t.indptr.npy", "t.json", "t.npz"]
    # Memory-mapped: the base segment stays in its files, and scores are the same.
    mapped = TermIndex.load(tmp_path, "t", mmap=True)
    assert isinstance(mapped._base.data, np.memmap) and isinstance(mapped._base.indices, np.memmap)
    for query in (["焊接"], ["bms", "plc", "焊接"]):
        assert np.array_equal(ix.score(query), mapped.score(query))
    assert np.allclose(mapped.sibling("tfidf").score(["焊接"]), TermIndex("tfidf").fit(corpus).score(["焊接"]))


def test_lsa_round_trip(tmp_path) -> None:
    tfidf = TermIndex("tfidf").fit(random_corpus(5))
    lsa = LsaSpace(8).fit(tfidf)
    lsa.save(tmp_path, "lsa")
    again = LsaSpace.load(tmp_path, "lsa")
    assert np.allclose(lsa.embeddings_, again.embeddings_)
    assert np.allclose(np.linalg.norm(again.embeddings_, axis=1), 1.0, atol=1e-5)


def test_unfitted_and_string_inputs_are_refused() -> None:
    with pytest.raises(IndexStateError, match="not fitted"):
        TermIndex().score(["a"])
    with pytest.raises(ValueError, match="single string"):
        TermIndex().fit("不锈钢保温杯")
    with pytest.raises(ValueError, match="tokenize it first"):
        TermIndex().fit([["a"]]).score("a b")


def test_unknown_terms_score_zero() -> None:
    ix = TermIndex().fit([["a", "b"], ["c"]])
    assert ix.score(["zzz"]).tolist() == [0.0, 0.0]
    assert ix.score({}).tolist() == [0.0, 0.0]


def test_char_ngrams_stay_inside_runs() -> None:
    assert char_ngrams("激光焊接 plc") == ["激光", "光焊", "焊接", "激光焊", "光焊接", "plc"]
    assert char_ngrams("钢") == ["钢"]
    assert char_ngrams("") == []
