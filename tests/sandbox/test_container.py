"""The docker backend when its engine goes away between two requests: the sandbox's failure, never the candidate's.

The engine here is a small Docker Engine API server on a unix socket that answers what the backend's setup asks
(version, info, the root image, the container list) and then vanishes in the middle of a request, as a stopped
podman service does (CI saw it: an evaluation blamed on the candidate for an engine stopped under the campaign).
"""

from __future__ import annotations

import asyncio
import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from evolve.errors import SandboxError
from evolve.evaluators.runner import Evaluator
from evolve.problem import Problem
from evolve.sandbox.container import DockerSandbox

pytest.importorskip("docker")

ANSWERS = {
    "/version": {"ApiVersion": "1.41", "Version": "20.10.0", "MinAPIVersion": "1.12"},
    "/v1.41/info": {"Runtimes": {"runc": {}}, "OperatingSystem": "a vanishing engine"},
    "/v1.41/containers/json": [],
}


class VanishingEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Answers ``ANSWERS`` and the root image's lookups until the ``vanish_at``-th lookup, which it cuts off: the
    connection closes unanswered and the socket file is gone, like a service stopped mid-request."""

    daemon_threads = True

    def __init__(self, path: Path, *, vanish_at: int) -> None:
        self.path, self.vanish_at, self.lookups, self.seen = path, vanish_at, 0, list[str]()
        super().__init__(str(path), _Handler)

    def vanish(self) -> None:
        self.path.unlink(missing_ok=True)
        self.socket.close()


class _Handler(BaseHTTPRequestHandler):
    server: VanishingEngine
    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:
        return "engine"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.server.seen.append(path)
        if path.startswith("/v1.41/images/") and path.endswith("/json"):
            self.server.lookups += 1
            if self.server.lookups >= self.server.vanish_at:
                self.server.vanish()
                self.close_connection = True
                return
            self._answer(200, {"Id": "sha256:" + "0" * 64, "RepoTags": []})
        elif path in ANSWERS:
            self._answer(200, ANSWERS[path])
        else:
            self._answer(404, {"message": f"no {path} here"})

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def vanishing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[VanishingEngine]:
    engine = VanishingEngine(tmp_path / "engine.sock", vanish_at=getattr(request, "param", 1))
    thread = threading.Thread(target=engine.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{engine.path}")
    yield engine
    engine.shutdown()
    engine.server_close()


def test_an_engine_gone_between_two_setup_requests_is_a_sandbox_error(vanishing: VanishingEngine) -> None:
    with pytest.raises(SandboxError, match="Docker engine stopped answering"):
        DockerSandbox()
    assert vanishing.seen[-1].startswith("/v1.41/images/") and not vanishing.path.exists()


@pytest.mark.parametrize("vanishing", [2], indirect=True)  # the controller's own check sees a working engine
@pytest.mark.parametrize("executor", ["warm", "cold"])
def test_an_evaluation_whose_engine_goes_away_blames_the_sandbox_not_the_candidate(
        vanishing: VanishingEngine, quadratic: Problem, tmp_path: Path, executor: str) -> None:
    evaluator = Evaluator(quadratic, problem_dir=tmp_path / "problem", sandbox="docker", executor=executor)
    try:
        with pytest.raises(SandboxError, match="the docker sandbox failed: the Docker engine stopped answering"):
            asyncio.run(evaluator.evaluate(quadratic.initial_program))
    finally:
        asyncio.run(evaluator.close())
    assert vanishing.lookups == 2, vanishing.seen
