"""Team recommendation (组团服务): k experts who together cover every part of a demand.

    team = recommend_team(engine, "新上一条不锈钢锅生产线，焊缝发黑、抛光粉尘大，还想做个MES把数据管起来")
    team.aspects   # the parts of the demand, each named by its key terms, with who covers it
    team.members   # the panel; each member says which aspects it covers and with what evidence

A ranked list of ten puts the three best welding experts on top of a demand that also needs a
manufacturing-IT expert. The team is chosen in four steps, all on top of the engine's ranking
(`Engine.relevance`, one narrow interface), so every improvement to the ranker improves the teams.

1. **Aspects.** The text is cut into parts at sentence ends, semicolons, line breaks, and commas
   followed by a connective that starts a new request (，还想…, ，另外…, ，同时…, ，以及…); plain commas
   and 、 do not cut (see `_BREAK`). A part without a specific term (only generic words) joins the
   one before. Each part is ranked; parts whose relevance rows (step 2, without RHO) have a cosine
   of at least `MERGE_COSINE` are one aspect (single linkage), ranked again as one text. A demand
   whose parts all merge is one aspect: the whole text, ranked exactly as `matcher match` ranks it.
   Parts no allowed expert matches are left out (`Team.unmatched`). An aspect is named by the terms
   its three best experts matched, strongest first. A stored demand's title and keywords are its
   summary: they are emphasised (as in `match_demand`), and its parts are its description's.
2. **Relevance, comparable across aspects.** The fused score of expert e for aspect a is divided by
   the aspect's best allowed score: r(a, e) = RHO * (s(a, e) / max s(a, .)) ** GAMMA, in [0, RHO].
   Every aspect's best expert gets RHO whatever the scale of that aspect's scores; GAMMA = 3 keeps
   an expert who is middling on everything (a hub with 150 documents) from beating specialists;
   RHO < 1 leaves a second expert on an aspect some value, so the objective still orders experts
   once every aspect has one.
3. **Objective: probabilistic coverage.** f(T) = sum_a w_a * (1 - prod_{e in T} (1 - r(a, e))), with
   w_a = 1 (each part of the demand counts the same). f is monotone and submodular (a second
   expert on an aspect adds less than the first), so covering a new aspect beats doubling up.
4. **Selection.** The best expert for the demand as a whole (`matcher match`'s first) is always on
   the team: staff compare the team with the plain list, and on the tuning half of the benchmark
   this anchor cost no coverage. The other k - 1 maximise f given the anchor, exactly when that is
   cheap, greedily otherwise. The pool is each aspect's first `POOL` allowed experts. Without the
   one-per-institution rule, an expert whom k others match or beat on every aspect is never needed
   (swap it for one of them not in the team), so those are dropped; if at most
   `EXACT_MAX_SUBSETS` teams remain, all are scored and the best is taken: the true optimum (the
   default k = 3 always gets here). Otherwise greedy, which reaches at least (1 - 1/e) of the
   optimum of a monotone submodular f (Nemhauser, Wolsey and Fisher 1978), and at least 1/2 with
   one expert per institution (a partition matroid; Fisher, Nemhauser and Wolsey 1978).
   `Team.method` says which ran; tests check both against brute force on random instances.

Members are listed in the order of the plain ranking of the whole text (the anchor first), so a
one-aspect team is `matcher match`'s first k; `Team.ranking` continues with the rest of that
ranking. Rules are the engine's, through one function (`matcher.engine.rules.rule_out`: filters,
回避, verdicts, pauses), and optionally at most one member per institution (`same_institution`,
closed transitively).
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from matcher.engine import Engine, Exclusion, RelevanceMatrix
from matcher.errors import InputError
from matcher.models import Demand, Evidence, Expert, Explanation
from matcher.rank import Filters, same_institution
from matcher.text import normalize, show
from matcher.understand import PRODUCT, Understanding

log = logging.getLogger(__name__)

MAX_SIZE = 8
DEFAULT_SIZE = 3
MERGE_COSINE = 0.3  # parts whose relevance rows have at least this cosine are one aspect
RHO = 0.9
GAMMA = 3.0
COVER_RATIO = 0.5  # an expert covers an aspect when s(a, e) >= this share of the aspect's best
POOL = 20  # candidates per aspect for the selection
DEPTH = 50  # experts ranked per text by the engine
MAX_PARTS = 12
EXACT_MAX_SUBSETS = 200_000
ANCHOR = True  # `matcher match`'s first expert leads the team (module docstring, step 4)
NAME_TERMS = 4

# Where a demand's parts meet: sentence ends, semicolons and line breaks, and a comma followed by a
# connective that starts a new request (，还想…, ，另外…). Commas and the enumeration comma 、 do not
# cut: owners describe one problem in many clauses and list its symptoms with 、 (发硬、起毛; 地上有油污、
# 反光的地方), and on the enterprise-voice benchmark the rankings of two clauses of one demand overlap
# no more than those of two different demands, so merging could not repair such cuts (README).
_CONNECTIVES = ("与此同时", "另一方面", "还需要", "还希望", "此外", "另外", "同时", "以及", "其次", "再者",
                "顺便", "还想", "还要", "还有(?!没)")
_BREAK = re.compile(
    r"[。！？；;!?\n\r]+|\.(?=\s|$)"
    rf"|[，,、]\s*(?=(?:{'|'.join(sorted(_CONNECTIVES, key=len, reverse=True))}))"
)


# -- results -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Aspect:
    """One part of the demand: its clauses, its name (its leading concept), the terms its best
    experts matched, who in the team covers it and who leads it."""

    id: int
    text: str
    terms: tuple[str, ...]
    weight: float
    covered_by: tuple[str, ...]  # expert ids of the members who cover it
    coverage: float  # 1 - prod(1 - r) over the team: how well the team answers this aspect
    name: str = ""  # the leading concept: 电池热管理, 齿轮箱噪声, MES (`aspect_name`)
    lead: str = ""  # the expert id of the member who leads it (`leads`)


@dataclass(frozen=True, slots=True)
class AspectEvidence:
    """Why a member answers one aspect: relevance (score / the aspect's best) and the evidence."""

    aspect_id: int
    relevance: float
    explanation: Explanation


@dataclass(frozen=True, slots=True)
class TeamMember:
    rank: int
    expert: Expert
    gain: float  # what this member adds to the objective after the members ranked above
    covers: tuple[int, ...]  # aspect ids
    aspects: tuple[AspectEvidence, ...]  # the covered aspects (or the closest one when none)
    explanation: Explanation  # the aspects' terms and evidence together
    relevance: tuple[float, ...] = ()  # per aspect, in aspect order: score / the aspect's best
    score: float = 0.0  # the fused score for the whole demand, as `match` gives it

    @property
    def strength(self) -> float | None:
        """The calibrated strength (`matcher.strength`): the member's best over its aspects."""
        known = [p.explanation.strength for p in self.aspects if p.explanation.strength is not None]
        return max(known) if known else None

    @property
    def level(self) -> str:
        best = max(self.aspects, key=lambda p: p.explanation.strength or 0.0, default=None)
        return best.explanation.level if best is not None and best.explanation.strength is not None else ""

    @property
    def expert_id(self) -> str:
        return self.expert.id


@dataclass(frozen=True, slots=True)
class Team:
    text: str
    aspects: tuple[Aspect, ...]
    members: tuple[TeamMember, ...]
    coverage: float  # weighted share of the aspects that a member covers
    objective: float  # f(team) / sum of the weights, in [0, RHO]
    method: str  # "exact", "greedy", or "none" (no expert matches)
    ranking: tuple[str, ...]  # the team, then the rest of the plain ranking of the whole text
    unmatched: tuple[str, ...] = ()  # clauses no expert matched
    excluded: tuple[Exclusion, ...] = ()  # experts the demand's 回避 rules removed
    understanding: Understanding | None = None  # what the engine understood of the whole text

    @property
    def single(self) -> bool:
        """One aspect: the demand is one problem, and the team is the plain ranking's first k."""
        return len(self.aspects) <= 1

    def to_dict(self, *, include_contact: bool = False) -> dict[str, Any]:
        """The JSON shape of `matcher team --json` and `POST /api/v1/team`."""
        out = {
            "text": self.text,
            "aspects": [{"id": a.id, "name": a.name, "text": a.text, "terms": list(a.terms),
                         "covered_by": list(a.covered_by), "lead": a.lead or None,
                         "coverage": round(a.coverage, 4)} for a in self.aspects],
            "single": self.single,
            "team": [member_dict(m, include_contact=include_contact) for m in self.members],
            "coverage": round(self.coverage, 4),
            "objective": round(self.objective, 4),
            "method": self.method,
            "unmatched": list(self.unmatched),
        }
        if self.understanding is not None:
            out["understanding"] = self.understanding.to_dict()
        return out


def member_dict(m: TeamMember, *, include_contact: bool = False) -> dict[str, Any]:
    e = m.expert
    expert: dict[str, Any] = {"id": e.id, "name": e.name, "title": e.title, "institution": e.institution,
                              "region": e.region, "research_fields": list(e.research_fields)}
    if include_contact:
        expert["contact"] = e.contact.to_dict()
    explanation = m.explanation.to_dict()
    explanation.pop("signals", None)
    explanation["aspects"] = [
        {"aspect_id": p.aspect_id, "relevance": round(p.relevance, 4),
         "strength": None if p.explanation.strength is None else round(p.explanation.strength, 4),
         "level": p.explanation.level, **{
            k: v for k, v in p.explanation.to_dict().items() if k in ("terms", "evidence")}}
        for p in m.aspects
    ]
    for k in ("strength", "level", "measures"):
        explanation.pop(k, None)
    return {"rank": m.rank, "expert": expert,
            "strength": None if m.strength is None else round(m.strength, 4),
            "level": m.level, "score": round(m.score, 6), "covers": list(m.covers),
            "relevance": [round(r, 4) for r in m.relevance], "gain": round(m.gain, 4),
            "explanation": explanation}


# -- step 1: aspects -----------------------------------------------------------------------------
def split_clauses(text: str) -> list[str]:
    """The parts of a demand, in order: cut at sentence ends, semicolons and line breaks, and at a
    comma that a connective follows (，另外…); a plain comma or 、 does not cut."""
    return [c.strip(" \t，,") for c in _BREAK.split(text) if c and c.strip(" \t，,")]


_COMMA = re.compile(r"[，,]+")


def product_sections(engine: Engine, text: str) -> frozenset[str]:
    """The industries (thesaurus sections) of the products a text names."""
    return frozenset(h.entry.section for h in engine.thesaurus.find(text) if h.entry.kind == PRODUCT)


def _states_a_problem(engine: Engine, text: str) -> bool:
    return any(h.entry.kind != PRODUCT for h in engine.thesaurus.find(text))


def split_problems(engine: Engine, part: str) -> list[str]:
    """A part cut at the commas where a new problem starts: a clause naming a product of another
    industry (thesaurus section) than the running part's products and a problem of its own (a
    symptom the thesaurus knows), once the running part has stated one too: 锂电池包在高温下容易过热 |
    齿轮箱噪声大寿命短. A clause naming no product, or one of the same industry, or no problem (客户还以为
    是电机不行: a cause guessed at; 减震弹簧换了好几种: a part tried) continues the part, and so does the
    first problem after a clause that only names what the firm makes (我们厂做防盗门，门板点焊完…)."""
    out: list[str] = []
    sections: set[str] = set()
    problem = False
    for clause in (c.strip() for c in _COMMA.split(part)):
        if not clause:
            continue
        found = product_sections(engine, clause)
        new = bool(found and sections and problem and not found & sections)
        if out and not (new and _states_a_problem(engine, clause)):
            out[-1] = f"{out[-1]}，{clause}"
            sections |= found
            problem = problem or _states_a_problem(engine, clause)
        else:
            out.append(clause)
            sections, problem = set(found), _states_a_problem(engine, clause)
    return out


def _clauses(engine: Engine, text: str) -> list[str]:
    """The parts of `text` with a specific term each: a part of only generic words joins the one
    before it (or the next, at the start). More than `MAX_PARTS` are joined into `MAX_PARTS` runs
    of neighbours, which bounds the work of a very long text."""
    out: list[str] = []
    specific: list[bool] = []
    for part in (p for sentence in split_clauses(text) for p in split_problems(engine, sentence)):
        own = any(t not in engine.generic_terms for t in engine.tokenizer.tokenize(part))
        if out and (not own or not specific[-1]):
            out[-1] = f"{out[-1]}，{part}"
            specific[-1] = specific[-1] or own
        else:
            out.append(part)
            specific.append(own)
    if len(out) > MAX_PARTS:
        bounds = np.linspace(0, len(out), MAX_PARTS + 1).round().astype(int)
        out = ["，".join(out[a:b]) for a, b in itertools.pairwise(bounds)]
    return out


def top_columns(scores: np.ndarray, n: int) -> list[int]:
    """Columns of the `n` best positive scores, best first, ties by column (index order)."""
    order = np.argsort(-scores, kind="stable")
    return [int(c) for c in order[:n] if scores[c] > 0]


def merge_groups(similarity: np.ndarray, threshold: float = MERGE_COSINE) -> list[list[int]]:
    """Single-linkage groups of items whose pairwise similarity is at least `threshold`, each group
    in item order and the groups in the order of their first item."""
    n = similarity.shape[0]
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in itertools.combinations(range(n), 2):
        if similarity[i, j] >= threshold:
            parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def cosine(rows: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows (0 for an all-zero row)."""
    norm = np.linalg.norm(rows, axis=1, keepdims=True)
    unit = np.divide(rows, norm, out=np.zeros_like(rows, dtype=np.float64), where=norm > 0)
    return unit @ unit.T


# -- steps 2 to 4: relevance, objective, selection -----------------------------------------------
def normalised(scores: np.ndarray, rho: float = RHO, gamma: float = GAMMA) -> np.ndarray:
    """r = rho * (s / best) ** gamma per row (a row with no positive score is all zero)."""
    best = scores.max(axis=1, initial=0.0, keepdims=True)
    ratio = np.divide(scores, best, out=np.zeros_like(scores, dtype=np.float64), where=best > 0)
    return rho * np.clip(ratio, 0.0, 1.0) ** gamma


def coverage_value(r: np.ndarray, w: np.ndarray, members: Sequence[int]) -> float:
    """f(T) = sum_a w_a (1 - prod_{e in T} (1 - r[a, e]))."""
    if not len(members):
        return 0.0
    miss = np.prod(1.0 - r[:, list(members)], axis=1)
    return float(w @ (1.0 - miss))


def institution_groups(experts: Sequence[Expert]) -> np.ndarray:
    """A group id per expert: experts of one institution (`same_institution`, closed transitively)
    share it; an expert without an institution is a group alone."""
    parent = list(range(len(experts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in itertools.combinations(range(len(experts)), 2):
        a, b = experts[i].institution, experts[j].institution
        if a and b and same_institution(a, b):
            parent[find(j)] = find(i)
    return np.asarray([find(i) for i in range(len(experts))], dtype=np.int64)


def greedy(r: np.ndarray, w: np.ndarray, k: int, *, groups: np.ndarray | None = None,
           start: Sequence[int] = ()) -> list[int]:
    """Add, k times (after `start`), the column of largest marginal gain (ties: lowest column);
    with `groups`, never two columns of one group. Fewer when no column is left."""
    chosen = list(start)
    miss = np.prod(1.0 - r[:, chosen], axis=1) if chosen else np.ones(r.shape[0])
    allowed = np.ones(r.shape[1], dtype=bool)
    allowed[chosen] = False
    if groups is not None:
        for c in chosen:
            allowed[groups == groups[c]] = False
    for _ in range(k):
        if not allowed.any():
            break
        gains = (w * miss) @ r
        gains[~allowed] = -1.0
        best = int(np.argmax(gains))
        chosen.append(best)
        miss = miss * (1.0 - r[:, best])
        allowed[best] = False
        if groups is not None:
            allowed[groups == groups[best]] = False
    return chosen


def undominated(r: np.ndarray, k: int) -> list[int]:
    """Columns that fewer than k other columns dominate (>= on every row; ties by column, so the
    order is strict). Some optimal team of size k uses only these (swap argument, module docstring)."""
    n = r.shape[1]
    keep = []
    for c in range(n):
        geq = np.all(r >= r[:, [c]], axis=0)
        strictly = geq & (np.any(r > r[:, [c]], axis=0) | (np.arange(n) < c))
        strictly[c] = False
        if int(strictly.sum()) < k:
            keep.append(c)
    return keep


def exact(r: np.ndarray, w: np.ndarray, k: int, columns: Sequence[int], *,
          groups: np.ndarray | None = None, chunk: int = 50_000) -> list[int]:
    """The best team of size min(k, |columns|) among `columns` (first in combination order on ties)."""
    cols = list(columns)
    k = min(k, len(cols))
    if k == 0:
        return []
    log_miss = np.log1p(-np.clip(r[:, cols], 0.0, 1.0 - 1e-12))
    combos = itertools.combinations(range(len(cols)), k)
    best_value, best = -1.0, ()
    while True:
        block = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, chunk)), dtype=np.int64)
        if not len(block):
            break
        idx = block.reshape(-1, k)
        values = w @ (1.0 - np.exp(log_miss[:, idx].sum(axis=2)))
        if groups is not None:
            g = np.sort(groups[np.asarray(cols)][idx], axis=1)
            values[np.any(g[:, 1:] == g[:, :-1], axis=1)] = -1.0
        i = int(np.argmax(values))
        if values[i] > best_value:
            best_value, best = float(values[i]), tuple(idx[i])
    return [cols[i] for i in best] if best_value >= 0 else []


@dataclass(frozen=True, slots=True)
class Selection:
    members: tuple[int, ...]  # columns: the fixed ones, then the others in greedy order
    method: str


def select(r: np.ndarray, w: np.ndarray, k: int, *, groups: np.ndarray | None = None,
           fixed: Sequence[int] = (), budget: int = EXACT_MAX_SUBSETS) -> Selection:
    """The team of k columns maximising f among those containing `fixed`: exact when at most
    `budget` teams need scoring, else greedy (which starts from `fixed`).

    With `fixed` members F, f(F + S) = f(F) + sum_a w_a m_a (1 - prod_{e in S} (1 - r(a, e))) with
    m_a = prod_{e in F} (1 - r(a, e)): the same problem for S with weights w * m, over the columns
    not in F (nor, with `groups`, in a group of F)."""
    fixed = list(fixed)
    rest_k = k - len(fixed)
    if rest_k < 0:
        raise ValueError(f"{len(fixed)} fixed members do not fit a team of {k}")
    free = np.ones(r.shape[1], dtype=bool)
    free[fixed] = False
    if groups is not None:
        for c in fixed:
            free &= groups != groups[c]
    cols = np.flatnonzero(free)
    wf = w * np.prod(1.0 - r[:, fixed], axis=1) if fixed else w
    sub = r[:, cols]
    sub_groups = groups[cols] if groups is not None else None
    pool = undominated(sub, rest_k) if groups is None else list(range(len(cols)))
    if math.comb(len(pool), min(rest_k, len(pool))) <= budget:
        chosen, method = exact(sub, wf, rest_k, pool, groups=sub_groups), "exact"
    else:
        chosen, method = greedy(sub, wf, rest_k, groups=sub_groups), "greedy"
    # The others in the order of their contribution: the greedy order among them.
    ordered = greedy(sub[:, chosen], wf, len(chosen)) if chosen else []
    return Selection((*fixed, *(int(cols[chosen[i]]) for i in ordered)), method)


# -- the whole thing -----------------------------------------------------------------------------
def recommend_team(
    engine: Engine,
    text: str,
    *,
    size: int = DEFAULT_SIZE,
    filters: Filters | None = None,
    demand: Demand | None = None,
    one_per_institution: bool = False,
    depth: int = 10,
) -> Team:
    """A team of `size` experts covering the parts of `text` (see the module docstring).

    `demand`: a stored demand whose 回避 rules apply and whose title and keywords are emphasised,
    as in `Engine.match_demand`; `text` is then `demand.text`. `depth`: how long `Team.ranking`
    is (the team, then the rest of the plain ranking).
    """
    engine.check_text(text)
    if not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise InputError(f"size must be between 1 and {MAX_SIZE}, not {size}")
    emphasis = " ".join([demand.title, *demand.keywords]) if demand is not None else ""
    f = filters or Filters()

    # A stored demand's title and keywords summarise it (they are emphasised): its parts are those
    # of its description.
    clauses = _clauses(engine, (demand.description or demand.title) if demand is not None else text)
    texts = [text, *clauses] if len(clauses) > 1 else [text]
    first = engine.relevance(texts, emphasis=emphasis, filters=f, demand=demand, depth=DEPTH)
    parts = first.scores[1:] if len(clauses) > 1 else np.zeros((0, first.scores.shape[1]))
    matched = [i for i in range(len(parts)) if parts[i].max(initial=0.0) > 0]
    unmatched = tuple(clauses[i] for i in range(len(parts)) if i not in matched)
    # Parts are compared by their rows of the objective's relevance (before RHO): the cosine weighs
    # each part's best experts most, so two parts with the same best experts are one aspect; but
    # parts each stating a problem of a product of a different industry are different problems,
    # whoever answers both (a power-tool engineer knows battery packs and gearboxes alike).
    similarity = cosine(normalised(parts[matched], 1.0, GAMMA))
    made = [product_sections(engine, clauses[i]) if _states_a_problem(engine, clauses[i]) else frozenset()
            for i in matched]
    for a, b in itertools.combinations(range(len(matched)), 2):
        if made[a] and made[b] and not made[a] & made[b]:
            similarity[a, b] = similarity[b, a] = 0.0
    groups = [[matched[j] for j in g] for g in merge_groups(similarity, MERGE_COSINE)]

    if len(groups) <= 1:  # one aspect: the whole text, ranked exactly as `match` ranks it
        rel, rows, aspect_texts = first, [0], [text]
    elif all(len(g) == 1 for g in groups):
        rel, rows, aspect_texts = first, [1 + g[0] for g in groups], [clauses[g[0]] for g in groups]
    else:
        aspect_texts = ["，".join(clauses[i] for i in g) for g in groups]
        rel = engine.relevance([text, *aspect_texts], emphasis=emphasis, filters=f, demand=demand,
                               depth=DEPTH)
        rows = list(range(1, 1 + len(aspect_texts)))
    log.debug("team: %d parts, %d aspects (%s), %d unmatched", len(clauses), len(aspect_texts),
              " | ".join(t[:20] for t in aspect_texts), len(unmatched))
    team = _assemble(rel, rows, aspect_texts, text, size, one_per_institution, depth, unmatched, engine)
    return replace(team, understanding=engine.understand(text, emphasis))


def _assemble(rel: RelevanceMatrix, rows: list[int], aspect_texts: list[str], text: str, size: int,
              one_per_institution: bool, depth: int, unmatched: tuple[str, ...], engine: Engine) -> Team:
    # Candidate columns in the order of the plain ranking of the whole text (row 0), so that ties
    # go the way `match` would break them; then each aspect's first POOL.
    plain = np.argsort(-rel.scores[0], kind="stable")
    scores = rel.scores[rows][:, plain]
    r_all = normalised(scores, RHO, GAMMA)
    ratio = normalised(scores, rho=1.0, gamma=1.0)
    anchored = ANCHOR and len(plain) > 0 and rel.scores[0, plain[0]] > 0
    pool = sorted({c for a in range(len(rows)) for c in top_columns(scores[a], POOL)}
                  | ({0} if anchored else set()))
    if not pool:
        aspects = tuple(Aspect(i + 1, t, (), 1.0, (), 0.0) for i, t in enumerate(aspect_texts))
        return Team(text, aspects, (), 0.0, 0.0, "none", (), unmatched, rel.excluded)
    experts = [rel.experts[plain[c]] for c in pool]
    r = r_all[:, pool]
    w = np.ones(len(rows))
    groups = institution_groups(experts) if one_per_institution else None
    anchor = [0] if anchored else []  # column 0 of the pool is the plain ranking's first
    chosen = select(r, w, size, groups=groups, fixed=anchor)
    # Members are listed as the demand as a whole ranks them (each is needed for its aspects; the
    # strongest match for the demand as written comes first), and the list goes on with the rest
    # of that plain ranking: what staff turn to when a member declines.
    members = sorted(chosen.members, key=lambda m: pool[m])
    in_team = {pool[m] for m in members}
    rest = (c for c in range(len(plain)) if rel.scores[0, plain[c]] > 0 and c not in in_team)
    ranking = [*(pool[m] for m in members), *itertools.islice(rest, max(depth - len(members), 0))]

    # Explanations: one batched lookup per aspect for the members and the aspect's best three.
    covers = {m: tuple(a for a in range(len(rows)) if ratio[a, pool[m]] >= COVER_RATIO) for m in members}
    shown: dict[int, list[int]] = {a: [] for a in range(len(rows))}
    for m in members:
        for a in covers[m] or (int(np.argmax(r[:, m])),):
            shown[a].append(m)
    best3 = {a: top_columns(scores[a], 3) for a in range(len(rows))}
    explained: dict[tuple[int, int], Explanation] = {}
    for a, row in enumerate(rows):
        cols = list(dict.fromkeys([*(pool[m] for m in shown[a]), *best3[a]]))
        for c, x in zip(cols, rel.explain(row, [int(plain[c]) for c in cols]), strict=True):
            explained[(a, c)] = x

    aspect_terms = [_name(aspect_texts[a], [explained[(a, c)] for c in best3[a]]) for a in range(len(rows))]
    names = [aspect_name(engine, aspect_texts[a], [explained[(a, c)] for c in best3[a]], aspect_terms[a])
             for a in range(len(rows))]
    lead = leads(ratio[:, [pool[m] for m in members]]) if members else []
    team_members: list[TeamMember] = []
    prior: list[int] = []
    for rank, m in enumerate(members, start=1):
        gain = coverage_value(r, w, [*prior, m]) - coverage_value(r, w, prior)
        prior.append(m)
        parts = tuple(AspectEvidence(a + 1, float(ratio[a, pool[m]]), explained[(a, pool[m])])
                      for a in range(len(rows)) if m in shown[a])
        covered = tuple(a + 1 for a in covers[m])
        share = gain / float(w.sum())
        closeness = tuple(float(ratio[a, pool[m]]) for a in range(len(rows)))
        whole = float(rel.scores[0, plain[pool[m]]])
        team_members.append(TeamMember(rank, experts[m], share, covered, parts, _combined(parts), closeness,
                                       whole))
    aspects = []
    for a in range(len(rows)):
        by = tuple(experts[m].id for m in members if a in covers[m])
        cov = 1.0 - float(np.prod(1.0 - r[a, members])) if members else 0.0
        leader = experts[members[lead[a]]].id if members and lead[a] >= 0 else ""
        aspects.append(Aspect(a + 1, aspect_texts[a], aspect_terms[a], float(w[a]), by, cov, names[a],
                              leader))
    covered = sum(float(w[a]) for a in range(len(rows)) if aspects[a].covered_by)
    return Team(
        text=text,
        aspects=tuple(aspects),
        members=tuple(team_members),
        coverage=covered / float(w.sum()),
        objective=coverage_value(r, w, members) / float(w.sum()),
        method=chosen.method,
        ranking=tuple(rel.experts[plain[c]].id for c in ranking),
        unmatched=unmatched,
        excluded=rel.excluded,
    )


def _name(text: str, explanations: Sequence[Explanation]) -> tuple[str, ...]:
    """The aspect's key terms: those its best experts matched, strongest first, found in its text
    and written as the text writes them (MES, not mes). Single characters name nothing."""
    folded = normalize(text)
    lower = text.lower()
    score: dict[str, float] = {}
    for x in explanations:
        for i, t in enumerate(normalize(t) for t in x.terms):  # shown as written (MES): folded here
            if len(t) > 1 and t in folded:
                score[t] = score.get(t, 0.0) + 1.0 / (1 + i)
    ranked = sorted(score, key=lambda t: (-score[t], -len(t), t))
    out: list[str] = []
    for t in ranked:  # a term inside a longer one already named says nothing new
        if not any(t in o for o in out):
            out.append(t)
        if len(out) == NAME_TERMS:
            break
    shown = []
    for t in out:
        at = lower.find(t)
        shown.append(text[at:at + len(t)] if at >= 0 else t)
    return tuple(shown)


def leads(relevance: np.ndarray) -> list[int]:
    """Who leads each aspect (rows) among the members (columns): the assignment of members to
    aspects with the most relevance in all, each member leading one aspect while there are enough
    of them (an expert who is best at two parts leads the one nobody else answers as well); an
    aspect no member answers (relevance 0) has no lead (-1)."""
    from scipy.optimize import linear_sum_assignment

    n_aspects, n_members = relevance.shape
    out = [-1] * n_aspects
    if not n_members:
        return out
    left = list(range(n_aspects))
    while left:
        rows, cols = linear_sum_assignment(-relevance[left])
        for r, c in zip(rows, cols, strict=True):
            out[left[r]] = int(c) if relevance[left[r], c] > 0 else -1
        left = [a for a in left if a not in {left[r] for r in rows}]
    return out


def _concepts(engine: Engine) -> frozenset[str]:
    """Every concept the corpora name: the thesaurus's targets and the domain dictionary's words."""
    cached = engine.__dict__.get("_team_concepts")
    if cached is None:
        from matcher.text import read_jieba_dict

        words = {t.term for e in engine.thesaurus.entries() for t in e.targets}
        path = engine.settings.corpora_dir / "domain_dict.txt"
        if path.exists():
            words.update(w for w, _, _ in read_jieba_dict(path))
        cached = engine.__dict__["_team_concepts"] = frozenset(words)
    return cached


def aspect_name(engine: Engine, text: str, explanations: Sequence[Explanation],
                terms: Sequence[str] = ()) -> str:
    """An aspect's leading concept, as staff would name it. A product and a problem of it: the
    concept the corpora know that names both (锂电池包 + 过热 -> 电池热管理), else the product with
    the problem's words when they stand together (齿轮箱噪声大 -> 齿轮箱噪声), else both; a product
    alone is its name (MES, as the text writes it); a problem alone, its words; otherwise the term
    the aspect's best experts matched most."""
    hits = engine.thesaurus.find(text)
    norm = normalize(text)
    surfaces = engine.understander.lexicon.surfaces
    shown = lambda t: show(t, {**surfaces, **_written(text)})  # noqa: E731 - local helper
    products = [h for h in hits if h.entry.kind == PRODUCT]
    problems = [h for h in hits if h.entry.kind != PRODUCT]
    matched: dict[str, float] = {}
    for x in explanations:
        for i, t in enumerate(x.terms):
            matched[normalize(t)] = matched.get(normalize(t), 0.0) + 1.0 / (1 + i)
    if products and problems:
        product, problem = products[0], problems[0]
        pieces = {product.source[i:j] for i in range(len(product.source))
                  for j in range(i + 2, len(product.source) + 1)}
        concepts = [t.term for t in problem.entry.targets if t.weight >= 1.0]
        both = [c for c in _concepts(engine) if len(c) <= 8 and any(k in c for k in concepts)
                and any(p in c for p in pieces)]
        if both:
            best = max(both, key=lambda c: (sum(v for t, v in matched.items() if t in c), len(c), c))
            return shown(best)
        words = "".join(t for t, pos in engine.tokenizer.tag(problem.source)
                        if engine.understander.kind_of(t, pos) == "content") or problem.source
        if problem.start == product.end:
            return shown(norm[product.start:product.end] + words)
        return f"{shown(product.source)}·{shown(words)}"
    if products:
        return shown(products[0].source)
    if problems:
        return shown(problems[0].source)
    return terms[0] if terms else text[:12]


def _written(text: str) -> dict[str, str]:
    from matcher.text import surface_forms

    return surface_forms(text)


def _combined(parts: Sequence[AspectEvidence]) -> Explanation:
    terms = tuple(dict.fromkeys(t for p in parts for t in p.explanation.terms))
    evidence: list[Evidence] = []
    for p in parts:
        for ev in p.explanation.evidence[:2]:
            if ev not in evidence:
                evidence.append(ev)
    return Explanation(terms=terms, evidence=tuple(evidence))
