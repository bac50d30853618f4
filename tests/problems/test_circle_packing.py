"""circle_packing and circle_packing_32: known-bad packings are refused by name; known-good ones score exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from evolve.values import EvalStatus
from tests.problems.helpers import assert_rejected, evaluate, mutator_improves, replace_block

GRID_25 = """
import numpy as np
def construct_packing():
    xs = (np.arange(5) + 0.5) / 5
    centers = np.array([[x, y] for x in xs for y in xs] + [[0.0, 0.0]] * (N - 25))
    radii = np.array([0.1] * 25 + [0.0] * (N - 25))
    return centers, radii
"""


def packing(body: str, n: int = 26) -> str:
    return replace_block("circle_packing" if n == 26 else "circle_packing_32", f"N = {n}\n{body}")


BAD = [
    ("nan", "    c, r = grid()\n    c[3, 0] = float('nan')\n    return c, r", "centers contains NaN or inf"),
    ("inf", "    c, r = grid()\n    r[0] = float('inf')\n    return c, r", "radii contains NaN or inf"),
    ("wrong shape", "    c, r = grid()\n    return c[:20], r", "centers must have shape (26, 2), got (20, 2)"),
    ("transposed", "    c, r = grid()\n    return c.T, r", "centers must have shape (26, 2), got (2, 26)"),
    ("strings", "    c, r = grid()\n    return c, [str(x) for x in r]", "radii must hold real numbers"),
    ("bools", "    c, r = grid()\n    return c, r > 0", "radii must hold real numbers, got bools"),
    ("a dict", "    return {'centers': 1}", "construct_packing() result (centers, radii) must be a list or tuple, got dict"),
    ("ragged", "    c, r = grid()\n    return [[0.5, 0.5], [0.5]] + c.tolist()[2:], r", "ragged"),
    ("negative radius", "    c, r = grid()\n    r[25] = -0.05\n    return c, r", "radii[25] = -0.05 is below the allowed minimum 0"),
    ("out of bounds", "    c, r = grid()\n    c[0] = [0.05, 0.5]\n    return c, r", "circle(s) [0] extend outside the unit square"),
    ("overlap", "    c, r = grid()\n    r[0] = 0.15\n    return c, r", "overlapping pair(s), e.g. circles [(0, 1)"),
    ("duplicated circle", "    c, r = grid()\n    c[25], r[25] = c[0], r[0]\n    return c, r", "overlapping pair(s), e.g. circles [(0, 25)]"),
    ("one huge circle", "    c, r = grid()\n    return np.full((26, 2), 0.5), np.full(26, 0.5)", "overlapping pair(s)"),
    ("score printed", "    print('sum_radii = 4.0')\n    return None", "got NoneType"),
]


def grid_helpers() -> str:
    return GRID_25.replace("def construct_packing", "def grid") + "def construct_packing():\n"


@pytest.mark.parametrize(("body", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_packings_are_refused_with_the_violation(body: str, fragment: str) -> None:
    assert_rejected(evaluate("circle_packing", packing(grid_helpers() + body)), fragment)


def test_huge_outputs_are_cut_off_not_scored() -> None:
    printed = evaluate("circle_packing", packing("def construct_packing():\n    print('x' * 10_000_000)"))
    assert_rejected(printed, "printed more than", status=EvalStatus.ERROR)
    returned = evaluate("circle_packing", packing("import numpy as np\ndef construct_packing():\n    return np.zeros((26, 2)), np.zeros(20_000_000)"))
    assert returned.status in (EvalStatus.ERROR, EvalStatus.INVALID) and returned.objective("sum_radii") is None


@pytest.mark.parametrize("n", [26, 32])
def test_a_grid_of_25_circles_scores_exactly_2_5(n: int) -> None:
    result = evaluate("circle_packing" if n == 26 else "circle_packing_32", packing(GRID_25, n))
    assert result.status is EvalStatus.OK, result.artifacts
    assert result.metrics["sum_radii"] == pytest.approx(2.5, abs=1e-12) and result.metrics["min_radius"] == 0.0


def test_touching_circles_within_the_tolerance_are_accepted_and_beyond_it_refused() -> None:
    two = """
import numpy as np
def construct_packing():
    c = np.array([[0.25, 0.5], [0.75, 0.5]] + [[0.0, 0.0]] * 24)
    r = np.array([0.25 + EPS, 0.25] + [0.0] * 24)
    return c, r
"""
    assert evaluate("circle_packing", packing("EPS = 0.0\n" + two)).metrics["sum_radii"] == pytest.approx(0.5, abs=1e-15)
    assert_rejected(evaluate("circle_packing", packing("EPS = 1e-6\n" + two)), "extend outside the unit square")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["circle_packing", "circle_packing_32"])
def test_a_short_mutator_campaign_improves_the_initial_program(name: str, tmp_path: Path) -> None:
    initial, best = mutator_improves(name, tmp_path, iterations=30)
    assert best > initial
