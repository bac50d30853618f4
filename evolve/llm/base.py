"""The model interface: one async completion with token and cost accounting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["LLM", "Completion", "Message"]

Message = dict[str, str]


@dataclass(frozen=True, slots=True)
class Completion:
    """A model's answer and what it cost."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float


@runtime_checkable
class LLM(Protocol):
    """A language model. Implementations raise ``LLMError`` when a call fails."""

    name: str

    async def complete(self, messages: list[Message], *, temperature: float, seed: int, max_tokens: int) -> Completion:
        """One completion for ``messages``.

        Raises:
            LLMError: when the call fails after the implementation's retries.
        """
        ...
