"""The trusted evaluator process: loads a problem's ``evaluator.py`` and runs ``evaluate``.

Started by ``evolve.evaluators.runner`` as ``python -I -B -m evolve.evaluators.worker FD``.
The request arrives as JSON on stdin; the outcome goes to FD as JSON. The
evaluator's own prints go to stderr, so they can never be mistaken for a
result. The candidate is not run here: ``Candidate.call`` asks the sandbox.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from evolve.errors import EvolveError
from evolve.evaluators.candidate import Candidate, CandidateError, CandidateTimeout, Invalid
from evolve.sandbox import SandboxLimits, get_sandbox

__all__ = ["main"]


def _jsonable(value: Any) -> Any:
    """Convert NumPy scalars and arrays in the evaluator's answer to JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"evaluate() returned a value of type {type(value).__name__} that is not JSON-serializable")


def _load_evaluate(problem_dir: Path) -> Any:
    sys.path.insert(0, str(problem_dir))
    spec = importlib.util.spec_from_file_location("evolve_problem_evaluator", problem_dir / "evaluator.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {problem_dir / 'evaluator.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.evaluate


def _run(request: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + float(request["timeout_s"])
    limits = SandboxLimits(**request["limits"])
    try:
        sandbox = get_sandbox(request["sandbox"])
    except EvolveError as exc:
        return {"outcome": "sandbox_error", "message": str(exc)}
    candidate = Candidate(request["code"], sandbox=sandbox, limits=limits, deadline=deadline)
    answer = _evaluate(candidate, Path(request["problem_dir"]))
    if candidate.sandbox_failure is not None:  # however the evaluator handled it, the sandbox broke, not the candidate
        return {"outcome": "sandbox_error", "message": candidate.sandbox_failure}
    return answer


def _evaluate(candidate: Candidate, problem_dir: Path) -> dict[str, Any]:
    try:
        evaluate = _load_evaluate(problem_dir)
    except BaseException as exc:
        return {"outcome": "evaluator_error", "message": f"cannot load evaluator.py: {exc}", "traceback": traceback.format_exc()}
    try:
        value = evaluate(candidate)
    except Invalid as exc:
        return {"outcome": "invalid", "message": str(exc), "stderr": candidate.last_stderr}
    except CandidateTimeout as exc:
        return {"outcome": "candidate_timeout", "message": str(exc), "stderr": exc.stderr}
    except CandidateError as exc:
        return {"outcome": "candidate_error", "message": str(exc), "stderr": exc.stderr, "traceback": exc.traceback}
    except BaseException as exc:
        return {
            "outcome": "evaluator_error",
            "message": f"evaluate() raised {type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=-6),
        }
    return {"outcome": "returned", "value": value, "stderr": candidate.last_stderr}


def main() -> None:
    result_fd = int(sys.argv[1])
    request = json.loads(sys.stdin.buffer.read())
    sys.stdout = sys.stderr  # an evaluator's print() must never reach a channel we read
    answer = _run(request)
    try:
        text = json.dumps(answer, default=_jsonable, allow_nan=True)
    except (TypeError, ValueError) as exc:
        text = json.dumps({"outcome": "evaluator_error", "message": f"evaluate() returned data that cannot be serialized: {exc}"})
    with os.fdopen(result_fd, "w", encoding="utf-8") as out:
        out.write(text)


if __name__ == "__main__":
    main()
