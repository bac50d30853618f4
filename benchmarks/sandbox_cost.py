"""Sandbox cost per evaluation: each backend against a plain subprocess running the same harness.

    .venv/bin/python benchmarks/sandbox_cost.py [--runs 20] [--out benchmarks/results]

For a trivial candidate and one that imports NumPy, it runs the candidate
through every backend this machine offers (docker through a podman service
started here when no DOCKER_HOST is set), through a plain subprocess (the
same interpreter and harness with no confinement at all) and, for scale,
through the bare interpreter (``python -I -B -c pass``, or ``import numpy``: no
harness, no result). The runners go round-robin, one run of each per
repetition (``benchmarks/report.py``), after two discarded warm-up
repetitions. Per runner: wall time per run; its overhead over the plain
subprocess (the median of the per-repetition differences); the CPU of the
processes the run started (``benchmarks/accounting.py``: a cgroup, so bwrap's
re-parented candidate is counted; docker's containers run in the engine's
cgroups, so that column is empty for docker), and this process's own CPU for
the run (spawning, supervising, decoding). Results go to ``sandbox_cost.json``
and ``sandbox_cost.md`` under ``--out``. A benchmark, not a test: it reports
and never fails on a slow machine.

A second table (``sandbox_warm.md``) measures the warm path a campaign uses:
one call through a zygote (``evolve.sandbox.zygote``: a fork per call inside
the bwrap sandbox, or beside the process backend, with fresh namespaces,
mounts, limits and the seccomp filter per call), against the floor of any
warm design, a plain ``fork()`` of a warm interpreter (NumPy imported) that
runs the same candidate and pipes its result back with no confinement at all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.accounting import TreeAccounting
from benchmarks.report import cell, interleave, spread_note, summarize, write_results
from evolve.errors import SandboxError
from evolve.sandbox import RunOutcome, RunSpec, Sandbox, SandboxLimits, decode_result, get_sandbox
from evolve.sandbox.bwrap import bwrap_problem
from evolve.sandbox.process import child_environment, harness_settings, harness_source, request_with_code
from evolve.sandbox.runtime import sandbox_runtime
from evolve.sandbox.supervise import supervise
from tests.podman import start_podman_service

CANDIDATES = {
    "trivial": "def main():\n    return 1\n",
    "numpy": "import numpy as np\ndef main():\n    return float(np.ones(3).sum())\n",
}
LIMITS = SandboxLimits(wall_s=60, cpu_s=60)
WARMUPS = 2


def _package_paths() -> list[str]:
    return sorted({str(Path(host).parent) for host, _ in sandbox_runtime().packages})


class PlainSubprocess:
    """The baseline: the same harness and interpreter, no confinement, no seccomp, no uid switch."""

    name = "plain subprocess"

    def __init__(self) -> None:
        self._python = sandbox_runtime().python
        self._paths = _package_paths()
        self._harness = harness_source()

    async def run(self, spec: RunSpec) -> RunOutcome:
        workdir = tempfile.mkdtemp(prefix="evolve-bench-")
        try:
            return await supervise(
                lambda fd: [self._python, "-I", "-B", "-c", self._harness,
                            harness_settings(spec, result=fd, paths=self._paths, seccomp=False)],
                stdin=request_with_code(spec), env=child_environment(workdir), cwd=workdir, wall_s=spec.limits.wall_s,
                output_bytes=spec.limits.output_bytes, result_bytes=spec.limits.result_bytes,
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


class BareInterpreter:
    """The floor: the sandbox's interpreter running only the candidate's imports (``pass`` or ``import numpy``)."""

    name = "bare interpreter"

    def __init__(self) -> None:
        self._python = sandbox_runtime().python
        self._paths = _package_paths()

    async def run(self, spec: RunSpec) -> RunOutcome:
        body = "import numpy" if "numpy" in spec.code else "pass"
        started = time.monotonic()
        # the harness's flags and environment (one BLAS thread, no bytecode written): only the harness and confinement differ
        proc = await asyncio.create_subprocess_exec(self._python, "-I", "-B", "-c", f"import sys; sys.path[:0] = {self._paths!r}; {body}",
                                                    env=child_environment(tempfile.gettempdir()))
        code = await proc.wait()
        return RunOutcome(exit_code=code, result=None, stdout=b"", stderr=b"", timed_out=False, output_exceeded=False,
                          result_exceeded=False, wall_s=time.monotonic() - started)


WARM_FORK = r"""
import json, os, sys
sys.path[:0] = json.loads(sys.argv[1])
import numpy
while True:
    size = os.read(0, 4)
    if not size:
        break
    request = json.loads(os.read(0, int.from_bytes(size, "big")))
    pid = os.fork()
    if pid == 0:
        namespace = {}
        exec(compile(request["code"], "candidate.py", "exec"), namespace)
        data = json.dumps({"ok": True, "value": namespace[request["function"]]()}).encode()
        os.write(1, len(data).to_bytes(4, "big") + data)
        os._exit(0)
    os.waitpid(pid, 0)
"""


class WarmFork:
    """The warm floor: a plain ``fork()`` of a warm interpreter (NumPy imported) per call, no confinement at all."""

    name = "plain fork of a warm interpreter"

    def __init__(self) -> None:
        import json
        import subprocess

        self._process = subprocess.Popen([sandbox_runtime().python, "-I", "-B", "-c", WARM_FORK, json.dumps(_package_paths())],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_environment(tempfile.gettempdir()))

    async def run(self, spec: RunSpec) -> RunOutcome:
        assert self._process.stdin is not None and self._process.stdout is not None
        started = time.monotonic()
        data = request_with_code(spec)
        self._process.stdin.write(len(data).to_bytes(4, "big") + data)
        self._process.stdin.flush()
        size = int.from_bytes(self._process.stdout.read(4), "big")
        result = self._process.stdout.read(size)
        return RunOutcome(exit_code=0, result=result, stdout=b"", stderr=b"", timed_out=False, output_exceeded=False,
                          result_exceeded=False, wall_s=time.monotonic() - started)

    def close(self) -> None:
        self._process.kill()
        self._process.wait()


Runner = Sandbox | PlainSubprocess | BareInterpreter | WarmFork


def backends(tmp: Path) -> tuple[list[Runner], list[str], Callable[[], None]]:
    """The plain subprocess first, then every backend that works here; what was skipped and why; how to clean up."""
    found: list[Runner] = [PlainSubprocess(), get_sandbox("process")]
    skipped: list[str] = []
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    if (why := bwrap_problem()) is None:
        found.append(get_sandbox("bwrap"))
    else:
        skipped.append(f"bwrap: {why}")
    try:
        if "DOCKER_HOST" not in os.environ:
            service = start_podman_service(tmp / "docker.sock")
            os.environ["DOCKER_HOST"] = f"unix://{tmp / 'docker.sock'}"
            cleanup = service.terminate
        found.append(get_sandbox("docker"))
    except SandboxError as exc:
        skipped.append(f"docker: {exc}")
    return found, skipped, cleanup


def _once(runner: Runner, spec: RunSpec, accounting: TreeAccounting) -> dict[str, float]:
    with accounting.span() as span:
        outcome = asyncio.run(runner.run(spec))
    ok = outcome.exit_code == 0 if isinstance(runner, BareInterpreter) else outcome.result is not None and decode_result(outcome.result)["ok"]
    if not ok:
        raise SystemExit(f"{runner.name}: the candidate failed: exit {outcome.exit_code}, {outcome.stderr[-300:]!r}")
    u = span.usage
    return {"wall_ms": 1000 * u.wall_s, "children_cpu_ms": 1000 * u.children_cpu_s, "controller_cpu_ms": 1000 * u.controller_cpu_s}


def warm_runners() -> tuple[list[Runner], list[Any]]:
    """The warm floor, then a zygote per local backend that works here; and the zygotes, to close."""
    from evolve.sandbox.process import LocalSandbox
    from evolve.sandbox.zygote import Zygote, ZygoteSandbox

    runners: list[Runner] = [WarmFork()]
    zygotes: list[Any] = []
    for name in ("process", "bwrap"):
        if name == "bwrap" and bwrap_problem() is not None:
            continue
        cold = get_sandbox(name)
        assert isinstance(cold, LocalSandbox)
        zygote = Zygote(cold, LIMITS, tag=f"{os.getpid()}xbench{name}")
        zygotes.append(zygote)
        sandbox = ZygoteSandbox(zygote, cold)
        sandbox.name = f"zygote ({name})"
        runners.append(sandbox)
    return runners, zygotes


def _rows(candidate: str, runners: list[Runner], runs: list[list[dict[str, float]]]) -> list[dict[str, Any]]:
    plain = runs[0]
    rows: list[dict[str, Any]] = []
    for runner, samples in zip(runners, runs, strict=True):
        rows.append({
            "candidate": candidate, "backend": runner.name, "runs": len(samples),
            "wall_ms": summarize([s["wall_ms"] for s in samples]),
            "overhead_ms": summarize([s["wall_ms"] - p["wall_ms"] for s, p in zip(samples, plain, strict=True)]),
            "children_cpu_ms": summarize([s["children_cpu_ms"] for s in samples]) if runner.name != "docker" else {"n": 0},
            "controller_cpu_ms": summarize([s["controller_cpu_ms"] for s in samples]),
        })
        print(f"{candidate:8} {runner.name:17} wall {rows[-1]['wall_ms']['median']:7.1f} ms  overhead "
              f"{rows[-1]['overhead_ms']['median']:+7.1f} ms  children CPU {rows[-1]['children_cpu_ms'].get('median', '—')} ms",
              file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help=f"measured runs per backend and candidate (after {WARMUPS} warm-up repetitions)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="evolve-bench-") as tmp:
        found, skipped, cleanup = backends(Path(tmp))  # a podman service starts here, outside the accounting's tree
        runners: list[Runner] = [*found, BareInterpreter()]
        warm_rows: list[dict[str, Any]] = []
        try:
            with TreeAccounting(memory=False) as accounting:
                method = accounting.describe()
                for candidate, code in CANDIDATES.items():
                    spec = RunSpec(code=code, request=b'{"function": "main"}', limits=LIMITS)
                    runs = interleave(runners, lambda r, spec=spec: _once(r, spec, accounting), runs=args.runs, warmups=WARMUPS)  # type: ignore[misc]
                    rows += _rows(candidate, runners, runs)
                warm, zygotes = warm_runners()  # started inside the accounted tree: their calls are counted
                try:
                    for candidate, code in CANDIDATES.items():
                        spec = RunSpec(code=code, request=b'{"function": "main"}', limits=LIMITS)
                        runs = interleave(warm, lambda r, spec=spec: _once(r, spec, accounting), runs=5 * args.runs,  # type: ignore[misc]
                                          warmups=WARMUPS)
                        warm_rows += _rows(candidate, warm, runs)
                finally:
                    for zygote in zygotes:
                        zygote.close()
                    warm[0].close()  # type: ignore[union-attr]
        finally:
            cleanup()
    lines = [f"One run of each per repetition, round-robin, after {WARMUPS} warm-up repetitions; {spread_note(args.runs)}. "
             "Overhead: the per-repetition difference from the plain subprocess. Children CPU: every process the run started "
             "(docker's containers run in the engine's cgroups: not counted); controller CPU: this process's own for the run.",
             "", "| candidate | runner | wall ms | overhead vs plain ms | children CPU ms | controller CPU ms |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        overhead = "—" if r["backend"] == "plain subprocess" else cell(r["overhead_ms"], signed=True)
        lines.append(f"| {r['candidate']} | {r['backend']} | {cell(r['wall_ms'])} | {overhead} | {cell(r['children_cpu_ms'])} | "
                     f"{cell(r['controller_cpu_ms'])} |")
    lines += ["", f"Accounting: {method}."]
    if skipped:
        lines += ["", *[f"Skipped: {s}." for s in skipped]]
    warm_lines = [f"One call of each per repetition, round-robin, after {WARMUPS} warm-up repetitions; {spread_note(5 * args.runs)}. "
                  "Overhead: the per-repetition difference from a plain fork() of a warm interpreter (NumPy imported, no "
                  "confinement). Children CPU: every process of the run (the zygote's fork, its keeper and the candidate); "
                  "controller CPU: this process's own (the request, supervision, a fresh event loop per call as an evaluator's "
                  "`candidate.call` has).",
                  "", "| candidate | runner | wall ms | overhead vs warm fork ms | children CPU ms | controller CPU ms |",
                  "|---|---|---|---|---|---|"]
    for r in warm_rows:
        overhead = "—" if r["backend"] == WarmFork.name else cell(r["overhead_ms"], signed=True)
        warm_lines.append(f"| {r['candidate']} | {r['backend']} | {cell(r['wall_ms'])} | {overhead} | {cell(r['children_cpu_ms'])} | "
                          f"{cell(r['controller_cpu_ms'])} |")
    meta = {"runs": args.runs, "warmups": WARMUPS, "skipped": skipped, "accounting": method}
    write_results(args.out, "sandbox_cost", {"meta": meta, "rows": rows, "warm": warm_rows},
                  {"sandbox_cost": lines, "sandbox_warm": warm_lines})


if __name__ == "__main__":
    main()
