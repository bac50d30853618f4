"""Run a child process under supervision: the mechanism every runner shares.

The child gets a dedicated result pipe (its fd number is passed through
``argv_for``), its own session and process group, an explicit environment and
a working directory. The supervisor caps captured stdout+stderr and result
bytes, enforces a wall-clock timeout, and on any exit kills the whole process
group, so no descendant outlives the run and nothing here can hang on a pipe a
survivor holds open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence

from evolve.errors import SandboxError
from evolve.sandbox.base import RunOutcome

__all__ = ["kill_group", "supervise"]

_READ_CHUNK = 1 << 16
_DRAIN_GRACE_S = 0.5


class _Capped:
    """Reads a stream into a buffer, up to a byte budget shared with siblings."""

    def __init__(self, budget: list[int], overflow: asyncio.Event) -> None:
        self.data = bytearray()
        self._budget = budget
        self._overflow = overflow

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_READ_CHUNK):
            room = self._budget[0]
            if room:
                self.data += chunk[:room]
                self._budget[0] = max(0, room - len(chunk))
            if len(chunk) > room:
                self._overflow.set()  # the supervisor kills the run; keep reading to EOF


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


def kill_group(pgid: int) -> None:
    """SIGKILL a whole process group; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


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
    preexec_fn: Callable[[], None] | None = None,
) -> RunOutcome:
    """Start ``argv_for(result_fd)`` and supervise it to the end.

    ``extra_fds`` are inherited by the child as well (e.g. a seccomp program);
    ``preexec_fn`` runs in the child between fork and exec (cgroup, rlimits, uid).

    Raises:
        SandboxError: when the child cannot be started at all.
    """
    read_fd, write_fd = os.pipe()
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        argv = list(argv_for(write_fd))
        proc_transport, protocol = await loop.subprocess_exec(
            lambda: _Protocol(loop),
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            pass_fds=(write_fd, *extra_fds),
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        os.close(read_fd)
        raise SandboxError(f"cannot start {argv[0] if argv else 'the child'}: {exc}") from exc
    finally:
        os.close(write_fd)
    proc = asyncio.subprocess.Process(proc_transport, protocol, loop)

    result_reader = asyncio.StreamReader(limit=_READ_CHUNK)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(result_reader), os.fdopen(read_fd, "rb", buffering=0)
    )
    overflow, result_overflow = asyncio.Event(), asyncio.Event()
    output_budget = [output_bytes]
    out, err = _Capped(output_budget, overflow), _Capped(output_budget, overflow)
    result = _Capped([result_bytes], result_overflow)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    readers = [
        asyncio.ensure_future(out.drain(proc.stdout)),
        asyncio.ensure_future(err.drain(proc.stderr)),
        asyncio.ensure_future(result.drain(result_reader)),
    ]
    waiter = asyncio.ensure_future(protocol.exited.wait())
    stop_events = [asyncio.ensure_future(overflow.wait()), asyncio.ensure_future(result_overflow.wait())]
    timed_out = False
    try:
        proc.stdin.write(stdin)
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        proc.stdin.close()
        done, _ = await asyncio.wait({waiter, *stop_events}, timeout=wall_s, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            timed_out = not done
            kill_group(proc.pid)
        await waiter
    finally:
        kill_group(proc.pid)
        if not waiter.done():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.wait({waiter}, timeout=_DRAIN_GRACE_S)
        await asyncio.wait(readers, timeout=_DRAIN_GRACE_S)
        pending = [*readers, *stop_events, waiter]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        transport.close()
        # A survivor outside the group may still hold the pipes: close our ends.
        proc_transport.close()
    return RunOutcome(
        exit_code=proc_transport.get_returncode(),
        result=bytes(result.data) if result.data and not result_overflow.is_set() else None,
        stdout=bytes(out.data),
        stderr=bytes(err.data),
        timed_out=timed_out,
        output_exceeded=overflow.is_set(),
        result_exceeded=result_overflow.is_set(),
        wall_s=time.monotonic() - started,
    )
