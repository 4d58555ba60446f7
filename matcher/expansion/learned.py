"""The learned source: concepts the 科协's own verdicts associate with the demand's words
(`matcher.learning`: evidence counts over judged demands, kept only when unlikely by chance).

Each of the demand's own content terms that is the phrase of an association adds its concept at
`weight` times the association's strength; a concept several of the demand's phrases point to
combines their strengths (a noisy-or, still below 1), which is the support beyond one trigger word
the other sources ask of a weak expansion. At most `terms` concepts are added, the strongest; a
concept the demand says, staff removed, or another source already added at least as strongly is
left alone. The weight stays below the demand's own words (`weight` < 1, strengths < 1)."""

from __future__ import annotations

from collections.abc import Callable

from matcher.expansion import Evidence, Expansion, Found
from matcher.learning import Learned, combine


class LearnedSource:
    name = "learned"

    def __init__(self, learned: Callable[[], Learned | None], weight: Callable[[], float],
                 terms: Callable[[], int], generic: frozenset[str] = frozenset()) -> None:
        self.learned = learned  # read at each use: verdicts change while the server runs
        self.weight = weight
        self.terms = terms
        self.generic = generic

    def expand(self, found: Found) -> None:
        weight, terms = self.weight(), self.terms()
        if weight <= 0 or terms <= 0:
            return
        learned = self.learned()
        if not learned:
            return
        by_concept: dict[str, list] = {}
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
            found.expanded[concept] = Expansion(concept, best.phrase, self.name, w,
                                                evidence=Evidence(best.demands, best.judged, best.accepted,
                                                                  best.declined))
            added += 1
