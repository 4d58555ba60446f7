"""A term index as plain files: `name.json` (parameters, terms, statistics), the base segment's
arrays as `.npy` (memory-mappable) and the rest in `name.npz`. Part of `TermIndex`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from matcher.errors import IndexStateError

FORMAT_VERSION = 6  # 4: memory-mappable .npy base segments, shared BM25/TF-IDF counts; 5: dense keys;
# 6: the ranking as signals, each saving its own part (words.*, centroid.rows.npy)


class TermFiles:
    """`TermIndex.save`, `save_delta`, `load`."""

    def _stats_meta(self) -> dict[str, Any]:
        return {"n_docs": self.n_docs_, "total_len": self._total_len, "n_changed": self.n_changed_,
                "n_base_rows": self._base.shape[0], "n_base_terms": self._base.shape[1]}

    def _stats_arrays(self) -> dict[str, np.ndarray]:
        d = self._delta
        out = {"delta_data": d.data, "delta_indices": d.indices, "delta_indptr": d.indptr,
               "delta_shape": np.asarray(d.shape), "alive": self.alive_, "doc_len": self.doc_len_,
               "df": self.df_}
        if self.weighting == "tfidf":
            out["norm_sums"] = self._sums  # see `_refresh`
        return out

    def save(self, folder: Path | str, name: str) -> None:
        """Everything, as `name.json` (parameters, terms, statistics) and `name.npz` (arrays)."""
        self._require_fitted()
        folder = Path(folder)
        meta = {"weighting": self.weighting, "k1": self.k1, "b": self.b, "avgdl": self.avgdl_,
                "terms": self.terms_, **self._stats_meta()}
        (folder / f"{name}.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        m = self._base
        # The base segment's arrays are plain .npy files (memory-mappable); the rest is small.
        for part in ("data", "indices", "indptr"):
            np.save(folder / f"{name}.{part}.npy", getattr(m, part))
        np.savez(folder / f"{name}.npz", shape=np.asarray(m.shape), **self._stats_arrays())

    def save_delta(self, folder: Path | str, name: str) -> None:
        """Only what changed since the base segment was made: the delta rows, the terms they
        added, the masks and statistics. `load(base_folder, name, delta=folder)` reads it back."""
        self._require_fitted()
        folder = Path(folder)
        meta = {**self._stats_meta(), "new_terms": self.terms_[self._base.shape[1] :]}
        (folder / f"{name}.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        np.savez(folder / f"{name}.npz", **self._stats_arrays())

    @classmethod
    def load(cls, folder: Path | str, name: str, *, delta: Path | str | None = None,
             mmap: bool = False) -> Self:
        """Read a saved index (and its `delta`). With `mmap`, the base segment's arrays are mapped
        read-only from their files instead of read into memory."""
        folder = Path(folder)
        meta = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        self = cls(meta["weighting"], meta["k1"], meta["b"])
        mode = "r" if mmap else None
        base = [np.load(folder / f"{name}.{part}.npy", allow_pickle=False, mmap_mode=mode)
                for part in ("data", "indices", "indptr")]
        with np.load(folder / f"{name}.npz", allow_pickle=False) as z:
            shape = tuple(int(x) for x in z["shape"])
            arrays = {k: z[k] for k in z.files if k != "shape"}
        if len(base[2]) != shape[1] + 1 or len(base[0]) != len(base[1]) or len(base[0]) != int(base[2][-1]):
            raise IndexStateError(f"the saved index {name} in {folder} is inconsistent; rebuild it")
        self._base = sp.csc_matrix(shape, dtype=np.float32)
        # Set the arrays directly: the constructor would check (read) every index, and may copy.
        self._base.data, self._base.indices, self._base.indptr = base
        self._base.has_sorted_indices = True
        stats, terms = meta, list(meta["terms"])
        if delta is not None:
            dmeta = json.loads((Path(delta) / f"{name}.json").read_text(encoding="utf-8"))
            if (dmeta["n_base_rows"], dmeta["n_base_terms"]) != shape:
                raise IndexStateError(f"the update of {name} in {delta} belongs to another base index")
            with np.load(Path(delta) / f"{name}.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            stats, terms = dmeta, terms[: shape[1]] + list(dmeta["new_terms"])
        dshape = tuple(int(x) for x in arrays["delta_shape"])
        self.terms_ = terms
        self.vocabulary_ = {t: j for j, t in enumerate(terms)}
        self._set_delta(sp.csr_matrix((arrays["delta_data"], arrays["delta_indices"], arrays["delta_indptr"]),
                                      shape=dshape))
        self.alive_ = arrays["alive"].astype(bool)
        self.doc_len_ = arrays["doc_len"]
        self.df_ = arrays["df"]
        self.n_docs_ = int(stats["n_docs"])
        self.n_changed_ = int(stats["n_changed"])
        self._total_len = float(stats["total_len"])
        if len(self.alive_) != self.n_rows_ or len(self.df_) != len(terms) or dshape[1] != len(terms):
            raise IndexStateError(f"the saved index {name} in {folder} is inconsistent; rebuild it")
        self._refresh(norm_sums=arrays.get("norm_sums"))
        return self


