"""`TermIndex`: a fitted sparse term index, BM25 or TF-IDF over token lists.

A `TermIndex` keeps the term counts of a corpus as a sparse (documents x terms) matrix and the
corpus statistics (document frequencies, document lengths, N), and weighs the entries a query
touches when it scores, so that scoring is one sparse column slice and a weighted sum:

  * `weighting="bm25"`: Lucene's BM25 (the `bm25s` "lucene" variant, checked against it in the
    tests): idf = ln(1 + (N - df + 0.5) / (df + 0.5)), tf part = tf / (tf + k1 (1 - b + b dl/avgdl)).
  * `weighting="tfidf"`: sublinear tf (1 + ln tf) x smooth idf, rows L2-normalised, so a query
    vector normalised the same way gives the cosine.

Weighing at query time is what makes the index incremental. `updated(add=..., remove=...)`
returns a new index with documents appended (new terms extend the vocabulary) and documents
masked out, and the statistics brought up to date exactly (df, N, avgdl, the TF-IDF row norms),
without touching the stored counts of the other documents. Scores after any sequence of updates
therefore equal those of a fresh `fit` on the live documents up to float32 rounding (the tests
hold them to rtol 1e-5); only term ids and row positions differ. The counts live in two
segments, a large column-compressed base and a small delta of the rows added since, so an update
costs O(size of the delta) plus one vectorised pass over the base for the TF-IDF row norms.
`compacted(rows)` folds the delta in, drops masked rows and unused terms: an index equal to a
fresh fit, without re-tokenising anything. `n_changed_` counts rows added or removed since then.

Estimators follow scikit-learn: `__init__` stores parameters, `fit(corpus) -> self`, learned state
ends in `_`, an unfitted index raises `IndexStateError`, and a bare `str` where a corpus is expected
raises `ValueError`. `save(folder, name)` writes plain files (JSON + .npz/.npy) that `load` reads
with `allow_pickle=False`; `save_delta` writes only what changed since the base segment was made.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from matcher.errors import IndexStateError
from matcher.index.counts import _check_corpus, _check_tokens, _count, _sublinear_sq, _sums, _widen
from matcher.index.files import TermFiles
from matcher.index.updates import TermUpdates


class TermIndex(TermUpdates, TermFiles):
    """Sparse term counts plus corpus statistics, weighed at query time (see the module docstring)."""

    def __init__(self, weighting: str = "bm25", k1: float = 1.2, b: float = 0.75) -> None:
        self.weighting = weighting
        self.k1 = k1
        self.b = b

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, corpus: Sequence[Sequence[str]]) -> TermIndex:
        _check_corpus(corpus)
        self._check_params()
        vocab: dict[str, int] = {}
        tf = _count(corpus, vocab)
        return self._fit_counts(tf, list(vocab))

    def _check_params(self) -> None:
        if self.weighting not in ("bm25", "tfidf"):
            raise ValueError(f"weighting must be 'bm25' or 'tfidf', not {self.weighting!r}")

    def fit_counts(self, tf: sp.spmatrix, terms: Sequence[str]) -> TermIndex:
        """Fit on a ready (documents x terms) count matrix whose columns are `terms`: what `fit`
        does after counting. A CSC matrix is used as it is (not copied), so two indexes can share it."""
        if tf.shape[1] != len(terms):
            raise ValueError(f"{tf.shape[1]} columns but {len(terms)} terms")
        self._check_params()
        return self._fit_counts(tf, list(terms))

    def sibling(self, weighting: str, *, like: TermIndex | None = None,
                norm_sums: np.ndarray | None = None) -> TermIndex:
        """The same counts and statistics under another weighting (shared, not copied): BM25 and
        TF-IDF over one corpus cost the memory of one. `like`, an earlier sibling over the same
        base segment (before an update), lends its precomputed base arrays; `norm_sums`, saved
        earlier from a TF-IDF view of these counts, spare a TF-IDF sibling its pass over every entry."""
        self._require_fitted()
        new = copy.copy(self)
        new.weighting = weighting
        new._check_params()
        same = like is not None and like._base is self._base and like.weighting == weighting
        new._refresh(like if same else None, norm_sums=norm_sums)
        return new

    def _fit_counts(self, tf: sp.spmatrix, terms: list[str]) -> TermIndex:
        n_docs, n_terms = tf.shape
        self.vocabulary_ = {t: j for j, t in enumerate(terms)}
        self.terms_ = list(terms)
        base = tf.tocsc()
        if base.dtype != np.float32:
            base = base.astype(np.float32)
        base.sort_indices()
        self._base = base
        self._set_delta(sp.csr_matrix((0, n_terms), dtype=np.float32))
        self.alive_ = np.ones(n_docs, dtype=bool)
        self.doc_len_ = np.asarray(base.sum(axis=1)).ravel().astype(np.float32)
        self.df_ = np.diff(base.indptr).astype(np.float32)
        self.n_docs_ = n_docs
        self.n_changed_ = 0
        self._total_len = float(self.doc_len_.sum(dtype=np.float64))
        self._refresh()
        return self

    def _set_delta(self, delta: sp.csr_matrix) -> None:
        self._delta = delta
        self._delta_c = delta.tocsc()
        self._delta_c.sort_indices()

    def _refresh(self, like: TermIndex | None = None, *, norm_sums: np.ndarray | None = None) -> None:
        """Derived statistics from the counts: avgdl, idf and (TF-IDF) the row norms. `like` is
        the same index before an update (same base segment): its norm sums are brought up to date
        instead of being recomputed over every entry. `norm_sums` are this very index's, as saved
        (at 100,000 experts recomputing them was 9 s of a start-up)."""
        self.avgdl_ = self._total_len / self.n_docs_ if self.n_docs_ else 0.0
        self.idf_ = self._idf(self.df_, self.n_docs_)
        if self.weighting == "tfidf":
            usable = norm_sums is not None and like is None and norm_sums.shape == (3, self.n_rows_)
            self._sums = np.asarray(norm_sums, dtype=np.float64) if usable else self._norm_sums(like)
            self._norm = self._row_norms()
            self._row_factor = (1.0 / self._norm).astype(np.float32)
        else:  # BM25's length normalisation of every row: k1 (1 - b + b dl / avgdl)
            self._row_factor = (self.k1 * (1.0 - self.b + self.b * self.doc_len_ / max(self.avgdl_, 1e-9))
                                ).astype(np.float32)

    def _idf(self, df: np.ndarray, n_docs: int) -> np.ndarray:
        if self.weighting == "bm25":
            return np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        return (np.log((1.0 + n_docs) / (1.0 + df)) + 1.0).astype(np.float32)

    # TF-IDF row norms, kept exact under updates at the cost of the changed terms' postings only.
    # With q = (1 + ln tf)^2 and idf_t = A - L_t, where A = ln(1 + N) + 1 and L_t = ln(1 + df_t):
    #     norm_d^2 = sum_t q_dt (A - L_t)^2 = A^2 S0_d - 2 A S1_d + S2_d,
    #     S0_d = sum_t q_dt,  S1_d = sum_t q_dt L_t,  S2_d = sum_t q_dt L_t^2.
    # N changes with every update but only moves A (a scalar); a term whose df changes moves S1 and
    # S2 of the documents that hold it, and only of those. Before this, every update re-read every
    # entry of the base (80 M at 100,000 experts: most of the second an added expert took).
    def _norm_sums(self, like: TermIndex | None) -> np.ndarray:
        L = np.log1p(self.df_.astype(np.float64))
        n = self.n_rows_
        nb = self._base.shape[0]
        if like is None or getattr(like, "_sums", None) is None or like._base is not self._base:
            return np.concatenate([_sums(self._base, L), _sums(self._delta, L)], axis=1)
        n_old = like._sums.shape[1]
        out = np.zeros((3, n), dtype=np.float64)
        out[:, :n_old] = like._sums
        L_old = np.log1p(like.df_.astype(np.float64))
        changed = np.flatnonzero(L[: len(L_old)] != L_old)
        if len(changed):
            # Only the documents holding a term whose df changed move: S1 and S2 by q * dL.
            d1 = np.zeros(len(L_old))
            d2 = np.zeros(len(L_old))
            d1[changed] = L[changed] - L_old[changed]
            d2[changed] = L[changed] ** 2 - L_old[changed] ** 2
            cols = changed[changed < self._base.shape[1]]
            if len(cols) and nb:
                sub = _sublinear_sq(self._base[:, cols])
                out[1, :nb] += sub @ d1[cols]
                out[2, :nb] += sub @ d2[cols]
            old_delta = like._delta  # rows nb .. n_old of `like`, also rows of this index
            if old_delta.shape[0] and old_delta.nnz:
                width = old_delta.shape[1]
                qd = _sublinear_sq(old_delta)
                out[1, nb:n_old] += qd @ d1[:width]
                out[2, nb:n_old] += qd @ d2[:width]
        if n > n_old:  # rows added since `like`: from scratch, under today's df
            out[:, n_old:] = _sums(sp.csr_matrix(self._delta)[n_old - nb :], L)
        return out

    def _row_norms(self) -> np.ndarray:
        A = np.log(1.0 + self.n_docs_) + 1.0
        s0, s1, s2 = self._sums
        out = np.sqrt(np.clip(A * A * s0 - 2.0 * A * s1 + s2, 0.0, None))
        out[out == 0] = 1.0
        return out.astype(np.float32)

    # -- state ----------------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if not hasattr(self, "_base"):
            raise IndexStateError("this index is not fitted yet: call fit() or load a saved one")

    @property
    def n_terms(self) -> int:
        self._require_fitted()
        return len(self.vocabulary_)

    @property
    def n_rows_(self) -> int:
        """Rows, masked ones included: the length of `score()`'s result (`n_docs_` counts live rows)."""
        return self._base.shape[0] + self._delta.shape[0]

    @property
    def n_base_rows_(self) -> int:
        return self._base.shape[0]

    def rows_with(self, terms: Sequence[str]) -> list[np.ndarray]:
        """The live rows holding each of `terms` (`rows_with`)."""
        return rows_with(self, terms)

    # -- querying -------------------------------------------------------------------------------
    def query_vector(self, weights: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """(term ids, weights) of the query terms present in the live documents.

        For TF-IDF the weights are multiplied by idf and L2-normalised (the query side of the cosine).
        """
        self._require_fitted()
        vocab = self.vocabulary_
        pairs = [(j, w) for term, w in weights.items() if w and (j := vocab.get(term)) is not None]
        ids_a = np.fromiter((j for j, _ in pairs), dtype=np.int64, count=len(pairs))
        ws_a = np.fromiter((w for _, w in pairs), dtype=np.float32, count=len(pairs))
        # df 0: every document with the term was removed; a fresh fit would not know the term.
        live = self.df_[ids_a] > 0
        if not live.all():
            ids_a, ws_a = ids_a[live], ws_a[live]
        if self.weighting == "tfidf" and len(ws_a):
            ws_a = ws_a * self.idf_[ids_a]
            ws_a = ws_a / max(float(np.linalg.norm(ws_a)), 1e-9)
        return ids_a, ws_a

    def _entry_weights(self, tf: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Weights of count entries `tf` in rows `rows`, without the idf factor."""
        factor = self._row_factor[rows]  # see `_refresh`
        if self.weighting == "bm25":
            return tf / (tf + factor)
        return (1.0 + np.log(tf)) * factor

    def score(self, query: Sequence[str] | Mapping[str, float], *, max_postings: int | None = None) -> np.ndarray:
        """Scores of every row for a query given as tokens or as {term: weight}; masked rows score 0.

        A token repeated in the query counts as often as it occurs (as in bm25s and Lucene);
        pass a mapping to weight terms otherwise. `max_postings` bounds the work (see `_budget`).
        """
        return self.score_with((), query, max_postings=max_postings)[0]

    def score_with(
        self, siblings: Sequence[TermIndex], query: Sequence[str] | Mapping[str, float], *,
        max_postings: int | None = None,
    ) -> list[np.ndarray]:
        """Scores of this index and of `siblings` (the same counts under other weightings, see
        `sibling`) from one pass over the postings: word BM25 and TF-IDF read the columns once."""
        self._require_fitted()
        if not isinstance(query, Mapping):
            _check_tokens(query)
            query = Counter(query)
        views = [self, *siblings]
        if any(v._base is not self._base or v._delta is not self._delta for v in siblings):
            raise ValueError("score_with needs siblings sharing this index's counts")
        outs = [np.zeros(self.n_rows_, dtype=np.float32) for _ in views]
        vectors = [v.query_vector(query) for v in views]
        ids = vectors[0][0]
        if not len(ids):
            return outs
        keep = self._budget(ids, vectors[0][1], max_postings)
        offset = 0
        for seg in (self._base, self._delta_c):
            n = seg.shape[0]
            inside = keep & (ids < seg.shape[1])
            if n and inside.any():
                sub = seg[:, ids[inside]]
                if sub.nnz:
                    self._accumulate(views, vectors, ids, inside, sub, outs, offset)
            offset += n
        if self.n_docs_ < self.n_rows_:
            for out in outs:
                out[~self.alive_] = 0.0
        return outs

    @staticmethod
    def _accumulate(views: Sequence[TermIndex], vectors: Sequence[tuple[np.ndarray, np.ndarray]], ids: np.ndarray,
                    inside: np.ndarray, sub: sp.csc_matrix, outs: list[np.ndarray], offset: int) -> None:
        """Add one segment's postings (`sub`: its columns of the query terms) to each view's scores.

        Each score is one sparse matrix-vector product, (per-entry weight) @ (query weight x idf),
        in float32. A TF-IDF weight factors into (1 + ln tf) per entry times 1/norm per row, so the
        row factor is applied to the n scores afterwards instead of being gathered for every
        posting; BM25's saturation needs the row's length factor per entry. At 100,000 experts
        (about 1.9 M postings a query) this took the word scoring from 117 to about 44 ms; the
        gathers and the float64 bincounts it replaced were most of the query."""
        n = sub.shape[0]
        rows = sub.indices
        log_tf = None
        for view, (_, ws), out in zip(views, vectors, outs, strict=True):
            # the document side's idf (the query side's is in `ws` for TF-IDF)
            mult = (ws * view.idf_[ids])[inside].astype(np.float32)
            factor = view._row_factor[offset : offset + n]
            if view.weighting == "bm25":
                data = sub.data / (sub.data + factor.take(rows))
                out[offset : offset + n] += sp.csc_matrix((data, rows, sub.indptr), shape=sub.shape) @ mult
            else:
                if log_tf is None:
                    log_tf = np.log(sub.data)
                    log_tf += 1.0
                part = sp.csc_matrix((log_tf, rows, sub.indptr), shape=sub.shape) @ mult
                part *= factor
                out[offset : offset + n] += part

    def _budget(self, ids: np.ndarray, ws: np.ndarray, max_postings: int | None) -> np.ndarray:
        """Which query terms are scored. All of them, unless their postings add up to more than
        `max_postings`: then the most informative terms (query weight x idf) are taken while the
        postings they add stay within it, and the rest, the most frequent and least informative
        (a common character, 研究 at a million documents), are left out of this query. A corpus
        of a city's size stays under the default budget, so its ranking is exact (the CDL benchmark,
        1,033 experts and 11,177 documents: at most 0.11 M word and 0.95 M character postings)."""
        keep = np.ones(len(ids), dtype=bool)
        if max_postings is None:
            return keep
        df = self.df_[ids]
        if float(df.sum()) <= max_postings:
            return keep
        order = np.argsort(-(ws * self.idf_[ids]), kind="stable")
        within = np.cumsum(df[order]) <= max_postings
        within[0] = True
        keep[:] = False
        keep[order[within]] = True
        return keep

    def df_of(self, term: str) -> int:
        """How many live documents hold `term` (0 for a term the index does not know)."""
        self._require_fitted()
        j = self.vocabulary_.get(term)
        return 0 if j is None else int(self.df_[j])

    def entry_weights(self, rows: np.ndarray, term_ids: np.ndarray) -> np.ndarray:
        """Weights (idf included) of terms `term_ids` in documents `rows`, as a dense
        (rows x terms) array: a binary search per term in its sorted postings, so explaining a
        match costs the same at a thousand documents as at a million."""
        self._require_fitted()
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(rows), len(term_ids)), dtype=np.float32)
        if not len(rows) or not len(term_ids):
            return out
        nb = self._base.shape[0]
        base_rows = rows < nb
        tf = np.zeros_like(out)
        if base_rows.any():
            r = rows[base_rows]
            order = np.argsort(r, kind="stable")
            rs = r[order]  # sorted probes: the binary searches walk the postings forwards
            sub = np.zeros((len(r), len(term_ids)), dtype=np.float32)
            indptr = self._base.indptr
            for k, j in enumerate(term_ids):
                if j >= self._base.shape[1]:
                    continue
                lo, hi = int(indptr[j]), int(indptr[j + 1])
                if lo == hi:
                    continue
                postings = self._base.indices[lo:hi]
                pos = np.searchsorted(postings, rs)
                found = pos < (hi - lo)
                found[found] = postings[pos[found]] == rs[found]
                if found.any():
                    sub[order[found], k] = self._base.data[lo + pos[found]]
            tf[base_rows] = sub
        if (~base_rows).any():
            d = _widen(self._delta, len(self.vocabulary_))
            dense = d[rows[~base_rows] - nb][:, np.asarray(term_ids)].toarray()
            tf[~base_rows] = dense
        hit = tf > 0
        if hit.any():
            ri, ci = np.nonzero(hit)
            w = self._entry_weights(tf[ri, ci], rows[ri]) * self.idf_[np.asarray(term_ids)[ci]]
            w[~self.alive_[rows[ri]]] = 0.0
            out[ri, ci] = w
        return out

    def _weigh(self, tf: sp.csr_matrix, doc_len: np.ndarray) -> sp.csr_matrix:
        """Weights of count rows under the current statistics (rows given with their lengths)."""
        w = sp.csr_matrix(tf, dtype=np.float32, copy=True)
        if self.weighting == "bm25":
            dl = np.repeat(doc_len, np.diff(w.indptr))
            denom = w.data + self.k1 * (1.0 - self.b + self.b * dl / max(self.avgdl_, 1e-9))
            w.data = (w.data / denom) * self.idf_[w.indices]
        else:
            w.data = (1.0 + np.log(w.data)) * self.idf_[w.indices]
            norms = np.sqrt(np.asarray(w.multiply(w).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            w = sp.diags(1.0 / norms) @ w
        return sp.csr_matrix(w, dtype=np.float32)

    def transform(self, corpus: Sequence[Sequence[str]]) -> sp.csr_matrix:
        """Vectors of new documents in this index's space (unknown terms dropped): TF-IDF weights,
        or the raw term counts for BM25 (whose weights depend on the document's own length)."""
        self._require_fitted()
        _check_corpus(corpus)
        tf = _count(corpus, self.vocabulary_, grow=False)
        if self.weighting == "tfidf":
            return self._weigh(tf, np.asarray(tf.sum(axis=1)).ravel())
        return tf

    def counts(self, rows: Sequence[int] | np.ndarray | None = None) -> sp.csr_matrix:
        """The term counts of `rows` (default: all rows, masked ones included), as CSR."""
        self._require_fitted()
        v = len(self.vocabulary_)
        nb = self._base.shape[0]
        if rows is None:
            rows = np.arange(self.n_rows_)
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return sp.csr_matrix((0, v), dtype=np.float32)
        if rows.min() >= nb:
            return _widen(self._delta, v)[rows - nb]
        stacked = sp.vstack([_widen(self._base.tocsr(), v), _widen(self._delta, v)], format="csr")
        return stacked[rows]

    def weighted(self, rows: Sequence[int] | np.ndarray | None = None) -> sp.csr_matrix:
        """The weight matrix of `rows` under the current statistics (masked rows are zero)."""
        if rows is None:
            rows = np.arange(self.n_rows_)
        rows = np.asarray(rows, dtype=np.int64)
        w = self._weigh(self.counts(rows), self.doc_len_[rows])
        dead = ~self.alive_[rows]
        if dead.any():
            w = sp.csr_matrix(sp.diags((~dead).astype(np.float32)) @ w)
        return w

    def weighted_csc(self) -> sp.csc_matrix:
        """The whole weight matrix, column-compressed like the stored base (no CSR copy of it is
        made: at a million documents that copy was most of an LSA fit)."""
        self._require_fitted()
        if self._delta.shape[0]:
            return self.weighted().tocsc()
        base = self._base
        cols = np.repeat(np.arange(base.shape[1], dtype=np.int32), np.diff(base.indptr))
        rows = base.indices
        w = (self._entry_weights(base.data, rows) * self.idf_[cols]).astype(np.float32)
        w[~self.alive_[rows]] = 0.0
        return sp.csc_matrix((w, base.indices, base.indptr), shape=base.shape)

    @property
    def matrix_(self) -> sp.csc_matrix:
        """The full weight matrix (computed on demand: the index stores counts, not weights)."""
        return self.weighted().tocsc()

    # -- incremental updates --------------------------------------------------------------------


def rows_with(index: TermIndex, terms: Sequence[str]) -> list[np.ndarray]:
    """The live rows of `index` holding each of `terms` (sorted row numbers; empty for an unknown
    term): the postings, read without weighing them (co-occurrence of terms in the documents)."""
    index._require_fitted()
    out: list[np.ndarray] = []
    nb = index._base.shape[0]
    for term in terms:
        j = index.vocabulary_.get(term)
        if j is None:
            out.append(np.zeros(0, dtype=np.int64))
            continue
        parts = []
        for seg, offset in ((index._base, 0), (index._delta_c, nb)):
            if j < seg.shape[1]:
                parts.append(seg.indices[seg.indptr[j]:seg.indptr[j + 1]].astype(np.int64) + offset)
        rows = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
        out.append(rows[index.alive_[rows]] if index.n_docs_ < index.n_rows_ else rows)
    return out
