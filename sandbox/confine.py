"""Host-side confinement shared by the local backends: cgroups, rlimits, a CPU share, an unprivileged uid.

``Confinement.prepare(limits)`` makes a per-run cgroup (memory and process
caps, and a CPU quota where the host offers the ``cpu`` controller), and
``command(argv)`` puts an exec'd launcher in front of the child's argv: a
shell line that moves itself into the cgroups, then ``setpriv`` dropping
supplementary groups and switching to a uid of its own, then the child. No
``preexec_fn``: the spawning process is never copied with ``fork()`` (a
controller holding a model and an archive in memory paid for that at every
spawn). The rlimits are the harness's to set, before any candidate code runs.
The uid is derived from the spawning process id, so two runs in flight at
once never share a uid, and ``RLIMIT_NPROC`` (enforced only for non-root uids)
bounds each run on its own.

CPU share: a run gets ``limits.cpus`` cores' worth of time, however many
processes it starts: a CFS quota on its own cgroup where the ``cpu``
controller is offered; elsewhere (the documented fallback) the launcher pins
the run to that many cores (``taskset``; the seccomp filter does not let a
candidate undo it with ``sched_setaffinity``) at a lower priority (``nice``
10), so the controller and the other runs keep the rest of the machine.

After the run, ``release()`` kills whatever is left in the cgroups and removes
them. Every run cgroup is named after a *tag* (``EVOLVE_RUN_TAG`` in the
environment, set per evaluation by the controller, else this process's pid),
so ``sweep(tag)`` can remove what a killed evaluator process left behind, and
``sweep_stale()`` what dead owners left.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import shutil
import signal
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from evolve.sandbox.base import SandboxLimits

__all__ = [
    "CGROUP_ROOT", "RUN_TAG_ENV", "Confinement", "cgroup_layout", "leftover_cgroups", "process_alive", "run_tag",
    "run_uid", "stale_cgroups", "sweep", "sweep_stale",
]

CGROUP_ROOT = Path("/sys/fs/cgroup")
RUN_TAG_ENV = "EVOLVE_RUN_TAG"
_GROUP = "evolve"
_UID_BASE = 1_000_000  # far above any account a distribution creates
_SPAWN_SLACK = 4  # bwrap's own monitor and init processes
_CFS_PERIOD_US = 100_000
_FALLBACK_NICE = 10
_RELEASE_S = 5.0
_PID_MAX = 1 << 22  # the kernel's largest pid_max
# argv: the cgroup.procs files, "--", then the command; exit 97 if a cgroup cannot be joined
_JOIN_CGROUPS = 'unset PWD OLDPWD; while [ "$1" != -- ]; do echo $$ > "$1" || exit 97; shift; done; shift; exec "$@"'


def run_uid() -> int:
    """The unprivileged uid (and gid) for a run started by this process."""
    return _UID_BASE + os.getpid()


def run_tag() -> str:
    """This process's run tag: ``EVOLVE_RUN_TAG`` when the controller set one (alphanumeric), else the pid."""
    tag = os.environ.get(RUN_TAG_ENV, "")
    return tag if tag.isalnum() else str(os.getpid())


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where per-run cgroups go: memory and pids parents, and the cpu parent where that controller is offered."""

    version: int
    memory_parent: Path
    pids_parent: Path
    cpu_parent: Path | None = None

    def parents(self) -> list[Path]:
        return list(dict.fromkeys(p for p in (self.memory_parent, self.pids_parent, self.cpu_parent) if p is not None))


@cache
def cgroup_layout() -> _Layout | None:
    """The writable cgroup hierarchy with memory and pids controllers, or None.

    cgroup v1 (``memory/`` and ``pids/`` mounts) and a unified v2 tree whose
    root offers both controllers are supported. Anything else (no root, a v2
    tree without the memory controller, a read-only /sys) means rlimits only.
    """
    v1_memory, v1_pids, v1_cpu = CGROUP_ROOT / "memory", CGROUP_ROOT / "pids", CGROUP_ROOT / "cpu"
    if (v1_memory / "memory.limit_in_bytes").exists() and (v1_pids / "cgroup.procs").exists():
        cpu = v1_cpu / _GROUP if (v1_cpu / "cpu.cfs_quota_us").exists() else None
        layout = _Layout(1, v1_memory / _GROUP, v1_pids / _GROUP, cpu)
    else:
        controllers = CGROUP_ROOT / "cgroup.controllers"
        try:
            offered = set(controllers.read_text().split())
        except OSError:
            return None
        if not {"memory", "pids"} <= offered:
            return None
        unified = CGROUP_ROOT / _GROUP
        layout = _Layout(2, unified, unified, unified if "cpu" in offered else None)
    try:
        for parent in layout.parents():
            parent.mkdir(exist_ok=True)
        if layout.version == 2:
            wanted = "+memory +pids" + (" +cpu" if layout.cpu_parent is not None else "")
            (layout.memory_parent / "cgroup.subtree_control").write_text(wanted)
        probe = _RunCgroup.create(layout, memory_bytes=64 << 20, pids=8, cpus=1.0)
        probe.release()
    except OSError:
        if layout.cpu_parent is None:
            return None
        # the cpu controller is optional: fall back to memory and pids (and the affinity pin for CPU)
        layout = _Layout(layout.version, layout.memory_parent, layout.pids_parent, None)
        try:
            _RunCgroup.create(layout, memory_bytes=64 << 20, pids=8, cpus=1.0).release()
        except OSError:
            return None
    return layout


@dataclass(slots=True)
class _RunCgroup:
    dirs: list[Path]
    has_cpu: bool = False

    @classmethod
    def create(cls, layout: _Layout, *, memory_bytes: int, pids: int, cpus: float, tag: str | None = None) -> _RunCgroup:
        name = f"run-{tag or run_tag()}-{uuid.uuid4().hex[:12]}"
        group = cls([])
        quota = str(max(1000, round(cpus * _CFS_PERIOD_US)))
        try:
            if layout.version == 1:
                memory, pid_dir = layout.memory_parent / name, layout.pids_parent / name
                memory.mkdir()
                group.dirs.append(memory)
                pid_dir.mkdir()
                group.dirs.append(pid_dir)
                (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
                (pid_dir / "pids.max").write_text(str(pids))
                if layout.cpu_parent is not None:
                    cpu = layout.cpu_parent / name
                    cpu.mkdir()
                    group.dirs.append(cpu)
                    (cpu / "cpu.cfs_period_us").write_text(str(_CFS_PERIOD_US))
                    (cpu / "cpu.cfs_quota_us").write_text(quota)
                    group.has_cpu = True
                return group
            unified = layout.memory_parent / name
            unified.mkdir()
            group.dirs.append(unified)
            (unified / "memory.max").write_text(str(memory_bytes))
            (unified / "pids.max").write_text(str(pids))
            if (unified / "memory.swap.max").exists():
                (unified / "memory.swap.max").write_text("0")
            if layout.cpu_parent is not None:
                (unified / "cpu.max").write_text(f"{quota} {_CFS_PERIOD_US}")
                group.has_cpu = True
        except OSError:
            group.release()
            raise
        return group

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def release(self) -> None:
        """Kill every process left in the group, then remove it."""
        for directory in self.dirs:
            _remove_cgroup(directory)


def _remove_cgroup(directory: Path, *, wait_s: float = _RELEASE_S) -> bool:
    """Kill every process in a run cgroup, then remove it; whether it is gone."""
    deadline = time.monotonic() + wait_s
    while True:
        with contextlib.suppress(OSError):
            for pid in (directory / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)
        try:
            directory.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False  # the processes in it are killed; sweep_stale() removes it later
            time.sleep(0.01)


def leftover_cgroups(tag: str | None = None, *, family: bool = False) -> list[Path]:
    """Run cgroups that exist now (of ``tag`` only, if given; with ``family``, of every tag that extends it too)."""
    layout = cgroup_layout() if os.geteuid() == 0 else None
    if layout is None:
        return []
    prefix = "run-" if tag is None else f"run-{tag}" if family else f"run-{tag}-"
    found: list[Path] = []
    for parent in layout.parents():
        with contextlib.suppress(OSError):
            found += [entry for entry in parent.iterdir() if entry.is_dir() and entry.name.startswith(prefix)]
    return found


def sweep(tag: str, *, family: bool = False) -> int:
    """Kill and remove every run cgroup of ``tag`` (what a killed evaluator left); how many were removed.

    With ``family``, also those of the tags made from it (a warm worker's slot ``<tag>z``
    and its evaluations ``<tag>e<n>``).
    """
    return sum(_remove_cgroup(path) for path in leftover_cgroups(tag, family=family))


def _owner(path: Path) -> int | None:
    """The pid in a run cgroup's tag: ``run-<pid>-…`` or, for a controller's per-evaluation tag, ``run-<pid>x<hex>-…``."""
    parts = path.name.split("-")
    owner = parts[1].split("x")[0] if len(parts) > 2 else ""
    return int(owner) if owner.isdigit() else None


def stale_cgroups() -> list[Path]:
    """Run cgroups whose owner (the pid in their tag) is gone: what a killed process left behind."""
    return [path for path in leftover_cgroups() if (owner := _owner(path)) is not None and not process_alive(owner)]


def sweep_stale() -> int:
    """Kill and remove the run cgroups whose owner is gone; how many were removed."""
    return sum(_remove_cgroup(path, wait_s=1.0) for path in stale_cgroups())


def process_alive(pid: int) -> bool:
    """Whether a process of this pid exists (one of another user counts).

    A number that cannot be a pid (anyone can name a directory ``evolve-x-99999999999x0-``) counts
    as alive: the sweeps remove only what they are sure is stale.
    """
    if not 0 < pid <= _PID_MAX:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


@dataclass(slots=True)
class Confinement:
    """The confinement of one run: its cgroup (if any), rlimits and uid switch."""

    limits: SandboxLimits
    uid: int | None
    cgroup: _RunCgroup | None = None
    rlimits: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def prepare(cls, limits: SandboxLimits, *, switch_uid: bool = True, tag: str | None = None) -> Confinement:
        """Create the run's cgroup (named after ``tag``, else ``run_tag()``) and compute its rlimits.

        ``switch_uid`` applies only when running as root; an unprivileged
        caller keeps its uid and bounds processes by counting its own.
        """
        is_root = os.geteuid() == 0
        uid = run_uid() if is_root and switch_uid else None
        layout = cgroup_layout() if is_root else None
        cgroup = None
        if layout is not None:
            with contextlib.suppress(OSError):
                cgroup = _RunCgroup.create(layout, memory_bytes=limits.memory_bytes, pids=limits.processes + _SPAWN_SLACK,
                                           cpus=limits.cpus, tag=tag)
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

    @property
    def cpu_quota(self) -> bool:
        """Whether the run's CPU share is a cgroup quota (else the affinity-and-nice fallback)."""
        return self.cgroup is not None and self.cgroup.has_cpu

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` behind the exec'd launcher that joins the run's cgroups, takes its CPU share and switches uid.

        The launcher is ``/bin/sh`` writing its own pid (which ``exec`` keeps) into each
        ``cgroup.procs``; without a cgroup CPU quota, ``taskset`` and ``nice`` for the
        fallback share (before any seccomp filter, which refuses ``sched_setaffinity``);
        then ``setpriv`` for the uid. Each is left out when not needed.
        """
        prefix: list[str] = []
        if self.cgroup is not None:
            prefix += ["/bin/sh", "-c", _JOIN_CGROUPS, "sh", *self.cgroup.procs_files(), "--"]
        if not self.cpu_quota:
            cores = ",".join(str(core) for core in sorted(_fallback_cores(self.limits.cpus)))
            prefix += [_tool("taskset"), "-c", cores, _tool("nice"), "-n", str(_FALLBACK_NICE)]
        if self.uid is not None:
            prefix += [_tool("setpriv"), f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", "--"]
        return [*prefix, *argv]

    def release(self) -> None:
        if self.cgroup is not None:
            self.cgroup.release()


@cache
def _tool(name: str) -> str:
    """The path of a launcher tool: util-linux's ``setpriv`` and ``taskset``, coreutils' ``nice`` (in every Debian install)."""
    return shutil.which(name) or f"/usr/bin/{name}"


def _fallback_cores(cpus: float) -> set[int]:
    """The cores a run is pinned to without a cpu cgroup: ``ceil(cpus)`` of this process's, chosen by pid."""
    available = sorted(os.sched_getaffinity(0))
    count = min(len(available), max(1, math.ceil(cpus)))
    first = os.getpid() % len(available)
    return {available[(first + i) % len(available)] for i in range(count)}


def _count_processes_of(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += 1
    return count
