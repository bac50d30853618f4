"""Language models behind one async interface, and the ensemble that picks among them.

Every model is a one-shot ``Transport`` (the built-in mutator, the embedded
llama.cpp model, or litellm) wrapped in a ``ResilientModel`` that adds the
timeout, retries, in-flight bound and per-attempt accounting, so every model
is accounted for the same way.
"""

from __future__ import annotations

import sys

import numpy as np

from evolve.config import ModelSpec
from evolve.llm.base import LLM, CallAttempt, CallFailedError, CallOutcome, Completion, Message, ProviderError, RawAnswer, Transport
from evolve.llm.embedded import EmbeddedTransport, is_embedded
from evolve.llm.litellm_model import LiteLLMTransport
from evolve.llm.mutator import MutatorTransport
from evolve.llm.openai_model import OPENAI_COMPATIBLE, OpenAITransport
from evolve.llm.plugins import ModelPlugin, plugin_for
from evolve.llm.resilient import ResilientModel, RetryPolicy

__all__ = [
    "LLM",
    "CallAttempt",
    "CallFailedError",
    "CallOutcome",
    "Completion",
    "Ensemble",
    "Message",
    "ModelPlugin",
    "ProviderError",
    "RawAnswer",
    "ResilientModel",
    "RetryPolicy",
    "Transport",
    "make_model",
    "make_transport",
]


def make_transport(spec: ModelSpec, *, priced: bool = False) -> Transport:
    """The one-shot transport a spec names.

    An OpenAI-compatible endpoint (an ``api_base`` and an ``openai/`` or
    ``hosted_vllm/`` model) is called with the ``openai`` client alone, without
    litellm's import (about 160 MB and 2.4 s of CPU), unless ``priced`` (the
    campaign has a cost budget) and the spec gives no prices: only litellm's
    price map can price those calls.

    Raises:
        ConfigError: when the model cannot be set up (missing package, key variable or file).
    """
    if (plugin := plugin_for(spec)) is not None:  # an installed package's model, by its entry point's name
        return plugin
    if spec.name == "mutator":
        return MutatorTransport()
    if is_embedded(spec.name) and spec.api_base is None:
        compact = spec.prompt_style == "compact"
        return EmbeddedTransport(spec.name, threads=spec.threads, stop_after_code=spec.mode == "rewrite" or compact, one_edit=compact,
                                 sampling={"top_p": spec.top_p, "top_k": spec.top_k, "repeat_penalty": spec.repeat_penalty},
                                 show_progress=sys.stderr.isatty())
    has_prices = spec.input_usd_per_mtok is not None and spec.output_usd_per_mtok is not None
    if spec.api_base is not None and spec.name.startswith(OPENAI_COMPATIBLE) and (has_prices or not priced):
        return OpenAITransport(spec)
    return LiteLLMTransport(spec)


def make_model(spec: ModelSpec, transport: Transport | None = None, *, default_in_flight: int = 8,
               priced: bool = False) -> ResilientModel:
    """A spec's model with its timeout, retry policy, in-flight bound and price.

    ``default_in_flight`` bounds the requests in flight when the spec sets no
    ``max_in_flight`` (a campaign passes its ``llm_concurrency``, so that one setting governs).
    """
    transport = transport or make_transport(spec, priced=priced)
    # one in-process model computes one answer at a time; queueing happens outside the timeout
    in_flight = 1 if isinstance(transport, EmbeddedTransport) else spec.max_in_flight or default_in_flight
    return ResilientModel(
        transport, timeout_s=spec.timeout_s, max_in_flight=in_flight,
        policy=RetryPolicy(max_retries=spec.max_retries, base_s=spec.retry_base_s, max_backoff_s=spec.retry_max_s),
        input_usd_per_mtok=spec.input_usd_per_mtok, output_usd_per_mtok=spec.output_usd_per_mtok,
    )


class Ensemble:
    """The campaign's models (``evolve.bandit`` chooses among them); each proposal records which one it used."""

    def __init__(self, specs: list[ModelSpec], *, default_in_flight: int = 8, priced: bool = False) -> None:
        self.specs = specs
        self.models = [make_model(s, default_in_flight=default_in_flight, priced=priced) for s in specs]
        weights = np.array([s.weight for s in specs], dtype=np.float64)
        self._p = weights / weights.sum()

    def model_for(self, spec: ModelSpec) -> LLM:
        return self.models[self.specs.index(spec)]

    def in_flight_cap(self) -> int:
        """The most calls the models take at once, all together (each model's own bound, summed)."""
        return sum(m.max_in_flight for m in self.models)

    def describe(self) -> list[str]:
        """One line per model: name, share, mode."""
        return [f"{s.name} ({100 * p:.0f}%, {s.mode})" for s, p in zip(self.specs, self._p, strict=True)]
