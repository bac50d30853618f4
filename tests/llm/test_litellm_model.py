"""The litellm transport, and the plain openai one, against a real OpenAI-compatible HTTP server on loopback.

Both transports must behave the same at the provider boundary: the tests that
take the ``transport`` fixture run on each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from evolve.config import ModelSpec
from evolve.errors import ConfigError
from evolve.llm import CallOutcome, ProviderError, RawAnswer
from evolve.llm.litellm_model import LiteLLMTransport, retry_after_seconds
from evolve.llm.openai_model import OpenAITransport
from tests.llm.openai_server import serve

HI = [{"role": "user", "content": "hi"}]
TRANSPORTS: dict[str, type[LiteLLMTransport] | type[OpenAITransport]] = {"litellm": LiteLLMTransport, "openai": OpenAITransport}
_chosen = ["litellm"]


@pytest.fixture(params=list(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with each transport (``call`` uses the chosen one)."""
    _chosen[0] = request.param
    try:
        yield request.param
    finally:
        _chosen[0] = "litellm"


def call(spec: ModelSpec, timeout_s: float = 10) -> RawAnswer:
    model = TRANSPORTS[_chosen[0]](spec)
    return asyncio.run(model.call(HI, temperature=0.5, seed=1, max_tokens=64, timeout_s=timeout_s))


def test_a_completion_carries_text_tokens_and_finish_reason(transport: str) -> None:
    with serve(lambda body: "hello from the server") as (base, server):
        answer = call(ModelSpec(name="openai/stub-model", api_base=base))
    assert (answer.text, answer.prompt_tokens, answer.completion_tokens, answer.finish_reason) == ("hello from the server", 120, 30, "stop")
    assert answer.cost_usd == 0.0  # a self-hosted model has no price
    request = server.log[0]
    assert request.path.endswith("/chat/completions") and request.body["messages"] == HI and request.body["max_tokens"] == 64


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        ("rate_limit", CallOutcome.RATE_LIMITED),
        ("server_error", CallOutcome.SERVER_ERROR),
        ("hang", CallOutcome.TIMEOUT),
        ("invalid_json", CallOutcome.BAD_RESPONSE),
        ("drop", CallOutcome.CONNECTION),
        ("auth", CallOutcome.AUTH),
    ],
)
def test_each_failure_is_classified_from_one_request(transport: str, fault: str, outcome: CallOutcome) -> None:
    with serve(lambda body: "x", faults={fault: 1.0}) as (base, server), pytest.raises(ProviderError) as info:
        call(ModelSpec(name="openai/stub-model", api_base=base), timeout_s=1.5)
    assert info.value.outcome is outcome
    assert len(server.log) == 1  # litellm's and the SDK's own retries are off: retrying is ResilientModel's job
    if fault == "rate_limit":
        assert info.value.retry_after_s == pytest.approx(1.0)


def test_an_unreachable_provider_is_a_connection_failure(transport: str) -> None:
    with pytest.raises(ProviderError) as info:
        call(ModelSpec(name="openai/stub-model", api_base="http://127.0.0.1:9/v1"), timeout_s=5)
    assert info.value.outcome is CallOutcome.CONNECTION and info.value.outcome.retryable


def test_an_empty_or_cut_off_answer_is_an_answer_not_an_error(transport: str) -> None:
    with serve(lambda body: "a long answer", faults={"empty": 1.0}) as (base, _):
        assert call(ModelSpec(name="openai/stub-model", api_base=base)).text == ""
    with serve(lambda body: "a long answer", faults={"truncated": 1.0}) as (base, _):
        cut = call(ModelSpec(name="openai/stub-model", api_base=base))
    assert cut.text == "a long" and cut.finish_reason == "length"


def test_a_provider_key_never_travels_to_an_api_base_unless_named(transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-planted-openai-key-0123456789")
    monkeypatch.setenv("MY_SERVER_KEY", "local-server-key-42")
    with serve(lambda body: "ok") as (base, server):
        call(ModelSpec(name="openai/stub-model", api_base=base))
        call(ModelSpec(name="openai/stub-model", api_base=base, api_key_env="MY_SERVER_KEY"))
    assert [r.auth for r in server.log] == ["Bearer not-needed", "Bearer local-server-key-42"]


@pytest.mark.parametrize("kind", list(TRANSPORTS))
def test_a_named_key_variable_must_exist(kind: str) -> None:
    with pytest.raises(ConfigError, match="EVOLVE_TEST_UNSET_KEY, which is not set"):
        TRANSPORTS[kind](ModelSpec(name="openai/m", api_base="http://127.0.0.1:9/v1", api_key_env="EVOLVE_TEST_UNSET_KEY"))


def test_cost_comes_from_litellms_bundled_price_data() -> None:
    with serve(lambda body: "ok", usage=(1_000_000, 1_000_000), response_model="gpt-4o-mini") as (base, _):
        answer = call(ModelSpec(name="openai/gpt-4o-mini", api_base=base))
    # gpt-4o-mini: $0.15 per million input tokens, $0.60 per million output tokens
    assert answer.cost_usd == pytest.approx(0.75, rel=0.01)


def test_an_echoed_key_is_redacted_from_the_error(transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVER_KEY", "planted-secret-value-1234")
    with serve(lambda body: "x", faults={"server_error": 1.0}, echo_auth=True) as (base, server), pytest.raises(ProviderError) as info:
        call(ModelSpec(name="openai/stub-model", api_base=base, api_key_env="MY_SERVER_KEY"))
    assert server.log[0].auth == "Bearer planted-secret-value-1234"
    assert "planted-secret" not in str(info.value) and "[redacted]" in str(info.value)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"retry-after": "3"}, 3.0), ({"retry-after-ms": "250"}, 0.25), ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
     ({}, None), (None, None)],
)
def test_retry_after_reads_seconds_and_milliseconds(headers: dict[str, str] | None, seconds: float | None) -> None:
    assert retry_after_seconds(headers) == seconds
