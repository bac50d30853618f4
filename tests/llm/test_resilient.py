"""ResilientModel: retries, backoff, Retry-After, timeouts, in-flight bounds, per-attempt records."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evolve.config import ModelSpec
from evolve.llm import CallFailedError, CallOutcome, Completion, Message, ProviderError, RawAnswer, ResilientModel, RetryPolicy
from evolve.llm.litellm_model import LiteLLMTransport
from tests.llm.openai_server import serve

HI = [{"role": "user", "content": "hi"}]
FAST = RetryPolicy(max_retries=4, base_s=0.01, max_backoff_s=0.05)


def resilient(base: str, *, timeout_s: float = 5, policy: RetryPolicy = FAST, max_in_flight: int = 8) -> ResilientModel:
    return ResilientModel(LiteLLMTransport(ModelSpec(name="openai/stub", api_base=base)), timeout_s=timeout_s,
                          max_in_flight=max_in_flight, policy=policy)


def complete(model: ResilientModel, seed: int = 1) -> Completion:
    return asyncio.run(model.complete(HI, temperature=0.5, seed=seed, max_tokens=32))


class Scripted:
    """A transport that fails as scripted, then answers."""

    name = "scripted"

    def __init__(self, *failures: ProviderError) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def call(self, messages: list[Message], *, temperature: float, seed: int, max_tokens: int, timeout_s: float) -> RawAnswer:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return RawAnswer(text="fine", prompt_tokens=10, completion_tokens=5, cost_usd=0.001)


def test_transient_failures_are_retried_and_every_attempt_is_recorded() -> None:
    transport = Scripted(ProviderError(CallOutcome.SERVER_ERROR, "500"), ProviderError(CallOutcome.CONNECTION, "reset"))
    done = asyncio.run(ResilientModel(transport, timeout_s=5, max_in_flight=1, policy=FAST).complete(HI, temperature=0, seed=0, max_tokens=8))
    assert done.text == "fine" and transport.calls == 3
    assert [a.outcome for a in done.attempts] == [CallOutcome.SERVER_ERROR, CallOutcome.CONNECTION, CallOutcome.OK]
    assert (done.prompt_tokens, done.completion_tokens, done.cost_usd) == (10, 5, 0.001)


def test_retry_after_is_respected() -> None:
    with serve(lambda body: "ok", faults={"rate_limit": 0.5}, seed=3, retry_after="1") as (base, server):
        done = complete(resilient(base))
    limited = [e for e in server.log if e.fault == "rate_limit"]
    assert limited and done.attempts[-1].outcome is CallOutcome.OK
    for entry in limited:
        following = server.log[entry.n + 1]
        assert following.started - entry.started >= 1.0  # waited as asked, not FAST's 10 ms


def test_a_hang_times_out_and_is_retried() -> None:
    with serve(lambda body: "ok", faults={"hang": 1.0}) as (base, server):
        started = time.monotonic()
        with pytest.raises(CallFailedError) as info:
            complete(resilient(base, timeout_s=0.5, policy=RetryPolicy(max_retries=1, base_s=0.01)))
    assert time.monotonic() - started < 5
    assert [a.outcome for a in info.value.attempts] == [CallOutcome.TIMEOUT, CallOutcome.TIMEOUT] and len(server.log) == 2
    assert "after 2 attempts" in str(info.value) and not info.value.fatal


def test_a_bad_key_fails_at_once_and_is_fatal() -> None:
    with serve(lambda body: "ok", faults={"auth": 1.0}) as (base, server), pytest.raises(CallFailedError) as info:
        complete(resilient(base))
    assert info.value.fatal and len(server.log) == 1 and "API key" in str(info.value)


def test_a_rejected_request_is_not_retried() -> None:
    transport = Scripted(ProviderError(CallOutcome.REJECTED, "prompt too long"))
    with pytest.raises(CallFailedError, match="rejected"):
        asyncio.run(ResilientModel(transport, timeout_s=5, max_in_flight=1, policy=FAST).complete(HI, temperature=0, seed=0, max_tokens=8))
    assert transport.calls == 1


def test_empty_and_cut_off_answers_come_back_with_their_outcome() -> None:
    with serve(lambda body: "ok", faults={"empty": 1.0}) as (base, _):
        assert complete(resilient(base)).attempts[-1].outcome is CallOutcome.EMPTY
    with serve(lambda body: "long answer", faults={"truncated": 1.0}) as (base, _):
        assert complete(resilient(base)).attempts[-1].outcome is CallOutcome.TRUNCATED


def test_calls_in_flight_are_bounded_per_model() -> None:
    def slow(body: dict[str, object]) -> str:
        time.sleep(0.2)
        return "ok"

    with serve(slow) as (base, server):
        model = resilient(base, max_in_flight=2)

        async def many() -> None:
            await asyncio.gather(*(model.complete(HI, temperature=0, seed=i, max_tokens=8) for i in range(6)))

        asyncio.run(many())
    assert len(server.log) == 6 and server.max_active == 2


def test_a_price_override_sets_the_cost() -> None:
    model = ResilientModel(Scripted(), timeout_s=5, max_in_flight=1, input_usd_per_mtok=2.0, output_usd_per_mtok=10.0)
    done = asyncio.run(model.complete(HI, temperature=0, seed=0, max_tokens=8))
    assert done.cost_usd == pytest.approx((10 * 2.0 + 5 * 10.0) / 1e6)


@given(retry=st.integers(1, 40), retry_after=st.one_of(st.none(), st.floats(0, 10_000)), seed=st.integers(0, 2**32))
def test_backoff_grows_is_capped_and_never_undercuts_retry_after(retry: int, retry_after: float | None, seed: int) -> None:
    policy = RetryPolicy()
    delay = policy.backoff(retry, random.Random(seed), retry_after)
    ceiling = min(policy.max_backoff_s, policy.base_s * 2 ** (retry - 1))
    assert ceiling / 2 <= delay
    if retry_after is None:
        assert delay <= ceiling
    else:
        assert delay >= min(retry_after, policy.max_retry_after_s)
        assert delay <= max(ceiling, policy.max_retry_after_s + policy.base_s)


def test_one_model_serves_campaigns_on_successive_event_loops() -> None:
    with serve(lambda body: "ok") as (base, server):
        model = resilient(base, max_in_flight=1)

        async def contend() -> None:
            await asyncio.gather(*(model.complete(HI, temperature=0, seed=i, max_tokens=8) for i in range(3)))

        asyncio.run(contend())
        asyncio.run(contend())  # a new loop: the in-flight bound still holds and nothing is bound to the old loop
    assert len(server.log) == 6 and server.max_active == 1
