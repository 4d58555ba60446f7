"""The query: a demand's terms with their weights."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

import numpy as np

from matcher.index import char_ngrams
from matcher.text import Synonyms, normalize

Tokenize = Callable[[str], list[str]]


@dataclass(frozen=True, slots=True)
class Query:
    """A weighted query: {term: weight} plus the plain token list (for the BM25 reference)."""

    text: str
    tokens: tuple[str, ...]
    weights: Mapping[str, float]
    #: Character 1-3-gram weights; None: the n-grams of `text`, each counted as often as it occurs.
    grams: Mapping[str, float] | None = None
    #: The dense query vector of `model` (`matcher.dense`), or a Future computing it on another
    #: thread while the words are scored; None: no dense signal for this query.
    vector: np.ndarray | Future[np.ndarray] | None = field(default=None, compare=False)
    model: str = ""
    #: Terms the demand did not say but an expansion added: term -> the demand's phrase it came
    #: from (`matcher.understand`), so an explanation can say "腐蚀 ← 生锈".
    origins: Mapping[str, str] = field(default_factory=dict)
    #: How a term is shown to staff (Latin as the demand writes it: sic -> SiC); absent: as is.
    shown: Mapping[str, str] = field(default_factory=dict)
    #: Terms the ranking reads but an explanation never cites (generic words: 客户, 改进).
    quiet: frozenset[str] = frozenset()
    #: The demand's own content words and their weights, and what else counts as each (its
    #: synonyms, a phrase's words): what an expert's coverage of the demand is measured on.
    said: Mapping[str, float] = field(default_factory=dict)
    counts_as: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def char_weights(self) -> Mapping[str, float]:
        if self.grams is not None:
            return self.grams
        return Counter(char_ngrams(normalize(self.text), 1, 3))

    def dense_vector(self) -> np.ndarray | None:
        """The dense vector, waiting for it when it is still being computed."""
        v = self.vector
        if isinstance(v, Future):
            return v.result()
        return v

    def with_vector(self, vector: np.ndarray | Future[np.ndarray] | None, model: str) -> Query:
        return replace(self, vector=vector, model=model)

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

