"""The query: a demand's terms with their weights."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from matcher.text import Synonyms

Tokenize = Callable[[str], list[str]]


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

