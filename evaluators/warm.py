"""A warm evaluator worker: one per evaluation slot, alive for a whole campaign.

Started by ``evolve.evaluators.pool`` as ``python -I -B -m evolve.evaluators.warm FD``.
Stdin carries frames (4-byte big-endian length, then JSON): first the setup
(the problem's folder, the sandbox backend, the controller's pid, the slot's
largest candidate limits), then one evaluation request per frame. Each answer
leaves on FD as two frames: a JSON header (``id``, ``exit_code``,
``timed_out``, ``stderr``, ``answer_exceeded``) and the evaluation's answer
(the bytes ``evolve.evaluators.worker`` would have written; empty when there is none).

What stays warm, imported once: evolve's evaluator side, NumPy, the problem's
``evaluator.py``, the seccomp program and the sandbox's runtime; and, for the
bwrap and process backends, a zygote in the sandbox (``evolve.sandbox.zygote``)
that forks each candidate call. What is fresh for every evaluation: the
process that runs it, a ``fork()`` of this one that has never run an
evaluation, so nothing one evaluation does (globals, caches, files in its
scratch directory, threads) reaches the next. That process gets its own
process group, soft limits, scratch directory and deadline (the stages'
timeouts and a grace period); past the deadline its whole group is killed.

The worker arms ``PR_SET_PDEATHSIG`` against the controller, and its zygote
dies with it, so a ``kill -9`` of the controller leaves nothing running. It
exits by itself when its own memory grows past ``MEMORY_BOUND`` (the pool
starts a fresh one), and when stdin ends.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import selectors
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from evolve.errors import EvolveError
from evolve.evaluators.worker import answer_bytes, confined_answer_here, die_with, load_evaluator
from evolve.sandbox import Sandbox, SandboxLimits, get_sandbox
from evolve.sandbox.codec import read_frame, write_frames
from evolve.sandbox.confine import RUN_TAG_ENV, sweep
from evolve.sandbox.container import sweep_containers
from evolve.sandbox.process import LocalSandbox
from evolve.sandbox.zygote import Zygote, ZygoteSandbox
from evolve.scratch import owned_tempdir

__all__ = ["MEMORY_BOUND", "main"]

#: Past this resident size (after an evaluation) the worker exits and the pool replaces it.
MEMORY_BOUND = 768 << 20
_GRACE_S = 5.0
_STDERR_BYTES = 256 << 10
_ANSWER_BYTES = 16 << 20


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Worker:
    """The warm state of one slot and the loop that forks one evaluation per request."""

    def __init__(self, setup: dict[str, Any], result_fd: int) -> None:
        self.result_fd = result_fd
        self.pid = os.getpid()
        self.backend = setup["sandbox"]
        self.tag = os.environ.get(RUN_TAG_ENV, str(os.getpid()))
        self.problem_dir = Path(setup["problem_dir"])
        # a sandboxed evaluator is never imported here: each evaluation starts it in a sandbox of its own
        self.confine = bool(setup.get("confine"))
        self.module = None if self.confine else load_evaluator(self.problem_dir)
        self.box: Path | None = None
        if self.confine:  # staged and bubblewrap checked once here, not in every evaluation's fork
            from evolve.evaluators.confined import stage_box
            from evolve.sandbox.bwrap import bwrap_problem

            bwrap_problem()
            self.box = stage_box(self.problem_dir, owned_tempdir("box", tag=self.tag))
        self.limits = SandboxLimits(**setup["limits"])
        self.zygote: Zygote | None = None
        self.zygote_problem: str | None = None
        self.cold: Sandbox | None = None
        self.evaluations = 0
        _preload(self.backend)
        if self.backend != "docker":  # docker starts a container per call; its client is made fresh in each evaluation
            try:
                self.cold = get_sandbox(self.backend)
                from evolve.sandbox.seccomp import bpf_program

                bpf_program()  # compiled once here (pyseccomp's import runs ldconfig twice)
            except EvolveError as exc:
                self.zygote_problem = str(exc)
        self._start_zygote()

    def _start_zygote(self) -> None:
        if not isinstance(self.cold, LocalSandbox) or not setup_allows_zygote():
            return
        try:
            self.zygote = Zygote(self.cold, self.limits, tag=f"{self.tag}z")
        except EvolveError as exc:
            self.zygote, self.zygote_problem = None, str(exc)

    def ready(self) -> dict[str, Any]:
        return {"ready": True, "pid": os.getpid(), "zygote": self.zygote is not None, "zygote_problem": self.zygote_problem}

    def serve(self) -> None:
        gc.freeze()  # the warm state stays out of the collector's way: an evaluation's collections copy none of its pages
        write_frames(self.result_fd, json.dumps(self.ready()).encode())
        while (frame := read_frame(0)) is not None:
            request = {**json.loads(frame), "sandbox": self.backend}
            header, answer = self.evaluate(request)
            write_frames(self.result_fd, json.dumps(header).encode(), answer)
            if self.zygote is not None and not self.zygote.alive():
                self.zygote.close()
                self._start_zygote()  # a fresh one before the next evaluation
            if _resident_bytes() > MEMORY_BOUND:
                break
        if self.zygote is not None:
            self.zygote.close()
        if self.box is not None:
            shutil.rmtree(self.box.parent, ignore_errors=True)

    def evaluate(self, request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """One evaluation in a fresh fork of this process, under its deadline."""
        self.evaluations += 1
        tag = f"{self.tag}e{self.evaluations}"
        scratch = str(owned_tempdir("eval", tag=tag))
        answer_r, answer_w = os.pipe()
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the evaluation: never returns
            self._child(request, tag, scratch, answer_r, answer_w, err_r, err_w)
        os.close(answer_w)
        os.close(err_w)
        wall = sum(float(stage["timeout_s"]) for stage in request["stages"]) + _GRACE_S
        answer, stderr, exceeded, timed_out = _collect(answer_r, err_r, deadline=time.monotonic() + wall)
        if timed_out:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        _pid, status = os.waitpid(pid, 0)
        exit_code = os.waitstatus_to_exitcode(status)
        if timed_out or exit_code != 0:  # killed mid-run: what it left of its own (cgroups of cold runs, containers)
            sweep(tag)
            if self.backend == "docker":
                sweep_containers(tag)
        shutil.rmtree(scratch, ignore_errors=True)
        header = {"id": request.get("id"), "exit_code": exit_code, "timed_out": timed_out,
                  "stderr": stderr.decode("utf-8", errors="replace"), "answer_exceeded": exceeded}
        return header, b"" if exceeded or timed_out else answer

    def _child(self, request: dict[str, Any], tag: str, scratch: str, answer_r: int, answer_w: int, err_r: int,
               err_w: int) -> None:
        code = 1
        try:
            die_with(self.pid)  # a fork does not inherit the worker's death signal: armed again, against the worker
            os.setpgid(0, 0)  # its own group: killed whole at its deadline
            os.close(answer_r)
            os.close(err_r)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)  # the slot's request channel is not the evaluation's
            os.close(devnull)
            os.close(self.result_fd)
            os.dup2(err_w, 1)
            os.dup2(err_w, 2)
            os.close(err_w)
            os.environ[RUN_TAG_ENV] = tag
            os.environ["TMPDIR"] = scratch
            tempfile.tempdir = None
            sandbox: Sandbox | None = None
            if self.cold is not None:
                sandbox = ZygoteSandbox(self.zygote, self.cold) if self.zygote is not None else self.cold
            if self.box is not None:
                data = confined_answer_here(request, sandbox, self.box)
            else:
                data = answer_bytes(request, sandbox, self.module)
            with os.fdopen(answer_w, "wb") as out:
                out.write(data)
            code = 0
        except BaseException:
            with contextlib.suppress(BaseException):
                traceback.print_exc()
        finally:
            os._exit(code)


def _preload(backend: str) -> None:
    """Import now what every evaluation would otherwise import afresh in its fork (it starts from this process)."""
    import asyncio.subprocess  # noqa: F401 - Candidate.call's event loop and its pipes
    import concurrent.futures  # noqa: F401

    if backend == "docker":
        import docker  # noqa: F401 - the SDK and requests: about 0.1 s per evaluation otherwise


def setup_allows_zygote() -> bool:
    """Whether warm launchers are wanted here (``EVOLVE_ZYGOTE=0`` turns them off, for debugging)."""
    return os.environ.get("EVOLVE_ZYGOTE", "1") != "0"


def _collect(answer_fd: int, err_fd: int, *, deadline: float) -> tuple[bytes, bytes, bool, bool]:
    """Read the evaluation's answer and stderr to their ends, within caps and the deadline.

    Returns (answer, stderr tail, answer over its cap, deadline passed).
    """
    answer, stderr = bytearray(), bytearray()
    exceeded = timed_out = False
    with selectors.DefaultSelector() as selector:
        selector.register(answer_fd, selectors.EVENT_READ, answer)
        selector.register(err_fd, selectors.EVENT_READ, stderr)
        open_fds = 2
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _events in selector.select(timeout=left):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fd)
                    open_fds -= 1
                    continue
                buffer: bytearray = key.data
                if buffer is answer:
                    if len(answer) + len(chunk) > _ANSWER_BYTES:
                        exceeded = True
                    else:
                        answer += chunk
                else:
                    stderr += chunk
                    del stderr[:-_STDERR_BYTES]
    os.close(answer_fd)
    os.close(err_fd)
    return bytes(answer), bytes(stderr), exceeded, timed_out


def main() -> None:
    result_fd = int(sys.argv[1])
    setup_frame = read_frame(0)
    if setup_frame is None:
        return
    setup = json.loads(setup_frame)
    if isinstance(setup.get("controller"), int):
        die_with(setup["controller"])
    sys.stdout = sys.stderr  # nothing printed here may reach a channel the pool reads
    with contextlib.suppress(ImportError):
        import numpy  # noqa: F401 - warm for every evaluation
    _Worker(setup, result_fd).serve()


if __name__ == "__main__":
    main()
