"""Where the concepts added to a demand come from: one file a source (`matcher.understand` runs them
in order, each seeing what the ones before it added).

  thesaurus.py  `corpora/thesaurus.txt` (and the 科协's own entries): products, symptoms and trade
                names, and what they point to, each kept only with support beyond its trigger
                (`matcher.understand`'s docstring)
  corpus.py     terms that keep company with the demand's words in the experts' own texts
  learned.py    concepts the 科协's own verdicts associate with the demand's words (`matcher.learning`)

A source is a class with a `name` and `expand(found)`, which adds `Expansion`s to
`found.expanded` by its own rule (the thesaurus keeps the strongest of several hits; the corpus
adds only terms nobody has yet). Every expansion weighs less than the demand's own words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from matcher.thesaurus import Hit

Related = Callable[[Sequence[tuple[str, float]], int], list[tuple[str, str, float]]]
#: (concept's words, the demand's other terms) -> {term: experts} or None (the library cannot say)
Support = Callable[[Sequence[str], Sequence[str]], Mapping[str, int] | None]


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why a learned concept was added: over `demands` judged demands that said the phrase (of
    `judged`), `accepted` accepted experts held the concept and `declined` declined ones did."""

    demands: int
    judged: int
    accepted: int
    declined: int

    def to_dict(self) -> dict[str, int]:
        return {"demands": self.demands, "judged": self.judged, "accepted": self.accepted,
                "declined": self.declined}


@dataclass(frozen=True, slots=True)
class Expansion:
    """A concept added to the demand: `origin` is the demand's phrase it came from; `support`
    what else in the demand made it fit (its terms, or the thesaurus condition met)."""

    term: str
    origin: str
    source: str  # the source's name: "thesaurus" | "corpus" | "synonym" | "learned"
    weight: float
    kind: str = ""  # the thesaurus entry's kind (产品, 症状, 俗称)
    support: tuple[str, ...] = ()
    shown: str = ""
    evidence: Evidence | None = None  # a learned concept's verdicts

    @property
    def label(self) -> str:
        return self.shown or self.term

    def to_dict(self) -> dict[str, object]:
        return {"term": self.label, "from": self.origin, "source": self.source,
                "weight": round(self.weight, 4),
                "support": list(self.support), **({"kind": self.kind} if self.kind else {}),
                **({"evidence": self.evidence.to_dict()} if self.evidence else {})}


@dataclass
class Found:
    """What the understanding of one demand has found so far; sources add to it."""

    text: str
    own: dict[str, float]  # the demand's own terms and their weights
    drop: set[str]  # what staff removed (terms and the words of removed phrases)
    related: Related | None = None  # the index's related terms (`ExpertIndex.related_terms`)
    content: list[str] = field(default_factory=list)  # the own terms of substance, heaviest first
    hits: Sequence[Hit] | None = None  # the thesaurus's finds in `text` (None: not looked up yet)
    surfaces: Mapping[str, str] = field(default_factory=dict)  # term -> how it is written
    support: Support | None = None  # the library's judge of an expansion (`cooccurring`)
    products: list[str] = field(default_factory=list)
    symptoms: list[str] = field(default_factory=list)
    expanded: dict[str, Expansion] = field(default_factory=dict)
    dropped: dict[str, Expansion] = field(default_factory=dict)  # concepts the context did not support


class Source(Protocol):
    name: str

    def expand(self, found: Found) -> None:
        """Add this source's concepts to `found.expanded` (and what it recognised)."""
