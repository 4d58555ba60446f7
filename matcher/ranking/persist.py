"""Persistence: a saved index is a folder of plain files (JSON + `.npy`, no pickle).

A base folder (meta.json, the arrays, the term indexes) is written by `save`, and after incremental
updates a `delta-*` sub-folder holds what changed since the base was made, named by `state.json`.
Writing a delta never touches the base files; `state.json` is replaced atomically, and the
previous delta is kept for one more round for readers mid-load. `word_tfidf` shares the counts of
`units` and is not saved: `load` makes it again (`sibling`), from the norm sums saved beside
(`WORD_TFIDF_SUMS`) rather than by a pass over every entry. Every file a load reads carries a
checksum in `state.json`: a truncated or garbled file is refused instead of loading as wrong scores.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from matcher.errors import IndexStateError
from matcher.index import FORMAT_VERSION, LsaSpace, TermIndex
from matcher.ranking.signals import prior

if TYPE_CHECKING:
    from matcher.ranking.expert_index import ExpertIndex

WORD_TFIDF_SUMS = "word_tfidf.norm_sums.npy"


def saved_parts(index: ExpertIndex) -> list[str]:
    return [name for name in index.TERM_INDEXES if getattr(index, f"{name}_") is not None]


def save(index: ExpertIndex, folder: Path | str, *, extra_meta: Mapping[str, object] | None = None) -> None:
    index._require_fitted()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": FORMAT_VERSION,
        "params": {**index.params, "weights": index.weights},
        "parts": saved_parts(index),
        "base_id": index.base_id_,
        "n_base_experts": index.n_base_experts_,
        "n_base_units": index.units_.n_base_rows_,
        "expert_ids": index.expert_ids_,
        "digests": index.digests_,
        "unit_field": index.unit_field_,
        "unit_text": index.unit_text_,
        "has_lsa": index.lsa_ is not None,
        **(dict(extra_meta) if extra_meta else {}),
    }
    (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    for name in ("unit_expert", "unit_hash", "unit_dkey", "expert_dkey", "n_documents", "centroid_norm",
                 "expert_alive"):
        np.save(folder / f"{name}.npy", getattr(index, f"{name}_"))
    np.save(folder / WORD_TFIDF_SUMS, index.word_tfidf_._sums)
    for name in saved_parts(index):
        getattr(index, f"{name}_").save(folder, name)
    if index.lsa_ is not None:
        index.lsa_.save(folder, "lsa")
    _write_state(folder, {"base_id": index.base_id_, "format_version": FORMAT_VERSION, "delta": None,
                          **dict(extra_meta or {})})


def save_delta(index: ExpertIndex, folder: Path | str, *, extra_meta: Mapping[str, object] | None = None) -> None:
    """Record the changes since the base in `folder`, which must hold this index's base (else
    `IndexStateError`: save the whole index instead)."""
    index._require_fitted()
    folder = Path(folder)
    try:
        # state.json names the base and its format: meta.json (every unit's text, a hundred
        # megabytes at 100,000 experts) is not read for that.
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        if not (folder / "meta.json").is_file():
            raise OSError("meta.json is missing")
    except (OSError, ValueError) as exc:
        raise IndexStateError(f"no saved base index at {folder} ({exc})") from exc
    if state.get("base_id") != index.base_id_ or state.get("format_version") != FORMAT_VERSION:
        raise IndexStateError(f"the index at {folder} is another base; save the whole index")
    ne, nu = index.n_base_experts_, index.units_.n_base_rows_
    name = f"delta-{uuid.uuid4().hex[:12]}"
    tmp = folder / f"{name}.tmp"
    tmp.mkdir()
    meta = {
        "base_id": index.base_id_,
        "expert_ids": index.expert_ids_[ne:],
        "digests": index.digests_[ne:],
        "unit_field": index.unit_field_[nu:],
        "unit_text": index.unit_text_[nu:],
    }
    (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    np.save(tmp / "unit_expert.npy", index.unit_expert_[nu:])
    np.save(tmp / "unit_hash.npy", index.unit_hash_[nu:])
    np.save(tmp / "unit_dkey.npy", index.unit_dkey_[nu:])
    np.save(tmp / "expert_dkey.npy", index.expert_dkey_[ne:])
    np.save(tmp / "n_documents.npy", index.n_documents_[ne:])
    np.save(tmp / "centroid_norm.npy", index.centroid_norm_[ne:])
    np.save(tmp / "expert_alive.npy", index.expert_alive_)
    np.save(tmp / WORD_TFIDF_SUMS, index.word_tfidf_._sums)
    for tname in saved_parts(index):
        getattr(index, f"{tname}_").save_delta(tmp, tname)
    if index.lsa_ is not None:
        np.save(tmp / "lsa.embeddings.npy", index.lsa_.embeddings_[nu:])
    tmp.rename(folder / name)
    _write_state(folder, {"base_id": index.base_id_, "format_version": FORMAT_VERSION, "delta": name,
                          **dict(extra_meta or {})})
    keep = {name, state.get("delta")}
    for old in folder.glob("delta-*"):
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)


def load(cls: type[ExpertIndex], folder: Path | str, *, mmap: bool = True) -> ExpertIndex:
    """Read a saved index. With `mmap` (the default) the large arrays (the count matrices' base
    segments, the LSA embeddings) are memory-mapped, not read: a start-up costs what the
    first queries touch, and processes on one host share the pages."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        raise IndexStateError(f"no index at {folder}: run `matcher index` to build it")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        state_path = folder / "state.json"
        state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else {}
    except (OSError, ValueError) as exc:
        raise IndexStateError(
            f"the index at {folder} is unreadable ({exc}); run `matcher index`"
        ) from exc
    if not isinstance(meta, dict) or not isinstance(state, dict):
        raise IndexStateError(f"the index at {folder} is damaged (meta.json or state.json is not an "
                              "object); rebuild it with `matcher index`")
    _verify_files(folder, state.get("files") or {})
    if meta.get("format_version") != FORMAT_VERSION:
        raise IndexStateError(
            f"the index at {folder} has format {meta.get('format_version')}, this version reads "
            f"{FORMAT_VERSION}: rebuild it with `matcher index`"
        )
    p = meta["params"]
    index = cls(k1=p["k1"], b=p["b"], knn_k=p.get("knn_k", 100), lsa_dims=p["lsa_dims"], weights=p["weights"],
                char_abstracts=bool(p.get("char_abstracts", False)), build_all=bool(p.get("build_all", False)))
    try:
        if state and state.get("base_id") != meta["base_id"]:
            raise ValueError("state.json names another base")
        delta = folder / state["delta"] if state.get("delta") else None
        ne, nu = int(meta["n_base_experts"]), int(meta["n_base_units"])
        dmeta = json.loads((delta / "meta.json").read_text(encoding="utf-8")) if delta else None

        def part(name: str, base_len: int) -> np.ndarray:
            arr = np.load(folder / f"{name}.npy", allow_pickle=False)
            if delta is None:
                return arr
            return np.concatenate([arr[:base_len], np.load(delta / f"{name}.npy", allow_pickle=False)])

        def listed(key: str, base_len: int) -> list:  # type: ignore[type-arg]
            return list(meta[key]) if dmeta is None else [*meta[key][:base_len], *dmeta[key]]

        index.base_id_ = meta["base_id"]
        index.expert_ids_ = listed("expert_ids", ne)
        index.digests_ = listed("digests", ne)
        index.unit_field_ = listed("unit_field", nu)
        index.unit_text_ = listed("unit_text", nu)
        index.unit_expert_ = part("unit_expert", nu)
        index.unit_hash_ = part("unit_hash", nu)
        index.unit_dkey_ = part("unit_dkey", nu)
        index.expert_dkey_ = part("expert_dkey", ne)
        index.dense_ = None  # vectors come from the store's cache (the owner attaches them)
        index.dense_shift_ = None
        index.popularity_ = None
        index.n_documents_ = part("n_documents", ne)
        index.centroid_norm_ = part("centroid_norm", ne)
        src = delta if delta is not None else folder
        index.expert_alive_ = np.load(src / "expert_alive.npy", allow_pickle=False).astype(bool)
        parts = set(meta.get("parts", ()))
        for name in cls.TERM_INDEXES:
            part_ = TermIndex.load(folder, name, delta=delta, mmap=mmap) if name in parts else None
            setattr(index, f"{name}_", part_)
        if index.units_ is None or index.chars_ is None:
            raise ValueError("the document indexes are missing")
        sums_file = src / WORD_TFIDF_SUMS
        index.word_tfidf_ = index.units_.sibling(
            "tfidf", norm_sums=np.load(sums_file, allow_pickle=False) if sums_file.exists() else None)
        index.n_base_experts_ = ne
        if meta.get("has_lsa"):
            lsa = LsaSpace.load(folder, "lsa", mmap=mmap and delta is None)
            if delta is not None:
                extra = np.load(delta / "lsa.embeddings.npy", allow_pickle=False)
                lsa = lsa.with_embeddings(np.concatenate([lsa.embeddings_[:nu], extra]))
            index.lsa_ = lsa
        else:
            index.lsa_ = None
        n_experts, n_units = len(index.n_documents_), index.units_.n_rows_
        if not (len(index.expert_ids_) == len(index.expert_alive_) == len(index.digests_) == n_experts
                and len(index.expert_dkey_) == n_experts
                and len(index.unit_expert_) == len(index.unit_text_) == len(index.unit_hash_)
                == len(index.unit_dkey_) == n_units):
            raise ValueError("its parts disagree in length")
    except (OSError, ValueError, KeyError) as exc:
        raise IndexStateError(
            f"the index at {folder} is damaged ({exc}); rebuild it with `matcher index`"
        ) from exc
    index.prior_ = prior(index.n_documents_ * index.expert_alive_)
    index.meta_ = {**meta, **state}
    return index


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_state(folder: Path, state: Mapping[str, object]) -> None:
    # Checksums of every file a load reads (the base's and the current delta's): a truncated or
    # garbled file is refused, and the index rebuilt, instead of failing deep inside numpy or zipfile
    # or, worse, loading as silently wrong scores.
    # The base files never change once written: after an update only the new delta's files are
    # digested, the base's are taken from the state the base was saved with (re-reading a
    # gigabyte base made adding one expert to 100,000 take seconds).
    delta = state.get("delta")
    known: Mapping[str, str] = {}
    if delta:
        try:
            previous = json.loads((folder / "state.json").read_text(encoding="utf-8"))
            if previous.get("base_id") == state.get("base_id"):
                known = previous.get("files") or {}
        except (OSError, ValueError):
            known = {}
    parts = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith("state.json")]
    if delta:
        parts += [p for p in (folder / str(delta)).iterdir() if p.is_file()]
    files = {}
    for p in sorted(parts):
        rel = p.relative_to(folder).as_posix()
        files[rel] = known[rel] if "/" not in rel and rel in known else _digest(p)
    tmp = folder / f"state.json.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"  # writers in several processes
    tmp.write_text(json.dumps({**dict(state), "files": files}, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, folder / "state.json")


def _verify_files(folder: Path, files: Mapping[str, str]) -> None:
    for rel, want in files.items():
        try:
            ok = _digest(folder / rel) == want
        except OSError as exc:
            raise IndexStateError(f"the index at {folder} is damaged ({rel}: {exc.strerror}); "
                                  "rebuild it with `matcher index`") from exc
        if not ok:
            raise IndexStateError(f"the index at {folder} is damaged ({rel} fails its checksum); "
                                  "rebuild it with `matcher index`")
