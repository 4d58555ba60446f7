"""Explanation: why an expert matched, the query terms found in their units and the best units.

The term weights of all the experts' matching units come from one lookup (a binary search per
query term in its postings): explaining was most of the cost of a match and of the nightly batch.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np

from matcher.models import Evidence, Explanation
from matcher.ranking.fusion import Scored
from matcher.ranking.query import Query
from matcher.ranking.state import IndexState
from matcher.strength import Field, best, coverage, strength
from matcher.text import normalize, show

_WORDLIKE = re.compile(r"[0-9a-z\u3400-\u9fff\uf900-\ufaff]+")


def explain_many(
    index: IndexState, experts: Sequence[int], query: Query, scored: Scored, *, max_evidence: int = 3,
) -> list[Explanation]:
    """Why each of `experts` matched, best evidence first.

    Words first: the query terms (the demand's own and those an expansion added, marked with the
    phrase they came from) found in the expert's units. An expert with no shared word is explained
    honestly by what did match: the character strings it shares with the demand (字面相近, e.g.
    电池管理 in 电池管理系统), or, failing those, its documents nearest in meaning (语义相近).

    The term weights of all the experts' matching units come from one lookup (a binary search
    per query term in its postings): explaining was most of the cost of a match and of the
    nightly batch."""
    index.require_fitted()
    if scored.complete is not None:  # top-k retrieval: their units' scores are filled in first
        scored.complete(experts)
    per_expert = []
    for expert in experts:
        units = index.units_of(int(expert))
        units = units[scored.unit_scores[units] > 0]
        per_expert.append(units[np.argsort(-scored.unit_scores[units], kind="stable")])
    vocab = index.words_.vocabulary_
    # A generic word (客户, 改进) counts in the score but is never cited as a reason.
    known = [t for t in query.weights if t in vocab and t not in query.quiet]
    rows = np.concatenate(per_expert) if per_expert else np.zeros(0, dtype=np.int64)
    weights = index.words_.entry_weights(rows, np.asarray([vocab[t] for t in known], dtype=np.int64))
    out: list[Explanation] = []
    start = 0
    n = len(index.expert_ids_)
    said = _Said(normalize(query.text), [t for t in query.origins if len(t) >= 2])
    shown = _shower(query)
    field = Field.of(scored.total)
    for expert, by_score in zip(experts, per_expert, strict=True):
        block = weights[start : start + len(by_score)]
        start += len(by_score)
        evidence: list[Evidence] = []
        for row in np.flatnonzero((block > 0).any(axis=1)) if len(block) else ():
            if len(evidence) >= max_evidence:
                break
            u = by_score[row]
            hit = np.flatnonzero(block[row] > 0)
            contrib = {known[j]: float(block[row, j]) for j in hit}
            terms = tuple(sorted(contrib, key=lambda t: -contrib[t]))
            evidence.append(
                Evidence(index.unit_field_[u], index.unit_text_[u], tuple(shown(t) for t in terms),
                         float(scored.unit_scores[u]))
            )
        terms = _terms_by_weight(block, known)
        expanded = {t: query.origins[t] for t in terms if t in query.origins}
        if len(evidence) < max_evidence:
            evidence += _beyond_words(index, int(expert), query, scored, max_evidence - len(evidence),
                                      {e.text for e in evidence}, terms, expanded, said)
        signals = {name: float(arr[expert]) for name, arr in scored.signals.items() if len(arr) == n}
        units = index.units_of(int(expert))
        score = float(scored.total[expert])
        measures = {
            "share": field.share(score), "gap": field.gap(score), "crowd": field.crowd,
            "dense": best(scored.dense_scores, units), "chars": best(scored.char_scores, units),
            "coverage": coverage(query.said, terms, query.counts_as, terms),
        }
        s = strength(measures)
        out.append(Explanation(terms=tuple(shown(t) for t in terms), evidence=tuple(evidence),
                               signals=signals,
                               expanded={shown(t): shown(o) for t, o in expanded.items()},
                               measures=measures, strength=s.score, level=s.level))
    return out


def _shower(query: Query):  # noqa: ANN202 - a small closure
    """How a matched term is shown: as the query says (Latin as the demand writes it), else with
    each of its Latin words so written."""
    table = query.shown
    return lambda term: table.get(term) or show(term, table)


def _terms_by_weight(block: np.ndarray, known: list[str]) -> list[str]:
    """The query terms found in an expert's units (`block`: units by terms, best unit first), by
    their summed weight, heaviest first; ties in the order the units first show them. One pass
    over the block instead of a dictionary per unit: the units are summed in order, in float64,
    as adding them one by one would."""
    if not len(block):
        return []
    positive = np.where(block > 0, block, 0).astype(np.float64)
    total = positive.sum(axis=0)
    found = np.flatnonzero(total > 0)
    first = (positive[:, found] > 0).argmax(axis=0)
    order = np.lexsort((found, first, -total[found]))
    return [known[j] for j in found[order]]


@functools.lru_cache(maxsize=65_536)
def _normalized(unit_text: str) -> str:
    """A unit's text normalised, once: the same documents are explained request after request."""
    return normalize(unit_text)


class _Said:
    """The demand's normalised text and its added concepts, made once for all the experts explained."""

    def __init__(self, text: str, extra: list[str]) -> None:
        self.text = text
        self.extra = extra
        # one string to search: a shared piece is word-like, so it never spans the separator
        self.joined = "\x00".join([text, *extra])


def _beyond_words(index: IndexState, expert: int, query: Query, scored: Scored, room: int, shown: set[str],
                  terms: list[str], expanded: dict[str, str], said: _Said | None = None) -> list[Evidence]:
    """Evidence that is not a shared word: character strings (字面相近), then meaning (语义相近).
    The shared strings are appended to `terms`; one shared with an added concept rather than with
    the demand's own text goes into `expanded` with the demand's phrase the concept came from."""
    units = index.units_of(expert)
    out: list[Evidence] = []
    show_ = _shower(query)
    if scored.char_scores is not None:
        said = said or _Said(normalize(query.text), [t for t in query.origins if len(t) >= 2])
        text, extra = said.text, said.extra
        for u in units[np.argsort(-scored.char_scores[units], kind="stable")]:
            if len(out) >= room or scored.char_scores[u] <= 0:
                break
            shown_text = index.unit_text_[u]
            if shown_text in shown:
                continue
            strings = tuple(s for s in common_strings(said.joined, _normalized(shown_text))
                            if s not in query.quiet)
            if strings:
                out.append(Evidence(index.unit_field_[u], shown_text, tuple(show_(s) for s in strings),
                                    float(scored.char_scores[u]), match="chars"))
                shown.add(shown_text)
                terms.extend(s for s in strings if s not in terms)
                for piece in strings:
                    if piece not in text:
                        expanded[piece] = next(query.origins[t] for t in extra if piece in t)
    if scored.dense_scores is not None and not out and room:
        for u in units[np.argsort(-scored.dense_scores[units], kind="stable")][:room]:
            if scored.dense_scores[u] <= 0 or index.unit_text_[u] in shown:
                continue
            out.append(Evidence(index.unit_field_[u], index.unit_text_[u], (), float(scored.dense_scores[u]),
                                match="dense"))
    return out[:room]


def common_strings(query: str, text: str, extra: Sequence[str] = (), *, shortest: int = 2) -> tuple[str, ...]:
    """The maximal strings of at least `shortest` characters (CJK, Latin or digits) that `text`
    shares with `query` (or with one of `extra`), longest first: 电池管理系统 shares 电池管理 with
    "电池管理做得不好"."""
    sources = [query, *extra]
    found: list[str] = []
    i, n = 0, len(text)
    while i < n:
        best = 0
        for j in range(i + shortest, n + 1):
            piece = text[i:j]
            if not _WORDLIKE.fullmatch(piece):
                break
            if any(piece in s for s in sources):
                best = j - i
            else:
                break
        if best >= shortest:
            piece = text[i : i + best]
            if not any(piece in f for f in found):
                found.append(piece)
            i += best
        else:
            i += 1
    return tuple(sorted(found, key=len, reverse=True))
