"""The expert index: every signal over one set of experts, fitted, updated incrementally, saved.

    index = ExpertIndex(settings).fit(experts, tokenize)     # settings: `matcher.config.Settings`
    scored = index.score(query)                              # every signal, fused
    index.explain_many(best, query, scored)                  # why each expert matched
    index.updated(upserts, removed, tokenize).save_delta(folder)

`ExpertIndex` is the plain index state (`matcher.ranking.state`) with the stages as methods: `fit`
(`fit`), `score` (`score`: candidate scoring per signal, expert aggregation, fusion),
`explain_many` (`explain`), `updated` / `compacted` (`updates`), `save` / `load` (`persist`). It is
built from the settings by name (`matcher.ranking.params`): `ExpertIndex(settings)`, or
`ExpertIndex()` for the settings' defaults, with keyword overrides (`ExpertIndex(lsa_dims=16)`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from matcher.dense import DenseVectors, Lookup, assemble, text_key
from matcher.errors import IndexStateError
from matcher.models import Expert, Explanation
from matcher.ranking import block as _block
from matcher.ranking import explain as _explain
from matcher.ranking import fit as _fit
from matcher.ranking import persist as _persist
from matcher.ranking import score as _score
from matcher.ranking import signal as _signal
from matcher.ranking import updates as _updates
from matcher.ranking.fusion import Scored
from matcher.ranking.params import IndexParams
from matcher.ranking.query import Query
from matcher.ranking.state import IndexState
from matcher.ranking.units import expert_profile_text, expert_units

Tokenize = Callable[[str], list[str]]


def default_settings() -> Any:
    """The settings' defaults, without reading the environment."""
    from matcher.config import Settings

    return Settings.model_construct()


class ExpertIndex(IndexState):
    """Every signal over one set of experts. `fit(experts, tokenize)`, then `score(query)`."""

    def __init__(self, settings: object | None = None, **overrides: Any) -> None:
        self.params = IndexParams.from_settings(settings if settings is not None else default_settings(),
                                                _signal.names(), **overrides)
        self.parts_ = MappingProxyType({})

    # -- stages ---------------------------------------------------------------------------------
    def fit(self, experts: Iterable[Expert], tokenize: Tokenize, *, chunk: int = 20_000) -> ExpertIndex:
        """Index `experts` (any iterable: a store's cursor is read once, `chunk` experts at a time).
        `tokenize` may be a `matcher.tokens.TokenSource` (cache, processes)."""
        _fit.fit(self, experts, tokenize, chunk=chunk)
        return self

    def score(self, query: Query, weights: Mapping[str, float] | None = None) -> Scored:
        """Every signal for `query`, fused (`weights`: other fusion weights than the index's)."""
        return _score.score(self, query, weights)

    def score_many(self, queries: Sequence[Query]) -> list[Scored]:
        """`score` of each query, the block's semantic signals from one matrix product each
        (`matcher.ranking.block`): the same rankings, for the nightly batch."""
        seeds = _block.semantic_seeds(self, queries)
        return [_score.score(self, q, seed=s) for q, s in zip(queries, seeds, strict=True)]

    def signal_scores(self, query: Query) -> _score.SignalScores:
        """Every signal for `query` before fusion (`fuse` fuses them under any weights)."""
        return _score.signal_scores(self, query)

    def fuse(self, scores: _score.SignalScores, weights: Mapping[str, float] | None = None) -> np.ndarray:
        return _score.fused(self, scores, weights)

    def explain(self, expert: int, query: Query, scored: Scored, *, max_evidence: int = 3) -> Explanation:
        return self.explain_many([expert], query, scored, max_evidence=max_evidence)[0]

    def explain_many(self, experts: Sequence[int], query: Query, scored: Scored, *,
                     max_evidence: int = 3) -> list[Explanation]:
        """Why each of `experts` matched (see `matcher.ranking.explain`)."""
        return _explain.explain_many(self, experts, query, scored, max_evidence=max_evidence)

    def updated(self, upserts: Iterable[Expert], removed: Iterable[str], tokenize: Tokenize) -> ExpertIndex:
        """A new index with `upserts` indexed and `removed` ids dropped (`matcher.ranking.updates`)."""
        return _updates.updated(self, upserts, removed, tokenize)

    def compacted(self) -> ExpertIndex:
        return _updates.compacted(self)

    def save(self, folder: Path | str, *, extra_meta: Mapping[str, object] | None = None) -> None:
        _persist.save(self, folder, extra_meta=extra_meta)

    def save_delta(self, folder: Path | str, *, extra_meta: Mapping[str, object] | None = None) -> None:
        """Record the changes since the base in `folder`, which must hold this index's base (else
        `IndexStateError`: save the whole index instead)."""
        _persist.save_delta(self, folder, extra_meta=extra_meta)

    @classmethod
    def load(cls, folder: Path | str, *, mmap: bool = True) -> ExpertIndex:
        """Read a saved index; with `mmap` the large arrays are memory-mapped, not read."""
        return _persist.load(cls, folder, mmap=mmap)

    def with_params(self, **changes: Any) -> ExpertIndex:
        """A copy scored with other query-time parameters (the fitted parts are shared)."""
        new = copy.copy(self)
        new.params = IndexParams.from_json({**self.params.to_json(), **changes})
        return new

    # -- related terms (corpus expansion) ---------------------------------------------------------
    def related_terms(self, terms: Sequence[tuple[str, float]], k: int) -> list[tuple[str, str, float]]:
        """Up to `k` index terms that keep company with `terms` (term, weight) in the experts' own
        texts: nearest to the weighted sum of their vectors in the LSA space (term vectors = the
        columns of its basis), each with the given term it is nearest to and its cosine. Terms
        seen in a single document are left out (a typo is no expansion)."""
        self.require_fitted()
        lsa = self.part("lsa")
        if lsa is None or k <= 0:
            return []
        vecs = self.cached("term_vectors", lambda: _unit_rows(lsa.components_.T.astype(np.float32)))
        vocab = self.words_tfidf_.vocabulary_
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
        df = self.words_tfidf_.df_[: len(vecs)]
        sims[df < 2] = -1.0
        top = np.argpartition(-sims, min(k, len(sims) - 1))[:k]
        top = top[np.argsort(-sims[top])]
        names = self.words_tfidf_.terms_
        out = []
        for j in top:
            if sims[j] <= 0:
                break
            origin = given[int(np.argmax(vecs[ids] @ vecs[j]))][2]
            out.append((names[j], origin, float(sims[j])))
        return out

    # -- dense vectors and the demand bank, attached by the owner --------------------------------
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
        self.require_fitted()
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
        self.require_fitted()
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
        self.require_fitted()
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


def _unit_rows(vecs: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vecs / norms
