"""The thesaurus source: products (产品), symptoms (症状) and trade names (俗称) recognised in the
text (`corpora/thesaurus.txt`, which a 科协 extends without code), and the technical concepts each
points to, at the entry's weight times `weight`. A concept reached by several hits keeps its
strongest weight."""

from __future__ import annotations

from collections.abc import Callable

from matcher.expansion import Expansion, Found
from matcher.thesaurus import Thesaurus

#: The kinds of thesaurus entry, and what they are shown as.
PRODUCT, SYMPTOM, TRADE_NAME = "产品", "症状", "俗称"


class ThesaurusSource:
    name = "thesaurus"

    def __init__(self, thesaurus: Thesaurus, weight: Callable[[], float]) -> None:
        self.thesaurus = thesaurus
        self.weight = weight  # read at each use: staff tools and the notebook tune it

    def expand(self, found: Found) -> None:
        weight = self.weight()
        if weight <= 0 or not len(self.thesaurus):
            return
        for hit in self.thesaurus.find(found.text):
            kind = hit.entry.kind
            bucket = found.products if kind == PRODUCT else found.symptoms
            if hit.source not in bucket:
                bucket.append(hit.source)
            for target in hit.entry.targets:
                if target.term in found.drop or hit.source in found.drop:
                    continue
                w = weight * target.weight
                old = found.expanded.get(target.term)
                if old is None or w > old.weight:
                    found.expanded[target.term] = Expansion(target.term, hit.source, self.name, w, kind)
