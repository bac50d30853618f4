"""Reports on a campaign's archive: held-out scores and the Pareto front.

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
from evolve.problem import Problem
from evolve.scratch import owned_tempdir
from evolve.store import CampaignRow, Store
from evolve.values import EvalStatus, Program

__all__ = ["HeldOut", "held_out_score", "recorded_held_out"]

_EVENT = "held_out"


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


def held_out_score(store: Store, row: CampaignRow, problem: Problem, program: Program) -> HeldOut | None:
    """The program's held-out score (computed now unless already recorded), or None when the problem has no held-out set.

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
        evaluator = Evaluator(problem, problem_dir=workdir / "problem", sandbox=row.config.sandbox)
        result = asyncio.run(evaluator.evaluate(program.code, held_out=True))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    held = HeldOut(program_id=program.id, status=result.status, score=result.objective(problem.config.objective.metric),
                   metrics=dict(result.metrics), error=result.artifacts.get("error"))
    store.add_event(row.id, _EVENT, held.to_json())
    return held
