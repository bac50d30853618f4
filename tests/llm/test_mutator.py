from __future__ import annotations

import asyncio

import numpy as np
import pytest

from evolve.diff import apply_diff, parse_diff
from evolve.errors import DiffError
from evolve.llm.mutator import MutatorTransport, propose_edits
from evolve.problem import resolve_problem


@pytest.mark.parametrize("name", ["circle_packing", "function_minimization"])
def test_mutator_edits_always_apply_strictly(name: str) -> None:
    code = resolve_problem(name).initial_program
    changed = 0
    for seed in range(200):
        child = apply_diff(code, propose_edits(code, np.random.default_rng(seed)))
        changed += child != code
    assert changed >= 190


def test_mutator_is_deterministic_per_seed_and_reads_the_prompt() -> None:
    code = resolve_problem("circle_packing").initial_program
    messages = [{"role": "user", "content": f"# Current program\n```python\n{code}```"}]
    model = MutatorTransport()
    a = asyncio.run(model.call(messages, temperature=1.0, seed=5, max_tokens=100, timeout_s=5))
    b = asyncio.run(model.call(messages, temperature=1.0, seed=5, max_tokens=100, timeout_s=5))
    assert a.text == b.text and parse_diff(a.text) and a.prompt_tokens > 0 and a.cost_usd == 0.0


def test_mutator_without_a_program_answers_without_edits() -> None:
    answer = asyncio.run(MutatorTransport().call([{"role": "user", "content": "hi"}], temperature=1, seed=1, max_tokens=10, timeout_s=5))
    with pytest.raises(DiffError):
        parse_diff(answer.text)
