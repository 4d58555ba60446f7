"""What is indexed: an expert's record cut into units (each paper, patent, project, the research
fields, the bio), and each unit's pieces of text with how often they count.

Title and keywords count twice (BM25F-lite); character n-grams cover titles, keywords and fields
(and abstracts with `char_abstracts`). `piece_counts` turns many units into one sparse count
matrix, each distinct piece of text featurised once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from matcher.dense import UNIT_CHARS, profile_text
from matcher.index import char_ngrams
from matcher.models import Expert
from matcher.text import normalize

Pieces = tuple[tuple[str, int], ...]  # (text, how many times it counts)


@dataclass(frozen=True, slots=True)
class Unit:
    """One searchable piece of an expert's record."""

    expert: int  # position of the expert in the fitted order
    field: str  # research_fields | bio | paper | patent | project | achievement
    text: str  # what staff see as evidence (a title, the fields)
    words: Pieces  # texts tokenised for the word signals, with their multiplicity
    chars: Pieces  # texts whose character n-grams are indexed
    dense: str = ""  # the text the dense encoder reads (`matcher.dense`)


def expert_units(expert: Expert, position: int, *, char_abstracts: bool = False) -> list[Unit]:
    """The units of one expert. Title and keywords are the densest statement of a document and
    count twice (BM25F-lite). Character n-grams cover titles, keywords and fields (and abstracts
    with `char_abstracts`): n-grams of every abstract would be most of the index's memory at
    100,000 experts for a signal whose job is catching segmentation slips in technical terms."""
    units: list[Unit] = []
    fields = "、".join(expert.research_fields)
    if fields:
        units.append(Unit(position, "research_fields", fields, ((fields, 1),), ((fields, 1),), fields[:UNIT_CHARS]))
    if expert.bio:
        units.append(Unit(position, "bio", expert.bio, ((expert.bio, 1),),
                          ((expert.bio, 1),) if char_abstracts else (), expert.bio[:UNIT_CHARS]))
    for doc in expert.documents:
        kw = " ".join(doc.keywords)
        words = tuple((t, m) for t, m in ((doc.title, 2), (kw, 2), (doc.abstract, 1)) if t)
        if not words:
            continue
        chars = tuple((t, m) for t, m in ((doc.title, 2), (kw, 2), (doc.abstract if char_abstracts else "", 1))
                      if t)
        # Title and keywords say what a document is about in a few dozen characters; an abstract
        # costs the encoder ten times as much for little more.
        dense = "；".join(p for p in (doc.title, kw) if p) or doc.abstract[:UNIT_CHARS]
        units.append(Unit(position, doc.kind, doc.title or kw or doc.abstract[:80], words, chars, dense))
    return units


def expert_profile_text(expert: Expert) -> str:
    """What the expert-level dense vector reads (see `matcher.dense.profile_text`)."""
    return profile_text(expert.research_fields, expert.bio, [(d.title, d.keywords) for d in expert.documents])


def piece_counts(
    pieces: Sequence[Pieces], featurize_many: Callable[[list[str]], list[list[str]]], vocab: dict[str, int],
) -> sp.csr_matrix:
    """(units x features) counts, each distinct piece of text featurised once; `vocab` grows.

    A unit's row is the sum of its pieces' rows times their multiplicity: one sparse product
    instead of counting every token of every unit in Python (a tenth of the build at 3,000 experts).
    """
    distinct: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    mult: list[int] = []
    for u, parts in enumerate(pieces):
        for text, m in parts:
            rows.append(u)
            cols.append(distinct.setdefault(text, len(distinct)))
            mult.append(m)
    feats = featurize_many(list(distinct))
    lens = np.fromiter((len(f) for f in feats), dtype=np.int64, count=len(feats))
    ids = np.fromiter((vocab.setdefault(t, len(vocab)) for f in feats for t in f), dtype=np.int32,
                      count=int(lens.sum()))
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    per_piece = sp.csr_matrix((np.ones(len(ids), dtype=np.float32), ids, indptr),
                              shape=(len(feats), len(vocab)))
    per_piece.sum_duplicates()
    assemble = sp.csr_matrix((np.asarray(mult, dtype=np.float32), (rows, cols)),
                             shape=(len(pieces), len(feats)))
    out = sp.csr_matrix(assemble @ per_piece, dtype=np.float32)
    out.sort_indices()
    return out


def stack(blocks: list[sp.csr_matrix], n_cols: int) -> sp.csr_matrix:
    widened = [sp.csr_matrix((b.data, b.indices, b.indptr), shape=(b.shape[0], n_cols)) for b in blocks]
    return sp.vstack(widened, format="csr") if widened else sp.csr_matrix((0, n_cols), dtype=np.float32)


def chars_of(text: str) -> list[str]:
    return char_ngrams(normalize(text), 1, 3)


def chars_many(texts: list[str]) -> list[list[str]]:
    return [chars_of(t) for t in texts]


def expand(parts: Pieces, feats: Mapping[str, Sequence[str]]) -> list[str]:
    return [t for text, m in parts for _ in range(m) for t in feats[text]]



def declared_text(expert: Expert) -> str:
    """Research fields, tags and document keywords: what the expert says they do."""
    kws = [k for d in expert.documents for k in d.keywords]
    return " ".join([*expert.research_fields, *kws])



def hash_unit(u: Unit) -> int:
    """A 63-bit fingerprint of what a unit indexes: equal content, one document."""
    h = hashlib.blake2b(digest_size=8)
    for text, m in u.words:
        h.update(f"{m}\x1f{text}\x1e".encode("utf-8", "surrogatepass"))
    return int.from_bytes(h.digest(), "little") >> 1

