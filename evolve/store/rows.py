"""Plain records the store returns besides ``Program``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evolve.values import CampaignStatus

__all__ = ["CampaignRow", "EliteRow", "LLMCallRecord", "RecordOutcome"]


@dataclass(frozen=True, slots=True)
class CampaignRow:
    id: str
    problem_id: str
    problem_name: str
    status: CampaignStatus
    config: dict[str, Any]
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


@dataclass(frozen=True, slots=True)
class EliteRow:
    island: int
    cell: str
    program_id: str
    fitness: float
    n_children: int


@dataclass(frozen=True, slots=True)
class LLMCallRecord:
    model: str
    template: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    ok: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    new_elite: bool
    new_best: bool
    iterations_done: int
