"""Host-side confinement shared by the local backends: cgroups, rlimits, an unprivileged uid.

``Confinement.prepare(limits)`` makes a per-run cgroup (memory and process
caps, where the host lets us create one) and returns the ``preexec_fn`` that
the child runs between fork and exec: join the cgroup, lower the rlimits,
drop supplementary groups and switch to a uid of its own. The uid is derived
from the spawning process id, so two runs in flight at once never share a
uid, and ``RLIMIT_NPROC`` (enforced only for non-root uids) bounds each run on
its own. After the run, ``release()`` kills whatever is left in the cgroup
and removes it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from evolve.sandbox.base import SandboxLimits

__all__ = ["CGROUP_ROOT", "Confinement", "cgroup_layout", "run_uid"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
_GROUP = "evolve"
_UID_BASE = 1_000_000  # far above any account a distribution creates
_SPAWN_SLACK = 4  # bwrap's own monitor and init processes


def run_uid() -> int:
    """The unprivileged uid (and gid) for a run started by this process."""
    return _UID_BASE + os.getpid()


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where per-run cgroups go, and which files carry the two limits."""

    version: int
    memory_parent: Path
    pids_parent: Path


@cache
def cgroup_layout() -> _Layout | None:
    """The writable cgroup hierarchy with memory and pids controllers, or None.

    cgroup v1 (``memory/`` and ``pids/`` mounts) and a unified v2 tree whose
    root offers both controllers are supported. Anything else (no root, a v2
    tree without the memory controller, a read-only /sys) means rlimits only.
    """
    v1_memory, v1_pids = CGROUP_ROOT / "memory", CGROUP_ROOT / "pids"
    if (v1_memory / "memory.limit_in_bytes").exists() and (v1_pids / "cgroup.procs").exists():
        layout = _Layout(1, v1_memory / _GROUP, v1_pids / _GROUP)
    else:
        controllers = CGROUP_ROOT / "cgroup.controllers"
        try:
            offered = set(controllers.read_text().split())
        except OSError:
            return None
        if not {"memory", "pids"} <= offered:
            return None
        layout = _Layout(2, CGROUP_ROOT / _GROUP, CGROUP_ROOT / _GROUP)
    try:
        layout.memory_parent.mkdir(exist_ok=True)
        layout.pids_parent.mkdir(exist_ok=True)
        if layout.version == 2:
            (layout.memory_parent / "cgroup.subtree_control").write_text("+memory +pids")
        probe = _RunCgroup.create(layout, memory_bytes=64 << 20, pids=8)
        probe.release()
    except OSError:
        return None
    return layout


@dataclass(slots=True)
class _RunCgroup:
    dirs: list[Path]

    @classmethod
    def create(cls, layout: _Layout, *, memory_bytes: int, pids: int) -> _RunCgroup:
        name = f"run-{uuid.uuid4().hex[:16]}"
        if layout.version == 1:
            memory, pid_dir = layout.memory_parent / name, layout.pids_parent / name
            memory.mkdir()
            group = cls([memory])
            try:
                pid_dir.mkdir()
                group.dirs.append(pid_dir)
                (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
                (pid_dir / "pids.max").write_text(str(pids))
            except OSError:
                group.release()
                raise
            return group
        unified = layout.memory_parent / name
        unified.mkdir()
        group = cls([unified])
        try:
            (unified / "memory.max").write_text(str(memory_bytes))
            (unified / "pids.max").write_text(str(pids))
            if (unified / "memory.swap.max").exists():
                (unified / "memory.swap.max").write_text("0")
        except OSError:
            group.release()
            raise
        return group

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def release(self) -> None:
        """Kill every process left in the group, then remove it."""
        deadline = time.monotonic() + 2.0
        for directory in self.dirs:
            while directory.exists():
                with contextlib.suppress(OSError):
                    pids = [int(p) for p in (directory / "cgroup.procs").read_text().split()]
                    for pid in pids:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(pid, signal.SIGKILL)
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break  # left for the host to reap; the processes in it are already killed
                    time.sleep(0.01)


@dataclass(slots=True)
class Confinement:
    """The confinement of one run: its cgroup (if any), rlimits and uid switch."""

    limits: SandboxLimits
    uid: int | None
    cgroup: _RunCgroup | None = None
    rlimits: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def prepare(cls, limits: SandboxLimits, *, switch_uid: bool = True) -> Confinement:
        """Create the run's cgroup and compute its rlimits.

        ``switch_uid`` applies only when running as root; an unprivileged
        caller keeps its uid and bounds processes by counting its own.
        """
        is_root = os.geteuid() == 0
        uid = run_uid() if is_root and switch_uid else None
        layout = cgroup_layout() if is_root else None
        cgroup = None
        if layout is not None:
            with contextlib.suppress(OSError):
                cgroup = _RunCgroup.create(layout, memory_bytes=limits.memory_bytes, pids=limits.processes + _SPAWN_SLACK)
        nproc = limits.processes + _SPAWN_SLACK
        if uid is None and not is_root:
            nproc += _count_processes_of(os.getuid())
        rlimits = [
            (resource.RLIMIT_AS, limits.memory_bytes),
            (resource.RLIMIT_CPU, limits.cpu_s),
            (resource.RLIMIT_FSIZE, limits.file_bytes),
            (resource.RLIMIT_NOFILE, limits.open_files),
            (resource.RLIMIT_CORE, 0),
        ]
        if uid is not None or not is_root:
            rlimits.append((resource.RLIMIT_NPROC, nproc))
        return cls(limits=limits, uid=uid, cgroup=cgroup, rlimits=rlimits)

    @property
    def bounded_processes(self) -> bool:
        """Whether the number of processes is bounded (a cgroup, or a non-root uid)."""
        return self.cgroup is not None or any(res == resource.RLIMIT_NPROC for res, _ in self.rlimits)

    def preexec(self) -> Callable[[], None]:
        """The function the child runs before exec. Only async-signal-tolerant calls inside."""
        procs_files = self.cgroup.procs_files() if self.cgroup else []
        rlimits = list(self.rlimits)
        uid = self.uid

        def _child() -> None:
            pid = str(os.getpid()).encode()
            for path in procs_files:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)
            for res, value in rlimits:
                _soft, hard = resource.getrlimit(res)
                if hard != resource.RLIM_INFINITY:
                    value = min(value, hard)
                resource.setrlimit(res, (value, value))
            if uid is not None:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)

        return _child

    def release(self) -> None:
        if self.cgroup is not None:
            self.cgroup.release()


def _count_processes_of(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += 1
    return count
