"""Persistence: a saved index is a folder of plain files (JSON + `.npy`, no pickle).

A base folder (meta.json, the arrays, the term indexes) is written by `save`, and after incremental
updates a `delta-*` sub-folder holds what changed since the base was made, named by `state.json`.
Writing a delta never touches the base files; `state.json` is replaced atomically, and the
previous delta is kept for one more round for readers mid-load. `word_tfidf` shares the counts of
`words` and is not saved: `load` makes it again (`sibling`), from the norm sums saved beside
(`WORD_TFIDF_SUMS`) rather than by a pass over every entry. Each signal writes and reads its own
part (`matcher.ranking.signal`). Every file a load reads carries a
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
from typing import TypeVar

import numpy as np

from matcher.errors import IndexStateError
from matcher.index import FORMAT_VERSION, TermIndex
from matcher.ranking import signal
from matcher.ranking.params import IndexParams
from matcher.ranking.state import IndexCaches, IndexState, next_version

WORD_TFIDF_SUMS = "words_tfidf.norm_sums.npy"
#: Arrays of the units (rows) and of the experts (positions) the base and each delta hold.
UNIT_ARRAYS = ("unit_expert", "unit_hash", "unit_dkey")
EXPERT_ARRAYS = ("expert_dkey", "n_documents")
S = TypeVar("S", bound=IndexState)


def saved_parts(index: IndexState) -> list[str]:
    return [s.name for s, part in signal.fitted(index) if part is not None]


def save(index: IndexState, folder: Path | str, *, extra_meta: Mapping[str, object] | None = None) -> None:
    index.require_fitted()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": FORMAT_VERSION,
        "params": index.params.to_json(),
        "parts": saved_parts(index),
        "base_id": index.base_id_,
        "n_base_experts": index.n_base_experts_,
        "n_base_units": index.words_.n_base_rows_,
        "expert_ids": index.expert_ids_,
        "digests": index.digests_,
        "unit_field": index.unit_field_,
        "unit_text": index.unit_text_,
        **(dict(extra_meta) if extra_meta else {}),
    }
    (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    for name in (*UNIT_ARRAYS, *EXPERT_ARRAYS, "expert_alive"):
        np.save(folder / f"{name}.npy", getattr(index, f"{name}_"))
    np.save(folder / WORD_TFIDF_SUMS, index.words_tfidf_._sums)
    index.words_.save(folder, "words")
    index.chars_.save(folder, "chars")
    for s, part in signal.fitted(index):
        if part is not None:
            s.save(part, folder)
    _write_state(folder, {"base_id": index.base_id_, "format_version": FORMAT_VERSION, "delta": None,
                          **dict(extra_meta or {})})


def save_delta(index: IndexState, folder: Path | str, *,
               extra_meta: Mapping[str, object] | None = None) -> None:
    """Record the changes since the base in `folder`, which must hold this index's base (else
    `IndexStateError`: save the whole index instead)."""
    index.require_fitted()
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
    ne, nu = index.n_base_experts_, index.words_.n_base_rows_
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
    for arr in UNIT_ARRAYS:
        np.save(tmp / f"{arr}.npy", getattr(index, f"{arr}_")[nu:])
    for arr in EXPERT_ARRAYS:
        np.save(tmp / f"{arr}.npy", getattr(index, f"{arr}_")[ne:])
    np.save(tmp / "expert_alive.npy", index.expert_alive_)
    np.save(tmp / WORD_TFIDF_SUMS, index.words_tfidf_._sums)
    index.words_.save_delta(tmp, "words")
    index.chars_.save_delta(tmp, "chars")
    for s, part in signal.fitted(index):
        if part is not None:
            s.save_delta(part, tmp, index)
    tmp.rename(folder / name)
    _write_state(folder, {"base_id": index.base_id_, "format_version": FORMAT_VERSION, "delta": name,
                          **dict(extra_meta or {})})
    keep = {name, state.get("delta")}
    for old in folder.glob("delta-*"):
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)


def _read_meta(folder: Path) -> tuple[dict, dict]:  # type: ignore[type-arg]
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        raise IndexStateError(f"no index at {folder}: run `matcher index` to build it")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        state_path = folder / "state.json"
        state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else {}
    except (OSError, ValueError) as exc:
        raise IndexStateError(f"the index at {folder} is unreadable ({exc}); run `matcher index`") from exc
    if not isinstance(meta, dict) or not isinstance(state, dict):
        raise IndexStateError(f"the index at {folder} is damaged (meta.json or state.json is not an "
                              "object); rebuild it with `matcher index`")
    _verify_files(folder, state.get("files") or {})
    if meta.get("format_version") != FORMAT_VERSION:
        raise IndexStateError(
            f"the index at {folder} has format {meta.get('format_version')}, this version reads "
            f"{FORMAT_VERSION}: rebuild it with `matcher index`"
        )
    return meta, state


def load(cls: type[S], folder: Path | str, *, mmap: bool = True) -> S:
    """Read a saved index. With `mmap` (the default) the large arrays (the count matrices' base
    segments, the LSA embeddings) are memory-mapped, not read: a start-up costs what the
    first queries touch, and processes on one host share the pages."""
    folder = Path(folder)
    meta, state = _read_meta(folder)
    index = cls.__new__(cls)
    try:
        index.params = IndexParams.from_json(meta["params"])
        if state and state.get("base_id") != meta["base_id"]:
            raise ValueError("state.json names another base")
        delta = folder / state["delta"] if state.get("delta") else None
        _load_core(index, folder, meta, delta, mmap)
        parts = set(meta.get("parts", ()))
        index.parts_ = {}
        loaded = {}
        for s in signal.registered():
            if s.name in parts:
                part = s.load(folder, delta, index, mmap=mmap)
                if part is None:
                    raise ValueError(f"the part of signal {s.name} is missing")
                loaded[s.name] = part
        if parts - set(loaded):
            unknown = sorted(parts - set(loaded))
            raise ValueError(f"it holds parts of signals this version does not know: {unknown}")
        index.parts_ = loaded
        _check_lengths(index)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexStateError(
            f"the index at {folder} is damaged ({exc}); rebuild it with `matcher index`"
        ) from exc
    index.meta_ = {**meta, **state}
    return index


def _load_core(index: IndexState, folder: Path, meta: dict, delta: Path | None, mmap: bool) -> None:  # type: ignore[type-arg]
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
    index.version_ = next_version()
    index.caches = IndexCaches()
    index.expert_ids_ = listed("expert_ids", ne)
    index.digests_ = listed("digests", ne)
    index.unit_field_ = listed("unit_field", nu)
    index.unit_text_ = listed("unit_text", nu)
    for name in UNIT_ARRAYS:
        setattr(index, f"{name}_", part(name, nu))
    for name in EXPERT_ARRAYS:
        setattr(index, f"{name}_", part(name, ne))
    index.dense_ = index.dense_shift_ = index.popularity_ = None  # attached by the owner
    src = delta if delta is not None else folder
    index.expert_alive_ = np.load(src / "expert_alive.npy", allow_pickle=False).astype(bool)
    index.words_ = TermIndex.load(folder, "words", delta=delta, mmap=mmap)
    index.chars_ = TermIndex.load(folder, "chars", delta=delta, mmap=mmap)
    sums_file = src / WORD_TFIDF_SUMS
    index.words_tfidf_ = index.words_.sibling(
        "tfidf", norm_sums=np.load(sums_file, allow_pickle=False) if sums_file.exists() else None)
    index.n_base_experts_ = ne


def _check_lengths(index: IndexState) -> None:
    n_experts, n_units = len(index.n_documents_), index.words_.n_rows_
    if not (len(index.expert_ids_) == len(index.expert_alive_) == len(index.digests_) == n_experts
            and len(index.expert_dkey_) == n_experts
            and len(index.unit_expert_) == len(index.unit_text_) == len(index.unit_hash_)
            == len(index.unit_dkey_) == n_units == index.chars_.n_rows_):
        raise ValueError("its parts disagree in length")


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
