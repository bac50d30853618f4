"""Host-side confinement, on every backend: a CPU share per run and bounded file systems, with and without a cgroup.

"Without a cgroup" is this machine with the cgroup layout switched off in
this process (where the local backends create their cgroups), which is what a
host without a writable memory cgroup gives; the docker backend's limits come
from the engine and do not change.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from evolve.sandbox import Sandbox, SandboxLimits
from evolve.sandbox import confine as confine_module
from evolve.sandbox.base import SHM_BYTES
from evolve.sandbox.confine import cgroup_layout, leftover_cgroups, stale_cgroups
from tests.sandbox.test_backends import run, value_of

BUSY = """\
import os, time

def main(processes, wall):
    read, write = os.pipe()
    for _ in range(processes):
        if os.fork() == 0:
            os.close(read)
            end = time.monotonic() + wall
            while time.monotonic() < end:
                pass
            os.write(write, f"{time.process_time()}\\n".encode())
            os._exit(0)
    os.close(write)
    for _ in range(processes):
        os.wait()
    data = b""
    while chunk := os.read(read, 4096):
        data += chunk
    return {"cpu_s": sum(float(x) for x in data.split()), "processes": len(data.split())}
"""

FILL = """\
import os

def main(places, files):
    written = {}
    for place in places:
        total = 0
        try:
            for i in range(files):
                with open(os.path.join(place, f"fill{i}"), "wb") as out:
                    for _ in range(8):
                        out.write(b"\\0" * (1 << 20))
                        out.flush()
                        total += 1 << 20
        except OSError:
            pass
        written[place] = total
    return written
"""


@pytest.fixture(params=["cgroup", "no cgroup"])
def cgroups(request: pytest.FixtureRequest, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Runs with the host's cgroups, and with none (the local backends' fallback)."""
    if request.param == "cgroup" and sandbox.name != "docker" and cgroup_layout() is None:
        pytest.skip("this host offers no writable cgroup")
    if request.param == "no cgroup":
        if sandbox.name == "docker":
            pytest.skip("the docker backend's limits come from the engine, with or without a host cgroup here")
        monkeypatch.setattr(confine_module, "cgroup_layout", lambda: None)
    yield str(request.param)
    assert not stale_cgroups(), "a run left its cgroup behind"


def test_one_run_gets_one_core_however_many_processes_it_starts(sandbox: Sandbox, cgroups: str) -> None:
    wall = 1.5
    limits = SandboxLimits(wall_s=20, cpu_s=20, processes=16)
    value = value_of(run(sandbox, BUSY, args=[6, wall], limits=limits))
    assert isinstance(value, dict) and value["processes"] == 6, value
    share = value["cpu_s"] / wall
    # six busy processes on a 2-core host take both cores unless the run is held to its share (1 core)
    assert share < 1.25, f"{cgroups}: six busy processes used {share:.2f} cores"


def test_every_writable_place_has_a_size(sandbox: Sandbox, cgroups: str, request: pytest.FixtureRequest) -> None:
    places = ["/", "/dev", "/dev/shm", "/dev/mqueue", "/tmp", "/var/tmp", "/run", "/opt", "/usr", "/proc"]
    files = 256  # 2 GB per place, were there no size
    if sandbox.name == "process":
        request.applymarker(pytest.mark.xfail(strict=True, reason="the process backend has no file-system isolation"))
        places, files = ["."], 5  # its work dir is a host directory: fill it just past the limit
    limits = SandboxLimits(wall_s=30, cpu_s=20, file_bytes=32 << 20, memory_bytes=512 << 20)
    value = value_of(run(sandbox, FILL, args=[places, files], limits=limits))
    assert isinstance(value, dict)
    written = {place: int(n) for place, n in value.items()}
    assert written.get(".", 0) <= limits.file_bytes, written
    assert written["/tmp"] <= limits.file_bytes and written.get("/dev/shm", 0) <= min(limits.file_bytes, SHM_BYTES), written
    assert all(written.get(p, 0) == 0 for p in places if p not in ("/tmp", "/dev/shm")), written
    assert sum(written.values()) <= limits.file_bytes + SHM_BYTES, written


def test_the_run_cgroups_are_removed_after_each_run(sandbox: Sandbox) -> None:
    if sandbox.name == "docker" or cgroup_layout() is None:
        pytest.skip("only the local backends make run cgroups, where the host offers them")
    mine = str(os.getpid())  # runs started here are tagged with this process's pid
    for code in ("def main():\n    return 1\n", "import os\ndef main():\n    os._exit(9)\n",
                 "def main():\n    while True:\n        pass\n"):
        run(sandbox, code, limits=SandboxLimits(wall_s=2, cpu_s=1))
    assert leftover_cgroups(mine) == []
