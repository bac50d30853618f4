"""The litellm-backed model against a real OpenAI-compatible HTTP server on loopback."""

from __future__ import annotations

import asyncio

import pytest

from evolve.config import ModelSpec
from evolve.errors import LLMError
from evolve.llm import LiteLLMModel
from tests.llm.openai_stub import serve


def test_completion_through_litellm_records_tokens() -> None:
    with serve(lambda body: "hello from the stub") as (base, received):
        model = LiteLLMModel(ModelSpec(name="openai/stub-model", api_base=base, timeout_s=20))
        completion = asyncio.run(model.complete([{"role": "user", "content": "hi"}], temperature=0.5, seed=1, max_tokens=64))
    assert completion.text == "hello from the stub"
    assert (completion.prompt_tokens, completion.completion_tokens) == (120, 30)
    assert received[0]["path"].endswith("/chat/completions") and received[0]["body"]["messages"][0]["content"] == "hi"


def test_an_unreachable_provider_is_an_llm_error_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-planted-secret-abcdef")
    model = LiteLLMModel(ModelSpec(name="openai/stub-model", api_base="http://127.0.0.1:9/v1", timeout_s=5))
    with pytest.raises(LLMError) as info:
        asyncio.run(model.complete([{"role": "user", "content": "hi"}], temperature=0.5, seed=1, max_tokens=16))
    assert "sk-planted" not in str(info.value)
