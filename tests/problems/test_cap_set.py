"""cap_set: every digit, duplicate and line is checked exactly; known caps score their size."""

from __future__ import annotations

from pathlib import Path

import pytest

from evolve.values import EvalStatus
from tests.problems.helpers import assert_rejected, evaluate, mutator_improves, replace_block

NAME = "cap_set"


def returning(body: str) -> str:
    """A program whose build_cap_set is replaced by ``body`` (``BINARY`` is {0,1}^8, a cap set of 256)."""
    code = replace_block(NAME, "def priority(v, n):\n    return 0.0")
    return code + (
        "\nBINARY = [list(v) for v in itertools.product(range(2), repeat=8)]\n"
        f"def build_cap_set(n):\n{body}\n"
    )


BAD = [
    ("nan", "    return BINARY[:-1] + [[float('nan')] * 8]", "contains NaN or inf"),
    ("inf", "    return [[float('inf')] * 8]", "contains NaN or inf"),
    ("seven coordinates", "    return [v[:7] for v in BINARY]", "must have shape (n, 8), got (256, 7)"),
    ("strings", "    return [[str(x) for x in v] for v in BINARY]", "must hold real numbers"),
    ("digit 3", "    return BINARY[:-1] + [[3] * 8]", "= 3 is above the allowed maximum 2"),
    ("negative digit", "    return BINARY[:-1] + [[-1] + [0] * 7]", "= -1 is below the allowed minimum 0"),
    ("fractional digit", "    return BINARY[:-1] + [[0.5] * 8]", "must hold whole numbers"),
    ("duplicated vector", "    return BINARY + [BINARY[5]]", "vectors 5 and 256 are the same point"),
    ("a line", "    return BINARY + [[2] * 8]", "lie on a line: they sum to 0 mod 3"),
    ("empty", "    return []", "must have shape (n, 8), got (0,)"),
    ("a dict", "    return {'size': 600}", "must be a numeric array of shape (n, 8), got dict"),
    ("score printed", "    print('size = 600')", "got NoneType"),
]


@pytest.mark.parametrize(("body", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_sets_are_refused_with_the_violation(body: str, fragment: str) -> None:
    assert_rejected(evaluate(NAME, returning(body)), fragment)


def test_huge_output_is_cut_off() -> None:
    assert_rejected(evaluate(NAME, returning("    print('x' * 5_000_000)\n    return BINARY")), "printed more than",
                    status=EvalStatus.ERROR)


@pytest.mark.parametrize(("body", "size"), [("    return BINARY", 256), ("    return [v for v in BINARY if v[0] == 0]", 128),
                                            ("    return [[2] * 8]", 1)])
def test_known_cap_sets_score_their_size(body: str, size: int) -> None:
    result = evaluate(NAME, returning(body))
    assert result.status is EvalStatus.OK and result.metrics["size"] == size


def test_the_initial_greedy_builds_a_valid_cap() -> None:
    from evolve.problem import resolve_problem

    result = evaluate(NAME, resolve_problem(NAME).initial_program)
    assert result.status is EvalStatus.OK and 256 < result.metrics["size"] < 512


@pytest.mark.slow
def test_a_short_mutator_campaign_improves_the_initial_program(tmp_path: Path) -> None:
    initial, best = mutator_improves(NAME, tmp_path, iterations=30)
    assert best > initial
