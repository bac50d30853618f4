"""The values one iteration passes between a campaign's primitives: the asked ``Proposal``, the generated ``Child``,
the ``Progress`` a display reads, and the ``Budget`` that says when the money or the tokens are spent."""

from __future__ import annotations

from dataclasses import dataclass

from evolve.archive import Sample
from evolve.config import CampaignConfig, Kind, ModelSpec
from evolve.diff import Applied
from evolve.llm import CallAttempt, Completion
from evolve.store import CampaignRow
from evolve.values import EvalStatus, Program

__all__ = ["Budget", "Child", "Progress", "Proposal"]


@dataclass(frozen=True, slots=True)
class Proposal:
    """One iteration's request: which parent, which model, which prompt."""

    id: str
    iteration: int
    island: int
    sample: Sample
    model: ModelSpec
    messages: list[dict[str, str]]
    seed: int
    kind: Kind = "diff"
    mate: Program | None = None  # a crossover's second parent


@dataclass(frozen=True, slots=True)
class Child:
    """What ``generate`` produced: a child program, or the reason there is none."""

    code: str | None
    answer: str
    completion: Completion | None
    failure: EvalStatus | None = None
    error: str = ""
    attempts: tuple[CallAttempt, ...] = ()
    fatal: bool = False  # the model cannot be used as configured: stop the campaign after recording this
    artifacts: dict[str, str] | None = None  # recorded with a failure (the program a duplicate repeats)
    meta_attempts: tuple[CallAttempt, ...] = ()  # a meta-summary's requests, made after this proposal
    applied: Applied | None = None  # how the answer became ``code``

    @property
    def spent(self) -> tuple[float, int]:
        """Dollars and tokens of every request this proposal made."""
        every = (*self.attempts, *self.meta_attempts)
        return sum(a.cost_usd for a in every), sum(a.prompt_tokens + a.completion_tokens for a in every)


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot for progress displays."""

    iterations_done: int
    iterations_target: int
    valid_done: int
    best_score: float | None
    cells_filled: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    last_status: EvalStatus | None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Budget:
    """What the campaign has spent against its cost and token budgets (``run`` asks before each new proposal)."""

    max_cost_usd: float | None
    max_tokens: int | None
    cost_usd: float = 0.0
    tokens: int = 0

    @classmethod
    def of(cls, config: CampaignConfig, row: CampaignRow) -> Budget:
        """The budgets of ``config``, with what the stored campaign has spent already."""
        return cls(config.max_cost_usd, config.max_tokens, row.cost_usd, row.prompt_tokens + row.completion_tokens)

    def spend(self, child: Child) -> None:
        cost, tokens = child.spent
        self.cost_usd += cost
        self.tokens += tokens

    def reached(self) -> str | None:
        """Why no new proposal may start (a budget is used up), or None."""
        if self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
            return f"cost budget reached: ${self.cost_usd:.4f} spent of ${self.max_cost_usd:g}"
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            return f"token budget reached: {self.tokens} tokens used of {self.max_tokens}"
        return None
