"""The ``process`` backend: rlimits, seccomp, a cgroup where possible and an unprivileged uid, nothing more.

It has no file-system or network isolation: a candidate can read what any
user can read and open sockets. So it is never chosen by ``auto``; it must be
asked for by name. What it does guarantee, like every backend: an explicit
minimal environment (no secrets), a fresh temporary working directory, rlimits
on memory/CPU/file size/open files/processes, the seccomp deny-list, a byte cap on captured output,
results through a dedicated pipe, and a wall-clock timeout that kills the
whole process group.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Any

from evolve.sandbox.base import RunOutcome, RunSpec, SandboxSession, SessionSpec
from evolve.sandbox.confine import Confinement
from evolve.sandbox.runtime import sandbox_runtime
from evolve.sandbox.seccomp import bpf_program
from evolve.sandbox.supervise import Spawn

__all__ = [
    "LocalSandbox", "ProcessSandbox", "child_environment", "harness_dict", "harness_settings", "harness_source", "session_setup",
]


def harness_source() -> str:
    """Source of the child harness, passed to ``python -c``."""
    return Path(__file__).with_name("harness.py").read_text()


def harness_settings(spec: RunSpec | SessionSpec, *, result: int | str, paths: list[str], request: str | None = None,
                     seccomp: bool = True) -> str:
    """The harness's one argument: where the result goes, limits, import paths, the request's source, the seccomp filter.

    A ``SessionSpec`` puts the harness in serve mode. ``seccomp=False`` exists only
    for the benchmark's unconfined baseline.
    """
    return json.dumps(harness_dict(spec, result=result, paths=paths, request=request, seccomp=seccomp))


def harness_dict(spec: RunSpec | SessionSpec, *, result: int | str, paths: list[str], request: str | None = None,
                 seccomp: bool = True) -> dict[str, Any]:
    """``harness_settings`` as a dict (the zygote receives it per spawn request)."""
    return {
        "result": result, "limits": asdict(spec.limits), "paths": paths, "request": request,
        "seccomp": _seccomp_text() if seccomp else None, "serve": isinstance(spec, SessionSpec),
    }


@cache
def _seccomp_text() -> str:
    return base64.b64encode(bpf_program()).decode("ascii")


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


def request_with_code(spec: RunSpec) -> bytes:
    """The request JSON with the candidate's code folded in."""
    request = json.loads(spec.request)
    request["code"] = spec.code
    return json.dumps(request).encode()


def session_setup(spec: SessionSpec) -> bytes:
    """The first frame a serving harness reads: the candidate's code and the function its calls go to."""
    return json.dumps({"code": spec.code, "function": spec.function}).encode()


class LocalSandbox:
    """The backends that start the harness on this host: one spawn path (``_spawn``) for runs and sessions."""

    name: str

    def _spawn(self, spec: RunSpec | SessionSpec) -> AbstractContextManager[Spawn]:
        """How to start the harness for ``spec``; leaving the context releases what the start needed."""
        raise NotImplementedError

    def zygote_command(self, control_fd: int) -> tuple[list[str], dict[str, str], tuple[int, ...]]:
        """The argv (before the confinement launcher), environment and extra fds of a zygote (``sandbox.zygote``)."""
        raise NotImplementedError

    def zygote_paths(self) -> list[str]:
        """Where a zygote's children import packages from."""
        raise NotImplementedError

    def zygote_environment(self) -> dict[str, str]:
        """The complete environment of a zygote's child (its work dir is ``/tmp``, a fresh tmpfs)."""
        return child_environment("/tmp")

    def zygote_settings(self, control_fd: int) -> str:
        """The harness argument that makes it a zygote serving ``control_fd``."""
        return json.dumps({"zygote": True, "control": control_fd, "paths": self.zygote_paths()})

    async def run(self, spec: RunSpec) -> RunOutcome:
        """Run one call in a fresh child (see ``Sandbox.run``).

        Raises:
            SandboxError: when the child cannot be started at all.
        """
        with self._spawn(spec) as spawn:
            return await spawn.run(request_with_code(spec), wall_s=spec.limits.wall_s, result_bytes=spec.limits.result_bytes)

    async def session(self, spec: SessionSpec) -> SandboxSession:
        """Start a child serving calls of ``spec.function`` (see ``Sandbox.session``).

        Raises:
            SandboxError: when the child cannot be started at all.
        """
        resources = contextlib.ExitStack()
        spawn = resources.enter_context(self._spawn(spec))
        return await spawn.session(session_setup(spec), wall_s=spec.limits.wall_s, result_bytes=spec.limits.result_bytes,
                                   on_close=resources.close)


class ProcessSandbox(LocalSandbox):
    """Runs the harness in its own session, process group, cgroup and uid."""

    name = "process"

    def __init__(self) -> None:
        self._harness = harness_source()
        runtime = sandbox_runtime()
        self._python = runtime.python
        self._paths = sorted({str(Path(host).parent) for host, _inside in runtime.packages})

    def zygote_command(self, control_fd: int) -> tuple[list[str], dict[str, str], tuple[int, ...]]:
        argv = [self._python, "-I", "-B", "-c", self._harness, self.zygote_settings(control_fd)]
        return argv, child_environment("/tmp"), ()

    def zygote_paths(self) -> list[str]:
        return self._paths

    @contextlib.contextmanager
    def _spawn(self, spec: RunSpec | SessionSpec) -> Iterator[Spawn]:
        workdir = tempfile.mkdtemp(prefix="evolve-run-")
        confinement = Confinement.prepare(spec.limits)
        try:
            if confinement.uid is not None:
                os.chown(workdir, confinement.uid, confinement.uid)
            yield Spawn(
                lambda fd: confinement.command([self._python, "-I", "-B", "-c", self._harness,
                                                harness_settings(spec, result=fd, paths=self._paths)]),
                env=child_environment(workdir),
                cwd=workdir,
                output_bytes=spec.limits.output_bytes,
            )
        finally:
            confinement.release()
            shutil.rmtree(workdir, ignore_errors=True)
