"""Fitted sparse term indexes: BM25 and TF-IDF over token lists, and an LSA space.

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

`LsaSpace` is a TruncatedSVD of a TF-IDF matrix: a semantic signal that needs no download. Its
basis does not follow updates (new documents are projected onto it); see `matcher.rank`.

Estimators follow scikit-learn: `__init__` stores parameters, `fit(corpus) -> self`, learned state
ends in `_`, an unfitted index raises `IndexStateError`, and a bare `str` where a corpus is expected
raises `ValueError`. `save(folder, name)` writes plain files (JSON + .npz/.npy) that `load` reads
with `allow_pickle=False`; `save_delta` writes only what changed since the base segment was made.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from matcher.errors import IndexStateError

FORMAT_VERSION = 5  # 4: memory-mappable .npy base segments, shared BM25/TF-IDF counts; 5: dense keys
_RUNS = re.compile(r"[0-9a-z][0-9a-z+#\-.]*|[\u3400-\u9fff\uf900-\ufaff]+")


def _check_corpus(corpus: Any) -> None:
    if isinstance(corpus, str | bytes):
        raise ValueError("expected a sequence of token lists (documents), got a single string")


def _check_tokens(tokens: Any) -> None:
    if isinstance(tokens, str | bytes):
        raise ValueError("expected a list of tokens, got a single string; tokenize it first")


def _count(corpus: Sequence[Sequence[str]], vocab: dict[str, int], *, grow: bool = True) -> sp.csr_matrix:
    """Term counts of token lists. With `grow`, unseen terms are appended to `vocab` (in place)."""
    rows: list[int] = []
    cols: list[int] = []
    for i, doc in enumerate(corpus):
        _check_tokens(doc)
        for tok in doc:
            j = vocab.setdefault(tok, len(vocab)) if grow else vocab.get(tok)
            if j is not None:
                rows.append(i)
                cols.append(j)
    coords = (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))
    tf = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), coords),
        shape=(len(corpus), len(vocab)),
        dtype=np.float32,
    )
    tf.sum_duplicates()
    return tf


def _sublinear_sq(m: sp.spmatrix) -> sp.spmatrix:
    """The same matrix with each count tf replaced by (1 + ln tf)^2, in float64."""
    out = m.astype(np.float64, copy=True)
    out.data = np.square(1.0 + np.log(out.data))
    return out


def _sums(m: sp.spmatrix, L: np.ndarray) -> np.ndarray:
    """(S0, S1, S2) of the rows of count matrix `m` (see `TermIndex._norm_sums`)."""
    out = np.zeros((3, m.shape[0]), dtype=np.float64)
    if m.shape[0] and m.nnz:
        q = _sublinear_sq(m)
        width = q.shape[1]
        out[0] = np.asarray(q.sum(axis=1)).ravel()
        out[1] = q @ L[:width]
        out[2] = q @ (L[:width] ** 2)
    return out


def _widen(m: sp.csr_matrix, n_cols: int) -> sp.csr_matrix:
    """The same rows with more (empty) columns: new terms added to the vocabulary since."""
    if m.shape[1] == n_cols:
        return m
    return sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], n_cols))


class TermIndex:
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
        """The live rows holding each of `terms` (sorted row numbers; empty for an unknown term):
        the postings, read without weighing them (co-occurrence of terms in the documents)."""
        self._require_fitted()
        out: list[np.ndarray] = []
        nb = self._base.shape[0]
        for term in terms:
            j = self.vocabulary_.get(term)
            if j is None:
                out.append(np.zeros(0, dtype=np.int64))
                continue
            parts = []
            for seg, offset in ((self._base, 0), (self._delta_c, nb)):
                if j < seg.shape[1]:
                    parts.append(seg.indices[seg.indptr[j]:seg.indptr[j + 1]].astype(np.int64) + offset)
            rows = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
            out.append(rows[self.alive_[rows]] if self.n_docs_ < self.n_rows_ else rows)
        return out

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
    def updated(self, add: Sequence[Sequence[str]] = (), remove: Iterable[int] = ()) -> TermIndex:
        """A new index with the documents `add` appended and the rows `remove` masked out.

        `self` is left as it was (readers on other threads may be using it); the base segment is
        shared, not copied. Appended documents get the next row numbers, in order.
        """
        self._require_fitted()
        _check_corpus(add)
        gone = np.unique(np.fromiter((int(r) for r in remove), dtype=np.int64))
        if len(gone) and (gone[0] < 0 or gone[-1] >= self.n_rows_):
            raise IndexError(f"row {int(gone[0] if gone[0] < 0 else gone[-1])} is not in this index")
        gone = gone[self.alive_[gone]]
        if not len(add) and not len(gone):
            return self
        new = copy.copy(self)
        unseen = {t for doc in add for t in doc if t not in self.vocabulary_}
        vocab = self.vocabulary_
        if unseen:
            # Copy before growing: the old index keeps its own vocabulary.
            vocab = dict(self.vocabulary_)
        added = _count(add, vocab)
        n_terms = len(vocab)
        if unseen:
            new.vocabulary_ = vocab
            new.terms_ = [*self.terms_, *list(vocab)[len(self.terms_) :]]
        new._set_delta(sp.vstack([_widen(self._delta, n_terms), added], format="csr"))
        added_len = np.asarray(added.sum(axis=1)).ravel().astype(np.float32)
        alive = np.concatenate([self.alive_, np.ones(len(add), dtype=bool)])
        alive[gone] = False
        new.alive_ = alive
        new.doc_len_ = np.concatenate([self.doc_len_, added_len])
        df = np.zeros(n_terms, dtype=np.float32)
        df[: len(self.df_)] = self.df_
        df += np.bincount(added.indices, minlength=n_terms).astype(np.float32)
        df[: len(self.df_)] -= self._df_of(gone)
        new.df_ = df
        new.n_docs_ = self.n_docs_ - len(gone) + len(add)
        removed_len = float(self.doc_len_[gone].sum(dtype=np.float64))
        new._total_len = self._total_len - removed_len + float(added_len.sum(dtype=np.float64))
        new.n_changed_ = self.n_changed_ + len(add) + len(gone)
        new._refresh(self)
        return new

    def _df_of(self, rows: np.ndarray) -> np.ndarray:
        """How many of `rows` contain each term (over this index's current vocabulary)."""
        out = np.zeros(len(self.vocabulary_), dtype=np.float32)
        nb = self._base.shape[0]
        in_base = rows[rows < nb]
        if len(in_base):
            mask = np.zeros(nb, dtype=bool)
            mask[in_base] = True
            hits = np.flatnonzero(mask[self._base.indices])
            cols = np.searchsorted(self._base.indptr, hits, side="right") - 1
            out[: self._base.shape[1]] += np.bincount(cols, minlength=self._base.shape[1]).astype(np.float32)
        in_delta = rows[rows >= nb] - nb
        if len(in_delta):
            sub = self._delta[in_delta]
            out[: sub.shape[1]] += np.bincount(sub.indices, minlength=sub.shape[1]).astype(np.float32)
        return out

    def compacted(self, rows: Sequence[int] | np.ndarray | None = None) -> TermIndex:
        """A freshly fitted index over `rows` (default: the live rows, in order), from the stored
        counts: no delta, no masked rows, no unused terms; terms numbered by first appearance."""
        self._require_fitted()
        rows = np.flatnonzero(self.alive_) if rows is None else np.asarray(rows, dtype=np.int64)
        tf = self.counts(rows)
        tf.sort_indices()
        used, first = np.unique(tf.indices, return_index=True)
        keep = used[np.argsort(first, kind="stable")]
        remap = np.full(len(self.vocabulary_), -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        tf = sp.csr_matrix((tf.data, remap[tf.indices], tf.indptr), shape=(len(rows), len(keep)),
                           dtype=np.float32)
        tf.sort_indices()
        fresh = TermIndex(self.weighting, self.k1, self.b)
        return fresh._fit_counts(tf, [self.terms_[j] for j in keep])

    # -- persistence ----------------------------------------------------------------------------
    def _stats_meta(self) -> dict[str, Any]:
        return {"n_docs": self.n_docs_, "total_len": self._total_len, "n_changed": self.n_changed_,
                "n_base_rows": self._base.shape[0], "n_base_terms": self._base.shape[1]}

    def _stats_arrays(self) -> dict[str, np.ndarray]:
        d = self._delta
        out = {"delta_data": d.data, "delta_indices": d.indices, "delta_indptr": d.indptr,
               "delta_shape": np.asarray(d.shape), "alive": self.alive_, "doc_len": self.doc_len_,
               "df": self.df_}
        if self.weighting == "tfidf":
            out["norm_sums"] = self._sums  # see `_refresh`
        return out

    def save(self, folder: Path | str, name: str) -> None:
        """Everything, as `name.json` (parameters, terms, statistics) and `name.npz` (arrays)."""
        self._require_fitted()
        folder = Path(folder)
        meta = {"weighting": self.weighting, "k1": self.k1, "b": self.b, "avgdl": self.avgdl_,
                "terms": self.terms_, **self._stats_meta()}
        (folder / f"{name}.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        m = self._base
        # The base segment's arrays are plain .npy files (memory-mappable); the rest is small.
        for part in ("data", "indices", "indptr"):
            np.save(folder / f"{name}.{part}.npy", getattr(m, part))
        np.savez(folder / f"{name}.npz", shape=np.asarray(m.shape), **self._stats_arrays())

    def save_delta(self, folder: Path | str, name: str) -> None:
        """Only what changed since the base segment was made: the delta rows, the terms they
        added, the masks and statistics. `load(base_folder, name, delta=folder)` reads it back."""
        self._require_fitted()
        folder = Path(folder)
        meta = {**self._stats_meta(), "new_terms": self.terms_[self._base.shape[1] :]}
        (folder / f"{name}.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        np.savez(folder / f"{name}.npz", **self._stats_arrays())

    @classmethod
    def load(cls, folder: Path | str, name: str, *, delta: Path | str | None = None, mmap: bool = False) -> TermIndex:
        """Read a saved index (and its `delta`). With `mmap`, the base segment's arrays are mapped
        read-only from their files instead of read into memory."""
        folder = Path(folder)
        meta = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        self = cls(meta["weighting"], meta["k1"], meta["b"])
        mode = "r" if mmap else None
        base = [np.load(folder / f"{name}.{part}.npy", allow_pickle=False, mmap_mode=mode)
                for part in ("data", "indices", "indptr")]
        with np.load(folder / f"{name}.npz", allow_pickle=False) as z:
            shape = tuple(int(x) for x in z["shape"])
            arrays = {k: z[k] for k in z.files if k != "shape"}
        if len(base[2]) != shape[1] + 1 or len(base[0]) != len(base[1]) or len(base[0]) != int(base[2][-1]):
            raise IndexStateError(f"the saved index {name} in {folder} is inconsistent; rebuild it")
        self._base = sp.csc_matrix(shape, dtype=np.float32)
        # Set the arrays directly: the constructor would check (read) every index, and may copy.
        self._base.data, self._base.indices, self._base.indptr = base
        self._base.has_sorted_indices = True
        stats, terms = meta, list(meta["terms"])
        if delta is not None:
            dmeta = json.loads((Path(delta) / f"{name}.json").read_text(encoding="utf-8"))
            if (dmeta["n_base_rows"], dmeta["n_base_terms"]) != shape:
                raise IndexStateError(f"the update of {name} in {delta} belongs to another base index")
            with np.load(Path(delta) / f"{name}.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            stats, terms = dmeta, terms[: shape[1]] + list(dmeta["new_terms"])
        dshape = tuple(int(x) for x in arrays["delta_shape"])
        self.terms_ = terms
        self.vocabulary_ = {t: j for j, t in enumerate(terms)}
        self._set_delta(sp.csr_matrix((arrays["delta_data"], arrays["delta_indices"], arrays["delta_indptr"]),
                                      shape=dshape))
        self.alive_ = arrays["alive"].astype(bool)
        self.doc_len_ = arrays["doc_len"]
        self.df_ = arrays["df"]
        self.n_docs_ = int(stats["n_docs"])
        self.n_changed_ = int(stats["n_changed"])
        self._total_len = float(stats["total_len"])
        if len(self.alive_) != self.n_rows_ or len(self.df_) != len(terms) or dshape[1] != len(terms):
            raise IndexStateError(f"the saved index {name} in {folder} is inconsistent; rebuild it")
        self._refresh(norm_sums=arrays.get("norm_sums"))
        return self


class LsaSpace:
    """Latent semantic space: TruncatedSVD of a TF-IDF document matrix, rows L2-normalised."""

    def __init__(self, n_components: int = 128, random_state: int = 0) -> None:
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, tfidf: TermIndex, *, sample: int | None = None, chunk: int = 50_000) -> LsaSpace:
        """Fit on the live rows of `tfidf` (on `sample` of them, drawn with the random state, when
        there are more), then embed every row, `chunk` rows at a time: the basis of a large corpus
        is learned from a sample and the full weighted matrix is never held at once."""
        from sklearn.decomposition import TruncatedSVD

        rows = np.arange(tfidf.n_rows_)
        fit_rows = rows
        if sample is not None and len(rows) > sample:
            rng = np.random.default_rng(self.random_state)
            fit_rows = np.sort(rng.choice(rows, size=sample, replace=False))
        x = tfidf.weighted(fit_rows)
        k = max(1, min(self.n_components, min(x.shape) - 1))
        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=5, random_state=self.random_state)
        svd.fit(x)
        self.components_ = svd.components_.astype(np.float32)
        if len(fit_rows) == len(rows):
            self.embeddings_ = self.embed(x)
        else:
            del x
            self.embeddings_ = _l2(np.asarray(tfidf.weighted_csc() @ self.components_.T, dtype=np.float32))
        return self

    def embed(self, x: sp.spmatrix) -> np.ndarray:
        """L2-normalised embeddings of TF-IDF rows; terms the space was not fitted on are ignored."""
        if not hasattr(self, "components_"):
            raise IndexStateError("the LSA space is not fitted yet")
        n_features = self.components_.shape[1]
        x = sp.csr_matrix(x)
        if x.shape[1] != n_features:
            x = x[:, :n_features] if x.shape[1] > n_features else _widen(x, n_features)
        return _l2(np.asarray(x @ self.components_.T, dtype=np.float32))

    def with_embeddings(self, embeddings: np.ndarray) -> LsaSpace:
        """The same space holding other document embeddings (after an incremental update)."""
        new = copy.copy(self)
        new.embeddings_ = embeddings
        return new

    def save(self, folder: Path | str, name: str) -> None:
        np.save(Path(folder) / f"{name}.components.npy", self.components_)
        np.save(Path(folder) / f"{name}.embeddings.npy", self.embeddings_)

    @classmethod
    def load(cls, folder: Path | str, name: str, *, mmap: bool = False) -> LsaSpace:
        self = cls()
        mode = "r" if mmap else None
        self.components_ = np.load(Path(folder) / f"{name}.components.npy", allow_pickle=False)
        self.embeddings_ = np.load(Path(folder) / f"{name}.embeddings.npy", allow_pickle=False, mmap_mode=mode)
        self.n_components = self.components_.shape[0]
        return self


def _l2(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


def char_ngrams(text: str, n_min: int = 2, n_max: int = 3) -> list[str]:
    """Character n-grams of normalised text inside runs of CJK/alphanumerics (no cross-word grams).

    Robust to segmentation errors and unseen terms: 真空层激光焊 shares 激光, 光焊 … with 激光焊接.
    """
    grams: list[str] = []
    for run in _RUNS.findall(text):
        if run.isascii():
            grams.append(run)  # a Latin word is one gram: 'plc', 'sic', 'li-ion'
            continue
        L = len(run)
        for n in range(n_min, n_max + 1):
            grams.extend(run[i : i + n] for i in range(L - n + 1))
        if n_min > L:
            grams.append(run)
    return grams

