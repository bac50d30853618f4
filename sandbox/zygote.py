"""Warm launchers: a zygote inside the sandbox that forks a fresh, confined child per candidate call.

A cold run starts bubblewrap and a Python interpreter for every call (tens of
milliseconds, and NumPy's import on top). A ``Zygote`` is started once per
evaluation slot: the same sandbox (bubblewrap's namespaces, or for the
``process`` backend a host process), confined by the slot's cgroup and uid,
running the harness in zygote mode with NumPy imported. A call sends it one
message on a SOCK_SEQPACKET socket with the run's settings and five fresh
descriptors (stdin, stdout, stderr, result, status); the zygote forks a keeper
that gives the run new user, mount and pid namespaces, fresh sized tmpfs
mounts on ``/tmp`` and ``/dev/shm`` and its own ``/proc``, and forks the run's
init, which drops every capability and installs the limits and the seccomp
filter before any candidate code runs (see ``harness._zygote``). When the
init ends, the kernel kills whatever the candidate left in its namespace.

``ZygoteSandbox`` is the ``Sandbox`` an evaluation uses on top of a zygote:
runs and sessions behave exactly as a cold backend's (the same
``run_child``/``SupervisedSession`` supervision), and a zygote that is gone
(killed, or its slot torn down) makes the call fall back to the cold backend,
so a lost zygote never costs more than speed. The slot that owns the zygote
replaces it before the next evaluation.

The slot's cgroup holds the zygote and the run together: its memory cap is
the largest run's plus ``ZYGOTE_MEMORY``, its process cap the run's plus the
launcher's few, and the run's init raises its own out-of-memory score, so the
kernel's out-of-memory killer takes the candidate, never the zygote. Reusing
that one cgroup avoids a cgroup migration per call (10–15 ms here).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import threading
import time
from typing import Any

from evolve.errors import SandboxError
from evolve.sandbox.base import SHM_BYTES, RunOutcome, RunSpec, Sandbox, SandboxLimits, SandboxSession, SessionSpec
from evolve.sandbox.confine import Confinement
from evolve.sandbox.process import LocalSandbox, harness_dict, request_with_code, session_setup
from evolve.sandbox.supervise import CappedOutput, SupervisedSession, frame, kill_group, run_child, settle

__all__ = ["ZYGOTE_MEMORY", "Zygote", "ZygoteSandbox"]

#: The zygote's share of its slot's memory cap (an interpreter with NumPy loaded, and bubblewrap).
ZYGOTE_MEMORY = 128 << 20
_LAUNCHER_PROCESSES = 3  # the zygote, a run's keeper and its init
_READ_CHUNK = 1 << 16
_GRACE_S = 0.5
_START_S = 30.0


class Zygote:
    """A started zygote of one local backend, confined by its slot's cgroup and uid. Not thread-safe; one slot's."""

    def __init__(self, backend: LocalSandbox, limits: SandboxLimits, *, tag: str) -> None:
        """Start the zygote for runs of at most ``limits`` (the slot's largest).

        Raises:
            SandboxError: when it cannot be started.
        """
        self.backend = backend
        self.limits = limits
        slot = dataclasses.replace(limits, memory_bytes=limits.memory_bytes + ZYGOTE_MEMORY,
                                   processes=limits.processes + _LAUNCHER_PROCESSES)
        self._confinement = Confinement.prepare(slot, tag=tag)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._socket = ours
        try:
            argv, env, extra_fds = backend.zygote_command(theirs.fileno())
            self._process = subprocess.Popen(
                self._confinement.command(argv), env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(), *extra_fds), start_new_session=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            ours.close()
            self._confinement.release()
            raise SandboxError(f"cannot start the {backend.name} zygote: {exc}") from exc
        finally:
            theirs.close()
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        """Whether the zygote still runs (its launcher process has not ended)."""
        return self._process.poll() is None

    def close(self) -> None:
        """Kill the zygote, its runs and everything in the slot's cgroup, and remove the cgroup. Idempotent."""
        with contextlib.suppress(OSError):
            self._socket.close()
        kill_group(self._process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=_START_S)
        self._confinement.release()

    def settings(self, spec: RunSpec | SessionSpec) -> dict[str, Any]:
        """The spawn request's settings for ``spec`` (result on fd 3, the backend's environment)."""
        return {**harness_dict(spec, result=3, paths=self.backend.zygote_paths()),
                "env": self.backend.zygote_environment(), "shm_bytes": SHM_BYTES}

    async def spawn(self, spec: RunSpec | SessionSpec) -> ZygoteChild | None:
        """Ask the zygote for a fresh child for ``spec``; None when the zygote is gone."""
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        result_r, result_w = os.pipe()
        status_host, status_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs = [stdin_r, out_w, err_w, result_w, status_child.fileno()]
        try:
            socket.send_fds(self._socket, [json.dumps(self.settings(spec)).encode()], theirs)
        except OSError:
            for fd in (stdin_w, out_r, err_r, result_r):
                os.close(fd)
            status_host.close()
            return None
        finally:
            for fd in theirs[:4]:
                os.close(fd)
            status_child.close()
        return await ZygoteChild.open(stdin_w, out_r, err_r, result_r, status_host, output_bytes=spec.limits.output_bytes)


class ZygoteChild:
    """One run the zygote forked, seen from the host: the ``ServedChild`` that ``run_child`` and sessions drive.

    Its end is the keeper's status message (``{"exit": code}``, or ``{"error": why}`` when
    the launch itself failed); writing to or closing the status socket kills the run.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.overflow = asyncio.Event()
        budget = [0]
        self.out, self.err = CappedOutput(budget, self.overflow), CappedOutput(budget, self.overflow)
        self.launch_error: str | None = None
        self._exit_code: int | None = None
        self._kill_fd = -1
        self._kill_lock = threading.Lock()
        self._closed = False
        self._transports: list[asyncio.BaseTransport] = []
        self.readers: list[asyncio.Future[Any]] = []
        self.stop_events: list[asyncio.Future[Any]] = []

    @classmethod
    async def open(cls, stdin_w: int, out_r: int, err_r: int, result_r: int, status: socket.socket, *,
                   output_bytes: int) -> ZygoteChild:
        loop = asyncio.get_running_loop()
        child = cls()
        child.out._budget[0] = output_bytes
        child._kill_fd = os.dup(status.fileno())
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), os.fdopen(stdin_w, "wb", buffering=0))
        child._transports.append(transport)
        child.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        streams = []
        for fd in (out_r, err_r, result_r):
            reader = asyncio.StreamReader(limit=_READ_CHUNK)
            read_transport, _ = await loop.connect_read_pipe(lambda r=reader: asyncio.StreamReaderProtocol(r),  # type: ignore[misc]
                                                             os.fdopen(fd, "rb", buffering=0))
            child._transports.append(read_transport)
            streams.append(reader)
        child.result_reader = streams[2]
        child.readers = [asyncio.ensure_future(child.out.drain(streams[0])), asyncio.ensure_future(child.err.drain(streams[1]))]
        status_reader, status_writer = await asyncio.open_unix_connection(sock=status)
        child._status_writer = status_writer
        child.waiter = asyncio.ensure_future(child._wait(status_reader))
        child.stop_events = [asyncio.ensure_future(child.overflow.wait())]
        return child

    async def _wait(self, reader: asyncio.StreamReader) -> None:
        try:
            data = await reader.read()
        except OSError:  # the keeper went away mid-message: the run with it
            data = b""
        try:
            message = json.loads(data) if data else {}
        except ValueError:
            message = {}
        if isinstance(message.get("exit"), int):
            self._exit_code = message["exit"]
        elif isinstance(message.get("error"), str):
            self.launch_error = message["error"][:500]
        else:
            self._exit_code = -9  # the keeper was killed (its zygote went away): the run with it

    @property
    def exit_code(self) -> int | None:
        return self._exit_code

    def kill(self) -> None:
        """Ask the keeper to kill the run (safe from another thread)."""
        with self._kill_lock:
            if self._kill_fd >= 0:
                with contextlib.suppress(OSError):
                    os.write(self._kill_fd, b"k")

    async def close(self, *extra: asyncio.Future[None]) -> None:
        """Kill the run, wait briefly for its end and its output, and release every channel. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.kill()
        await asyncio.wait({self.waiter}, timeout=_GRACE_S)
        await settle([*self.readers, *extra], [*self.stop_events, self.waiter], grace_s=_GRACE_S)
        for transport in self._transports:
            transport.close()
        self._status_writer.close()
        with self._kill_lock:
            os.close(self._kill_fd)
            self._kill_fd = -1

    stdin: asyncio.StreamWriter
    result_reader: asyncio.StreamReader
    waiter: asyncio.Future[Any]
    _status_writer: asyncio.StreamWriter


class ZygoteSandbox:
    """A ``Sandbox`` whose runs and sessions the zygote forks; the cold backend when the zygote is gone."""

    def __init__(self, zygote: Zygote, cold: Sandbox) -> None:
        self._zygote = zygote
        self._cold = cold
        self.name = cold.name

    def _fits(self, limits: SandboxLimits) -> bool:
        slot = self._zygote.limits
        return limits.memory_bytes <= slot.memory_bytes and limits.processes <= slot.processes

    async def run(self, spec: RunSpec) -> RunOutcome:
        """Run one call in a fresh child of the zygote (see ``Sandbox.run``).

        Raises:
            SandboxError: when the zygote could not launch the run.
        """
        child = await self._zygote.spawn(spec) if self._fits(spec.limits) else None
        if child is None:
            return await self._cold.run(spec)
        outcome = await run_child(child, request_with_code(spec), wall_s=spec.limits.wall_s,
                                  result_bytes=spec.limits.result_bytes)
        if child.launch_error is not None:
            raise SandboxError(child.launch_error)
        return outcome

    async def session(self, spec: SessionSpec) -> SandboxSession:
        """Start a child of the zygote serving calls of ``spec.function`` (see ``Sandbox.session``)."""
        child = await self._zygote.spawn(spec) if self._fits(spec.limits) else None
        if child is None:
            return await self._cold.session(spec)
        child.stdin.write(frame(session_setup(spec)))
        return SupervisedSession(child, wall_s=spec.limits.wall_s, result_bytes=spec.limits.result_bytes, on_close=lambda: None)
