"""Which transport a model gets, and what the light one costs: no litellm import for a self-hosted endpoint."""

from __future__ import annotations

import subprocess
import sys

import pytest

from evolve.config import ModelSpec
from evolve.llm import make_transport
from evolve.llm.litellm_model import LiteLLMTransport
from evolve.llm.openai_model import OpenAITransport
from tests.llm.openai_server import serve

BASE = "http://127.0.0.1:9/v1"


@pytest.mark.parametrize(
    ("spec", "priced", "kind"),
    [
        (ModelSpec(name="openai/m", api_base=BASE), False, OpenAITransport),
        (ModelSpec(name="hosted_vllm/m", api_base=BASE), False, OpenAITransport),
        # a cost budget needs prices: litellm's price map, unless the spec gives them
        (ModelSpec(name="openai/gpt-4o-mini", api_base=BASE), True, LiteLLMTransport),
        (ModelSpec(name="openai/m", api_base=BASE, input_usd_per_mtok=1.0, output_usd_per_mtok=2.0), True, OpenAITransport),
        # a hosted provider, or a prefix that is not OpenAI's protocol: litellm
        (ModelSpec(name="openai/gpt-4o-mini"), False, LiteLLMTransport),
        (ModelSpec(name="anthropic/claude-3-5-haiku-latest", api_base=BASE), False, LiteLLMTransport),
    ],
)
def test_a_self_hosted_openai_compatible_endpoint_skips_litellm(spec: ModelSpec, priced: bool, kind: type) -> None:
    assert isinstance(make_transport(spec, priced=priced), kind)


CALL = """
import asyncio, sys
from evolve.config import ModelSpec
from evolve.llm import make_model
model = make_model(ModelSpec(name="openai/stub-model", api_base=sys.argv[1]))
done = asyncio.run(model.complete([{"role": "user", "content": "hi"}], temperature=0, seed=0, max_tokens=8))
print(done.text, "litellm" in sys.modules)
"""


def test_a_call_to_a_self_hosted_endpoint_never_imports_litellm() -> None:
    with serve(lambda body: "hello") as (base, _server):
        done = subprocess.run([sys.executable, "-c", CALL, base], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hello", "False"]
