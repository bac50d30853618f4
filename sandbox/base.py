"""The sandbox interface: run a candidate program's function in isolation.

A backend places the candidate's source in a fresh working directory, runs the
child harness (``harness.py``) with the resource limits, and returns what came
back: the result bytes (from a dedicated channel, never stdout), capped
stdout/stderr, the exit status and whether the wall clock ran out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["SHM_BYTES", "RunOutcome", "RunSpec", "Sandbox", "SandboxLimits"]

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
class RunOutcome:
    """What a run produced. ``result`` is None when the child wrote none."""

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
