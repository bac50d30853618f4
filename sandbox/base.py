"""The sandbox interface: run a candidate program's function in isolation.

A backend places the candidate's source in a fresh working directory, runs the
child harness (``harness.py``) with the resource limits, and returns what came
back: the result bytes (from a dedicated channel, never stdout), capped
stdout/stderr, the exit status and whether the wall clock ran out.

A session (``Sandbox.session``) is the same confined child kept alive for many
calls of one function: the candidate's module is loaded once, each call is one
request in and one result out, and the limits (wall clock, CPU time, output
bytes) hold for the session as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

#: the sandbox backends, declared once (evolve.sandbox.BACKENDS, the campaign config and the CLI's choices read it)
Backend = Literal["auto", "bwrap", "docker", "process"]

__all__ = ["SHM_BYTES", "Backend", "RunOutcome", "RunSpec", "Sandbox", "SandboxLimits", "SandboxSession", "SessionSpec"]

#: The size of a sandbox's /dev/shm (capped by the run's ``file_bytes`` too): POSIX
#: semaphores and small shared buffers fit; it is not a second scratch disk.
SHM_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Limits applied to one run. Sizes in bytes, times in seconds."""

    wall_s: float = 30.0
    cpu_s: int = 31
    memory_bytes: int = 1 << 30  # address space (rlimit) and, where cgroups allow, resident memory
    processes: int = 32  # processes and threads of the run
    output_bytes: int = 1 << 20  # stdout + stderr kept; the run is killed past it
    result_bytes: int = 64 << 20  # the returned value, serialized
    result_elements: int = 1_000_000  # JSON elements of the returned value the evaluator will decode (codec.count_elements)
    file_bytes: int = 64 << 20  # largest file, and the size of the scratch directory where it is a tmpfs
    open_files: int = 64
    cpus: float = 1.0  # cores' worth of CPU time for all of the run's processes together


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What to run: the candidate's source and the call to make in it."""

    code: str
    request: bytes  # JSON: {"function": ..., "args": [...], "kwargs": {...}}
    limits: SandboxLimits


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """What a session serves: the candidate's source, the one function its calls go to, and the session's limits."""

    code: str
    function: str
    limits: SandboxLimits  # wall_s, cpu_s and output_bytes hold for the whole session, result_bytes for each call


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What a run produced. ``result`` is None when the child wrote none.

    For one call of a session: ``result`` is that call's envelope, ``stdout``
    and ``stderr`` what the session's output gained since the previous call,
    ``exit_code`` None while the child lives, and ``wall_s`` the round trip.
    """

    exit_code: int | None
    result: bytes | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    output_exceeded: bool
    result_exceeded: bool
    wall_s: float


@runtime_checkable
class Sandbox(Protocol):
    """A backend that runs untrusted code. Must never raise for a bad candidate."""

    name: str

    async def run(self, spec: RunSpec) -> RunOutcome:
        """Run the call described by ``spec``.

        Raises:
            SandboxError: only when the sandbox itself cannot work.
        """
        ...

    async def session(self, spec: SessionSpec) -> SandboxSession:
        """Start a child that loads ``spec.code`` once and serves calls of ``spec.function``.

        The caller must ``close()`` the session, whatever happens.

        Raises:
            SandboxError: only when the sandbox itself cannot work.
        """
        ...


@runtime_checkable
class SandboxSession(Protocol):
    """A live sandboxed child serving calls of one function, one at a time.

    After an outcome without a result (timeout, exit, output or result cap),
    the child is gone and later calls return that at once. Never raises for a
    bad candidate.
    """

    async def call(self, request: bytes) -> RunOutcome:
        """Send one request (JSON: ``{"args": [...], "kwargs": {...}}``) and wait for its result.

        Raises:
            SandboxError: only when the sandbox itself stops working.
        """
        ...

    async def close(self) -> None:
        """Kill the child and everything it started, and release what the session held. Idempotent."""
        ...
