"""What an index is built and queried with, read from the settings by name.

Every field of `IndexParams` is named as the setting it comes from (`bm25_k1` is `MATCHER_BM25_K1`),
so `from_settings` copies them by name: there is no map of settings into the index to keep up to
date, and an index made without settings has the settings' own defaults. The fusion weights come
the same way from the signals (`matcher.ranking.signal`): signal `name` is weighted by the setting
`weight_<name>` (0 when the settings have none). Fields marked `build` change what is fitted: a
saved index built with other values is rebuilt (`build_key`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

_BUILD = {"build": True}


@dataclass(frozen=True)
class IndexParams:
    """No defaults of its own for what the settings hold: `matcher.config.Settings` has them."""

    # what is fitted (a change needs a rebuild)
    bm25_k1: float = field(metadata=_BUILD)
    bm25_b: float = field(metadata=_BUILD)
    knn_k: int = field(metadata=_BUILD)
    lsa_dims: int = field(metadata=_BUILD)
    char_abstracts: bool = field(metadata=_BUILD)
    # how a query is scored
    max_postings: int
    semantic_exhaustive: int
    diversify_slots: int
    expert_length_norm: float
    list_floor: float
    popularity_weight: float
    topk_pruning: bool
    build_all: bool = field(default=False, metadata=_BUILD)  # every optional signal, whatever its weight
    lsa_sample: int = 60_000  # documents the LSA basis is fitted on at most
    #: fusion weight of each signal, by its name
    weights: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: object, signal_names: Iterable[str], **overrides: Any) -> IndexParams:
        """The fields the settings hold, by name; each signal's weight from `weight_<name>`."""
        values = {f.name: getattr(settings, f.name) for f in fields(cls)
                  if f.name != "weights" and hasattr(settings, f.name)}
        weights = {name: float(getattr(settings, f"weight_{name}", 0.0) or 0.0) for name in signal_names}
        values["weights"] = weights
        values.update(overrides)
        return cls(**values).frozen()

    def frozen(self) -> IndexParams:
        return replace(self, weights=MappingProxyType(dict(self.weights)))

    def weight(self, name: str) -> float:
        return float(self.weights.get(name, 0.0))

    def build_key(self) -> dict[str, object]:
        """What the index was fitted with, weights included (a saved index must match it)."""
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)
                                  if f.metadata.get("build")}
        out["weights"] = dict(self.weights)
        return out

    def to_json(self) -> dict[str, object]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["weights"] = dict(self.weights)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IndexParams:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}).frozen()
