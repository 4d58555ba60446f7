"""Incremental updates and compaction: a new index state from an old one, the old one untouched
(readers on other threads keep a consistent index).

`updated(upserts, removed, tokenize)` re-indexes changed experts (masked at their old position and
appended) and masks removed ones, tokenising only the changed experts. The lexical signals then
equal those of a fresh `fit` on the same experts up to float32 rounding (`matcher.index` keeps exact
statistics). The LSA signal is the one approximation: new documents are projected onto the
LSA basis fitted before. `drift` is the share of documents added or removed since that fit; above
a threshold the owner calls `compacted()`, which refits from the stored counts (no tokenising).
Each signal follows with its own `updated` / `compacted` (`matcher.ranking.signal`).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterable
from typing import TypeVar

import numpy as np

from matcher.models import Expert, expert_digest
from matcher.ranking import signal
from matcher.ranking.fit import dense_keys
from matcher.ranking.signal import Compaction, Growth
from matcher.ranking.state import IndexState, next_version
from matcher.ranking.units import chars_of, expand, expert_profile_text, expert_units, hash_unit
from matcher.tokens import as_source

Tokenize = Callable[[str], list[str]]
S = TypeVar("S", bound=IndexState)


def updated(index: S, upserts: Iterable[Expert], removed: Iterable[str], tokenize: Tokenize) -> S:
    """A new index with `upserts` (new or changed experts) indexed and `removed` ids dropped.
    An expert whose record is unchanged is skipped; unknown ids in `removed` are ignored."""
    index.require_fitted()
    if isinstance(upserts, str | bytes):
        raise ValueError("expected experts, got a string")
    pos = index.positions()
    latest = {e.id: e for e in upserts}
    changed = [e for e in latest.values()
               if e.id not in pos or index.digests_[pos[e.id]] != expert_digest(e)]
    gone = {pos[i] for i in removed if i in pos} | {pos[e.id] for e in changed if e.id in pos}
    dead = np.asarray(sorted(gone), dtype=np.int64)
    if not changed and not len(dead):
        return index
    n0, u0 = len(index.expert_ids_), len(index.unit_expert_)
    units = [u for k, e in enumerate(changed)
             for u in expert_units(e, n0 + k, char_abstracts=index.params.char_abstracts)]
    source = as_source(tokenize)
    pieces = list(dict.fromkeys(t for u in units for t, _ in u.words))
    feats = dict(zip(pieces, source.many(pieces), strict=True))
    unit_tokens = [expand(u.words, feats) for u in units]
    grams = {t: chars_of(t) for t in dict.fromkeys(t for u in units for t, _ in u.chars)}
    dead_units = np.flatnonzero(np.isin(index.unit_expert_, dead))

    new = copy.copy(index)
    new.version_ = next_version()
    new.words_ = index.words_.updated(unit_tokens, dead_units)
    new.words_tfidf_ = new.words_.sibling("tfidf", like=index.words_tfidf_)
    new.chars_ = index.chars_.updated([expand(u.chars, grams) for u in units], dead_units)
    new.expert_ids_ = [*index.expert_ids_, *(e.id for e in changed)]
    new.digests_ = [*index.digests_, *(expert_digest(e) for e in changed)]
    alive = np.concatenate([index.expert_alive_, np.ones(len(changed), dtype=bool)])
    alive[dead] = False
    new.expert_alive_ = alive
    local = np.asarray([u.expert - n0 for u in units], dtype=np.int64)
    new.unit_expert_ = np.concatenate([index.unit_expert_, local + n0])
    new.unit_field_ = [*index.unit_field_, *(u.field for u in units)]
    new.unit_text_ = [*index.unit_text_, *(u.text for u in units)]
    new.unit_dkey_ = np.concatenate([index.unit_dkey_, dense_keys(u.dense for u in units)])
    new.expert_dkey_ = np.concatenate([index.expert_dkey_,
                                       dense_keys(expert_profile_text(e) for e in changed)])
    hashes = np.fromiter((hash_unit(u) for u in units), dtype=np.int64, count=len(units))
    new.unit_hash_ = np.concatenate([index.unit_hash_, hashes])
    new.n_documents_ = np.concatenate([index.n_documents_,
                                       np.asarray([len(e.documents) for e in changed], dtype=np.float32)])
    if index.popularity_ is not None:  # a new expert has no record over the bank yet
        new.popularity_ = np.concatenate([index.popularity_, np.zeros(len(changed), dtype=np.float32)])
    if index.dense_ is not None:  # the new rows wait for their vectors (`with_dense`)
        new.dense_ = index.dense_.extended(len(new.unit_dkey_), len(new.expert_dkey_))
    new_pos = dict(pos)  # the cached dict's own copy: C-level, not a Python pass over every expert
    for i in dead:
        new_pos.pop(index.expert_ids_[i], None)
    new_pos.update((e.id, n0 + k) for k, e in enumerate(changed))
    new.caches.put(new.version_, "positions", new_pos)
    growth = Growth(index, new, changed, n0, units, u0, unit_tokens, dead, dead_units, source)
    new.parts_ = {s.name: s.updated(part, growth) for s, part in signal.fitted(index) if part is not None}
    return new


def compacted(index: S) -> S:
    """The live experts re-indexed from the stored term counts, in id order (as a fresh fit over a
    store would be), with the semantic space refitted: what a full rebuild gives, without
    tokenising. Drift starts again from zero."""
    index.require_fitted()
    ids = index.expert_ids_
    order = np.asarray(sorted(np.flatnonzero(index.expert_alive_), key=lambda i: ids[i]), dtype=np.int64)
    newpos = np.full(len(ids), -1, dtype=np.int64)
    newpos[order] = np.arange(len(order))
    rows = np.flatnonzero(index.expert_alive_[index.unit_expert_])
    rows = rows[np.lexsort((rows, newpos[index.unit_expert_[rows]]))]
    new = copy.copy(index)
    new.version_ = next_version()
    new.words_ = index.words_.compacted(rows)
    new.words_tfidf_ = new.words_.sibling("tfidf")
    new.chars_ = index.chars_.compacted(rows)
    new.expert_ids_ = [ids[i] for i in order]
    new.digests_ = [index.digests_[i] for i in order]
    new.expert_alive_ = np.ones(len(order), dtype=bool)
    new.n_base_experts_ = len(order)
    new.unit_expert_ = newpos[index.unit_expert_[rows]]
    new.unit_field_ = [index.unit_field_[r] for r in rows]
    new.unit_text_ = [index.unit_text_[r] for r in rows]
    new.unit_hash_ = index.unit_hash_[rows]
    new.unit_dkey_ = index.unit_dkey_[rows]
    new.expert_dkey_ = index.expert_dkey_[order]
    new.n_documents_ = index.n_documents_[order]
    new.popularity_ = None if index.popularity_ is None else index.popularity_[order]
    # the same vectors in the new order; the centre is kept (as the LSA basis was, until now)
    new.dense_ = None if index.dense_ is None else index.dense_.take(rows, order)
    new.base_id_ = uuid.uuid4().hex[:12]
    new.parts_ = {}
    compaction = Compaction(index, new, order, rows)
    parts = {}
    for s, part in signal.fitted(index):
        if part is None:
            continue
        got = s.compacted(part, compaction)
        if got is not None:
            parts[s.name] = got
    new.parts_ = parts
    return new
