"""The learned source: concepts the 科协's own verdicts associate with the demand's words
(`matcher.learning`: evidence counts over judged demands, kept only when unlikely by chance).

Each of the demand's own content terms that is the phrase of an association adds its concept at
`weight` times the association's strength; a concept several of the demand's phrases point to
combines their strengths (a noisy-or, still below 1). At most `terms` concepts are added, the
strongest; a concept the demand says, staff removed, or another source already added at least as
strongly is left alone. The weight stays below the demand's own words (`weight` < 1, strengths < 1).

Like the thesaurus's, a learned concept needs support beyond its one trigger (`matcher.understand`):
another of the demand's phrases pointing to it, a word of it the demand says, or another content
term of the demand keeping company with it in the experts' texts (`found.support`); when the
library cannot judge (owners' words experts never write), or the demand says nothing else, it is
kept. One the library judges unsupported goes to `found.dropped`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from matcher.expansion import Evidence, Expansion, Found
from matcher.learning import Association, Learned, combine
from matcher.text import show


class LearnedSource:
    name = "learned"

    def __init__(self, learned: Callable[[], Learned | None], weight: Callable[[], float],
                 terms: Callable[[], int], generic: frozenset[str] = frozenset(),
                 tokenize: Callable[[str], list[str]] | None = None) -> None:
        self.learned = learned  # read at each use: verdicts change while the server runs
        self.weight = weight
        self.terms = terms
        self.generic = generic
        self.tokenize = tokenize

    def expand(self, found: Found) -> None:
        weight, terms = self.weight(), self.terms()
        if weight <= 0 or terms <= 0:
            return
        learned = self.learned()
        if not learned:
            return
        by_concept: dict[str, list[Association]] = {}
        for phrase in found.own:
            if phrase in self.generic or phrase in found.drop:
                continue
            for a in learned.get(phrase):
                if a.concept in found.own or a.concept in found.drop:
                    continue
                by_concept.setdefault(a.concept, []).append(a)
        ranked = sorted(((weight * combine(a.strength for a in via), c, via)
                         for c, via in by_concept.items()), key=lambda t: (-t[0], t[1]))
        added = 0
        for w, concept, via in ranked:
            if added >= terms:
                break
            old = found.expanded.get(concept)
            if old is not None and old.weight >= w:
                continue
            best = max(via, key=lambda a: (a.strength, a.phrase))
            backing = self.support(concept, best.phrase, via, found)
            e = Expansion(concept, show(best.phrase, found.surfaces), self.name, w,
                          support=tuple(show(b, found.surfaces) for b in backing or ()),
                          shown=show(concept, found.surfaces),
                          evidence=Evidence(best.demands, best.judged, best.accepted, best.declined))
            if backing is None:
                found.dropped.setdefault(concept, e)
                continue
            found.expanded[concept] = e
            found.dropped.pop(concept, None)
            added += 1

    def support(self, concept: str, trigger: str, via: Sequence[Association],
                found: Found) -> tuple[str, ...] | None:
        """What supports adding `concept` beyond `trigger` (module docstring): the other phrases
        pointing to it, its words the demand says, or the terms keeping company with it; () when
        nothing can be judged; None when the library finds no support."""
        more = tuple(dict.fromkeys(a.phrase for a in via if a.phrase != trigger))
        if more:
            return more
        others = [t for t in found.content if t not in trigger and trigger not in t]
        words = self.tokenize(concept) if self.tokenize is not None else [concept]
        words = [t for t in dict.fromkeys(words) if t not in self.generic]
        said = tuple(t for t in words if t in others)
        if said:
            return said
        if found.support is None or not others or not words:
            return ()
        got = found.support(words, others)
        if got is None:
            return ()
        return tuple(sorted(got, key=lambda t: -got[t])) or None
