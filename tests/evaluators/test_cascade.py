"""Evaluation cascades: stages in order, thresholds, per-stage limits, every stage's artifacts kept."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from evolve.errors import ProblemError
from evolve.evaluators.runner import Evaluator
from evolve.evaluators.worker import load_evaluator, run_cascade
from evolve.problem import load_problem
from evolve.values import EvalResult, EvalStatus
from tests.conftest import write_problem

CASCADE_YAML = """\
name: cascade
description: Return a number close to 3.
objective: {metric: value, direction: maximize}
stages:
  - name: quick
    function: evaluate_quick
    threshold: {metric: rough, at_least: -10}
    limits: {timeout_s: 3}
  - name: full
    function: evaluate_full
    limits: {timeout_s: 300}
held_out:
  function: evaluate_held_out
  name: held_out
"""

CASCADE_EVALUATOR = """\
from evolve.evaluators import Invalid


def evaluate_quick(candidate):
    x = candidate.call("solve", 1)
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        raise Invalid(f"solve() must return a number, got {type(x).__name__}")
    return {"metrics": {"rough": -abs(x - 3.0)}, "artifacts": {"note": f"quick saw {x}"}}


def evaluate_full(candidate):
    x = candidate.call("solve", 100)
    return {"metrics": {"value": -(x - 3.0) ** 2}, "artifacts": {"note": f"full saw {x}"}}


def evaluate_held_out(candidate):
    x = candidate.call("solve", 7)
    return {"metrics": {"value": -(x - 2.0) ** 2}}
"""


def program(body: str) -> str:
    return f"import time\n# EVOLVE-BLOCK-START\ndef solve(effort):\n{body}\n# EVOLVE-BLOCK-END\n"


def evaluate(tmp_path: Path, code: str, *, held_out: bool = False) -> EvalResult:
    folder = write_problem(tmp_path / "p", yaml=CASCADE_YAML, program=program("    return 2.0"), evaluator=CASCADE_EVALUATOR)
    evaluator = Evaluator(load_problem(folder), problem_dir=tmp_path / "work", sandbox="process")
    return asyncio.run(evaluator.evaluate(code, held_out=held_out))


def test_a_candidate_passing_every_stage_is_scored_by_the_last_with_all_artifacts(tmp_path: Path) -> None:
    result = evaluate(tmp_path, program("    return 2.5"))
    assert result.status is EvalStatus.OK and result.stage == "full"
    assert result.metrics == {"rough": -0.5, "value": -0.25}
    assert result.artifacts["quick.note"] == "quick saw 2.5" and result.artifacts["full.note"] == "full saw 2.5"


def test_a_candidate_below_a_threshold_stops_there_and_says_why(tmp_path: Path) -> None:
    result = evaluate(tmp_path, program("    return 30.0"))
    assert result.status is EvalStatus.BELOW_THRESHOLD and result.stage == "quick"
    assert "rough = -27 is below the threshold (at least -10)" in result.artifacts["error"]
    assert "value" not in result.metrics and result.metrics["rough"] == -27.0
    assert "full.note" not in result.artifacts  # the expensive stage never ran


def test_a_failure_in_a_stage_names_the_stage(tmp_path: Path) -> None:
    result = evaluate(tmp_path, program("    return 'three' if effort == 1 else 3.0"))
    assert result.status is EvalStatus.INVALID and result.stage == "quick"
    assert result.artifacts["error"].startswith("stage quick: solve() must return a number")
    crashed = evaluate(tmp_path, program("    return 1.0 / (effort - 100)"))
    assert crashed.status is EvalStatus.ERROR and crashed.stage == "full"
    assert "ZeroDivisionError" in crashed.artifacts["error"] and crashed.metrics["rough"] == pytest.approx(-3.0 - 1 / 99)


def test_each_stage_has_its_own_time_limit(tmp_path: Path) -> None:
    started = time.monotonic()
    result = evaluate(tmp_path, program("    time.sleep(600 if effort == 1 else 0)\n    return 3.0"))
    assert result.status is EvalStatus.TIMEOUT and result.stage == "quick"
    assert "ran past its 3.0 s limit" in result.artifacts["error"]
    # killed at the quick stage's 3 s: the full stage's 300 s, their sum or the candidate's 600 s would all take longer
    assert time.monotonic() - started < 120
    slow_full = evaluate(tmp_path, program("    time.sleep(5 if effort == 100 else 0)\n    return 3.0"))
    assert slow_full.status is EvalStatus.OK  # 5 s is past the quick limit but within the full stage's


def test_held_out_scores_with_its_own_function(tmp_path: Path) -> None:
    result = evaluate(tmp_path, program("    return 2.5"), held_out=True)
    assert result.status is EvalStatus.OK and result.stage == "held_out" and result.metrics == {"value": -0.25}


def test_a_stage_function_missing_from_the_evaluator_is_a_problem_error(tmp_path: Path) -> None:
    folder = write_problem(tmp_path / "p", yaml=CASCADE_YAML, evaluator=CASCADE_EVALUATOR.replace("def evaluate_full", "def other"))
    with pytest.raises(ProblemError, match=r"evaluate_full.*stage 'full'"):
        load_problem(folder)


def test_held_out_on_a_problem_without_one_is_an_error(tmp_path: Path) -> None:
    folder = write_problem(tmp_path / "p")
    evaluator = Evaluator(load_problem(folder), problem_dir=tmp_path / "work", sandbox="process")
    with pytest.raises(ProblemError, match="no held-out"):
        asyncio.run(evaluator.evaluate("x = 1\n", held_out=True))


class _BrokenBackend:
    """A backend with a bug: its run raises what the Sandbox contract says it never raises (only SandboxError)."""

    name = "broken"

    async def run(self, spec: object) -> object:
        raise OSError("the engine's socket is gone")

    async def session(self, spec: object) -> object:
        raise OSError("the engine's socket is gone")


@pytest.mark.parametrize("style", ["call", "session"])
def test_a_backend_failing_outside_its_contract_is_the_sandboxes_fault_even_if_the_evaluator_swallows_it(
        tmp_path: Path, style: str) -> None:
    swallowing = (
        "def evaluate_quick(candidate):\n"
        "    try:\n"
        + ("        candidate.call('solve', 1)\n" if style == "call" else
           "        with candidate.session('solve') as s:\n            s.call(1)\n")
        + "    except Exception:\n        pass\n"
        "    return {'metrics': {'value': 0.0, 'rough': 0.0}}\n"
    )
    folder = write_problem(tmp_path / "p", yaml=CASCADE_YAML, program=program("    return 2.0"), evaluator=swallowing)
    request = {"code": program("    return 3.0"), "evaluator": {"memory_bytes": 1 << 30, "cpu_s": 60},
               "stages": [{"name": "quick", "function": "evaluate_quick", "timeout_s": 5, "limits": {}}]}
    answer = run_cascade(request, _BrokenBackend(), load_evaluator(folder))  # type: ignore[arg-type]
    assert answer == {"outcome": "sandbox_error",
                      "message": "the sandbox failed unexpectedly (OSError: the engine's socket is gone)"}
