"""Learning from verdicts (`matcher.learning`): associations need agreeing demands and experts, are
unlikely by chance, weigh by their evidence, and random verdicts teach nothing.

The statistics are checked against independent arithmetic: the binomial tail from `math.comb`, the
strength from its formula, Benjamini-Hochberg against its textbook loop."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from matcher.learning import (
    VERDICT_EVIDENCE,
    Judgment,
    LearnParams,
    _passes_fdr,
    combine,
    judgments,
    learn,
)

POOL = [f"词{i:03d}" for i in range(300)]  # neutral concept words and phrases


def world(coating_demands: int, *, same_expert: bool = False, others: int = 40, seed: int = 1):
    """A 科协's verdicts: `coating_demands` demands say 起皮 and accept an expert holding 涂层 (three
    coating experts in turn, or always the same one), declining three others; `others` demands say
    other things and accept and decline random experts."""
    rnd = random.Random(seed)
    concepts: dict[str, list[str]] = {}
    for i in range(3):
        concepts[f"C{i}"] = ["涂层", *rnd.sample(POOL, 6)]
    for i in range(60):
        concepts[f"E{i:02d}"] = rnd.sample(POOL, 6)
    phrases: dict[str, list[str]] = {}
    found: list[Judgment] = []
    plain = [e for e in concepts if e.startswith("E")]
    for d in range(coating_demands):
        did = f"Q{d:02d}"
        phrases[did] = ["起皮", *rnd.sample(POOL, 3)]
        expert = "C0" if same_expert else f"C{d % 3}"
        found.append(Judgment(did, expert, 1.0, "accepted"))
        found += [Judgment(did, e, -1.0, "unsuitable") for e in rnd.sample(plain, 3)]
    for d in range(others):
        did = f"R{d:02d}"
        phrases[did] = rnd.sample(POOL, 4)
        picks = rnd.sample(plain, 4)
        found.append(Judgment(did, picks[0], 1.0, "accepted"))
        found += [Judgment(did, e, -1.0, "unsuitable") for e in picks[1:]]
    holders = {}
    for cs in concepts.values():
        for c in set(cs):
            holders[c] = holders.get(c, 0) + 1
    share = lambda c: holders.get(c, 0) / 1000  # noqa: E731 - a pool of 1,000 experts: every phrase is rare
    return found, phrases, concepts, share


def test_demands_that_agree_teach_an_association_with_its_evidence() -> None:
    found, phrases, concepts, share = world(4)
    learned = learn(found, phrases, concepts, share=share)
    a = learned.find("起皮", "涂层")
    assert a is not None
    assert (a.demands, a.judged, a.accepted, a.declined) == (4, 4, 4, 0)
    assert a.examples == ("Q00", "Q01", "Q02", "Q03")
    # k of n demands against the rate r at which all 44 judged demands evidence 涂层 (only these 4)
    n, k, r = 4, 4, 4 / 44
    tail = sum(math.comb(n, j) * r**j * (1 - r) ** (n - j) for j in range(k, n + 1))
    assert a.p_value == pytest.approx(tail, rel=1e-9)
    assert a.strength == pytest.approx((k - n * r) / (n + 2.0))
    # the coating demands' other words are random: nothing else is learned from them
    assert {(x.phrase, x.concept) for x in learned.all()} == {("起皮", "涂层")}


def test_one_demand_or_one_expert_is_not_enough() -> None:
    found, phrases, concepts, share = world(1)
    assert learn(found, phrases, concepts, share=share).find("起皮", "涂层") is None  # fitted to one demand
    found, phrases, concepts, share = world(4, same_expert=True)
    assert learn(found, phrases, concepts, share=share).find("起皮", "涂层") is None  # one person's words
    loose = LearnParams(min_experts=1)
    assert learn(found, phrases, concepts, share=share, params=loose).find("起皮", "涂层") is not None


def test_strength_grows_with_evidence_and_stays_below_one() -> None:
    strengths = []
    for n in (4, 6, 10, 20):  # one demand in eleven says 起皮: the chance rate stays the same
        found, phrases, concepts, share = world(n, others=10 * n)
        strengths.append(learn(found, phrases, concepts, share=share).find("起皮", "涂层").strength)
    assert strengths == sorted(strengths) and strengths[0] < strengths[-1] < 1.0


def test_a_phrase_the_experts_write_themselves_is_not_learned() -> None:
    found, phrases, concepts, share = world(4)
    common = lambda c: 0.5 if c == "起皮" else share(c)  # noqa: E731 - half the experts write 起皮
    assert learn(found, phrases, concepts, share=common).find("起皮", "涂层") is None


def test_a_concept_most_experts_hold_says_nothing() -> None:
    found, phrases, concepts, share = world(6)
    ubiquitous = lambda c: 0.3 if c == "涂层" else share(c)  # noqa: E731
    assert learn(found, phrases, concepts, share=ubiquitous).find("起皮", "涂层") is None


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_random_verdicts_teach_nothing(seed: int) -> None:
    """Phrases, concepts and verdicts drawn at random: whatever pairs recur, none is a discovery at
    the false discovery rate of 5% (and at 50%, still almost none)."""
    rnd = random.Random(seed)
    words = POOL[:60]
    concepts = {f"E{i}": rnd.sample(words, 8) for i in range(80)}
    phrases = {f"D{d}": rnd.sample(words, 5) for d in range(120)}
    found = []
    for d in phrases:
        picks = rnd.sample(sorted(concepts), 6)
        found += [Judgment(d, e, 1.0 if i < 2 else -1.0) for i, e in enumerate(picks)]
    share = lambda c: 0.001  # noqa: E731
    assert len(learn(found, phrases, concepts, share=share)) == 0
    assert len(learn(found, phrases, concepts, share=share, params=LearnParams(fdr=0.5))) <= 3


def test_benjamini_hochberg_against_its_textbook_loop() -> None:
    rnd = np.random.default_rng(7)
    p = np.concatenate([rnd.uniform(0, 1, 200), rnd.uniform(0, 1e-4, 20)])
    rnd.shuffle(p)
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    cut = 0
    for rank, i in enumerate(order, start=1):
        if p[i] <= 0.05 * rank / m:
            cut = rank
    expected = {order[j] for j in range(cut)}
    assert set(np.flatnonzero(_passes_fdr(p, 0.05))) == expected
    assert not _passes_fdr(np.array([]), 0.05).any()


def test_the_latest_decisive_verdict_wins_and_an_outcome_is_positive() -> None:
    got = judgments([("Q1", "A", "accepted"), ("Q1", "A", "unsuitable"), ("Q1", "B", "contacted"),
                     ("Q1", "C", "declined"), ("Q2", "D", "unsuitable")], outcomes=[("Q2", "D")])
    by = {(j.demand_id, j.expert_id): j for j in got}
    assert by[("Q1", "A")].weight == -1.0  # changed its mind: 不合适 after 同意对接
    assert ("Q1", "B") not in by  # 已联系 decides nothing
    assert by[("Q1", "C")].weight == VERDICT_EVIDENCE["declined"] == -0.3  # 婉拒: mostly about time
    assert by[("Q2", "D")].weight == 1.0 and by[("Q2", "D")].verdict == "outcome"


def test_declines_weigh_less_than_unsuitable_verdicts() -> None:
    """Each 起皮 demand accepts a coating expert and turns down another who holds 涂层 too: turned
    down as 不合适, the concept is no evidence of fit; as 婉拒 (busy), it mostly still is."""

    def verdicts(verdict: str) -> tuple:
        found, phrases, concepts, share = world(8)
        extra = {f"K{i}": ["涂层", *POOL[200 + i: 203 + i]] for i in range(8)}
        concepts.update(extra)
        found = [*found, *(Judgment(f"Q{d:02d}", f"K{d}", VERDICT_EVIDENCE[verdict], verdict)
                           for d in range(8))]
        for d in range(8):  # the only turned-down expert of each 起皮 demand
            found = [j for j in found if not (j.demand_id == f"Q{d:02d}" and j.expert_id.startswith("E"))]
        return found, phrases, concepts, share

    found, phrases, concepts, share = verdicts("unsuitable")
    assert learn(found, phrases, concepts, share=share).find("起皮", "涂层") is None
    found, phrases, concepts, share = verdicts("declined")
    a = learn(found, phrases, concepts, share=share).find("起皮", "涂层")
    assert a is not None and (a.accepted, a.declined) == (8, 8)


def test_combine_is_a_noisy_or_below_one() -> None:
    assert combine([0.5, 0.5]) == pytest.approx(0.75)
    assert combine([]) == 0.0 and combine([0.3]) == pytest.approx(0.3)
    assert combine([0.99, 0.99, 0.99]) < 1.0


# -- the learned source keeps to the understanding stage's rule: support beyond the trigger ----------
def _expand(own: list[str], judge):  # noqa: ANN001, ANN202
    from matcher.expansion import Found
    from matcher.expansion.learned import LearnedSource
    from matcher.learning import Association, Learned

    learned = Learned({"烂筒": [Association("烂筒", "木霉", 0.6, 6, 6, 6, 0)],
                       "发黑": [Association("发黑", "木霉", 0.5, 4, 4, 3, 1)]})
    found = Found("".join(own), {t: 1.0 for t in own}, set(), content=list(own), support=judge)
    LearnedSource(lambda: learned, lambda: 0.4, lambda: 8, tokenize=lambda s: [s]).expand(found)
    return found


def test_a_learned_concept_needs_support_beyond_its_trigger() -> None:
    # the library judges that nothing else the demand says keeps company with 木霉: dropped
    f = _expand(["烂筒", "出菇"], lambda concept, others: {})
    assert "木霉" not in f.expanded and f.dropped["木霉"].source == "learned"
    # a term that keeps company with it supports it; the library that cannot judge keeps it
    f = _expand(["烂筒", "出菇"], lambda concept, others: {"出菇": 3})
    assert f.expanded["木霉"].support == ("出菇",) and f.expanded["木霉"].evidence.demands == 6
    assert _expand(["烂筒", "出菇"], lambda concept, others: None).expanded["木霉"].support == ()
    # a demand that says nothing else keeps it: the trigger is all it says
    assert "木霉" in _expand(["烂筒"], lambda concept, others: {}).expanded
    # two of the demand's phrases pointing to it support each other, whatever the library says;
    # their strengths combine as a noisy-or, times the weight, below the demand's own words (1)
    e = _expand(["烂筒", "发黑"], lambda concept, others: {}).expanded["木霉"]
    assert e.support == ("发黑",) and e.origin == "烂筒"
    assert e.weight == pytest.approx(0.4 * (1 - 0.4 * 0.5)) and e.weight < 1
