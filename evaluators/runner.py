"""Controller side of evaluation: one trusted evaluator process per candidate.

``Evaluator.evaluate(code)`` never raises for a bad candidate and never hangs:
the evaluator process has the problem's wall-clock budget plus a grace period,
after which its whole process group is killed and the result is TIMEOUT.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from evolve.errors import ProblemError, SandboxError
from evolve.evaluators.validate import clip, result_from_answer
from evolve.problem import Limits, Problem, Stage
from evolve.sandbox import SandboxLimits, resolve_backend
from evolve.sandbox.process import child_environment
from evolve.sandbox.supervise import supervise
from evolve.values import EvalResult, EvalStatus

__all__ = ["Evaluator", "sandbox_limits"]

_GRACE_S = 5.0
_DOCKER_ENV = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "EVOLVE_SANDBOX_IMAGE")
_EVALUATOR_OUTPUT_BYTES = 256 << 10
_EVALUATOR_RESULT_BYTES = 16 << 20


def sandbox_limits(limits: Limits) -> SandboxLimits:
    """The candidate's sandbox limits for a problem's evaluation limits."""
    return SandboxLimits(
        wall_s=limits.timeout_s,
        cpu_s=limits.cpu_seconds(),
        memory_bytes=limits.memory_mb << 20,
        processes=limits.processes,
        output_bytes=limits.output_bytes,
    )


class Evaluator:
    """Evaluates candidate programs of one problem, each in a fresh trusted process."""

    def __init__(self, problem: Problem, *, problem_dir: Path, sandbox: str = "auto", python: str | None = None) -> None:
        """Prepare the problem's folder and pick the sandbox backend.

        Raises:
            SandboxError: when the sandbox backend cannot work here (``auto``: when none can).
        """
        self.problem = problem
        self._dir = problem.write_to(problem_dir)
        self.backend = resolve_backend(sandbox)
        self._python = python or sys.executable

    def _worker_env(self) -> dict[str, str]:
        """The trusted evaluator's environment: minimal, plus how to reach a container engine.

        No API key is passed on; the candidate's own environment is built by the sandbox from nothing.
        """
        env = child_environment(str(self._dir))
        if self.backend == "docker":
            env.update({key: os.environ[key] for key in _DOCKER_ENV if key in os.environ})
        return env

    async def evaluate(self, code: str, *, held_out: bool = False) -> EvalResult:
        """Score one candidate through the problem's cascade. Bad candidates become non-OK results, never exceptions.

        With ``held_out`` the program is scored by the problem's held-out stage
        instead (for reports; the search never sees those instances).

        Raises:
            SandboxError: when the sandbox itself broke (not the candidate's fault).
            ProblemError: ``held_out`` for a problem without a held-out stage.
        """
        started = time.monotonic()
        try:
            compile(code, "candidate.py", "exec")
        except (SyntaxError, ValueError) as exc:
            line = getattr(exc, "lineno", None)
            return EvalResult(
                status=EvalStatus.ERROR,
                artifacts={"error": f"syntax error{f' on line {line}' if line else ''}: {getattr(exc, 'msg', exc)}"},
            )
        stages = self._stages(held_out)
        timeout_s = sum(_limits(s).timeout_s for s in stages)
        request = {
            "problem_dir": str(self._dir),
            "code": code,
            "sandbox": self.backend,
            "stages": [
                {
                    "name": s.name,
                    "function": s.function,
                    "limits": asdict(sandbox_limits(_limits(s))),
                    "timeout_s": _limits(s).timeout_s,
                    "threshold": s.threshold.as_dict() if s.threshold else None,
                }
                for s in stages
            ],
        }
        outcome = await supervise(
            lambda fd: [self._python, "-I", "-B", "-m", "evolve.evaluators.worker", str(fd)],
            stdin=json.dumps(request).encode(),
            env=self._worker_env(),
            cwd=str(self._dir),
            wall_s=timeout_s + _GRACE_S,
            output_bytes=_EVALUATOR_OUTPUT_BYTES,
            result_bytes=_EVALUATOR_RESULT_BYTES,
        )
        duration = time.monotonic() - started
        stderr = clip(outcome.stderr.decode("utf-8", errors="replace"))
        if outcome.timed_out:
            return EvalResult(
                status=EvalStatus.TIMEOUT,
                artifacts={"error": f"the evaluation ran past {timeout_s:g} s and was killed"},
                duration_s=duration,
            )
        if outcome.result is None:
            return EvalResult(
                status=EvalStatus.ERROR,
                artifacts={"error": f"the evaluator process exited with code {outcome.exit_code} without an answer", "evaluator_stderr": stderr},
                duration_s=duration,
            )
        try:
            answer = json.loads(outcome.result)
        except (UnicodeDecodeError, json.JSONDecodeError):
            answer = None
        if isinstance(answer, dict) and answer.get("outcome") == "sandbox_error":
            raise SandboxError(f"the {self.backend} sandbox failed: {answer.get('message')}")
        return result_from_answer(answer, self.problem.config, code, duration, stages=stages)

    def _stages(self, held_out: bool) -> list[Stage]:
        if not held_out:
            return self.problem.config.pipeline()
        stage = self.problem.config.held_out_stage()
        if stage is None:
            raise ProblemError(f"problem '{self.problem.name}' has no held-out instances")
        return [stage]


def _limits(stage: Stage) -> Limits:
    assert stage.limits is not None, "pipeline() and held_out_stage() fill every stage's limits"
    return stage.limits
