"""Value objects that flow through the engine: programs and evaluation results."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CampaignStatus",
    "EvalResult",
    "EvalStatus",
    "Origin",
    "Program",
]


class EvalStatus(enum.StrEnum):
    """Outcome of turning a proposal into a scored program."""

    OK = "ok"
    INVALID = "invalid"  # ran, but its output broke the problem's rules
    ERROR = "error"  # crashed, or the evaluator could not score it
    TIMEOUT = "timeout"  # ran out of wall-clock or CPU time
    BELOW_THRESHOLD = "below_threshold"  # passed a cascade stage's checks but missed its threshold
    DIFF_FAILED = "diff_failed"  # the model's answer did not yield a program
    LLM_FAILED = "llm_failed"  # the model call itself failed
    DUPLICATE = "duplicate"  # the same program (up to formatting and comments) as one already in the campaign: not evaluated
    NEAR_DUPLICATE = "near_duplicate"  # too similar to an elite of its island (the novelty filter): not evaluated
    UNCHANGED = "unchanged"  # the answer reproduced its parent (or only reformatted it): not evaluated

    @property
    def is_ok(self) -> bool:
        return self is EvalStatus.OK


class CampaignStatus(enum.StrEnum):
    """Lifecycle of a campaign as recorded in the store."""

    RUNNING = "running"
    STOPPED = "stopped"  # stopped by the user; resumable
    INTERRUPTED = "interrupted"  # found running with its owner gone; resumable
    FINISHED = "finished"  # iteration target reached; resumable with a larger target
    BUDGET_SPENT = "budget_spent"  # the cost or token budget is used up; resumable with a larger budget
    FAILED = "failed"  # could not run (e.g. the initial program fails)


class Origin(enum.StrEnum):
    """How a program came to be."""

    INITIAL = "initial"
    DIFF = "diff"
    REWRITE = "rewrite"
    CROSSOVER = "crossover"  # an edit of the parent that draws on a second parent (``mate_id``)


@dataclass(frozen=True, slots=True)
class EvalResult:
    """What an evaluation of one candidate produced.

    A bad candidate is data: ``status`` says what went wrong and ``artifacts``
    carries the messages that go back into the next prompt.
    """

    status: EvalStatus
    metrics: dict[str, float] = field(default_factory=dict)
    features: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    stage: str | None = None  # the last cascade stage run (where it stopped, unless OK)
    node: str | None = None  # the cluster node that ran it (None: the controller's host)

    def objective(self, name: str) -> float | None:
        """The objective metric, or None when the result is not OK."""
        if not self.status.is_ok:
            return None
        value = self.metrics.get(name)
        if value is None or not math.isfinite(value):
            return None
        return value

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "metrics": self.metrics,
            "features": self.features,
            "artifacts": self.artifacts,
            "duration_s": self.duration_s,
            "stage": self.stage,
            "node": self.node,
        }


@dataclass(frozen=True, slots=True)
class Program:
    """An immutable candidate program as stored in the archive."""

    id: str
    campaign_id: str
    code: str
    parent_id: str | None
    island: int
    generation: int
    iteration: int
    origin: Origin
    status: EvalStatus
    score: float | None
    fitness: float | None
    metrics: dict[str, float]
    features: dict[str, float]
    artifacts: dict[str, str]
    diff: str | None = None
    model: str | None = None
    template: str | None = None
    cell: str | None = None
    eval_seconds: float = 0.0
    llm_seconds: float = 0.0
    created_at: float = 0.0
    stage: str | None = None  # the last evaluation stage it reached
    node: str | None = None  # the cluster node that evaluated it (None: the controller's host)
    mate_id: str | None = None  # a crossover's second parent
    applied: str | None = None  # how the model's answer became this program (evolve.diff.Applied), if it did
