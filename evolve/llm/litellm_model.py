"""Any litellm model string (``openai/...``, ``anthropic/...``, ``ollama/...``, ``hosted_vllm/...``) as a transport.

litellm is imported lazily, after telling it to use its bundled price map, so
importing evolve or starting a campaign opens no outbound connection. One
transport call is one HTTP request: litellm's and the openai SDK's own retries
are switched off, because ``ResilientModel`` retries with the accounting and
backoff a long campaign needs.

Keys come only from the environment. With no ``api_base`` litellm reads the
provider's usual variable (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, …). With
an ``api_base`` only the variable named by ``api_key_env`` is sent, so a key
meant for one provider never travels to another host by accident.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from evolve.config import ModelSpec
from evolve.errors import ConfigError
from evolve.llm.base import CallOutcome, Message, ProviderError, RawAnswer
from evolve.secrets import install_log_redaction, redact

__all__ = ["LiteLLMTransport", "import_litellm", "provider_error", "read_choice", "retry_after_seconds"]

_NO_KEY = "not-needed"  # OpenAI-compatible local servers want some key; this one is no secret


def import_litellm() -> Any:
    """Import litellm without letting it fetch anything from the network."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.drop_params = True  # a provider that lacks `seed` gets the call without it, not a 400
    loggers = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "openai")
    install_log_redaction(*loggers)
    for name in loggers[:3]:  # its warnings (logging-worker chatter) are not the user's business; errors are
        logging.getLogger(name).setLevel(logging.ERROR)
    return litellm


def retry_after_seconds(headers: Any) -> float | None:
    """The wait a response asks for, from ``retry-after-ms`` or ``retry-after`` (seconds only)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None  # an HTTP date: the exponential backoff applies instead


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 20:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _from_causes(exc: BaseException) -> CallOutcome | None:
    """litellm reports a garbled body or a dropped connection as a 500; the cause chain says which it was."""
    import httpx
    import openai

    for cause in _causes(exc):
        if isinstance(cause, json.JSONDecodeError):
            return CallOutcome.BAD_RESPONSE
        if isinstance(cause, openai.APITimeoutError | httpx.TimeoutException | TimeoutError):
            return CallOutcome.TIMEOUT
        if isinstance(cause, openai.APIConnectionError | httpx.TransportError | ConnectionError):
            return CallOutcome.CONNECTION
    return None


def _classify(exc: Exception) -> tuple[CallOutcome, float | None]:
    """The outcome of a failed request: the cause chain first (timeouts, resets, garbled bodies), then the HTTP status."""
    response = getattr(exc, "response", None)
    retry_after = retry_after_seconds(getattr(response, "headers", None)) or retry_after_seconds(
        getattr(exc, "litellm_response_headers", None)
    )
    if (cause := _from_causes(exc)) is not None:
        return cause, retry_after
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        return CallOutcome.BAD_RESPONSE, retry_after
    if status == 429:
        return CallOutcome.RATE_LIMITED, retry_after
    if status == 408:
        return CallOutcome.TIMEOUT, retry_after
    if status >= 500:
        return CallOutcome.SERVER_ERROR, retry_after
    if status in (401, 402, 403):  # a refused key, or out of credit
        return CallOutcome.AUTH, None
    if status == 404:
        return CallOutcome.NOT_FOUND, None
    if 400 <= status < 500:
        return CallOutcome.REJECTED, None
    return CallOutcome.BAD_RESPONSE, retry_after


_HINTS = {
    CallOutcome.AUTH: "the provider refused the credentials: set the provider's API key variable (or api_key_env for an api_base) and resume",
    CallOutcome.NOT_FOUND: "no such model or endpoint: check the model string and api_base, then resume",
}


def provider_error(exc: Exception) -> ProviderError:
    """A failed request as a classified ``ProviderError`` with a hint and a redacted detail."""
    outcome, retry_after = _classify(exc)
    hint = _HINTS.get(outcome, "")
    detail = redact(f"{type(exc).__name__}: {exc}")[:400]
    return ProviderError(outcome, f"{hint}; {detail}" if hint else detail, retry_after_s=retry_after)


def read_choice(response: Any) -> tuple[str, str | None, Any]:
    """The text, finish reason and usage of a chat completion (an OpenAI-shaped response).

    Raises:
        ProviderError: BAD_RESPONSE when it has no ``choices[0].message``.
    """
    try:
        choice = response.choices[0]
        return choice.message.content or "", getattr(choice, "finish_reason", None), getattr(response, "usage", None)
    except (AttributeError, IndexError, TypeError):
        raise ProviderError(CallOutcome.BAD_RESPONSE, "the response has no choices[0].message") from None


class LiteLLMTransport:
    """One ``litellm.acompletion`` request per call."""

    def __init__(self, spec: ModelSpec) -> None:
        self.name = spec.name
        self._spec = spec
        if spec.api_key_env is not None and not os.environ.get(spec.api_key_env):
            raise ConfigError(f"model {spec.name}: api_key_env names {spec.api_key_env}, which is not set in the environment")

    def _key(self) -> str | None:
        if self._spec.api_key_env is not None:
            return os.environ[self._spec.api_key_env]
        return _NO_KEY if self._spec.api_base else None

    async def call(
        self, messages: list[Message], *, temperature: float, seed: int, max_tokens: int, timeout_s: float
    ) -> RawAnswer:
        litellm = import_litellm()
        kwargs: dict[str, Any] = {
            "model": self._spec.name, "messages": messages, "temperature": temperature, "max_tokens": max_tokens,
            "seed": seed % 2**31, "timeout": timeout_s, "num_retries": 0, "max_retries": 0,
        }
        if self._spec.api_base:
            kwargs["api_base"] = self._spec.api_base
        key = self._key()
        if key is not None:
            kwargs["api_key"] = key
        try:
            response = await litellm.acompletion(**kwargs)
        except Exception as exc:  # the provider boundary: every failure becomes a classified ProviderError
            raise provider_error(exc) from None
        text, finish, usage = read_choice(response)
        try:
            cost = float(litellm.completion_cost(completion_response=response))
        except Exception:  # no price known (local and self-hosted models): zero, not a failure
            cost = 0.0
        return RawAnswer(
            text=text, prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0), cost_usd=cost, finish_reason=finish,
        )
