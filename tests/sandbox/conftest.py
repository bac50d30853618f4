"""Sandbox backends as fixtures: every backend this machine offers, for real.

``docker`` is served by podman's Docker-compatible API, started here on a
private socket. A backend that cannot run is skipped with the reason, unless
``EVOLVE_REQUIRE_BACKENDS`` names it (scripts/test.sh sets it, so CI fails
instead of skipping when an install step is missing).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from evolve.errors import SandboxError
from evolve.sandbox import Sandbox, get_sandbox
from evolve.sandbox.bwrap import bwrap_problem
from tests.podman import start_podman_service
from tests.sandbox.helpers import unavailable

BACKEND_NAMES = ("process", "bwrap", "docker")


@pytest.fixture(scope="session")
def podman_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A podman service speaking the Docker Engine API on a private unix socket."""
    sock = tmp_path_factory.mktemp("podman") / "docker.sock"
    try:
        service = start_podman_service(sock)
    except SandboxError as exc:
        unavailable("docker", str(exc))
    try:
        yield f"unix://{sock}"
    finally:
        service.terminate()
        try:
            service.wait(timeout=10)
        except subprocess.TimeoutExpired:
            service.kill()


@pytest.fixture(scope="session", params=BACKEND_NAMES)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The name of a working backend; for docker, DOCKER_HOST points at the podman service meanwhile."""
    name: str = request.param
    if name == "bwrap" and (why := bwrap_problem()) is not None:
        unavailable(name, why)
    if name != "docker":
        yield name
        return
    url = request.getfixturevalue("podman_url")
    before = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = url
    try:
        try:
            get_sandbox("docker")
        except SandboxError as exc:
            unavailable(name, str(exc))
        yield name
    finally:
        if before is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = before


@pytest.fixture(scope="session")
def sandbox(backend: str) -> Sandbox:
    return get_sandbox(backend)
