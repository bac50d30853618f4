"""autocorrelation: the ratio is exact for step functions; bad height lists are refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evolve.values import EvalStatus
from tests.problems.helpers import assert_rejected, evaluate, mutator_improves, replace_block

NAME = "autocorrelation"


def returning(body: str) -> str:
    return replace_block(NAME, f"def construct_function():\n{body}")


BAD = [
    ("nan", "    return [1.0, float('nan'), 1.0]", "contains NaN or inf"),
    ("inf", "    return [1.0, float('inf')]", "contains NaN or inf"),
    ("negative height", "    return [1.0, -0.5, 1.0]", "heights)[1] = -0.5 is below the allowed minimum 0"),
    ("all zero", "    return [0.0] * 10", "every height is 0"),
    ("empty", "    return []", "between 1 and 10000 heights, got 0"),
    ("too many pieces", "    return [1.0] * 10001", "between 1 and 10000 heights, got 10001"),
    ("2-D", "    return [[1.0, 2.0]]", "must have shape (n,), got (1, 2)"),
    ("strings", "    return ['1', '2']", "must hold real numbers"),
    ("bools", "    return [True, False]", "got bools"),
    ("a number", "    return 1.5", "got float"),
    ("score printed", "    print('upper_bound = 1.2')", "got NoneType"),
]


@pytest.mark.parametrize(("body", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_functions_are_refused_with_the_violation(body: str, fragment: str) -> None:
    assert_rejected(evaluate(NAME, returning(body)), fragment)


def test_huge_output_is_cut_off() -> None:
    assert_rejected(evaluate(NAME, returning("    print('x' * 5_000_000)\n    return [1.0]")), "printed more than",
                    status=EvalStatus.ERROR)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    return [1.0]", 2.0),  # the indicator of [-1/4, 1/4]: (f*f)(0) = 1/2, (∫f)^2 = 1/4
        ("    return [3.0] * 7", 2.0),  # scale and refinement do not matter
        ("    return [1.0, 0.0]", 4.0),  # the indicator of [-1/4, 0]: peak 1/4 over (1/4)^2
        ("    return [1.0, 1.0, 0.0, 1.0]", 2 * 4 * 2 / 9),  # h*h = 1 2 1 2 2 0 1: max 2, sum 3, n=4
        ("    return [1e300, 1e300]", 2.0),  # no overflow to inf or nan
    ],
)
def test_known_step_functions_score_exactly(body: str, expected: float) -> None:
    result = evaluate(NAME, returning(body))
    assert result.status is EvalStatus.OK, result.artifacts
    assert result.metrics["upper_bound"] == pytest.approx(expected, rel=1e-12)


def test_the_ratio_matches_a_fine_numerical_autoconvolution() -> None:
    heights = [1.0, 0.3, 2.0, 0.0, 1.2]
    fine = np.repeat(heights, 2000)  # the same step function on 10,000 points
    dx = 0.5 / len(fine)
    numeric = np.convolve(fine, fine).max() * dx / (fine.sum() * dx) ** 2
    exact = evaluate(NAME, returning(f"    return {heights}")).metrics["upper_bound"]
    assert exact == pytest.approx(numeric, rel=1e-3)


@pytest.mark.slow
def test_a_short_mutator_campaign_improves_the_initial_program(tmp_path: Path) -> None:
    initial, best = mutator_improves(NAME, tmp_path, iterations=30)
    assert best < initial
