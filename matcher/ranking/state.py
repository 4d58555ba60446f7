"""The plain index object every ranking stage reads: the experts, their units, the term indexes and
each signal's fitted part, with nothing that runs a stage.

The stages are functions over it (`fit`, `scoring`/`pruned`, `fusion`, `explain`, `updates`,
`persist`), and `matcher.ranking.expert_index.ExpertIndex` adds them back as methods for callers;
no stage imports another's module through the index, so the package has no import circle.

State is never changed in place once built: an update or a compaction makes a new object. Values
derived from the structure (lookup arrays, id -> position, the pruned path's canonical units, the
LSA term vectors) are cached by the structure's `version_` (`cached`): a new structure gets a new
version, so no cache is ever read for the wrong one and none is cleared by hand.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from matcher.errors import IndexStateError
from matcher.models import Expert
from matcher.ranking.aggregate import Layout
from matcher.ranking.params import IndexParams

if TYPE_CHECKING:
    from matcher.dense import DenseVectors
    from matcher.index import TermIndex

T = TypeVar("T")
_VERSIONS = itertools.count(1)


def next_version() -> int:
    return next(_VERSIONS)


class IndexCaches:
    """Values derived from an index's structure, each kept for the version it was made from. The
    copies of one index (`with_dense`, `with_popularity`: same structure) share one; the two most
    recent versions are kept, since a reader on another thread may still hold the older index."""

    KEEP = 2

    def __init__(self) -> None:
        self._values: dict[tuple[int, str], Any] = {}
        self._versions: list[int] = []
        self._lock = threading.Lock()

    def get(self, version: int, name: str, make: Callable[[], T]) -> T:
        with self._lock:
            if (version, name) in self._values:
                return self._values[(version, name)]
        value = make()
        self.put(version, name, value)
        return value

    def put(self, version: int, name: str, value: object) -> None:
        with self._lock:
            if version not in self._versions:
                self._versions.append(version)
                for old in self._versions[: -self.KEEP]:
                    for key in [k for k in self._values if k[0] == old]:
                        del self._values[key]
                self._versions = self._versions[-self.KEEP :]
            if version in self._versions:
                self._values[(version, name)] = value


class IndexState:
    """Every fitted part of an index over one set of experts (module docstring)."""

    params: IndexParams
    base_id_: str  # the base this state descends from (a saved folder holds one base and its delta)
    version_: int  # the structure (experts, units) this state has: new after fit, update, compaction
    caches: IndexCaches
    # experts, by position
    expert_ids_: list[str]
    digests_: list[str]  # of the record each was indexed from (`matcher.models.expert_digest`)
    expert_alive_: np.ndarray  # bool: False where an expert was removed or replaced
    n_base_experts_: int
    n_documents_: np.ndarray  # float32: documents in each expert's record
    expert_dkey_: np.ndarray  # (n, 16) uint8: dense-cache key of each expert's profile text
    # units (each paper, patent, project, the fields, the bio), by row
    unit_expert_: np.ndarray  # int64: the expert position a unit belongs to
    unit_field_: list[str]
    unit_text_: list[str]  # what staff see as evidence
    unit_hash_: np.ndarray  # int64: units of equal content are one document
    unit_dkey_: np.ndarray  # (rows, 16) uint8: dense-cache key of what the encoder reads
    # the term indexes of the units: word BM25 (and its TF-IDF view, the same counts), characters
    words_: TermIndex
    words_tfidf_: TermIndex
    chars_: TermIndex
    #: each signal's own fitted part, by signal name (absent: the signal fits nothing or is not built)
    parts_: Mapping[str, Any]
    # attached by the owner, not fitted: dense vectors, the demand bank's shift and popularity
    dense_: DenseVectors | None = None
    dense_shift_: np.ndarray | None = None
    popularity_: np.ndarray | None = None
    meta_: Mapping[str, Any] = MappingProxyType({})

    def require_fitted(self) -> None:
        if not hasattr(self, "words_"):
            raise IndexStateError("the expert index is not fitted: run `matcher index` to build it")

    def part(self, name: str) -> Any:
        """The fitted part of signal `name`, or None."""
        return self.parts_.get(name)

    def cached(self, name: str, make: Callable[[], T]) -> T:
        return self.caches.get(self.version_, name, make)

    @property
    def weights(self) -> Mapping[str, float]:
        return self.params.weights

    @property
    def n_experts(self) -> int:
        """Experts in the index (removed ones not counted; positions run to `len(expert_ids_)`)."""
        self.require_fitted()
        return int(self.expert_alive_.sum())

    @property
    def drift(self) -> float:
        """Documents added or removed since the semantic space was fitted, as a share of those it was
        fitted on. Lexical scores stay exact whatever the drift; the LSA basis ages with it."""
        self.require_fitted()
        return self.words_.n_changed_ / max(self.words_.n_base_rows_, 1)

    def positions(self) -> Mapping[str, int]:
        """Expert id -> position, for the experts in the index (read-only; made once per version,
        and by an update from its predecessor's: a dict of 100,000 ids took 70 ms an add)."""
        self.require_fitted()
        pos = self.cached("positions", lambda: {self.expert_ids_[i]: int(i)
                                                 for i in np.flatnonzero(self.expert_alive_)})
        return MappingProxyType(pos)

    def layout(self) -> Layout:
        """Lookup arrays derived from the unit list (`matcher.ranking.aggregate.Layout`)."""
        return self.cached("layout",
                           lambda: Layout.of(self.unit_expert_, self.unit_hash_, self.expert_alive_))

    def units_of(self, expert: int) -> np.ndarray:
        lay = self.layout()
        return lay.by_expert[lay.expert_ptr[expert] : lay.expert_ptr[expert + 1]]

    def live_digests(self) -> dict[str, str]:
        """{expert id: digest of the record it was indexed from} of the live experts."""
        self.require_fitted()
        return {self.expert_ids_[i]: self.digests_[i] for i in np.flatnonzero(self.expert_alive_)}

    def align(self, experts: Mapping[str, Expert]) -> tuple[Expert | None, ...]:
        """The records by position (None where an expert was removed), for turning scores into matches."""
        try:
            return tuple(experts[eid] if alive else None
                         for eid, alive in zip(self.expert_ids_, self.expert_alive_, strict=True))
        except KeyError as exc:
            raise IndexStateError(f"expert {exc} is in the index but not in the records given") from None

    def realign(self, before: IndexState, aligned: Sequence[Expert | None],
                records: Mapping[str, Expert]) -> tuple[Expert | None, ...]:
        """`align` for an index made by `before.updated(...)`, from `before`'s alignment: the
        removed and replaced positions become None and the appended ones come from `records`
        (which needs to hold only those): no pass in Python over every expert."""
        n_old = len(before.expert_ids_)
        if (self.base_id_ != before.base_id_ or len(aligned) != n_old or len(self.expert_ids_) < n_old
                or self.expert_ids_[:n_old] != before.expert_ids_):
            raise IndexStateError("realign needs an index made from `before` by updated()")
        out = list(aligned)
        for i in np.flatnonzero(before.expert_alive_ & ~self.expert_alive_[:n_old]):
            out[int(i)] = None
        try:
            out.extend(records[eid] for eid in self.expert_ids_[n_old:])
        except KeyError as exc:
            raise IndexStateError(f"expert {exc} is in the index but not in the records given") from None
        return tuple(out)
