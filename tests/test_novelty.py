"""Same program and near-duplicate: the keys and similarities dedup and the novelty filter decide by."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from evolve.diff import apply_diff
from evolve.llm.mutator import propose_edits
from evolve.novelty import code_key, nearest, shingles, similarity
from evolve.problem import resolve_problem

PROGRAM = resolve_problem("circle_packing").initial_program


def test_formatting_comments_and_literal_spelling_do_not_make_a_new_program() -> None:
    variants = [
        PROGRAM.replace("    n = 26\n", "    n = 26  # twenty-six\n\n\n"),
        PROGRAM.replace("0.3 *", "0.30 *").replace("[0.5, 0.5]", "[ .5 ,0.5 ]"),
        PROGRAM.replace("    n = 26\n", "    # a comment line\n    n = (26)\n"),
    ]
    assert {code_key(v) for v in variants} == {code_key(PROGRAM)}


def test_a_changed_value_name_or_operator_is_a_new_program() -> None:
    for changed in (PROGRAM.replace("0.3 *", "0.31 *"), PROGRAM.replace("n = 26", "m = 26"),
                    PROGRAM.replace("1 - centers[:, 0]", "1 + centers[:, 0]")):
        assert changed != PROGRAM and code_key(changed) != code_key(PROGRAM)


def test_a_program_that_does_not_parse_still_gets_a_key_that_ignores_comments() -> None:
    broken = "def f(:\n    return 1\n"
    assert code_key(broken) == code_key(broken.replace("return 1\n", "return 1  # one\n\n"))
    assert code_key(broken) != code_key(broken.replace("1", "2"))


@given(st.text(max_size=300))
def test_any_text_has_a_key_and_shingles(text: str) -> None:
    assert len(code_key(text)) == 32
    sh = shingles(text)
    assert similarity(sh, sh) == 1.0


def test_one_mutator_edit_leaves_a_program_very_similar_and_a_rewrite_does_not() -> None:
    base = shingles(PROGRAM)
    rng = np.random.default_rng(3)
    edited = [similarity(base, shingles(apply_diff(PROGRAM, propose_edits(PROGRAM, rng)))) for _ in range(20)]
    assert min(edited) > 0.9 and max(edited) < 1.0
    rewrite = PROGRAM.replace("compute_max_radii(centers)\n    return", "np.full(n, 0.01)\n    return")
    rewrite = rewrite.replace("for i in range(17):", "for i in range(0):")
    assert similarity(base, shingles(rewrite)) < max(edited)


def test_nearest_finds_the_most_similar_program() -> None:
    a, b = PROGRAM, PROGRAM.replace("0.3 *", "0.35 *")
    far = "def construct_packing():\n    return None\n"
    found = nearest(shingles(b), [("far", shingles(far)), ("a", shingles(a))])
    assert found is not None and found.program_id == "a" and 0.9 < found.similarity < 1.0
    assert nearest(shingles(a), []) is None
