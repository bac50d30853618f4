"""The ``bwrap`` backend: bubblewrap namespaces, seccomp, a cgroup, rlimits and an unprivileged uid.

The candidate sees a new root holding a read-only ``/usr`` (the interpreter),
the packages it may import mounted read-only, its own ``/proc`` and a minimal
read-only ``/dev``, a size-capped tmpfs as its working directory (``/tmp``)
and a small one as ``/dev/shm``; the root itself is read-only, so every place
a candidate can write has a size, with or without a memory cgroup. It has no network
(an empty network namespace), no view of other processes (its own pid
namespace, which dies with bubblewrap), no capabilities, an empty
environment, and a seccomp filter against tracing, namespaces and mounts.
Before bubblewrap runs, the host side puts the run in its own cgroup (memory
and process caps), lowers the rlimits and switches to a uid of its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from functools import cache

from evolve.errors import SandboxError
from evolve.sandbox.base import SHM_BYTES, RunSpec, SandboxLimits, SessionSpec
from evolve.sandbox.confine import Confinement
from evolve.sandbox.process import LocalSandbox, child_environment, harness_settings, harness_source
from evolve.sandbox.runtime import SITE_DIR, SandboxRuntime, sandbox_runtime
from evolve.sandbox.seccomp import bpf_fd, bpf_program
from evolve.sandbox.supervise import Spawn

__all__ = ["SANDBOX_ENV", "BwrapSandbox", "bwrap_argv", "bwrap_problem"]

_WORKDIR = "/tmp"
SANDBOX_ENV = {**child_environment(_WORKDIR), "PATH": "/usr/bin"}


def bwrap_argv(bwrap: str, runtime: SandboxRuntime, *, tmpfs_bytes: int, seccomp_fd: int | None,
               binds: Sequence[tuple[str, str]] = ()) -> list[str]:
    """bubblewrap's argv up to the command; ``seccomp_fd`` None: no filter from bwrap (a zygote installs it per child).

    ``binds``: more (host, inside) folders to show read-only (a sandboxed evaluator's modules and problem).
    """
    argv = [
        bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--uid", "65534", "--gid", "65534", "--hostname", "sandbox",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(min(tmpfs_bytes, SHM_BYTES)), "--tmpfs", "/dev/shm",
        "--size", str(tmpfs_bytes), "--tmpfs", _WORKDIR,
    ]
    if runtime.prefix is not None:
        argv += ["--ro-bind", runtime.prefix, runtime.prefix]
    for host, inside in (*runtime.packages, *binds):
        argv += ["--ro-bind", host, inside]
    # The new root and /dev are tmpfs mounts without a size: read-only, so the only
    # writable places are the two sized tmpfs mounts above, cgroup or not.
    argv += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", _WORKDIR, "--clearenv"]
    for key, value in SANDBOX_ENV.items():
        argv += ["--setenv", key, value]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return [*argv, "--"]


@cache
def bwrap_problem() -> str | None:
    """Why bubblewrap cannot run here, or None when it can (checked once per process)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    try:
        runtime = sandbox_runtime()
        bpf_program()
    except SandboxError as exc:
        return str(exc)
    fd = bpf_fd()
    try:
        confinement = Confinement.prepare(SandboxLimits(wall_s=30, cpu_s=10, processes=16))
        try:
            done = subprocess.run(
                confinement.command([*bwrap_argv(bwrap, runtime, tmpfs_bytes=1 << 20, seccomp_fd=fd),
                                     runtime.python, "-I", "-c", "pass"]),
                pass_fds=(fd,), capture_output=True, timeout=30, env={}, check=False,
            )
        finally:
            confinement.release()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap failed to start: {exc}"
    finally:
        os.close(fd)
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip()[-300:]
        return (f"bubblewrap cannot create its namespaces here ({detail}); "
                "unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1)")
    return None


class BwrapSandbox(LocalSandbox):
    """Runs each candidate (each run, or each session) in a fresh bubblewrap sandbox."""

    name = "bwrap"

    def __init__(self) -> None:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxError("the bwrap sandbox is not available: bubblewrap is not installed (apt-get install bubblewrap)")
        self._bwrap = bwrap
        self._runtime = sandbox_runtime()
        self._harness = harness_source()
        self._paths = [SITE_DIR]

    def zygote_command(self, control_fd: int) -> tuple[list[str], dict[str, str], tuple[int, ...]]:
        # no --seccomp here: each child installs the filter itself before any candidate code runs, and the
        # zygote needs the calls the filter refuses (unshare, mount) to give each child its namespaces
        argv = bwrap_argv(self._bwrap, self._runtime, tmpfs_bytes=1 << 20, seccomp_fd=None)
        return [*argv, self._runtime.python, "-I", "-B", "-c", self._harness, self.zygote_settings(control_fd)], {}, ()

    def zygote_paths(self) -> list[str]:
        return self._paths

    def zygote_environment(self) -> dict[str, str]:
        return dict(SANDBOX_ENV)

    @contextlib.contextmanager
    def _spawn(self, spec: RunSpec | SessionSpec) -> Iterator[Spawn]:
        with contextlib.ExitStack() as resources:
            confinement = Confinement.prepare(spec.limits)
            resources.callback(confinement.release)
            seccomp_fd = bpf_fd()
            resources.callback(os.close, seccomp_fd)
            argv = bwrap_argv(self._bwrap, self._runtime, tmpfs_bytes=spec.limits.file_bytes, seccomp_fd=seccomp_fd)
            yield Spawn(
                lambda fd: confinement.command([*argv, self._runtime.python, "-I", "-B", "-c", self._harness,
                                                harness_settings(spec, result=fd, paths=self._paths)]),
                env={},
                cwd="/",
                output_bytes=spec.limits.output_bytes,
                extra_fds=(seccomp_fd,),
            )
