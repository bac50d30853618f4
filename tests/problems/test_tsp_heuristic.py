"""tsp_heuristic: tours are checked city by city, measured by the evaluator, and cut early by the cascade."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolve.problem import resolve_problem
from evolve.values import EvalStatus
from tests.problems.helpers import assert_rejected, evaluate, mutator_improves, replace_block

NAME = "tsp_heuristic"


def solving(body: str) -> str:
    return replace_block(NAME, f"def solve(points):\n    n = len(points)\n{body}")


BAD = [
    ("nan", "    return [float('nan')] * n", "tour contains NaN or inf"),
    ("inf", "    return list(range(n - 1)) + [float('inf')]", "tour contains NaN or inf"),
    ("too short", "    return list(range(n - 1))", "tour must have shape (20,), got (19,)"),
    ("strings", "    return [str(i) for i in range(n)]", "must hold real numbers"),
    ("fractional", "    return [i + 0.5 for i in range(n)]", "must hold whole numbers"),
    ("index out of range", "    return list(range(1, n + 1))", "= 20 is above the allowed maximum 19"),
    ("negative index", "    return [-1] + list(range(1, n))", "= -1 is below the allowed minimum 0"),
    ("duplicated city", "    return [0] + list(range(n - 1))", "city 0 appears 2 times and city 19 never"),
    ("coordinates instead of indices", "    return points", "tour must have shape (20,), got (20, 2)"),
    ("score printed", "    print('length_ratio = 0.5')", "tour must be a numeric array of shape (20,), got NoneType"),
]


@pytest.mark.parametrize(("body", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_tours_are_refused_with_the_violation_at_the_first_stage(body: str, fragment: str) -> None:
    result = evaluate(NAME, solving(body))
    assert_rejected(result, fragment)
    assert result.stage == "small"


def test_huge_output_is_cut_off() -> None:
    assert_rejected(evaluate(NAME, solving("    print('x' * 5_000_000)\n    return list(range(n))")), "printed more than",
                    status=EvalStatus.ERROR)


def test_a_poor_heuristic_stops_at_the_quick_stage() -> None:
    result = evaluate(NAME, solving("    return list(range(n))"))  # visiting points in generation order
    assert result.status is EvalStatus.BELOW_THRESHOLD and result.stage == "small"
    assert "small_ratio" in result.metrics and "length_ratio" not in result.metrics
    assert "is above the threshold (at most 1.6)" in result.artifacts["error"]


def test_the_reference_tours_score_exactly_one_however_rotated_or_reversed() -> None:
    tours = json.loads((Path(resolve_problem(NAME).source) / "reference_tours.json").read_text())
    body = (
        f"    tours = {tours!r}\n"
        "    import numpy as np\n"
        "    for key, tour in tours.items():\n"
        "        size, seed = map(int, key.split(':'))\n"
        "        if size == n and np.allclose(np.random.default_rng([4243, size, seed]).random((size, 2)), points):\n"
        "            return tour[3:] + tour[:3] if size == 20 else tour[::-1]\n"
        "    raise ValueError('unknown instance')"
    )
    result = evaluate(NAME, solving(body))
    assert result.status is EvalStatus.OK and result.stage == "full", result.artifacts
    assert result.metrics["small_ratio"] == pytest.approx(1.0, abs=1e-12)
    assert result.metrics["length_ratio"] == pytest.approx(1.0, abs=1e-12)
    held = evaluate(NAME, solving(body), held_out=True)
    assert held.status is EvalStatus.OK and held.metrics["length_ratio"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.slow
def test_a_short_mutator_campaign_improves_the_initial_program(tmp_path: Path) -> None:
    initial, best = mutator_improves(NAME, tmp_path, iterations=30)
    assert best < initial
