"""A real application (real SQLite store, real sandbox) driven in-process, and problem payloads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from evolve.server import ServerSettings, create_app
from tests.conftest import QUADRATIC_EVALUATOR, QUADRATIC_PROGRAM, QUADRATIC_YAML

TOKEN = "test-token-0123456789abcdef"
#: where in-process clients send requests: a loopback name, as a local browser or script does
BASE_URL = "http://127.0.0.1"


def quadratic_payload(**changes: Any) -> dict[str, Any]:
    import yaml

    return {"config": yaml.safe_load(QUADRATIC_YAML), "initial_program": QUADRATIC_PROGRAM, "evaluator": QUADRATIC_EVALUATOR,
            **changes}


def settings_for(tmp_path: Path, **changes: Any) -> ServerSettings:
    values: dict[str, Any] = {"db": str(tmp_path / "api.db"), "workdir": tmp_path / "work", "max_evaluations": 2, **changes}
    return ServerSettings(**values)


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**changes: Any) -> TestClient:
        (tmp_path / "work").mkdir(exist_ok=True)
        client = TestClient(create_app(settings_for(tmp_path, **changes)), raise_server_exceptions=False, base_url=BASE_URL)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def wait_for(client: TestClient, campaign_id: str, *, until: Callable[[dict[str, Any]], bool], timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/campaigns/{campaign_id}").json()
        if until(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


@contextmanager
def finished_campaign(tmp: Path, problem: str = "circle_packing", iterations: int = 30) -> Iterator[tuple[TestClient, str]]:
    """A client of an application in ``tmp`` holding one finished ``mutator`` campaign; yields the client and its id."""
    (tmp / "work").mkdir(exist_ok=True)
    with TestClient(create_app(settings_for(tmp)), raise_server_exceptions=False, base_url=BASE_URL) as client:
        cid = start_campaign(client, problem, iterations=iterations)["id"]
        assert wait_for(client, cid, until=lambda b: b["status"] != "running")["status"] == "finished"
        yield client, cid


def start_campaign(client: TestClient, problem: str, **config: Any) -> dict[str, Any]:
    body = {"problem": problem, "models": [{"name": "mutator"}], "islands": 2, "seed": 1, **config}
    response = client.post("/campaigns", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result
