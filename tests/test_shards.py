"""The sharded kNN vote (matcher/ranking/shards.py): the demo index split into shards by expert in
one process, each shard scoring only its own units, gives exactly the single index's votes."""

from __future__ import annotations

import numpy as np
import pytest

from matcher.engine import Engine
from matcher.models import Document, Expert
from matcher.ranking.aggregate import knn_vote
from matcher.ranking.shards import merge_top, merge_votes, shard_top, shard_voters

from .conftest import THERMOS, demo_demands

TEXTS = [THERMOS, "锂电池BMS均衡策略与SOC估计", "茶叶加工机械化与品质控制", "PLC 控制的五金冲压生产线"]


def splits(n_experts: int, shards: int, how: str, seed: int = 0) -> list[np.ndarray]:
    """Expert positions of each shard: contiguous ranges, or by a hash of the position."""
    if how == "ranges":
        cuts = np.linspace(0, n_experts, shards + 1).astype(int)
        return [np.arange(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    owner = np.random.default_rng(seed).integers(shards, size=n_experts)
    return [np.flatnonzero(owner == s) for s in range(shards)]


def sharded_vote(scores: np.ndarray, index, experts_of_shard: list[np.ndarray], k: int) -> np.ndarray:  # noqa: ANN001
    """Scatter-gather in one process: each shard sees only its own units."""
    lay = index.layout()
    masked = scores if lay.all_alive else scores * lay.unit_alive
    owned = [np.flatnonzero(np.isin(index.unit_expert_, ex)) for ex in experts_of_shard]
    tops = [shard_top(masked[u], index.unit_hash_[u], k) for u in owned]  # round 1, on the shards
    chosen = merge_top(tops, k)  # round 2, on the coordinator
    parts = [shard_voters(masked[u], index.unit_hash_[u], index.unit_expert_[u], u, chosen) for u in owned]
    return merge_votes(parts, len(index.expert_ids_))  # rounds 3 and 4


@pytest.mark.parametrize(("shards", "how"), [(1, "ranges"), (3, "ranges"), (4, "hash"), (7, "hash")])
def test_the_merged_vote_equals_the_single_index_vote(demo_engine: Engine, shards: int, how: str) -> None:
    index = demo_engine.ensure_index().index
    lay = index.layout()
    parts = splits(len(index.expert_ids_), shards, how)
    assert sum(len(p) for p in parts) == len(index.expert_ids_)
    for text in [*TEXTS, *(d.text for d in demo_demands()[:12])]:
        q = demo_engine.query(text)
        words, tfidf = index.words_.score_with((index.words_tfidf_,), q.weights)
        chars = index.chars_.score(q.char_weights())
        units = index.signal_scores(q).units
        for scores in (words, tfidf, chars, np.clip(units.dense, 0, None)):
            for k in (5, 20, index.params.knn_k):
                want = knn_vote(scores, lay, index.unit_expert_, len(index.expert_ids_), k)
                got = sharded_vote(scores, index, parts, k)
                assert np.array_equal(got, want), (text[:10], k)


def test_documents_shared_across_shards_vote_once_per_unit(engine: Engine) -> None:
    paper = Document(title="不锈钢保温杯真空层激光焊接工艺", keywords=("激光焊接", "保温杯"))
    engine.store.upsert_experts([
        Expert(id=f"E{i}", name=f"专家{i}", research_fields=(field,), documents=(paper,) if i < 3 else ())
        for i, field in enumerate(["激光焊接", "真空封装", "焊接检测", "保温杯设计", "不锈钢材料"])])
    index = engine.ensure_index().index
    hashes, counts = np.unique(index.unit_hash_, return_counts=True)
    shared = hashes[counts == 3]  # one paper, three co-authors
    holders = np.unique(index.unit_expert_[index.unit_hash_ == shared[0]])
    assert len(holders) == 3
    parts = [holders[:1], holders[1:2], np.setdiff1d(np.arange(len(index.expert_ids_)), holders[:2])]
    q = engine.query(THERMOS)
    words = index.words_.score(q.weights)
    for k in (1, 2, 5):
        want = knn_vote(words, index.layout(), index.unit_expert_, len(index.expert_ids_), k)
        got = sharded_vote(words, index, parts, k)
        assert np.array_equal(got, want)
    assert (got[holders] > 0).all()  # each co-author's unit votes, whichever shard holds it
