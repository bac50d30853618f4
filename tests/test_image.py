"""The Dockerfile builds, and the image runs a campaign and serves the API, with podman and no registry.

No image registry is reachable here, so the Debian 12 base is made from Debian's own packages with
debootstrap (cached as a local image after the first build). The build gets the host's pip cache, so a
machine that ran scripts/install.sh does not compile llama.cpp a second time; everything else is the
Dockerfile as a user builds it. Slow: a first build takes several minutes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.podman import CONTAINERS_CONF

REPO = Path(__file__).resolve().parents[1]
BASE = "localhost/evolve-test-debian:12"
IMAGE = "localhost/evolve-test-image:latest"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# what bubblewrap needs inside a container (the Dockerfile's header says why); podman's form of systempaths=unconfined
SANDBOX_OPTS = ["--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined", "--security-opt", "unmask=ALL",
                # explicit limits: podman's defaults raise them, which fails where even root lacks CAP_SYS_RESOURCE
                "--ulimit", "nproc=4096:4096", "--ulimit", "nofile=1024:1024"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def podman(*args: str, timeout: float, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=env, **kw)  # type: ignore[call-overload]
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} failed ({result.returncode}): {result.stderr[-4000:]}")
    return result  # type: ignore[no-any-return]


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (the one package registry it reaches)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file() and (found := re.search(r"^URIs:\s*(\S+/debian)\s*$", sources.read_text(), re.MULTILINE)):
        return found.group(1)
    return "http://deb.debian.org/debian"


def debian_base(tmp: Path) -> None:
    """A minimal Debian 12 image from Debian's packages, imported into podman once."""
    if podman("image", "exists", BASE, timeout=60, check=False).returncode == 0:
        return
    root = tmp / "rootfs"
    subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(root), debian_mirror()], check=True, timeout=1800,
                   capture_output=True)
    (root / "etc/apt/sources.list").write_text(f"deb {debian_mirror()} bookworm main\n")
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    podman("import", "-", BASE, timeout=600, stdin=tar.stdout)
    assert tar.wait() == 0
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("podman") is None or shutil.which("debootstrap") is None:
        pytest.fail("the image test needs podman and debootstrap (scripts/install.sh --dev installs both)")
    debian_base(tmp_path_factory.mktemp("base"))
    cache = Path.home() / ".cache" / "pip"
    cache.mkdir(parents=True, exist_ok=True)
    # this machine reaches PyPI through a TLS-intercepting proxy: pip in the build trusts what the host trusts
    ca = ["--volume", f"{HOST_CA}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"] if HOST_CA.is_file() else []
    podman("build", "--build-arg", f"BASE={BASE}", "--network", "host", "--volume", f"{cache}:/root/.cache/pip", *ca,
           "--tag", IMAGE, "--file", str(REPO / "Dockerfile"), str(REPO), timeout=3000)
    yield IMAGE
    podman("rmi", "--force", IMAGE, timeout=300, check=False)


def test_the_image_runs_a_campaign_with_the_mutator(image: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    run = podman("run", "--rm", "--network", "none", *SANDBOX_OPTS, "--volume", f"{data}:/data", image,
                 "run", "circle_packing", "--model", "mutator", "--iterations", "20", timeout=900, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "sandbox: bwrap" in run.stderr and "finished, 20/20 iterations" in run.stdout
    status = podman("run", "--rm", "--network", "none", *SANDBOX_OPTS, "--volume", f"{data}:/data", image, "status", "--json",
                    timeout=300)
    assert json.loads(status.stdout)[0]["iterations_done"] == 20
    assert (data / "evolve.db").is_file()  # the campaign landed in the volume


def test_the_image_serves_the_api(image: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "image-test-token-0123456789"
    name = f"evolve-serve-{port}"
    podman("run", "--detach", "--name", name, "--network", "host", *SANDBOX_OPTS, "--env", f"EVOLVE_API_TOKEN={token}", image,
           "serve", "--host", "127.0.0.1", "--port", str(port), "--db", "/tmp/served.db", timeout=300)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/problems", headers={"Authorization": f"Bearer {token}"})
                with urllib.request.urlopen(request, timeout=5) as answer:
                    problems = json.loads(answer.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    logs = podman("logs", name, timeout=60, check=False)
                    raise AssertionError(f"the server in the image never answered: {logs.stderr[-3000:]}") from None
                time.sleep(1)
        assert "circle_packing" in {p["id"] for p in problems}
    finally:
        podman("rm", "--force", name, timeout=120, check=False)
