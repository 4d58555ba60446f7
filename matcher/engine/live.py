"""The live index: the fitted index a process serves, kept fresh for the store.

The index is saved as a folder beside the database and reused while it is fresh. It follows the
store incrementally: every expert in it carries a digest of its record, so when the store's
`data_version` moved (a write here, an import by another process) the changed experts alone are
re-indexed (`ExpertIndex.updated`) and the change is saved as a small delta beside the base. When the
documents changed since the last fit exceed `index_max_drift`, the index is compacted (refitted from
its stored counts, no tokenising). It is rebuilt from scratch only when the dictionaries or the
index parameters changed, when the saved one is unusable, or on `rebuild()` (`matcher index`).
A new index replaces the old one in one assignment, so readers on other threads always see a
consistent (index, experts) pair. An index rebuilt by another process (`matcher index`,
`rebuild_elsewhere`) is adopted by a background thread while the loaded one goes on serving.

What is attached to every index it publishes (the dense vectors, the demand bank) comes from its
owner (`Attach`), which also hears when vectors are wanted. The owner is held weakly: an engine
dropped without `close()` frees its index at once, not at the next garbage collection.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from matcher.config import Settings
from matcher.errors import IndexStateError
from matcher.index import FORMAT_VERSION
from matcher.models import Expert, expert_digest
from matcher.rank import ExpertIndex
from matcher.store import Store
from matcher.tokens import TokenSource

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Loaded:
    """An index and the records it ranks, as one value (swapped in one assignment)."""

    index: ExpertIndex
    experts: tuple[Expert | None, ...]  # cards by index position; None where an expert was removed
    data_version: int


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """How big the loaded index is, and which store version and file format it follows."""

    experts: int
    documents: int
    terms: int
    format_version: int
    data_version: int


class OwnedLock:
    """A lock that knows which thread holds it: what the index's owner calls back while this thread
    builds or swaps the index (the demand bank's words, what verdicts taught) can tell that the
    live index is not to be asked for now, instead of waiting on itself for ever."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    def __enter__(self) -> OwnedLock:
        self._lock.acquire()
        self._owner = threading.get_ident()
        return self

    def __exit__(self, *exc: object) -> None:
        self._owner = None
        self._lock.release()

    def held_here(self) -> bool:
        return self._owner == threading.get_ident()


def new_index(settings: Settings, **overrides: object) -> ExpertIndex:
    """An unfitted index with `settings` (`ExpertIndex` reads them by name)."""
    if settings.topk_pruning:
        try:
            import numba  # noqa: F401  (the `scale` extra; imported here for a clear error)
        except ImportError as e:
            raise RuntimeError("MATCHER_TOPK_PRUNING=true needs numba: "
                               "python -m pip install 'jinqiao-matcher[scale]'") from e
    return ExpertIndex(settings, **overrides)


class Attach(Protocol):
    def attach(self, index: ExpertIndex) -> ExpertIndex:
        """`index` with what its owner attaches (dense vectors, the demand bank)."""

    def built(self, index: ExpertIndex) -> None:
        """A new base was built and saved (its vectors may be saved beside it)."""

    def wanted(self) -> None:
        """New experts may lack vectors (wake whatever encodes them)."""


def settings_env(settings: Settings) -> dict[str, str]:
    """`settings` as MATCHER_* environment variables, for a child process (`rebuild_elsewhere`,
    `matcher serve --workers`) that must see what this process sees. Paths are made absolute."""
    out: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, Path):
            value = str(value.resolve()) if str(value) != ":memory:" else str(value)
        elif isinstance(value, tuple | list):
            value = ",".join(v.get_secret_value() if hasattr(v, "get_secret_value") else str(v)
                             for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        out[f"MATCHER_{name.upper()}"] = str(value)
    return out


def card(expert: Expert) -> Expert:
    """What a match carries and the rules need (name, title, institution, region, fields,
    contact), without the documents and bio: the engine keeps one per expert in memory, and the
    documents of 100,000 experts would be gigabytes. `Engine.get_expert` reads the whole record."""
    return replace(expert, documents=(), bio="")


def _carding(experts: Iterable[Expert], cards: list[Expert]) -> Iterator[Expert]:
    """Pass `experts` through, keeping each one's card."""
    for e in experts:
        cards.append(card(e))
        yield e


def fingerprint(settings: Settings) -> str:
    """Changes when the dictionaries change, since they change the tokens."""
    h = hashlib.sha1()
    for name in ("domain_dict.txt", "stopwords.txt", "generic_terms.txt", "synonyms.txt"):
        p = settings.corpora_dir / name
        h.update(name.encode())
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


class LiveIndex:
    """The loaded index of one engine (module docstring)."""

    #: How often (seconds) a serving engine looks whether another process saved a new base index.
    FOLLOW_EVERY = 1.0

    def __init__(self, settings: Settings, store: Store, tokens: TokenSource, attach: Attach,
                 new_index: Callable[[], ExpertIndex]) -> None:
        self.settings = settings
        self.store = store
        self.tokens = tokens
        self._attach = weakref.proxy(attach)  # the owner holds this object (module docstring)
        self.new_index = new_index
        self.loaded: Loaded | None = None
        self.lock = OwnedLock()  # one build, update or swap at a time
        self._follow_checked = 0.0
        self._following: threading.Thread | None = None
        self.fingerprint = fingerprint(settings)

    @property
    def folder(self) -> Path:
        return self.settings.resolved_index_dir

    def info(self) -> IndexInfo:
        loaded = self.current()
        words = loaded.index.words_
        return IndexInfo(loaded.index.n_experts, words.n_docs_, words.n_terms, FORMAT_VERSION,
                         loaded.data_version)

    # -- fresh for the store ----------------------------------------------------------------------
    def current(self) -> Loaded:
        """The loaded index, fresh for the store: loaded from disk, updated incrementally, or rebuilt."""
        loaded = self.loaded
        if loaded is not None and (self.store.in_transaction
                                   or loaded.data_version == self.store.data_version):
            # Inside a write transaction this thread's connection sees its own uncommitted rows:
            # the index follows committed data only (`follow_write`), or a rollback would leave
            # it holding what the store never kept.
            return loaded
        with self.lock:
            loaded = self.loaded
            version = self.store.data_version
            if loaded is not None and loaded.data_version == version:
                return loaded
            index = loaded.index if loaded is not None else self.load_saved()
            if index is None:
                return self._rebuild_locked()
            return self._sync_locked(index, version)

    def rebuild(self) -> ExpertIndex:
        """Fit the index on every expert in the store and save it (replacing the old one)."""
        with self.lock:
            return self._rebuild_locked().index

    def _rebuild_locked(self) -> Loaded:
        version = self.store.data_version
        log.info("building the index over %d experts", self.store.count_experts())
        cards: list[Expert] = []
        index = self.new_index().fit(_carding(self.store.iter_experts(), cards), self.tokens)
        self._save(index, version)
        self.loaded = Loaded(self._attach.attach(index), tuple(cards), version)
        self._attach.built(self.loaded.index)
        self._attach.wanted()
        return self.loaded

    def swap(self, change: Callable[[ExpertIndex], ExpertIndex]) -> None:
        """Replace the loaded index by `change(index)` (same experts: vectors or the bank attached)."""
        with self.lock:
            current = self.loaded
            if current is not None:
                self.loaded = replace(current, index=change(current.index))

    def load_saved(self) -> ExpertIndex | None:
        """The saved index when it was built with today's dictionaries and parameters."""
        if not self.folder.exists():
            log.info("no saved index at %s yet; building it", self.folder)
            return None
        try:
            index = ExpertIndex.load(self.folder)
        except Exception as exc:  # noqa: BLE001 - a damaged index must never stop matching: rebuild it
            reason = exc.message if isinstance(exc, IndexStateError) else f"{type(exc).__name__}: {exc}"
            log.warning("%s (rebuilding it from the database now)", reason)
            return None
        wanted = self.new_index().params
        same_params = index.params.build_key() == wanted.build_key()
        if index.meta_.get("fingerprint") != self.fingerprint or not same_params:
            log.info("the saved index was built with other dictionaries or parameters; rebuilding")
            return None
        index.params = wanted  # the same build; today's query-time settings
        return index

    def _sync_locked(self, index: ExpertIndex, version: int) -> Loaded:
        """Bring `index` up to the store (changes by anyone): the digest stored beside each record
        says which differ from the index, and only those are read whole. Start-up at 100,000
        experts no longer parses and digests every record with its documents."""
        live = index.live_digests()
        cards: dict[str, Expert] = {}
        suspect: list[str] = []
        for c, digest in self.store.iter_expert_cards():
            cards[c.id] = c
            if digest is None or live.get(c.id) != digest:
                suspect.append(c.id)
        upserts = [e for e in self.store.get_experts(suspect) if live.get(e.id) != expert_digest(e)]
        removed = [i for i in live if i not in cards]
        saved = index.meta_.get("data_version")
        return self._apply_locked(index, upserts, removed, version, cards,
                                  save=bool(upserts or removed) or saved != version)

    def _apply_locked(self, index: ExpertIndex, upserts: Sequence[Expert], removed: Sequence[str],
                      version: int, records: Mapping[str, Expert], *, save: bool = True,
                      aligned: Sequence[Expert | None] | None = None) -> Loaded:
        """Update `index` and save it. `records`: the cards of every expert, or, with `aligned`
        (the cards by position of `index`), those of `upserts` only."""
        new = index.updated(upserts, removed, self.tokens)
        if new.drift > self.settings.index_max_drift:
            log.info("%.0f%% of the documents changed since the index was fitted; compacting",
                     100 * new.drift)
            new = new.compacted()
        if new.base_id_ != index.base_id_:
            self._save(new, version)
        elif save and not others_may_save():
            # With several serving processes (serve --workers) none saves deltas: each would remove
            # the others' (one delta folder is current), and a reader could then find state.json
            # naming a folder gone. Each keeps its updates in memory; a start syncs from the store.
            self._save_delta(new, version)
        if aligned is None:
            experts = new.align(records)
        elif new.base_id_ == index.base_id_:  # appended to: the old alignment plus the new cards
            experts = new.realign(index, aligned, records)
        else:  # compacted: renumbered
            experts = new.align({**{e.id: e for e in aligned if e is not None}, **records})
        self.loaded = Loaded(self._attach.attach(new), experts, version)
        self._attach.wanted()
        return self.loaded

    # -- following a write -----------------------------------------------------------------------
    def follow_write(self, before: int, upserts: Sequence[Expert], removed: Sequence[str]) -> None:
        """Follow a write (made under `lock`) into the index once it is committed: at once, or,
        inside a caller's transaction, when that commits (never when it rolls back, so the index
        never holds a write the store does not)."""
        if not self.store.in_transaction:
            self._after_write_locked(before, upserts, removed)
            return

        def follow() -> None:
            with self.lock:
                self._after_write_locked(before, upserts, removed)

        self.store.after_commit(follow)

    def _after_write_locked(self, before: int, upserts: Sequence[Expert], removed: Sequence[str]) -> None:
        """Follow a write made under the lock: incrementally when it is the only change since the
        index was loaded, else by comparing the whole store."""
        loaded = self.loaded
        version = self.store.data_version
        if loaded is None or loaded.data_version != before or version != before + 1:
            index = loaded.index if loaded is not None else self.load_saved()
            if index is None:
                self._rebuild_locked()
            else:
                self._sync_locked(index, version)
            return
        self._apply_locked(loaded.index, upserts, removed, version, {e.id: card(e) for e in upserts},
                           aligned=loaded.experts)

    # -- saving ----------------------------------------------------------------------------------
    def _meta(self, version: int) -> dict[str, object]:
        return {"data_version": version, "fingerprint": self.fingerprint}

    def _save(self, index: ExpertIndex, version: int) -> None:
        target = self.folder
        # Names of this process's own: several processes (serve --workers, matcher index) may save
        # at once, and none may remove or rename another's folder half-way; the last one wins.
        mine = f"{os.getpid()}-{threading.get_ident()}"
        tmp = target.with_name(f"{target.name}.{mine}.tmp")
        old = target.with_name(f"{target.name}.{mine}.old")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            index.save(tmp, extra_meta=self._meta(version))
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                target.rename(old)
            tmp.rename(target)
        except OSError as exc:
            self.unsaved(exc)
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not target.exists():
                old.rename(target)
        shutil.rmtree(old, ignore_errors=True)

    def _save_delta(self, index: ExpertIndex, version: int) -> None:
        try:
            index.save_delta(self.folder, extra_meta=self._meta(version))
        except IndexStateError:  # the folder holds another base (or none): write the whole index
            self._save(index, version)
        except OSError as exc:
            self.unsaved(exc)
            for partial in self.folder.glob("*.tmp"):
                # another process's delta in progress is left alone (a crashed one's, once stale)
                if time.time() - partial.stat().st_mtime > 600 or not others_may_save():
                    shutil.rmtree(partial, ignore_errors=True)

    def unsaved(self, exc: OSError) -> None:
        # The database write that led here has committed and the index in memory is up to date:
        # failing the request would be wrong. The saved index stays as it was (complete, older), and
        # the next start brings it up to the store.
        log.error("could not save the index to %s (%s); matching goes on from memory",
                  self.folder, exc.strerror or exc)

    # -- serving while the index is rebuilt in another process -----------------------------------
    def saved_base_id(self) -> str | None:
        """The base id of the index saved in `folder` (None when there is none or it is being
        swapped): read from its small state.json, not from the index."""
        try:
            state = json.loads((self.folder / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        base = state.get("base_id") if isinstance(state, dict) else None
        return base if isinstance(base, str) else None

    def follow_saved(self) -> bool:
        """Adopt the index saved by another process when it is another base than the loaded one
        (`matcher index` rebuilt it, or another worker compacted it): loaded memory-mapped, brought
        up to the store, and swapped in with one assignment. The loaded index serves meanwhile and
        nothing is built in this process. True when it swapped."""
        loaded = self.loaded
        saved = self.saved_base_id()
        if loaded is None or saved is None or saved == loaded.index.base_id_:
            return False
        index = self.load_saved()
        if index is None or index.base_id_ != saved:  # unusable for us, or swapped again meanwhile
            return False
        with self.lock:
            current = self.loaded
            if current is None or current.index.base_id_ == index.base_id_:
                return False
            self._sync_locked(index, self.store.data_version)
        log.info("adopted the index saved by another process (base %s)", saved)
        self._attach.wanted()
        return True

    def follow_saved_soon(self) -> None:
        """At most every `FOLLOW_EVERY` seconds, start `follow_saved` on a thread if the saved
        base changed (a stat and a small read; requests never wait for the load)."""
        now = time.monotonic()
        if self.loaded is None or now - self._follow_checked < self.FOLLOW_EVERY:
            return
        self._follow_checked = now
        busy = self._following
        if busy is not None and busy.is_alive():
            return
        saved = self.saved_base_id()
        if saved is None or saved == self.loaded.index.base_id_:
            return

        def follow() -> None:
            background_priority()  # the old index answers meanwhile; requests come first
            try:
                self.follow_saved()
            except Exception:  # noqa: BLE001 - the loaded index goes on serving; retried on the next look
                log.exception("could not adopt the index saved by another process")

        self._following = threading.Thread(target=follow, name="matcher-follow-index", daemon=True)
        self._following.start()

    def rebuild_elsewhere(self, *, timeout: float | None = None) -> None:
        """Rebuild the index in a separate process (`matcher index`, with these settings) and adopt
        it: a server's memory and request threads are not touched by the build, and the new index
        is swapped in atomically when it is ready (`follow_saved`)."""
        env = {**os.environ, **settings_env(self.settings)}
        done = subprocess.run([sys.executable, "-m", "matcher", "index"], env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if done.returncode:
            raise IndexStateError(f"the index rebuild in a separate process failed: "
                                  f"{(done.stderr or done.stdout).strip()[-500:]}")
        self.follow_saved()


def others_may_save() -> bool:
    """Whether this is one of several processes serving the same saved index (`matcher serve
    --workers` sets MATCHER_SHARED_INDEX=1 for its workers)."""
    return os.environ.get("MATCHER_SHARED_INDEX") == "1"


def background_priority(niceness: int = 10) -> None:
    """Lower the calling thread's CPU priority (Linux: a thread is a task with its own nice value):
    work that can wait (encoding a pool's units, rebuilding the index) takes the cores only when
    requests leave them free, so it never lengthens a match. Elsewhere nothing changes."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
