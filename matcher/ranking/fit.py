"""Fitting: the experts cut into units (`matcher.ranking.units`), the units' word and character
term indexes (`matcher.index.TermIndex`), then each signal's own part (`matcher.ranking.signal`).

The experts are read once, `chunk` at a time (a store's cursor: the records of a large pool are
never all in memory); each distinct piece of text is featurised once (`piece_counts`).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable

import numpy as np
import scipy.sparse as sp

from matcher.dense import text_key
from matcher.index import TermIndex
from matcher.models import Expert, expert_digest
from matcher.ranking import signal
from matcher.ranking.state import IndexCaches, IndexState, next_version
from matcher.ranking.units import (
    chars_many,
    expert_profile_text,
    expert_units,
    hash_unit,
    piece_counts,
    stack,
)
from matcher.tokens import as_source

Tokenize = Callable[[str], list[str]]


def dense_keys(texts: Iterable[str]) -> np.ndarray:
    """Dense-cache keys (`matcher.dense.text_key`) of texts, one row of 16 bytes each (uint8: a
    numpy bytes dtype would drop a digest's trailing zero bytes)."""
    keys = b"".join(text_key(t) for t in texts)
    return np.frombuffer(keys, dtype=np.uint8).reshape(-1, 16).copy()


def fit(index: IndexState, experts: Iterable[Expert], tokenize: Tokenize, *, chunk: int = 20_000) -> None:
    """Fit `index` (in place, as an estimator's `fit`) on `experts`."""
    if isinstance(experts, str | bytes):
        raise ValueError("expected a sequence of experts, got a string")
    source = as_source(tokenize)
    p = index.params
    building = [s for s in signal.registered() if s.builds(index)]
    accs = {s.name: s.start(index) for s in building}
    ids: list[str] = []
    digests: list[str] = []
    fields: list[str] = []
    texts: list[str] = []
    unit_expert, unit_hash, unit_dkey, expert_dkey = [], [], [], []
    ndocs: list[int] = []
    word_vocab: dict[str, int] = {}
    gram_vocab: dict[str, int] = {}
    word_blocks: list[sp.csr_matrix] = []
    gram_blocks: list[sp.csr_matrix] = []
    it = iter(experts)
    while batch := list(itertools.islice(it, chunk)):
        units = [u for i, e in enumerate(batch, start=len(ids))
                 for u in expert_units(e, i, char_abstracts=p.char_abstracts)]
        ids += [e.id for e in batch]
        digests += [expert_digest(e) for e in batch]
        ndocs += [len(e.documents) for e in batch]
        for s in building:
            s.collect(accs[s.name], batch, source)
        fields += [u.field for u in units]
        texts += [u.text for u in units]
        unit_expert.append(np.fromiter((u.expert for u in units), dtype=np.int64, count=len(units)))
        unit_hash.append(np.fromiter((hash_unit(u) for u in units), dtype=np.int64, count=len(units)))
        unit_dkey.append(dense_keys(u.dense for u in units))
        expert_dkey.append(dense_keys(expert_profile_text(e) for e in batch))
        word_blocks.append(piece_counts([u.words for u in units], source.many, word_vocab))
        gram_blocks.append(piece_counts([u.chars for u in units], chars_many, gram_vocab))
        del batch, units
    index.expert_ids_, index.digests_ = ids, digests
    index.unit_field_, index.unit_text_ = fields, texts
    index.unit_expert_ = np.concatenate(unit_expert) if unit_expert else np.zeros(0, dtype=np.int64)
    index.unit_hash_ = np.concatenate(unit_hash) if unit_hash else np.zeros(0, dtype=np.int64)
    index.unit_dkey_ = np.concatenate(unit_dkey) if unit_dkey else dense_keys(())
    index.expert_dkey_ = np.concatenate(expert_dkey) if expert_dkey else dense_keys(())
    index.dense_ = index.dense_shift_ = index.popularity_ = None  # attached by the owner
    words = stack(word_blocks, len(word_vocab))
    del word_blocks
    index.words_ = TermIndex("bm25", p.bm25_k1, p.bm25_b).fit_counts(words, list(word_vocab))
    index.words_tfidf_ = index.words_.sibling("tfidf")
    del words
    grams = stack(gram_blocks, len(gram_vocab))
    del gram_blocks
    index.chars_ = TermIndex("tfidf").fit_counts(grams, list(gram_vocab))
    del grams
    index.n_documents_ = np.asarray(ndocs, dtype=np.float32)
    index.expert_alive_ = np.ones(len(ids), dtype=bool)
    index.n_base_experts_ = len(ids)
    index.base_id_ = uuid.uuid4().hex[:12]
    index.version_ = next_version()
    index.caches = IndexCaches()
    index.parts_ = {}
    parts = {}
    for s in building:
        part = s.finish(accs.pop(s.name), index)
        if part is not None:
            parts[s.name] = part
    index.parts_ = parts
