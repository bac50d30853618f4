"""The trusted evaluator process: loads a problem's ``evaluator.py`` and runs its cascade.

Each stage calls one evaluator function with its own limits and deadline;
the first stage that fails or misses its threshold ends the evaluation.

Started by ``evolve.evaluators.runner`` as ``python -I -B -m evolve.evaluators.worker FD``.
The request arrives as JSON on stdin; the outcome goes to FD as JSON. The
evaluator's own prints go to stderr, so they can never be mistaken for a
result. The candidate is not run here: ``Candidate.call`` asks the sandbox.

Before anything else the process lowers its own soft limits to the request's
``evaluator`` bounds (address space and CPU time, see
``evolve.evaluators.runner.evaluator_bounds``). The hard limits stay as they
are, so the sandboxed child it spawns can still set its own, higher or lower.
Out of memory, it answers that it exceeded its memory bound while processing
the candidate's result, rather than dying with a traceback.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from evolve.errors import EvolveError
from evolve.evaluators.candidate import Candidate, CandidateError, CandidateTimeout, Invalid
from evolve.evaluators.protocol import StageOutcome
from evolve.evaluators.thresholds import threshold_failure
from evolve.sandbox import Sandbox, SandboxLimits, get_sandbox

__all__ = ["answer_bytes", "bound_self", "confined_answer_here", "die_with", "load_evaluator", "main", "run_cascade"]


def _jsonable(value: Any) -> Any:
    """Convert NumPy scalars and arrays in the evaluator's answer to JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"evaluate() returned a value of type {type(value).__name__} that is not JSON-serializable")


def _load_evaluator(problem_dir: Path) -> Any:
    sys.path.insert(0, str(problem_dir))
    spec = importlib.util.spec_from_file_location("evolve_problem_evaluator", problem_dir / "evaluator.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {problem_dir / 'evaluator.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # registered like any import, so dataclasses and pickling inside it work
    spec.loader.exec_module(module)
    return module


def bound_self(bounds: dict[str, int]) -> None:
    """Lower this process's soft address-space and CPU-time limits; the hard limits stay for the child's own."""
    for res, value in ((resource.RLIMIT_AS, bounds["memory_bytes"]), (resource.RLIMIT_CPU, bounds["cpu_s"])):
        _soft, hard = resource.getrlimit(res)
        resource.setrlimit(res, (value if hard == resource.RLIM_INFINITY else min(value, hard), hard))


def _out_of_memory(bounds: dict[str, int]) -> str:
    return f"exceeded its memory bound of {bounds['memory_bytes'] >> 20} MiB while processing the candidate's result"


def load_evaluator(problem_dir: Path) -> Any:
    """The problem's evaluator module, or the ``evaluator_error`` answer stage that says why it cannot load."""
    try:
        return _load_evaluator(problem_dir)
    except BaseException as exc:
        message = f"cannot load evaluator.py: {type(exc).__name__}: {exc}"
        return {"outcome": StageOutcome.EVALUATOR_ERROR, "message": message, "traceback": traceback.format_exc(limit=-6)}


def run_cascade(request: dict[str, Any], sandbox: Sandbox, module: Any) -> dict[str, Any]:
    """Run the cascade's stages in order; stop at the first that fails or misses its threshold.

    ``module`` is what ``load_evaluator`` returned (a module, or the stage that says why there is none).
    """
    if isinstance(module, dict):
        return {"stages": [module]}
    answers: list[dict[str, Any]] = []
    for stage in request["stages"]:
        deadline = time.monotonic() + float(stage["timeout_s"])
        candidate = Candidate(request["code"], sandbox=sandbox, limits=SandboxLimits(**stage["limits"]), deadline=deadline)
        answer = _evaluate(candidate, getattr(module, stage["function"], None), stage["function"], request["evaluator"])
        if candidate.sandbox_failure is not None:  # however the evaluator handled it, the sandbox broke, not the candidate
            return {"outcome": StageOutcome.SANDBOX_ERROR, "message": candidate.sandbox_failure}
        answers.append({"stage": stage["name"], **answer})
        if answer["outcome"] != StageOutcome.RETURNED:
            break
        value = answer["value"]
        if threshold_failure(stage.get("threshold"), value.get("metrics") if isinstance(value, dict) else None):
            break
    return {"stages": answers}


def _evaluate(candidate: Candidate, evaluate: Any, name: str, bounds: dict[str, int]) -> dict[str, Any]:
    if not callable(evaluate):
        return {"outcome": StageOutcome.EVALUATOR_ERROR, "message": f"evaluator.py defines no function '{name}'"}
    try:
        value = evaluate(candidate)
    except Invalid as exc:
        return {"outcome": StageOutcome.INVALID, "message": str(exc), "stderr": candidate.last_stderr}
    except CandidateTimeout as exc:
        return {"outcome": StageOutcome.CANDIDATE_TIMEOUT, "message": str(exc), "stderr": exc.stderr}
    except CandidateError as exc:
        return {"outcome": StageOutcome.CANDIDATE_ERROR, "message": str(exc), "stderr": exc.stderr, "traceback": exc.traceback}
    except MemoryError:  # the data is gone with the frames that held it: there is room to answer again
        return {"outcome": StageOutcome.EVALUATOR_ERROR, "message": _out_of_memory(bounds), "stderr": candidate.last_stderr}
    except BaseException as exc:
        return {
            "outcome": StageOutcome.EVALUATOR_ERROR,
            "message": f"{name}() raised {type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=-6),
        }
    return {"outcome": StageOutcome.RETURNED, "value": value, "stderr": candidate.last_stderr}


def encode_answer(answer: dict[str, Any]) -> bytes:
    """The cascade's answer as UTF-8 JSON; a lone surrogate a candidate smuggled in (as ``\\ud800``) becomes '?'."""
    try:
        text = json.dumps(answer, default=_jsonable, allow_nan=True, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        failure = {"outcome": StageOutcome.EVALUATOR_ERROR, "message": f"the evaluator returned data that cannot be serialized: {exc}"}
        text = json.dumps({"stages": [failure]})
    return text.encode("utf-8", errors="replace")


def die_with(controller: int) -> None:
    """SIGKILL this process when the controller dies (Linux): a ``kill -9`` of it leaves no evaluator behind.

    The sandboxed children die with their evaluator in turn (bubblewrap's --die-with-parent, the
    harness's own death signal, and the controller's sweep of containers whose owner is gone).
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        # PR_SET_DUMPABLE 0: /proc/<this>/mem and environ become root's, so a candidate that runs with this
        # process's uid (the process backend, started by a non-root user) cannot read or rewrite its memory
        libc.prctl(4, 0)
    if os.getppid() != controller:  # it died before the signal was armed
        os._exit(1)


def _request_sandbox(request: dict[str, Any]) -> Sandbox | bytes:
    """The request's candidate backend, or the answer that says it could not be built (no candidate ran yet: whatever
    broke is the backend's, an engine gone mid-setup)."""
    try:
        return get_sandbox(request["sandbox"])
    except Exception as exc:
        message = str(exc) if isinstance(exc, EvolveError) else f"{type(exc).__name__}: {exc}"
        return encode_answer({"outcome": StageOutcome.SANDBOX_ERROR, "message": message})


def answer_bytes(request: dict[str, Any], sandbox: Sandbox | None, module: Any) -> bytes:
    """Bound this process, run the cascade and encode its answer (``sandbox`` None: the request's backend, built here)."""
    bound_self(request["evaluator"])
    sys.stdout = sys.stderr  # an evaluator's print() must never reach a channel we read
    try:
        if sandbox is None:
            built = _request_sandbox(request)
            if isinstance(built, bytes):
                return built
            sandbox = built
        return encode_answer(run_cascade(request, sandbox, module))
    except MemoryError:  # outside a stage (serializing the answer): what held the memory is unwound by now
        return json.dumps({"stages": [{"outcome": StageOutcome.EVALUATOR_ERROR, "message": _out_of_memory(request["evaluator"])}]}).encode()


def confined_answer_here(request: dict[str, Any], sandbox: Sandbox | None, box: Path) -> bytes:
    """``confined_answer`` with the candidate's sandbox (``sandbox`` None: the request's backend, built here)."""
    from evolve.evaluators.confined import confined_answer

    if sandbox is None:
        built = _request_sandbox(request)
        if isinstance(built, bytes):
            return built
        sandbox = built
    return confined_answer(request, sandbox, box)


def main() -> None:
    result_fd = int(sys.argv[1])
    request = json.loads(sys.stdin.buffer.read())
    if isinstance(request.get("controller"), int):
        die_with(request["controller"])
    if request.get("confine"):  # the evaluator is not ours: it runs in a sandbox of its own, this process serves it
        from evolve.evaluators.confined import stage_box

        # the evaluation's own scratch folder (the executor's, removed with it), never a shared /tmp it would chmod
        given = os.environ.get("TMPDIR", "")
        scratch = Path(given) if Path(given).name.startswith("evolve-") else Path(tempfile.mkdtemp(prefix="evolve-box-"))
        data = confined_answer_here(request, None, stage_box(Path(request["problem_dir"]), scratch))
    else:
        data = answer_bytes(request, None, load_evaluator(Path(request["problem_dir"])))
    with os.fdopen(result_fd, "wb") as out:
        out.write(data)


if __name__ == "__main__":
    main()
