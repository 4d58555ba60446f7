"""fields: word BM25 over what each expert says they do (research fields and their documents'
keywords, `matcher.ranking.units.declared_text`) as one document (optional, off by default)."""

from __future__ import annotations

from collections.abc import Sequence

from matcher.index import TermIndex
from matcher.models import Expert
from matcher.ranking.signal import Growth, TermPart
from matcher.ranking.state import IndexState
from matcher.ranking.units import declared_text
from matcher.tokens import TokenSource


class Fields(TermPart):
    name = "fields"
    order = 50
    optional = True

    def start(self, index: IndexState) -> list[list[str]]:
        return []

    def collect(self, acc: list[list[str]], experts: Sequence[Expert], tokens: TokenSource) -> None:
        acc += tokens.many([declared_text(e) for e in experts])

    def finish(self, acc: list[list[str]], index: IndexState) -> TermIndex:
        return TermIndex("bm25", index.params.bm25_k1, index.params.bm25_b).fit(acc)

    def rows_for(self, growth: Growth) -> list[list[str]]:
        return growth.tokens.many([declared_text(e) for e in growth.experts])
