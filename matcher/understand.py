"""Demand understanding: what the owner's words point to, before anything is ranked.

Owners describe symptoms and products ("锅底用久了发黑起斑", "电池包用一年容量掉得厉害"); experts
write disciplines ("不粘涂层失效机理", "锂电池组一致性与SOH估计"). This stage sits between the text
and the ranking and says, in a small typed result staff can read and correct:

  terms      the demand's own words worth a weight, each with its weight and kind (see below);
  products   the products and industries recognised (thesaurus entries of kind 产品);
  symptoms   the symptoms and wanted outcomes recognised (kind 症状, and 俗称 trade names);
  expanded   the technical concepts they point to, each with the phrase it came from, its source,
             its weight and what in the demand supports it; each source is one file of
             `matcher.expansion`:
               thesaurus  `corpora/thesaurus.txt` (plain text a 科协 extends without code),
               corpus     terms that keep company with the demand's words in the experts' own
                          texts (the LSA space of the index: no download, no other data),
               learned    concepts the 科协's own verdicts associate with the demand's words
                          (`matcher.learning`), each with its evidence;
  synonyms   the synonym table's equivalents of the demand's words (`corpora/synonyms.txt`): read
             by the ranking, shown only when written in the demand's own script (stainless is
             never shown as a word of a Chinese demand).

**Terms worth a weight.** Every token is tagged with its part of speech (`ChineseTokenizer.tag`:
jieba's POS tagger over our own jieba instance and the domain dictionary) and sorted into
  content  nouns, technical compounds, verbs of a process, Latin terms, and the single characters
           of `corpora/content_chars.txt` (锅, 锁, 茶, 蟹): weight 1 (+ log of repeats, times the
           keyword boost when the title or keywords say it);
  generic  `corpora/generic_terms.txt` (研究, 技术, 客户), adjectives and adverbs of degree (容易,
           厉害), idioms, one Latin letter, and every other single character (换, 出, 放, 大, 多):
           weighed at `generic_weight`, never cited as matched, shown apart;
  filler   pronouns, particles, numerals, time and place words, adverbs (POS), and the words of
           `corpora/filler_terms.txt` (看看, 东西, 半年, 老是): left out altogether.
A symptom or product phrase the thesaurus knows (起皮, 掉渣, 客户投诉) is one term, shown whole;
the ranking reads the phrase and its pieces at the weights they have on their own. Latin terms are
matched case-folded and shown as the demand (or, failing it, the corpora) writes them (SiC, BMS,
8D: `Term.shown`).

**Expansions that fit the context.** A concept is added only with support beyond its one
trigger phrase: a word of the concept the demand says itself (车架焊接, and it says 车架), another
content term of the demand that keeps company with the concept in the experts' texts (an expert
whose record holds the term and, in one of its units, every word of the concept, more often than
chance: `cooccurring`), or a condition the thesaurus line states (`车架焊接:0.6@车架|焊缝`: only
when the demand says 车架 or 焊缝). A symptom's or a trade name's direct translation (an entry's
targets of weight 1: 生锈 -> 腐蚀) is the demand's own problem in the experts' words and needs no
more; a product's concepts and a symptom's weaker consequences do, so that a product word alone
(电动车) does not pull a process (焊接) into a demand about cooling a battery pack. When the library
cannot judge (the concept is in none of its units, or most of the demand's other words are in
fewer than two: owners' words experts never write), the concept is kept: no evidence against it.
A demand with no other content word keeps its expansions: the trigger is then all it says.
Dropped concepts are kept in `Understanding.dropped`, with their trigger.
A learned concept follows the same rule: it is kept when several of the demand's phrases point to
it, when a word of it or a term keeping company with it is in the demand, or when the library
cannot judge; its evidence is the verdicts (`matcher.expansion.learned`).

Expanded terms always weigh less than the demand's own content words (`expansion_weight` < 1
times an entry's weight in (0, 1]), and expansion is one hop (a target is not looked up again),
so entries that chain or point back cannot blow a query up. Staff may remove a term or add one;
`build_query` turns the result into the weighted `Query` every signal reads.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from matcher.expansion import Expansion, Found, Related, Source, Support
from matcher.expansion.corpus import CorpusSource
from matcher.expansion.learned import LearnedSource
from matcher.expansion.thesaurus import PRODUCT, SYMPTOM, TRADE_NAME, ThesaurusSource
from matcher.index import TermIndex, char_ngrams
from matcher.learning import Learned
from matcher.ranking.query import Query
from matcher.text import Synonyms, normalize, read_wordlist, show, surface_forms
from matcher.thesaurus import Hit, Thesaurus

Tokenize = Callable[[str], list[str]]
Tag = Callable[[str], list[tuple[str, str]]]
__all__ = ["PRODUCT", "SYMPTOM", "TRADE_NAME", "Expansion", "Term", "Understander", "Understanding"]
#: How a demand's word counts (module docstring).
CONTENT, GENERIC, MINOR, FILLER = "content", "generic", "minor", "filler"

# jieba's tags of words with no substance of their own: pronouns, prepositions, conjunctions,
# particles, modal particles, interjections, onomatopoeia, classifiers. (Its time, place, direction
# and adverb tags are not in the list: it gives them to 早期, 体内, 下游 and 实时 as readily as to
# 早上 and 旁边, so the owner's ones are in corpora/filler_terms.txt instead.)
FUNCTION_POS = frozenset({
    "r", "rr", "rz", "rg", "p", "c", "u", "uj", "ul", "uz", "ug", "uv", "ud", "y", "e", "o", "q", "h", "k",
})
# A number and a classifier (半年, 几台, 一种, 两个): no substance, whatever jieba tags it (三七 and
# 三维 are no classifiers: they stay).
# A quantity an owner gives in passing (一道, 一成, 一个个, 好几家, 几百): a numeral word starting so.
_SOME = frozenset("一两几半每各某好多数")
_COUNTED = re.compile(r"^[一二两三四五六七八九十百千万几多半每各某数第]+"
                      r"[个种类条套批株支项次年月天日周台辆件位家层块片根回遍趟]$")
# Tags weighed as generic: adjectives, distinguishing words (大型, 高级), descriptive words, idioms
# (not jieba's "l", which it gives to 组蛋白 and 呼吸系统 as often as to set phrases).
DESCRIPTIVE_POS = frozenset({"a", "ad", "an", "ag", "b", "z", "i"})
_LATIN_WORD = re.compile(r"[0-9a-z][0-9a-z+#.\-_/]*")
_NOUN_TAG = re.compile(r"^(n|j$|vn$|eng$)")  # jieba's nouns (n, nr, ns, nz, ng …), abbreviations
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True, slots=True)
class Term:
    """One of the demand's own terms: `term` as matched (normalised), `shown` as written."""

    term: str
    weight: float
    kind: str = CONTENT  # CONTENT or GENERIC (fillers are left out)
    shown: str = ""
    #: For a phrase (起皮, 客户投诉): its words and the weight the ranking gives each.
    parts: tuple[tuple[str, float], ...] = ()

    @property
    def label(self) -> str:
        return self.shown or self.term


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
    synonyms: tuple[Expansion, ...] = ()
    #: expansions the context did not support, each with its trigger (for staff who wonder)
    dropped: tuple[Expansion, ...] = ()
    #: term -> how it is shown (Latin as written), for every term the query may cite
    shown: Mapping[str, str] = field(default_factory=dict)

    @property
    def quiet(self) -> frozenset[str]:
        """Words the ranking reads that an explanation never cites: the generic ones (and the
        generic pieces of phrases)."""
        out = {t.term for t in self.terms if t.kind != CONTENT}
        cited = {t.term for t in self.terms if t.kind == CONTENT and not t.parts}
        for t in self.terms:
            for p, w in t.parts:
                if p not in cited and w < t.weight:
                    out.add(p)
        return frozenset(out)

    def to_dict(self) -> dict[str, object]:
        return {
            "terms": [{"term": t.label, "weight": round(t.weight, 4), "kind": t.kind} for t in self.terms],
            "expanded": [e.to_dict() for e in self.expanded],
            "synonyms": [e.to_dict() for e in self.synonyms if _same_script(e.term, e.origin)],
            "products": list(self.products),
            "symptoms": list(self.symptoms),
            "excluded": list(self.excluded),
            "extra": list(self.extra),
        }


def _same_script(a: str, b: str) -> bool:
    """Both written in Chinese, or both not: a synonym in another script is not the demand's word."""
    return bool(_CJK.search(a)) == bool(_CJK.search(b))


def read_words(path: Path) -> frozenset[str]:
    """The words of a list file: separated by spaces or line breaks, `#` comment lines skipped."""
    if not path.exists():
        return frozenset()
    return frozenset(w for line in read_wordlist(path) for w in line.split())


@dataclass(frozen=True)
class Lexicon:
    """The word lists of the understanding stage (module docstring), from a corpora folder."""

    fillers: frozenset[str] = frozenset()
    content_chars: frozenset[str] = frozenset()
    surfaces: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, corpora: Path) -> Lexicon:
        surfaces: dict[str, str] = {}
        for name in ("domain_dict.txt", "synonyms.txt", "thesaurus.txt"):
            path = corpora / name
            if path.exists():
                for k, v in surface_forms(path.read_text(encoding="utf-8")).items():
                    surfaces.setdefault(k, v)
        return cls(read_words(corpora / "filler_terms.txt"), read_words(corpora / "content_chars.txt"),
                   surfaces)


def cooccurring(units: TermIndex, owner: np.ndarray, concept: Sequence[str], others: Sequence[str], *,
                min_units: int = 2, known_share: float = 0.5, lift: float = 2.0,
                rows_of: Callable[[str], np.ndarray] | None = None) -> dict[str, int] | None:
    """Which of `others` keep company with `concept` in the experts' texts: {term: experts whose
    record holds the term and, in one of its units, every word of the concept}, for the terms
    found so `lift` times as often as chance. None when the library cannot say: the concept is in
    no unit, or fewer than `known_share` of `others` are in `min_units` units each (an owner's
    word that experts never write is no evidence for or against). `owner`: the expert of each row
    of `units`; `rows_of(term)`, when given, is its postings (a cache over one demand's concepts)."""
    if not concept or not others:
        return None
    rows = [rows_of(t) for t in (*concept, *others)] if rows_of else units.rows_with([*concept, *others])
    held = rows[0]
    for r in rows[1 : len(concept)]:
        held = np.intersect1d(held, r, assume_unique=True)
    if not len(held):  # never whole: the units holding any of its words, which the query would read
        held = np.unique(np.concatenate(rows[: len(concept)]))
    rest = rows[len(concept):]
    if not len(held) or sum(len(r) >= min_units for r in rest) < known_share * len(rest):
        return None
    n = max(len(np.unique(owner)), 1)
    with_concept = np.unique(owner[held])
    out: dict[str, int] = {}
    for term, r in zip(others, rest, strict=True):
        if not len(r):
            continue
        with_term = np.unique(owner[r])
        both = len(np.intersect1d(with_concept, with_term, assume_unique=True))
        if both and both * n >= lift * len(with_concept) * len(with_term):
            out[term] = both
    return out


class Understander:
    """Reads demands with a tokenizer, a thesaurus and (optionally) the index's related terms.

    `related(terms, k)` -> [(term, origin, similarity)]: the corpus expansion source (see
    `matcher.ranking.expert_index.ExpertIndex.related_terms`); None leaves it out.
    `support(concept, others)` -> {term: count} or None: which of the demand's `others` keep
    company with a concept's words in the experts' texts, None when the library cannot say
    (`cooccurring` over the index); no `support` keeps every expansion (no library to ask).
    """

    def __init__(
        self,
        tokenize: Tokenize,
        thesaurus: Thesaurus | None = None,
        *,
        generic: frozenset[str] = frozenset(),
        generic_weight: float = 0.3,
        minor_weight: float = 0.3,
        keyword_boost: float = 1.0,
        synonyms: Synonyms | None = None,
        thesaurus_weight: float = 0.5,
        corpus_weight: float = 0.0,
        corpus_terms: int = 5,
        lexicon: Lexicon | None = None,
        tag: Tag | None = None,
        learned: Callable[[], Learned | None] | None = None,
        learned_weight: float = 0.0,
        learned_terms: int = 8,
    ) -> None:
        if not 0 <= thesaurus_weight < 1 or not 0 <= corpus_weight < 1 or not 0 <= learned_weight < 1:
            raise ValueError("expansion weights must lie in [0, 1): below the demand's own words")
        self.tokenize = tokenize
        self.thesaurus = thesaurus or Thesaurus()
        self.generic = generic
        self.generic_weight = generic_weight
        self.minor_weight = minor_weight
        self.keyword_boost = keyword_boost
        self.synonyms = synonyms
        self.thesaurus_weight = thesaurus_weight
        self.corpus_weight = corpus_weight
        self.corpus_terms = corpus_terms
        self.learned = learned or (lambda: None)
        self.learned_weight = learned_weight
        self.learned_terms = learned_terms
        self._concepts: dict[str, tuple[str, ...]] = {}
        self.lexicon = lexicon or Lexicon()
        # Without a tagger (a plain tokenising function) every word is content, as before POS.
        self.tag = tag or getattr(tokenize, "tag", None)
        #: Where added concepts come from, in order (`matcher.expansion`); their weights are read
        #: from here at each use.
        self._thesaurus_source = ThesaurusSource(self.thesaurus, lambda: self.thesaurus_weight, self.tokenize,
                                                 generic)
        self.sources: list[Source] = [
            self._thesaurus_source,
            CorpusSource(lambda: self.corpus_weight, lambda: self.corpus_terms, generic),
            LearnedSource(lambda: self.learned(), lambda: self.learned_weight, lambda: self.learned_terms,
                          generic, self.tokenize),
        ]

    def use_thesaurus(self, thesaurus: Thesaurus) -> None:
        """Read with `thesaurus` from now on (the shipped one and the 科协's own, merged)."""
        self.thesaurus = thesaurus
        self._thesaurus_source.thesaurus = thesaurus

    def phrases(self, text: str, emphasis: str = "") -> list[str]:
        """The demand's own content terms, as learning reads them (`matcher.learning`): its terms
        of substance (a phrase the thesaurus knows whole), not one character alone nor a bare
        number."""
        hits = self.thesaurus.find(text) if len(self.thesaurus) else []
        terms = self.own_terms(text, emphasis, hits=hits)
        return [t.term for t in terms if t.kind == CONTENT and len(t.term) >= 2
                and not t.term.replace(".", "").isdigit()]

    # -- the demand's own words ----------------------------------------------------------------
    def kind_of(self, token: str, pos: str) -> str:
        """CONTENT, GENERIC or FILLER for a token and its part of speech (module docstring)."""
        if token in self.lexicon.fillers:
            return FILLER
        if token in self.generic:
            return GENERIC
        if _LATIN_WORD.fullmatch(token):
            if token.isdigit():
                return CONTENT  # a number that survives the tokenizer (304, 6061) names a grade
            return MINOR if len(token) == 1 else CONTENT
        if len(token) == 1:
            return CONTENT if token in self.lexicon.content_chars else MINOR
        flags = pos.split("+")
        if len(flags) > 1:  # the tagger cut it otherwise: nouns jieba's HMM joined (滇藏) are one,
            # anything else it glued is debris (水有, 布是, 就结, 及区系)
            return CONTENT if all(_NOUN_TAG.match(f) for f in flags) else MINOR
        if _COUNTED.match(token) or (pos in ("m", "mq") and token[0] in _SOME):
            return FILLER
        if pos in FUNCTION_POS:
            return MINOR
        if pos in DESCRIPTIVE_POS:
            return GENERIC
        return CONTENT

    def _tagged(self, text: str) -> list[tuple[str, str, int, int]]:
        """Tokens with their part of speech and span; without a tagger every word is a noun and
        no span is known."""
        spans = getattr(self.tag, "__self__", None)
        if spans is not None and hasattr(spans, "tag_spans"):
            return spans.tag_spans(text)
        if self.tag is None:
            return [(t, "n", -1, -1) for t in self.tokenize(text)]
        return [(t, pos, -1, -1) for t, pos in self.tag(text)]

    def own_terms(self, text: str, emphasis: str = "", *, drop: Iterable[str] = (),
                  hits: Sequence[Hit] = (), surfaces: Mapping[str, str] | None = None) -> list[Term]:
        """The demand's own terms (module docstring), heaviest first; `hits` are the thesaurus's
        finds in `text`, whose multi-word phrases become one term each."""
        drop = set(drop)
        tagged = self._tagged(text)
        kinds = {tok: self.kind_of(tok, pos) for tok, pos, _, _ in tagged}
        counts = Counter(tok for tok, _, _, _ in tagged)
        emphasised = set(self.tokenize(emphasis)) if emphasis else set()

        def weight(tok: str, tf: int) -> float:
            w = 1.0 + math.log(tf)
            if tok in emphasised:
                w *= self.keyword_boost
            kind = kinds.get(tok)
            if kind == GENERIC:
                return w * self.generic_weight
            return w * self.minor_weight if kind == MINOR else w

        own: dict[str, Term] = {}
        for tok, tf in counts.items():
            if kinds[tok] != FILLER and tok not in drop:
                own[tok] = Term(tok, weight(tok, tf), kinds[tok])
        # A phrase the thesaurus knows, cut into several words, is one term: its pieces stay in the
        # query at their own weights but are not shown (起皮, not 起 and 皮).
        surfaces = surface_forms(text) if surfaces is None else surfaces
        inside: dict[str, list[str]] = {}  # a phrase -> the demand's tokens within its occurrences
        placed = [(a, b, tok) for tok, _, a, b in tagged if a >= 0]  # in text order
        starts = [a for a, _, _ in placed]
        for h in hits:
            found = inside.setdefault(h.source, [])
            for a, b, tok in placed[bisect.bisect_left(starts, h.start):]:
                if a >= h.end:
                    break
                if b <= h.end:
                    found.append(tok)
        for phrase in dict.fromkeys(h.source for h in hits):
            if phrase in drop:
                continue
            if phrase in counts:  # kept whole by the tokenizer: what the thesaurus knows is content
                if kinds[phrase] != CONTENT:
                    kinds[phrase] = CONTENT
                    own[phrase] = Term(phrase, weight(phrase, counts[phrase]), CONTENT)
                continue
            pieces = list(dict.fromkeys(inside.get(phrase) or self.tokenize(phrase)))
            if not pieces or any(p in drop for p in pieces):
                continue
            parts = tuple((p, own[p].weight) for p in dict.fromkeys(pieces) if p in own)
            if not parts:
                continue
            tf = min(counts.get(p, 1) for p in pieces)
            w = max(1.0 + math.log(max(tf, 1)), max(w for _, w in parts))
            if any(p in emphasised for p in pieces):
                w = max(w, self.keyword_boost)
            for p, _ in parts:
                own.pop(p, None)
            own[phrase] = Term(phrase, w, CONTENT, show(phrase, surfaces), parts)
        out = [Term(t.term, t.weight, t.kind, t.shown or show(t.term, surfaces), t.parts)
               for t in own.values()]
        return sorted(out, key=lambda t: (t.kind != CONTENT, -t.weight))

    # -- the whole stage -----------------------------------------------------------------------
    def understand(
        self,
        text: str,
        emphasis: str = "",
        *,
        exclude: Iterable[str] = (),
        extra: Iterable[str] = (),
        related: Related | None = None,
        support: Support | None = None,
    ) -> Understanding:
        """The demand's own terms and what they point to; `exclude` removes terms (own or added),
        `extra` adds terms as if the demand had said them."""
        excluded = tuple(dict.fromkeys(t for t in (normalize(x) for x in exclude) if t))
        extras = tuple(dict.fromkeys(t for t in (normalize(x) for x in extra) if t))
        drop = set(excluded)
        for phrase in excluded:
            drop.update(self.tokenize(phrase))
        hits = self.thesaurus.find(text) if self.thesaurus_weight > 0 and len(self.thesaurus) else []
        surfaces = {**self.lexicon.surfaces, **surface_forms(text)}
        terms = self.own_terms(text, emphasis, drop=drop, hits=hits, surfaces=surfaces)
        own: dict[str, Term] = {t.term: t for t in terms}
        for phrase in extras:
            for t in self.tokenize(phrase) or [phrase]:
                if t not in drop and (t not in own or own[t].weight < 1.0):
                    own[t] = Term(t, 1.0, CONTENT, show(t, surfaces))
        found = Found(text, {t: v.weight for t, v in own.items()}, drop, related,
                      content=[t.term for t in own.values() if t.kind == CONTENT], hits=hits,
                      surfaces=surfaces, support=support)
        for source in self.sources:
            source.expand(found)
        synonyms = self._synonyms(own, drop, surfaces)
        terms = sorted(own.values(), key=lambda t: (t.kind != CONTENT, -t.weight))
        shown = {t.term: t.label for t in terms}
        for t in terms:
            for p, _ in t.parts:
                shown.setdefault(p, show(p, surfaces))
        for e in [*found.expanded.values(), *synonyms]:
            shown.setdefault(e.term, e.label)
            for tok in self.tokenize(e.term):
                shown.setdefault(tok, show(tok, surfaces))
        return Understanding(text=text, terms=tuple(terms), products=tuple(found.products),
                             symptoms=tuple(found.symptoms),
                             expanded=tuple(sorted(found.expanded.values(), key=lambda e: -e.weight)),
                             excluded=excluded, extra=extras, synonyms=synonyms,
                             dropped=tuple(found.dropped.values()), shown=shown)

    def _synonyms(self, own: Mapping[str, Term], drop: set[str],
                  surfaces: Mapping[str, str]) -> tuple[Expansion, ...]:
        """The synonym table's equivalents of the own terms, at half their weight, heaviest first."""
        synonyms: dict[str, Expansion] = {}
        if self.synonyms is not None and len(self.synonyms):
            for t in own.values():
                for eq in self.synonyms.equivalents(t.term):
                    w = 0.5 * t.weight
                    old = synonyms.get(eq)
                    if eq not in own and eq not in drop and (old is None or w > old.weight):
                        synonyms[eq] = Expansion(eq, t.label, "synonym", w, shown=show(eq, surfaces))
        return tuple(sorted(synonyms.values(), key=lambda e: -e.weight))

    def build_query(self, u: Understanding) -> Query:
        """The weighted query of an understanding: the own terms (a phrase with its pieces), their
        synonyms, then each expanded concept's words at the concept's weight (never raising a word
        the demand used itself); the characters of the text, of the added terms and, at their
        weights, of the concepts."""
        weights: dict[str, float] = {}
        for t in u.terms:
            weights[t.term] = max(weights.get(t.term, 0.0), t.weight)
            for p, w in t.parts:
                weights[p] = max(weights.get(p, 0.0), w)
        for e in u.synonyms:
            weights[e.term] = max(weights.get(e.term, 0.0), e.weight)
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
        tokens = tuple(t for t in self.tokenize(u.text))
        said = {t.term: t.weight for t in u.terms if t.kind == CONTENT}
        counts_as: dict[str, tuple[str, ...]] = {}
        for t in u.terms:
            if t.kind == CONTENT:
                also = [p for p, _ in t.parts]
                also += [e.term for e in u.synonyms if normalize(e.origin) in (t.term, *also)]
                if also:
                    counts_as[t.term] = tuple(dict.fromkeys(also))
        return Query(text=u.text, tokens=tokens, weights=weights, grams=dict(grams), origins=origins,
                     shown=dict(u.shown), quiet=u.quiet | self.generic, said=said, counts_as=counts_as)

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
    content = [t.weight for t in u.terms if t.kind == CONTENT and (t.term in said or t.parts)
               and t.term not in generic]
    return min(content) if content else math.inf
