"""Reports on a campaign: its summary (what ``evolve status`` and ``GET /campaigns`` show), held-out scores.

The held-out score of a program is computed once, on instances the search
never saw, and kept as a ``held_out`` event of its campaign, so a report
never pays for it twice and never changes the archive.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from typing import Any

from evolve.evaluators.runner import Evaluator
from evolve.grids import grid_warnings
from evolve.problem import Problem
from evolve.scratch import owned_tempdir
from evolve.store import CampaignRow, Store
from evolve.values import EvalStatus, Program

__all__ = ["HeldOut", "campaign_summary", "held_out_score", "recorded_held_out"]

_EVENT = "held_out"


def campaign_summary(store: Store, row: CampaignRow, *, detail: bool = False) -> dict[str, Any]:
    """A campaign as the CLI (``evolve status --json``) and the REST API (``GET /campaigns``) both report it.

    ``detail`` adds what costs a query per campaign: the programs per status and per stage reached, and the
    feature axes its programs barely spread over.
    """
    best = store.get_program(row.best_program_id).score if row.best_program_id else None
    out: dict[str, Any] = {
        "id": row.id, "problem_id": row.problem_id, "problem": row.problem_name, "status": row.status,
        "owner": row.owner, "lease_expires": row.lease_expires, "created_by": row.created_by,
        "iterations_done": row.iterations_done, "iterations_target": row.iterations_target, "valid_done": row.valid_done,
        "valid_rate": row.valid_done / row.iterations_done if row.iterations_done else None,
        "best_score": best, "best_program_id": row.best_program_id, "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens, "tokens": row.prompt_tokens + row.completion_tokens,
        "cost_usd": row.cost_usd, "error": row.error, "created_at": row.created_at, "updated_at": row.updated_at,
        "config": row.config.model_dump(mode="json"),
    }
    if detail:
        out["status_counts"] = store.status_counts(row.id)
        out["stage_counts"] = store.stage_counts(row.id)
        axes = store.load_problem(row.problem_id).config.features
        out["grid_warnings"] = grid_warnings(store, row.id, list(axes), programs=row.iterations_done)
    return out


@dataclass(frozen=True, slots=True)
class HeldOut:
    """A program's score on the problem's held-out instances."""

    program_id: str
    status: EvalStatus
    score: float | None
    metrics: dict[str, float]
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {"program_id": self.program_id, "status": self.status.value, "score": self.score,
                "metrics": self.metrics, "error": self.error}


def recorded_held_out(store: Store, campaign_id: str, program_id: str) -> HeldOut | None:
    """The program's held-out score if it was computed before; never computes it."""
    for event in store.events(campaign_id, kind=_EVENT, limit=100_000):
        data = event["data"]
        if data.get("program_id") == program_id:
            return HeldOut(program_id=program_id, status=EvalStatus(data["status"]), score=data.get("score"),
                           metrics=dict(data.get("metrics") or {}), error=data.get("error"))
    return None


def held_out_score(store: Store, row: CampaignRow, problem: Problem, program: Program, *,
                   confine: bool = False) -> HeldOut | None:
    """The program's held-out score (computed now unless already recorded), or None when the problem has no held-out set.

    Its evaluator runs sandboxed when the campaign's does, or with ``confine`` (a server's submitted problem).

    Raises:
        SandboxError: when the campaign's sandbox cannot run here.
    """
    if problem.config.held_out is None:
        return None
    recorded = recorded_held_out(store, row.id, program.id)
    if recorded is not None:
        return recorded
    workdir = owned_tempdir("heldout")
    try:
        evaluator = Evaluator(problem, problem_dir=workdir / "problem", sandbox=row.config.sandbox,
                              confine_evaluator=confine or row.config.evaluator_sandbox)
        result = asyncio.run(evaluator.evaluate(program.code, held_out=True))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    held = HeldOut(program_id=program.id, status=result.status, score=result.objective(problem.config.objective.metric),
                   metrics=dict(result.metrics), error=result.artifacts.get("error"))
    store.add_event(row.id, _EVENT, held.to_json())
    return held
