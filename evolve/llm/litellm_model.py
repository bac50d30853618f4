"""A thin litellm-backed model: any litellm model string, optional ``api_base``.

litellm is imported lazily, after telling it to use its bundled price map, so
importing evolve or starting a campaign opens no outbound connection. Keys come
only from the environment (the provider's usual variable) and never reach the
store, prompts or error messages.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from evolve.config import ModelSpec
from evolve.errors import LLMError
from evolve.llm.base import Completion, Message

__all__ = ["LiteLLMModel", "import_litellm"]

_SECRETISH = re.compile(r"(sk-[A-Za-z0-9_-]{6,}|key[=:]\s*\S+|Bearer\s+\S+)", re.IGNORECASE)


def import_litellm() -> Any:
    """Import litellm without letting it fetch anything from the network."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


def _scrub(text: str) -> str:
    return _SECRETISH.sub("[redacted]", text)[:500]


class LiteLLMModel:
    """Completions through ``litellm.acompletion``."""

    def __init__(self, spec: ModelSpec, *, api_key: str | None = None) -> None:
        self.name = spec.name
        self._spec = spec
        self._api_key = api_key

    async def complete(self, messages: list[Message], *, temperature: float, seed: int, max_tokens: int) -> Completion:
        litellm = import_litellm()
        started = time.perf_counter()
        kwargs: dict[str, Any] = {
            "model": self._spec.name,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "timeout": self._spec.timeout_s,
            "num_retries": 2,
        }
        if self._spec.api_base:
            kwargs["api_base"] = self._spec.api_base
            kwargs["api_key"] = self._api_key or os.environ.get("OPENAI_API_KEY") or "none"
        elif self._api_key:
            kwargs["api_key"] = self._api_key
        try:
            response = await litellm.acompletion(**kwargs)
        except Exception as exc:  # the model boundary: every provider failure becomes an LLMError
            raise LLMError(f"{self._spec.name}: {type(exc).__name__}: {_scrub(str(exc))}") from None
        latency = time.perf_counter() - started
        try:
            text = response.choices[0].message.content or ""
        except (AttributeError, IndexError) as exc:
            raise LLMError(f"{self._spec.name}: the response has no message content") from exc
        usage = getattr(response, "usage", None)
        try:
            cost = float(litellm.completion_cost(completion_response=response))
        except Exception:  # unknown price (local models): zero, not a failure
            cost = 0.0
        return Completion(
            text=text,
            model=self._spec.name,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost_usd=cost,
            latency_s=latency,
        )
