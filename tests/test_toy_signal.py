"""A signal defined here, in the test file, and its weight in the settings are all it takes: the
engine fits it, scores with it, follows an update, saves and loads it, and explains it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from matcher.config import Settings
from matcher.engine import Engine
from matcher.models import Document, Expert
from matcher.rank import ExpertIndex, ExpertRows, Scoring
from matcher.ranking import signal

from .conftest import THERMOS


class ToySettings(Settings):
    weight_patents: float = 3.0


@pytest.fixture()
def patents() -> Iterator[type]:
    """The toy: an expert's number of patents, a bonus for inventors (reorders, never admits)."""

    class Patents(ExpertRows):
        name = "patents"
        evidence = False

        def features(self, experts: Sequence[Expert], tokens: object) -> np.ndarray:
            patents = [sum(d.kind == "patent" for d in e.documents) for e in experts]
            return np.asarray(patents, dtype=np.float32)

        def score(self, ctx: Scoring, part: np.ndarray) -> np.ndarray:
            return np.log1p(part)

    yield Patents
    signal.unregister("patents")


def patent_counts(engine: Engine) -> dict[str, int]:
    return {e.id: sum(d.kind == "patent" for d in e.documents) for e in engine.store.iter_experts()}


def test_a_toy_signal_is_fitted_scored_updated_saved_loaded_and_explained(patents, tmp_path: Path,
                                                                          tokenizer) -> None:
    settings = ToySettings(db=tmp_path / "m.db", encoder="none", weight_dense=0.0)
    with Engine(settings, tokenizer=tokenizer) as engine:
        engine.load_demo()
        index = engine.ensure_index().index
        assert index.weights["patents"] == 3.0
        counts = patent_counts(engine)
        # fitted: one row per expert, what `features` says
        part = index.part("patents")
        assert [int(part[index.positions()[i]]) for i in counts] == list(counts.values())
        assert sum(counts.values()) > 0
        # scored and explained: each match carries its value, and inventors move up
        with_toy = engine.match(THERMOS, top_k=10)
        for m in with_toy:
            assert m.explanation.signals["patents"] == pytest.approx(np.log1p(counts[m.expert.id]))
        plain = index.with_params(weights={**index.weights, "patents": 0.0})
        q = engine.query(THERMOS)
        rank_plain = [index.expert_ids_[i] for i in np.argsort(-plain.score(q).total, kind="stable")[:10]]
        rank_toy = [m.expert.id for m in with_toy]
        assert rank_plain != rank_toy
        before = {e: rank_plain.index(e) if e in rank_plain else 99 for e in rank_toy}
        moved_up = [e for e in rank_toy if rank_toy.index(e) < before[e]]
        assert any(counts[e] for e in moved_up)
        # updated: a new inventor gets their row at once
        inventor = Expert(id="INV", name="发明人", research_fields=("激光焊接",),
                          documents=tuple(Document(title=f"一种保温杯激光焊接装置{i}", kind="patent",
                                                   keywords=("激光焊接",)) for i in range(4)))
        engine.upsert_experts([inventor])
        updated = engine.ensure_index().index
        assert updated.part("patents")[updated.positions()["INV"]] == 4
        after = engine.match(THERMOS, top_k=20)
        assert any(m.expert.id == "INV" and m.explanation.signals["patents"] == pytest.approx(np.log1p(4))
                   for m in after)
    # saved (base and delta) and loaded by another engine
    with Engine(settings, tokenizer=tokenizer) as again:
        loaded = again.ensure_index().index
        assert np.array_equal(loaded.part("patents"), updated.part("patents"))
        direct = ExpertIndex.load(settings.resolved_index_dir)
        assert np.array_equal(direct.part("patents"), updated.part("patents"))
        assert [(m.expert.id, m.score) for m in again.match(THERMOS, top_k=20)] == \
               [(m.expert.id, m.score) for m in after]
