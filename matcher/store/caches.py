"""Caches of tokens and vectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from matcher.store.database import Database


class Caches(Database):
    """Caches of tokens and dense vectors, and each expert's popularity over the demand bank."""

    def cached_tokens(self, keys: Sequence[str]) -> dict[str, list[str]]:
        """The cached token lists of those `keys` that are cached (see `matcher.tokens`)."""
        out: dict[str, list[str]] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, tokens in self.db.execute(f"SELECT key, tokens FROM token_cache WHERE key IN ({marks})", chunk):
                out[key] = tokens.split("\t") if tokens else []
        return out

    def cache_tokens(self, entries: Mapping[str, Sequence[str]]) -> None:
        """Store token lists by key (tokens never hold a tab: the tokenizer splits on whitespace)."""
        if not entries:
            return
        rows = [(k, "\t".join(v)) for k, v in entries.items()]
        with self.transaction():
            self.db.conn.executemany("INSERT OR REPLACE INTO token_cache (key, tokens) VALUES (?, ?)", rows)

    def cached_vectors(self, model: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached float32 vectors of those `keys` that `model` has encoded (see `matcher.dense`)."""
        out: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT key, vec FROM vector_cache WHERE model = ? AND key IN ({marks})",
                                   [model, *chunk])
            for key, blob in rows:
                out[bytes(key)] = np.frombuffer(blob, dtype=np.float32)
        return out

    def cache_vectors(self, model: str, entries: Mapping[bytes, np.ndarray]) -> None:
        """Store vectors by key for `model`, as float32."""
        if not entries:
            return
        rows = [(model, k, int(v.shape[-1]), np.asarray(v, dtype=np.float32).tobytes()) for k, v in entries.items()]
        with self.transaction():
            self.db.conn.executemany("INSERT OR REPLACE INTO vector_cache (model, key, dim, vec) VALUES (?, ?, ?, ?)",
                                     rows)

    def count_vectors(self, model: str) -> int:
        return int(self.db.execute("SELECT count(*) FROM vector_cache WHERE model = ?", [model]).fetchone()[0])

    def clear_token_cache(self) -> int:
        with self.transaction():
            return self.db.execute("DELETE FROM token_cache").rowcount

    def expert_popularity(self) -> dict[str, float]:
        return dict(self.db.execute("SELECT expert_id, value FROM expert_popularity").fetchall())

    def save_expert_popularity(self, values: Mapping[str, float], stamp: str) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM expert_popularity")
            self.db.conn.executemany("INSERT INTO expert_popularity (expert_id, value) VALUES (?, ?)",
                                     [(k, float(v)) for k, v in values.items() if v > 0])
            self.set_meta("popularity_stamp", stamp)
