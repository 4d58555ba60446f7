"""The thesaurus source: products (产品), symptoms (症状) and trade names (俗称) recognised in the
text (`corpora/thesaurus.txt`, which a 科协 extends without code), and the technical concepts each
points to, at the entry's weight times `weight`. A concept reached by several hits keeps its
strongest weight. A concept is kept only with support beyond its trigger (`support`, and
`matcher.understand`'s docstring); the others go to `found.dropped`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from matcher.expansion import Expansion, Found, Support
from matcher.text import normalize, show
from matcher.thesaurus import Target, Thesaurus

#: The kinds of thesaurus entry, and what they are shown as.
PRODUCT, SYMPTOM, TRADE_NAME = "产品", "症状", "俗称"


class ThesaurusSource:
    name = "thesaurus"

    def __init__(self, thesaurus: Thesaurus, weight: Callable[[], float],
                 tokenize: Callable[[str], list[str]] | None = None,
                 generic: frozenset[str] = frozenset()) -> None:
        self.thesaurus = thesaurus
        self.weight = weight  # read at each use: staff tools and the notebook tune it
        self.tokenize = tokenize
        self.generic = generic

    def expand(self, found: Found) -> None:
        weight = self.weight()
        if weight <= 0 or not len(self.thesaurus):
            return
        hits = self.thesaurus.find(found.text) if found.hits is None else found.hits
        norm = normalize(found.text)
        surfaces = found.surfaces
        for hit in hits:
            kind = hit.entry.kind
            bucket = found.products if kind == PRODUCT else found.symptoms
            if hit.source not in bucket:
                bucket.append(hit.source)
            if hit.source in found.drop:
                continue
            # What else the demand says: its content terms that are not the trigger or inside it.
            others = [t for t in found.content if t not in hit.source and hit.source not in t]
            origin = show(hit.source, surfaces)
            for target in hit.entry.targets:
                if target.term in found.drop or target.term in found.own:
                    continue
                w = weight * target.weight
                old = found.expanded.get(target.term)
                if old is not None and w <= old.weight:
                    continue
                backing = self.support(target, kind, norm, others, found.support)
                e = Expansion(target.term, origin, self.name, w, kind,
                              tuple(show(b, surfaces) for b in backing or ()), show(target.term, surfaces))
                if backing is None:
                    found.dropped.setdefault(target.term, e)
                else:
                    found.expanded[target.term] = e
                    found.dropped.pop(target.term, None)

    def support(self, target: Target, kind: str, norm: str, others: Sequence[str],
                judge: Support | None) -> tuple[str, ...] | None:
        """What supports adding `target`: () when it needs nothing, the condition met or the
        co-occurring terms, None when nothing does."""
        if target.conditions:
            met = tuple(c for c in target.conditions if c in norm)
            return met or None
        if kind != PRODUCT and target.weight >= 1.0:
            return ()
        words = self.tokenize(target.term) if self.tokenize is not None else [target.term]
        concept = [t for t in dict.fromkeys(words) if t not in self.generic]
        said = tuple(t for t in concept if t in others)
        if said:  # the concept names something else the demand says (车架焊接, and it says 车架)
            return said
        if judge is None or not others or not concept:
            return ()
        got = judge(concept, others)
        if got is None:  # the library cannot judge: no evidence against it
            return ()
        return tuple(sorted(got, key=lambda t: -got[t])) or None
