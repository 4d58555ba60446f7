"""The rows the store returns, as plain records (verdicts, pauses, outcomes, accounts, the audit log,
batch runs, merges): typed values that cross module boundaries like `matcher.models`, with no SQL."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matcher.models import Demand, Expert, Explanation


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a match produced: 合作意向, 技术难题解决, 项目合作, 授权专利, 人才培养 or 经济效益."""

    id: int
    demand_id: str
    expert_ids: tuple[str, ...]
    kind: str
    value: float
    unit: str
    date: str
    note: str
    actor: str
    created_at: str


@dataclass(frozen=True, slots=True)
class DemandFact:
    """What the statistics need of one demand (`matcher.stats`)."""

    demand_id: str
    created_at: str
    industry: str
    region: str
    status: str
    recommended: bool  # a stored recommendation or any verdict
    first_contact_at: str | None  # the first verdict implying a contact
    accepted: bool
    succeeded: bool


@dataclass(frozen=True, slots=True)
class Engagement:
    expert_id: str
    name: str
    institution: str
    recommended: int
    contacted: int
    accepted: int
    succeeded: int
    outcomes: int


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    """One verdict staff recorded on one expert for one demand."""

    id: int
    demand_id: str
    expert_id: str
    verdict: str
    note: str
    created_at: str
    actor: str


@dataclass(frozen=True, slots=True)
class Decision:
    """An admin's decision on a proposed thesaurus entry (a learned association): accepted (written
    to the 科协's own thesaurus) or rejected (silenced), with the evidence it had then."""

    phrase: str
    concept: str
    decision: str  # "accepted" | "rejected"
    actor: str
    at: str
    note: str
    evidence: dict[str, object]


@dataclass(frozen=True, slots=True)
class ThesaurusVersion:
    """One version of the 科协's own thesaurus (the text of a thesaurus file), and who made it."""

    version: int
    text: str
    actor: str
    at: str
    note: str


@dataclass(frozen=True, slots=True)
class Pause:
    """An expert not to be recommended until `until` (a date, inclusive), and why."""

    expert_id: str
    until: str
    reason: str
    actor: str
    created_at: str


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: str  # staff | admin
    password_hash: str
    created_at: str
    failed_logins: int
    locked_until: str | None
    disabled: bool
    last_login_at: str | None
    must_change: bool = False  # a one-time password was set: change it after signing in


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key: its name, role (read, write or admin) and the first characters of the key
    (to tell keys apart in a list); the key itself is never stored, only its SHA-256."""

    id: int
    name: str
    role: str
    prefix: str
    created_at: str
    created_by: str
    revoked_at: str | None
    last_used_at: str | None


@dataclass(frozen=True, slots=True)
class Replay:
    """The stored answer to a write sent with an Idempotency-Key (state `pending` while it runs)."""

    fingerprint: str
    state: str
    status: int | None
    headers: tuple[tuple[str, str], ...]
    body: bytes
    created_at: str


@dataclass(frozen=True, slots=True)
class Failures:
    """Failed attempts in a row for one subject (a sign-in name, an API client)."""

    failures: int
    first_at: str
    locked_until: str | None


@dataclass(frozen=True, slots=True)
class SessionRow:
    token_hash: str
    user_id: int
    csrf_token: str
    created_at: str
    expires_at: str
    ip: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: str
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    ip: str


@dataclass(frozen=True, slots=True)
class DemandPage:
    """A page of demands (newest first) and how many match the filters in all."""

    demands: list[Demand]
    total: int


@dataclass(frozen=True, slots=True)
class StoredRecommendations:
    """A demand's stored recommendations, the newest of two kinds: those of the last batch run that
    made any (`source` "batch", `run` set) and those staff saved from a live ranking on the match
    page (`source` "live", 实时匹配: `saved_at`, `saved_by`, matches with `run_id` 0). Empty when
    neither exists."""

    run: BatchRun | None
    matches: list[BatchMatch]
    source: str = "batch"
    saved_at: str = ""
    saved_by: str = ""


RUN_STATUSES: tuple[str, ...] = ("running", "done", "failed", "interrupted")


@dataclass(frozen=True, slots=True)
class BatchRun:
    """One nightly run (one per run key) and its counts; counts are 0 until it is done."""

    id: int
    run_key: str
    status: str  # running | done | failed | interrupted
    top: int
    max_per_expert: int
    candidates: int
    started_at: str
    finished_at: str | None
    attempts: int
    demands: int
    matched: int
    unfilled: int
    recommendations: int
    exclusions: int
    total_score: float
    seconds: float
    method: str
    message: str
    team_size: int = 0  # teams of this size for demands marked needs_team (0: no teams)


@dataclass(frozen=True, slots=True)
class BatchCandidate:
    """One expert of a demand's stored ranking; `explanation` is None until one is needed.
    `team`: a member of the demand's team, covering `aspects` ({"id", "terms"} each)."""

    demand_id: str
    expert_id: str
    rank: int
    score: float
    explanation: Explanation | None = None
    team: bool = False
    aspects: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class BatchExclusion:
    """An expert a demand's 回避 rules removed from its ranking, and why."""

    demand_id: str
    expert_id: str
    reason: str
    score: float


@dataclass(frozen=True, slots=True)
class BatchMatch:
    """A recommendation written by a run: `rank` within the demand, `candidate_rank` in its ranking."""

    run_id: int
    demand_id: str
    expert_id: str
    rank: int
    score: float
    candidate_rank: int
    explanation: Explanation
    team: bool = False  # a member of the demand's team (组团)
    aspects: tuple[Mapping[str, Any], ...] = ()  # the demand's aspects this member covers


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What a run did with one demand; `reason` says why it got fewer than `top` experts."""

    demand_id: str
    candidates: int
    excluded: int
    assigned: int
    error: str
    reason: str


@dataclass(frozen=True)
class CandidateTable:
    """A run's stored candidates as columns (a night holds hundreds of thousands of them)."""

    demand_ids: list[str]
    expert_ids: list[str]
    ranks: np.ndarray
    scores: np.ndarray
    team: np.ndarray | None = None  # bool per candidate: a team member (None: no team in the run)


@dataclass(frozen=True, slots=True)
class WriteSummary:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True, slots=True)
class MergeEntry:
    """A logged merge: `merged` was folded into `kept_id`, turning `before` into `after`."""

    id: int
    import_id: int | None
    kept_id: str
    merged: Expert
    before: Expert
    after: Expert
    reason: str
    score: float
    source: str
    row: int | None
    created_at: str
    undone_at: str | None

    @property
    def merged_id(self) -> str:
        return self.merged.id


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """What `check_database` found in a sound matcher database."""

    path: Path
    schema_version: int
    experts: int
    demands: int
    size_bytes: int
    last_audit_at: str | None = None  # the time of its audit log's last entry (None: none, or no log)
