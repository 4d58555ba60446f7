"""Top-k retrieval with dynamic pruning for the lexical signals (word BM25, word TF-IDF, characters).

The kNN vote (`matcher.ranking.aggregate`) reads only each signal's `knn_k` best documents, so
scoring every posting of every query term, as the exhaustive path does, is mostly wasted at a
million documents. This module finds the same documents while reading a fraction of the postings,
and returns exactly what the exhaustive path returns for the vote: the same documents and the same
float32 scores, bit for bit (tests/test_topk.py checks it on the demo corpus and a 10,000-expert
pool; `matcher eval` gives the same figures).

How (MaxScore, Turtle & Flood 1995, term at a time):

1. Each query term t gets an upper bound of what it can add to any document: its query weight
   times the largest entry weight in its postings (`Bounds`, computed once per saved base and kept
   in a file beside it; corrected for statistics that moved since, so it stays an upper bound).
2. Terms are read in decreasing bound order (rare, informative terms first) into accumulators. A
   lower bound theta of the k-th best document's score is the k-th best partial score (one unit per
   document, so k distinct documents). Once the bounds of the unread terms add up to less than
   theta, a document none of the read terms touched cannot reach the k best: reading stops.
3. The documents touched whose partial score plus the unread bound reaches theta are candidates.
   The unread terms are probed for them only (a galloping search in each sorted posting list, not
   a scan), dropping a candidate as soon as its score plus what is left cannot reach theta.
4. The survivors are scored exactly as the exhaustive path scores them (the same float32 operations
   in the same order), and the vote takes its k documents from them.

The long, disjunctive demands of a 科协 (70-150 distinct words) defeat pruning in part: the
frequent words' bounds add up, so a third to a half of the postings are still read (measured in
README "Performance"). The loops are compiled with numba: MaxScore's probing is a per-candidate,
early-exit loop that numpy cannot express without a Python call per term and candidate.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

if TYPE_CHECKING:
    from matcher.index import TermIndex

log = logging.getLogger(__name__)

#: Relative slack on the bounds: partial scores are summed in another order than the exact ones, so
#: they may differ in the last float32 bits; the slack keeps every comparison on the safe side.
SLACK = 1e-4
#: A galloping search for one candidate in one posting list costs about this many postings read.
PROBE_COST = 4


# -- compiled loops ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _log1(tf):  # noqa: ANN001, ANN202
    """1 + ln tf, from a table for the small whole counts that most entries hold (a bound only)."""
    c = int(tf)
    if c == tf and c < 64:
        return _LOG1[c]
    return 1.0 + np.log(tf)


_LOG1 = (1.0 + np.log(np.maximum(np.arange(64, dtype=np.float64), 1.0))).astype(np.float32)


@njit(cache=True, nogil=True)
def _read(indptr, indices, data, cols, mult, factor, bm25, acc):  # noqa: ANN001, ANN202
    """Add the contributions of whole posting lists `cols` to `acc` (TF-IDF: before the row factor,
    which `_partial` applies, as the exhaustive path does: no gather per posting)."""
    for j in range(cols.shape[0]):
        t = cols[j]
        m = mult[j]
        if bm25:
            for p in range(indptr[t], indptr[t + 1]):
                r = indices[p]
                tf = data[p]
                acc[r] += tf / (tf + factor[r]) * m
        else:
            for p in range(indptr[t], indptr[t + 1]):
                acc[indices[p]] += _log1(data[p]) * m


@njit(cache=True, nogil=True, inline="always")
def _seek(indices, pos, hi, r):  # noqa: ANN001, ANN202
    """First position in indices[pos:hi] (sorted) holding a row >= r: galloping, then bisection."""
    if pos >= hi or indices[pos] >= r:
        return pos
    step = 1
    lo = pos
    while lo + step < hi and indices[lo + step] < r:
        lo += step
        step *= 2
    top = min(lo + step, hi)
    # indices[lo] < r; answer in (lo, top]
    a = lo + 1
    b = top
    while a < b:
        mid = (a + b) // 2
        if indices[mid] < r:
            a = mid + 1
        else:
            b = mid
    return a


@njit(cache=True, nogil=True)
def _probe(indptr, indices, data, cols, mult, ub, factor, bm25, rows, acc, theta):  # noqa: ANN001, ANN202
    """Probe the unread terms `cols` (decreasing bound) for the candidate `rows` (sorted), adding to
    `acc`; a candidate is dropped once its score plus the bounds left cannot reach `theta`."""
    n = rows.shape[0]
    alive = np.ones(n, dtype=np.bool_)
    left = 0.0
    for j in range(ub.shape[0]):
        left += ub[j]
    for j in range(cols.shape[0]):
        t = cols[j]
        m = mult[j]
        pos = indptr[t]
        hi = indptr[t + 1]
        for i in range(n):
            if not alive[i]:
                continue
            if acc[i] + left < theta:
                alive[i] = False
                continue
            r = rows[i]
            pos = _seek(indices, pos, hi, r)
            if pos < hi and indices[pos] == r:
                tf = data[pos]
                if bm25:
                    acc[i] += tf / (tf + factor[r]) * m
                else:
                    acc[i] += _log1(tf) * factor[r] * m
        left -= ub[j]
    for i in range(n):
        if alive[i] and acc[i] < theta:
            alive[i] = False
    return alive


@njit(cache=True, nogil=True)
def _best(acc, factor, bm25, live, k):  # noqa: ANN001, ANN202
    """The (at most) `k` rows flagged in `live` with the largest positive partial score: a min-heap."""
    heap_v = np.empty(k, dtype=np.float32)
    heap_r = np.empty(k, dtype=np.int64)
    n = 0
    for r in range(acc.shape[0]):
        if acc[r] == 0.0 or not live[r]:
            continue
        v = acc[r] if bm25 else acc[r] * factor[r]
        if n < k:
            # sift up
            c = n
            n += 1
            while c > 0:
                parent = (c - 1) // 2
                if heap_v[parent] <= v:
                    break
                heap_v[c] = heap_v[parent]
                heap_r[c] = heap_r[parent]
                c = parent
            heap_v[c] = v
            heap_r[c] = r
        elif v > heap_v[0]:
            # replace the root, sift down
            c = 0
            while True:
                child = 2 * c + 1
                if child >= n:
                    break
                if child + 1 < n and heap_v[child + 1] < heap_v[child]:
                    child += 1
                if heap_v[child] >= v:
                    break
                heap_v[c] = heap_v[child]
                heap_r[c] = heap_r[child]
                c = child
            heap_v[c] = v
            heap_r[c] = r
    return np.sort(heap_r[:n])


@njit(cache=True, nogil=True)
def _gather(indptr, indices, data, cols, rows):  # noqa: ANN001, ANN202
    """The counts of terms `cols` in `rows` (sorted), as a dense (rows x cols) float32 array."""
    out = np.zeros((rows.shape[0], cols.shape[0]), dtype=np.float32)
    for j in range(cols.shape[0]):
        t = cols[j]
        pos = indptr[t]
        hi = indptr[t + 1]
        for i in range(rows.shape[0]):
            r = rows[i]
            pos = _seek(indices, pos, hi, r)
            if pos >= hi:
                break
            if indices[pos] == r:
                out[i, j] = data[pos]
    return out


# -- upper bounds --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Bounds:
    """Per base term: the largest BM25 entry weight (at `avgdl`) and the largest TF-IDF entry weight
    (under the row factors `factor`), without idf or query weight. When the statistics move (an
    incremental update), `bm25_bound` / `tfidf_bound` scale them so they stay upper bounds."""

    bm25: np.ndarray | None  # (terms,) float32, or None for a TF-IDF-only index (characters)
    avgdl: float
    tfidf: np.ndarray  # (terms,) float32
    factor: np.ndarray  # (rows,) float32: the TF-IDF row factors (1 / norm) the maxima were taken under

    def bm25_bound(self, view: TermIndex) -> np.ndarray:
        # w = tf / (tf + k1 (1 - b + b dl / A)) grows with A at most in proportion A' / A.
        assert self.bm25 is not None
        return self.bm25 * np.float32(max(1.0, view.avgdl_ / self.avgdl) * (1 + SLACK))

    def tfidf_bound(self, view: TermIndex) -> np.ndarray:
        cached = _RATIO.get(view)
        if cached is None:
            nb = len(self.factor)
            cached = float(np.max(view._row_factor[:nb] / self.factor, initial=1.0))
            _RATIO[view] = cached
        return self.tfidf * np.float32(max(1.0, cached) * (1 + SLACK))


_BOUNDS: dict[int, tuple[weakref.ref, Bounds]] = {}  # id(base matrix) -> (that matrix, its Bounds)
_RATIO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # TF-IDF view -> max factor ratio


def _column_max(base, weigh, chunk: int = 4_000_000) -> np.ndarray:  # noqa: ANN001
    """Per column of a CSC matrix, the largest of `weigh(data, rows)` (0 for an empty column),
    `chunk` entries at a time (the weights of 80 M postings are never held at once)."""
    indptr = np.asarray(base.indptr, dtype=np.int64)
    n_cols = len(indptr) - 1
    out = np.zeros(n_cols, dtype=np.float32)
    nnz = int(indptr[-1])
    start_col = 0
    while start_col < n_cols:
        end_col = int(np.searchsorted(indptr, indptr[start_col] + chunk, side="right")) - 1
        end_col = min(max(end_col, start_col + 1), n_cols)
        lo, hi = int(indptr[start_col]), int(indptr[end_col])
        if hi > lo:
            w = weigh(np.asarray(base.data[lo:hi]), np.asarray(base.indices[lo:hi]))
            starts = indptr[start_col:end_col] - lo
            nonempty = np.diff(indptr[start_col : end_col + 1]) > 0
            maxima = np.maximum.reduceat(w, np.minimum(starts, len(w) - 1))
            out[start_col:end_col] = np.where(nonempty, maxima, 0.0)
        start_col = end_col
    del nnz
    return out


def compute_bounds(view: TermIndex, *, bm25: bool) -> Bounds:
    """The bounds of `view`'s base segment under its current statistics (one pass over the postings)."""
    base = view._base
    nb = base.shape[0]
    tf_factor = view._row_factor[:nb] if view.weighting == "tfidf" else None
    if tf_factor is None:  # a BM25 view: its TF-IDF sibling's row factors
        tf_factor = view.sibling("tfidf")._row_factor[:nb]
    tfidf = _column_max(base, lambda d, r: (1.0 + np.log(d)) * tf_factor[r])
    bm = None
    avgdl = float(view.avgdl_)
    if bm25:
        k1, b = view.k1, view.b
        len_factor = (k1 * (1.0 - b + b * view.doc_len_[:nb] / max(avgdl, 1e-9))).astype(np.float32)
        bm = _column_max(base, lambda d, r: d / (d + len_factor[r]))
    return Bounds(bm, avgdl, tfidf, np.asarray(tf_factor, dtype=np.float32).copy())


def bounds(view: TermIndex, *, bm25: bool) -> Bounds:
    """The bounds of `view`'s base (computed on first use, shared by every view over that base)."""
    got = _cached(view._base)
    if got is None or (bm25 and got.bm25 is None):
        got = compute_bounds(view, bm25=bm25)
        _remember(view._base, got)
    return got


def _cached(base: object) -> Bounds | None:
    entry = _BOUNDS.get(id(base))
    return entry[1] if entry is not None and entry[0]() is base else None


def _remember(base: object, got: Bounds) -> None:
    key = id(base)
    # Sparse matrices are not hashable: keyed by identity, dropped when the matrix is.
    _BOUNDS[key] = (weakref.ref(base, lambda _: _BOUNDS.pop(key, None)), got)


def save_bounds(view: TermIndex, folder: Path | str, name: str, *, bm25: bool) -> None:
    """Write the bounds of `view`'s base beside the saved index (the build process does it, so a
    server's first query does not pay a pass over every posting)."""
    got = bounds(view, bm25=bm25)
    arrays = {"tfidf": got.tfidf, "factor": got.factor, "avgdl": np.asarray(got.avgdl),
              "shape": np.asarray(view._base.shape), "nnz": np.asarray(view._base.nnz)}
    if got.bm25 is not None:
        arrays["bm25"] = got.bm25
    tmp = Path(folder) / f"topk.{name}.tmp.npz"
    np.savez(tmp, **arrays)
    tmp.replace(Path(folder) / f"topk.{name}.npz")


def load_bounds(view: TermIndex, folder: Path | str, name: str) -> bool:
    """Attach saved bounds to `view`'s base when they belong to it. True when they did."""
    path = Path(folder) / f"topk.{name}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            if tuple(z["shape"]) != tuple(view._base.shape) or int(z["nnz"]) != int(view._base.nnz):
                return False
            got = Bounds(z["bm25"] if "bm25" in z.files else None, float(z["avgdl"]), z["tfidf"], z["factor"])
    except (OSError, ValueError, KeyError):
        return False
    _remember(view._base, got)
    return True


# -- the search ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Hits:
    """A signal's candidate units with their exact scores: a superset of the units of the query's
    `k` best documents (every unit scoring at least as much as the k-th best document), plus
    `read` / `total`: the postings read and the postings the exhaustive path reads."""

    rows: np.ndarray  # int64, sorted
    scores: np.ndarray  # float32, exact (equal to the exhaustive path's)
    read: int = 0
    total: int = 0
    probed: int = 0  # candidates whose unread terms were probed

    def dense(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.float32)
        out[self.rows] = self.scores
        return out


@dataclass(frozen=True, slots=True)
class Plan:
    """One view's query as the exhaustive path reads it: base columns in its order, their weights."""

    cols: np.ndarray  # int64 base term ids, in the exhaustive path's column order
    mult: np.ndarray  # float32 query weight x idf, as the exhaustive path computes it
    delta_ids: np.ndarray  # the query's term ids, for the delta segment
    delta_inside: np.ndarray  # which of them the delta segment scores
    vectors: tuple[np.ndarray, np.ndarray]


def plan(view: TermIndex, ids: np.ndarray, ws: np.ndarray, keep: np.ndarray) -> Plan:
    """What `TermIndex.score_with` reads for this view: `ids`/`ws` its query vector, `keep` the
    budget's choice (made on the first view's weights, as `score_with` does)."""
    inside = keep & (ids < view._base.shape[1])
    mult = (ws * view.idf_[ids])[inside].astype(np.float32)
    d_inside = keep & (ids < view._delta_c.shape[1])
    return Plan(ids[inside].astype(np.int64), mult, ids, d_inside, (ids, ws))


def exact_scores(view: TermIndex, p: Plan, rows: np.ndarray) -> np.ndarray:
    """The exhaustive path's float32 scores of base `rows` (sorted): the same entry weights, summed
    over the columns in the same order (see `TermIndex._accumulate`)."""
    base = view._base
    if not len(rows) or not len(p.cols):
        return np.zeros(len(rows), dtype=np.float32)
    tf = _gather(base.indptr, base.indices, base.data, p.cols, rows)
    factor = view._row_factor[rows]
    if view.weighting == "bm25":
        w = tf / (tf + factor[:, None])
    else:
        with np.errstate(divide="ignore"):
            w = np.log(tf)
        w += 1.0
        w[tf == 0] = 0.0
    w *= p.mult[None, :]
    out = np.zeros(len(rows), dtype=np.float32)
    for j in range(w.shape[1]):
        out += w[:, j]
    if view.weighting != "bm25":
        out *= factor
    out[~view.alive_[rows]] = 0.0
    return out


def _delta_hits(view: TermIndex, p: Plan) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the delta segment (added since the base) and their scores: read whole, as the
    exhaustive path reads them (it is small)."""
    nb, n = view._base.shape[0], view.n_rows_
    if n == nb or not p.delta_inside.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    sub = view._delta_c[:, p.delta_ids[p.delta_inside]]
    out = [np.zeros(n, dtype=np.float32)]
    view._accumulate([view], [p.vectors], p.delta_ids, p.delta_inside, sub, out, nb)
    scores = out[0][nb:]
    scores[~view.alive_[nb:]] = 0.0
    rows = np.flatnonzero(scores > 0)
    return rows + nb, scores[rows]


def _kth(values: np.ndarray, k: int) -> float:
    if len(values) < k:
        return 0.0
    return float(np.partition(values, len(values) - k)[len(values) - k])


def search(view: TermIndex, p: Plan, k: int, canonical: np.ndarray, *, bm25_bounds: bool = True) -> Hits:
    """Every unit that scores at least as much as the `k`-th best document (one unit per document:
    `canonical` marks the first unit of each document whose expert is live), exactly scored.

    Rows of the delta segment are scored whole; the base is searched with MaxScore (module docstring)."""
    base = view._base
    nb = base.shape[0]
    d_rows, d_scores = _delta_hits(view, p)
    total = int(np.diff(base.indptr)[p.cols].sum()) if len(p.cols) else 0
    if not len(p.cols):
        return Hits(d_rows, d_scores, 0, total)
    b = bounds(view, bm25=bm25_bounds)
    bm25 = view.weighting == "bm25"
    ub = (b.bm25_bound(view) if bm25 else b.tfidf_bound(view))[p.cols].astype(np.float64) * p.mult
    order = np.argsort(-ub, kind="stable")
    cols, mult, ub = p.cols[order], p.mult[order], ub[order]
    sizes = np.diff(base.indptr)[cols]
    left = np.concatenate([np.cumsum(ub[::-1])[::-1], [0.0]])  # left[i]: bounds of terms i.. unread
    factor = view._row_factor
    acc = np.zeros(nb, dtype=np.float32)
    live = canonical[:nb]
    d_best = d_scores[canonical[d_rows]] if len(d_rows) else np.zeros(0, dtype=np.float32)

    def partial(rows: np.ndarray) -> np.ndarray:  # the partial scores of `rows`
        return acc[rows] if bm25 else acc[rows] * factor[rows]

    i, read, theta = 0, 0, 0.0
    target = max(1, int(np.searchsorted(np.cumsum(sizes), total // 32)) + 1)  # the rare terms first
    while i < len(cols):
        _read(base.indptr, base.indices, base.data, cols[i:target], mult[i:target], factor, bm25, acc)
        read += int(sizes[i:target].sum())
        i = target
        if i >= len(cols):
            break
        # Raise theta: the whole scores (unread terms probed) of the k documents with the best partial
        # scores are k documents' scores, so the k-th of them is a lower bound of the k-th best.
        best = _best(acc, factor, bm25, live, k)
        if len(best) + len(d_best) >= k:
            whole = partial(best).astype(np.float64)
            _probe(base.indptr, base.indices, base.data, cols[i:], mult[i:], ub[i:], factor, bm25, best,
                   whole, -1.0)
            theta = max(theta, _kth(np.concatenate([whole, d_best]), k) * (1 - SLACK))
        if theta > 0 and left[i] < theta:
            # Documents no read term touched are out. Probing the unread terms for every touched
            # document that may still reach theta costs a search per candidate and term; reading a
            # term whole costs a pass over its postings. Stop when probing is the cheaper.
            seen = np.flatnonzero(acc)
            n_cand = int(np.count_nonzero(partial(seen) + left[i] * (1 + SLACK) >= theta))
            rest = int(sizes[i:].sum())
            if n_cand * (len(cols) - i) * PROBE_COST <= rest:
                break
            # read on until the candidates would cost about what reading the rest costs
            want = max(rest - n_cand * (len(cols) - i) * PROBE_COST, rest // 4)  # a handful of rounds
            target = i + max(1, int(np.searchsorted(np.cumsum(sizes[i:]), want)))
        else:
            # Every term up to the first whose unread bounds fall below theta must be read: read them
            # (theta rises meanwhile, and is looked at again after).
            target = int(np.argmax(left < theta)) if theta > 0 else len(cols)
            target = max(target, i + 1)
        target = min(target, len(cols))
    seen = np.flatnonzero(acc)
    probed = 0
    if i >= len(cols):  # every term was read: the partial scores are whole
        cand = seen[partial(seen) >= theta] if theta > 0 else seen
    else:
        cand = seen[partial(seen) + left[i] * (1 + SLACK) >= theta]
        probed = len(cand)
        if len(cand):
            kept = _probe(base.indptr, base.indices, base.data, cols[i:], mult[i:], ub[i:] * (1 + SLACK),
                          factor, bm25, cand, partial(cand).astype(np.float64), theta)
            cand = cand[kept]
    scores = exact_scores(view, p, cand)
    pos = scores > 0
    rows = np.concatenate([cand[pos], d_rows])
    vals = np.concatenate([scores[pos], d_scores])
    return Hits(rows, vals, read, total, probed)
