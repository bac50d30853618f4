"""The ``process`` backend: a fresh process group with rlimits, nothing more.

It isolates little (no file-system or network isolation, no uid switch), so it
must be chosen explicitly. What it does guarantee, like every backend: an
explicit minimal environment (no secrets), a fresh temporary working
directory, rlimits on memory/CPU/file size/open files (set by the harness
before any candidate code runs), a byte cap on captured output, results
through a dedicated pipe, and a wall-clock timeout that kills the whole
process group.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from evolve.sandbox.base import RunOutcome, RunSpec
from evolve.sandbox.supervise import supervise

__all__ = ["ProcessSandbox", "child_environment", "harness_source"]


def harness_source() -> str:
    """Source of the child harness, passed to ``python -c``."""
    return Path(__file__).with_name("harness.py").read_text()


def child_environment(workdir: str) -> dict[str, str]:
    """The complete environment of a sandboxed child: nothing inherited."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


class ProcessSandbox:
    """Runs the harness with ``sys.executable`` in its own session and process group."""

    name = "process"

    def __init__(self, *, python: str | None = None) -> None:
        self._python = python or sys.executable
        self._harness = harness_source()

    async def run(self, spec: RunSpec) -> RunOutcome:
        request = json.loads(spec.request)
        request["code"] = spec.code
        limits_json = json.dumps(asdict(spec.limits))
        workdir = tempfile.mkdtemp(prefix="evolve-run-")
        try:
            return await supervise(
                lambda fd: [self._python, "-I", "-B", "-c", self._harness, str(fd), limits_json],
                stdin=json.dumps(request).encode(),
                env=child_environment(workdir),
                cwd=workdir,
                wall_s=spec.limits.wall_s,
                output_bytes=spec.limits.output_bytes,
                result_bytes=spec.limits.result_bytes,
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
