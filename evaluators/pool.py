"""The warm pool: one long-lived evaluator worker per evaluation slot (``evolve.evaluators.warm``).

A slot's worker starts on the slot's first evaluation (or all at once with
``start()``) and then serves one evaluation after another:
each in a fresh fork of the worker, with the problem's evaluator and NumPy
already imported and, on the bwrap and process backends, a zygote in the
sandbox that forks every candidate call (see the worker's docstring).

The pool trusts none of it to behave. A worker that dies, sends something
unreadable or misses its deadline (the evaluation's own, plus a margin for the
worker to report) is killed with its whole process group, and what it made on
the host (its slot's cgroups, its evaluations' containers) is swept; that
evaluation's outcome says what happened and the slot starts a fresh worker
for its next one. Cancelling an evaluation kills its worker the same way.
Workers die with the controller (``PR_SET_PDEATHSIG``), so ``kill -9`` of the
controller leaves nothing running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from evolve.errors import SandboxError
from evolve.evaluators.executor import GRACE_S, EvalOutcome, EvalRequest, ExecutorHealth, new_tag
from evolve.sandbox import SandboxLimits
from evolve.sandbox.confine import RUN_TAG_ENV, sweep
from evolve.sandbox.container import sweep_containers
from evolve.sandbox.supervise import frame, kill_group

__all__ = ["WarmPool"]

_START_S = 60.0  # a worker's start: imports, the problem's evaluator, its zygote
_REPORT_S = 10.0  # past the evaluation's own deadline (which the worker enforces), for the worker to report it
_STDERR_TAIL = 8000
_FRAME_LIMIT = 64 << 20


class _WorkerGoneError(Exception):
    """The worker ended or broke its protocol."""


class _Slot:
    """One evaluation slot: its worker process and the channels to it.

    The channels are plain blocking pipes driven from the slot's own thread, so a slot
    belongs to no event loop (a campaign created under one ``asyncio.run`` and run under
    another keeps its warm workers) and a slow evaluation never holds a shared thread.
    """

    def __init__(self, pool: WarmPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.tag = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._answers = -1
        self.stderr = bytearray()
        self.warm_launcher = False
        self.problem: str | None = None
        self.thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"evolve-slot-{index}")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start this slot's worker and wait for it to say it is ready (blocking).

        Raises:
            SandboxError: when it cannot start or never becomes ready.
        """
        pool = self.pool
        self.tag = new_tag()
        read_fd, write_fd = os.pipe()
        try:
            self.process = subprocess.Popen(
                [pool.python, "-I", "-B", "-m", "evolve.evaluators.warm", str(write_fd)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                env={**pool.env, RUN_TAG_ENV: self.tag, "TMPDIR": tempfile.gettempdir()}, cwd=str(pool.problem_dir),
                pass_fds=(write_fd,), start_new_session=True,
            )
        except OSError as exc:
            os.close(read_fd)
            raise SandboxError(f"cannot start an evaluator worker: {exc}") from exc
        finally:
            os.close(write_fd)
        self._answers = read_fd
        self.stderr = bytearray()
        threading.Thread(target=self._drain, args=(self.process,), daemon=True, name=f"evolve-slot-{self.index}-stderr").start()
        setup = {"problem_dir": str(pool.problem_dir), "sandbox": pool.backend, "controller": os.getpid(),
                 "limits": pool.limits_dict, "confine": pool.confine}
        try:
            self._send(json.dumps(setup).encode())
            ready = json.loads(self._frame(time.monotonic() + _START_S))
        except (TimeoutError, _WorkerGoneError, ValueError) as exc:
            time.sleep(0.05)  # its last words
            why = bytes(self.stderr[-2000:]).decode("utf-8", errors="replace").strip()
            self.kill()
            raise SandboxError(f"the evaluator worker did not start ({type(exc).__name__}): {why or 'no output'}") from exc
        self.warm_launcher = bool(ready.get("zygote"))
        self.problem = ready.get("zygote_problem")

    def _drain(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(process.stderr.fileno(), 1 << 16):
                if process is self.process:
                    self.stderr += chunk
                    del self.stderr[:-_STDERR_TAIL]

    def _send(self, data: bytes) -> None:
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write(frame(data))
            self.process.stdin.flush()
        except (OSError, ValueError) as exc:
            raise _WorkerGoneError from exc

    def _read_exact(self, size: int, deadline: float) -> bytes:
        data = bytearray()
        while len(data) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._answers], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(self._answers, size - len(data))
            if not chunk:
                raise _WorkerGoneError
            data += chunk
        return bytes(data)

    def _frame(self, deadline: float) -> bytes:
        size = int.from_bytes(self._read_exact(4, deadline), "big")
        if size > _FRAME_LIMIT:
            raise _WorkerGoneError
        return self._read_exact(size, deadline)

    def evaluate(self, request: EvalRequest) -> EvalOutcome:
        """Run one evaluation on this slot's worker, started or replaced first if needed (blocking)."""
        if not self.alive:
            if self.process is not None:
                self.kill()
                self.pool.restarts += 1
            self.start()
        started = time.monotonic()

        def ended(why: str, *, timed_out: bool = False, code: int | None = None) -> EvalOutcome:
            self.kill()
            return EvalOutcome(id=request.id, answer=None, exit_code=code, timed_out=timed_out, answer_exceeded=False,
                               stderr=why, duration_s=time.monotonic() - started)

        try:
            self._send(json.dumps(request.as_dict()).encode())
            header = json.loads(self._frame(started + request.wall_s + GRACE_S + _REPORT_S))
            answer = self._frame(time.monotonic() + _REPORT_S)
        except TimeoutError:
            return ended("", timed_out=True)
        except (_WorkerGoneError, ValueError):
            time.sleep(0.05)  # let its last words reach stderr
            code = self.process.poll() if self.process is not None else None
            return ended("the evaluator worker ended during the evaluation: "
                         + bytes(self.stderr[-2000:]).decode("utf-8", errors="replace"), code=code)
        if header.get("id") != request.id:  # out of step: nothing it says can be trusted any more
            return ended("the evaluator worker answered another request")
        return EvalOutcome(id=request.id, answer=answer or None, exit_code=header.get("exit_code"),
                           timed_out=bool(header.get("timed_out")), answer_exceeded=bool(header.get("answer_exceeded")),
                           stderr=str(header.get("stderr", "")), duration_s=time.monotonic() - started)

    def stop_worker(self) -> None:
        """Kill the worker's group now (from any thread); ``kill`` releases the rest."""
        if self.process is not None:
            kill_group(self.process.pid)

    def kill(self) -> None:
        """Kill the worker's whole group and sweep what its slot made on the host. Idempotent, thread-safe enough."""
        process = self.process
        if process is not None:
            kill_group(process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5.0)
            for stream in (process.stdin, process.stderr):
                with contextlib.suppress(OSError):
                    if stream is not None:
                        stream.close()
        if self._answers >= 0:
            with contextlib.suppress(OSError):
                os.close(self._answers)
            self._answers = -1
        if self.tag:
            sweep(self.tag, family=True)  # its zygote's slot cgroup, and cgroups of evaluations killed with it
            if self.pool.backend == "docker":
                sweep_containers(self.tag, family=True)


class WarmPool:
    """The default executor: ``capacity`` warm evaluator workers of one problem."""

    def __init__(self, problem_dir: Path, *, backend: str, env: dict[str, str], limits: SandboxLimits, capacity: int = 2,
                 python: str | None = None, confine: bool = False) -> None:
        """``limits``: the largest candidate limits of the problem's stages (the slots' zygotes are sized for them).

        ``confine``: the problem's evaluator runs in a sandbox of its own (``evolve.evaluators.confined``), never here.
        """
        if capacity < 1:
            raise ValueError("a warm pool needs at least one slot")
        self.capacity = capacity
        self.problem_dir = problem_dir
        self.backend = backend
        self.env = env
        self.python = python or sys.executable
        self.confine = confine
        self.limits_dict: dict[str, Any] = dataclasses.asdict(limits)
        self.restarts = 0
        self._slots = [_Slot(self, i) for i in range(capacity)]
        self._idle: asyncio.Queue[_Slot] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _queue(self) -> asyncio.Queue[_Slot]:
        """The free slots, as a queue of the running event loop (a new loop gets a new queue of every slot)."""
        loop = asyncio.get_running_loop()
        if self._idle is None or self._loop is not loop:
            self._idle, self._loop = asyncio.Queue(), loop
            for slot in self._slots:
                self._idle.put_nowait(slot)
        return self._idle

    async def submit(self, request: EvalRequest) -> EvalOutcome:
        """Run ``request`` on the next free slot (see ``Executor.submit``).

        Raises:
            SandboxError: when a worker cannot be started at all.
        """
        idle = self._queue()
        slot = await idle.get()
        try:
            future = asyncio.get_running_loop().run_in_executor(slot.thread, slot.evaluate, request)
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:  # the evaluation dies with its worker; the slot is free once its thread is
                slot.stop_worker()  # its thread then reads the end, and cleans up
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(future, 10.0)
                raise
        finally:
            idle.put_nowait(slot)

    async def start(self) -> None:
        """Start every slot's worker now (else each starts on its first evaluation).

        Raises:
            SandboxError: when a worker cannot be started.
        """
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(slot.thread, slot.start) for slot in self._slots if not slot.alive))

    def health(self) -> ExecutorHealth:
        problems = sorted({slot.problem for slot in self._slots if slot.problem})
        return ExecutorHealth(kind="warm", capacity=self.capacity, alive=sum(slot.alive for slot in self._slots),
                              restarts=self.restarts, warm_launchers=any(slot.warm_launcher for slot in self._slots),
                              problems=problems)

    def worker_pids(self) -> list[int]:
        """The live workers' pids (for tests and diagnostics)."""
        return [slot.process.pid for slot in self._slots if slot.alive and slot.process is not None]

    async def close(self) -> None:
        """Kill every worker (their zygotes and evaluations with them) and sweep their slots. Idempotent.

        The pool can still be used: its next evaluations start fresh workers.
        """
        await asyncio.gather(*(asyncio.to_thread(slot.kill) for slot in self._slots))
        for slot in self._slots:
            slot.process = None
