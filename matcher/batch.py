"""The nightly batch: match the day's demands jointly, under 回避 and capacity rules, resumably.

    result = run_batch(engine, BatchOptions(run_key="2024-05-01", top=10, max_per_expert=5))
    write_report(engine.store, result.run, Path("out.xlsx"))

A run is one row of `batch_runs`, one per run key (the date unless told). It goes through:

1. **Start** (one transaction): a new key pins its demands in `batch_demands` — status `new`, plus
   demands created since the last successful run that are marked `matched` but were never
   recommended anything. A key that is `done` is left alone (`force` discards it and starts it
   afresh). A key that is not done (killed, failed) is resumed with the demands it pinned and the
   options it started with. Another run left `running` by a dead process is marked `interrupted`;
   its demands are still `new`, so this run takes them.
2. **Score**: each pinned demand is ranked by the engine (`Engine.demand_candidates`, the ranker of
   `matcher match`, 回避 rules applied) and its best `candidates` experts and its exclusions are
   stored in one transaction per demand, the first `top` with their explanations. A resumed run
   skips the demands already stored: that is what makes `kill -9` harmless. The ranking itself may
   run elsewhere (`scorer`: e.g. `matcher.distributed.PartitionedScorer` on a Dask cluster); this
   process stays the only writer.
3. **Assign**: all candidates of the night go into one LP (`matcher.assign.solve`): at most `top`
   experts per demand, at most `max_per_expert` recommendations per expert, total (rank-discounted)
   score maximal. Assigned experts below the first `top` (capacity moved them down) are
   explained now, which scores their demand again, and stored per demand in its own transaction,
   so a run killed here keeps them (the LP is deterministic: a resumed run assigns the same). Then the recommendations are written to
   `matches`, their demands marked `matched` and the run `done` in one transaction. A demand that
   got fewer than `top` experts carries the reason.

Only one batch runs per database at a time (an exclusive `flock` on `<db>.batch.lock`, which the
kernel releases when the process dies, however it dies).
"""

from __future__ import annotations

import csv
import fcntl
import logging
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from openpyxl import Workbook
from openpyxl.styles import Font

from matcher import assign
from matcher.cells import append_row, csv_row
from matcher.engine import (
    EXCLUSION_KINDS,
    Candidates,
    Engine,
    demand_candidates_many,
    exclusion_kind,
    settings_env,
)
from matcher.errors import InputError, NotFoundError, StoreError
from matcher.models import Demand, Expert, Explanation
from matcher.records import BatchCandidate, BatchExclusion, BatchMatch, BatchOutcome, BatchRun, CandidateTable
from matcher.store import Store
from matcher.team import MAX_SIZE as MAX_TEAM_SIZE
from matcher.team import recommend_team

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""Called as `progress(phase, done, total)`: phases "score" (per demand), "assign" (once, as the
joint assignment starts), "explain" (per demand) and "done"."""

NO_EXPLANATION = Explanation(terms=(), evidence=())
#: Demands a block holds when blocks are asked for (`MATCHER_BATCH_BLOCK`): 32 queries read the
#: 10,000-expert pool's vectors once instead of 32 times.
BLOCK = 32


@dataclass(frozen=True, slots=True)
class DemandScores:
    """What phase 1 stores for one demand: its candidates best first, its exclusions, or the error
    that kept it from being ranked. Plain and picklable: a worker on another machine returns it."""

    demand_id: str
    ranked: tuple[BatchCandidate, ...] = ()
    excluded: tuple[BatchExclusion, ...] = ()
    error: str = ""


Scorer = Callable[[Engine, BatchRun, Sequence[Demand]], Iterable[DemandScores]]
"""Phase 1's computation: called as `scorer(engine, run, pending)`, it yields one `DemandScores` per
pending demand, in any order; the batch stores each as it arrives. `score_locally` is the default."""


@dataclass(frozen=True, slots=True)
class BatchOptions:
    run_key: str
    top: int = 10
    max_per_expert: int = 5
    candidates: int = 300
    force: bool = False
    rank_decay: float = assign.DEFAULT_RANK_DECAY
    team_size: int = 0  # demands marked needs_team get a team of this size (0: no teams, `--team`)

    def check(self) -> None:
        if not self.run_key.strip() or len(self.run_key) > 100:
            raise InputError("the run key must be 1 to 100 characters, e.g. the date 2024-05-01")
        if not 1 <= self.top <= 1000:
            raise InputError(f"--top must be between 1 and 1000, not {self.top}")
        if self.max_per_expert < 1:
            raise InputError(f"--max-per-expert must be at least 1, not {self.max_per_expert}")
        if self.candidates < self.top:
            raise InputError(f"candidates per demand ({self.candidates}) must be at least --top ({self.top})")
        if not 0 <= self.team_size <= MAX_TEAM_SIZE:
            raise InputError(f"--team-size must be between 1 and {MAX_TEAM_SIZE}, not {self.team_size}")


@dataclass(frozen=True, slots=True)
class BatchResult:
    run: BatchRun
    reused: bool  # the run key was done already: nothing was recomputed or written
    resumed: int  # demands whose candidates an earlier, interrupted attempt had stored
    scored: int  # demands this process scored
    seconds_scoring: float = 0.0  # phase 1
    seconds_assigning: float = 0.0  # phase 2: the solver, the explanations, the final write
    seconds_solving: float = 0.0  # the solver alone


def default_run_key(today: date | None = None) -> str:
    return (today or date.today()).isoformat()


@contextmanager
def exclusive(db: Path | str) -> Iterator[None]:
    """Hold `<db>.batch.lock` for the block; a second batch on the same database is refused."""
    if str(db) == ":memory:":
        yield
        return
    path = Path(f"{db}.batch.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(
                f"another `matcher batch` is running on {db} (it holds {path}); wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_running(db: Path | str) -> bool:
    """Whether a batch holds `<db>.batch.lock` now (in this process or another)."""
    if str(db) == ":memory:":
        return False
    path = Path(f"{db}.batch.lock")
    if not path.exists():
        return False
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """What the batch page shows: the last run, whether one is running now and how far it got."""

    last: BatchRun | None  # the latest run, whatever its status
    last_done: BatchRun | None  # the latest run that finished
    running: bool
    scored: int = 0  # of the running run: demands ranked so far
    total: int = 0  # of the running run: demands it took
    new_demands: int = 0  # demands waiting for a run (status 新需求)


def batch_status(store: Store) -> BatchStatus:
    runs = store.list_batch_runs()
    last = max(runs, key=lambda r: (r.started_at, r.id), default=None)
    done = [r for r in runs if r.status == "done"]
    last_done = max(done, key=lambda r: (r.finished_at or "", r.id), default=None)
    running = is_running(store.path)
    scored = total = 0
    if running and last is not None and last.status == "running":
        total = store.count_batch_demands(last.id)
        scored = store.count_batch_demands(last.id, scored=True)
    new = store.demand_facets().get("status", {}).get("new", 0)
    return BatchStatus(last, last_done, running, scored, total, new)


def page_run_key(store: Store, tz: str) -> str:
    """The run key of a run started from the page: the local date and time with 手动 (manual), so
    that it never takes the key of the nightly run (the date alone), whose selection it would
    otherwise change."""
    from matcher.timefmt import now_local

    key = f"{now_local(tz):%Y-%m-%d-手动%H%M}"
    n = 1
    while (run := store.get_batch_run(key if n == 1 else f"{key}-{n}")) is not None and run.status == "done":
        n += 1
    return key if n == 1 else f"{key}-{n}"


def start_batch(
    engine: Engine, actor: str, *, ip: str = "", top: int = 10
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start `matcher batch` in a process of its own (the page's 立即运行), audited; its output goes to
    `<db>.batch.log`. Refused while a batch runs (the lock file says so); the run itself takes the
    same lock, so two never run at once, however they were started. Returns the run key and the
    process (the caller reaps it)."""
    store = engine.store
    if str(store.path) == ":memory:":
        raise InputError(
            "内存数据库不能在另一个进程中运行批处理 (an in-memory database cannot be batched elsewhere)"
        )
    if is_running(store.path):
        raise StoreError("批处理正在运行，请等它结束后再启动 (a batch is running on this database)")
    if not store.count_experts():
        raise InputError("专家库是空的：请先导入专家 (the database has no experts)")
    key = page_run_key(store, engine.settings.timezone)
    env = {**os.environ, **settings_env(engine.settings), "PYTHONUNBUFFERED": "1"}
    log_path = Path(f"{store.path}.batch.log")
    cmd = [
        sys.executable,
        "-m",
        "matcher",
        "batch",
        "--run-key",
        key,
        "--top",
        str(top),
        "--db",
        str(store.path),
    ]
    with store.transaction():
        store.audit(actor, "batch.start", f"batch:{key}", {"run_key": key}, ip=ip)
    with log_path.open("ab") as log_file:
        log_file.write(f"\n== {key}: started from the page by {actor}\n".encode())
        log_file.flush()
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    return key, proc


def run_batch(engine: Engine, options: BatchOptions, *, progress: Progress | None = None,
              scorer: Scorer | None = None) -> BatchResult:
    """Run (or resume, or leave alone) the batch of `options.run_key`; see the module docstring.
    `scorer` ranks the pending demands (default: here, one by one, `score_locally`)."""
    options.check()
    store = engine.store
    if not store.count_experts():
        raise InputError(f"the database {store.path} has no experts: import them first "
                         "(`matcher import experts FILE`)")
    with exclusive(store.path):
        run, resumed = _start(store, options)
        if run.status == "done":
            return BatchResult(run, reused=True, resumed=0, scored=0)
        try:
            # Load (or bring up to date) the index before the clock starts: a rebuild takes minutes.
            engine.ensure_index()
            started = time.perf_counter()
            scored = _score(engine, run, progress, scorer or score_locally)
            t_scored = time.perf_counter()
            run, solving = _assign(engine, run, options.rank_decay, progress, started)
        except BaseException as exc:  # KeyboardInterrupt and SystemExit too: the run must say it stopped
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            store.fail_batch_run(run.id, f"{message}; run the same run key again to finish it")
            raise
        return BatchResult(run, reused=False, resumed=resumed, scored=scored,
                           seconds_scoring=t_scored - started,
                           seconds_assigning=time.perf_counter() - t_scored, seconds_solving=solving)


def _start(store: Store, options: BatchOptions) -> tuple[BatchRun, int]:
    """The run to work on (created, resumed, restarted or done) and how many demands it had scored."""
    wanted = {"top": options.top, "max_per_expert": options.max_per_expert, "candidates": options.candidates,
              "team_size": options.team_size}
    with store.transaction():
        run = store.get_batch_run(options.run_key)
        if run is not None and run.status == "done" and not options.force:
            log.info("run %s is done already (%d recommendations); --force recomputes it",
                     run.run_key, run.recommendations)
            return run, 0
        fresh = run is None or options.force
        if run is None:
            run = store.create_batch_run(options.run_key, **wanted)
        elif options.force:
            log.info("run %s: discarding its previous results (--force)", run.run_key)
            run = store.restart_batch_run(run.id, discard=True, **wanted)
        else:
            stored = {"top": run.top, "max_per_expert": run.max_per_expert, "candidates": run.candidates,
                      "team_size": run.team_size}
            if stored != wanted:
                log.warning("run %s resumes with the options it started with (%s); --force restarts it "
                            "with the new ones", run.run_key, stored)
            run = store.restart_batch_run(run.id, discard=False, **stored)
        for key in store.interrupt_batch_runs(run.id):
            log.warning("run %s had stopped before it finished: marked interrupted; its demands are "
                        "taken by this run", key)
        if fresh:
            added = store.select_batch_demands(run.id, store.last_done_batch_start())
            log.info("run %s: %d demands selected", run.run_key, added)
            return run, 0
        dropped = store.drop_settled_batch_demands(run.id)
        if dropped:
            log.info("run %s: %d demands were closed or matched by another run meanwhile",
                     run.run_key, dropped)
        resumed = store.count_batch_demands(run.id, scored=True)
        log.info("run %s: resuming (attempt %d); %d of %d demands were scored already",
                 run.run_key, run.attempts, resumed, store.count_batch_demands(run.id))
        return run, resumed


def score_demand(engine: Engine, demand: Demand, limit: int, *, explain: int = 0) -> DemandScores:
    """One demand's best `limit` allowed experts and its exclusions (what phase 1 stores); the
    first `explain` come with their explanations.

    The batch explains the first `top` here: the assignment gives most demands experts from that
    head, and phase 2 then needs no second scoring of the demand (`explain_demand`, which at
    100,000 experts cost more than the first: 146 ms against 23 ms for ten explanations now)."""
    try:
        found = engine.demand_candidates(demand, limit, explain=explain)
    except InputError as exc:  # e.g. a demand with no text: reported, the night goes on
        return DemandScores(demand.id, error=exc.message)
    return _stored(demand, found, explain)


def score_demands(engine: Engine, demands: Sequence[Demand], limit: int, *, explain: int = 0,
                  block: int | None = None) -> Iterator[DemandScores]:
    """`score_demand` of each demand, in order; `block` (default: the setting `batch_block`) demands
    scored together, their semantic signals as one matrix product (`engine.demand_candidates_many`):
    the same rankings, a cosine possibly one float32 rounding away. A demand the engine refuses
    (no text) is reported alone, the rest of its block goes on."""
    block = engine.settings.batch_block if block is None else block
    if block <= 1:
        yield from (score_demand(engine, d, limit, explain=explain) for d in demands)
        return
    for start in range(0, len(demands), max(block, 1)):
        part = demands[start : start + max(block, 1)]
        errors: dict[str, str] = {}
        for d in part:
            try:
                engine.check_text(d.text)
            except InputError as exc:
                errors[d.id] = exc.message
        good = [d for d in part if d.id not in errors]
        try:
            ranked = demand_candidates_many(engine, good, limit, explain=explain) if good else []
        except InputError:  # something else refused in the block: one at a time, as before
            yield from (score_demand(engine, d, limit, explain=explain) for d in part)
            continue
        found = {d.id: c for d, c in zip(good, ranked, strict=True)}
        for d in part:
            if d.id in errors:
                yield DemandScores(d.id, error=errors[d.id])
            else:
                yield _stored(d, found[d.id], explain)


def _stored(demand: Demand, found: Candidates, explain: int) -> DemandScores:
    return DemandScores(
        demand.id,
        tuple(BatchCandidate(demand.id, m.expert.id, m.rank, m.score, m.explanation if m.rank <= explain else None)
              for m in found.ranked),
        tuple(BatchExclusion(demand.id, x.expert.id, x.reason, x.score) for x in found.excluded),
    )


def score_team_demand(engine: Engine, demand: Demand, size: int) -> DemandScores:
    """A demand marked as needing a team: its team (`matcher.team`, under its 回避 rules), stored as
    its only candidates, each explained and marked with the aspects it covers."""
    try:
        team = recommend_team(engine, demand.text, size=size, demand=demand)
    except InputError as exc:
        return DemandScores(demand.id, error=exc.message)
    names = {a.id: {"id": a.id, "name": a.name, "terms": list(a.terms)} for a in team.aspects}
    return DemandScores(
        demand.id,
        tuple(BatchCandidate(demand.id, m.expert.id, m.rank, m.score, m.explanation, team=True,
                             aspects=tuple(names[a] for a in m.covers)) for m in team.members),
        tuple(BatchExclusion(demand.id, x.expert.id, x.reason, x.score) for x in team.excluded),
    )


def score_locally(engine: Engine, run: BatchRun, pending: Sequence[Demand]) -> Iterator[DemandScores]:
    """The default `Scorer`: the pending demands in blocks (`score_demands`), in this process."""
    yield from score_demands(engine, pending, run.candidates, explain=run.top)


def _score(engine: Engine, run: BatchRun, progress: Progress | None, scorer: Scorer) -> int:
    """Phase 1: store each pending demand's candidates and exclusions, one transaction per demand."""
    store = engine.store
    pending = store.pending_batch_demands(run.id)
    total = store.count_batch_demands(run.id)
    done = total - len(pending)
    delay = engine.settings.batch_test_delay
    if progress:
        progress("score", done, total)
    waiting = {d.id for d in pending}
    teams = [d for d in pending if run.team_size and d.needs_team]
    others = [d for d in pending if not (run.team_size and d.needs_team)]

    def every_score() -> Iterator[DemandScores]:
        # Teams are few and ranked here; a generator, so closing it cancels the scorer's work too.
        for d in teams:
            yield score_team_demand(engine, d, run.team_size)
        if others:
            yield from scorer(engine, run, others)

    results = every_score()
    try:
        for scores in results:
            if scores.demand_id not in waiting:  # a scorer's bug must not write rows for other demands
                raise RuntimeError(f"the scorer returned demand {scores.demand_id!r}, which is not pending "
                                   "or was returned twice")
            waiting.discard(scores.demand_id)
            store.save_batch_scores(run.id, scores.demand_id, scores.ranked, scores.excluded, scores.error)
            done += 1
            if progress:
                progress("score", done, total)
            if delay:
                time.sleep(delay)
    finally:
        close = getattr(results, "close", None)
        if close is not None:  # a generator: let it cancel the work still out (a cluster's tasks)
            close()
    if waiting:
        raise RuntimeError(f"the scorer returned no scores for {len(waiting)} demands, e.g. {min(waiting)}")
    return len(pending)


def _assign(
    engine: Engine, run: BatchRun, decay: float, progress: Progress | None, started: float
) -> tuple[BatchRun, float]:
    """Phase 2: the joint assignment over every stored candidate; the assigned explained (one
    transaction per demand, so a killed run keeps them); then everything written in one transaction."""
    store = engine.store
    table = store.batch_candidate_table(run.id)
    outcomes = store.list_batch_outcomes(run.id)
    if progress:
        progress("assign", 0, len(outcomes))
    d_ids = {o.demand_id: i for i, o in enumerate(outcomes)}
    e_ids: dict[str, int] = {}
    d_idx = np.fromiter((d_ids[d] for d in table.demand_ids), dtype=np.int64, count=len(table.demand_ids))
    e_idx = np.fromiter((e_ids.setdefault(e, len(e_ids)) for e in table.expert_ids), dtype=np.int64,
                        count=len(table.expert_ids))
    weights = assign.rank_weights(table.scores, table.ranks, decay) if len(table.scores) else table.scores
    t = time.perf_counter()
    solved = _solve(table, d_idx, e_idx, weights, run)
    solving = time.perf_counter() - t
    log.info("run %s: assigned %d of %d candidates (%s, %.1f s)",
             run.run_key, solved.n_chosen, len(weights), solved.method, solving)

    chosen_by_demand: dict[str, list[int]] = defaultdict(list)
    for i in np.flatnonzero(solved.chosen):
        chosen_by_demand[table.demand_ids[i]].append(int(i))
    team_demands = set() if table.team is None else {table.demand_ids[i] for i in np.flatnonzero(table.team)}

    matches: list[BatchMatch] = []
    final: list[BatchOutcome] = []
    delay = engine.settings.batch_test_delay
    for n, o in enumerate(outcomes, start=1):
        edges = sorted(chosen_by_demand.get(o.demand_id, ()),
                       key=lambda i: (-table.scores[i], table.ranks[i]))
        is_team = o.demand_id in team_demands
        if is_team:  # a team keeps its own order (the plain ranking of the whole demand)
            edges.sort(key=lambda i: table.ranks[i])
        explanations, fresh = _explanations(engine, run, o.demand_id, [table.expert_ids[i] for i in edges])
        covered = store.batch_team_aspects(run.id, o.demand_id) if is_team else {}
        for rank, i in enumerate(edges, start=1):
            e = table.expert_ids[i]
            matches.append(BatchMatch(run.id, o.demand_id, e, rank, float(table.scores[i]),
                                      int(table.ranks[i]), explanations.get(e, NO_EXPLANATION),
                                      team=is_team, aspects=covered.get(e, ())))
        reason = _why_team_unfilled(o, len(edges), run) if is_team else _why_unfilled(o, len(edges), run)
        final.append(BatchOutcome(o.demand_id, o.candidates, o.excluded, len(edges), o.error, reason))
        if progress:
            progress("explain", n, len(outcomes))
        if fresh and delay:
            time.sleep(delay)
    total_score = float(table.scores[solved.chosen].sum()) if len(table.scores) else 0.0
    done = store.finish_batch_run(run.id, matches, final, total_score=total_score,
                                  seconds=time.perf_counter() - started, method=solved.method)
    if progress:
        progress("done", 1, 1)
    log.info("run %s done: %d demands, %d matched, %d recommendations, %d unfilled, %d exclusions",
             done.run_key, done.demands, done.matched, done.recommendations, done.unfilled, done.exclusions)
    return done, solving


def _solve(table: CandidateTable, d_idx: np.ndarray, e_idx: np.ndarray, weights: np.ndarray,
           run: BatchRun) -> assign.Assignment:
    """The night's assignment. Team members come first: a team is chosen as a whole for its
    coverage, so its members take their places (in demand order, while an expert has room) before
    the joint LP shares what capacity is left among the other demands' candidates."""
    team = table.team if table.team is not None else np.zeros(len(weights), dtype=bool)
    if not team.any():
        return assign.solve(d_idx, e_idx, weights, per_demand=run.top, per_expert=run.max_per_expert)
    n_e = int(e_idx.max()) + 1
    room = np.full(n_e, run.max_per_expert, dtype=np.int64)
    chosen = np.zeros(len(weights), dtype=bool)
    for i in np.flatnonzero(team):
        if room[e_idx[i]] > 0:
            chosen[i] = True
            room[e_idx[i]] -= 1
    rest = np.flatnonzero(~team)
    solved = assign.solve(d_idx[rest], e_idx[rest], weights[rest], per_demand=run.top, per_expert=room)
    chosen[rest[solved.chosen]] = True
    return assign.Assignment(chosen, float(weights[chosen].sum()), f"teams first, then {solved.method}")


def _why_team_unfilled(o: BatchOutcome, assigned: int, run: BatchRun) -> str:
    """Why a team demand got fewer than --team-size members ("" when it got them all)."""
    if o.error:
        return f"未能匹配：{o.error}"
    parts: list[str] = []
    if o.candidates < run.team_size:
        more = f"（另有 {o.excluded} 位被回避、反馈或暂停推荐排除）" if o.excluded else ""
        parts.append(f"只有 {o.candidates} 位专家匹配{more}" if o.candidates else
                     "没有专家与需求有共同的词" + more)
    if assigned < o.candidates:
        parts.append(f"{o.candidates - assigned} 位团队成员在本次运行中已有 {run.max_per_expert} 条推荐"
                     "（每位专家的上限），已分给之前的组团需求")
    return f"团队 {assigned}/{run.team_size} 人：" + "；".join(parts) if parts else ""


def _explanations(
    engine: Engine, run: BatchRun, demand_id: str, expert_ids: list[str]
) -> tuple[dict[str, Explanation], bool]:
    """The explanations of a demand's assigned experts: stored ones, else made now and stored (in
    one transaction, so a run killed later reuses them). Also whether any was made now."""
    if not expert_ids:
        return {}, False
    have = engine.store.batch_explanations(run.id, demand_id)
    missing = [e for e in expert_ids if e not in have]
    if not missing:
        return have, False
    try:
        made = engine.explain_demand(engine.store.get_demand(demand_id), missing)
    except (InputError, NotFoundError) as exc:  # the demand was emptied or deleted since it was scored
        log.warning("demand %s: cannot explain %d recommendations (%s)", demand_id, len(missing), exc)
        return have, False
    engine.store.save_batch_explanations(run.id, demand_id, made)
    return {**have, **made}, True


def _why_unfilled(o: BatchOutcome, assigned: int, run: BatchRun) -> str:
    """Why a demand got fewer than `top` experts ("" when it got them all)."""
    if assigned >= run.top:
        return ""
    if o.error:
        return f"未能匹配：{o.error}"
    if o.candidates == 0:
        if o.excluded:
            return f"匹配的 {o.excluded} 位专家都被回避、反馈（婉拒、不合适）或暂停推荐排除"
        return "没有专家与需求有共同的词"
    parts: list[str] = []
    if o.candidates < run.top:
        more = f"（另有 {o.excluded} 位被回避、反馈或暂停推荐排除）" if o.excluded else ""
        parts.append(f"只有 {o.candidates} 位专家匹配{more}")
    if assigned < min(o.candidates, run.top):
        parts.append(f"{o.candidates - assigned} 位候选专家在本次运行中已有 {run.max_per_expert} 条推荐"
                     "（每位专家的上限）")
    return f"推荐 {assigned}/{run.top} 位：" + "；".join(parts)


# -- report --------------------------------------------------------------------------------------
RECOMMENDATION_COLUMNS = (
    "需求编号", "需求名称", "企业", "排名", "专家编号", "专家姓名", "单位", "强度", "等级", "匹配词",
    "组团", "覆盖方面",
)
PROBLEM_COLUMNS = ("类型", "需求编号", "需求名称", "企业", "专家编号", "专家姓名", "单位", "得分", "原因")
UNFILLED = "未满额"
#: The 类型 of an excluded expert in the report, by the kind of rule (`matcher.engine.exclusion_kind`):
#: a 不合适 verdict is not a 回避 rule.
EXCLUDED = {
    "回避": "回避排除",
    "婉拒": "反馈排除（婉拒）",
    "不合适": "反馈排除（不合适）",
    "暂停推荐": "暂停推荐",
}


def exclusion_counts(store: Store, run: BatchRun) -> dict[str, int]:
    """How many experts a run left out, by the kind of rule (回避, 婉拒, 不合适, 暂停推荐)."""
    counts = dict.fromkeys(EXCLUSION_KINDS, 0)
    for x in store.list_batch_exclusions(run.id):
        kind = exclusion_kind(x.reason)
        counts[kind or "回避"] = counts.get(kind or "回避", 0) + 1
    return counts


def exclusions_text(counts: Mapping[str, int]) -> str:
    """"回避 3、不合适 1" (the kinds that occur), or "无"."""
    return "、".join(f"{k} {n}" for k, n in counts.items() if n) or "无"


@dataclass(frozen=True, slots=True)
class Report:
    """A run's results as sheet rows: recommendations, and exclusions plus unfilled demands."""

    run: BatchRun
    recommendations: list[tuple[object, ...]]
    problems: list[tuple[object, ...]]


def build_report(store: Store, run: BatchRun) -> Report:
    matches = store.list_batch_matches(run_id=run.id)
    exclusions = store.list_batch_exclusions(run.id)
    outcomes = store.list_batch_outcomes(run.id)
    demands: dict[str, Demand] = {}
    for demand_id in dict.fromkeys([o.demand_id for o in outcomes] + [m.demand_id for m in matches]):
        try:
            demands[demand_id] = store.get_demand(demand_id)
        except NotFoundError:
            demands[demand_id] = Demand(id=demand_id)
    wanted = {m.expert_id for m in matches} | {x.expert_id for x in exclusions}
    experts: dict[str, Expert] = {e.id: e for e in store.get_experts(wanted)}

    def expert_cells(expert_id: str) -> tuple[str, str, str]:
        e = experts.get(expert_id) or Expert(id=expert_id)
        return e.id, e.name, e.institution

    recs = [
        (m.demand_id, demands[m.demand_id].title, demands[m.demand_id].enterprise, m.rank,
         *expert_cells(m.expert_id),
         "" if m.explanation.strength is None else round(m.explanation.strength, 4), m.explanation.level,
         matched_terms(m.explanation),
         "是" if m.team else "", _aspect_names(m.aspects))
        for m in matches
    ]
    problems: list[tuple[object, ...]] = [
        (
            EXCLUDED.get(exclusion_kind(x.reason), "回避排除"),
            x.demand_id,
            demands[x.demand_id].title,
            demands[x.demand_id].enterprise,
            *expert_cells(x.expert_id),
            round(x.score, 4),
            x.reason,
        )
        for x in exclusions
    ]
    problems += [
        (UNFILLED, o.demand_id, demands[o.demand_id].title, demands[o.demand_id].enterprise, "", "", "", None,
         o.reason)
        for o in outcomes if o.reason
    ]
    return Report(run, recs, problems)


def matched_terms(explanation: Explanation) -> str:
    """The 匹配词 cell: the matched terms, each one the demand did not say written with the
    demand's phrase it was added for (腐蚀←生锈), and 语义相近 when only meaning matched."""
    out = [f"{t}←{explanation.expanded[t]}" if t in explanation.expanded else t for t in explanation.terms]
    if not out and any(e.match == "dense" for e in explanation.evidence):
        out = ["语义相近"]
    return "、".join(out)


def _aspect_names(aspects: Sequence[Mapping[str, object]]) -> str:
    """The aspects a team member covers, as staff read them: 焊缝发黑（焊缝、发黑）；MES（MES）; a run
    stored before aspects had names says 方面1."""
    def terms(a: Mapping[str, object]) -> str:
        return "、".join(map(str, a.get("terms") or ())) or "—"  # type: ignore[call-overload]

    return "；".join(f"{a.get('name') or '方面' + str(a['id'])}（{terms(a)}）" for a in aspects)


def check_report_path(path: Path | str) -> Path:
    """The report path, if it names a format we write (checked before a run, not after it)."""
    path = Path(path)
    if path.suffix.lower() not in (".xlsx", ".csv"):
        raise InputError(f"the report must be a .xlsx or .csv file, not {path.name!r}")
    return path


def write_report(store: Store, run: BatchRun, path: Path | str) -> list[Path]:
    """Write the run's report: `.xlsx` (sheets 推荐, 排除与未满额, 运行) or `.csv` (PATH for the
    recommendations, PATH with `.exclusions.csv` for the rest; UTF-8 with BOM, which Excel reads)."""
    path = check_report_path(path)
    suffix = path.suffix.lower()
    report = build_report(store, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".xlsx":
        _atomic_write(path, lambda tmp: _write_xlsx(report, tmp))
        return [path]
    other = path.with_name(path.stem + ".exclusions.csv")
    _atomic_write(path, lambda tmp: _write_csv(tmp, RECOMMENDATION_COLUMNS, report.recommendations))
    _atomic_write(other, lambda tmp: _write_csv(tmp, PROBLEM_COLUMNS, report.problems))
    return [path, other]


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    # A half-written report must never be mistaken for last night's: write aside, then rename.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(csv_row(row) for row in rows)


def _write_xlsx(report: Report, path: Path) -> None:
    wb = Workbook()
    sheets = [
        (wb.active, "推荐", RECOMMENDATION_COLUMNS, report.recommendations,
         (12, 24, 20, 6, 12, 10, 28, 8, 40, 6, 40)),
        (wb.create_sheet(), "排除与未满额", PROBLEM_COLUMNS, report.problems,
         (10, 12, 24, 20, 12, 10, 28, 8, 60)),
    ]
    for ws, title, header, rows, widths in sheets:
        ws.title = title
        append_row(ws, header)
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for row in rows:
            append_row(ws, row)  # text stays text; characters a workbook refuses are dropped
        for col, width in enumerate(widths, start=1):
            ws.column_dimensions[ws.cell(row=1, column=col).column_letter].width = width
        ws.freeze_panes = "A2"
    r = report.run
    info = wb.create_sheet("运行")
    for key, value in (
        ("运行编号 run key", r.run_key), ("状态 status", r.status), ("开始 started", r.started_at),
        ("结束 finished", r.finished_at or ""), ("需求 demands", r.demands), ("已匹配 matched", r.matched),
        ("推荐 recommendations", r.recommendations), ("未满额 unfilled", r.unfilled),
        ("排除 exclusions（回避、反馈、暂停推荐）", r.exclusions), ("每需求推荐数 top", r.top),
        ("每专家上限 max per expert", r.max_per_expert), ("总得分 total score", round(r.total_score, 4)),
        ("组团人数 team size", r.team_size or "不组团"),
    ):
        append_row(info, [key, value])
    info.column_dimensions["A"].width = 28
    info.column_dimensions["B"].width = 28
    wb.save(path)
