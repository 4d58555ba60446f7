"""The built-in ranking signals, one file each (`matcher.ranking.signal` says what a file declares).
Every module of this package is imported here, which registers its signals; the fused score sums
them in their `order`:

  bm25           word BM25 over units, kNN vote;
  tfidf          word TF-IDF cosine over units, kNN vote;
  centroid       word TF-IDF cosine with each expert's centroid (the diversified places, see fusion);
  profile        word BM25 over the expert's whole record (optional, off by default);
  fields         word BM25 over research fields + keywords (optional, off by default);
  chars          character 1-3-gram TF-IDF cosine over units, kNN vote: robust to segmentation slips;
  lsa            LSA (TruncatedSVD of unit TF-IDF) cosine over units, kNN vote;
  dense          sentence-embedding cosine over units (`matcher.dense`), kNN vote;
  dense_profile  sentence-embedding cosine with each expert's one profile vector;
  prior          log-scaled activity (number of documents), off by default.

A new signal is a new file here (and its weight `weight_<name>` in the settings).
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
