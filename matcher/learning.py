"""What staff verdicts teach: which of an owner's phrases point to which of an expert's concepts.

Every verdict says which expert answered which demand. Over many demands, the experts staff accept
(同意对接, 对接成功, an outcome) for demands that say a phrase keep using some words the declined ones
(不合适, 婉拒) do not: 起皮 in the demand, 涂层 and 附着力 in the accepted experts' titles. This module
learns such associations from verdicts alone, as plain evidence counts, and nothing else:

  phrases    a judged demand's own content terms (what the understanding stage reads in it) that
             the experts' own texts seldom hold (at most `max_phrase_share` of the experts): a word
             experts write already reaches them, and what is learned bridges the words owners use
             and experts do not (起皮, 浮头, 跑偏);
  concepts   the words of an expert's research fields, document titles and keywords (what an expert
             writes to say what they do; abstracts and bios are left out as too wordy to be concepts);
  evidence   a judged demand evidences a concept when the accepted experts' weight holding it, as a
             share, exceeds the declined experts' (each side blended with the concept's share among
             all experts, so that one expert either way is weak evidence). A concept most experts
             hold at all (over `max_concept_share`) says nothing, nor do the demand's own words; a
             concept that every judged expert of every demand holds is evidenced everywhere, and
             the test below, against the rate at which all demands evidence it, finds nothing in it;
  association  a phrase and a concept: of the `n` judged demands that say the phrase, `k` evidence
             the concept, against the rate `r` at which all judged demands do. It is kept when that
             many is unlikely by chance (the binomial tail P(K >= k | n, r), with the false
             discovery rate over every pair seen together held at `fdr`, Benjamini-Hochberg), at
             least `min_demands` demands and `min_experts` different accepted experts gave it (a
             concept, not one person's vocabulary), and k is `min_lift` times chance or more;
  strength   (k - n r) / (n + `prior_demands`): the excess over chance, shrunk toward zero with
             little evidence (two agreeing demands out of two give at most 0.5, eight of eight 0.8).

With a few dozen verdicts nothing passes: associations appear as evidence accumulates, which is the
point (the figures in the README show what the shared benchmarks' verdicts teach).

Verdicts weigh by what they say about fit (`VERDICT_EVIDENCE`): 婉拒 is most often about the
expert's time or interest, not their field, and counts a third of 不合适. The latest decisive
verdict on a pair wins (as in `matcher eval --feedback`); an outcome recorded with an expert is
positive whatever was said before. A verdict withdrawn is simply no longer there, and nor is its
evidence: everything here is recomputed from the verdicts as they stand.

The associations enter the understanding stage as the third expansion source
(`matcher.expansion.learned`), at a weight that grows with their strength and stays below the
demand's own words.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.stats import binom

#: What each verdict says about fit: + the expert's words answered the demand's, - they did not.
#: 婉拒 (declined) is most often about the expert's time, not their field: a third of 不合适.
VERDICT_EVIDENCE: Mapping[str, float] = {"succeeded": 1.0, "accepted": 1.0, "unsuitable": -1.0,
                                         "declined": -0.3}
#: An outcome (合作意向, 项目合作, …) recorded with an expert: the strongest positive there is.
OUTCOME_EVIDENCE = 1.0


@dataclass(frozen=True, slots=True)
class Judgment:
    """What staff said about one expert for one demand, as evidence: `weight` > 0 the expert fits,
    < 0 they do not (`VERDICT_EVIDENCE`)."""

    demand_id: str
    expert_id: str
    weight: float
    verdict: str = ""


def judgments(verdicts: Iterable[tuple[str, str, str]],
              outcomes: Iterable[tuple[str, str]] = ()) -> list[Judgment]:
    """Evidence from verdicts (demand, expert, verdict) in the order recorded (the latest decisive
    one on a pair wins; 已联系 decides nothing) and outcomes (demand, expert), which are positive."""
    latest: dict[tuple[str, str], Judgment] = {}
    for demand_id, expert_id, verdict in verdicts:
        w = VERDICT_EVIDENCE.get(verdict)
        if w is not None:
            latest[(demand_id, expert_id)] = Judgment(demand_id, expert_id, w, verdict)
    for demand_id, expert_id in outcomes:
        latest[(demand_id, expert_id)] = Judgment(demand_id, expert_id, OUTCOME_EVIDENCE, "outcome")
    return list(latest.values())


@dataclass(frozen=True, slots=True)
class Association:
    """A demand phrase that points to an expert concept, with its evidence."""

    phrase: str
    concept: str
    strength: float  # in (0, 1): the excess rate, shrunk (module docstring)
    demands: int  # judged demands that say the phrase and gave positive evidence for the concept
    judged: int  # judged demands that say the phrase
    accepted: int  # accepted experts (over those demands) who hold the concept
    declined: int  # declined or unsuitable experts (over those demands) who hold the concept
    p_value: float = 1.0  # of `demands` under chance (the binomial tail at the concept's base rate)
    examples: tuple[str, ...] = ()  # ids of demands that gave positive evidence (at most five)

    def to_dict(self) -> dict[str, object]:
        return {"phrase": self.phrase, "concept": self.concept, "strength": round(self.strength, 4),
                "demands": self.demands, "judged": self.judged, "accepted": self.accepted,
                "declined": self.declined, "p_value": float(f"{self.p_value:.3g}"),
                "examples": list(self.examples)}


@dataclass(frozen=True)
class LearnParams:
    """How much evidence an association needs (module docstring)."""

    min_demands: int = 2  # different demands that gave positive evidence
    min_experts: int = 2  # different accepted experts holding the concept: a concept, not one person's words
    fdr: float = 0.05  # false discovery rate over every (phrase, concept) pair seen together
    min_lift: float = 2.0  # positive evidence at least this many times the chance rate
    prior_demands: float = 2.0  # pseudo-demands of no evidence in the strength's denominator
    min_strength: float = 0.1
    background_weight: float = 1.0  # pseudo-weight of all experts among the accepted, and the declined
    max_concept_share: float = 0.2  # concepts held by more of all experts say nothing
    max_phrase_share: float = 0.02  # phrases held by more of all experts reach them already


@dataclass
class Learned:
    """The associations learned from a set of judgments, by phrase (strongest first)."""

    by_phrase: dict[str, list[Association]] = field(default_factory=dict)
    judgments: int = 0
    demands: int = 0  # judged demands with positive evidence
    tested: int = 0  # (phrase, concept) pairs seen together: the significance tests made

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_phrase.values())

    def all(self) -> list[Association]:
        out = [a for v in self.by_phrase.values() for a in v]
        return sorted(out, key=lambda a: (-a.strength, -a.demands, a.phrase, a.concept))

    def get(self, phrase: str) -> list[Association]:
        return self.by_phrase.get(phrase, [])

    def find(self, phrase: str, concept: str) -> Association | None:
        return next((a for a in self.get(phrase) if a.concept == concept), None)

    def without(self, silenced: Iterable[tuple[str, str]]) -> Learned:
        """These associations less the (phrase, concept) pairs given (rejected proposals, entries
        already in the thesaurus)."""
        gone = set(silenced)
        if not gone:
            return self
        kept = {p: [a for a in v if (p, a.concept) not in gone] for p, v in self.by_phrase.items()}
        return Learned({p: v for p, v in kept.items() if v}, self.judgments, self.demands, self.tested)


@dataclass
class _Evidence:
    """What one judged demand says about concepts: contrast > 0 (module docstring) and who holds them."""

    contrast: dict[int, float]
    accepted: dict[int, list[str]]  # concept -> accepted experts holding it
    declined: dict[int, int]  # concept -> declined experts holding it


class _Concepts:
    """Concept ids, with each concept's share among all experts (concepts over the cap get none)."""

    def __init__(self, share: Callable[[str], float], cap: float) -> None:
        self.share, self.cap = share, cap
        self.ids: dict[str, int] = {}
        self.names: list[str] = []
        self.base: list[float] = []
        self.skip: set[str] = set()

    def id(self, c: str) -> int | None:
        j = self.ids.get(c)
        if j is None and c not in self.skip:
            b = self.share(c)
            if b > self.cap:
                self.skip.add(c)
                return None
            j = self.ids[c] = len(self.names)
            self.names.append(c)
            self.base.append(b)
        return j


def _evidence(pos: Mapping[str, float], neg: Mapping[str, float], concepts: Mapping[str, Sequence[str]],
              known: _Concepts, said: set[str], background: float) -> _Evidence:
    """One demand's contrast: the accepted experts' weighted share holding each concept, less the
    declined ones' (each side with `background` pseudo-weight of all experts in it: one expert
    either way is weak evidence, and an accepted and an unsuitable expert who both hold a concept
    cancel out)."""
    mass_pos = sum(pos.values()) + background
    mass_neg = sum(neg.values()) + background
    in_pos: dict[int, float] = defaultdict(float)
    in_neg: dict[int, float] = defaultdict(float)
    holders: dict[int, list[str]] = defaultdict(list)
    declined: dict[int, int] = defaultdict(int)
    for group, acc in ((pos, in_pos), (neg, in_neg)):
        for e, w in group.items():
            for c in set(concepts[e]):
                j = known.id(c) if c not in said else None
                if j is None:
                    continue
                acc[j] += w
                if group is pos:
                    holders[j].append(e)
                else:
                    declined[j] += 1
    contrast = {}
    for j, a in in_pos.items():
        base = background * known.base[j]
        v = (a + base) / mass_pos - (in_neg.get(j, 0.0) + base) / mass_neg
        if v > 0:
            contrast[j] = v
    return _Evidence(contrast, {j: holders[j] for j in contrast}, dict(declined))


def _passes_fdr(p_values: np.ndarray, q: float) -> np.ndarray:
    """Benjamini-Hochberg: which of these tests are discoveries at false discovery rate `q`."""
    m = len(p_values)
    keep = np.zeros(m, dtype=bool)
    if not m:
        return keep
    order = np.argsort(p_values, kind="stable")
    ranked = p_values[order]
    below = np.flatnonzero(ranked <= q * np.arange(1, m + 1) / m)
    if len(below):
        keep[order[: below[-1] + 1]] = True
    return keep


def learn(found: Sequence[Judgment], phrases: Mapping[str, Sequence[str]],
          concepts: Mapping[str, Sequence[str]], *, share: Callable[[str], float],
          params: LearnParams = LearnParams()) -> Learned:
    """Associations from judgments (module docstring). `phrases`: each judged demand's content
    terms; `concepts`: each judged expert's concept words; `share(c)`: the share of all experts
    whose texts hold `c`. Demands or experts missing from them are left out."""
    by_demand: dict[str, dict[str, float]] = defaultdict(dict)
    for j in found:
        if j.demand_id in phrases and j.expert_id in concepts and j.weight:
            by_demand[j.demand_id][j.expert_id] = j.weight
    known = _Concepts(share, params.max_concept_share)
    demand_ids: list[str] = []
    evidence: list[_Evidence] = []
    for d in sorted(by_demand):
        pos = {e: w for e, w in by_demand[d].items() if w > 0}
        if not pos:  # nothing accepted: no concept to point to (its declines weigh in other demands' rows)
            continue
        neg = {e: -w for e, w in by_demand[d].items() if w < 0}
        ev = _evidence(pos, neg, concepts, known, set(phrases[d]), params.background_weight)
        if ev.contrast:
            demand_ids.append(d)
            evidence.append(ev)
    n_d = len(demand_ids)
    if not n_d:
        return Learned(judgments=len(found))
    said: dict[str, int] = defaultdict(int)
    for d in demand_ids:
        for p in set(phrases[d]):
            said[p] += 1
    # A phrase the experts' own texts hold often already reaches them: what is learned bridges the
    # words owners use and experts do not.
    vocab_p = sorted(p for p, n in said.items()
                     if n >= params.min_demands and share(p) <= params.max_phrase_share)
    pos_p = {p: i for i, p in enumerate(vocab_p)}
    x_r, x_c = [], []
    for i, d in enumerate(demand_ids):
        for p in set(phrases[d]):
            if p in pos_p:
                x_r.append(i)
                x_c.append(pos_p[p])
    n_c = len(known.names)
    x = sp.csr_matrix((np.ones(len(x_r)), (x_r, x_c)), shape=(n_d, len(vocab_p)))
    e_r = [i for i, ev in enumerate(evidence) for _ in ev.contrast]
    e_c = [j for ev in evidence for j in ev.contrast]
    e = sp.csr_matrix((np.ones(len(e_r)), (e_r, e_c)), shape=(n_d, n_c))
    together = (x.T @ e).tocoo()  # phrase x concept: demands with the phrase that evidence the concept
    rate = np.asarray(e.sum(axis=0)).ravel() / n_d
    n_p = np.asarray(x.sum(axis=0)).ravel()
    k, n, r = together.data, n_p[together.row], rate[together.col]
    p_values = binom.sf(k - 1, n, r)
    keep = _passes_fdr(p_values, params.fdr) & (k >= params.min_demands) & (k >= params.min_lift * n * r)
    xc = x.tocsc()
    by_phrase: dict[str, list[Association]] = defaultdict(list)
    for t in np.flatnonzero(keep):
        pi, j = int(together.row[t]), int(together.col[t])
        p, c = vocab_p[pi], known.names[j]
        strength = float((k[t] - n[t] * r[t]) / (n[t] + params.prior_demands))
        if c == p or strength < params.min_strength:
            continue
        rows = xc.indices[xc.indptr[pi]: xc.indptr[pi + 1]]
        good = [i for i in rows if j in evidence[i].contrast]
        experts = {ex for i in good for ex in evidence[i].accepted[j]}
        if len(experts) < params.min_experts:
            continue
        accepted = sum(len(evidence[i].accepted.get(j, ())) for i in rows)
        declined = sum(evidence[i].declined.get(j, 0) for i in rows)
        by_phrase[p].append(Association(p, c, strength, len(good), int(n[t]), accepted, declined,
                                        float(p_values[t]), tuple(demand_ids[i] for i in good[:5])))
    out = {p: sorted(v, key=lambda a: (-a.strength, a.concept)) for p, v in by_phrase.items()}
    return Learned(out, judgments=len(found), demands=n_d, tested=len(k))


def combine(strengths: Iterable[float]) -> float:
    """Several phrases of one demand pointing to one concept: a noisy-or of their strengths (two
    phrases at 0.5 give 0.75), never reaching 1."""
    miss = 1.0
    for s in strengths:
        miss *= 1.0 - max(0.0, min(s, 0.999))
    return 1.0 - miss


def shrink(n: float, prior: float) -> float:
    """n / (n + prior): how far `n` pieces of agreeing evidence move an estimate from zero."""
    return n / (n + prior) if n > 0 else 0.0


__all__ = ["OUTCOME_EVIDENCE", "VERDICT_EVIDENCE", "Association", "Judgment", "LearnParams", "Learned",
           "combine", "judgments", "learn", "shrink"]
