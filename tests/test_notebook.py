"""The evaluation notebook runs (fast mode: 60 queries) and reports every ranker it promises."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from .conftest import BENCH

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(not (BENCH.parent / "enterprise" / "experts.jsonl").exists(),
                    reason="the shared enterprise benchmark is not beside the checkout")
def test_evaluation_notebook_executes_in_fast_mode(monkeypatch, tmp_path) -> None:
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "evaluation.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    monkeypatch.setenv("EVAL_FAST", "1")
    monkeypatch.setenv("MATCHER_BENCH_ROOT", str(BENCH.parent))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the eval cache: not the developer's home
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    text = "\n".join(
        "".join(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "FAST (words only)" in text
    for row in ("fusion (defaults)", "BM25 reference (same tokens)", "bm25 alone", "fusion - lsa",
                "fusion - thesaurus", "fusion - popularity discount", "worst ratio to the best reference",
                "recognised:", "coverage@3", "before:", "after: ", "full-weight single characters outside",
                "shipped:", "强 rel", "reaches its ceiling"):
        assert row in text, row
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3, "three plots: the ablation against the references, each signal alone, Recall@k"
    assert os.environ["EVAL_FAST"] == "1"
