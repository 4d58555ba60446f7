"""A ranking signal, in one place: what it fits, how it scores, how it follows updates, what it saves.

    class Patents(ExpertRows):               # a signal of one number per expert
        name = "patents"                     # weighted by the setting `weight_patents`
        def features(self, experts, tokens):
            return np.asarray([sum(d.kind == "patent" for d in e.documents) for e in experts], np.float32)
        def score(self, ctx, part):
            return np.log1p(part)

Defining the class registers it (in `order`, after the built-in ones unless told); its weight is
the setting `weight_<name>` (`matcher.ranking.params`); `fit`, `updated`, `compacted`, `save`,
`save_delta` and `load` keep its part (`IndexState.parts_[name]`) with the index; `score` gives one
number per expert for a query, through `matcher.ranking.scoring.Scoring`, so that the exhaustive and
the pruned paths run the same code; and its value shows in each explanation's `signals`.

Signals that read only what the index shares (the units' word and character indexes) fit nothing
of their own: `docs`, `tfidf`, `chars`. Parts by kind: a term index (`TermPart`: `profile`,
`fields`), one row per expert (`ExpertRows`: `centroid`), or anything else (`lsa`: the LSA space).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from matcher.index import TermIndex
    from matcher.models import Expert
    from matcher.ranking.scoring import Scoring
    from matcher.ranking.state import IndexState
    from matcher.ranking.units import Unit
    from matcher.tokens import TokenSource

_REGISTRY: dict[str, Signal] = {}


def registered() -> list[Signal]:
    """Every signal, in fusion order (the order the fused score sums them in)."""
    return sorted(_REGISTRY.values(), key=lambda s: s.order)


def names() -> list[str]:
    return [s.name for s in registered()]


def get(name: str) -> Signal:
    return _REGISTRY[name]


def unregister(name: str) -> None:
    """Forget a signal (a test's toy signal, after the test)."""
    _REGISTRY.pop(name, None)


@dataclass(frozen=True)
class Growth:
    """An incremental update as the signals see it: `after` holds the updated units and term
    indexes (`before` the old ones); `experts` were appended at positions `first`.., their `units`
    at rows `first_unit`.. (with `unit_tokens`, their words); `dead` experts and `dead_units` masked."""

    before: IndexState
    after: IndexState
    experts: Sequence[Expert]
    first: int
    units: Sequence[Unit]
    first_unit: int
    unit_tokens: Sequence[list[str]]
    dead: np.ndarray
    dead_units: np.ndarray
    tokens: TokenSource

    @functools.cached_property
    def added_tfidf(self) -> Any:
        """The appended units' word TF-IDF rows under today's statistics (read by two signals)."""
        return self.after.words_tfidf_.weighted(np.arange(self.first_unit, self.first_unit + len(self.units)))

    @property
    def local_unit_expert(self) -> np.ndarray:
        """Per appended unit, its expert among `experts` (0..)."""
        return np.asarray([u.expert - self.first for u in self.units], dtype=np.int64)


@dataclass(frozen=True)
class Compaction:
    """A compaction: `after` holds the compacted units and term indexes; `order` are the old
    positions of its experts, `rows` the old rows of its units."""

    before: IndexState
    after: IndexState
    order: np.ndarray
    rows: np.ndarray


class Signal:
    """Base of every signal (module docstring). The defaults fit, keep and save nothing."""

    name: ClassVar[str] = ""
    #: position in the fused sum; signals defined elsewhere come after the built-in ones
    order: ClassVar[int] = 1000
    #: a vote in this signal is evidence that an expert matches (lets them be listed, `fusion`)
    evidence: ClassVar[bool] = True
    #: fitted only when weighted (or `build_all`): the part costs memory the defaults do not spend
    optional: ClassVar[bool] = False

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.__dict__.get("name"):
            _REGISTRY[cls.name] = cls()

    def builds(self, index: IndexState) -> bool:
        p = index.params
        return not self.optional or p.build_all or bool(p.weight(self.name))

    # -- what it fits: a part, collected while the experts stream by (`matcher.ranking.fit`) -----
    def start(self, index: IndexState) -> Any:
        """An accumulator for `collect` (None: nothing to collect)."""
        return None

    def collect(self, acc: Any, experts: Sequence[Expert], tokens: TokenSource) -> None:
        """See one chunk of the experts being fitted, in position order."""

    def finish(self, acc: Any, index: IndexState) -> Any:
        """The fitted part (None: none), once the units and term indexes of `index` are fitted."""
        return None

    # -- how it follows the index ----------------------------------------------------------------
    def updated(self, part: Any, growth: Growth) -> Any:
        return part

    def compacted(self, part: Any, compaction: Compaction) -> Any:
        return part

    # -- what it saves (a folder of plain files, `matcher.ranking.persist`) -----------------------
    def save(self, part: Any, folder: Path) -> None:
        """Write the part into a base folder."""

    def save_delta(self, part: Any, folder: Path, index: IndexState) -> None:
        """Write what changed since the base (`index.n_base_experts_`, its units' base rows)."""

    def load(self, folder: Path, delta: Path | None, index: IndexState, *, mmap: bool) -> Any:
        """Read the part back (`delta`: the folder of the changes since the base, or None)."""
        return None

    # -- how it scores ----------------------------------------------------------------------------
    def score(self, ctx: Scoring, part: Any) -> np.ndarray:
        """One value per expert position for the query of `ctx`."""
        raise NotImplementedError


class TermPart(Signal):
    """A signal whose part is a `TermIndex` with one row per expert (saved as `<name>.*`)."""

    def updated(self, part: TermIndex | None, growth: Growth) -> TermIndex | None:
        if part is None:
            return None
        return part.updated(self.rows_for(growth), growth.dead)

    def rows_for(self, growth: Growth) -> list[list[str]]:
        """The token lists of the appended experts, one each."""
        raise NotImplementedError

    def compacted(self, part: TermIndex | None, compaction: Compaction) -> TermIndex | None:
        return None if part is None else part.compacted(compaction.order)

    def save(self, part: TermIndex | None, folder: Path) -> None:
        if part is not None:
            part.save(folder, self.name)

    def save_delta(self, part: TermIndex | None, folder: Path, index: IndexState) -> None:
        if part is not None:
            part.save_delta(folder, self.name)

    def load(self, folder: Path, delta: Path | None, index: IndexState, *, mmap: bool) -> TermIndex | None:
        from matcher.index import TermIndex

        if not (folder / f"{self.name}.json").exists():
            return None
        return TermIndex.load(folder, self.name, delta=delta, mmap=mmap)

    def score(self, ctx: Scoring, part: TermIndex | None) -> np.ndarray:
        return ctx.zeros() if part is None else part.score(ctx.query.weights)


class ExpertRows(Signal):
    """A signal whose part is one row per expert position (a float32 array, saved as
    `<name>.rows.npy`): `features` gives the rows of some experts; appended experts get theirs,
    a compaction takes them in the new order."""

    def features(self, experts: Sequence[Expert], tokens: TokenSource) -> np.ndarray:
        raise NotImplementedError

    def start(self, index: IndexState) -> list[np.ndarray]:
        return []

    def collect(self, acc: list[np.ndarray], experts: Sequence[Expert], tokens: TokenSource) -> None:
        acc.append(np.asarray(self.features(experts, tokens), dtype=np.float32))

    def finish(self, acc: list[np.ndarray], index: IndexState) -> np.ndarray:
        return np.concatenate(acc) if acc else np.zeros(0, dtype=np.float32)

    def updated(self, part: np.ndarray, growth: Growth) -> np.ndarray:
        added = np.asarray(self.features(growth.experts, growth.tokens), dtype=np.float32)
        return np.concatenate([part, added])

    def compacted(self, part: np.ndarray, compaction: Compaction) -> np.ndarray:
        return part[compaction.order]

    def save(self, part: np.ndarray, folder: Path) -> None:
        np.save(folder / f"{self.name}.rows.npy", part)

    def save_delta(self, part: np.ndarray, folder: Path, index: IndexState) -> None:
        np.save(folder / f"{self.name}.rows.npy", part[index.n_base_experts_ :])

    def load(self, folder: Path, delta: Path | None, index: IndexState, *, mmap: bool) -> np.ndarray:
        base = np.load(folder / f"{self.name}.rows.npy", allow_pickle=False)
        if delta is None:
            return base
        extra = np.load(delta / f"{self.name}.rows.npy", allow_pickle=False)
        return np.concatenate([base[: index.n_base_experts_], extra])


def fitted(index: IndexState) -> Iterator[tuple[Signal, Any]]:
    """Each registered signal with its part in `index` (None when it has none)."""
    for s in registered():
        yield s, index.parts_.get(s.name)
