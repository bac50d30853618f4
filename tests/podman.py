"""Serve the docker backend from podman: start ``podman system service`` on a private socket.

Used by the tests and benchmarks on machines with no Docker engine (a test helper: it is not part of the
installed package). The settings podman needs there live in ``podman/containers.conf`` beside this file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from evolve.errors import SandboxError

__all__ = ["CONTAINERS_CONF", "start_podman_service"]

CONTAINERS_CONF = Path(__file__).with_name("podman") / "containers.conf"


def start_podman_service(sock: Path, *, timeout_s: float = 30.0) -> subprocess.Popen[bytes]:
    """Start podman's Docker-compatible API on ``sock``; the caller terminates the process.

    Raises:
        SandboxError: when podman is missing or the service does not come up in time.
    """
    podman = shutil.which("podman")
    if podman is None:
        raise SandboxError("podman is not installed (apt-get install podman runc catatonit)")
    log_path = sock.with_suffix(".log")
    with log_path.open("wb") as log:
        service = subprocess.Popen(
            [podman, "system", "service", "--time=0", f"unix://{sock}"],
            env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}, stdout=log, stderr=log,
            cwd=sock.parent,  # conmon drops an "oom" marker in its working directory when a container is OOM-killed
        )
    deadline = time.monotonic() + timeout_s
    while not sock.exists() and service.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not sock.exists():
        service.kill()
        service.wait()
        raise SandboxError(f"podman system service did not start: {log_path.read_text(errors='replace')[-500:]}")
    return service
