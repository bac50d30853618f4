"""Turn a one-shot transport into a model a campaign can lean on for hours.

Per attempt: a hard timeout and a slot among the model's bounded calls in
flight. Across attempts: retries on transient failures (rate limits, server
errors, timeouts, dropped connections, garbled bodies) with exponential
backoff and jitter, waiting at least as long as a ``Retry-After`` asks. A
provider that is down for minutes therefore slows the campaign down; it gives
up on one proposal only after ``max_retries`` retries, and then as a recorded
failure. Failures no retry can fix (a bad key, an unknown model) stop at once
and say what to change.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from evolve.diff import MAX_ANSWER_CHARS
from evolve.llm.base import CallAttempt, CallFailedError, CallOutcome, Completion, Message, ProviderError, RawAnswer, Transport
from evolve.secrets import redact

__all__ = ["ResilientModel", "RetryPolicy"]

_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to keep trying one completion."""

    max_retries: int = 8
    base_s: float = 1.0  # the first backoff; doubles per retry
    max_backoff_s: float = 60.0
    max_retry_after_s: float = 600.0  # a provider asking for longer than this is retried after this long

    def backoff(self, retry: int, rng: random.Random, retry_after_s: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): half fixed, half jitter."""
        ceiling = float(min(self.max_backoff_s, self.base_s * 2.0 ** (retry - 1)))
        delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_retry_after_s) + rng.uniform(0, 0.1 * self.base_s))
        return delay


class ResilientModel:
    """An ``LLM`` over a ``Transport``: timeout, retries, in-flight bound, per-attempt records."""

    def __init__(
        self,
        transport: Transport,
        *,
        timeout_s: float,
        max_in_flight: int,
        policy: RetryPolicy | None = None,
        input_usd_per_mtok: float | None = None,
        output_usd_per_mtok: float | None = None,
    ) -> None:
        self.name = transport.name
        self.transport = transport
        self.timeout_s = timeout_s
        self.policy = policy or RetryPolicy()
        self.max_in_flight = max_in_flight
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._input_price, self._output_price = input_usd_per_mtok, output_usd_per_mtok

    def _cost(self, answer: RawAnswer) -> float:
        if self._input_price is None and self._output_price is None:
            return answer.cost_usd  # the transport's own price (litellm's price data; zero for local models)
        return (answer.prompt_tokens * (self._input_price or 0.0) + answer.completion_tokens * (self._output_price or 0.0)) / 1e6

    def _slot(self) -> asyncio.Semaphore:
        """The in-flight bound of the running loop (a semaphore belongs to the loop it first waits in)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.max_in_flight))
        return self._slots[1]

    async def _attempt(
        self, messages: list[Message], temperature: float, seed: int, max_tokens: int
    ) -> tuple[RawAnswer | ProviderError, float]:
        """One request, and its latency (time spent waiting for a slot excluded)."""
        async with self._slot():
            started = time.perf_counter()
            try:
                # the transport gets the timeout too; this is the backstop for one that ignores it
                answer: RawAnswer | ProviderError = await asyncio.wait_for(
                    self.transport.call(messages, temperature=temperature, seed=seed, max_tokens=max_tokens, timeout_s=self.timeout_s),
                    timeout=self.timeout_s + 5.0,
                )
            except TimeoutError:
                answer = ProviderError(CallOutcome.TIMEOUT, f"no answer within {self.timeout_s:g} s")
            except ProviderError as exc:
                answer = exc
            return answer, time.perf_counter() - started

    async def complete(self, messages: list[Message], *, temperature: float, seed: int, max_tokens: int) -> Completion:
        rng = random.Random(seed)
        attempts: list[CallAttempt] = []
        started = time.perf_counter()
        retry = 0
        while True:
            answer, latency = await self._attempt(messages, temperature, seed, max_tokens)
            if isinstance(answer, ProviderError):
                exc = answer
                message = redact(str(exc))[:_ERROR_CHARS]
                attempts.append(CallAttempt(self.name, exc.outcome, latency_s=latency, error=message))
                if exc.outcome.fatal:
                    raise CallFailedError(f"{self.name}: {message}", tuple(attempts), fatal=True) from None
                if not exc.outcome.retryable or retry >= self.policy.max_retries:
                    tries = f" after {len(attempts)} attempts" if len(attempts) > 1 else ""
                    raise CallFailedError(f"{self.name}: {exc.outcome.value}{tries}: {message}", tuple(attempts)) from None
                retry += 1
                await asyncio.sleep(self.policy.backoff(retry, rng, exc.retry_after_s))
                continue
            # An answer past the diff parser's cap is refused whole anyway: redact (about 90 ns a
            # character, on the event loop) only as much as it needs to see that it is too long.
            text = redact(answer.text[: MAX_ANSWER_CHARS + 1])
            if not text.strip():
                outcome = CallOutcome.EMPTY
            elif answer.finish_reason == "length":
                outcome = CallOutcome.TRUNCATED
            else:
                outcome = CallOutcome.OK
            cost = self._cost(answer)
            attempts.append(CallAttempt(
                self.name, outcome, prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                cost_usd=cost, latency_s=latency,
            ))
            return Completion(
                text=text, model=self.name,
                prompt_tokens=sum(a.prompt_tokens for a in attempts), completion_tokens=sum(a.completion_tokens for a in attempts),
                cost_usd=sum(a.cost_usd for a in attempts), latency_s=time.perf_counter() - started,
                attempts=tuple(attempts), finish_reason=answer.finish_reason,
            )
