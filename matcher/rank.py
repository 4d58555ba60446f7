"""Ranking: expert units, query weighting, several signals fused, filters, and explanations.

An expert is scored through the pieces of their record ("units"): each paper, patent and project,
their research fields, their bio. Signals (each an array over experts):

  docs      word BM25 over units, aggregated per expert as a decaying sum of the expert's best
            `doc_top_k` units (1, 1/2, 1/4 …): one strong document counts most, breadth a little;
  profile   word BM25 over the expert's whole record concatenated (the classic baseline);
  fields    word BM25 over research fields + keywords only (the expert's declared expertise);
  chars     character 2-3-gram TF-IDF cosine, best unit per expert: robust to segmentation errors;
  semantic  LSA (TruncatedSVD of unit TF-IDF) cosine between the query and the expert centroid;
  prior     log-scaled activity (number of documents), off by default.

Fusion is a normalised weighted sum: each signal is divided by its best value for this query,
so the weights in `Settings` are comparable across signals and queries (documented; see the README's
ablation table). Query terms are weighted: keywords and title terms count `query_keyword_boost`
times, generic words (corpora/generic_terms.txt) `generic_term_weight` times, and a synonym of a
query term (corpora/synonyms.txt) is added at half weight.

Incremental updates. `ExpertIndex.updated(upserts, removed, tokenize)` returns a new index in which
changed experts are re-indexed and removed ones masked out, tokenising only the changed experts.
The lexical signals (docs, profile, fields, chars) are then equal to those of a fresh `fit` on the
same experts up to float32 rounding (`matcher.index` keeps exact statistics). The semantic signal is
the one approximation: new documents are projected onto the LSA basis fitted before. `drift` is
the share of documents added or removed since that fit; above a threshold the owner calls
`compacted()`, which refits from the stored counts (no tokenising). Each expert carries a digest of
its record, so `diff(experts)` tells which experts a store holds that the index does not reflect.
An index is saved as a base folder plus, after updates, a small `delta-*` folder (`save_delta`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matcher.errors import IndexStateError
from matcher.index import FORMAT_VERSION, LsaSpace, TermIndex, char_ngrams
from matcher.models import Evidence, Expert, Explanation
from matcher.text import Synonyms, normalize

Tokenize = Callable[[str], list[str]]
SIGNALS: tuple[str, ...] = ("docs", "profile", "fields", "chars", "semantic", "prior")


@dataclass(frozen=True, slots=True)
class Unit:
    """One searchable piece of an expert's record."""

    expert: int  # position of the expert in the fitted order
    field: str  # research_fields | bio | paper | patent | project | achievement
    text: str  # what staff see as evidence (a title, the fields)
    body: str  # what is indexed


def expert_units(expert: Expert, position: int) -> list[Unit]:
    units: list[Unit] = []
    fields = "、".join(expert.research_fields)
    if fields:
        units.append(Unit(position, "research_fields", fields, fields))
    if expert.bio:
        units.append(Unit(position, "bio", expert.bio, expert.bio))
    for doc in expert.documents:
        kw = " ".join(doc.keywords)
        # Title and keywords are the densest statement of a document: count them twice (BM25F-lite).
        body = "\n".join(p for p in (doc.title, kw, doc.title, kw, doc.abstract) if p)
        text = doc.title or kw or doc.abstract[:80]
        if body:
            units.append(Unit(position, doc.kind, text, body))
    return units


def expert_digest(expert: Expert) -> str:
    """A fingerprint of everything in the record (contact included: matches carry the record)."""
    text = json.dumps(expert.to_dict(include_contact=True), ensure_ascii=False, sort_keys=True)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def _prior(n_documents: np.ndarray) -> np.ndarray:
    return np.log1p(n_documents) / max(float(np.log1p(n_documents).max(initial=0.0)), 1e-9)


def declared_text(expert: Expert) -> str:
    """Research fields, tags and document keywords: what the expert says they do."""
    kws = [k for d in expert.documents for k in d.keywords]
    return " ".join([*expert.research_fields, *kws])


@dataclass(frozen=True, slots=True)
class Query:
    """A weighted query: {term: weight} plus the plain token list (for the BM25 reference)."""

    text: str
    tokens: tuple[str, ...]
    weights: Mapping[str, float]

    @classmethod
    def build(
        cls,
        text: str,
        tokenize: Tokenize,
        *,
        emphasis: str = "",
        keyword_boost: float = 2.0,
        generic: frozenset[str] = frozenset(),
        generic_weight: float = 0.3,
        synonyms: Synonyms | None = None,
    ) -> Query:
        tokens = tokenize(text)
        weights: dict[str, float] = {}
        counts = Counter(tokens)
        emphasised = set(tokenize(emphasis)) if emphasis else set()
        for term, tf in counts.items():
            w = 1.0 + math.log(tf)
            if term in emphasised:
                w *= keyword_boost
            if term in generic:
                w *= generic_weight
            weights[term] = w
        if synonyms is not None and len(synonyms):
            for term, w in list(weights.items()):
                for eq in synonyms.equivalents(term):
                    weights[eq] = max(weights.get(eq, 0.0), 0.5 * w)
        return cls(text=text, tokens=tuple(tokens), weights=weights)


@dataclass(frozen=True, slots=True)
class Scored:
    """Fused scores for one query, with the per-signal arrays kept for explanations."""

    total: np.ndarray
    signals: Mapping[str, np.ndarray]
    unit_scores: np.ndarray


class ExpertIndex:
    """Every signal over one set of experts. `fit(experts, tokenize)`, then `score(query)`."""

    def __init__(
        self,
        *,
        k1: float = 1.2,
        b: float = 0.75,
        knn_k: int = 100,
        lsa_dims: int = 128,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        self.k1 = k1
        self.b = b
        self.knn_k = knn_k
        self.lsa_dims = lsa_dims
        self.weights = dict(weights or {"docs": 1.0, "profile": 0.6, "fields": 0.5, "chars": 0.4, "semantic": 0.3})

    # -- fit ------------------------------------------------------------------------------------
    def fit(
        self,
        experts: Sequence[Expert],
        tokenize: Tokenize,
        *,
        token_cache: Mapping[str, Sequence[str]] | None = None,
    ) -> ExpertIndex:
        if isinstance(experts, str | bytes):
            raise ValueError("expected a sequence of experts, got a string")
        units = [u for i, e in enumerate(experts) for u in expert_units(e, i)]
        cache: Mapping[str, Sequence[str]] = token_cache or {}

        def tok(body: str) -> list[str]:
            hit = cache.get(body)
            return list(hit) if hit is not None else tokenize(body)

        unit_tokens = [tok(u.body) for u in units]
        n = len(experts)
        profile_tokens: list[list[str]] = [[] for _ in range(n)]
        for u, toks in zip(units, unit_tokens, strict=True):
            profile_tokens[u.expert].extend(toks)
        self.expert_ids_ = [e.id for e in experts]
        self.unit_expert_ = np.asarray([u.expert for u in units], dtype=np.int64)
        self.unit_field_ = [u.field for u in units]
        self.unit_text_ = [u.text for u in units]
        self.units_ = TermIndex("bm25", self.k1, self.b).fit(unit_tokens)
        self.profile_ = TermIndex("bm25", self.k1, self.b).fit(profile_tokens)
        self.fields_ = TermIndex("bm25", self.k1, self.b).fit([tokenize(declared_text(e)) for e in experts])
        self.chars_ = TermIndex("tfidf").fit([char_ngrams(normalize(u.body), 1, 3) for u in units])
        self.word_tfidf_ = TermIndex("tfidf").fit(unit_tokens)
        self._fit_semantic()
        ndocs = np.asarray([len(e.documents) for e in experts], dtype=np.float32)
        self.prior_ = _prior(ndocs)
        self.n_documents_ = ndocs
        self.digests_ = [expert_digest(e) for e in experts]
        self.expert_alive_ = np.ones(n, dtype=bool)
        self.base_id_ = uuid.uuid4().hex[:12]
        return self

    def _fit_semantic(self) -> None:
        n_units = len(self.unit_expert_)
        if n_units > 2 and self.word_tfidf_.n_terms > 2:
            self.lsa_ = LsaSpace(self.lsa_dims).fit(self.word_tfidf_)
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
        return {"k1": self.k1, "b": self.b, "knn_k": self.knn_k, "lsa_dims": self.lsa_dims}

    @property
    def drift(self) -> float:
        """Documents added or removed since the semantic space was fitted, as a share of those it was
        fitted on. Lexical scores stay exact whatever the drift; the LSA basis ages with it."""
        self._require_fitted()
        return self.units_.n_changed_ / max(self.units_.n_base_rows_, 1)

    def positions(self) -> dict[str, int]:
        """Expert id -> position, for the experts in the index."""
        self._require_fitted()
        return {self.expert_ids_[i]: int(i) for i in np.flatnonzero(self.expert_alive_)}

    def diff(self, experts: Iterable[Expert]) -> tuple[list[Expert], list[str]]:
        """(experts new or changed relative to the index, ids in the index but not in `experts`)."""
        live = {self.expert_ids_[i]: self.digests_[i] for i in np.flatnonzero(self.expert_alive_)}
        changed: list[Expert] = []
        seen: set[str] = set()
        for e in experts:
            seen.add(e.id)
            if live.get(e.id) != expert_digest(e):
                changed.append(e)
        return changed, [i for i in live if i not in seen]

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
        units = [u for k, e in enumerate(changed) for u in expert_units(e, n0 + k)]
        unit_tokens = [tokenize(u.body) for u in units]
        profile_tokens: list[list[str]] = [[] for _ in changed]
        for u, toks in zip(units, unit_tokens, strict=True):
            profile_tokens[u.expert - n0].extend(toks)
        dead_units = np.flatnonzero(np.isin(self.unit_expert_, dead))

        new = copy.copy(self)
        new.units_ = self.units_.updated(unit_tokens, dead_units)
        new.profile_ = self.profile_.updated(profile_tokens, dead)
        new.fields_ = self.fields_.updated([tokenize(declared_text(e)) for e in changed], dead)
        new.chars_ = self.chars_.updated([char_ngrams(normalize(u.body), 1, 3) for u in units], dead_units)
        new.word_tfidf_ = self.word_tfidf_.updated(unit_tokens, dead_units)
        new.expert_ids_ = [*self.expert_ids_, *(e.id for e in changed)]
        new.digests_ = [*self.digests_, *(expert_digest(e) for e in changed)]
        alive = np.concatenate([self.expert_alive_, np.ones(len(changed), dtype=bool)])
        alive[dead] = False
        new.expert_alive_ = alive
        local = np.asarray([u.expert - n0 for u in units], dtype=np.int64)
        new.unit_expert_ = np.concatenate([self.unit_expert_, local + n0])
        new.unit_field_ = [*self.unit_field_, *(u.field for u in units)]
        new.unit_text_ = [*self.unit_text_, *(u.text for u in units)]
        ndocs = np.asarray([len(e.documents) for e in changed], dtype=np.float32)
        new.n_documents_ = np.concatenate([self.n_documents_, ndocs])
        new.prior_ = _prior(new.n_documents_ * alive)
        if self.lsa_ is not None and units:
            emb = self.lsa_.embed(new.word_tfidf_.weighted(np.arange(u0, u0 + len(units))))
            new.lsa_ = self.lsa_.with_embeddings(np.concatenate([self.lsa_.embeddings_, emb]))
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
        for name, keep in (("units", rows), ("chars", rows), ("word_tfidf", rows), ("profile", order),
                           ("fields", order)):
            setattr(new, f"{name}_", getattr(self, f"{name}_").compacted(keep))
        new.expert_ids_ = [ids[i] for i in order]
        new.digests_ = [self.digests_[i] for i in order]
        new.expert_alive_ = np.ones(len(order), dtype=bool)
        new.unit_expert_ = newpos[self.unit_expert_[rows]]
        new.unit_field_ = [self.unit_field_[r] for r in rows]
        new.unit_text_ = [self.unit_text_[r] for r in rows]
        new.n_documents_ = self.n_documents_[order]
        new.prior_ = _prior(new.n_documents_)
        new._fit_semantic()
        new.base_id_ = uuid.uuid4().hex[:12]
        return new

    def _require_fitted(self) -> None:
        if not hasattr(self, "units_"):
            raise IndexStateError("the expert index is not fitted: run `matcher index` to build it")

    # -- score ----------------------------------------------------------------------------------
    def _unit_docs(self) -> np.ndarray:
        """Units with the same text (one paper co-written by several experts, a project several
        experts reviewed) are one document: its id per unit. Cached per unit list."""
        key = id(self.unit_text_)
        cached = getattr(self, "_docs_cache", None)
        if cached is None or cached[0] != key or len(cached[1]) != len(self.unit_text_):
            _, inverse = np.unique(np.asarray(self.unit_text_, dtype=object).astype(str), return_inverse=True)
            cached = (key, inverse.astype(np.int64))
            self._docs_cache = cached
        return cached[1]

    def _knn_vote(self, unit_scores: np.ndarray) -> np.ndarray:
        """Balog's document model restricted to the query's neighbourhood: the `knn_k` (100) best
        documents each add their similarity to every expert who holds them.

        Summing over the neighbourhood (not taking an expert's single best document) counts how
        much of the query's topic an expert covers; on the CDL dev split it beats max, top-k mean
        and centroids for every similarity (see notebooks/evaluation.ipynb)."""
        n = len(self.expert_ids_)
        out = np.zeros(n, dtype=np.float32)
        scores = np.where(self.expert_alive_[self.unit_expert_], unit_scores, 0.0).astype(np.float32)
        nz = np.flatnonzero(scores > 0)
        if not len(nz):
            return out
        docs = self._unit_docs()
        doc_score = np.zeros(int(docs.max()) + 1, dtype=np.float32)
        np.maximum.at(doc_score, docs[nz], scores[nz])
        cand = np.flatnonzero(doc_score > 0)
        if len(cand) > self.knn_k:
            cand = cand[np.argpartition(-doc_score[cand], self.knn_k - 1)[: self.knn_k]]
        chosen = np.zeros(len(doc_score), dtype=bool)
        chosen[cand] = True
        voters = nz[chosen[docs[nz]]]
        np.add.at(out, self.unit_expert_[voters], scores[voters])
        return out

    def signals(self, query: Query) -> tuple[dict[str, np.ndarray], np.ndarray]:
        self._require_fitted()
        n = len(self.expert_ids_)
        zeros = np.zeros(n, dtype=np.float32)
        unit_scores = self.units_.score(query.weights)
        sig = {
            "docs": self._knn_vote(unit_scores),
            "tfidf": self._knn_vote(self.word_tfidf_.score(query.weights)),
            "profile": self.profile_.score(query.weights),
            "fields": self.fields_.score(query.weights),
        }
        grams = char_ngrams(normalize(query.text), 1, 3)
        sig["chars"] = self._knn_vote(self.chars_.score(Counter(grams))) if grams else zeros
        sig["semantic"] = zeros
        if self.lsa_ is not None:
            ids, ws = self.word_tfidf_.query_vector(query.weights)
            fitted = self.lsa_.components_.shape[1]
            keep = ids < fitted  # terms added by incremental updates lie outside the fitted space
            if keep.any():
                q = np.zeros(fitted, dtype=np.float32)
                q[ids[keep]] = ws[keep]
                qe = self.lsa_.components_ @ q
                norm = float(np.linalg.norm(qe))
                if norm > 0:
                    cos = np.clip(np.asarray(self.lsa_.embeddings_ @ (qe / norm)), 0.0, None)
                    sig["semantic"] = self._knn_vote(cos)
        sig["prior"] = self.prior_
        return sig, unit_scores

    def score(self, query: Query, weights: Mapping[str, float] | None = None) -> Scored:
        """Fuse the signals: sum of w_s * v_s / std_s over the live experts.

        This ranks exactly as the per-query z-score sum (z = (v - mean) / std; the means only
        shift every expert by the same constant), but keeps scores non-negative, which the
        nightly assignment's maximisation needs. Experts with no lexical evidence score 0.
        """
        sig, unit_scores = self.signals(query)
        total = self.fuse(sig, self.weights if weights is None else weights)
        return Scored(total=total, signals=sig, unit_scores=unit_scores)

    def fuse(self, sig: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
        """The fused score of every expert from its signals (see `score`)."""
        n = len(self.expert_ids_)
        total = np.zeros(n, dtype=np.float32)
        lexical = np.zeros(n, dtype=bool)
        alive = self.expert_alive_
        for name, arr in sig.items():
            if name in ("docs", "tfidf", "profile", "fields"):
                lexical |= arr > 0
            w = weights.get(name, 0.0)
            if not w:
                continue
            live = arr[alive]
            # One expert (or all alike) has no spread: fall back to the best value as the scale.
            scale = float(live.std()) if live.size > 1 else 0.0
            scale = scale if scale > 0 else float(live.max(initial=0.0))
            if scale > 0:
                total += w * (arr / scale)
        # Only experts sharing at least one word with the query are listed: the prior, the semantic
        # space and single characters may reorder them but must not surface unexplained experts.
        total[~lexical | ~alive] = 0.0
        return total

    # -- explain ---------------------------------------------------------------------------------
    def explain(self, expert: int, query: Query, scored: Scored, *, max_evidence: int = 3) -> Explanation:
        self._require_fitted()
        units = np.flatnonzero(self.unit_expert_ == expert)
        units = units[scored.unit_scores[units] > 0]
        by_score = units[np.argsort(-scored.unit_scores[units], kind="stable")]
        term_weight: Counter[str] = Counter()
        evidence: list[Evidence] = []
        vocab = self.units_.vocabulary_
        known = [t for t in query.weights if t in vocab]
        # One sparse slice for all of the expert's matching units (not a lookup per unit and term):
        # explaining was most of the cost of a match and of the nightly batch.
        weights = (
            self.units_.weighted(by_score)[:, [vocab[t] for t in known]].toarray()
            if len(by_score) and known else np.zeros((len(by_score), 0), dtype=np.float32)
        )
        for row, u in enumerate(by_score):
            contrib = {t: float(v) for t, v in zip(known, weights[row], strict=True) if v > 0}
            if not contrib:
                continue
            for t, v in contrib.items():
                term_weight[t] += v
            if len(evidence) < max_evidence:
                terms = tuple(sorted(contrib, key=lambda t: -contrib[t]))
                evidence.append(
                    Evidence(self.unit_field_[u], self.unit_text_[u], terms, float(scored.unit_scores[u]))
                )
        signals = {name: float(arr[expert]) for name, arr in scored.signals.items()}
        return Explanation(
            terms=tuple(t for t, _ in term_weight.most_common()), evidence=tuple(evidence), signals=signals
        )

    # -- persistence ----------------------------------------------------------------------------
    # A saved index is a base folder (meta.json, the arrays, the term indexes) written by `save`, and
    # after incremental updates a `delta-*` sub-folder holding what changed since the base was made,
    # named by `state.json`. Writing a delta never touches the base files; `state.json` is replaced
    # atomically, and the previous delta is kept for one more round for readers mid-load.
    _TERM_INDEXES = ("units", "profile", "fields", "chars", "word_tfidf")

    def save(self, folder: Path | str, *, extra_meta: Mapping[str, object] | None = None) -> None:
        self._require_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "params": {"k1": self.k1, "b": self.b, "knn_k": self.knn_k, "lsa_dims": self.lsa_dims,
                       "weights": self.weights},
            "base_id": self.base_id_,
            "n_base_experts": self.profile_.n_base_rows_,
            "n_base_units": self.units_.n_base_rows_,
            "expert_ids": self.expert_ids_,
            "digests": self.digests_,
            "unit_field": self.unit_field_,
            "unit_text": self.unit_text_,
            "has_lsa": self.lsa_ is not None,
            **(dict(extra_meta) if extra_meta else {}),
        }
        (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        for name in ("unit_expert", "n_documents", "expert_alive"):
            np.save(folder / f"{name}.npy", getattr(self, f"{name}_"))
        for name in self._TERM_INDEXES:
            getattr(self, f"{name}_").save(folder, name)
        if self.lsa_ is not None:
            self.lsa_.save(folder, "lsa")
        _write_state(folder, {"base_id": self.base_id_, "delta": None, **dict(extra_meta or {})})

    def save_delta(self, folder: Path | str, *, extra_meta: Mapping[str, object] | None = None) -> None:
        """Record the changes since the base in `folder`, which must hold this index's base (else
        `IndexStateError`: save the whole index instead)."""
        self._require_fitted()
        folder = Path(folder)
        try:
            base = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexStateError(f"no saved base index at {folder} ({exc})") from exc
        if base.get("base_id") != self.base_id_ or base.get("format_version") != FORMAT_VERSION:
            raise IndexStateError(f"the index at {folder} is another base; save the whole index")
        ne, nu = self.profile_.n_base_rows_, self.units_.n_base_rows_
        name = f"delta-{uuid.uuid4().hex[:12]}"
        tmp = folder / f"{name}.tmp"
        tmp.mkdir()
        meta = {
            "base_id": self.base_id_,
            "expert_ids": self.expert_ids_[ne:],
            "digests": self.digests_[ne:],
            "unit_field": self.unit_field_[nu:],
            "unit_text": self.unit_text_[nu:],
        }
        (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        np.save(tmp / "unit_expert.npy", self.unit_expert_[nu:])
        np.save(tmp / "n_documents.npy", self.n_documents_[ne:])
        np.save(tmp / "expert_alive.npy", self.expert_alive_)
        for tname in self._TERM_INDEXES:
            getattr(self, f"{tname}_").save_delta(tmp, tname)
        if self.lsa_ is not None:
            np.save(tmp / "lsa.embeddings.npy", self.lsa_.embeddings_[nu:])
        tmp.rename(folder / name)
        _write_state(folder, {"base_id": self.base_id_, "delta": name, **dict(extra_meta or {})})
        keep = {name, state.get("delta")}
        for old in folder.glob("delta-*"):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path | str) -> ExpertIndex:
        folder = Path(folder)
        meta_path = folder / "meta.json"
        if not meta_path.exists():
            raise IndexStateError(f"no index at {folder}: run `matcher index` to build it")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            state_path = folder / "state.json"
            state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else {}
        except (OSError, ValueError) as exc:
            raise IndexStateError(
                f"the index at {folder} is unreadable ({exc}); run `matcher index`"
            ) from exc
        if not isinstance(meta, dict) or not isinstance(state, dict):
            raise IndexStateError(f"the index at {folder} is damaged (meta.json or state.json is not an "
                                  "object); rebuild it with `matcher index`")
        _verify_files(folder, state.get("files") or {})
        if meta.get("format_version") != FORMAT_VERSION:
            raise IndexStateError(
                f"the index at {folder} has format {meta.get('format_version')}, this version reads "
                f"{FORMAT_VERSION}: rebuild it with `matcher index`"
            )
        p = meta["params"]
        self = cls(k1=p["k1"], b=p["b"], knn_k=p.get("knn_k", 100), lsa_dims=p["lsa_dims"], weights=p["weights"])
        try:
            if state and state.get("base_id") != meta["base_id"]:
                raise ValueError("state.json names another base")
            delta = folder / state["delta"] if state.get("delta") else None
            ne, nu = int(meta["n_base_experts"]), int(meta["n_base_units"])
            dmeta = json.loads((delta / "meta.json").read_text(encoding="utf-8")) if delta else None

            def part(name: str, base_len: int) -> np.ndarray:
                arr = np.load(folder / f"{name}.npy", allow_pickle=False)
                if delta is None:
                    return arr
                return np.concatenate([arr[:base_len], np.load(delta / f"{name}.npy", allow_pickle=False)])

            def listed(key: str, base_len: int) -> list:  # type: ignore[type-arg]
                return list(meta[key]) if dmeta is None else [*meta[key][:base_len], *dmeta[key]]

            self.base_id_ = meta["base_id"]
            self.expert_ids_ = listed("expert_ids", ne)
            self.digests_ = listed("digests", ne)
            self.unit_field_ = listed("unit_field", nu)
            self.unit_text_ = listed("unit_text", nu)
            self.unit_expert_ = part("unit_expert", nu)
            self.n_documents_ = part("n_documents", ne)
            src = delta if delta is not None else folder
            self.expert_alive_ = np.load(src / "expert_alive.npy", allow_pickle=False).astype(bool)
            for name in cls._TERM_INDEXES:
                setattr(self, f"{name}_", TermIndex.load(folder, name, delta=delta))
            if meta.get("has_lsa"):
                lsa = LsaSpace.load(folder, "lsa")
                if delta is not None:
                    extra = np.load(delta / "lsa.embeddings.npy", allow_pickle=False)
                    lsa = lsa.with_embeddings(np.concatenate([lsa.embeddings_[:nu], extra]))
                self.lsa_ = lsa
            else:
                self.lsa_ = None
            n_experts, n_units = self.profile_.n_rows_, self.units_.n_rows_
            if not (len(self.expert_ids_) == len(self.expert_alive_) == len(self.digests_) == n_experts
                    and len(self.unit_expert_) == len(self.unit_text_) == n_units):
                raise ValueError("its parts disagree in length")
        except (OSError, ValueError, KeyError) as exc:
            raise IndexStateError(
                f"the index at {folder} is damaged ({exc}); rebuild it with `matcher index`"
            ) from exc
        self.prior_ = _prior(self.n_documents_ * self.expert_alive_)
        self.meta_ = {**meta, **state}
        return self


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_state(folder: Path, state: Mapping[str, object]) -> None:
    # Checksums of every file a load reads (the base's and the current delta's): a truncated or
    # garbled file is refused, and the index rebuilt, instead of failing deep inside numpy or zipfile
    # or, worse, loading as silently wrong scores.
    delta = state.get("delta")
    parts = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith("state.json")]
    if delta:
        parts += [p for p in (folder / str(delta)).iterdir() if p.is_file()]
    files = {p.relative_to(folder).as_posix(): _digest(p) for p in sorted(parts)}
    tmp = folder / "state.json.tmp"
    tmp.write_text(json.dumps({**dict(state), "files": files}, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, folder / "state.json")


def _verify_files(folder: Path, files: Mapping[str, str]) -> None:
    for rel, want in files.items():
        try:
            ok = _digest(folder / rel) == want
        except OSError as exc:
            raise IndexStateError(f"the index at {folder} is damaged ({rel}: {exc.strerror}); "
                                  "rebuild it with `matcher index`") from exc
        if not ok:
            raise IndexStateError(f"the index at {folder} is damaged ({rel} fails its checksum); "
                                  "rebuild it with `matcher index`")


# -- filters -------------------------------------------------------------------------------------
_SPLIT = re.compile(r"[,，、;；\s]+")


@dataclass(frozen=True, slots=True)
class Filters:
    """Who may be recommended: region and title contain these, institutions and ids excluded."""

    region: str = ""
    title: str = ""
    exclude_institutions: tuple[str, ...] = ()
    exclude_experts: tuple[str, ...] = ()

    def allows(self, expert: Expert) -> bool:
        if self.region and self.region not in expert.region:
            return False
        if self.title and not any(t and t in expert.title for t in _SPLIT.split(self.title)):
            return False
        if expert.id in self.exclude_experts or expert.name in self.exclude_experts:
            return False
        return not any(inst and same_institution(inst, expert.institution) for inst in self.exclude_institutions)


def same_institution(a: str, b: str) -> bool:
    """One institution names the other: 浙江大学 ~ 浙江大学机械工程学院 (prefix), exact otherwise."""
    a, b = normalize(a), normalize(b)
    if not a or not b:
        return False
    return a == b or b.startswith(a) or a.startswith(b)
