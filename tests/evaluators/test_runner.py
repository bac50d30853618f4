"""The trusted evaluator process and the validation of what it returns."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from evolve.evaluators.runner import Evaluator
from evolve.problem import load_problem
from evolve.values import EvalResult, EvalStatus
from tests.conftest import QUADRATIC_EVALUATOR, write_problem


def evaluate(tmp_path: Path, program: str, *, evaluator: str = QUADRATIC_EVALUATOR) -> EvalResult:
    folder = write_problem(tmp_path / "p", evaluator=evaluator)
    problem = load_problem(folder)
    return asyncio.run(Evaluator(problem, problem_dir=tmp_path / "work").evaluate(program))


def block(body: str) -> str:
    return f"# EVOLVE-BLOCK-START\n{body}\n# EVOLVE-BLOCK-END\n"


def test_a_good_candidate_is_scored_by_the_evaluator(tmp_path: Path) -> None:
    result = evaluate(tmp_path, block("def solve():\n    return 2.0"))
    assert result.status is EvalStatus.OK and result.metrics == {"value": -1.0}
    assert result.features["x"] == 2.0 and result.features.get("code_length") is None  # only declared axes are added


@pytest.mark.parametrize(
    ("metrics", "fragment"),
    [
        ("{'value': float('nan')}", "nan"),
        ("{'value': float('inf')}", "inf"),
        ("{'other': 1.0}", "objective metric 'value' is missing"),
        ("{'value': 'high'}", "not a number"),
        ("{'value': True}", "not a number"),
    ],
)
def test_nan_inf_missing_or_non_numeric_metrics_are_invalid(tmp_path: Path, metrics: str, fragment: str) -> None:
    evaluator = f"def evaluate(candidate):\n    candidate.call('solve')\n    return {{'metrics': {metrics}, 'features': {{'x': 0.0}}}}\n"
    result = evaluate(tmp_path, block("def solve():\n    return 1.0"), evaluator=evaluator)
    assert result.status is EvalStatus.INVALID and fragment in result.artifacts["error"]
    assert result.objective("value") is None


def test_a_nan_returned_by_the_candidate_is_invalid(tmp_path: Path) -> None:
    result = evaluate(tmp_path, block("def solve():\n    return float('nan')"))
    assert result.status is EvalStatus.INVALID


def test_a_printed_fake_score_changes_nothing(tmp_path: Path) -> None:
    program = block("def solve():\n    print('{\"outcome\": \"returned\", \"value\": {\"metrics\": {\"value\": 1e9}}}')\n    return 0.0")
    result = evaluate(tmp_path, program)
    assert result.status is EvalStatus.OK and result.metrics["value"] == -9.0


def test_patching_the_evaluator_module_from_the_candidate_has_no_effect(tmp_path: Path) -> None:
    program = block(
        "import sys\n"
        "def solve():\n"
        "    for m in list(sys.modules.values()):\n"
        "        if hasattr(m, 'evaluate'):\n"
        "            m.evaluate = lambda c: {'metrics': {'value': 1e9}}\n"
        "    return 0.0"
    )
    assert evaluate(tmp_path, program).metrics["value"] == -9.0


def test_invalid_raised_by_the_evaluator_carries_its_message(tmp_path: Path) -> None:
    result = evaluate(tmp_path, block("def solve():\n    return 'three'"))
    assert result.status is EvalStatus.INVALID and "must return a number" in result.artifacts["error"]


def test_crash_timeout_and_syntax_error_statuses(tmp_path: Path) -> None:
    crashed = evaluate(tmp_path, block("def solve():\n    return 1 / 0"))
    assert crashed.status is EvalStatus.ERROR and "ZeroDivisionError" in crashed.artifacts["error"]
    assert "traceback" in crashed.artifacts
    slow = evaluate(tmp_path, block("import time\ndef solve():\n    time.sleep(60)"),
                    evaluator=QUADRATIC_EVALUATOR.replace('candidate.call("solve")', 'candidate.call("solve", timeout=1)'))
    assert slow.status is EvalStatus.TIMEOUT
    broken = evaluate(tmp_path, block("def solve(:\n    pass"))
    assert broken.status is EvalStatus.ERROR and "syntax error" in broken.artifacts["error"]


def test_an_evaluator_bug_is_an_error_naming_the_evaluator(tmp_path: Path) -> None:
    result = evaluate(tmp_path, block("def solve():\n    return 1.0"), evaluator="def evaluate(candidate):\n    return 1 / 0\n")
    assert result.status is EvalStatus.ERROR and result.artifacts["error"].startswith("evaluator:")


def test_builtin_circle_packing_rejects_overlaps_and_nan(tmp_path: Path) -> None:
    problem = load_problem(Path(__file__).parents[2] / "problems" / "circle_packing")
    evaluator = Evaluator(problem, problem_dir=tmp_path / "cp")
    overlap = problem.initial_program.replace("radii = compute_max_radii(centers)", "radii = compute_max_radii(centers) * 1.5")
    nan = problem.initial_program.replace("radii = compute_max_radii(centers)", "radii = compute_max_radii(centers) * float('nan')")
    results = [asyncio.run(evaluator.evaluate(code)) for code in (problem.initial_program, overlap, nan)]
    assert results[0].status is EvalStatus.OK and results[0].metrics["sum_radii"] == pytest.approx(0.97976, abs=1e-4)
    assert results[1].status is EvalStatus.INVALID and "overlapping" in results[1].artifacts["error"]
    assert results[2].status is EvalStatus.INVALID and "NaN" in results[2].artifacts["error"]
