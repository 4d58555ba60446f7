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
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
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
        doc_top_k: int = 3,
        lsa_dims: int = 128,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        self.k1 = k1
        self.b = b
        self.doc_top_k = doc_top_k
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
        self.chars_ = TermIndex("tfidf").fit([char_ngrams(normalize(u.body)) for u in units])
        word_tfidf = TermIndex("tfidf").fit(unit_tokens)
        self.word_tfidf_ = word_tfidf
        if len(units) > 2 and word_tfidf.n_terms > 2:
            self.lsa_ = LsaSpace(self.lsa_dims).fit(word_tfidf)
            self.expert_emb_ = self._centroids(self.lsa_.embeddings_)
        else:
            self.lsa_ = None
            self.expert_emb_ = np.zeros((n, 1), dtype=np.float32)
        ndocs = np.asarray([len(e.documents) for e in experts], dtype=np.float32)
        self.prior_ = np.log1p(ndocs) / max(float(np.log1p(ndocs).max(initial=0.0)), 1e-9)
        return self

    def _centroids(self, unit_emb: np.ndarray) -> np.ndarray:
        n = len(self.expert_ids_)
        out = np.zeros((n, unit_emb.shape[1]), dtype=np.float32)
        np.add.at(out, self.unit_expert_, unit_emb)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms

    @property
    def n_experts(self) -> int:
        self._require_fitted()
        return len(self.expert_ids_)

    def _require_fitted(self) -> None:
        if not hasattr(self, "units_"):
            raise IndexStateError("the expert index is not fitted: run `matcher index` to build it")

    # -- score ----------------------------------------------------------------------------------
    def _aggregate_top(self, unit_scores: np.ndarray) -> np.ndarray:
        """Decaying sum of each expert's best `doc_top_k` unit scores (1, 1/2, 1/4 …)."""
        n = len(self.expert_ids_)
        out = np.zeros(n, dtype=np.float32)
        nz = np.flatnonzero(unit_scores > 0)
        if not len(nz):
            return out
        s = unit_scores[nz]
        e = self.unit_expert_[nz]
        order = np.lexsort((-s, e))
        s, e = s[order], e[order]
        starts = np.r_[0, np.flatnonzero(np.diff(e)) + 1]
        pos = np.arange(len(e)) - np.repeat(starts, np.diff(np.r_[starts, len(e)]))
        keep = pos < self.doc_top_k
        np.add.at(out, e[keep], s[keep] * (0.5 ** pos[keep]))
        return out

    def _aggregate_max(self, unit_scores: np.ndarray) -> np.ndarray:
        out = np.zeros(len(self.expert_ids_), dtype=np.float32)
        np.maximum.at(out, self.unit_expert_, unit_scores.astype(np.float32))
        return out

    def signals(self, query: Query) -> tuple[dict[str, np.ndarray], np.ndarray]:
        self._require_fitted()
        unit_scores = self.units_.score(query.weights)
        sig = {
            "docs": self._aggregate_top(unit_scores),
            "profile": self.profile_.score(query.weights),
            "fields": self.fields_.score(query.weights),
        }
        grams = char_ngrams(normalize(query.text))
        if grams:
            sig["chars"] = self._aggregate_max(self.chars_.score(Counter(grams)))
        else:
            sig["chars"] = np.zeros(len(self.expert_ids_), dtype=np.float32)
        if self.lsa_ is not None:
            ids, ws = self.word_tfidf_.query_vector(query.weights)
            if len(ids):
                q = np.zeros(self.word_tfidf_.n_terms, dtype=np.float32)
                q[ids] = ws
                qe = q @ self.lsa_.components_.T
                norm = float(np.linalg.norm(qe))
                sem = (self.expert_emb_ @ (qe / norm)) if norm > 0 else np.zeros(len(self.expert_ids_))
                sig["semantic"] = np.clip(sem, 0.0, None).astype(np.float32)
            else:
                sig["semantic"] = np.zeros(len(self.expert_ids_), dtype=np.float32)
        sig["prior"] = self.prior_
        return sig, unit_scores

    def score(self, query: Query, weights: Mapping[str, float] | None = None) -> Scored:
        sig, unit_scores = self.signals(query)
        weights = self.weights if weights is None else weights
        total = np.zeros(len(self.expert_ids_), dtype=np.float32)
        lexical = np.zeros(len(self.expert_ids_), dtype=bool)
        for name, arr in sig.items():
            w = weights.get(name, 0.0)
            if name in ("docs", "profile", "fields", "chars"):
                lexical |= arr > 0
            if not w:
                continue
            top = float(arr.max(initial=0.0))
            if top > 0:
                total += w * (arr / top)
        # The prior and the semantic space must not surface experts with no textual overlap at all.
        total[~lexical] = 0.0
        return Scored(total=total, signals=sig, unit_scores=unit_scores)

    # -- explain ---------------------------------------------------------------------------------
    def explain(self, expert: int, query: Query, scored: Scored, *, max_evidence: int = 3) -> Explanation:
        self._require_fitted()
        units = np.flatnonzero(self.unit_expert_ == expert)
        by_score = units[np.argsort(-scored.unit_scores[units], kind="stable")]
        term_weight: Counter[str] = Counter()
        evidence: list[Evidence] = []
        for u in by_score:
            contrib = self.units_.contributions(int(u), list(query.weights))
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
    def save(self, folder: Path | str, *, extra_meta: Mapping[str, object] | None = None) -> None:
        self._require_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "params": {"k1": self.k1, "b": self.b, "doc_top_k": self.doc_top_k, "lsa_dims": self.lsa_dims,
                       "weights": self.weights},
            "expert_ids": self.expert_ids_,
            "unit_field": self.unit_field_,
            "unit_text": self.unit_text_,
            "has_lsa": self.lsa_ is not None,
            **(dict(extra_meta) if extra_meta else {}),
        }
        (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        np.save(folder / "unit_expert.npy", self.unit_expert_)
        np.save(folder / "prior.npy", self.prior_)
        np.save(folder / "expert_emb.npy", self.expert_emb_)
        for name in ("units", "profile", "fields", "chars", "word_tfidf"):
            getattr(self, f"{name}_").save(folder, name)
        if self.lsa_ is not None:
            self.lsa_.save(folder, "lsa")

    @classmethod
    def load(cls, folder: Path | str) -> ExpertIndex:
        folder = Path(folder)
        meta_path = folder / "meta.json"
        if not meta_path.exists():
            raise IndexStateError(f"no index at {folder}: run `matcher index` to build it")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexStateError(f"the index at {folder} is unreadable ({exc}); run `matcher index`") from exc
        if meta.get("format_version") != FORMAT_VERSION:
            raise IndexStateError(
                f"the index at {folder} has format {meta.get('format_version')}, this version reads "
                f"{FORMAT_VERSION}: rebuild it with `matcher index`"
            )
        p = meta["params"]
        self = cls(k1=p["k1"], b=p["b"], doc_top_k=p["doc_top_k"], lsa_dims=p["lsa_dims"], weights=p["weights"])
        try:
            self.expert_ids_ = list(meta["expert_ids"])
            self.unit_field_ = list(meta["unit_field"])
            self.unit_text_ = list(meta["unit_text"])
            self.unit_expert_ = np.load(folder / "unit_expert.npy", allow_pickle=False)
            self.prior_ = np.load(folder / "prior.npy", allow_pickle=False)
            self.expert_emb_ = np.load(folder / "expert_emb.npy", allow_pickle=False)
            for name in ("units", "profile", "fields", "chars", "word_tfidf"):
                setattr(self, f"{name}_", TermIndex.load(folder, name))
            self.lsa_ = LsaSpace.load(folder, "lsa") if meta.get("has_lsa") else None
        except (OSError, ValueError, KeyError) as exc:
            raise IndexStateError(f"the index at {folder} is damaged ({exc}); rebuild it with `matcher index`") from exc
        self.meta_ = meta
        return self


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
