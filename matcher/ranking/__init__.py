"""The ranking, as stages over a plain index object; each stage is a file:

  params.py        what an index is built and queried with, read from the settings by name
  state.py         the plain index object: experts, units, term indexes, each signal's part
  units.py         what is indexed: an expert's record cut into units and their pieces of text
  query.py         the query: a demand's terms with their weights
  signal.py        what a signal is: what it fits, scores, updates and saves (one class)
  signals/         the built-in signals, one file each (bm25, tfidf, chars, lsa, dense, ...)
  fit.py           fitting: units, their word and character indexes, each signal's part
  scoring.py       candidate scoring: what the signals of one query share (every posting read)
  pruned.py        the same by top-k retrieval (MaxScore, `topk.py`): the same numbers, fewer postings
  aggregate.py     expert aggregation: unit scores -> expert scores (kNN vote, centroid)
  score.py         one query through the stages: every signal, then fusion
  block.py         a block of queries (the batch): the semantic signals as one product (`block_kernel.py`)
  fusion.py        fusion: the signals into one score per expert, the order of a page
  explain.py       explanation: the matched terms and the best units of an expert
  updates.py       incremental updates and compaction
  persist.py       persistence: the index as a folder of plain files, deltas, checksums
  bank.py          the demand bank's statistics (each expert's popularity)
  filters.py       rules on who may be listed: region/title filters, excluded institutions
  shards.py        the kNN vote merged across shards of experts
  shard_part.py    a shard as a worker holds it, its one-round answer, the coordinator's merge and fusion
  expert_index.py  `ExpertIndex`: the index object with the stages as methods

Stages import the state, never `expert_index`, so the package has no import circle (a test
checks it). `matcher.rank` re-exports what the rest of the library uses.
"""
