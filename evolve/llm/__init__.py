"""Language models behind one async interface, and the ensemble that picks among them."""

from __future__ import annotations

import numpy as np

from evolve.config import ModelSpec
from evolve.llm.base import LLM, Completion, Message
from evolve.llm.litellm_model import LiteLLMModel
from evolve.llm.mutator import MutatorModel

__all__ = ["LLM", "Completion", "Ensemble", "LiteLLMModel", "Message", "MutatorModel", "make_model"]


def make_model(spec: ModelSpec) -> LLM:
    """The model a spec names: ``mutator`` or any litellm model string."""
    if spec.name == "mutator":
        return MutatorModel()
    return LiteLLMModel(spec)


class Ensemble:
    """Weighted choice among models; each proposal records which one it used."""

    def __init__(self, specs: list[ModelSpec]) -> None:
        self.specs = specs
        self.models = [make_model(s) for s in specs]
        weights = np.array([s.weight for s in specs], dtype=np.float64)
        self._p = weights / weights.sum()

    def choose(self, rng: np.random.Generator) -> tuple[ModelSpec, LLM]:
        i = int(rng.choice(len(self.specs), p=self._p)) if len(self.specs) > 1 else 0
        return self.specs[i], self.models[i]
