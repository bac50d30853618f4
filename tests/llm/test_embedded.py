"""The embedded SmolLM2 model: in-process, and served over HTTP by llama.cpp's own OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from evolve.campaign import Campaign
from evolve.catalog import CATALOG, DEFAULT_MODEL
from evolve.config import CampaignConfig, ModelSpec
from evolve.errors import ConfigError
from evolve.llm import CallOutcome, ProviderError, make_model
from evolve.llm.embedded import EmbeddedTransport, embedded_model_path
from evolve.problem import resolve_problem
from evolve.store import Store
from evolve.values import CampaignStatus, EvalStatus

ASK = [{"role": "user", "content": "Write a Python function that returns the sum of a list."}]


def test_the_embedded_model_answers_offline_with_real_token_counts() -> None:
    model = make_model(ModelSpec(name="smollm2", max_tokens=48))
    done = asyncio.run(model.complete(ASK, temperature=0.7, seed=3, max_tokens=48))
    assert done.text.strip() and 0 < done.completion_tokens <= 48 and done.prompt_tokens > 10
    assert done.cost_usd == 0.0 and [a.outcome for a in done.attempts] in ([CallOutcome.OK], [CallOutcome.TRUNCATED])
    again = asyncio.run(model.complete(ASK, temperature=0.7, seed=3, max_tokens=48))
    assert again.text == done.text  # seeded


LONG_ASK = [{"role": "user", "content": "Count from 1 to 3000 in words, one number per line, and do not stop early."}]


def test_generation_stops_at_its_deadline() -> None:
    transport = EmbeddedTransport("smollm2")
    transport.warm()
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        asyncio.run(transport.call(LONG_ASK, temperature=0.0, seed=1, max_tokens=4000, timeout_s=0.5))
    elapsed = time.monotonic() - started
    # the answer asked for runs to thousands of tokens (a minute or more on two cores); stopped at its deadline, the
    # call ends within a few tokens of 0.5 s: 20 s leaves room for a loaded machine and none for a run to the end
    assert info.value.outcome is CallOutcome.TIMEOUT and elapsed < 20, elapsed


def test_the_embedded_model_defaults_to_rewrites_with_a_short_cap() -> None:
    spec = ModelSpec(name="smollm2")
    assert (spec.mode, spec.max_tokens) == ("rewrite", 768)
    assert ModelSpec(name="smollm2", mode="diff", max_tokens=64).mode == "diff"
    assert ModelSpec().name == DEFAULT_MODEL  # the default when no provider is configured
    assert (ModelSpec().mode, ModelSpec().prompt_style, ModelSpec().top_p) == ("diff", "compact", CATALOG[DEFAULT_MODEL].top_p)


def test_a_missing_gguf_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no GGUF file at"):
        EmbeddedTransport(f"gguf:{tmp_path / 'none.gguf'}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server on loopback, serving the embedded GGUF file."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path("smollm2")), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", str(max(1, (os.cpu_count() or 1) // 2)),
         "--verbose", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not start: {proc.stderr.read() if proc.stderr else b''!r}") from None
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.slow
def test_a_campaign_through_litellm_against_the_embedded_model_served_over_http(llama_server: str, tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "served.db"))
    model = {"name": "openai/smollm2", "api_base": llama_server, "mode": "rewrite", "max_tokens": 384, "timeout_s": 120}
    config = CampaignConfig.model_validate({"iterations": 10, "islands": 2, "eval_concurrency": 2, "llm_concurrency": 2,
                                            "models": [model]})
    campaign = asyncio.run(Campaign.create(store, resolve_problem("circle_packing"), config, workdir=tmp_path / "work"))
    assert asyncio.run(campaign.run()) is CampaignStatus.FINISHED
    programs = store.list_programs(campaign.id)[1:]
    calls = store.llm_calls(campaign.id)
    assert len(programs) == 10 and all(p.model == "openai/smollm2" for p in programs)
    assert len(calls) >= 10 and all(c.outcome in ("ok", "truncated", "empty") for c in calls)
    assert all(c.prompt_tokens > 300 and c.completion_tokens > 0 for c in calls)  # counted by the server's tokenizer
    assert sum(p.status is not EvalStatus.DIFF_FAILED for p in programs) >= 3  # most answers become programs to evaluate
    row = store.get_campaign(campaign.id)
    assert row.prompt_tokens == sum(c.prompt_tokens for c in calls) and row.cost_usd == 0.0


def test_a_rewrite_stops_when_its_code_block_closes() -> None:
    ask = [{"role": "user", "content": "Reply with a Python code block that prints hello, then explain it at length."}]
    plain = asyncio.run(EmbeddedTransport("smollm2").call(ask, temperature=0.0, seed=1, max_tokens=400, timeout_s=60))
    stopping = asyncio.run(EmbeddedTransport("smollm2", stop_after_code=True).call(ask, temperature=0.0, seed=1, max_tokens=400,
                                                                                   timeout_s=60))
    assert "```" in plain.text and stopping.completion_tokens < plain.completion_tokens
    assert stopping.text.rstrip().endswith("```") and plain.text.startswith(stopping.text.rstrip())
