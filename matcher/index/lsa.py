"""`LsaSpace`: a TruncatedSVD of a TF-IDF matrix, a semantic signal that needs no download. Its basis
does not follow updates (new documents are projected onto it)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from matcher.errors import IndexStateError
from matcher.index.counts import _widen
from matcher.index.terms import TermIndex


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


