"""A deterministic synthetic corpus at any size, for the scale benchmarks (not the test suite).

Experts are recombined from real ones: the CDL benchmark's experts (../shared/bench/cdl, read at
run time and never copied into the repository) and the demo corpus. Synthetic expert i takes a
seed expert, as many documents as a randomly drawn real expert has (so the document-count
distribution is the real one), and builds each document from the title, the keywords and the
abstract of up to three different documents of the seed: the texts are new combinations, but stay
on one expert's topics, as a real profile does. Demands are recombined the same way from the CDL
queries and the demo demands.

`distinct=True` (what benchmarks/scale.py builds) makes every document's text its own, as in a
real pool: the title gains a keyword of another document of the seed and a model number, the
keywords are drawn from two documents, and the abstract is recombined sentence by sentence from
three documents of the seed and two of random other experts, with a number in each. Without it,
fields repeat across synthetic experts, so the token cache (keyed by field text) makes a cold
build cheap: a million documents tokenised 0.8 M distinct characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from matcher.models import Demand, Document, Expert

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "corpora" / "demo"
CDL = ROOT.parent / "shared" / "bench" / "cdl"
REGIONS = ("杭州市", "宁波市", "温州市", "嘉兴市", "湖州市", "绍兴市", "金华市", "衢州市", "舟山市", "台州市", "丽水市")
TITLES = ("教授", "研究员", "高级工程师", "副教授", "正高级工程师", "工程师", "院士")
INSTITUTIONS = ("大学", "研究院", "科技有限公司", "职业技术学院", "农业科学院")


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def source_experts(cdl: Path = CDL) -> list[Expert]:
    """The real experts the synthetic ones are recombined from (CDL when present, and the demo)."""
    pool = [Expert.from_dict(d) for d in _jsonl(cdl / "experts.jsonl") + _jsonl(DEMO / "experts.jsonl")]
    return [e for e in pool if e.documents]


def source_demands(cdl: Path = CDL) -> list[Demand]:
    return [Demand.from_dict(d) for d in _jsonl(cdl / "queries.jsonl") + _jsonl(DEMO / "demands.jsonl")]


_SENTENCE = re.compile(r"[^。；;！？!?]+[。；;！？!?]?")


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.findall(text) if s.strip()]


def _distinct(a: Document, b: Document, c: Document, others: list[Document], rng: np.random.Generator,
              serial: int) -> Document:
    """A document of its own: the title with a keyword of another document and a model number, keywords
    from two documents, and an abstract recombined sentence by sentence from several, numbered."""
    extra = [k for k in b.keywords if k not in a.title]
    joined = "：" + extra[int(rng.integers(len(extra)))] if extra else ""
    title = f"{a.title}{joined}（{serial % 9973}型）"
    keywords = tuple(dict.fromkeys([*a.keywords[:2], *b.keywords[:2], *c.keywords[:1]]))
    sents = [s for d in (c, a, b, *others) for s in _sentences(d.abstract)]
    take = min(len(sents), 3 + int(rng.integers(4)))
    picked = [sents[int(j)] for j in rng.choice(len(sents), size=take, replace=False)] if sents else []
    abstract = "".join(f"{s.rstrip('。；;')}（{int(rng.integers(2, 500))}）。" for s in picked)
    return Document(title=title, kind=a.kind, keywords=keywords, abstract=abstract,
                    year=2010 + int(rng.integers(15)))


def experts(n: int, *, seed: int = 7, cdl: Path = CDL, distinct: bool = False) -> Iterator[Expert]:
    pool = source_experts(cdl)
    counts = np.asarray([len(e.documents) for e in pool])
    everything = [d for e in pool for d in e.documents]
    rng = np.random.default_rng(seed)
    serial = 0
    for i in range(n):
        src = pool[int(rng.integers(len(pool)))]
        docs = src.documents
        k = int(counts[rng.integers(len(counts))])
        out: list[Document] = []
        for _ in range(k):
            a, b, c = (docs[int(j)] for j in rng.integers(len(docs), size=3))
            if distinct:
                serial += 1
                others = [everything[int(j)] for j in rng.integers(len(everything), size=2)]
                out.append(_distinct(a, b, c, others, rng, serial))
                continue
            out.append(Document(title=a.title, kind=a.kind, keywords=b.keywords, abstract=c.abstract,
                                year=2010 + int(rng.integers(15))))
        city = REGIONS[int(rng.integers(len(REGIONS)))]
        yield Expert(
            id=f"S{i:06d}", name=f"合成专家{i}", title=TITLES[int(rng.integers(len(TITLES)))],
            institution=f"{city[:2]}{INSTITUTIONS[int(rng.integers(len(INSTITUTIONS)))]}", region=city,
            research_fields=src.research_fields, documents=tuple(out),
        )


def demands(n: int, *, seed: int = 11, cdl: Path = CDL) -> Iterator[Demand]:
    pool = source_demands(cdl)
    rng = np.random.default_rng(seed)
    for i in range(n):
        a, b = (pool[int(j)] for j in rng.integers(len(pool), size=2))
        # Mostly one real demand; every fourth borrows a second one's description (a demand that
        # names two problems), so the texts are not all repeats.
        text = a.description if i % 4 else f"{a.description}\n{b.description}"
        yield Demand(id=f"Q{i:06d}", title=a.title, description=text, keywords=a.keywords)
