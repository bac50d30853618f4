"""ResilientModel: retries, backoff, Retry-After, timeouts, in-flight bounds, per-attempt records."""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evolve.config import ModelSpec
from evolve.llm import CallFailedError, CallOutcome, Completion, Message, ProviderError, RawAnswer, ResilientModel, RetryPolicy
from evolve.llm.litellm_model import LiteLLMTransport, import_litellm
from tests.llm.openai_server import REFUSALS, serve

HI = [{"role": "user", "content": "hi"}]
FAST = RetryPolicy(max_retries=4, base_s=0.01, max_backoff_s=0.05)


def resilient(base: str, *, timeout_s: float = 60, policy: RetryPolicy = FAST, max_in_flight: int = 8) -> ResilientModel:
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
    # the server holds a hanging request until it stops (long after this call): only the timeout can end each attempt
    import_litellm()  # its first import takes seconds, which must not come out of the first attempt's 0.5 s
    with serve(lambda body: "ok", faults={"hang": 1.0}) as (base, server):
        with pytest.raises(CallFailedError) as info:
            complete(resilient(base, timeout_s=0.5, policy=RetryPolicy(max_retries=1, base_s=0.01)))
        hanging = [entry.finished is None for entry in server.log]
    assert hanging == [True, True]  # the server never answered either request: the timeout ended both attempts
    assert [a.outcome for a in info.value.attempts] == [CallOutcome.TIMEOUT, CallOutcome.TIMEOUT]
    assert "after 2 attempts" in str(info.value) and not info.value.fatal
    assert all(0.5 <= a.latency_s < 30 for a in info.value.attempts), [a.latency_s for a in info.value.attempts]


@pytest.mark.parametrize(("fault", "outcome", "hint"), [
    ("auth", CallOutcome.AUTH, "API key"), ("payment", CallOutcome.AUTH, "API key"),
    ("forbidden", CallOutcome.AUTH, "API key"), ("not_found", CallOutcome.NOT_FOUND, "check the model string"),
], ids=["401", "402", "403", "404"])
def test_a_refused_key_or_an_unknown_model_fails_at_once_and_is_fatal(fault: str, outcome: CallOutcome, hint: str) -> None:
    """README: a refused key (401/403/402) or an unknown model (404) is not retried."""
    with serve(lambda body: "ok", faults={fault: 1.0}) as (base, server), pytest.raises(CallFailedError) as info:
        complete(resilient(base))
    assert len(server.log) == 1, f"{len(server.log)} requests for one {REFUSALS[fault][0]}"
    assert info.value.fatal and [a.outcome for a in info.value.attempts] == [outcome] and hint in str(info.value)


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


def test_real_retries_wait_longer_and_longer() -> None:
    policy = RetryPolicy(max_retries=3, base_s=0.3, max_backoff_s=30)
    with serve(lambda body: "ok", faults={"server_error": 1.0}) as (base, server), pytest.raises(CallFailedError) as info:
        complete(resilient(base, policy=policy))
    starts = [entry.started for entry in server.log]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(gaps) == 3, (gaps, info.value.attempts)
    # jitter may reverse two neighbours, never two retries apart: by then the wait has doubled twice
    assert gaps[2] > gaps[0] and sum(gaps) >= policy.base_s, gaps


_policies = st.builds(
    lambda base, doublings, spare: RetryPolicy(base_s=base, max_backoff_s=base * 2**doublings * spare),
    st.floats(0.001, 10), st.integers(2, 12), st.floats(1, 1.99),
)


def test_backoff_doubles_every_two_retries_until_the_cap_and_never_passes_it() -> None:
    """The delays one completion waits (one seeded generator per completion, as ResilientModel draws them)."""
    checked = {"examples": 0, "growth": 0, "cap": 0}

    @given(base=st.floats(0.001, 10), doublings=st.integers(2, 12), spare=st.floats(1, 1.99), retries=st.integers(3, 32),
           seed=st.integers(0, 2**32))
    def check(base: float, doublings: int, spare: float, retries: int, seed: int) -> None:
        checked["examples"] += 1
        policy = RetryPolicy(base_s=base, max_backoff_s=base * 2**doublings * spare)  # the cap: `doublings` doublings on
        rng = random.Random(seed)
        delays = [policy.backoff(retry, rng, None) for retry in range(1, retries + 1)]
        assert 0 < delays[0] <= base  # the first wait is about retry_base_s
        assert all(0 < d <= policy.max_backoff_s for d in delays)  # retry_max_s is never passed
        # exponential, with jitter that at most halves a wait: two retries on, a wait has at least doubled, or it is
        # at the cap (half fixed, half jitter)
        for r in range(len(delays) - 2):
            assert delays[r + 2] >= min(2 * delays[r], policy.max_backoff_s / 2), (r, delays)
        if any(2 * d < policy.max_backoff_s / 2 for d in delays[:-2]):
            checked["growth"] += 1
            hypothesis.event("doubling checked")
        at_cap = delays[doublings + 1:]  # retries past `doublings` doublings of the base
        if at_cap:
            assert all(d >= policy.max_backoff_s / 2 for d in at_cap), (doublings, delays)
            assert len(at_cap) == 1 or len(set(at_cap)) > 1, at_cap  # still jittered at the cap
            checked["cap"] += 1
            hypothesis.event("cap checked")

    check()
    assert checked["growth"] >= 0.9 * checked["examples"], checked
    assert checked["cap"] >= 0.3 * checked["examples"], checked


def test_backoff_never_undercuts_retry_after_and_caps_a_huge_one() -> None:
    checked = {"examples": 0, "huge": 0}
    asks = st.one_of(st.floats(0, 600), st.floats(600, 100_000, exclude_min=True))  # within and past max_retry_after_s

    @given(policy=_policies, retry=st.integers(1, 40), retry_after=asks, seed=st.integers(0, 2**32))
    def check(policy: RetryPolicy, retry: int, retry_after: float, seed: int) -> None:
        checked["examples"] += 1
        delay = policy.backoff(retry, random.Random(seed), retry_after)
        assert delay >= min(retry_after, policy.max_retry_after_s)
        assert delay >= policy.backoff(retry, random.Random(seed), None) / 2  # at least the fixed half of the plain backoff
        if retry_after > policy.max_retry_after_s:
            checked["huge"] += 1
            hypothesis.event("a Retry-After past the cap")
            # a provider asking for an hour is retried after max_retry_after_s (and a little jitter)
            assert delay <= max(policy.max_backoff_s, policy.max_retry_after_s + policy.base_s)

    check()
    assert checked["examples"] >= 50 and checked["huge"] >= 0.3 * checked["examples"], checked


def test_one_model_serves_campaigns_on_successive_event_loops() -> None:
    with serve(lambda body: "ok") as (base, server):
        model = resilient(base, max_in_flight=1)

        async def contend() -> None:
            await asyncio.gather(*(model.complete(HI, temperature=0, seed=i, max_tokens=8) for i in range(3)))

        asyncio.run(contend())
        asyncio.run(contend())  # a new loop: the in-flight bound still holds and nothing is bound to the old loop
    assert len(server.log) == 6 and server.max_active == 1
