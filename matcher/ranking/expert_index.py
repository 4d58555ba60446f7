"""The expert index: every signal over one set of experts, fitted, updated incrementally, saved.

`fit(experts, tokenize)` indexes the units of every expert (`matcher.ranking.units`) in the term
indexes of `matcher.index` (word BM25 and TF-IDF sharing one count matrix, character n-grams, the
LSA space); `score(query)` runs the stages: candidate scoring per signal (`signals`), expert
aggregation (`aggregate`), fusion (`fusion`); `explain_many` says why (`explain`); `save`/`load`
write and read the folder (`persist`).

Incremental updates. `updated(upserts, removed, tokenize)` returns a new index in which changed
experts are re-indexed and removed ones masked out, tokenising only the changed experts. The
lexical signals are then equal to those of a fresh `fit` on the same experts up to float32
rounding (`matcher.index` keeps exact statistics). The semantic signal is the one approximation:
new documents are projected onto the LSA basis fitted before. `drift` is the share of documents
added or removed since that fit; above a threshold the owner calls `compacted()`, which refits
from the stored counts (no tokenising). Each expert carries a digest of its record
(`live_digests`), so the owner can tell which experts a store holds that the index does not
reflect. An index is saved as a base folder plus, after updates, a small `delta-*` folder.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np
import scipy.sparse as sp

from matcher.dense import DenseVectors, Lookup, assemble, text_key
from matcher.errors import IndexStateError
from matcher.index import LsaSpace, TermIndex
from matcher.models import Expert, Explanation, expert_digest
from matcher.ranking import persist
from matcher.ranking.aggregate import Layout
from matcher.ranking.explain import explain_many
from matcher.ranking.fusion import Scored, fuse
from matcher.ranking.query import Query
from matcher.ranking.signals import UnitScores, prior, signals
from matcher.ranking.units import (
    chars_many,
    chars_of,
    declared_text,
    expand,
    expert_profile_text,
    expert_units,
    hash_unit,
    piece_counts,
    stack,
)
from matcher.tokens import as_source

Tokenize = Callable[[str], list[str]]


def _keys(texts: Iterable[str]) -> np.ndarray:
    """Dense-cache keys (`matcher.dense.text_key`) of texts, one row of 16 bytes each (uint8: a
    numpy bytes dtype would drop a digest's trailing zero bytes)."""
    keys = b"".join(text_key(t) for t in texts)
    return np.frombuffer(keys, dtype=np.uint8).reshape(-1, 16).copy()


class ExpertIndex:
    """Every signal over one set of experts. `fit(experts, tokenize)`, then `score(query)`."""

    #: Signals kept in the index only when their fusion weight is not zero (or `build_all`): each
    #: costs as much memory as the document index itself, and the defaults do not use them.
    OPTIONAL: tuple[str, ...] = ("profile", "fields")
    #: The term indexes a saved index holds (`persist`).
    TERM_INDEXES: tuple[str, ...] = ("units", "chars", *OPTIONAL)
    #: Score the lexical signals by top-k retrieval with dynamic pruning (`matcher.ranking.pruned`):
    #: the same votes as scoring every posting, from a fraction of the postings. Set per index by
    #: the owner (the engine: `MATCHER_TOPK_PRUNING`).
    pruning: bool = False

    def __init__(
        self,
        *,
        k1: float = 1.2,
        b: float = 0.75,
        knn_k: int = 100,
        lsa_dims: int = 128,
        weights: Mapping[str, float] | None = None,
        char_abstracts: bool = False,
        build_all: bool = False,
        lsa_sample: int = 60_000,
        max_postings: int = 0,
        semantic_exhaustive: int = 0,
        diversify_slots: int = 0,
        length_norm: float = 0.0,
        list_floor: float = 0.0,
        popularity_weight: float = 0.0,
    ) -> None:
        self.k1 = k1
        self.b = b
        self.knn_k = knn_k
        self.lsa_dims = lsa_dims
        self.weights = dict(weights or {"docs": 1.0, "profile": 0.6, "fields": 0.5, "chars": 0.4, "semantic": 0.3})
        self.char_abstracts = char_abstracts
        self.build_all = build_all
        self.lsa_sample = lsa_sample
        # Query-time work bounds (0: none), see `TermIndex._budget` and `signals`.
        self.max_postings = max_postings
        self.semantic_exhaustive = semantic_exhaustive
        self.diversify_slots = diversify_slots
        self.length_norm = length_norm  # expert-level length normalisation of the votes (aggregate)
        self.list_floor = list_floor  # experts below this share of the best fused score are not listed
        self.popularity_weight = popularity_weight  # the demand bank's discount (fusion.discount_popular)

    def _builds(self, name: str) -> bool:
        return self.build_all or bool(self.weights.get(name, 0.0))

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, experts: Iterable[Expert], tokenize: Tokenize, *, chunk: int = 20_000) -> ExpertIndex:
        """Index `experts` (any iterable: a store's cursor is read once, `chunk` experts at a time,
        so the records of a large pool are never all in memory). `tokenize` may be a
        `matcher.tokens.TokenSource` (cache, processes)."""
        if isinstance(experts, str | bytes):
            raise ValueError("expected a sequence of experts, got a string")
        source = as_source(tokenize)
        self.expert_ids_, self.digests_ = [], []
        self.unit_field_, self.unit_text_ = [], []
        unit_expert: list[np.ndarray] = []
        unit_hash: list[np.ndarray] = []
        unit_dkey: list[np.ndarray] = []
        expert_dkey: list[np.ndarray] = []
        ndocs: list[int] = []
        declared: list[list[str]] = []
        word_vocab: dict[str, int] = {}
        gram_vocab: dict[str, int] = {}
        word_blocks: list[sp.csr_matrix] = []
        gram_blocks: list[sp.csr_matrix] = []
        it = iter(experts)
        while batch := list(itertools.islice(it, chunk)):
            n0 = len(self.expert_ids_)
            units = [u for i, e in enumerate(batch, start=n0)
                     for u in expert_units(e, i, char_abstracts=self.char_abstracts)]
            self.expert_ids_ += [e.id for e in batch]
            self.digests_ += [expert_digest(e) for e in batch]
            ndocs += [len(e.documents) for e in batch]
            if self._builds("fields"):
                declared += source.many([declared_text(e) for e in batch])
            self.unit_field_ += [u.field for u in units]
            self.unit_text_ += [u.text for u in units]
            unit_expert.append(np.fromiter((u.expert for u in units), dtype=np.int64, count=len(units)))
            unit_hash.append(np.fromiter((hash_unit(u) for u in units), dtype=np.int64, count=len(units)))
            unit_dkey.append(_keys(u.dense for u in units))
            expert_dkey.append(_keys(expert_profile_text(e) for e in batch))
            word_blocks.append(piece_counts([u.words for u in units], source.many, word_vocab))
            gram_blocks.append(piece_counts([u.chars for u in units], chars_many, gram_vocab))
            del batch, units
        n = len(self.expert_ids_)
        self.unit_expert_ = np.concatenate(unit_expert) if unit_expert else np.zeros(0, dtype=np.int64)
        self.unit_hash_ = np.concatenate(unit_hash) if unit_hash else np.zeros(0, dtype=np.int64)
        self.unit_dkey_ = np.concatenate(unit_dkey) if unit_dkey else _keys(())
        self.expert_dkey_ = np.concatenate(expert_dkey) if expert_dkey else _keys(())
        self.dense_ = None  # attached by the owner from a vector cache (`with_dense`)
        self.dense_shift_ = None  # subtracted from a centred query vector (`with_dense_bank`)
        self.popularity_ = None  # per expert position, from the demand bank (`with_popularity`)
        words = stack(word_blocks, len(word_vocab))
        del word_blocks
        self.units_ = TermIndex("bm25", self.k1, self.b).fit_counts(words, list(word_vocab))
        self.word_tfidf_ = self.units_.sibling("tfidf")
        grams = stack(gram_blocks, len(gram_vocab))
        del gram_blocks
        self.chars_ = TermIndex("tfidf").fit_counts(grams, list(gram_vocab))
        del grams
        self.profile_ = self.fields_ = None
        if self._builds("profile"):
            n_units = len(self.unit_expert_)
            owner = sp.csr_matrix((np.ones(n_units, dtype=np.float32), (self.unit_expert_, np.arange(n_units))),
                                  shape=(n, n_units))
            self.profile_ = TermIndex("bm25", self.k1, self.b).fit_counts(owner @ words, list(word_vocab))
        del words
        if self._builds("fields"):
            self.fields_ = TermIndex("bm25", self.k1, self.b).fit(declared)
        self._fit_semantic()
        self.n_documents_ = np.asarray(ndocs, dtype=np.float32)
        self.prior_ = prior(self.n_documents_)
        self.centroid_norm_ = self._centroid_norms(self.word_tfidf_.weighted_csc(), np.arange(n),
                                                   self.unit_expert_)
        self.expert_alive_ = np.ones(n, dtype=bool)
        self.n_base_experts_ = n
        self.base_id_ = uuid.uuid4().hex[:12]
        return self

    @staticmethod
    def _centroid_norms(weights: sp.csc_matrix, experts: np.ndarray, owner_of_row: np.ndarray) -> np.ndarray:
        """||sum of an expert's L2-normalised TF-IDF document vectors||, per expert in `experts`
        (rows of `weights` belong to `owner_of_row[row]`, an index into `experts`). With it, the
        cosine between a query and an expert's centroid is the sum of the query's cosines with the
        expert's documents divided by this norm: no centroid matrix is kept."""
        n = len(experts)
        owner = sp.csr_matrix((np.ones(len(owner_of_row), dtype=np.float32),
                               (np.arange(len(owner_of_row)), owner_of_row)), shape=(weights.shape[0], n))
        summed = sp.csr_matrix(weights.T) @ owner  # terms x experts; weights.T of a CSC is a CSR view
        norms = np.sqrt(np.asarray(summed.multiply(summed).sum(axis=0)).ravel()).astype(np.float32)
        norms[norms == 0] = 1.0
        return norms

    def _fit_semantic(self) -> None:
        n_units = len(self.unit_expert_)
        if n_units > 2 and self.word_tfidf_.n_terms > 2:
            self.lsa_ = LsaSpace(self.lsa_dims).fit(self.word_tfidf_, sample=self.lsa_sample)
        else:
            self.lsa_ = None

    @property
    def n_experts(self) -> int:
        """Experts in the index (removed ones not counted; positions run to `len(expert_ids_)`)."""
        self._require_fitted()
        return int(self.expert_alive_.sum())

    # -- incremental updates --------------------------------------------------------------------
    @property
    def params(self) -> dict[str, object]:
        """What the index was built with (fusion weights apart): a change needs a rebuild."""
        return {"k1": self.k1, "b": self.b, "knn_k": self.knn_k, "lsa_dims": self.lsa_dims,
                "char_abstracts": self.char_abstracts, "build_all": self.build_all}

    @property
    def drift(self) -> float:
        """Documents added or removed since the semantic space was fitted, as a share of those it was
        fitted on. Lexical scores stay exact whatever the drift; the LSA basis ages with it."""
        self._require_fitted()
        return self.units_.n_changed_ / max(self.units_.n_base_rows_, 1)

    def positions(self) -> Mapping[str, int]:
        """Expert id -> position, for the experts in the index (read-only; made once per index,
        and by `updated` from its predecessor's: a dict of 100,000 ids took 70 ms an add)."""
        self._require_fitted()
        pos = self.__dict__.get("_positions_cache")
        if pos is None:
            pos = {self.expert_ids_[i]: int(i) for i in np.flatnonzero(self.expert_alive_)}
            self.__dict__["_positions_cache"] = pos
        return MappingProxyType(pos)

    def live_digests(self) -> dict[str, str]:
        """{expert id: digest of the record it was indexed from} of the live experts."""
        return {self.expert_ids_[i]: self.digests_[i] for i in np.flatnonzero(self.expert_alive_)}

    def realign(self, before: ExpertIndex, aligned: Sequence[Expert | None],
                records: Mapping[str, Expert]) -> tuple[Expert | None, ...]:
        """`align` for an index made by `before.updated(...)`, from `before`'s alignment: the
        removed and replaced positions become None and the appended ones come from `records`
        (which needs to hold only those): no pass in Python over every expert."""
        n_old = len(before.expert_ids_)
        if (self.base_id_ != before.base_id_ or len(aligned) != n_old or len(self.expert_ids_) < n_old
                or self.expert_ids_[:n_old] != before.expert_ids_):
            raise IndexStateError("realign needs an index made from `before` by updated()")
        out = list(aligned)
        for i in np.flatnonzero(before.expert_alive_ & ~self.expert_alive_[:n_old]):
            out[int(i)] = None
        try:
            out.extend(records[eid] for eid in self.expert_ids_[n_old:])
        except KeyError as exc:
            raise IndexStateError(f"expert {exc} is in the index but not in the records given") from None
        return tuple(out)

    def align(self, experts: Mapping[str, Expert]) -> tuple[Expert | None, ...]:
        """The records by position (None where an expert was removed), for turning scores into matches."""
        try:
            return tuple(
                experts[eid] if alive else None
                for eid, alive in zip(self.expert_ids_, self.expert_alive_, strict=True)
            )
        except KeyError as exc:
            raise IndexStateError(f"expert {exc} is in the index but not in the records given") from None

    def updated(self, upserts: Iterable[Expert], removed: Iterable[str], tokenize: Tokenize) -> ExpertIndex:
        """A new index with `upserts` (new or changed experts) indexed and `removed` ids dropped.

        `self` is not modified: readers on other threads keep a consistent index. An expert whose
        record is unchanged is skipped; a changed one is masked at its old position and appended.
        Unknown ids in `removed` are ignored.
        """
        self._require_fitted()
        if isinstance(upserts, str | bytes):
            raise ValueError("expected experts, got a string")
        pos = self.positions()
        latest = {e.id: e for e in upserts}
        changed = [e for e in latest.values()
                   if e.id not in pos or self.digests_[pos[e.id]] != expert_digest(e)]
        dead = sorted({pos[i] for i in removed if i in pos} | {pos[e.id] for e in changed if e.id in pos})
        if not changed and not dead:
            return self
        n0, u0 = len(self.expert_ids_), len(self.unit_expert_)
        units = [u for k, e in enumerate(changed)
                 for u in expert_units(e, n0 + k, char_abstracts=self.char_abstracts)]
        source = as_source(tokenize)
        pieces = list(dict.fromkeys(t for u in units for t, _ in u.words))
        feats = dict(zip(pieces, source.many(pieces), strict=True))
        unit_tokens = [expand(u.words, feats) for u in units]
        grams = {t: chars_of(t) for t in dict.fromkeys(t for u in units for t, _ in u.chars)}
        dead_units = np.flatnonzero(np.isin(self.unit_expert_, dead))

        new = copy.copy(self)
        new.units_ = self.units_.updated(unit_tokens, dead_units)
        new.word_tfidf_ = new.units_.sibling("tfidf", like=self.word_tfidf_)
        new.chars_ = self.chars_.updated([expand(u.chars, grams) for u in units], dead_units)
        if self.profile_ is not None:
            profile_tokens: list[list[str]] = [[] for _ in changed]
            for u, toks in zip(units, unit_tokens, strict=True):
                profile_tokens[u.expert - n0].extend(toks)
            new.profile_ = self.profile_.updated(profile_tokens, dead)
        if self.fields_ is not None:
            new.fields_ = self.fields_.updated(source.many([declared_text(e) for e in changed]), dead)
        new.expert_ids_ = [*self.expert_ids_, *(e.id for e in changed)]
        new.digests_ = [*self.digests_, *(expert_digest(e) for e in changed)]
        alive = np.concatenate([self.expert_alive_, np.ones(len(changed), dtype=bool)])
        alive[dead] = False
        new.expert_alive_ = alive
        local = np.asarray([u.expert - n0 for u in units], dtype=np.int64)
        new.unit_expert_ = np.concatenate([self.unit_expert_, local + n0])
        new.unit_field_ = [*self.unit_field_, *(u.field for u in units)]
        new.unit_text_ = [*self.unit_text_, *(u.text for u in units)]
        new.unit_dkey_ = np.concatenate([self.unit_dkey_, _keys(u.dense for u in units)])
        new.expert_dkey_ = np.concatenate([self.expert_dkey_, _keys(expert_profile_text(e) for e in changed)])
        if self.popularity_ is not None:  # a new expert has no record over the bank yet
            new.popularity_ = np.concatenate([self.popularity_, np.zeros(len(changed), dtype=np.float32)])
        if self.dense_ is not None:  # the new rows wait for their vectors (`with_dense`)
            new.dense_ = self.dense_.extended(len(new.unit_dkey_), len(new.expert_dkey_))
        new.unit_hash_ = np.concatenate([self.unit_hash_, np.fromiter((hash_unit(u) for u in units), dtype=np.int64,
                                                                      count=len(units))])
        new.__dict__.pop("_layout_cache", None)
        new_pos = pos.copy()  # the cached dict's own copy: C-level, not a Python pass over every expert
        for i in dead:
            new_pos.pop(self.expert_ids_[i], None)
        new_pos.update((e.id, n0 + k) for k, e in enumerate(changed))
        new.__dict__["_positions_cache"] = new_pos
        ndocs = np.asarray([len(e.documents) for e in changed], dtype=np.float32)
        new.n_documents_ = np.concatenate([self.n_documents_, ndocs])
        new.prior_ = prior(new.n_documents_ * alive)
        # Experts appended now get their centroid norm under today's statistics; the others keep
        # theirs until the next compaction (as the LSA basis does).
        added = new.word_tfidf_.weighted(np.arange(u0, u0 + len(units)))
        new.centroid_norm_ = np.concatenate([self.centroid_norm_, new._centroid_norms(
            added.tocsc(), np.arange(len(changed)), local)])
        if self.lsa_ is not None and units:
            new.lsa_ = self.lsa_.with_embeddings(np.concatenate([self.lsa_.embeddings_, self.lsa_.embed(added)]))
        return new

    def compacted(self) -> ExpertIndex:
        """The live experts re-indexed from the stored term counts, in id order (as a fresh fit over a
        store would be), with the semantic space refitted: what a full rebuild gives, without
        tokenising. Drift starts again from zero."""
        self._require_fitted()
        ids = self.expert_ids_
        order = np.asarray(sorted(np.flatnonzero(self.expert_alive_), key=lambda i: ids[i]), dtype=np.int64)
        newpos = np.full(len(ids), -1, dtype=np.int64)
        newpos[order] = np.arange(len(order))
        rows = np.flatnonzero(self.expert_alive_[self.unit_expert_])
        rows = rows[np.lexsort((rows, newpos[self.unit_expert_[rows]]))]
        new = copy.copy(self)
        new.units_ = self.units_.compacted(rows)
        new.word_tfidf_ = new.units_.sibling("tfidf")
        new.chars_ = self.chars_.compacted(rows)
        for name in self.OPTIONAL:
            part = getattr(self, f"{name}_")
            setattr(new, f"{name}_", None if part is None else part.compacted(order))
        new.expert_ids_ = [ids[i] for i in order]
        new.digests_ = [self.digests_[i] for i in order]
        new.expert_alive_ = np.ones(len(order), dtype=bool)
        new.n_base_experts_ = len(order)
        new.unit_expert_ = newpos[self.unit_expert_[rows]]
        new.unit_field_ = [self.unit_field_[r] for r in rows]
        new.unit_text_ = [self.unit_text_[r] for r in rows]
        new.unit_hash_ = self.unit_hash_[rows]
        new.unit_dkey_ = self.unit_dkey_[rows]
        new.expert_dkey_ = self.expert_dkey_[order]
        new.popularity_ = None if self.popularity_ is None else self.popularity_[order]
        # the same vectors in the new order; the centre is kept (as the LSA basis was, until now)
        new.dense_ = None if self.dense_ is None else self.dense_.take(rows, order)
        new.__dict__.pop("_layout_cache", None)
        new.__dict__.pop("_positions_cache", None)
        new.n_documents_ = self.n_documents_[order]
        new.prior_ = prior(new.n_documents_)
        new.centroid_norm_ = new._centroid_norms(new.word_tfidf_.weighted_csc(), np.arange(len(order)),
                                                 new.unit_expert_)
        new._fit_semantic()
        new.base_id_ = uuid.uuid4().hex[:12]
        return new

    # -- related terms (corpus expansion) ---------------------------------------------------------
    def related_terms(self, terms: Sequence[tuple[str, float]], k: int) -> list[tuple[str, str, float]]:
        """Up to `k` index terms that keep company with `terms` (term, weight) in the experts' own
        texts: nearest to the weighted sum of their vectors in the LSA space (term vectors = the
        columns of its basis), each with the given term it is nearest to and its cosine. Terms
        seen in a single document are left out (a typo is no expansion)."""
        self._require_fitted()
        if self.lsa_ is None or k <= 0:
            return []
        vecs = self.__dict__.get("_term_vectors")
        if vecs is None:
            vecs = self.lsa_.components_.T.astype(np.float32)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            vecs = vecs / norms
            self.__dict__["_term_vectors"] = vecs
        vocab = self.word_tfidf_.vocabulary_
        given = [(vocab[t], w, t) for t, w in terms if t in vocab and vocab[t] < len(vecs)]
        if not given:
            return []
        ids = np.asarray([j for j, _, _ in given])
        q = (vecs[ids] * np.asarray([w for _, w, _ in given], dtype=np.float32)[:, None]).sum(axis=0)
        norm = float(np.linalg.norm(q))
        if norm == 0:
            return []
        sims = vecs @ (q / norm)
        sims[ids] = -1.0
        df = self.word_tfidf_.df_[: len(vecs)]
        sims[df < 2] = -1.0
        top = np.argpartition(-sims, min(k, len(sims) - 1))[:k]
        top = top[np.argsort(-sims[top])]
        names = self.word_tfidf_.terms_
        out = []
        for j in top:
            if sims[j] <= 0:
                break
            origin = given[int(np.argmax(vecs[ids] @ vecs[j]))][2]
            out.append((names[j], origin, float(sims[j])))
        return out

    # -- dense vectors ----------------------------------------------------------------------------
    def dense_texts(self, experts: Iterable[Expert], *, profiles: bool = False) -> dict[bytes, str]:
        """{key: text} of what the dense encoder reads for these experts' units (and profiles)."""
        out: dict[bytes, str] = {}
        for e in experts:
            for u in expert_units(e, 0, char_abstracts=False):
                out[text_key(u.dense)] = u.dense
            if profiles:
                profile = expert_profile_text(e)
                out[text_key(profile)] = profile
        return out

    def dense_missing(self, *, student: bool = False) -> list[str]:
        """Ids of the live experts whose units (or profile) have no vector of the model attached yet
        (`student`: no vector at all, neither the model's nor its fast student's)."""
        self._require_fitted()
        if self.dense_ is None:
            rows = np.flatnonzero(self.expert_alive_)
        else:
            have = self.dense_.units_any if student else self.dense_.units_ok
            missing_units = ~have & self.expert_alive_[self.unit_expert_]
            gone = np.zeros(len(self.expert_ids_), dtype=bool)
            gone[self.unit_expert_[missing_units]] = True
            if self.dense_.profiles_ok is not None:
                gone |= ~self.dense_.profiles_ok
            rows = np.flatnonzero(gone & self.expert_alive_)
        return [self.expert_ids_[i] for i in rows]

    def with_dense(self, model: str, lookup: Callable[[Sequence[bytes]], Mapping[bytes, np.ndarray]], *,
                   profiles: bool = False,
                   student: Lookup | None = None) -> ExpertIndex:
        """A copy holding the dense vectors `lookup` has for its units (and, with `profiles`, its
        experts): all of them when none are attached yet or the model changed, else only the rows
        still missing (the centre stays as it was). `student`: where `lookup` has no vector yet, the
        fast student's (`matcher.static_encoder`). `self` is not modified."""
        self._require_fitted()
        new = copy.copy(self)
        current = self.dense_
        if current is None or current.model != model or (profiles and current.profiles is None):
            new.dense_ = assemble(model, self.unit_dkey_, lookup,
                                  profile_keys=self.expert_dkey_ if profiles else None, student=student)
        else:
            new.dense_ = current.filled(self.unit_dkey_, self.expert_dkey_, lookup, student)
        return new

    def with_dense_vectors(self, vectors: DenseVectors) -> ExpertIndex:
        """A copy holding `vectors` (position-aligned with its units, e.g. memory-mapped from the
        file saved beside the index: `matcher.dense.load_vectors_file`). `self` is not modified."""
        self._require_fitted()
        if len(vectors.units) != len(self.unit_dkey_):
            raise IndexStateError("the vectors do not belong to this index's units")
        new = copy.copy(self)
        new.dense_ = vectors
        return new

    def with_dense_bank(self, bank: np.ndarray | None, weight: float) -> ExpertIndex:
        """A copy whose dense query vectors are moved by `weight` times the mean of `bank` (raw
        query vectors of the demands a 科协 has received, one a row) in this index's centred
        space: query-bank normalisation. e5 puts every demand text near the units that resemble
        demands in general (a rich expert's broad industrial papers); those units then win every
        query. Subtracting the demands' own mean direction removes what all demands share and keeps
        what this one says. None or an empty bank: no shift."""
        new = copy.copy(self)
        new.dense_shift_ = None
        if self.dense_ is not None and bank is not None and len(bank) and weight:
            centred = np.stack([self.dense_.centred(v) for v in bank])
            new.dense_shift_ = (weight * centred.mean(axis=0)).astype(np.float32)
        return new

    def with_popularity(self, values: Mapping[str, float] | None) -> ExpertIndex:
        """A copy that discounts experts by their popularity over the demand bank ({expert id:
        value}; experts not named get 0; see `matcher.ranking.fusion.discount_popular`)."""
        new = copy.copy(self)
        if not values:
            new.popularity_ = None
            return new
        pop = np.zeros(len(self.expert_ids_), dtype=np.float32)
        for eid, i in self.positions().items():
            pop[i] = values.get(eid, 0.0)
        new.popularity_ = pop
        return new

    def _require_fitted(self) -> None:
        if not hasattr(self, "units_"):
            raise IndexStateError("the expert index is not fitted: run `matcher index` to build it")

    # -- score ----------------------------------------------------------------------------------
    def _layout(self) -> Layout:
        """Lookup arrays derived from the unit list, built on first use (and after each update,
        which makes a new index object)."""
        layout = self.__dict__.get("_layout_cache")
        if layout is None:
            layout = Layout.of(self.unit_expert_, self.unit_hash_, self.expert_alive_)
            self.__dict__["_layout_cache"] = layout
        return layout

    def _units_of(self, expert: int) -> np.ndarray:
        lay = self._layout()
        return lay.by_expert[lay.expert_ptr[expert] : lay.expert_ptr[expert + 1]]


    def signals(self, query: Query) -> tuple[dict[str, np.ndarray], UnitScores]:
        """Every signal for `query` and the unit scores explanations read (`matcher.ranking.signals`)."""
        return signals(self, query)

    def score(self, query: Query, weights: Mapping[str, float] | None = None) -> Scored:
        """Fuse the signals (see `matcher.ranking.fusion`)."""
        sig, units = self.signals(query)
        total = self.fuse(sig, self.weights if weights is None else weights)
        return Scored(total=total, signals=sig, unit_scores=units.words, char_scores=units.chars,
                      dense_scores=units.dense, complete=units.complete)

    def fuse(self, sig: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
        return fuse(sig, weights, self.expert_alive_, self.diversify_slots, self.list_floor,
                    self.popularity_, self.popularity_weight)

    # -- explain ---------------------------------------------------------------------------------
    def explain(self, expert: int, query: Query, scored: Scored, *, max_evidence: int = 3) -> Explanation:
        return self.explain_many([expert], query, scored, max_evidence=max_evidence)[0]

    def explain_many(
        self, experts: Sequence[int], query: Query, scored: Scored, *, max_evidence: int = 3,
    ) -> list[Explanation]:
        """Why each of `experts` matched (see `matcher.ranking.explain`)."""
        if scored.complete is not None:  # top-k retrieval: their units' scores are filled in first
            scored.complete(experts)
        return explain_many(self, experts, query, scored, max_evidence=max_evidence)

    # -- persistence (see `matcher.ranking.persist`) ----------------------------------------------
    def save(self, folder: Path | str, *, extra_meta: Mapping[str, object] | None = None) -> None:
        persist.save(self, folder, extra_meta=extra_meta)

    def save_delta(self, folder: Path | str, *, extra_meta: Mapping[str, object] | None = None) -> None:
        """Record the changes since the base in `folder`, which must hold this index's base (else
        `IndexStateError`: save the whole index instead)."""
        persist.save_delta(self, folder, extra_meta=extra_meta)

    @classmethod
    def load(cls, folder: Path | str, *, mmap: bool = True) -> ExpertIndex:
        """Read a saved index; with `mmap` the large arrays are memory-mapped, not read."""
        return persist.load(cls, folder, mmap=mmap)
