"""Sandbox cost per evaluation: each backend against a plain subprocess running the same harness.

    .venv/bin/python benchmarks/sandbox_cost.py [--runs 20] [--out benchmarks/results]

For a trivial candidate and one that imports NumPy, it runs the candidate
through every backend this machine offers (docker through a podman service
started here when no DOCKER_HOST is set) and through a plain subprocess: the
same interpreter and harness with no confinement at all. It reports the median
wall time per run, the median CPU time of the process tree where it is
accounted to us (plain and process; bwrap's pid namespace and docker's
containers are not), and the median overhead over the plain subprocess. Results go to ``sandbox_cost.json`` and
``sandbox_cost.md`` under ``--out``. A benchmark, not a test: it reports and
never fails on a slow machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from evolve.errors import SandboxError
from evolve.sandbox import RunOutcome, RunSpec, Sandbox, SandboxLimits, decode_result, get_sandbox
from evolve.sandbox.bwrap import bwrap_problem
from evolve.sandbox.podman import start_podman_service
from evolve.sandbox.process import child_environment, harness_settings, harness_source, request_with_code
from evolve.sandbox.runtime import sandbox_runtime
from evolve.sandbox.supervise import supervise

CANDIDATES = {
    "trivial": "def main():\n    return 1\n",
    "numpy": "import numpy as np\ndef main():\n    return float(np.ones(3).sum())\n",
}
LIMITS = SandboxLimits(wall_s=60, cpu_s=60)


class PlainSubprocess:
    """The baseline: the same harness and interpreter, no confinement, no seccomp, no uid switch."""

    name = "plain subprocess"

    def __init__(self) -> None:
        runtime = sandbox_runtime()
        self._python = runtime.python
        self._paths = sorted({str(Path(host).parent) for host, _ in runtime.packages})
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(sandbox: Sandbox | PlainSubprocess, code: str, runs: int) -> dict[str, float]:
    spec = RunSpec(code=code, request=b'{"function": "main"}', limits=LIMITS)
    run: Callable[[], Coroutine[Any, Any, RunOutcome]] = lambda: sandbox.run(spec)  # noqa: E731
    walls, cpus = [], []
    for i in range(runs + 2):
        cpu0, wall0 = _children_cpu(), time.perf_counter()
        outcome = asyncio.run(run())
        wall, cpu = time.perf_counter() - wall0, _children_cpu() - cpu0
        if outcome.result is None or not decode_result(outcome.result)["ok"]:
            raise SystemExit(f"{sandbox.name}: the candidate failed: exit {outcome.exit_code}, {outcome.stderr[-300:]!r}")
        if i >= 2:  # two warm-up runs: page cache, image lookups
            walls.append(wall)
            cpus.append(cpu)
    return {"wall_ms": 1000 * statistics.median(walls), "cpu_ms": 1000 * statistics.median(cpus)}


def backends(tmp: Path) -> tuple[list[Sandbox | PlainSubprocess], list[str], Callable[[], None]]:
    found: list[Sandbox | PlainSubprocess] = [PlainSubprocess(), get_sandbox("process")]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="measured runs per backend and candidate (after 2 warm-ups)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="evolve-bench-") as tmp:
        found, skipped, cleanup = backends(Path(tmp))
        try:
            rows = []
            for name, code in CANDIDATES.items():
                base: dict[str, float] | None = None
                for sandbox in found:
                    stats = measure(sandbox, code, args.runs)
                    base = base or stats
                    local = sandbox.name in {"plain subprocess", "process"}
                    rows.append({
                        "candidate": name, "backend": sandbox.name, "wall_ms": round(stats["wall_ms"], 1),
                        "cpu_ms": round(stats["cpu_ms"], 1) if local else None,
                        "overhead_ms": round(stats["wall_ms"] - base["wall_ms"], 1),
                        "runs": args.runs,
                    })
                    print(f"{name:8} {sandbox.name:17} wall {stats['wall_ms']:7.1f} ms  overhead {stats['wall_ms'] - base['wall_ms']:+7.1f} ms",
                          file=sys.stderr)
        finally:
            cleanup()
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"machine": f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()}", "skipped": skipped}
    (args.out / "sandbox_cost.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["| candidate | backend | median wall ms | median CPU ms | overhead vs plain ms |", "|---|---|---|---|---|"]
    for r in rows:
        cpu = "—" if r["cpu_ms"] is None else f"{r['cpu_ms']:.1f}"
        lines.append(f"| {r['candidate']} | {r['backend']} | {r['wall_ms']:.1f} | {cpu} | {r['overhead_ms']:+.1f} |")
    if skipped:
        lines.append("")
        lines += [f"skipped: {s}" for s in skipped]
    table = "\n".join(lines) + "\n"
    (args.out / "sandbox_cost.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
