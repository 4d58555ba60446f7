"""Batch assignment under capacities: which (demand, expert) pairs a night's run recommends.

The night's candidates form a bipartite graph: an edge (demand d, expert e) with a weight w.
We choose edges x_de ∈ {0, 1} to

    maximise   Σ w_de · x_de
    subject to Σ_e x_de ≤ per_demand[d]    (a demand gets at most `top` experts)
               Σ_d x_de ≤ per_expert[e]    (an expert gets at most `max_per_expert` recommendations)

a maximum-weight b-matching, i.e. a min-cost flow source → demands → experts → sink. Its constraint
matrix is the incidence matrix of a bipartite graph, which is totally unimodular, so the vertices
of the LP relaxation are integral and HiGHS' simplex answers with one of them. We still check the
answer is integral (to 1e-6) and fall back to `scipy.optimize.milp` if it ever is not, so the
result is a true 0/1 choice either way.

Greedy (best edge first while both ends have room) is kept as the baseline the tests and the
benchmark compare against: it can lose, e.g. when a demand's best expert is also the only
candidate of another demand.

`rank_weights` turns the ranker's score into the weight the solver maximises: the score, discounted
a little by the expert's rank within the demand (`(1 - decay) ** (rank - 1)`), so that between two
nearly equal totals the one giving each demand its own best experts wins; `decay=0` maximises the
plain total score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

log = logging.getLogger(__name__)

INTEGRALITY_TOL = 1e-6
DEFAULT_RANK_DECAY = 0.01


@dataclass(frozen=True, slots=True)
class Assignment:
    """The chosen edges (a mask over the input edges) and the total weight they carry."""

    chosen: np.ndarray  # bool, one entry per edge
    objective: float
    method: str  # "lp" (integral LP vertex), "milp" (fallback), "greedy" or "empty"

    @property
    def n_chosen(self) -> int:
        return int(self.chosen.sum())


def rank_weights(scores: np.ndarray, ranks: np.ndarray, decay: float = DEFAULT_RANK_DECAY) -> np.ndarray:
    """The solver's weight of each edge: its score, discounted by its 1-based rank within its demand."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), not {decay}")
    scores = np.asarray(scores, dtype=np.float64)
    ranks = np.asarray(ranks, dtype=np.float64)
    if np.any(ranks < 1):
        raise ValueError("ranks are 1-based")
    return scores * (1.0 - decay) ** (ranks - 1.0)


def _check(
    demands: np.ndarray, experts: np.ndarray, weights: np.ndarray, per_demand: object, per_expert: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = np.asarray(demands, dtype=np.int64)
    e = np.asarray(experts, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    if not (d.ndim == e.ndim == w.ndim == 1) or not (len(d) == len(e) == len(w)):
        raise ValueError("demands, experts and weights must be 1-d arrays of one length (one entry per edge)")
    if len(d) and (d.min() < 0 or e.min() < 0):
        raise ValueError("demand and expert indices must be >= 0")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite")
    n_d = int(d.max()) + 1 if len(d) else 0
    n_e = int(e.max()) + 1 if len(e) else 0
    cap_d = np.broadcast_to(np.asarray(per_demand, dtype=np.float64), (n_d,)) if np.ndim(per_demand) == 0 \
        else np.asarray(per_demand, dtype=np.float64)
    cap_e = np.broadcast_to(np.asarray(per_expert, dtype=np.float64), (n_e,)) if np.ndim(per_expert) == 0 \
        else np.asarray(per_expert, dtype=np.float64)
    if len(cap_d) < n_d or len(cap_e) < n_e:
        raise ValueError("per_demand / per_expert must have an entry for every demand / expert index")
    if np.any(cap_d < 0) or np.any(cap_e < 0):
        raise ValueError("capacities must be >= 0")
    if len(d) and len(np.unique(d * n_e + e)) != len(d):
        raise ValueError("an edge (demand, expert) is given twice")
    return d, e, w, cap_d, cap_e


def solve(
    demands: np.ndarray,
    experts: np.ndarray,
    weights: np.ndarray,
    *,
    per_demand: int | np.ndarray,
    per_expert: int | np.ndarray,
) -> Assignment:
    """The maximum-weight choice of edges under both capacities (see the module docstring).

    `demands[i]`, `experts[i]`, `weights[i]` describe edge i (indices from 0); capacities are one
    number for all or an array indexed like the demands / experts. Edges of weight <= 0 are never chosen.
    """
    d, e, w, cap_d, cap_e = _check(demands, experts, weights, per_demand, per_expert)
    usable = np.flatnonzero(w > 0)
    chosen = np.zeros(len(d), dtype=bool)
    if not len(usable):
        return Assignment(chosen, 0.0, "empty")
    du, eu, wu = d[usable], e[usable], w[usable]
    # Only the demands and experts that have an edge take part: compact their indices.
    d_ids, d_pos = np.unique(du, return_inverse=True)
    e_ids, e_pos = np.unique(eu, return_inverse=True)
    m = len(usable)
    cols = np.arange(m)
    a = sp.vstack([
        sp.csr_matrix((np.ones(m), (d_pos, cols)), shape=(len(d_ids), m)),
        sp.csr_matrix((np.ones(m), (e_pos, cols)), shape=(len(e_ids), m)),
    ]).tocsr()
    b = np.concatenate([cap_d[d_ids], cap_e[e_ids]])
    res = linprog(-wu, A_ub=a, b_ub=b, bounds=(0.0, 1.0), method="highs-ds")
    method = "lp"
    x = res.x if res.status == 0 else None
    if x is None or np.max(np.minimum(np.abs(x), np.abs(1.0 - x))) > INTEGRALITY_TOL:
        # Cannot happen for a vertex of a totally unimodular system; kept so a solver change can't
        # hand us a fractional plan.
        log.warning("the LP answer was not integral (%s); solving as a MILP", res.message)
        mres = milp(-wu, constraints=LinearConstraint(a, -np.inf, b), integrality=np.ones(m),
                    bounds=Bounds(0.0, 1.0))
        if mres.status != 0 or mres.x is None:
            raise RuntimeError(f"the assignment solver failed: {mres.message}")
        x, method = mres.x, "milp"
    picked = x > 0.5
    chosen[usable[picked]] = True
    return Assignment(chosen, float(w[chosen].sum()), method)


def greedy(
    demands: np.ndarray,
    experts: np.ndarray,
    weights: np.ndarray,
    *,
    per_demand: int | np.ndarray,
    per_expert: int | np.ndarray,
) -> Assignment:
    """Best edge first while both ends have room: the baseline `solve` must never do worse than."""
    d, e, w, cap_d, cap_e = _check(demands, experts, weights, per_demand, per_expert)
    left_d, left_e = cap_d.copy(), cap_e.copy()
    chosen = np.zeros(len(d), dtype=bool)
    for i in np.argsort(-w, kind="stable"):
        if w[i] <= 0:
            break
        if left_d[d[i]] >= 1 and left_e[e[i]] >= 1:
            chosen[i] = True
            left_d[d[i]] -= 1
            left_e[e[i]] -= 1
    return Assignment(chosen, float(w[chosen].sum()), "greedy")
