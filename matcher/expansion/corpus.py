"""The corpus source: up to `terms` index terms that keep company with the demand's content words in
the experts' own texts (their LSA neighbours, `ExpertIndex.related_terms`: no download, no other
data), at `weight` times their similarity; a term the demand or another source has is left alone."""

from __future__ import annotations

from collections.abc import Callable

from matcher.expansion import Expansion, Found
from matcher.text import show


class CorpusSource:
    name = "corpus"

    def __init__(self, weight: Callable[[], float], terms: Callable[[], int],
                 generic: frozenset[str] = frozenset()) -> None:
        self.weight = weight
        self.terms = terms
        self.generic = generic

    def expand(self, found: Found) -> None:
        weight, terms = self.weight(), self.terms()
        if found.related is None or weight <= 0 or terms <= 0:
            return
        content = [(t, found.own[t]) for t in found.content if t in found.own and t not in self.generic]
        for term, origin, sim in found.related(content, terms):
            if term in found.drop or term in found.own or term in found.expanded:
                continue
            found.expanded[term] = Expansion(term, show(origin, found.surfaces), self.name,
                                             weight * max(0.0, min(1.0, sim)),
                                             shown=show(term, found.surfaces))
