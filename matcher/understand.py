"""Demand understanding: what the owner's words point to, before anything is ranked.

Owners describe symptoms and products ("锅底用久了发黑起斑", "电池包用一年容量掉得厉害"); experts
write disciplines ("不粘涂层失效机理", "锂电池组一致性与SOH估计"). This stage sits between the text
and the ranking and says, in a small typed result staff can read and correct:

  terms      the demand's own words, each with its weight (keywords and title count more,
             generic words such as 研究/技术/问题 less);
  products   the products and industries recognised (thesaurus entries of kind 产品);
  symptoms   the symptoms and wanted outcomes recognised (kind 症状, and 俗称 trade names);
  expanded   the technical concepts they point to, each with the phrase it came from, its source
             and its weight; each source is one file of `matcher.expansion`:
               thesaurus  `corpora/thesaurus.txt` (plain text a 科协 extends without code),
               corpus     terms that keep company with the demand's words in the experts' own
                          texts (the LSA space of the index: no download, no other data).

Expanded terms always weigh less than the demand's own content words (`expansion_weight` < 1
times an entry's weight in (0, 1]), and expansion is one hop (a target is not looked up again),
so entries that chain or point back cannot blow a query up. Staff may remove a term or add one;
`build_query` turns the result into the weighted `Query` every signal reads.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from matcher.expansion import Expansion, Found, Related, Source
from matcher.expansion.corpus import CorpusSource
from matcher.expansion.thesaurus import PRODUCT, SYMPTOM, TRADE_NAME, ThesaurusSource
from matcher.index import char_ngrams
from matcher.ranking.query import Query
from matcher.text import Synonyms, normalize
from matcher.thesaurus import Thesaurus

Tokenize = Callable[[str], list[str]]
__all__ = ["PRODUCT", "SYMPTOM", "TRADE_NAME", "Expansion", "Term", "Understander", "Understanding"]


@dataclass(frozen=True, slots=True)
class Term:
    term: str
    weight: float


@dataclass(frozen=True, slots=True)
class Understanding:
    """What the stage made of a demand (see the module docstring)."""

    text: str
    terms: tuple[Term, ...]
    products: tuple[str, ...] = ()
    symptoms: tuple[str, ...] = ()
    expanded: tuple[Expansion, ...] = ()
    excluded: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    #: The text's tokens, kept so that the query does not segment the text a second time.
    tokens: tuple[str, ...] | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "terms": [{"term": t.term, "weight": round(t.weight, 4)} for t in self.terms],
            "expanded": [e.to_dict() for e in self.expanded],
            "products": list(self.products),
            "symptoms": list(self.symptoms),
            "excluded": list(self.excluded),
            "extra": list(self.extra),
        }


class Understander:
    """Reads demands with a tokenizer, a thesaurus and (optionally) the index's related terms.

    `related(terms, k)` -> [(term, origin, similarity)]: the corpus expansion source (see
    `matcher.ranking.expert_index.ExpertIndex.related_terms`); None leaves it out.
    """

    def __init__(
        self,
        tokenize: Tokenize,
        thesaurus: Thesaurus | None = None,
        *,
        generic: frozenset[str] = frozenset(),
        generic_weight: float = 0.3,
        keyword_boost: float = 1.0,
        synonyms: Synonyms | None = None,
        thesaurus_weight: float = 0.5,
        corpus_weight: float = 0.0,
        corpus_terms: int = 5,
    ) -> None:
        if not 0 <= thesaurus_weight < 1 or not 0 <= corpus_weight < 1:
            raise ValueError("expansion weights must lie in [0, 1): below the demand's own words")
        self.tokenize = tokenize
        self.thesaurus = thesaurus or Thesaurus()
        self.generic = generic
        self.generic_weight = generic_weight
        self.keyword_boost = keyword_boost
        self.synonyms = synonyms
        self.thesaurus_weight = thesaurus_weight
        self.corpus_weight = corpus_weight
        self.corpus_terms = corpus_terms
        self._concepts: dict[str, tuple[str, ...]] = {}
        #: Where added concepts come from, in order (`matcher.expansion`); their weights are read
        #: from here at each use.
        self.sources: list[Source] = [
            ThesaurusSource(self.thesaurus, lambda: self.thesaurus_weight),
            CorpusSource(lambda: self.corpus_weight, lambda: self.corpus_terms, generic),
        ]

    def understand(
        self,
        text: str,
        emphasis: str = "",
        *,
        exclude: Iterable[str] = (),
        extra: Iterable[str] = (),
        related: Related | None = None,
    ) -> Understanding:
        """The demand's own terms and what they point to; `exclude` removes terms (own or added),
        `extra` adds terms as if the demand had said them."""
        excluded = tuple(dict.fromkeys(t for t in (normalize(x) for x in exclude) if t))
        extras = tuple(dict.fromkeys(t for t in (normalize(x) for x in extra) if t))
        drop = set(excluded)
        for phrase in excluded:
            drop.update(self.tokenize(phrase))
        base = Query.build(text, self.tokenize, emphasis=emphasis, keyword_boost=self.keyword_boost,
                           generic=self.generic, generic_weight=self.generic_weight, synonyms=self.synonyms)
        own: dict[str, float] = {t: w for t, w in base.weights.items() if t not in drop}
        for phrase in extras:
            for t in self.tokenize(phrase) or [phrase]:
                if t not in drop:
                    own[t] = max(own.get(t, 0.0), 1.0)
        found = Found(text, own, drop, related)
        for source in self.sources:
            source.expand(found)
        products, symptoms, expanded = found.products, found.symptoms, found.expanded
        terms = tuple(Term(t, w) for t, w in sorted(own.items(), key=lambda kv: -kv[1]))
        return Understanding(text=text, terms=terms, products=tuple(products), symptoms=tuple(symptoms),
                             expanded=tuple(sorted(expanded.values(), key=lambda e: -e.weight)),
                             excluded=excluded, extra=extras, tokens=base.tokens)

    def build_query(self, u: Understanding) -> Query:
        """The weighted query of an understanding: the own terms, then each expanded concept's
        words at the concept's weight (never raising a word the demand used itself); the
        characters of the text, of the added terms and, at their weights, of the concepts."""
        weights: dict[str, float] = {t.term: t.weight for t in u.terms}
        own = set(weights)
        origins: dict[str, str] = {}
        grams: Counter[str] = Counter(char_ngrams(normalize(u.text), 1, 3))
        for phrase in u.extra:
            grams.update(char_ngrams(phrase, 1, 3))
        for e in u.expanded:
            for tok in self._concept_tokens(e.term):
                # the demand's own words keep their weight; a generic word inside a concept (工艺
                # in 电镀工艺) is not what the concept is about, and is left out
                if tok in own or tok in self.generic:
                    continue
                if e.weight > weights.get(tok, 0.0):
                    weights[tok] = e.weight
                    origins[tok] = e.origin
            for g, c in Counter(char_ngrams(normalize(e.term), 1, 3)).items():
                grams[g] += e.weight * c
        tokens = u.tokens if u.tokens is not None else tuple(self.tokenize(u.text))
        return Query(text=u.text, tokens=tokens, weights=weights, grams=dict(grams), origins=origins)

    def _concept_tokens(self, term: str) -> tuple[str, ...]:
        """The tokens of an added concept: the thesaurus' few thousand concepts, each segmented once
        (a demand adds a dozen; segmenting them was a tenth of a match on the demo corpus)."""
        got = self._concepts.get(term)
        if got is None:
            got = tuple(self.tokenize(term))
            if len(self._concepts) < 50_000:
                self._concepts[term] = got
        return got


def own_weight_floor(u: Understanding, said: Iterable[str], generic: frozenset[str]) -> float:
    """The smallest weight of the demand's own content words, the tokens in `said` that are not
    generic (what every expansion stays below; a synonym of a said word is not one of them)."""
    said = set(said)
    content = [t.weight for t in u.terms if t.term in said and t.term not in generic]
    return min(content) if content else math.inf
