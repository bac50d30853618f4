"""Building campaigns and programs directly in a store, for store and archive tests."""

from __future__ import annotations

import time
import uuid

from evolve.config import CampaignConfig
from evolve.problem import Problem
from evolve.store import Store
from evolve.values import EvalStatus, Origin, Program


def make_program(campaign_id: str, iteration: int, *, island: int = 0, fitness: float | None = 1.0,
                 cell: str | None = "0", status: EvalStatus = EvalStatus.OK, parent_id: str | None = None,
                 origin: Origin = Origin.DIFF) -> Program:
    return Program(
        id=uuid.uuid4().hex[:16], campaign_id=campaign_id, code=f"# program {iteration}\n", parent_id=parent_id,
        island=island, generation=1, iteration=iteration, origin=origin, status=status,
        score=fitness, fitness=fitness, metrics={"value": fitness} if fitness is not None else {},
        features={}, artifacts={} if status is EvalStatus.OK else {"error": f"failure {iteration}"},
        cell=cell if status is EvalStatus.OK else None, created_at=time.time(),
    )


def make_campaign(store: Store, problem: Problem, *, islands: int = 2, initial_fitness: float = 0.0) -> tuple[str, Program]:
    campaign_id = uuid.uuid4().hex[:12]
    problem_id = store.save_problem(problem)
    initial = make_program(campaign_id, 0, fitness=initial_fitness, origin=Origin.INITIAL)
    config = CampaignConfig(islands=islands, iterations=100)
    store.create_campaign(campaign_id=campaign_id, problem_id=problem_id, config=config, initial=initial, islands=islands)
    return campaign_id, initial
