"""The trusted evaluator process and the validation of what it returns."""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evolve.errors import ProblemError
from evolve.evaluators.runner import Evaluator, EvaluatorBounds, evaluator_bounds
from evolve.problem import MAX_PROGRAM_BYTES, Limits, Stage, load_problem
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
    assert "program_traceback" in crashed.artifacts  # the candidate's own, labelled as such
    slow = evaluate(tmp_path, block("import time\ndef solve():\n    time.sleep(60)"),
                    evaluator=QUADRATIC_EVALUATOR.replace('candidate.call("solve")', 'candidate.call("solve", timeout=1)'))
    assert slow.status is EvalStatus.TIMEOUT
    broken = evaluate(tmp_path, block("def solve(:\n    pass"))
    assert broken.status is EvalStatus.ERROR and "syntax error" in broken.artifacts["error"]


def test_an_evaluator_bug_is_an_error_naming_the_evaluator(tmp_path: Path) -> None:
    result = evaluate(tmp_path, block("def solve():\n    return 1.0"), evaluator="def evaluate(candidate):\n    return 1 / 0\n")
    assert result.status is EvalStatus.ERROR and result.artifacts["error"].startswith("evaluator:")


DATACLASS_EVALUATOR = """\
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    x: float


def evaluate(candidate):
    point = Point(candidate.call("solve"))
    return {"metrics": {"value": -(point.x - 3.0) ** 2}, "features": {"x": point.x}}
"""


def test_an_evaluator_may_define_dataclasses(tmp_path: Path) -> None:
    # dataclasses look their module up in sys.modules: the worker registers evaluator.py like an import
    result = evaluate(tmp_path, block("def solve():\n    return 2.0"), evaluator=DATACLASS_EVALUATOR)
    assert result.status is EvalStatus.OK and result.metrics == {"value": -1.0}, result.artifacts


def test_builtin_circle_packing_rejects_overlaps_and_nan(tmp_path: Path) -> None:
    problem = load_problem(Path(__file__).parents[2] / "problems" / "circle_packing")
    evaluator = Evaluator(problem, problem_dir=tmp_path / "cp")
    overlap = problem.initial_program.replace("radii = compute_max_radii(centers)", "radii = compute_max_radii(centers) * 1.5")
    nan = problem.initial_program.replace("radii = compute_max_radii(centers)", "radii = compute_max_radii(centers) * float('nan')")
    results = [asyncio.run(evaluator.evaluate(code)) for code in (problem.initial_program, overlap, nan)]
    assert results[0].status is EvalStatus.OK and results[0].metrics["sum_radii"] == pytest.approx(0.97976, abs=1e-4)
    assert results[1].status is EvalStatus.INVALID and "overlapping" in results[1].artifacts["error"]
    assert results[2].status is EvalStatus.INVALID and "NaN" in results[2].artifacts["error"]


# ------------------------------------------------ bad sources are data (issue 16)

@pytest.mark.parametrize(("body", "fragment"), [
    # deep, in short lines (one long line is refused for its length first: see test_diff)
    ("x = (" + "1+\n" * 3000 + "1)", "nested too deeply to compile (RecursionError)"),
    ("x = (" + "-\n" * 10000 + "1)", "nested too deeply for the parser (MemoryError)"),
    ("x = " + "1+" * 3000 + "1", "characters long, over the limit of 4000"),
    ("x = 'a\0b'", "NUL character"),
    ("x = '\ud800'", "lone surrogate"),
    ("x = '" + "é" * (MAX_PROGRAM_BYTES // 2) + "'", "bytes long in UTF-8, over the limit"),
    ("x = '" + "a" * MAX_PROGRAM_BYTES + "'", "characters long, over the limit"),
])
def test_a_source_the_controller_cannot_compile_is_an_error_naming_why(tmp_path: Path, body: str, fragment: str) -> None:
    result = evaluate(tmp_path, block(f"{body}\ndef solve():\n    return 1.0"))
    assert result.status is EvalStatus.ERROR and fragment in result.artifacts["error"]


def test_an_initial_program_nested_too_deeply_is_a_problem_error(tmp_path: Path) -> None:
    with pytest.raises(ProblemError, match=r"initial_program\.py: the program is nested too deeply"):
        load_problem(write_problem(tmp_path / "deep", program=block("x = (" + "1+\n" * 3000 + "1)\ndef solve():\n    return 1.0")))


# ------------------------------------------------ the trusted process is bounded (issue 16)

LIMITS_EVALUATOR = """\
import resource


def evaluate(candidate):
    theirs = candidate.call("limits")
    mine = resource.getrlimit(resource.RLIMIT_AS) + resource.getrlimit(resource.RLIMIT_CPU)
    names = ("as_soft", "as_hard", "cpu_soft", "cpu_hard")
    metrics = {"value": 0.0, **{f"worker_{n}": float(v) for n, v in zip(names, mine)},
               **{f"candidate_{n}": float(v) for n, v in zip(names, theirs)}}
    return {"metrics": metrics, "features": {"x": 0.0}}
"""


def test_the_evaluator_process_has_soft_bounds_and_the_candidate_still_its_own_limits(tmp_path: Path) -> None:
    program = block(
        "import resource\n"
        "def limits():\n"
        "    room = bytearray(400 << 20)  # most of its own 512 MiB: the evaluator's bound does not squeeze it\n"
        "    return list(resource.getrlimit(resource.RLIMIT_AS) + resource.getrlimit(resource.RLIMIT_CPU))"
    )
    result = evaluate(tmp_path, program, evaluator=LIMITS_EVALUATOR)
    assert result.status is EvalStatus.OK, result.artifacts
    m = result.metrics
    assert m["worker_as_soft"] == 1 << 30 and m["worker_as_hard"] == resource.getrlimit(resource.RLIMIT_AS)[1]  # max(1 GiB, 2 x 512 MiB)
    assert m["worker_cpu_soft"] == 10 + 5 and m["worker_cpu_hard"] == resource.getrlimit(resource.RLIMIT_CPU)[1]
    assert m["candidate_as_soft"] == m["candidate_as_hard"] == 512 << 20
    assert m["candidate_cpu_soft"] <= 10


def test_the_bounds_follow_the_stages_limits() -> None:
    stages = [Stage(name="quick", function="f", limits=Limits(timeout_s=2, memory_mb=256)),
              Stage(name="full", function="g", limits=Limits(timeout_s=30.5, memory_mb=3072))]
    assert evaluator_bounds(stages[:1]) == EvaluatorBounds(memory_bytes=1 << 30, cpu_s=7)
    assert evaluator_bounds(stages) == EvaluatorBounds(memory_bytes=6 << 30, cpu_s=38)


def test_an_evaluator_out_of_memory_is_an_error_naming_its_bound(tmp_path: Path) -> None:
    evaluator = ("def evaluate(candidate):\n"
                 "    x = candidate.call('solve')\n"
                 "    held = [bytearray(64 << 20) for _ in range(64)]  # 4 GiB\n"
                 "    return {'metrics': {'value': x}, 'features': {'x': x}}\n")
    result = evaluate(tmp_path, block("def solve():\n    return 1.0"), evaluator=evaluator)
    assert result.status is EvalStatus.ERROR
    assert "exceeded its memory bound of 1024 MiB while processing the candidate's result" in result.artifacts["error"]


NESTED_66MB = block('''\
def solve():
    import json, os, sys
    fd = int(json.loads(sys.argv[-1])["result"])  # the harness's settings name the result channel

    def send(data):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    chunk = b"[]," * (1 << 18)  # sent in pieces: the candidate itself stays small
    send(b'{"ok": true, "value": [')
    for _ in range(((63 << 20) // 3) >> 18):
        send(chunk)
    send(b"[]]}")
    os._exit(0)''')

MEASURE = """\
import asyncio, json, resource, sys
from pathlib import Path
from evolve.evaluators.runner import Evaluator
from evolve.problem import load_problem

evaluator = Evaluator(load_problem(Path(sys.argv[1])), problem_dir=Path(sys.argv[2]))
result = asyncio.run(evaluator.evaluate(sys.stdin.read()))
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss << 10  # the largest descendant: here the evaluator process
print(json.dumps({"status": result.status.value, "error": result.artifacts.get("error", ""), "peak": peak}))
"""


def _measured(tmp_path: Path, program: str, name: str) -> dict[str, Any]:
    folder = write_problem(tmp_path / name)
    run = subprocess.run([sys.executable, "-c", MEASURE, str(folder), str(tmp_path / f"{name}-work")], input=program,
                         capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(run.stdout))


def test_66_mb_of_nested_lists_is_the_candidates_error_and_the_evaluator_stays_small(tmp_path: Path) -> None:
    """It once decoded into 3.1 GB in the trusted process; now the element budget refuses it before it allocates."""
    honest = _measured(tmp_path, block("def solve():\n    return 2.0"), "honest")
    hostile = _measured(tmp_path, NESTED_66MB, "hostile")
    assert honest["status"] == "ok"
    assert hostile["status"] == "error" and "over the budget of 1000000" in hostile["error"], hostile
    assert not hostile["error"].startswith("evaluator:")
    print(f"evaluator peak RSS: honest {honest['peak'] >> 20} MiB, 66 MB nested result {hostile['peak'] >> 20} MiB")
    assert hostile["peak"] < honest["peak"] + (256 << 20)  # the result's bytes, held twice while read, and nothing more
