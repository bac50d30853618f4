"""What a benchmark's whole process tree costs: CPU that sees re-parented processes, and peak PSS beside RSS.

    with TreeAccounting() as accounting:       # once per benchmark process
        with accounting.span() as span:        # once per measured run
            ...
        span.usage.children_cpu_s

Every benchmark measures through this module, and says which method it used
(``Usage.method``):

- ``cgroup``: the benchmark process joins a cgroup of its own in the v1
  ``cpuacct`` hierarchy (``cpuacct/evolve-bench/run-PID-N``), so every process
  it starts from then on is in it, however deep and whoever its parent becomes:
  the sandbox moves a candidate into run cgroups of the ``memory``, ``pids``
  and ``cpu`` hierarchies only, and bwrap's inner process, re-parented to
  init, stays counted. ``cpuacct.usage`` is the tree's CPU; this process's own
  (``RUSAGE_SELF``, the controller) is reported apart and taken off it to give
  the children's. Needs root and a ``cpuacct`` hierarchy mounted apart from
  ``cpu`` (where they share one, the sandbox's own run cgroups would take the
  candidate out of ours). The docker backend's containers are moved into the
  engine's cgroups and are not counted under either method.
- ``rusage``: where no such cgroup can be made. Children's CPU is
  ``RUSAGE_CHILDREN``: only processes reaped by this process or by a reaped
  descendant, so processes re-parented to init (bwrap's sandboxed candidate)
  are missed and the figure is a lower bound; memory walks this process's
  descendants by parent links, which misses them too.

Memory: a sampler process, moved out of the cgroup (so its own CPU is
nobody's), reads ``Pss`` and ``Rss`` from ``/proc/PID/smaps_rollup`` of
every process of the tree (the cgroup's ``cgroup.procs``, or the descendants)
every ``interval_s`` and keeps the peak of each sum over the span. RSS counts
a page shared by six processes six times; PSS splits it among them, so the
PSS sum is what the tree really holds. A process that lives less than one
interval may be missed: the peaks are a sampled lower bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["Span", "TreeAccounting", "Usage", "cgroup_problem"]

_CPUACCT = Path("/sys/fs/cgroup/cpuacct")
_PARENT = "evolve-bench"


@dataclass(frozen=True, slots=True)
class Usage:
    """What one span cost. CPU in seconds; memory in MiB (None where it was not sampled or could not be read)."""

    method: str  # "cgroup" or "rusage"
    wall_s: float
    controller_cpu_s: float  # this process (RUSAGE_SELF), all its threads
    children_cpu_s: float  # every other process of the tree (cgroup), or the reaped ones (rusage)
    reaped_children_cpu_s: float  # RUSAGE_CHILDREN over the same span, for comparison
    peak_pss_mb: float | None
    peak_rss_mb: float | None
    samples: int

    @property
    def tree_cpu_s(self) -> float:
        return self.controller_cpu_s + self.children_cpu_s


class Span:
    """One measured stretch; ``usage`` is set when its ``with`` block ends."""

    def __init__(self) -> None:
        self._usage: Usage | None = None

    @property
    def usage(self) -> Usage:
        if self._usage is None:
            raise RuntimeError("the span has not ended yet")
        return self._usage


def _mount_options(point: Path) -> set[str] | None:
    """The super-block options of the cgroup mount at ``point`` (its controllers), or None when nothing is mounted there."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields, _, tail = line.partition(" - ")
            parts, extra = fields.split(), tail.split()
            if len(parts) > 4 and parts[4] == str(point) and len(extra) == 3 and extra[0] == "cgroup":
                return set(extra[2].split(","))
    return None


def cgroup_problem() -> str | None:
    """Why the ``cgroup`` method cannot be used here, or None when it can."""
    if os.geteuid() != 0:
        return "not root: cannot make a cgroup"
    options = _mount_options(_CPUACCT.resolve())
    if options is None or "cpuacct" not in options:
        return f"no cgroup v1 cpuacct hierarchy at {_CPUACCT}"
    if "cpu" in options:
        return "cpuacct shares its hierarchy with cpu, where the sandbox moves each candidate into a run cgroup of its own"
    return None


def _home() -> Path:
    """The cpuacct cgroup this process sits in now."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            return _CPUACCT / path.lstrip("/")
    raise OSError("this process is in no cpuacct cgroup")


def _sweep(parent: Path) -> None:
    """Remove the empty benchmark cgroups of processes that are gone (a benchmark killed before it cleaned up)."""
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            owner = entry.name.split("-")[1] if entry.name.startswith("run-") else ""
            if entry.is_dir() and owner.isdigit() and not Path(f"/proc/{owner}").exists():
                with contextlib.suppress(OSError):
                    entry.rmdir()


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class TreeAccounting:
    """Accounting of this process and every process it starts, by the best method this host allows (see the module)."""

    _count = 0

    def __init__(self, *, memory: bool = True, interval_s: float = 0.02, use_cgroup: bool = True) -> None:
        """``memory``: sample PSS and RSS; ``interval_s``: how often; ``use_cgroup=False`` forces the ``rusage`` method."""
        self._memory = memory
        self._interval_s = interval_s
        self.why_not_cgroup = cgroup_problem() if use_cgroup else "the cgroup method was not asked for"
        self._cgroup: Path | None = None  # while joined
        self._joined = False  # the cgroup method was used (stays true after the exit, for reports)
        self._home: Path | None = None
        self._sampler: subprocess.Popen[bytes] | None = None
        self._buffer = b""

    @property
    def method(self) -> str:
        return "cgroup" if self._joined else "rusage"

    def describe(self) -> str:
        """One line for a report: the method, and why not the cgroup where it was not used."""
        if self._joined:
            return "cgroup (CPU: cpuacct.usage of a cgroup holding the run's whole process tree, less the controller's own rusage)"
        return f"rusage (children's CPU of reaped processes only, re-parented ones missed: a lower bound; {self.why_not_cgroup})"

    def __enter__(self) -> TreeAccounting:
        if self.why_not_cgroup is None:
            TreeAccounting._count += 1
            cgroup = _CPUACCT / _PARENT / f"run-{os.getpid()}-{TreeAccounting._count}"
            try:
                cgroup.parent.mkdir(exist_ok=True)
                _sweep(cgroup.parent)
                self._home = _home()
                cgroup.mkdir()
                (cgroup / "cgroup.procs").write_text(str(os.getpid()))
                self._cgroup, self._joined = cgroup, True
            except OSError as exc:
                self.why_not_cgroup = f"could not make and join {cgroup}: {exc}"
                with contextlib.suppress(OSError):
                    cgroup.rmdir()
        if self._memory:
            target = str(self._cgroup) if self._cgroup is not None else str(os.getpid())
            self._sampler = subprocess.Popen([sys.executable, "-I", __file__, target, str(self._interval_s)],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self.exclude(self._sampler.pid)  # its own reading of /proc is nobody's cost
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._sampler is not None:
            assert self._sampler.stdin is not None
            self._sampler.stdin.close()
            self._sampler.wait()
            self._sampler = None
        if self._cgroup is not None:
            assert self._home is not None
            (self._home / "cgroup.procs").write_text(str(os.getpid()))
            deadline = time.monotonic() + 5.0
            while True:  # what the tree started may take a moment to exit
                try:
                    self._cgroup.rmdir()
                    break
                except OSError as error:
                    if time.monotonic() > deadline:
                        left = (self._cgroup / "cgroup.procs").read_text().split()
                        print(f"accounting: {self._cgroup} kept ({error}); processes still in it: {left}", file=sys.stderr)
                        break
                    time.sleep(0.05)
            self._cgroup = None

    def exclude(self, pid: int) -> None:
        """Leave a process this benchmark started (a stand-in model) and what it starts later out of the figures."""
        if self._cgroup is not None:
            assert self._home is not None
            (self._home / "cgroup.procs").write_text(str(pid))
        elif self._sampler is not None and pid != self._sampler.pid:  # the sampler leaves itself out
            self._command(f"exclude {pid}")

    def _command(self, line: str) -> None:
        assert self._sampler is not None and self._sampler.stdin is not None
        self._sampler.stdin.write(f"{line}\n".encode())
        self._sampler.stdin.flush()

    def _reply(self) -> dict[str, float]:
        assert self._sampler is not None and self._sampler.stdout is not None
        while b"\n" not in self._buffer:
            chunk = os.read(self._sampler.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError("the memory sampler exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, float] = json.loads(line)
        return reply

    def _tree_cpu_s(self) -> float:
        assert self._cgroup is not None
        return int((self._cgroup / "cpuacct.usage").read_text()) / 1e9

    @contextlib.contextmanager
    def span(self) -> Iterator[Span]:
        """Measure the ``with`` block: wall time, the controller's and the children's CPU, peak memory of the tree."""
        span = Span()
        if self._sampler is not None:
            self._command("start")
            self._reply()  # the first sample is taken: the window is open
        tree0 = self._tree_cpu_s() if self._cgroup is not None else 0.0
        self0, kids0, wall0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
        yield span
        wall = time.perf_counter() - wall0
        self1, kids1 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
        tree = self._tree_cpu_s() - tree0 if self._cgroup is not None else None
        memory: dict[str, float] = {}
        if self._sampler is not None:
            self._command("stop")
            memory = self._reply()
        controller = self1 - self0
        span._usage = Usage(
            method=self.method, wall_s=wall, controller_cpu_s=controller,
            children_cpu_s=max(0.0, tree - controller) if tree is not None else kids1 - kids0,
            reaped_children_cpu_s=kids1 - kids0,
            peak_pss_mb=memory.get("pss_mb"), peak_rss_mb=memory.get("rss_mb"), samples=int(memory.get("samples", 0)),
        )


# --- the sampler process: ``python accounting.py TARGET INTERVAL_S`` (TARGET: a cgroup directory or a root pid) ---

def _pids(target: str, excluded: set[int]) -> list[int]:
    if not target.isdigit():
        with contextlib.suppress(OSError):
            return [int(p) for p in Path(target, "cgroup.procs").read_text().split() if int(p) not in excluded]
        return []
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [int(target)]
    while todo:
        pid = todo.pop()
        if pid not in excluded:
            found.append(pid)
            todo += children.get(pid, [])
    return found


def _sample(target: str, excluded: set[int]) -> tuple[int, int]:
    """Summed PSS and RSS in kB of the target's processes now."""
    pss = rss = 0
    for pid in _pids(target, excluded):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
    return pss, rss


def _sampler_main(target: str, interval_s: float) -> None:
    excluded = {os.getpid()}
    active, peak, samples, buffer = False, [0, 0], 0, b""
    while True:
        ready, _, _ = select.select([0], [], [], interval_s if active else None)
        if not ready:
            pss, rss = _sample(target, excluded)
            peak, samples = [max(peak[0], pss), max(peak[1], rss)], samples + 1
            continue
        chunk = os.read(0, 4096)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            command, *rest = line.decode().split()
            if command == "exclude":
                excluded.add(int(rest[0]))
                continue
            pss, rss = _sample(target, excluded)
            if command == "start":
                active, peak, samples = True, [pss, rss], 1
                reply: dict[str, float] = {}
            else:  # stop
                active, peak, samples = False, [max(peak[0], pss), max(peak[1], rss)], samples + 1
                reply = {"pss_mb": round(peak[0] / 1024, 1), "rss_mb": round(peak[1] / 1024, 1), "samples": samples}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    _sampler_main(sys.argv[1], float(sys.argv[2]))
