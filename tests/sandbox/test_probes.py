"""Abuse probes: hostile candidates, run through the real evaluator on every backend this machine offers.

Each probe is a candidate program. It must end with a non-OK status (a probe
returns a value only when its attack worked, which the evaluator would score
OK), and the host is checked from outside afterwards: no connection reached
the listener, no file appeared, the sibling lives, nothing the probe started
is still running, the evaluator's files are unchanged, the disk is not full.

The ``process`` backend isolates no file system or network, by design (it is
never chosen unless asked for); the probes it cannot stop are marked as
expected failures, strictly, so this list stays the truth.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from evolve.evaluators.runner import Evaluator
from evolve.problem import load_problem
from evolve.values import EvalStatus
from tests.conftest import write_problem
from tests.sandbox.helpers import SET_NAME, processes_named

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "test-output"

PROBE_YAML = """\
name: probe
description: A hostile candidate's playground.
objective:
  metric: score
features:
  - name: code_length
    min: 0
    max: 10000
    bins: 4
limits:
  timeout_s: 4
  cpu_s: 2
  memory_mb: 512
  processes: 16
  output_bytes: 65536
"""

PROBE_EVALUATOR = """\
def evaluate(candidate):
    leaked = candidate.call("probe")
    return {"metrics": {"score": 1.0}, "artifacts": {"leaked": repr(leaked)[:2000]}}
"""

SECRET = "sk-probe-4a1f9c0e7d2b"


@dataclass
class Host:
    """What the probes aim at, and the means to check the damage from outside."""

    token: str
    port: int
    db: Path
    evaluator: Path
    sibling: subprocess.Popen[bytes]
    accepted: list[str] = field(default_factory=list)

    def outside_paths(self) -> list[Path]:
        return [Path("/tmp") / self.token, Path("/dev/shm") / self.token, REPO / self.token, OUTPUT / self.token]

    def context(self) -> dict[str, object]:
        return {
            "token": self.token, "port": self.port, "db": str(self.db), "evaluator": str(self.evaluator),
            "sibling": self.sibling.pid, "paths": [str(p) for p in self.outside_paths()], "secret_prefix": SECRET[:9],
            "numpy_init": str(Path(np.__file__)), "test_pid": __import__("os").getpid(),
        }


@dataclass(frozen=True)
class Probe:
    name: str
    code: str  # body of probe(); formatted with Host.context()
    expect: frozenset[EvalStatus] = frozenset({EvalStatus.ERROR})
    process_leaks: bool = False  # the process backend does not stop this one (no fs/net isolation)
    harmless: Callable[[Host], str | None] = lambda host: None  # a host check: a complaint, or None


def _no_outside_files(host: Host) -> str | None:
    made = [str(p) for p in host.outside_paths() if p.exists()]
    return f"files appeared outside the work directory: {made}" if made else None


def _no_survivors(host: Host) -> str | None:
    time.sleep(0.5)
    alive = processes_named(host.token)
    return f"processes started by the probe are still running: {alive}" if alive else None


def _no_connection(host: Host) -> str | None:
    return f"the listener on 127.0.0.1 accepted a connection from {host.accepted}" if host.accepted else None


def _sibling_alive(host: Host) -> str | None:
    return None if host.sibling.poll() is None else f"the sibling process died (exit {host.sibling.returncode})"


def _evaluator_untouched(host: Host) -> str | None:
    if hashlib.sha256(host.evaluator.read_bytes()).hexdigest() != hashlib.sha256(PROBE_EVALUATOR.encode()).hexdigest():
        return "the evaluator's file was modified"
    return None


PROBES = [
    Probe("connect_to_loopback", """
        import socket
        with socket.create_connection(("127.0.0.1", {port}), timeout=2) as conn:
            conn.sendall(b"hello from the sandbox")
        return "connected"
    """, process_leaks=True, harmless=_no_connection),
    Probe("read_etc_shadow", """
        return open("/etc/shadow").read()
    """),
    Probe("read_the_campaign_database", """
        return open({db!r}, "rb").read()[:200].decode(errors="replace")
    """, process_leaks=True),
    Probe("write_outside_the_work_dir", """
        wrote = []
        for path in {paths!r}:
            try:
                with open(path, "w") as out:
                    out.write("escaped")
                wrote.append(path)
            except OSError:
                pass
        raise RuntimeError(f"wrote {{wrote}} (harmless only if these were private to the sandbox)")
    """, process_leaks=True, harmless=_no_outside_files),
    Probe("bounded_fork_bomb", """
        import os, time
        children = 0
        for _ in range(300):
            pid = os.fork()
            if pid == 0:
                """ + SET_NAME.replace("\n", "\n                ") + """time.sleep(20)
                os._exit(0)
            children += 1
        return f"forked {{children}} processes"
    """, harmless=_no_survivors),
    Probe("allocate_10_gb", """
        blocks = [bytearray(1 << 30) for _ in range(10)]
        return sum(len(b) for b in blocks)
    """),
    Probe("cpu_loop", """
        while True:
            pass
    """, expect=frozenset({EvalStatus.ERROR, EvalStatus.TIMEOUT})),
    Probe("sleep_past_the_timeout", """
        import time
        time.sleep(60)
        return "woke up"
    """, expect=frozenset({EvalStatus.TIMEOUT})),
    Probe("flood_1_gb_to_stdout", """
        import sys
        chunk = "x" * (1 << 20)
        for _ in range(1024):
            sys.stdout.write(chunk)
        return "flooded"
    """),
    Probe("double_forked_daemon", """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                """ + SET_NAME.replace("\n", "\n                ") + """time.sleep(30)
            os._exit(0)
        time.sleep(0.3)
        raise RuntimeError("daemon started")
    """, harmless=_no_survivors),
    Probe("kill_or_trace_a_sibling", """
        import ctypes, os, signal
        try:
            os.kill({sibling}, signal.SIGKILL)
            return "killed the sibling"
        except OSError:
            pass
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.ptrace(16, {sibling}, 0, 0) == 0:  # PTRACE_ATTACH
            return "attached to the sibling"
        raise PermissionError("the sibling is out of reach")
    """, harmless=_sibling_alive),
    Probe("read_an_api_key_from_the_environment", """
        import os
        found = [v for v in os.environ.values() if v.startswith({secret_prefix!r})]
        for pid in ("self", "1", {test_pid!r}):
            try:
                data = open(f"/proc/{{pid}}/environ", "rb").read().decode(errors="replace")
            except OSError:
                continue
            found += [part for part in data.split("\\0") if {secret_prefix!r} in part]
        if found:
            return found
        raise KeyError("no key in sight")
    """),
    Probe("ctypes_ptrace_unshare_mount", """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        escaped = []
        if libc.unshare(0x10000000) == 0:  # CLONE_NEWUSER
            escaped.append("unshare(CLONE_NEWUSER)")
        if libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) == 0:
            escaped.append("mount")
        if libc.ptrace(16, 1, 0, 0) == 0:  # PTRACE_ATTACH to pid 1
            escaped.append("ptrace")
        if escaped:
            return escaped
        raise PermissionError("all three were refused")
    """),
    Probe("fill_the_disk", """
        import os
        written = 0
        for i in range(32):
            with open(f"fill{{i}}", "wb") as out:
                for _ in range(32):
                    out.write(b"\\0" * (1 << 20))
                    written += 1 << 20
        return f"wrote {{written >> 20}} MB"
    """, process_leaks=True),
    Probe("tamper_with_the_evaluator_and_numpy", """
        changed = []
        for path in ({evaluator!r}, {numpy_init!r}):
            try:
                with open(path, "a") as out:
                    out.write("\\n# tampered\\n")
                changed.append(path)
            except OSError:
                pass
        if changed:
            return changed
        raise PermissionError("read-only")
    """, harmless=_evaluator_untouched),
]


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    token = f"ev{uuid.uuid4().hex[:10]}"
    OUTPUT.mkdir(exist_ok=True)
    db = OUTPUT / f"probe-{token}.db"
    db.write_bytes(b"SQLite format 3\0 campaign secrets")
    db.chmod(0o644)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    sibling = subprocess.Popen(["sleep", "120"])
    state = Host(token=token, port=listener.getsockname()[1], db=db, evaluator=tmp_path / "problem" / "evaluator.py", sibling=sibling)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, peer = listener.accept()
            except (TimeoutError, OSError):
                continue
            state.accepted.append(f"{peer[0]}:{peer[1]}")
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join()
        listener.close()
        sibling.kill()
        sibling.wait()
        db.unlink(missing_ok=True)
        for path in state.outside_paths():
            path.unlink(missing_ok=True)


def _program(probe: Probe, host: Host) -> str:
    body = textwrap.indent(textwrap.dedent(probe.code).strip().format(**host.context()), "    ")
    return f"# EVOLVE-BLOCK-START\ndef probe():\n{body}\n# EVOLVE-BLOCK-END\n"


@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_probe_is_stopped_and_the_host_unharmed(probe: Probe, backend: str, host: Host, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    if backend == "process" and probe.process_leaks:
        request.applymarker(pytest.mark.xfail(strict=True, reason="the process backend has no file-system or network isolation"))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    problem = load_problem(write_problem(tmp_path / "source", yaml=PROBE_YAML, evaluator=PROBE_EVALUATOR))
    evaluator = Evaluator(problem, problem_dir=tmp_path / "problem", sandbox=backend)
    disk_before = shutil.disk_usage("/").free
    started = time.monotonic()
    result = asyncio.run(evaluator.evaluate(_program(probe, host)))
    elapsed = time.monotonic() - started
    assert result.status in probe.expect, f"{probe.name} ended {result.status.value}: {result.artifacts}"
    assert elapsed < problem.config.limits.timeout_s + 8, f"the run took {elapsed:.1f} s"
    assert SECRET not in repr(result.artifacts)
    complaints = [c for c in (probe.harmless(host), _no_outside_files(host), _sibling_alive(host)) if c]
    assert shutil.disk_usage("/").free > disk_before - (256 << 20), "the disk lost more than 256 MB"
    assert not complaints, complaints
