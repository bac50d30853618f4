"""The model interface: one async completion, with every attempt it took accounted for.

Two layers. A ``Transport`` makes exactly one request to one provider and
either returns a ``RawAnswer`` or raises ``ProviderError`` saying what kind of
failure it was. ``ResilientModel`` (in ``resilient.py``) turns a transport into
an ``LLM``: timeout, retries with backoff, a bound on calls in flight, and a
``CallAttempt`` record for each request, successful or not, so the store can
account for every token and every failure.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from evolve.errors import LLMError

__all__ = [
    "LLM",
    "CallAttempt",
    "CallFailedError",
    "CallOutcome",
    "Completion",
    "Message",
    "ProviderError",
    "RawAnswer",
    "Transport",
]

Message = dict[str, str]


class CallOutcome(enum.StrEnum):
    """What one request to a provider came to."""

    OK = "ok"
    EMPTY = "empty"  # answered, with no text
    TRUNCATED = "truncated"  # answered, cut off at max_tokens
    RATE_LIMITED = "rate_limited"  # 429
    SERVER_ERROR = "server_error"  # 5xx
    TIMEOUT = "timeout"  # no answer within the per-call timeout
    CONNECTION = "connection"  # refused, reset or dropped
    BAD_RESPONSE = "bad_response"  # a body that is not a chat completion
    REJECTED = "rejected"  # 4xx about this request (too long, bad parameter)
    AUTH = "auth"  # 401/403: the key is missing or wrong
    NOT_FOUND = "not_found"  # 404: no such model or endpoint

    @property
    def retryable(self) -> bool:
        """Transient: the same request may well succeed later."""
        return self in _RETRYABLE

    @property
    def fatal(self) -> bool:
        """No later request can succeed until the user changes something."""
        return self in (CallOutcome.AUTH, CallOutcome.NOT_FOUND)

    @property
    def answered(self) -> bool:
        """The provider returned a completion (possibly empty or cut off)."""
        return self in (CallOutcome.OK, CallOutcome.EMPTY, CallOutcome.TRUNCATED)


_RETRYABLE = frozenset({
    CallOutcome.RATE_LIMITED, CallOutcome.SERVER_ERROR, CallOutcome.TIMEOUT, CallOutcome.CONNECTION, CallOutcome.BAD_RESPONSE,
})


@dataclass(frozen=True, slots=True)
class CallAttempt:
    """One request to a provider, as the store records it."""

    model: str
    outcome: CallOutcome
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """What a transport got back from one successful request."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """A model's answer, what it cost, and every attempt it took."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    attempts: tuple[CallAttempt, ...] = field(default=())
    finish_reason: str | None = None


class ProviderError(LLMError):
    """One request failed; ``outcome`` says how, ``retry_after_s`` what the provider asked for."""

    def __init__(self, outcome: CallOutcome, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.retry_after_s = retry_after_s


class CallFailedError(LLMError):
    """A completion failed for good; ``attempts`` lists every request it made.

    ``fatal`` means the model cannot be used as configured (a bad key, an
    unknown model): the campaign stops, and can be resumed once that is fixed.
    """

    def __init__(self, message: str, attempts: tuple[CallAttempt, ...], *, fatal: bool = False) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.fatal = fatal


@runtime_checkable
class Transport(Protocol):
    """One request to one provider, no retries."""

    name: str

    async def call(
        self, messages: list[Message], *, temperature: float, seed: int, max_tokens: int, timeout_s: float
    ) -> RawAnswer:
        """One completion request.

        Raises:
            ProviderError: saying which ``CallOutcome`` the failure was.
        """
        ...


@runtime_checkable
class LLM(Protocol):
    """A language model. Implementations raise ``LLMError`` when a call fails for good."""

    name: str

    async def complete(self, messages: list[Message], *, temperature: float, seed: int, max_tokens: int) -> Completion:
        """One completion for ``messages``.

        Raises:
            CallFailedError: when the call fails after the implementation's retries,
                with every request it made.
        """
        ...
