"""Fusion: the signals of every expert made into one score, and the order of a page.

Each signal is divided by its spread over the live experts (its standard deviation) and weighted:
this ranks exactly as the per-query z-score sum (the means only shift every expert by the same
constant) but keeps scores non-negative, which the nightly assignment's maximisation needs.
Experts without evidence, or far below the best, score 0 (`weighted_sum`). The last `slots` places of the first page go to the best
experts of the centroid view that the fusion left out (`diversify`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from matcher.ranking import signal


@dataclass(frozen=True, slots=True)
class Scored:
    """Fused scores for one query, with the per-signal arrays kept for explanations."""

    total: np.ndarray
    signals: Mapping[str, np.ndarray]
    unit_scores: np.ndarray  # word BM25 per unit
    char_scores: np.ndarray | None = None  # character n-gram cosine per unit
    dense_scores: np.ndarray | None = None  # centred dense cosine per unit
    #: Fills in the per-unit scores of experts about to be explained (top-k retrieval scores only
    #: candidates: `matcher.ranking.pruned`); None when every unit is scored.
    complete: Callable[[Sequence[int]], None] | None = field(default=None, compare=False)
    #: Whether the query shares a word or a string of characters with the index (else nobody is listed)
    understood: bool = True


def best_first(scores: np.ndarray, *, chunk: int = 64) -> Iterator[int]:
    """Positions of the positive scores, best first (ties by position), sorted lazily: a page of
    ten needs a partial sort of a few dozen, not a sort of 100,000 experts."""
    pos = np.flatnonzero(scores > 0)
    vals = -scores[pos]
    done = 0
    while done < len(pos):
        take = min(len(pos), done + chunk)
        if take < len(pos):
            # Every score tied with the take-th best comes along, so the order is exactly a full
            # sort's (by score, then position) and consistent from one round to the next.
            kth = np.partition(vals, take - 1)[take - 1]
            part = np.flatnonzero(vals <= kth)
            part = part[np.lexsort((pos[part], vals[part]))][:take]
        else:
            part = np.lexsort((pos, vals))
        for j in part[done:]:
            yield int(pos[j])
        done = take
        chunk *= 8


def fuse(sig: Mapping[str, np.ndarray], weights: Mapping[str, float], alive: np.ndarray, slots: int,
         floor: float = 0.0, popularity: np.ndarray | None = None, popularity_weight: float = 0.0, *,
         understood: bool = True) -> np.ndarray:
    """The fused score of every expert from its signals, with the last `slots` places of the
    first ten given to the best experts of the centroid view that the fusion left out (a
    `"slots"` entry in `weights` overrides `slots`).

    The document vote rewards experts whose individual documents sit next to the query; the
    centroid rewards experts whose profile as a whole leans towards it. A page of ten that
    hedges between the two finds at least one right expert more often (Hit@10, on the CDL dev
    split and on both of its halves) at a cost in nDCG@10 of about 0.001."""
    total = weighted_sum(sig, weights, alive, floor, understood=understood)
    pw = float(weights.get("popularity", popularity_weight))
    if popularity is not None and pw:
        total = discount_popular(total, popularity, pw)
    slots = int(weights.get("slots", slots))
    if slots > 0:
        total = diversify(total, sig["centroid"], slots)
    return total


def discount_popular(total: np.ndarray, popularity: np.ndarray, weight: float) -> np.ndarray:
    """The scores as shares of the best one, minus `weight` times each expert's popularity: how
    well, on average, the expert matches the demands the 科协 receives (`matcher.ranking.bank`).

    This is inverse document frequency for experts: a match with an expert who matches every
    demand says less than a match with one who matches few. An expert whose discounted share
    falls to 0 is not listed (the best match keeps at least 1 - weight)."""
    top = float(total.max(initial=0.0))
    if top <= 0:
        return total
    pop = popularity if len(popularity) == len(total) else np.zeros(len(total), dtype=np.float32)
    out = (total / top - weight * pop).astype(np.float32)
    out[(total <= 0) | (out <= 0)] = 0.0
    return out


def diversify(total: np.ndarray, view: np.ndarray, slots: int, page: int = 10) -> np.ndarray:
    keep = page - slots
    ranked = list(itertools.islice(best_first(total), page))
    if len(ranked) <= keep:
        return total
    head = set(ranked[:keep])
    alt = np.where(total > 0, view, 0.0)
    picks = [i for i in itertools.islice(best_first(alt), page) if i not in head][:slots]
    if not picks:
        return total
    out = total.copy()
    floor = float(total[ranked[keep - 1]])  # the last place kept
    # Everyone below the kept places moves down a hair, and the picks go just under the floor.
    rest = out < floor
    out[rest] *= 1.0 - 1e-4
    below = np.ones(len(out), dtype=bool)
    below[ranked[:keep]] = False
    out[below & (out >= floor)] = floor * (1.0 - 1e-4)
    for j, i in enumerate(picks, start=1):
        out[i] = floor * (1.0 - 1e-5 * j)
    return out


def _evidence() -> frozenset[str]:
    """Signals whose votes are evidence that an expert matches (the others reorder, never admit)."""
    return frozenset(s.name for s in signal.registered() if s.evidence)


def weighted_sum(sig: Mapping[str, np.ndarray], weights: Mapping[str, float], alive: np.ndarray,
                 floor: float = 0.0, *, understood: bool = True) -> np.ndarray:
    """Sum of w_s * v_s / spread_s over the signals, the spread being the standard deviation over
    the live experts (the best value when there is no spread).

    Who may be listed: an expert with a vote in an evidence signal (each vote comes from the
    query's neighbourhood of documents, so this is already a short list) whose fused score reaches
    `floor` times the best one. There is no word mask: an expert found only through characters
    or meaning may be listed (its explanation says 字面相近 / 语义相近), but one carried by a
    single weak vote is not. A query that shares nothing with the index at all (`understood`
    False) lists nobody."""
    n = len(alive)
    total = np.zeros(n, dtype=np.float32)
    evident = np.zeros(n, dtype=bool)
    evidence = _evidence()
    for name, arr in sig.items():
        w = weights.get(name, 0.0)
        if not w:
            continue
        if name in evidence:
            evident |= arr > 0
        live = arr[alive]
        # One expert (or all alike) has no spread: fall back to the best value as the scale.
        scale = float(live.std()) if live.size > 1 else 0.0
        scale = scale if scale > 0 else float(live.max(initial=0.0))
        if scale > 0:
            total += w * (arr / scale)
    total[~evident | ~alive] = 0.0
    if not understood:
        total[:] = 0.0
    if floor > 0 and total.size:
        total[total < floor * float(total.max())] = 0.0
    return total
