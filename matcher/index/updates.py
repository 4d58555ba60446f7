"""A term index's incremental updates: rows appended and masked with exact statistics, and
compaction (a fresh fit over the stored counts). Part of `TermIndex` (see `matcher.index.terms`)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Self

import numpy as np
import scipy.sparse as sp

from matcher.index.counts import _check_corpus, _count, _widen


class TermUpdates:
    """`TermIndex.updated`, `TermIndex.compacted`."""

    def updated(self, add: Sequence[Sequence[str]] = (), remove: Iterable[int] = ()) -> Self:
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

    def compacted(self, rows: Sequence[int] | np.ndarray | None = None) -> Self:
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
        fresh = type(self)(self.weighting, self.k1, self.b)
        return fresh._fit_counts(tf, [self.terms_[j] for j in keep])

    # -- persistence ----------------------------------------------------------------------------
