"""Fitted sparse term indexes: BM25 and TF-IDF over token lists, and an LSA space.

A `TermIndex` maps a corpus of token lists to a sparse (documents x terms) matrix of per-term
weights, so that scoring a query is one sparse column slice and a dot product:

  * `weighting="bm25"`: Lucene's BM25 (the `bm25s` "lucene" variant, checked against it in the
    tests): idf = ln(1 + (N - df + 0.5) / (df + 0.5)), tf part = tf / (tf + k1 (1 - b + b dl/avgdl)).
  * `weighting="tfidf"`: sublinear tf (1 + ln tf) x smooth idf, rows L2-normalised, so a query
    vector normalised the same way gives the cosine.

`LsaSpace` is a TruncatedSVD of a TF-IDF matrix: a semantic signal that needs no download.

Estimators follow scikit-learn: `__init__` stores parameters, `fit(corpus) -> self`, learned state
ends in `_`, an unfitted index raises `IndexStateError`, and a bare `str` where a corpus is expected
raises `ValueError`. `save(folder)` writes plain files (JSON + .npz/.npy) that `load` reads with
`allow_pickle=False`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from matcher.errors import IndexStateError

FORMAT_VERSION = 1
_RUNS = re.compile(r"[0-9a-z][0-9a-z+#\-.]*|[\u3400-\u9fff\uf900-\ufaff]+")


def _check_corpus(corpus: Any) -> None:
    if isinstance(corpus, str | bytes):
        raise ValueError("expected a sequence of token lists (documents), got a single string")


def _check_tokens(tokens: Any) -> None:
    if isinstance(tokens, str | bytes):
        raise ValueError("expected a list of tokens, got a single string; tokenize it first")


class TermIndex:
    """A sparse document-term weight matrix (see the module docstring)."""

    def __init__(self, weighting: str = "bm25", k1: float = 1.2, b: float = 0.75) -> None:
        self.weighting = weighting
        self.k1 = k1
        self.b = b

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, corpus: Sequence[Sequence[str]]) -> TermIndex:
        _check_corpus(corpus)
        if self.weighting not in ("bm25", "tfidf"):
            raise ValueError(f"weighting must be 'bm25' or 'tfidf', not {self.weighting!r}")
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        for i, doc in enumerate(corpus):
            _check_tokens(doc)
            for tok in doc:
                j = vocab.setdefault(tok, len(vocab))
                rows.append(i)
                cols.append(j)
        n_docs = len(corpus)
        tf = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (np.asarray(rows, dtype=np.int64), np.asarray(cols))),
            shape=(n_docs, len(vocab)),
            dtype=np.float32,
        )
        tf.sum_duplicates()
        self.vocabulary_ = vocab
        self.n_docs_ = n_docs
        self.doc_len_ = np.asarray(tf.sum(axis=1)).ravel().astype(np.float32)
        self.df_ = np.bincount(tf.indices, minlength=len(vocab)).astype(np.float32)
        self.avgdl_ = float(self.doc_len_.mean()) if n_docs else 0.0
        self.idf_ = self._idf(self.df_, n_docs)
        self.matrix_ = self._weigh(tf).tocsc()
        return self

    def _idf(self, df: np.ndarray, n_docs: int) -> np.ndarray:
        if self.weighting == "bm25":
            return np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        return (np.log((1.0 + n_docs) / (1.0 + df)) + 1.0).astype(np.float32)

    def _weigh(self, tf: sp.csr_matrix) -> sp.csr_matrix:
        w = tf.copy()
        if self.weighting == "bm25":
            dl = np.repeat(self.doc_len_, np.diff(w.indptr))
            denom = w.data + self.k1 * (1.0 - self.b + self.b * dl / max(self.avgdl_, 1e-9))
            w.data = (w.data / denom) * self.idf_[w.indices]
        else:
            w.data = (1.0 + np.log(w.data)) * self.idf_[w.indices]
            norms = np.sqrt(np.asarray(w.multiply(w).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            w = sp.diags(1.0 / norms) @ w
        return sp.csr_matrix(w, dtype=np.float32)

    # -- querying -------------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if not hasattr(self, "matrix_"):
            raise IndexStateError("this index is not fitted yet: call fit() or load a saved one")

    @property
    def n_terms(self) -> int:
        self._require_fitted()
        return len(self.vocabulary_)

    def query_vector(self, weights: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """(term ids, weights) of the query terms known to the index."""
        self._require_fitted()
        ids, ws = [], []
        for term, w in weights.items():
            j = self.vocabulary_.get(term)
            if j is not None and w:
                ids.append(j)
                ws.append(w)
        ids_a = np.asarray(ids, dtype=np.int64)
        ws_a = np.asarray(ws, dtype=np.float32)
        if self.weighting == "tfidf" and len(ws_a):
            ws_a = ws_a * self.idf_[ids_a]
            ws_a = ws_a / max(float(np.linalg.norm(ws_a)), 1e-9)
        return ids_a, ws_a

    def score(self, query: Sequence[str] | Mapping[str, float]) -> np.ndarray:
        """Scores of every document for a query given as tokens or as {term: weight}.

        A token repeated in the query counts as often as it occurs (as in bm25s and Lucene);
        pass a mapping to weight terms otherwise.
        """
        self._require_fitted()
        if not isinstance(query, Mapping):
            _check_tokens(query)
            query = Counter(query)
        ids, ws = self.query_vector(query)
        if not len(ids):
            return np.zeros(self.n_docs_, dtype=np.float32)
        return np.asarray(self.matrix_[:, ids] @ ws).ravel()

    def contributions(self, doc: int, terms: Sequence[str]) -> dict[str, float]:
        """How much each query term adds to document `doc`'s score (for explanations)."""
        self._require_fitted()
        out: dict[str, float] = {}
        for term in terms:
            j = self.vocabulary_.get(term)
            if j is None:
                continue
            col = self.matrix_[:, j]
            v = float(col[doc, 0]) if col.nnz else 0.0
            if v > 0:
                out[term] = v
        return out

    def transform(self, corpus: Sequence[Sequence[str]]) -> sp.csr_matrix:
        """Weighted vectors of new documents in this index's space (unknown terms dropped)."""
        self._require_fitted()
        _check_corpus(corpus)
        rows, cols = [], []
        for i, doc in enumerate(corpus):
            _check_tokens(doc)
            for tok in doc:
                j = self.vocabulary_.get(tok)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        tf = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(corpus), self.n_terms)
        )
        tf.sum_duplicates()
        if self.weighting == "tfidf":
            return self._weigh(tf)
        return tf

    # -- persistence ----------------------------------------------------------------------------
    def save(self, folder: Path | str, name: str) -> None:
        self._require_fitted()
        folder = Path(folder)
        terms = [""] * len(self.vocabulary_)
        for t, j in self.vocabulary_.items():
            terms[j] = t
        meta = {
            "weighting": self.weighting,
            "k1": self.k1,
            "b": self.b,
            "n_docs": self.n_docs_,
            "avgdl": self.avgdl_,
            "terms": terms,
        }
        (folder / f"{name}.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        m = self.matrix_
        np.savez(
            folder / f"{name}.npz",
            data=m.data, indices=m.indices, indptr=m.indptr, shape=np.asarray(m.shape),
            idf=self.idf_, df=self.df_, doc_len=self.doc_len_,
        )

    @classmethod
    def load(cls, folder: Path | str, name: str) -> TermIndex:
        folder = Path(folder)
        meta = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        self = cls(meta["weighting"], meta["k1"], meta["b"])
        with np.load(folder / f"{name}.npz", allow_pickle=False) as z:
            shape = tuple(int(x) for x in z["shape"])
            self.matrix_ = sp.csc_matrix((z["data"], z["indices"], z["indptr"]), shape=shape)
            self.idf_ = z["idf"]
            self.df_ = z["df"]
            self.doc_len_ = z["doc_len"]
        self.vocabulary_ = {t: j for j, t in enumerate(meta["terms"])}
        self.n_docs_ = int(meta["n_docs"])
        self.avgdl_ = float(meta["avgdl"])
        return self


class LsaSpace:
    """Latent semantic space: TruncatedSVD of a TF-IDF document matrix, rows L2-normalised."""

    def __init__(self, n_components: int = 128, random_state: int = 0) -> None:
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, tfidf: TermIndex) -> LsaSpace:
        from sklearn.decomposition import TruncatedSVD

        x = tfidf.matrix_.tocsr()
        k = max(1, min(self.n_components, min(x.shape) - 1))
        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=5, random_state=self.random_state)
        emb = svd.fit_transform(x).astype(np.float32)
        self.components_ = svd.components_.astype(np.float32)
        self.embeddings_ = _l2(emb)
        return self

    def embed(self, x: sp.spmatrix) -> np.ndarray:
        if not hasattr(self, "components_"):
            raise IndexStateError("the LSA space is not fitted yet")
        return _l2(np.asarray(x @ self.components_.T, dtype=np.float32))

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
        if L < n_min:
            grams.append(run)
    return grams

