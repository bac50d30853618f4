"""The one-edit grammar: a small model held to SEARCH/REPLACE edits that apply."""

from __future__ import annotations

import asyncio

import pytest
from llama_cpp import Llama

from evolve.archive import Sample, SampleMode
from evolve.diff import Applied, apply_answer
from evolve.llm import CallOutcome, ProviderError
from evolve.llm.embedded import EmbeddedTransport, embedded_model_path, grammar_accepted
from evolve.llm.grammar import (
    FOCUS_HEADING,
    FOCUS_LINES,
    MAX_SEARCH_LINES,
    asks_for_edit,
    choose_focus,
    edit_grammar,
    focus_from_prompt,
    program_from_prompt,
)
from evolve.problem import builtin_problem_names, resolve_problem
from evolve.prompting import PromptBuilder
from evolve.values import EvalStatus, Origin, Program


def _messages(problem: str, mode: str) -> tuple[str, list[dict[str, str]]]:
    loaded = resolve_problem(problem)
    code = loaded.initial_program
    parent = Program(id="p", campaign_id="c", code=code, parent_id=None, island=0, generation=0, iteration=0,
                     origin=Origin.INITIAL, status=EvalStatus.OK, score=1.0, fitness=1.0, metrics={}, features={}, artifacts={})
    sample = Sample(parent=parent, mode=SampleMode.EXPLOIT, inspirations=[], failures=[])
    return code, PromptBuilder(loaded.config).build(sample, mode=mode, style="compact")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def vocabulary() -> Llama:
    return Llama(model_path=str(embedded_model_path("smollm2")), vocab_only=True, verbose=False)


@pytest.mark.parametrize("problem", builtin_problem_names())
def test_every_built_in_problem_gets_a_grammar_llama_cpp_accepts(problem: str, vocabulary: Llama) -> None:
    code, messages = _messages(problem, "diff")
    assert program_from_prompt(messages) is not None
    grammar = edit_grammar(program_from_prompt(messages) or "")
    assert grammar is not None and grammar == edit_grammar(code.strip())
    assert grammar_accepted(vocabulary, grammar)  # llama.cpp's own parser, with a model's vocabulary


def test_a_grammar_llama_cpp_rejects_is_caught_before_it_reaches_a_sampler(vocabulary: Llama) -> None:
    assert not grammar_accepted(vocabulary, 'root ::= "unterminated')


def test_a_search_starts_only_at_a_line_whose_text_occurs_once_even_inside_another() -> None:
    program = "# EVOLVE-BLOCK-START\n    n = 2\n    n = 20\n        return x\n    return x\n# EVOLVE-BLOCK-END\n"
    search = next(line for line in (edit_grammar(program) or "").splitlines() if line.startswith("search ::="))
    # '    n = 2' occurs inside '    n = 20', and '    return x' inside '        return x': str.find would not be unique
    assert search == f"search ::= c0x1d{MAX_SEARCH_LINES} | c0x2d{MAX_SEARCH_LINES}"


def test_only_a_prompt_asking_for_search_replace_blocks_is_constrained() -> None:
    assert asks_for_edit(_messages("circle_packing", "diff")[1])
    assert not asks_for_edit(_messages("circle_packing", "rewrite")[1])


def test_a_program_with_nothing_unique_in_its_block_gets_no_grammar() -> None:
    assert edit_grammar("x = 1\n") is None  # no markers
    assert edit_grammar("a = 1\n# EVOLVE-BLOCK-START\na = 1\n\n# EVOLVE-BLOCK-END\n") is None  # its only line repeats outside


def test_a_search_may_start_only_at_a_unique_line_and_run_a_few_lines() -> None:
    program = "x = 0\n# EVOLVE-BLOCK-START\nx = 0\ny = 1\nz = 2\n# EVOLVE-BLOCK-END\n"
    grammar = edit_grammar(program) or ""
    search = next(line for line in grammar.splitlines() if line.startswith("search ::="))
    assert search == f"search ::= c0x1d{MAX_SEARCH_LINES} | c0x2d{MAX_SEARCH_LINES}"  # 'x = 0' also occurs above the block


def test_a_small_model_held_to_the_grammar_answers_with_edits_that_apply() -> None:
    """SmolLM2-135M, which without the grammar almost never writes a SEARCH that matches, under it always does."""
    code, messages = _messages("circle_packing", "diff")
    transport = EmbeddedTransport("smollm2", stop_after_code=True, one_edit=True)
    applied = 0
    for seed in (1, 2, 3):
        answer = asyncio.run(transport.call(messages, temperature=0.8, seed=seed, max_tokens=300, timeout_s=120))
        if answer.finish_reason == "length":
            continue  # cut off inside its REPLACE: nothing to apply, which the grammar cannot prevent
        _, how = apply_answer(code, "diff", answer.text)  # raises DiffError if the SEARCH did not apply
        assert how in (Applied.EXACT, Applied.REINDENTED)
        applied += 1
    assert applied >= 1


def test_a_constrained_generation_stops_at_its_deadline_without_harming_the_process() -> None:
    """Forcing end-of-sequence under a grammar that forbids it makes llama.cpp abort the process; the stopper raises."""
    _, messages = _messages("circle_packing", "diff")
    transport = EmbeddedTransport("smollm2", stop_after_code=True, one_edit=True)
    transport.warm()
    with pytest.raises(ProviderError) as info:
        asyncio.run(transport.call(messages, temperature=0.8, seed=1, max_tokens=400, timeout_s=0.3))
    assert info.value.outcome is CallOutcome.TIMEOUT
    again = asyncio.run(transport.call(messages, temperature=0.8, seed=2, max_tokens=300, timeout_s=120))
    assert "<<<<<<< SEARCH" in again.text  # the same loaded model answers the next request, still under its grammar


def test_a_focus_is_four_lines_of_the_block_and_the_seed_spreads_it_over_the_whole_block() -> None:
    import numpy as np

    code = resolve_problem("circle_packing").initial_program
    focuses = [choose_focus(code, np.random.default_rng([0, i])) for i in range(60)]
    assert all(f is not None and 1 <= len(f) <= FOCUS_LINES and "\n".join(f) in code for f in focuses)
    firsts = {f[0] for f in focuses if f}
    assert any("centers" in line and "cos" in line for line in firsts) and any("scale" in line for line in firsts)
    assert choose_focus(code, np.random.default_rng([0, 7])) == choose_focus(code, np.random.default_rng([0, 7]))  # seeded


def test_a_focused_prompt_holds_the_search_to_its_focus() -> None:
    import numpy as np

    loaded = resolve_problem("circle_packing")
    focus = choose_focus(loaded.initial_program, np.random.default_rng(5)) or []
    _, plain = _messages("circle_packing", "diff")
    parent = Program(id="p", campaign_id="c", code=loaded.initial_program, parent_id=None, island=0, generation=0, iteration=0,
                     origin=Origin.INITIAL, status=EvalStatus.OK, score=1.0, fitness=1.0, metrics={}, features={}, artifacts={})
    messages = PromptBuilder(loaded.config).build(Sample(parent=parent, mode=SampleMode.EXPLOIT, inspirations=[], failures=[]),
                                                  mode="diff", style="compact", focus=focus)
    assert FOCUS_HEADING in messages[1]["content"] and focus_from_prompt(messages) == focus
    assert focus_from_prompt(plain) is None
    search = next(line for line in (edit_grammar(loaded.initial_program.strip(), focus) or "").splitlines()
                  if line.startswith("search ::="))
    allowed = [loaded.initial_program.strip().count(line) == 1 for line in focus]
    assert search.count("|") + 1 == sum(allowed)  # one alternative per focus line that can begin a SEARCH
