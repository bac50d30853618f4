"""evolve: LLM-driven evolutionary algorithm discovery.

A campaign samples parents from a MAP-Elites archive (per island, in a SQL
store), asks a model for SEARCH/REPLACE edits or rewrites, evaluates each child
in a sandbox through the problem's trusted evaluator, and records the result.

The Python API (``evolve.api``)::

    import evolve

    problem = evolve.Problem.builtin("circle_packing")
    config = evolve.CampaignConfig(iterations=20, models=[evolve.ModelSpec(name="mutator")])
    with evolve.run(problem, config, db="runs.db") as result:
        print(result.status, result.best.score)

The heavier names (the campaign, the store, the API) load on first use, so an
evaluator process that imports ``evolve.evaluators`` does not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from evolve.errors import ConfigError, DiffError, EvolveError, LLMError, ProblemError, SandboxError, StoreError
from evolve.values import CampaignStatus, EvalResult, EvalStatus, Origin, Program

if TYPE_CHECKING:
    from evolve.api import CampaignResult, open_campaign, resume, resume_async, run, run_async
    from evolve.campaign import Campaign
    from evolve.config import CampaignConfig, ModelSpec, SearchConfig
    from evolve.llm.plugins import ModelPlugin
    from evolve.problem import Problem, ProblemConfig
    from evolve.proposals import Budget, Child, Progress, Proposal
    from evolve.store import Store

__version__ = "0.1.0"

_LAZY = {
    "CampaignResult": "evolve.api", "open_campaign": "evolve.api", "resume": "evolve.api", "resume_async": "evolve.api",
    "run": "evolve.api", "run_async": "evolve.api", "Campaign": "evolve.campaign", "CampaignConfig": "evolve.config",
    "ModelSpec": "evolve.config", "SearchConfig": "evolve.config", "ModelPlugin": "evolve.llm.plugins",
    "Problem": "evolve.problem", "ProblemConfig": "evolve.problem", "Budget": "evolve.proposals",
    "Child": "evolve.proposals", "Progress": "evolve.proposals", "Proposal": "evolve.proposals", "Store": "evolve.store",
}

__all__ = [
    "Budget",
    "Campaign",
    "CampaignConfig",
    "CampaignResult",
    "CampaignStatus",
    "Child",
    "ConfigError",
    "DiffError",
    "EvalResult",
    "EvalStatus",
    "EvolveError",
    "LLMError",
    "ModelPlugin",
    "ModelSpec",
    "Origin",
    "Problem",
    "ProblemConfig",
    "ProblemError",
    "Program",
    "Progress",
    "Proposal",
    "SandboxError",
    "SearchConfig",
    "Store",
    "StoreError",
    "__version__",
    "open_campaign",
    "resume",
    "resume_async",
    "run",
    "run_async",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'evolve' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
