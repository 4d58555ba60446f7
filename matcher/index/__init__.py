"""Fitted sparse term indexes (BM25 and TF-IDF over token lists) and an LSA space:

  terms.py    TermIndex: fit, statistics, query vectors, scoring, entry weights
  updates.py  its incremental updates and compaction (exact statistics)
  files.py    its files (plain JSON and .npy; FORMAT_VERSION)
  rows.py     row views: some documents under the whole corpus's statistics (a shard's)
  lsa.py      LsaSpace: a TruncatedSVD of a TF-IDF matrix
  counts.py   token lists into count matrices; character n-grams
"""

from matcher.index.counts import char_ngrams
from matcher.index.files import FORMAT_VERSION
from matcher.index.lsa import LsaSpace
from matcher.index.terms import TermIndex

__all__ = ["FORMAT_VERSION", "LsaSpace", "TermIndex", "char_ngrams"]
