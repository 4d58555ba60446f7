"""The ranking, as stages; each stage is a file:

  units.py         what is indexed: an expert's record cut into units and their pieces of text
  query.py         the query: a demand's terms with their weights
  signals.py       candidate scoring: every unit scored by each signal (words, characters, LSA)
  aggregate.py     expert aggregation: unit scores -> expert scores (kNN vote, centroid)
  fusion.py        fusion: the signals into one score per expert, the order of a page
  explain.py       explanation: the matched terms and the best units of an expert
  persist.py       persistence: the index as a folder of plain files, deltas, checksums
  filters.py       rules: region/title filters, excluded institutions and experts
  expert_index.py  the index that owns the fitted parts and runs the stages

`matcher.rank` re-exports what the rest of the library uses.
"""
