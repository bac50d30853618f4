"""The executor seam: where a campaign's evaluations run.

An ``Executor`` takes an ``EvalRequest`` (plain data: an id, the candidate's
code, the stages with their limits, the evaluator process's bounds) and
returns an ``EvalOutcome`` (plain data: the evaluator's answer bytes, how its
process ended, its stderr), matched by id. ``capacity`` says how many
evaluations it runs at once, ``health()`` how it stands, cancelling the task
that awaits ``submit`` kills that evaluation, and ``close()`` stops
everything it started. The campaign never spawns a process itself; turning
an outcome into a score is ``evolve.evaluators.runner``'s, the same for
every executor, so an executor on other machines only has to move these two
records.

Two executors here:
- ``WarmPool`` (``evolve.evaluators.pool``, the default): long-lived evaluator
  workers with the problem imported, a fresh fork per evaluation, and a zygote
  in the sandbox;
- ``ColdExecutor``: a fresh evaluator process per evaluation (``python -m
  evolve.evaluators.worker``), with fresh sandboxed interpreters per call. Slow
  and simple: for debugging, and for one-off evaluations.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, get_args, runtime_checkable

from evolve.evaluators.protocol import ExecutorName
from evolve.sandbox.confine import RUN_TAG_ENV, sweep
from evolve.sandbox.container import sweep_containers
from evolve.sandbox.supervise import supervise
from evolve.scratch import owned_tempdir

__all__ = ["EXECUTORS", "ColdExecutor", "EvalOutcome", "EvalRequest", "Executor", "ExecutorHealth", "new_tag"]

EXECUTORS: tuple[str, ...] = get_args(ExecutorName)
#: The grace an evaluator process gets past its stages' timeouts before it is killed.
GRACE_S = 5.0
#: Captured output of an evaluator process (its prints, a traceback).
EVALUATOR_OUTPUT_BYTES = 256 << 10
#: The evaluator's answer: per stage, metrics, features, artifacts (which validation clips to
#: 12 x 2000 characters) and the candidate's clipped messages; a real one is a few KiB. 16 MiB
#: leaves an evaluator room for bulky artifacts; the controller parses it within an element budget.
EVALUATOR_RESULT_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class EvalRequest:
    """One evaluation, as plain data (it crosses processes, and with a cluster executor, machines)."""

    id: str
    code: str
    stages: list[dict[str, Any]]  # name, function, limits (SandboxLimits fields), timeout_s, threshold
    evaluator: dict[str, int]  # the evaluator process's own bounds: memory_bytes, cpu_s

    @property
    def wall_s(self) -> float:
        """The stages' timeouts together: the evaluation's budget before its grace period."""
        return sum(float(stage["timeout_s"]) for stage in self.stages)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "code": self.code, "stages": self.stages, "evaluator": self.evaluator}


@dataclass(frozen=True, slots=True)
class EvalOutcome:
    """How one evaluation ended: the evaluator's answer (None without one) and its process's end."""

    id: str
    answer: bytes | None
    exit_code: int | None
    timed_out: bool
    answer_exceeded: bool
    stderr: str
    duration_s: float = 0.0
    node: str | None = None  # the cluster node that ran it (None: this host)


@dataclass(frozen=True, slots=True)
class ExecutorHealth:
    """How an executor stands: its kind, capacity, live workers, replacements so far, and any degradation."""

    kind: str
    capacity: int
    alive: int
    restarts: int = 0
    warm_launchers: bool = False
    problems: list[str] = field(default_factory=list)


@runtime_checkable
class Executor(Protocol):
    """Runs evaluations of one problem (see the module's docstring)."""

    capacity: int

    async def submit(self, request: EvalRequest) -> EvalOutcome:
        """Run ``request`` and return its outcome; never raises for what the candidate or its evaluator did.

        Cancelling the awaiting task kills the evaluation.

        Raises:
            SandboxError: when the executor itself cannot run evaluations.
        """
        ...

    def health(self) -> ExecutorHealth:
        """How the executor stands now."""
        ...

    async def close(self) -> None:
        """Stop every worker and evaluation this executor started. Idempotent."""
        ...


def new_tag() -> str:
    """A fresh tag for what one worker or evaluation makes on this host: ``<controller pid>x<hex>``.

    The sweeps of stale cgroups, containers and scratch directories read the pid back.
    """
    return f"{os.getpid()}x{uuid.uuid4().hex[:10]}"


class ColdExecutor:
    """A fresh evaluator process per evaluation (``evolve.evaluators.worker``)."""

    def __init__(self, problem_dir: Path, *, backend: str, env: dict[str, str], python: str | None = None,
                 capacity: int = 1, confine: bool = False) -> None:
        """``confine``: the problem's evaluator runs in a sandbox of its own, served by the evaluation process."""
        self.capacity = capacity
        self._confine = confine
        self._dir = problem_dir
        self._backend = backend
        self._env = env
        self._python = python or sys.executable

    async def submit(self, request: EvalRequest) -> EvalOutcome:
        body = {**request.as_dict(), "problem_dir": str(self._dir), "sandbox": self._backend, "controller": os.getpid(),
                "confine": self._confine}
        # Everything the evaluation makes on the host carries this tag or lives in this directory,
        # so it is removed here however the evaluator process ended (killed at its deadline included).
        tag = new_tag()
        scratch = str(owned_tempdir("eval", tag=tag))
        try:
            outcome = await supervise(
                lambda fd: [self._python, "-I", "-B", "-m", "evolve.evaluators.worker", str(fd)],
                stdin=json.dumps(body).encode(),
                env={**self._env, "TMPDIR": scratch, RUN_TAG_ENV: tag},
                cwd=str(self._dir),
                wall_s=request.wall_s + GRACE_S,
                output_bytes=EVALUATOR_OUTPUT_BYTES,
                result_bytes=EVALUATOR_RESULT_BYTES,
            )
        finally:
            sweep(tag)
            if self._backend == "docker":
                await asyncio.to_thread(sweep_containers, tag)
            shutil.rmtree(scratch, ignore_errors=True)
        return EvalOutcome(id=request.id, answer=outcome.result, exit_code=outcome.exit_code, timed_out=outcome.timed_out,
                           answer_exceeded=outcome.result_exceeded, stderr=outcome.stderr.decode("utf-8", errors="replace"),
                           duration_s=outcome.wall_s)

    def health(self) -> ExecutorHealth:
        return ExecutorHealth(kind="cold", capacity=self.capacity, alive=self.capacity)

    async def close(self) -> None:
        return None
