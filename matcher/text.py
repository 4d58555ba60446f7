"""Chinese-first text handling: normalisation and a tokenizer that owns its own jieba instance.

Normalisation (`normalize`) makes the same term look the same wherever it comes from:
  * control characters dropped, every run of white space folded into one space;
  * Unicode NFKC, which maps full-width letters, digits and punctuation to half-width
    (`ＰＬＣ` -> `PLC`, `，` -> `,`);
  * traditional -> simplified Chinese with OpenCC's `t2s` profile (character level plus its phrase
    table; we avoid `tw2sp`, whose Taiwan vocabulary mapping rewrites simplified 程序 to 进程);
  * Latin lower-cased, so `SiC`, `SIC` and `sic` are one term.

`ChineseTokenizer` never touches jieba's module-level tokenizer: one caller's `add_word` would
change everybody's segmentation. It builds its own `jieba.Tokenizer`, loads the domain dictionary
into it (normalised, so dictionary entries meet normalised text), drops stopwords and punctuation,
and glues Latin compounds that jieba splits (`li-ion`, `nb-iot`). It pickles without its jieba
state (jieba's RLock cannot be pickled) and rebuilds it lazily in the receiving process.

`ChineseTokenizer.tag` gives the same tokens with a part of speech each, from a
`jieba.posseg.POSTokenizer` built over that same instance (never jieba's global one): the tags of
jieba's dictionary and of the domain dictionary. The understanding stage reads them to tell the
demand's substance (nouns, technical compounds, verbs of a process) from the words around it.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import jieba
import jieba.posseg
import opencc

from matcher.config import DEFAULT_CORPORA

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202f\u2060\ufeff]")
_SPACE = re.compile(r"\s+")
# A token worth keeping has at least one letter, digit or CJK character.
_WORDLIKE = re.compile(r"[0-9a-z\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"^[0-9a-z][0-9a-z+#.]*$")
_JOINERS = {"-", "_", "/", "."}
# A Latin word as normalised text has it, and as it may be written.
_LATIN_RUN = re.compile(r"[0-9a-z][0-9a-z+#.\-_/]*")
_WRITTEN_LATIN = re.compile(r"[0-9A-Za-z][0-9A-Za-z+#.\-_/]*")
# A bare one- or two-digit number ("4", "12") says nothing about expertise; 304, 6061 or 5g do.
_SHORT_NUMBER = re.compile(r"^[0-9]{1,2}$")
# Variant characters OpenCC's t2s keeps but mainland technical writing never uses.
_VARIANTS = str.maketrans({"矽": "硅", "綫": "线"})
# jieba's HMM (finalseg's Viterbi) copies its path at every step, so it is quadratic in the length of
# a run of characters it cannot segment: "焊" × 20 000 took 12 s. Runs of the characters jieba keeps
# together (its re_han_default) are cut at this length; real text has punctuation long before.
_MAX_RUN = 200
#: Longest text whose part-of-speech tagging uses jieba's HMM for words no dictionary holds. Its
#: POS HMM costs seconds for a few thousand characters no dictionary knows (a pasted table of
#: codes, random text): 150,000 such characters took nine minutes. Longer texts (ten times the
#: longest demand of the benchmarks; expert profiles stay far below) are tagged word by word from
#: the dictionaries, their unknown stretches character by character.
TAG_HMM_CHARS = 5_000
_LONG_RUN = re.compile(r"[\u4e00-\u9fd5a-zA-Z0-9+#&._%\-]{" + str(_MAX_RUN + 1) + ",}")


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def normalize(text: str) -> str:
    """Return `text` normalised for matching (see the module docstring). Never raises on a str."""
    if not isinstance(text, str):
        raise TypeError(f"normalize() takes a str, not {type(text).__name__}")
    if not text:
        return ""
    text = _CONTROL.sub(" ", text)
    text = unicodedata.normalize("NFKC", text)
    # Lone surrogates (from broken decoders) cannot be encoded anywhere downstream.
    text = text.encode("utf-8", "replace").decode("utf-8")
    # OpenCC's t2s maps some characters to a variant that it maps again (薴 -> 苧 -> 苎): convert
    # until nothing changes, so that normalising twice gives what normalising once did. Text that
    # is simplified already costs one pass.
    for _ in range(4):
        converted = _t2s().convert(text)
        if converted == text:
            break
        text = converted
    text = text.translate(_VARIANTS)
    text = text.lower()
    if not unicodedata.is_normalized("NFKC", text):
        # lower() can break the canonical order of combining marks (İ + U+0618 lower-cases to
        # i, U+0618, U+0307): normalise again, so that normalize(normalize(x)) == normalize(x).
        text = unicodedata.normalize("NFKC", text)
    return _SPACE.sub(" ", text).strip()


def surface_forms(text: str) -> dict[str, str]:
    """{latin word as matched: as written} for the Latin words of `text` written with a capital
    (SiC -> sic: SiC); the first writing wins."""
    out: dict[str, str] = {}
    for m in _WRITTEN_LATIN.finditer(unicodedata.normalize("NFKC", text)):
        word = m.group(0).strip(".")
        if word != word.lower():
            out.setdefault(word.lower(), word)
    return out


def show(term: str, surfaces: Mapping[str, str]) -> str:
    """`term` with each Latin word written as `surfaces` has it (ip防护等级 -> IP防护等级)."""
    if not surfaces or not _LATIN_RUN.search(term):
        return term
    return _LATIN_RUN.sub(lambda m: surfaces.get(m.group(0), m.group(0)), term)


def read_wordlist(path: Path) -> list[str]:
    """Lines of a UTF-8 word list, normalised; blank lines and `#` comments skipped."""
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.append(normalize(line))
    return words


def read_jieba_dict(path: Path) -> list[tuple[str, int | None, str | None]]:
    """Entries of a jieba user dictionary (`word [freq] [tag]`), the word normalised."""
    entries: list[tuple[str, int | None, str | None]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.strip().split()
        if not parts or parts[0].startswith("#"):
            continue
        word = normalize(parts[0])
        freq = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        tag = parts[2] if len(parts) > 2 else None
        if word:
            entries.append((word, freq, tag))
    return entries


class ChineseTokenizer:
    """Normalise and segment text into index terms.

    Parameters are stored as given (scikit-learn style); the jieba instance is built on first use.
    `user_dict`, `stopwords`: files in the corpora folder by default; pass `None` to go without.
    """

    def __init__(
        self,
        user_dict: Path | str | None = DEFAULT_CORPORA / "domain_dict.txt",
        stopwords: Path | str | None = DEFAULT_CORPORA / "stopwords.txt",
        extra_words: Sequence[str] = (),
        hmm: bool = True,
    ) -> None:
        self.user_dict = user_dict
        self.stopwords = stopwords
        self.extra_words = tuple(extra_words)
        self.hmm = hmm
        self._jieba: jieba.Tokenizer | None = None
        self._pos: jieba.posseg.POSTokenizer | None = None
        self._stop: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    # -- set-up -------------------------------------------------------------------------------
    def _ensure(self) -> jieba.Tokenizer:
        if self._jieba is not None:
            return self._jieba
        with self._lock:
            if self._jieba is None:
                tk = jieba.Tokenizer()
                tk.initialize()
                if self.user_dict is not None and Path(self.user_dict).exists():
                    for word, freq, tag in read_jieba_dict(Path(self.user_dict)):
                        tk.add_word(word, freq, tag)
                for word in self.extra_words:
                    tk.add_word(normalize(word))
                stop: set[str] = set()
                if self.stopwords is not None and Path(self.stopwords).exists():
                    stop.update(read_wordlist(Path(self.stopwords)))
                self._stop = frozenset(stop)
                self._jieba = tk
        return self._jieba

    def initialize(self) -> ChineseTokenizer:
        """Load jieba and the dictionaries now (at start-up) instead of on the first call."""
        self._ensure()
        return self

    def add_word(self, word: str, freq: int | None = None) -> None:
        """Teach this tokenizer (and only this one) a new term."""
        self._ensure().add_word(normalize(word), freq)

    def frequency(self, word: str) -> tuple[int, int]:
        """(count of `word`, total count) in this tokenizer's dictionaries (jieba's and the domain
        dictionary): how common a word is in the language, for the dense student's weights."""
        tk = self._ensure()
        return int(tk.FREQ.get(word) or 0), int(tk.total)

    @property
    def stopword_set(self) -> frozenset[str]:
        self._ensure()
        return self._stop

    # -- use -----------------------------------------------------------------------------------
    def tokenize(self, text: str, *, normalized: bool = False) -> list[str]:
        """Index terms of `text`, in order, repeats kept (term frequency matters)."""
        tk = self._ensure()
        if not normalized:
            text = normalize(text)
        if not text:
            return []
        if len(text) > _MAX_RUN:
            text = _LONG_RUN.sub(_cut_run, text)
        raw = tk.lcut(text, HMM=self.hmm)
        return [t for t in _glue_latin(raw) if self._keeps(t)]

    def _keeps(self, token: str) -> bool:
        return bool(_WORDLIKE.search(token)) and token not in self._stop and not _SHORT_NUMBER.match(token)

    def tag(self, text: str, *, normalized: bool = False) -> list[tuple[str, str]]:
        """The tokens of `tokenize`, in order, each with its part of speech (jieba's tag set: n, nz,
        v, vn, a, d, m, t, r, eng …). A token that the tagger's own segmentation cuts differently
        (jieba's two HMMs can disagree on a word neither dictionary holds) gets the tags of the
        pieces covering it joined by "+" (偏得 -> "a+ud"); Latin and digits are "eng" and "m"."""
        return [(t, pos) for t, pos, _, _ in self.tag_spans(text, normalized=normalized)]

    def tag_spans(self, text: str, *, normalized: bool = False) -> list[tuple[str, str, int, int]]:
        """`tag` with each token's start and end in `normalize(text)` (-1, -1 for a text longer
        than the runs jieba is given whole, whose positions are not kept)."""
        tk = self._ensure()
        if not normalized:
            text = normalize(text)
        if not text:
            return []
        size = len(text)
        if len(text) > _MAX_RUN:
            text = _LONG_RUN.sub(_cut_run, text)
        kept = len(text) == size
        pieces = _glue_latin_spans(_spans(tk.lcut(text, HMM=self.hmm)))
        tagged = [(t, a, b) for t, a, b in pieces if self._keeps(t)]
        if not tagged:
            return []
        words: dict[int, tuple[int, str]] = {}
        at = 0
        for pair in self._tagger().lcut(text, HMM=self.hmm and size <= TAG_HMM_CHARS):
            words[at] = (at + len(pair.word), pair.flag)
            at += len(pair.word)
        out: list[tuple[str, str, int, int]] = []
        for token, start, end in tagged:
            at = (start, end) if kept else (-1, -1)
            if _LATIN_RUN.fullmatch(token):
                out.append((token, "m" if token.isdigit() else "eng", *at))
                continue
            flags: list[str] = []
            i = start
            while i < end and i in words:
                i, flag = words[i]
                flags.append(flag)
            out.append((token, "+".join(flags) if i == end and flags else "x", *at))
        return out

    def _tagger(self) -> jieba.posseg.POSTokenizer:
        tk = self._ensure()
        if self._pos is None:
            with self._lock:
                if self._pos is None:
                    # Over our own instance, so the domain dictionary's words and tags are its own.
                    pos = jieba.posseg.POSTokenizer(tk)
                    pos.makesure_userdict_loaded()
                    self._pos = pos
        return self._pos

    __call__ = tokenize

    def tokenize_many(self, texts: Iterable[str]) -> list[list[str]]:
        return [self.tokenize(t) for t in texts]

    # -- pickling: jieba's Tokenizer holds an RLock ---------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_jieba"] = None
        state["_pos"] = None
        state["_lock"] = None
        state["_stop"] = frozenset()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ChineseTokenizer(user_dict={self.user_dict!r}, stopwords={self.stopwords!r}, hmm={self.hmm})"


def _cut_run(m: re.Match[str]) -> str:
    run = m.group(0)
    return " ".join(run[i : i + _MAX_RUN] for i in range(0, len(run), _MAX_RUN))


def _glue_latin(tokens: list[str]) -> list[str]:
    """Join Latin pieces jieba split: ['li', '-', 'ion'] -> ['li-ion'], ['ba', 'sic'] -> ['basic']."""
    return [t for t, _, _ in _glue_latin_spans(_spans(tokens))]


def _spans(tokens: list[str]) -> list[tuple[str, int, int]]:
    """Each piece of a jieba cut with its start and end in the text (a cut keeps every character)."""
    out: list[tuple[str, int, int]] = []
    at = 0
    for tok in tokens:
        out.append((tok, at, at + len(tok)))
        at += len(tok)
    return out


def _glue_latin_spans(tokens: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """`_glue_latin` on pieces with their spans; a glued word spans its pieces."""
    out: list[tuple[str, int, int]] = []
    i = 0
    n = len(tokens)
    while i < n:
        tok, start, end = tokens[i]
        tok = tok.strip()
        if not tok:
            i += 1
            continue
        if _LATIN.match(tok):
            parts = [tok]
            while True:
                # jieba cuts inside Latin words when a short dictionary entry fits ('basic' ->
                # 'ba' + 'sic'): pieces that touch in the text are one word again.
                if i + 1 < n and _LATIN.match(tokens[i + 1][0]):
                    parts.append(tokens[i + 1][0])
                    i += 1
                elif i + 2 < n and tokens[i + 1][0] in _JOINERS and _LATIN.match(tokens[i + 2][0]):
                    parts += (tokens[i + 1][0], tokens[i + 2][0])
                    i += 2
                else:
                    break
            tok = "".join(parts)  # one join, not repeated concatenation: "a-a-a-…" stays linear
            end = tokens[i][2]
        tok = tok.strip(".") if _LATIN.match(tok) else tok
        if tok:
            out.append((tok, start, end))
        i += 1
    return out


class Synonyms:
    """Groups of equivalent terms (`corpora/synonyms.txt`: one group a line, comma-separated)."""

    def __init__(self, groups: Iterable[Sequence[str]] = ()) -> None:
        self._group_of: dict[str, int] = {}
        self._groups: list[tuple[str, ...]] = []
        for group in groups:
            members = tuple(dict.fromkeys(normalize(t) for t in group if normalize(t)))
            if len(members) < 2:
                continue
            gid = len(self._groups)
            self._groups.append(members)
            for term in members:
                self._group_of.setdefault(term, gid)

    @classmethod
    def load(cls, path: Path | str | None = DEFAULT_CORPORA / "synonyms.txt") -> Synonyms:
        if path is None or not Path(path).exists():
            return cls()
        groups = []
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                groups.append([t.strip() for t in re.split(r"[,，]", line)])
        return cls(groups)

    def __len__(self) -> int:
        return len(self._groups)

    def equivalents(self, term: str) -> tuple[str, ...]:
        """The other members of `term`'s group (empty when it has none)."""
        gid = self._group_of.get(term)
        if gid is None:
            return ()
        return tuple(t for t in self._groups[gid] if t != term)

    def canonical(self, term: str) -> str:
        gid = self._group_of.get(term)
        return term if gid is None else self._groups[gid][0]


@lru_cache(maxsize=4)
def default_tokenizer(corpora_dir: Path = DEFAULT_CORPORA) -> ChineseTokenizer:
    """The process-wide tokenizer for a corpora folder (built once, initialised on first use)."""
    return ChineseTokenizer(corpora_dir / "domain_dict.txt", corpora_dir / "stopwords.txt")
