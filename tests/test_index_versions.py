"""Caches of an index are keyed by the version of its structure: an index queried, then updated or
compacted, then queried again, with every optional setting on, answers as a freshly loaded copy
of itself does (whose caches are empty). Two IndexErrors came from caches that outlived the
structure they were made for: the pruned path's canonical units after `updated()` (pruned.py:44)
and the LSA term vectors after `compacted()` (related_terms)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matcher.rank import ExpertIndex, Query
from matcher.ranking.state import IndexCaches

from .conftest import THERMOS, demo_experts

ALL_ON = {
    "weights": {"bm25": 1.0, "tfidf": 1.0, "profile": 0.4, "fields": 0.3, "chars": 2.0, "lsa": 0.5,
                "prior": 0.2},
    "max_postings": 3000, "semantic_exhaustive": 150, "lsa_dims": 16,
}
TEXTS = [THERMOS, "锂电池BMS均衡策略与SOC估计", "不锈钢锅底用久了发黑起斑，想找做涂层的专家"]


def answers(index: ExpertIndex, tokenizer) -> list[tuple]:  # noqa: ANN001
    """Every query's fused scores, its page's explanations and the related terms of its words."""
    out = []
    for text in TEXTS:
        q = Query.build(text, tokenizer)
        scored = index.score(q)
        page = [int(i) for i in np.argsort(-scored.total, kind="stable")[:5] if scored.total[i] > 0]
        explained = [e.to_dict() for e in index.explain_many(page, q, scored)]
        related = index.related_terms(sorted(q.weights.items()), 5)
        out.append((scored.total.tolist(), page, explained, related))
    return out


def reloaded(index: ExpertIndex, folder: Path) -> ExpertIndex:
    index.save(folder)
    return ExpertIndex.load(folder)


@pytest.mark.parametrize(("pruning", "slots"), [(True, 0), (False, 2)])
def test_an_index_queried_across_updates_and_compaction_answers_as_a_fresh_copy(tmp_path, tokenizer, pruning,
                                                                               slots) -> None:
    experts = demo_experts()
    index = ExpertIndex(**ALL_ON, topk_pruning=pruning, diversify_slots=slots).fit(experts[:-10], tokenizer)
    first = answers(index, tokenizer)  # fills every cache of this version
    assert first == answers(reloaded(index, tmp_path / "a"), tokenizer)

    updated = index.updated(experts[-10:], [e.id for e in experts[:30]], tokenizer)
    assert updated.version_ != index.version_
    after_update = answers(updated, tokenizer)  # the pruned path raised IndexError here
    assert after_update == answers(reloaded(updated, tmp_path / "b"), tokenizer)
    assert after_update != first  # 30 experts fewer, 10 more: the answers moved

    compacted = updated.compacted()
    assert compacted.version_ not in (index.version_, updated.version_)
    after_compaction = answers(compacted, tokenizer)  # related_terms raised IndexError here
    assert after_compaction == answers(reloaded(compacted, tmp_path / "c"), tokenizer)
    assert answers(index, tokenizer) == first  # the old index still answers as it did


def test_caches_serve_only_their_version_and_keep_the_two_latest() -> None:
    caches = IndexCaches()
    made: list[int] = []

    def make(v: int) -> int:
        made.append(v)
        return v * 10

    assert caches.get(1, "x", lambda: make(1)) == 10
    assert caches.get(1, "x", lambda: make(99)) == 10  # hit
    assert caches.get(2, "x", lambda: make(2)) == 20  # another version: made again
    assert caches.get(3, "x", lambda: make(3)) == 30
    assert caches.get(1, "x", lambda: make(1)) == 10  # version 1 was dropped: made again
    assert made == [1, 2, 3, 1]
