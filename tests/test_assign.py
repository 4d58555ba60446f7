"""The joint assignment against references: brute force, networkx's min-cost flow, and greedy."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher import assign
from matcher.assign import greedy, rank_weights, solve


def random_instance(rng: np.random.Generator, n_d: int, n_e: int, density: float):
    pairs = [(d, e) for d in range(n_d) for e in range(n_e) if rng.random() < density]
    d = np.array([p[0] for p in pairs], dtype=np.int64)
    e = np.array([p[1] for p in pairs], dtype=np.int64)
    w = np.round(rng.random(len(pairs)) * 3, 3)
    return d, e, w


def feasible(d, e, chosen, top, cap) -> bool:
    return (np.bincount(d[chosen], minlength=1).max(initial=0) <= top
            and np.bincount(e[chosen], minlength=1).max(initial=0) <= cap)


def brute_force(d, e, w, top, cap) -> float:
    best = 0.0
    for mask in itertools.product((False, True), repeat=len(w)):
        chosen = np.array(mask, dtype=bool)
        if feasible(d, e, chosen, top, cap):
            best = max(best, float(w[chosen].sum()))
    return best


def min_cost_flow_optimum(d, e, w, top, cap, scale: int = 1000) -> float:
    """Source -> demand (capacity top) -> expert (1 per edge) -> sink (capacity cap), integer costs;
    a free source -> sink arc lets the flow skip edges that are not worth taking."""
    g = nx.DiGraph()
    n = len(w)
    g.add_node("s", demand=-n)
    g.add_node("t", demand=n)
    g.add_edge("s", "t", capacity=n, weight=0)
    for di in set(d.tolist()):
        g.add_edge("s", ("d", di), capacity=top, weight=0)
    for ei in set(e.tolist()):
        g.add_edge(("e", ei), "t", capacity=cap, weight=0)
    for di, ei, wi in zip(d.tolist(), e.tolist(), w.tolist(), strict=True):
        g.add_edge(("d", di), ("e", ei), capacity=1, weight=-round(wi * scale))
    flow = nx.min_cost_flow(g)
    return sum(w[i] for i, (di, ei) in enumerate(zip(d.tolist(), e.tolist(), strict=True))
               if flow[("d", di)][("e", ei)] == 1)


@pytest.mark.parametrize("seed", range(25))
def test_small_instances_equal_brute_force_and_beat_greedy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    d, e, w = random_instance(rng, n_d=int(rng.integers(1, 5)), n_e=int(rng.integers(1, 5)), density=0.7)
    if len(w) > 13:  # keep brute force at most 2^13 subsets
        d, e, w = d[:13], e[:13], w[:13]
    top, cap = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    lp = solve(d, e, w, per_demand=top, per_expert=cap)
    gr = greedy(d, e, w, per_demand=top, per_expert=cap)
    assert feasible(d, e, lp.chosen, top, cap)
    assert lp.objective == pytest.approx(brute_force(d, e, w, top, cap), abs=1e-9)
    assert lp.objective >= gr.objective - 1e-9
    assert lp.method in ("lp", "empty")


@pytest.mark.parametrize("seed", range(5))
def test_medium_instances_equal_networkx_min_cost_flow(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    d, e, w = random_instance(rng, n_d=40, n_e=25, density=0.3)
    top, cap = 4, 2  # 160 slots against 50 places: the capacities bind
    lp = solve(d, e, w, per_demand=top, per_expert=cap)
    assert feasible(d, e, lp.chosen, top, cap)
    assert lp.objective == pytest.approx(min_cost_flow_optimum(d, e, w, top, cap), abs=1e-9)
    assert lp.objective >= greedy(d, e, w, per_demand=top, per_expert=cap).objective - 1e-9


def test_greedy_first_come_loses_where_the_joint_solution_does_not() -> None:
    # Demand 0 likes experts A (0.9) and B (0.8); demand 1 can only use A (0.85). One each.
    d, e, w = np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([0.9, 0.8, 0.85])
    gr = greedy(d, e, w, per_demand=1, per_expert=1)
    lp = solve(d, e, w, per_demand=1, per_expert=1)
    assert gr.chosen.tolist() == [True, False, False] and gr.objective == pytest.approx(0.9)
    assert lp.chosen.tolist() == [False, True, True] and lp.objective == pytest.approx(1.65)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.floats(0.01, 5.0)), min_size=1, max_size=30,
             unique_by=lambda t: (t[0], t[1])),
    st.integers(1, 4),
    st.integers(1, 3),
)
def test_the_answer_is_integral_feasible_and_never_worse_than_greedy(edges, top, cap) -> None:
    d = np.array([t[0] for t in edges])
    e = np.array([t[1] for t in edges])
    w = np.array([t[2] for t in edges])
    lp = solve(d, e, w, per_demand=top, per_expert=cap)
    assert lp.chosen.dtype == bool and feasible(d, e, lp.chosen, top, cap)
    assert lp.objective == pytest.approx(float(w[lp.chosen].sum()))
    assert lp.objective >= greedy(d, e, w, per_demand=top, per_expert=cap).objective - 1e-9
    # Optimality, locally: no unchosen edge has room at both ends (all weights are positive).
    load_d = np.bincount(d[lp.chosen], minlength=d.max() + 1)
    load_e = np.bincount(e[lp.chosen], minlength=e.max() + 1)
    for i in np.flatnonzero(~lp.chosen):
        assert load_d[d[i]] >= top or load_e[e[i]] >= cap


def test_per_item_capacities_and_non_positive_weights() -> None:
    d, e, w = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), np.array([1.0, 0.0, 2.0, -1.0])
    res = solve(d, e, w, per_demand=np.array([2, 2]), per_expert=np.array([1, 5]))
    assert res.chosen.tolist() == [False, False, True, False]  # weight <= 0 is never chosen
    assert solve(d[:0], e[:0], w[:0], per_demand=1, per_expert=1).method == "empty"


def test_a_fractional_lp_answer_falls_back_to_milp(monkeypatch) -> None:
    real = assign.linprog

    def fractional(*args, **kwargs):
        res = real(*args, **kwargs)
        res.x = np.full_like(res.x, 0.5)
        return res

    monkeypatch.setattr(assign, "linprog", fractional)
    d, e, w = np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([0.9, 0.8, 0.85])
    res = solve(d, e, w, per_demand=1, per_expert=1)
    assert res.method == "milp" and res.chosen.tolist() == [False, True, True]


@pytest.mark.parametrize("bad,message", [
    (dict(d=[0, 0], e=[1, 1], w=[1.0, 2.0]), "given twice"),
    (dict(d=[0], e=[1, 2], w=[1.0]), "one length"),
    (dict(d=[-1], e=[0], w=[1.0]), ">= 0"),
    (dict(d=[0], e=[0], w=[float("nan")]), "finite"),
])
def test_bad_input_is_refused(bad, message) -> None:
    with pytest.raises(ValueError, match=message):
        solve(np.array(bad["d"]), np.array(bad["e"]), np.array(bad["w"]), per_demand=1, per_expert=1)


def test_rank_weights_discount_lower_ranks_a_little() -> None:
    w = rank_weights(np.array([2.0, 2.0, 2.0]), np.array([1, 2, 11]), decay=0.01)
    assert w[0] == 2.0 and w[1] == pytest.approx(1.98) and w[2] == pytest.approx(2.0 * 0.99**10)
    assert rank_weights(np.array([1.5]), np.array([7]), decay=0.0)[0] == 1.5
    with pytest.raises(ValueError):
        rank_weights(np.array([1.0]), np.array([0]))
