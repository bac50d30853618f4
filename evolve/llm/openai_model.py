"""An OpenAI-compatible endpoint (vLLM, llama.cpp's server, Ollama, a proxy) through the ``openai`` client alone.

litellm wraps this same client; importing it costs about 160 MB and 2.4 s of
CPU, which a campaign on a self-hosted endpoint does not need. So a model
with an ``api_base`` and an OpenAI-compatible prefix (``openai/``,
``hosted_vllm/``) is called here directly: one ``chat.completions.create``
request per call, the client's own retries off (``ResilientModel`` retries),
failures classified exactly as the litellm transport classifies them.

It cannot price a call (litellm's price map is what knows prices), so it is
chosen only when no price is needed or the spec gives one: ``make_transport``
keeps litellm for a priced endpoint under a cost budget.
"""

from __future__ import annotations

import os
from typing import Any

from evolve.config import ModelSpec
from evolve.errors import ConfigError
from evolve.llm.base import Message, RawAnswer
from evolve.llm.litellm_model import _NO_KEY, provider_error, read_choice
from evolve.secrets import install_log_redaction

__all__ = ["OPENAI_COMPATIBLE", "OpenAITransport"]

#: Model prefixes that name an OpenAI-compatible endpoint when an ``api_base`` is given.
OPENAI_COMPATIBLE = ("openai/", "hosted_vllm/")


class OpenAITransport:
    """One ``chat.completions.create`` request per call, on one ``AsyncOpenAI`` client per event loop."""

    def __init__(self, spec: ModelSpec) -> None:
        if spec.api_base is None or not spec.name.startswith(OPENAI_COMPATIBLE):
            raise ConfigError(f"model {spec.name}: the openai transport needs an api_base and a model named openai/… or hosted_vllm/…")
        if spec.api_key_env is not None and not os.environ.get(spec.api_key_env):
            raise ConfigError(f"model {spec.name}: api_key_env names {spec.api_key_env}, which is not set in the environment")
        self.name = spec.name
        self._spec = spec
        self._model = spec.name.split("/", 1)[1]
        self._clients: dict[int, Any] = {}

    def _client(self) -> Any:
        import asyncio

        import openai

        loop = id(asyncio.get_running_loop())  # an httpx pool belongs to the loop that opened it
        if loop not in self._clients:
            install_log_redaction("openai", "httpx")
            key = os.environ[self._spec.api_key_env] if self._spec.api_key_env else _NO_KEY
            self._clients = {loop: openai.AsyncOpenAI(base_url=self._spec.api_base, api_key=key, max_retries=0)}
        return self._clients[loop]

    async def call(
        self, messages: list[Message], *, temperature: float, seed: int, max_tokens: int, timeout_s: float
    ) -> RawAnswer:
        client = self._client()
        try:
            response = await client.chat.completions.create(
                model=self._model, messages=messages, temperature=temperature, max_tokens=max_tokens, seed=seed % 2**31,
                timeout=timeout_s,
            )
        except Exception as exc:  # the provider boundary: every failure becomes a classified ProviderError
            raise provider_error(exc) from None
        text, finish, usage = read_choice(response)
        return RawAnswer(
            text=text, prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0), cost_usd=0.0, finish_reason=finish,
        )
