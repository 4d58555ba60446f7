"""Tokens of many texts at once: each distinct text tokenised once, cached, in parallel processes.

Building the index is mostly jieba (a profile of a 3,000-expert build: 58% of the time in
`Tokenizer.lcut`). `TokenSource.many(texts)` therefore

1. de-duplicates the texts (a title shared by co-authors, a keyword list used twice);
2. looks the rest up in the store's `token_cache` table, keyed by a hash of the tokenizer's
   fingerprint (its dictionaries) and the text, so a rebuild, or a re-import of unchanged experts,
   never tokenises a text again, and a changed dictionary invalidates every key at once;
3. tokenises what is left in `processes` worker processes when there is enough of it (a pool costs
   about 0.1 s to start), and writes the new entries back in one transaction.

Works without a store (the CLI's `eval`, tests): then it only de-duplicates and parallelises.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Protocol

log = logging.getLogger(__name__)

Tokenize = Callable[[str], list[str]]

#: Below this many characters to tokenise, a process pool costs more than it saves.
PARALLEL_MIN_CHARS = 400_000


class TokenCacheStore(Protocol):
    def cached_tokens(self, keys: Sequence[str]) -> dict[str, list[str]]: ...
    def cache_tokens(self, entries: dict[str, list[str]]) -> None: ...


class TokenSource:
    """A tokenizer with `many()`: batch tokenising with de-duplication, a persistent cache and processes."""

    def __init__(
        self,
        tokenize: Tokenize,
        *,
        fingerprint: str = "",
        store: TokenCacheStore | None = None,
        processes: int | None = None,
        parallel_min_chars: int = PARALLEL_MIN_CHARS,
    ) -> None:
        self.tokenize = tokenize
        self.parallel_min_chars = parallel_min_chars
        self.fingerprint = fingerprint
        self.store = store
        self.processes = max(1, processes if processes is not None else (os.cpu_count() or 1))
        self.stats = {"texts": 0, "distinct": 0, "cached": 0, "tokenised": 0, "chars_tokenised": 0}

    def __call__(self, text: str) -> list[str]:
        return self.tokenize(text)

    def key(self, text: str) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(self.fingerprint.encode())
        h.update(b"\0")
        h.update(text.encode("utf-8", "surrogatepass"))
        return h.hexdigest()

    def many(self, texts: Sequence[str]) -> list[list[str]]:
        """The tokens of each text, in order (equal texts share one list: do not mutate them)."""
        distinct = list(dict.fromkeys(texts))
        found: dict[str, list[str]] = {}
        keys: dict[str, str] = {}
        if self.store is not None and distinct:
            keys = {t: self.key(t) for t in distinct}
            by_key = self.store.cached_tokens(list(keys.values()))
            found = {t: by_key[k] for t, k in keys.items() if k in by_key}
        missing = [t for t in distinct if t not in found]
        fresh = self._tokenise(missing)
        found.update(zip(missing, fresh, strict=True))
        if self.store is not None and missing:
            self.store.cache_tokens({keys[t]: toks for t, toks in zip(missing, fresh, strict=True)})
        s = self.stats
        s["texts"] += len(texts)
        s["distinct"] += len(distinct)
        s["cached"] += len(distinct) - len(missing)
        s["tokenised"] += len(missing)
        s["chars_tokenised"] += sum(map(len, missing))
        return [found[t] for t in texts]

    def _tokenise(self, texts: list[str]) -> list[list[str]]:
        chars = sum(map(len, texts))
        workers = min(self.processes, max(1, chars // max(1, self.parallel_min_chars // 2)))
        if workers < 2 or chars < self.parallel_min_chars:
            return [self.tokenize(t) for t in texts]
        # Longest first, dealt round-robin: chunks of about equal work. The tokenizer reaches the
        # workers by fork (already initialised: jieba's dictionary is not loaded again) when this
        # process has no other threads; with threads (the API server), a fork could copy a lock
        # held mid-operation, so workers are spawned and load the dictionaries themselves.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        n_chunks = workers * 4
        chunks = [order[k::n_chunks] for k in range(n_chunks)]
        method = "fork" if threading.active_count() == 1 else "spawn"
        ctx = multiprocessing.get_context(method)
        global _WORKER_TOKENIZE
        _WORKER_TOKENIZE = self.tokenize
        out: list[list[str]] = [[] for _ in texts]
        try:
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(None if method == "fork" else self.tokenize,)) as pool:
                for chunk, result in zip(chunks, pool.map(_tokenise_chunk, [[texts[i] for i in c] for c in chunks]),
                                         strict=True):
                    for i, toks in zip(chunk, result, strict=True):
                        out[i] = toks
        finally:
            _WORKER_TOKENIZE = None
        log.info("tokenised %d texts (%d characters) in %d processes", len(texts), chars, workers)
        return out


_WORKER_TOKENIZE: Tokenize | None = None


def _init_worker(tokenize: Tokenize | None) -> None:
    global _WORKER_TOKENIZE
    if tokenize is not None:
        _WORKER_TOKENIZE = tokenize


def _tokenise_chunk(texts: list[str]) -> list[list[str]]:
    assert _WORKER_TOKENIZE is not None
    return [_WORKER_TOKENIZE(t) for t in texts]


def as_source(tokenize: Tokenize) -> TokenSource:
    """`tokenize` itself when it is a `TokenSource`, else one around it (no store, one process)."""
    return tokenize if isinstance(tokenize, TokenSource) else TokenSource(tokenize, processes=1)
