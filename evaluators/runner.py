"""Controller side of evaluation: a request to the executor, and its outcome turned into a score.

``Evaluator.evaluate(code)`` never raises for a bad candidate and never hangs:
the evaluator process has the problem's wall-clock budget plus a grace period,
after which its whole process group is killed and the result is TIMEOUT.
Where the evaluation runs is the executor's (``evolve.evaluators.executor``):
the warm pool by default, a fresh process per evaluation with ``executor="cold"``.

The evaluator process is bounded as well (``evaluator_bounds``): a soft
address-space limit of the larger of 1 GiB and twice the candidate's memory,
and a soft CPU-time limit of one core for its whole wall-clock budget. Only
the soft limits, so the sandboxed child it spawns still sets its own. The
controller reads at most ``_EVALUATOR_RESULT_BYTES`` of its answer, and
parses it within an element budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import math
import os
import signal
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from evolve.errors import ConfigError, ProblemError, SandboxError
from evolve.evaluators.cluster import RayExecutor, RayResources
from evolve.evaluators.executor import (
    EVALUATOR_RESULT_BYTES,
    EXECUTORS,
    GRACE_S,
    ColdExecutor,
    EvalOutcome,
    EvalRequest,
    Executor,
    ExecutorHealth,
)
from evolve.evaluators.pool import WarmPool
from evolve.evaluators.protocol import StageOutcome
from evolve.evaluators.validate import clip, result_from_answer
from evolve.problem import Limits, Problem, Stage, compile_problem
from evolve.sandbox import CandidateValueError, SandboxLimits, resolve_backend
from evolve.sandbox.codec import loads_within
from evolve.sandbox.confine import sweep_stale
from evolve.sandbox.container import sweep_stale_containers
from evolve.sandbox.process import child_environment
from evolve.scratch import sweep_stale as sweep_stale_tempdirs
from evolve.values import EvalResult, EvalStatus

__all__ = ["Evaluator", "EvaluatorBounds", "evaluator_bounds", "sandbox_limits"]

_DOCKER_ENV = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "EVOLVE_SANDBOX_IMAGE")
_EVALUATOR_RESULT_ELEMENTS = 1_000_000
_EVALUATOR_MIN_MEMORY = 1 << 30


@dataclass(frozen=True, slots=True)
class EvaluatorBounds:
    """The trusted evaluator process's own soft limits (see ``evaluator_bounds``)."""

    memory_bytes: int
    cpu_s: int


def evaluator_bounds(stages: list[Stage]) -> EvaluatorBounds:
    """The evaluator process's limits for an evaluation through ``stages``.

    Address space: the larger of 1 GiB and twice the largest candidate memory
    of the stages (the evaluator holds the candidate's decoded result, at most
    a few times its byte size, next to its own data). CPU time: one core for
    the whole wall-clock budget (the stages' timeouts plus the grace period).
    """
    memory = max(_EVALUATOR_MIN_MEMORY, *(2 * (_limits(s).memory_mb << 20) for s in stages))
    cpu = math.ceil(sum(_limits(s).timeout_s for s in stages) + GRACE_S)
    return EvaluatorBounds(memory_bytes=memory, cpu_s=cpu)


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
    """Evaluates candidate programs of one problem through an executor.

    ``executor``: "cold" (the default here: a fresh process per evaluation, nothing to
    close, right for one-off evaluations) or "warm" (the campaigns' default: ``slots``
    long-lived workers; ``close()`` them when done).
    """

    def __init__(self, problem: Problem, *, problem_dir: Path, sandbox: str = "auto", python: str | None = None,
                 executor: str = "cold", slots: int = 1, ray_address: str | None = None,
                 confine_evaluator: bool = False) -> None:
        """Prepare the problem's folder, pick the sandbox backend and set up the executor (its workers start on first use).

        ``confine_evaluator``: run the problem's ``evaluator.py`` in a sandbox of its own, for an evaluator
        nobody here wrote (see ``evolve.evaluators.confined``); the default trusts it with a host process.

        Raises:
            SandboxError: when the sandbox backend cannot work here (``auto``: when none can).
            ConfigError: for an unknown executor.
        """
        if executor not in EXECUTORS:
            raise ConfigError(f"unknown executor '{executor}': choose one of {', '.join(EXECUTORS)}")
        self.problem = problem
        self.confine_evaluator = confine_evaluator
        self._dir = problem.write_to(problem_dir)
        self.executor: Executor
        if executor == "ray":  # the sandbox is each node's, resolved there: this host may have none
            self.backend = sandbox
            limits = problem.config.limits
            self.executor = RayExecutor(problem, backend=sandbox, limits=self._largest_limits(), capacity=slots,
                                        resources=RayResources(num_cpus=limits.num_cpus, num_gpus=limits.num_gpus,
                                                               memory_mb=limits.memory_mb), address=ray_address,
                                        confine=confine_evaluator)
            return
        self.backend = resolve_backend(sandbox)
        prepare_host(self.backend)
        if executor == "warm":
            self.executor = WarmPool(self._dir, backend=self.backend, env=self._worker_env(), limits=self._largest_limits(),
                                     capacity=slots, python=python, confine=confine_evaluator)
        else:
            self.executor = ColdExecutor(self._dir, backend=self.backend, env=self._worker_env(), python=python,
                                         capacity=slots, confine=confine_evaluator)

    def _worker_env(self) -> dict[str, str]:
        return evaluator_environment(self._dir, self.backend)

    def _largest_limits(self) -> SandboxLimits:
        """Field by field, the largest candidate limits of every stage (the warm launchers are sized for them)."""
        stages = list(self.problem.config.pipeline())
        if (held_out := self.problem.config.held_out_stage()) is not None:
            stages.append(held_out)
        each = [sandbox_limits(_limits(s)) for s in stages]
        return SandboxLimits(**{f.name: max(getattr(x, f.name) for x in each) for f in dataclasses.fields(SandboxLimits)})

    def health(self) -> ExecutorHealth:
        """How the executor stands (live workers, replacements, whether the warm launchers work here)."""
        return self.executor.health()

    async def close(self) -> None:
        """Stop the executor's workers. Idempotent; the evaluator cannot be used afterwards."""
        await self.executor.close()

    async def evaluate(self, code: str, *, held_out: bool = False) -> EvalResult:
        """Score one candidate through the problem's cascade. Bad candidates become non-OK results, never exceptions.

        With ``held_out`` the program is scored by the problem's held-out stage
        instead (for reports; the search never sees those instances).

        Raises:
            SandboxError: when the sandbox itself broke (not the candidate's fault).
            ProblemError: ``held_out`` for a problem without a held-out stage.
        """
        started = time.monotonic()
        # never raises (too large, a long line, NUL, too deep, syntax...); off the event loop, as a compile is CPU work
        problem = await asyncio.to_thread(compile_problem, code, "candidate.py")
        if problem is not None:
            return EvalResult(status=EvalStatus.ERROR, artifacts={"error": problem})
        stages = self._stages(held_out)
        bounds = evaluator_bounds(stages)
        request = EvalRequest(
            id=uuid.uuid4().hex,
            code=code,
            evaluator=asdict(bounds),
            stages=[
                {
                    "name": s.name,
                    "function": s.function,
                    "limits": asdict(sandbox_limits(_limits(s))),
                    "timeout_s": _limits(s).timeout_s,
                    "threshold": s.threshold.as_dict() if s.threshold else None,
                }
                for s in stages
            ],
        )
        outcome = await self.executor.submit(request)
        result = self._result(outcome, request, code, stages, bounds, time.monotonic() - started)
        return dataclasses.replace(result, node=outcome.node) if outcome.node else result

    def _result(self, outcome: EvalOutcome, request: EvalRequest, code: str, stages: list[Stage], bounds: EvaluatorBounds,
                duration: float) -> EvalResult:
        """The score of an outcome, the same whatever executor ran it.

        Raises:
            SandboxError: when the evaluator reports that the sandbox itself broke.
        """
        stderr = clip(outcome.stderr)
        if outcome.timed_out:
            return EvalResult(
                status=EvalStatus.TIMEOUT,
                artifacts={"error": f"the evaluation ran past {request.wall_s:g} s and was killed"},
                duration_s=duration,
            )
        if outcome.answer is None:
            return EvalResult(
                status=EvalStatus.ERROR,
                artifacts={"error": _no_answer(outcome.exit_code, outcome.answer_exceeded, stderr, bounds), "evaluator_stderr": stderr},
                duration_s=duration,
            )
        try:
            answer = loads_within(outcome.answer, max_elements=_EVALUATOR_RESULT_ELEMENTS, what="the evaluator's answer")
        except CandidateValueError as exc:
            return EvalResult(status=EvalStatus.ERROR, artifacts={"error": f"the evaluator process sent an unreadable answer: {exc}"},
                              duration_s=duration)
        if isinstance(answer, dict) and answer.get("outcome") == StageOutcome.SANDBOX_ERROR:
            raise SandboxError(f"the {self.backend} sandbox failed: {answer.get('message')}")
        return result_from_answer(answer, self.problem.config, code, duration, stages=stages)

    def _stages(self, held_out: bool) -> list[Stage]:
        if not held_out:
            return self.problem.config.pipeline()
        stage = self.problem.config.held_out_stage()
        if stage is None:
            raise ProblemError(f"problem '{self.problem.name}' has no held-out instances")
        return [stage]


def prepare_host(backend: str) -> None:
    """Before this process evaluates with ``backend`` (on the controller's host, or on a Ray node): remove what killed
    evaluations left here, and keep same-uid candidates out of this process."""
    sweep_stale()  # run cgroups of evaluator processes that were killed before they could clean up
    sweep_stale_tempdirs()  # and scratch directories of controllers that were
    if backend == "docker":
        sweep_stale_containers()  # containers of a controller that was killed (same host)
    if backend == "process" and os.geteuid() != 0:
        _not_dumpable()  # its candidates run with this process's uid: keep them out of its memory and environment


def evaluator_environment(problem_dir: Path, backend: str) -> dict[str, str]:
    """The trusted evaluator's environment: minimal, plus how to reach a container engine.

    No API key is passed on; the candidate's own environment is built by the sandbox from nothing.
    """
    env = child_environment(str(problem_dir))
    if backend == "docker":
        env.update({key: os.environ[key] for key in _DOCKER_ENV if key in os.environ})
    return env


def _not_dumpable() -> None:
    """PR_SET_DUMPABLE 0 for this process: /proc/<pid>/mem and environ readable by root only (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(4, 0)


def _no_answer(exit_code: int | None, exceeded: bool, stderr: str, bounds: EvaluatorBounds) -> str:
    """Why the evaluator process gave no answer, naming the bound it hit where one did."""
    if exceeded:
        return f"the evaluator process sent an answer over {EVALUATOR_RESULT_BYTES} bytes"
    if exit_code == -signal.SIGXCPU:
        return f"the evaluator process used up its CPU-time bound of {bounds.cpu_s} s and was killed"
    if "MemoryError" in stderr:
        return (f"the evaluator process exceeded its memory bound of {bounds.memory_bytes >> 20} MiB "
                "while processing the candidate's result")
    return f"the evaluator process exited with code {exit_code} without an answer"


def _limits(stage: Stage) -> Limits:
    assert stage.limits is not None, "pipeline() and held_out_stage() fill every stage's limits"
    return stage.limits
