"""Run a child process under supervision: the mechanism every runner shares.

The child gets a dedicated result pipe (its fd number is passed through
``argv_for``), its own session and process group, an explicit environment and
a working directory. The supervisor caps captured stdout+stderr and result
bytes, enforces a wall-clock timeout, and on any exit kills the whole process
group, so no descendant outlives the run and nothing here can hang on a pipe a
survivor holds open.

``supervise`` runs a child to its end with one request on stdin;
``SupervisedSession`` keeps one alive and exchanges framed requests and
results with it (4-byte big-endian length, then the bytes), under the same
caps and one wall clock for the whole session. Both start the child the same
way (``Spawn``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from evolve.errors import SandboxError
from evolve.sandbox.base import RunOutcome

__all__ = ["CappedOutput", "ServedChild", "Spawn", "SupervisedSession", "frame", "kill_group", "run_child", "settle", "supervise"]

_READ_CHUNK = 1 << 16
_DRAIN_GRACE_S = 0.5


class CappedOutput:
    """A stream's bytes kept in a buffer, up to a byte budget shared with siblings; past it, ``overflow`` is set."""

    def __init__(self, budget: list[int], overflow: asyncio.Event) -> None:
        self.data = bytearray()
        self._budget = budget
        self._overflow = overflow

    def add(self, chunk: bytes) -> None:
        room = self._budget[0]
        if room:
            self.data += chunk[:room]
            self._budget[0] = max(0, room - len(chunk))
        if len(chunk) > room:
            self._overflow.set()  # the supervisor kills the run

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_READ_CHUNK):
            self.add(chunk)  # past the budget, keep reading to EOF


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Stream protocol that reports the child's exit as soon as it happens.

    ``Process.wait()`` on Python 3.11 resolves only once every pipe is closed,
    which a daemon holding stdout, or a paused reader, can delay forever.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=_READ_CHUNK, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


class ResultReader(Protocol):
    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes of the result channel; ``asyncio.IncompleteReadError`` at its end."""
        ...


class ServedChild(Protocol):
    """What ``SupervisedSession`` needs of a started child, whatever started it (a local process, a container).

    ``out`` and ``err`` share one output budget; ``overflow`` is set past it. ``waiter``
    resolves when the child has ended, ``stop_events`` when it must be stopped.
    """

    started: float
    stdin: asyncio.StreamWriter
    out: CappedOutput
    err: CappedOutput
    overflow: asyncio.Event
    waiter: asyncio.Future[Any]
    stop_events: list[asyncio.Future[Any]]

    @property
    def result_reader(self) -> ResultReader:
        """The result channel, one frame per call."""
        ...

    @property
    def exit_code(self) -> int | None:
        """The exit status once the child has ended and been reaped (negative: killed by that signal)."""
        ...

    def kill(self) -> None:
        """Kill the child and all it started now; safe to call from another thread."""
        ...

    async def close(self, *extra: asyncio.Future[None]) -> None:
        """Kill the child, wait briefly for its end (and ``extra`` readers) and release its channels. Idempotent."""
        ...


def kill_group(pgid: int) -> None:
    """SIGKILL a whole process group; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def frame(data: bytes) -> bytes:
    """``data`` as one frame of a session: its length as 4 big-endian bytes, then the bytes."""
    return len(data).to_bytes(4, "big") + data


@dataclass(frozen=True, slots=True)
class Spawn:
    """How to start a supervised child: its argv (given the result pipe's fd), environment, directory and output cap.

    ``extra_fds`` are inherited by the child as well (e.g. a seccomp program).
    Nothing runs between fork and exec (no ``preexec_fn``): the spawning process is
    never copied, and confinement happens in an exec'd launcher
    (``Confinement.command``) or in the child itself.
    """

    argv_for: Callable[[int], Sequence[str]]
    env: dict[str, str]
    cwd: str
    output_bytes: int
    extra_fds: Sequence[int] = ()

    async def start(self) -> _Child:
        """Start the child in its own session with piped stdio and a result pipe.

        Raises:
            SandboxError: when the child cannot be started at all.
        """
        read_fd, write_fd = os.pipe()
        loop = asyncio.get_running_loop()
        argv: list[str] = []
        try:
            argv = list(self.argv_for(write_fd))
            proc_transport, protocol = await loop.subprocess_exec(
                lambda: _Protocol(loop),
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.cwd,
                env=self.env,
                pass_fds=(write_fd, *self.extra_fds),
                start_new_session=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            os.close(read_fd)
            raise SandboxError(f"cannot start {argv[0] if argv else 'the child'}: {exc}") from exc
        finally:
            os.close(write_fd)
        result_reader = asyncio.StreamReader(limit=_READ_CHUNK)
        result_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(result_reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        return _Child(proc_transport, protocol, result_transport, result_reader, output_bytes=self.output_bytes)

    async def run(self, stdin: bytes, *, wall_s: float, result_bytes: int) -> RunOutcome:
        """Start the child, give it ``stdin`` and supervise it to the end.

        Raises:
            SandboxError: when the child cannot be started at all.
        """
        return await run_child(await self.start(), stdin, wall_s=wall_s, result_bytes=result_bytes)

    async def session(self, setup: bytes, *, wall_s: float, result_bytes: int,
                      on_close: Callable[[], None]) -> SupervisedSession:
        """Start a child serving a session (the harness in serve mode) and send it ``setup``, its first frame.

        ``on_close`` runs once the child is gone (release the cgroup, remove the work dir);
        it also runs when the start fails.

        Raises:
            SandboxError: when the child cannot be started at all.
        """
        try:
            child = await self.start()
        except BaseException:
            on_close()
            raise
        child.stdin.write(frame(setup))
        return SupervisedSession(child, wall_s=wall_s, result_bytes=result_bytes, on_close=on_close)


async def settle(readers: list[asyncio.Future[Any]], others: list[asyncio.Future[Any]], *, grace_s: float) -> None:
    """Give a child's readers ``grace_s`` to reach the end of their streams, then cancel them and ``others`` and reap all."""
    await asyncio.wait(readers, timeout=grace_s)
    pending = [*readers, *others]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def run_child(child: ServedChild, stdin: bytes, *, wall_s: float, result_bytes: int) -> RunOutcome:
    """Give a started child ``stdin``, supervise it to its end (or the deadline, or a cap) and say what it did."""
    result_overflow = asyncio.Event()
    result = CappedOutput([result_bytes], result_overflow)
    result_reader = asyncio.ensure_future(result.drain(child.result_reader))  # type: ignore[arg-type]
    child.stop_events.append(asyncio.ensure_future(result_overflow.wait()))
    timed_out = False
    try:
        child.stdin.write(stdin)
        with contextlib.suppress(ConnectionError):
            await child.stdin.drain()
        child.stdin.close()
        done, _ = await asyncio.wait({child.waiter, *child.stop_events}, timeout=wall_s, return_when=asyncio.FIRST_COMPLETED)
        if child.waiter not in done:
            timed_out = not done
            child.kill()
        await child.waiter
    finally:
        await child.close(result_reader)
    return RunOutcome(
        exit_code=child.exit_code,
        result=bytes(result.data) if result.data and not result_overflow.is_set() else None,
        stdout=bytes(child.out.data),
        stderr=bytes(child.err.data),
        timed_out=timed_out,
        output_exceeded=child.overflow.is_set(),
        result_exceeded=result_overflow.is_set(),
        wall_s=time.monotonic() - child.started,
    )


class _Child:
    """A started child: its process, the capped readers of its output, and its result channel."""

    def __init__(self, proc_transport: asyncio.SubprocessTransport, protocol: _Protocol,
                 result_transport: asyncio.ReadTransport, result_reader: asyncio.StreamReader, *, output_bytes: int) -> None:
        loop = asyncio.get_running_loop()
        self.proc = asyncio.subprocess.Process(proc_transport, protocol, loop)
        self.started = time.monotonic()
        self.result_reader = result_reader
        self.overflow = asyncio.Event()
        output_budget = [output_bytes]
        self.out, self.err = CappedOutput(output_budget, self.overflow), CappedOutput(output_budget, self.overflow)
        assert self.proc.stdin is not None and self.proc.stdout is not None and self.proc.stderr is not None
        self.stdin = self.proc.stdin
        self.readers = [asyncio.ensure_future(self.out.drain(self.proc.stdout)),
                        asyncio.ensure_future(self.err.drain(self.proc.stderr))]
        self.waiter: asyncio.Future[Any] = asyncio.ensure_future(protocol.exited.wait())
        self.stop_events: list[asyncio.Future[Any]] = [asyncio.ensure_future(self.overflow.wait())]
        self._proc_transport = proc_transport
        self._result_transport = result_transport
        self._closed = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def exit_code(self) -> int | None:
        return self._proc_transport.get_returncode()

    def kill(self) -> None:
        if self.exit_code is None:
            kill_group(self.pid)

    async def close(self, *extra: asyncio.Future[None]) -> None:
        """Kill the group, wait briefly for the exit and the readers, and close every pipe. Idempotent.

        ``extra`` are more readers to give the same grace and then cancel.
        """
        if self._closed:
            return
        self._closed = True
        kill_group(self.pid)
        if not self.waiter.done():
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await asyncio.wait({self.waiter}, timeout=_DRAIN_GRACE_S)
        await settle([*self.readers, *extra], [*self.stop_events, self.waiter], grace_s=_DRAIN_GRACE_S)
        self._result_transport.close()
        # A survivor outside the group may still hold the pipes: close our ends.
        self._proc_transport.close()


async def supervise(
    argv_for: Callable[[int], Sequence[str]],
    *,
    stdin: bytes,
    env: dict[str, str],
    cwd: str,
    wall_s: float,
    output_bytes: int,
    result_bytes: int,
    extra_fds: Sequence[int] = (),
) -> RunOutcome:
    """Start ``argv_for(result_fd)`` and supervise it to the end (see ``Spawn``).

    Raises:
        SandboxError: when the child cannot be started at all.
    """
    spawn = Spawn(argv_for, env, cwd, output_bytes, extra_fds)
    return await spawn.run(stdin, wall_s=wall_s, result_bytes=result_bytes)


class _ResultTooLargeError(Exception):
    """A frame announced more bytes than a result may hold."""


class SupervisedSession:
    """A ``SandboxSession`` over a child running the harness in serve mode (``Spawn.session``, or a container).

    One wall clock for the whole session: a call gets the time left, and a
    watchdog kills the group at the deadline even between calls.
    """

    def __init__(self, child: ServedChild, *, wall_s: float, result_bytes: int, on_close: Callable[[], None]) -> None:
        self._child = child
        self._deadline = child.started + wall_s
        self._result_bytes = result_bytes
        self._on_close: Callable[[], None] | None = on_close
        self._timed_out = self._result_exceeded = self._ended = False
        self._seen_out = self._seen_err = 0
        self._watchdog = threading.Timer(max(0.0, self._deadline - time.monotonic()), self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _expire(self) -> None:
        """The watchdog's end of the session (another thread): kill the group; the next call reports it."""
        self._timed_out = True
        self._child.kill()

    async def _read_result(self) -> bytes | None:
        reader = self._child.result_reader
        try:
            size = int.from_bytes(await reader.readexactly(4), "big")
            if size > self._result_bytes:
                raise _ResultTooLargeError
            return await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            return None

    async def call(self, request: bytes) -> RunOutcome:
        """Send one request and wait for its result, the child's end, an output flood or the deadline.

        Never raises for what the candidate does: an outcome without a result ends the session.
        """
        child = self._child
        started = time.monotonic()
        result: bytes | None = None
        if not self._ended:
            result = await self._exchange(request)
            if result is None:
                await self._end()
        out, err = child.out.data, child.err.data
        stdout, stderr = bytes(out[self._seen_out:]), bytes(err[self._seen_err:])
        self._seen_out, self._seen_err = len(out), len(err)
        return RunOutcome(
            exit_code=child.exit_code,
            result=result,
            stdout=stdout,
            stderr=stderr,
            timed_out=self._timed_out,
            output_exceeded=child.overflow.is_set(),
            result_exceeded=self._result_exceeded,
            wall_s=time.monotonic() - started,
        )

    async def _exchange(self, request: bytes) -> bytes | None:
        child = self._child
        left = self._deadline - time.monotonic()
        if left <= 0 or self._timed_out:
            self._timed_out = True
            return None
        child.stdin.write(frame(request))
        with contextlib.suppress(ConnectionError):
            await child.stdin.drain()
        read = asyncio.ensure_future(self._read_result())
        try:
            done, _ = await asyncio.wait({read, child.waiter, *child.stop_events}, timeout=left,
                                         return_when=asyncio.FIRST_COMPLETED)
            if child.overflow.is_set():
                return None
            if read not in done and child.waiter in done:  # the child ended: its last frame may still be in the pipe
                done, _ = await asyncio.wait({read}, timeout=_DRAIN_GRACE_S)
            if read not in done:
                self._timed_out = self._timed_out or not child.waiter.done()
                return None
            try:
                return read.result()
            except _ResultTooLargeError:
                self._result_exceeded = True
                return None
        finally:
            if not read.done():
                read.cancel()
                await asyncio.gather(read, return_exceptions=True)

    async def _end(self) -> None:
        """The child is done for (or must be): kill it and release its pipes, keeping what it printed."""
        self._ended = True
        self._watchdog.cancel()
        await self._child.close()

    async def close(self) -> None:
        """Kill the child's group and release the session's resources. Idempotent."""
        try:
            await self._end()
        finally:
            if self._on_close is not None:
                on_close, self._on_close = self._on_close, None
                on_close()
