"""Plain records the store returns besides ``Program``."""

from __future__ import annotations

from dataclasses import dataclass, field

from evolve.config import CampaignConfig
from evolve.values import CampaignStatus

__all__ = ["CampaignRow", "EliteRow", "LLMCallRecord", "ModelStats", "RecordOutcome"]


@dataclass(frozen=True, slots=True)
class CampaignRow:
    id: str
    problem_id: str
    problem_name: str
    status: CampaignStatus
    config: CampaignConfig  # parsed once, here, where it is read from the store (evolve.config.stored_config)
    iterations_target: int
    iterations_done: int
    valid_done: int
    best_program_id: str | None
    best_fitness: float | None
    last_migration: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    owner: str | None
    error: str | None
    created_at: float
    updated_at: float
    lease_expires: float | None = None
    created_by: str | None = None  # the API token (by name) that started it; None: the CLI or the Python API


@dataclass(frozen=True, slots=True)
class EliteRow:
    island: int
    cell: str
    program_id: str
    fitness: float
    n_children: int


@dataclass(frozen=True, slots=True)
class LLMCallRecord:
    """One request to a model (a retried proposal has several)."""

    model: str
    template: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    ok: bool
    error: str | None = None
    outcome: str = "ok"
    attempt: int = 1
    iteration: int | None = None


@dataclass(frozen=True, slots=True)
class ModelStats:
    """How one model (in one mode) did in a campaign, read back from the store."""

    model: str
    template: str | None
    proposals: int  # programs it proposed, whatever came of them
    valid: int  # of those, evaluated OK
    improved: int  # valid and better than their parent
    mean_improvement: float | None  # mean child-minus-parent fitness over valid proposals
    best_fitness: float | None
    requests: int  # HTTP requests or local generations, retries included
    failed_requests: int  # requests that got no answer (an empty or cut-off answer is an answer)
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    mean_latency_s: float | None
    applied: dict[str, int] = field(default_factory=dict)  # how its answers were applied (evolve.diff.Applied), or not

    @property
    def success_rate(self) -> float:
        return self.valid / self.proposals if self.proposals else 0.0


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    new_elite: bool
    new_best: bool
    iterations_done: int
