"""evolve: LLM-driven evolutionary algorithm discovery.

A campaign samples parents from a MAP-Elites archive (per island, in a SQL
store), asks a model for SEARCH/REPLACE edits or rewrites, evaluates each child
in a sandbox through the problem's trusted evaluator, and records the result.
"""

from evolve.errors import ConfigError, DiffError, EvolveError, LLMError, ProblemError, SandboxError, StoreError
from evolve.values import CampaignStatus, EvalResult, EvalStatus, Origin, Program

__version__ = "0.1.0"

__all__ = [
    "CampaignStatus",
    "ConfigError",
    "DiffError",
    "EvalResult",
    "EvalStatus",
    "EvolveError",
    "LLMError",
    "Origin",
    "ProblemError",
    "Program",
    "SandboxError",
    "StoreError",
    "__version__",
]
