"""Evaluations on a Ray cluster: the executor seam on many machines.

``RayExecutor`` keeps ``capacity`` evaluator actors on the cluster's nodes
(spread over them), each holding the local warm path of its node: the
problem's files written to a node-local folder from the object store (no
shared disk is assumed), a ``WarmPool`` of one evaluator worker with the
problem imported, and that node's sandbox (resolved there; a node where no
isolating backend works refuses to host an evaluator, it never runs one
unsandboxed). So a candidate on a node is confined exactly as it is on the
controller's host: outside the evaluator's process, killed at its deadline
by the node's own pool.

What the controller adds is the failure handling a cluster needs. An actor
that dies (its node lost, its worker killed) or stops answering past the
evaluation's deadline plus a margin is killed and replaced, and the
evaluation is run again on another actor, at most ``RETRIES`` times; it is
never recorded as the candidate's failure (past the retries the executor
raises ``SandboxError``: the campaign stops, resumably). Cancelling an
evaluation kills its actor (Ray cannot force-cancel an actor's task) and
starts a fresh one. Each outcome names the node that ran it.

Resources per evaluation come from the problem's limits: ``num_cpus``,
``num_gpus`` and ``memory_mb`` become each actor's Ray resource request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from evolve.errors import ConfigError, SandboxError
from evolve.evaluators.executor import GRACE_S, EvalOutcome, EvalRequest, ExecutorHealth
from evolve.problem import Problem
from evolve.sandbox import SandboxLimits

__all__ = ["RETRIES", "RayExecutor", "RayResources"]

#: Runs of one evaluation lost to the cluster (a node, an actor) before the executor gives up.
RETRIES = 3
#: How long past an evaluation's deadline (stages, then the pool's grace) an actor may stay silent: its pool may
#: restart a dead worker first (up to a minute: imports, the evaluator, its zygote), then report, then some slack.
_MARGIN_S = 100.0
#: How long a new actor may take to be placed and start its warm worker.
_START_S = 180.0


@dataclasses.dataclass(frozen=True, slots=True)
class RayResources:
    """The Ray resource request of one evaluator actor."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_mb: int = 1024


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("the ray executor needs Ray: pip install 'evolve[ray]'") from exc
    return ray


class _NodeEvaluator:
    """One evaluator slot on a node: the problem's folder, that node's sandbox and a warm worker (a Ray actor)."""

    def __init__(self, sources: dict[str, Any], backend: str, limits: dict[str, Any], confine: bool = False) -> None:
        import ray

        from evolve.evaluators.pool import WarmPool
        from evolve.evaluators.runner import evaluator_environment, prepare_host
        from evolve.sandbox import resolve_backend

        node = ray.get_runtime_context().get_node_id()
        self.node = f"{socket.gethostname()}/{node[:12]}"
        self.backend = resolve_backend(backend)  # this node's: "auto" picks its strongest; SandboxError when none
        prepare_host(self.backend)
        self.folder = Path(tempfile.mkdtemp(prefix="evolve-node-"))
        problem = Problem.from_sources(**sources, source=f"ray:{self.node}")
        problem_dir = problem.write_to(self.folder / "problem")
        self.pool = WarmPool(problem_dir, backend=self.backend, env=evaluator_environment(problem_dir, self.backend),
                             limits=SandboxLimits(**limits), capacity=1, confine=confine)

    async def ready(self) -> dict[str, Any]:
        """Once the warm worker is up (a slow evaluator import is never mistaken for a silent actor later)."""
        await self.pool.start()
        return {"node": self.node, "backend": self.backend, "pid": os.getpid()}

    async def evaluate(self, request: dict[str, Any]) -> dict[str, Any]:
        outcome = await self.pool.submit(EvalRequest(**request))
        return {**dataclasses.asdict(outcome), "node": self.node}

    async def close(self) -> None:
        await self.pool.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class RayExecutor:
    """``capacity`` evaluator actors on a Ray cluster (see the module's docstring)."""

    def __init__(self, problem: Problem, *, backend: str, limits: SandboxLimits, resources: RayResources, capacity: int,
                 address: str | None = None, confine: bool = False) -> None:
        """Connect to the cluster (``address``, else ``RAY_ADDRESS``, else the one this host runs); the actors start on
        first use.

        Raises:
            ConfigError: when Ray is not installed.
            SandboxError: when no Ray cluster answers.
        """
        ray = _ray()
        self.capacity = capacity
        self._resources = resources
        self._args = ({"config_text": problem.config_text, "initial_program": problem.initial_program,
                       "evaluator_source": problem.evaluator_source, "extra_files": problem.extra_files},
                      backend, dataclasses.asdict(limits), confine)
        if not ray.is_initialized():
            target = address or os.environ.get("RAY_ADDRESS") or "auto"
            _reachable(target)
            try:
                ray.init(address=target, namespace="evolve", log_to_driver=False, logging_level="WARNING",
                         configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise SandboxError(f"no Ray cluster answers at {target}: {exc}. Start one (ray start --head) or pass "
                                   "--ray-address HOST:PORT of its head") from exc
        self._idle: asyncio.Queue[Any] | None = None
        self._actors: set[Any] = set()
        self._started = 0
        self.restarts = 0
        self.retries = 0
        self.nodes: dict[str, int] = {}  # evaluations per node, as they came back
        self._problem: str | None = None
        self._closed = False
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ actors
    def _spawn(self) -> Any:
        ray = _ray()
        actor_class = ray.remote(_NodeEvaluator)
        resources = self._resources
        actor = actor_class.options(
            num_cpus=resources.num_cpus, num_gpus=resources.num_gpus, memory=resources.memory_mb << 20,
            scheduling_strategy="SPREAD", max_restarts=0, max_concurrency=2,
        ).remote(*self._args)
        self._actors.add(actor)
        self._started += 1
        return actor

    async def _ready(self, actor: Any) -> Any:
        """``actor`` once it has started, or None when it could not (its error kept for health())."""
        ray = _ray()
        try:
            info = await asyncio.wait_for(asyncio.wrap_future(actor.ready.remote().future()), timeout=_START_S)
        except TimeoutError:
            self._problem = f"no node could host an evaluator within {_START_S:g} s (resources: {self._resources})"
        except ray.exceptions.RayError as exc:
            self._problem = _cause(exc)
        else:
            return actor if info else None
        self._kill(actor)
        return None

    def _kill(self, actor: Any) -> None:
        self._actors.discard(actor)
        with contextlib.suppress(Exception):
            _ray().kill(actor, no_restart=True)

    async def _fill(self) -> asyncio.Queue[Any]:
        if self._idle is None:
            self._idle = asyncio.Queue()
            started = await asyncio.gather(*(self._ready(self._spawn()) for _ in range(self.capacity)))
            for actor in started:
                if actor is not None:
                    self._idle.put_nowait(actor)
            if self._idle.empty():
                raise SandboxError(f"no Ray node can host an evaluator: {self._problem}")
        return self._idle

    async def _replace(self, actor: Any) -> None:
        """Kill ``actor`` and put a fresh one in its place (wherever the cluster places it)."""
        self._kill(actor)
        self.restarts += 1
        spawned = self._spawn()
        try:
            fresh = await self._ready(spawned)
        except BaseException:  # cancelled while it started: it must not hold the cluster's resources unused
            self._kill(spawned)
            raise
        if fresh is not None and self._idle is not None and not self._closed:
            self._idle.put_nowait(fresh)

    # ------------------------------------------------------------------ seam
    async def submit(self, request: EvalRequest) -> EvalOutcome:
        ray = _ray()
        idle = await self._fill()
        failures: list[str] = []
        for _ in range(RETRIES):
            if not self._actors:
                break
            try:  # every actor busy, or being replaced: bounded, since a replacement may never be placed
                actor = await asyncio.wait_for(idle.get(), timeout=request.wall_s + GRACE_S + _MARGIN_S + _START_S)
            except TimeoutError:
                failures.append("no evaluator actor became free")
                continue
            started = time.monotonic()
            try:
                answer = await asyncio.wait_for(asyncio.wrap_future(actor.evaluate.remote(request.as_dict()).future()),
                                                timeout=request.wall_s + GRACE_S + _MARGIN_S)
            except asyncio.CancelledError:
                task = asyncio.ensure_future(self._replace(actor))  # its task cannot be force-cancelled: the actor goes
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                raise
            except TimeoutError:
                failures.append(f"an actor gave no answer in {time.monotonic() - started:.0f} s (the evaluation's deadline "
                                f"and {_MARGIN_S:g} s more)")
            except ray.exceptions.RayError as exc:  # the actor died, its node was lost, the object was lost
                failures.append(_cause(exc))
            else:
                idle.put_nowait(actor)
                node = str(answer.pop("node"))
                self.nodes[node] = self.nodes.get(node, 0) + 1
                return EvalOutcome(**answer, node=node)
            self.retries += 1
            await self._replace(actor)
        raise SandboxError(f"the evaluation was lost {len(failures)} times on the Ray cluster ({'; '.join(failures)}"
                           f"{'; ' if failures else ''}{self._problem or ''}); resume the campaign once the cluster is whole")

    def health(self) -> ExecutorHealth:
        problems = [self._problem] if self._problem else []
        return ExecutorHealth(kind="ray", capacity=self.capacity, alive=len(self._actors), restarts=self.restarts,
                              problems=problems)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        actors = list(self._actors)
        closing = [asyncio.wrap_future(a.close.remote().future()) for a in actors]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), timeout=30)
        for actor in actors:
            self._kill(actor)


def _reachable(target: str) -> None:
    """Fail fast on a head nothing listens at (Ray itself retries for minutes).

    Raises:
        SandboxError: when ``target`` is a host:port that refuses or does not answer within 10 s.
    """
    host, _, port = target.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray reads itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise SandboxError(f"no Ray cluster answers at {target} ({exc}). Start one (ray start --head) or pass "
                           "--ray-address HOST:PORT of its head") from exc


def _cause(exc: BaseException) -> str:
    """One line for a Ray error, which can carry a whole remote traceback: the remote exception where it names one
    (an actor that refused to start says why), else the error's first line."""
    lines = [line.strip() for line in str(getattr(exc, "error_msg", None) or exc).strip().splitlines() if line.strip()]
    raised = [line for line in lines if line.startswith(("evolve.errors.", "SandboxError", "ProblemError"))]
    if raised:
        return raised[-1].removeprefix("evolve.errors.")[:500]
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"
