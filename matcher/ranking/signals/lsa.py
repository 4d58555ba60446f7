"""lsa: LSA (a TruncatedSVD of the units' word TF-IDF) cosine over the units, kNN vote: a
semantic signal that needs no download. Its part is the LSA space (basis and unit embeddings).
Updates project new units onto the basis fitted before; a compaction refits it (`drift`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from matcher.index import LsaSpace
from matcher.ranking.query import Query
from matcher.ranking.scoring import Scoring
from matcher.ranking.signal import Compaction, Growth, Signal
from matcher.ranking.state import IndexState


def lsa_query(index: IndexState, query: Query) -> np.ndarray | None:
    """The query in the LSA space, unit length (float32); None without LSA, without a fitted term
    in the query, or at the origin. Terms added by incremental updates lie outside the fitted
    space and are left out."""
    lsa = index.part("lsa")
    if lsa is None:
        return None
    ids, ws = index.words_tfidf_.query_vector(query.weights)
    fitted = lsa.components_.shape[1]
    keep = ids < fitted
    if not keep.any():
        return None
    q = np.zeros(fitted, dtype=np.float32)
    q[ids[keep]] = ws[keep]
    qe = lsa.components_ @ q
    norm = float(np.linalg.norm(qe))
    return (qe / norm).astype(np.float32) if norm > 0 else None


class Lsa(Signal):
    name = "lsa"
    order = 70

    def finish(self, acc: Any, index: IndexState) -> LsaSpace | None:
        if len(index.unit_expert_) > 2 and index.words_tfidf_.n_terms > 2:
            p = index.params
            return LsaSpace(p.lsa_dims).fit(index.words_tfidf_, sample=p.lsa_sample)
        return None

    def updated(self, part: LsaSpace | None, growth: Growth) -> LsaSpace | None:
        if part is None or not growth.units:
            return part
        return part.with_embeddings(np.concatenate([part.embeddings_, part.embed(growth.added_tfidf)]))

    def compacted(self, part: LsaSpace | None, compaction: Compaction) -> LsaSpace | None:
        return self.finish(None, compaction.after)

    def save(self, part: LsaSpace | None, folder: Path) -> None:
        if part is not None:
            part.save(folder, "lsa")

    def save_delta(self, part: LsaSpace | None, folder: Path, index: IndexState) -> None:
        if part is not None:
            np.save(folder / "lsa.embeddings.npy", part.embeddings_[index.words_.n_base_rows_ :])

    def load(self, folder: Path, delta: Path | None, index: IndexState, *, mmap: bool) -> LsaSpace | None:
        if not (folder / "lsa.components.npy").exists():
            return None
        lsa = LsaSpace.load(folder, "lsa", mmap=mmap and delta is None)
        if delta is not None:
            extra = np.load(delta / "lsa.embeddings.npy", allow_pickle=False)
            lsa = lsa.with_embeddings(np.concatenate([lsa.embeddings_[: index.words_.n_base_rows_], extra]))
        return lsa

    def score(self, ctx: Scoring, part: LsaSpace | None) -> np.ndarray:
        # memo: a batch scoring a block of queries fills both from one matrix product each (`block`)
        qe = ctx.memo("lsa_query", lambda: lsa_query(ctx.index, ctx.query))
        if qe is None or part is None:
            return ctx.zeros()
        emb = part.embeddings_
        cos = ctx.memo("lsa_unit_scores", lambda: ctx.semantic_scores(
            len(emb), lambda rows: emb @ qe if rows is None else emb[rows] @ qe))
        return ctx.vote_units(np.clip(cos, 0.0, None))
