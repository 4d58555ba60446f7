"""The demo corpus ranked through every door (match, a stored demand, the batch, a team, reverse
matching, a visit plan) under three configurations gives the rankings recorded in
tests/golden/demo_runs: a refactoring moves no expert, no score (to six decimals, as a TREC run
file) and no explanation. `python -m tests.golden_runs` rewrites the files, for a change meant to
move rankings."""

from __future__ import annotations

import json

import pytest

from . import golden_runs


@pytest.mark.parametrize("config", list(golden_runs.CONFIGS))
def test_rankings_equal_the_golden_runs(config: str) -> None:
    want = golden_runs.read(config)
    got = golden_runs.compute(config)
    assert len(got) == len(want), f"{config}: {len(got)} records, the golden run has {len(want)}"
    differ = []
    for g, w in zip(got, want, strict=True):
        if g != w:
            gr, wr = json.loads(g), json.loads(w)
            differ.append((wr.get("path"), wr.get("demand") or wr.get("expert"), gr, wr))
    if differ:
        path, key, gr, wr = differ[0]
        first = next(k for k in wr if gr.get(k) != wr.get(k))
        pytest.fail(f"{config}: {len(differ)} of {len(want)} records differ; first {path} {key}, "
                    f"field {first!r}:\n got  {json.dumps(gr.get(first), ensure_ascii=False)[:600]}\n"
                    f" want {json.dumps(wr.get(first), ensure_ascii=False)[:600]}")
