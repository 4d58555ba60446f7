"""Token lists into sparse count matrices, and the character n-grams of a text."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

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

