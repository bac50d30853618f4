"""A hostile problem submitted over REST to ``evolve serve``: its evaluator is walled in, the server keeps serving.

The evaluator (``tests.hostile``) is aimed at this very server: its store and
WAL, a provider key planted in its starting environment, another campaign's
problem folder, its own source, its port on loopback; it also fills its disk
and fork-bombs. Meanwhile a built-in campaign runs on the same server.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import evolve.server.app
from evolve.evaluators.confined import BOX_FILE_BYTES, BOX_PROCESSES
from evolve.sandbox.bwrap import bwrap_problem
from tests.conftest import QUADRATIC_PROGRAM, QUADRATIC_YAML
from tests.hostile import hostile_evaluator, reached
from tests.sandbox.helpers import unavailable
from tests.server.conftest import TOKEN
from tests.server.live import ServeProcess

SECRET = "sk-planted-server-key-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    if (problem := bwrap_problem()) is not None:
        unavailable("bwrap", problem)
    (tmp_path / "work").mkdir()
    serve = ServeProcess(tmp_path / "served.db", tmp_path / "serve.log", EVOLVE_API_TOKEN=TOKEN, OPENAI_API_KEY=SECRET,
                         EVOLVE_WORKDIR=str(tmp_path / "work"), EVOLVE_MAX_EVALUATIONS="4")
    serve.start()
    try:
        yield serve
    finally:
        serve.stop()


def _call(server: ServeProcess, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, server.base + path, headers=AUTH, timeout=300, **kwargs)
    assert response.status_code < 300, (path, response.status_code, response.text)
    return response.json()


def _wait(server: ServeProcess, cid: str, until: Any, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = _call(server, "GET", f"/campaigns/{cid}")
        if until(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_a_hostile_submitted_evaluator_is_walled_in_while_the_server_serves_others(server: ServeProcess,
                                                                                  tmp_path: Path) -> None:
    other = _call(server, "POST", "/campaigns", json={"problem": "circle_packing", "models": [{"name": "mutator"}],
                                                      "iterations": 100_000, "islands": 1, "eval_concurrency": 1})
    other_files = sorted((tmp_path / "work").glob("*/problem/evaluator.py"))
    assert other_files, "the built-in campaign's problem folder is where the evaluator will look"
    source = hostile_evaluator(store=str(tmp_path / "served.db"), secret_name="OPENAI_API_KEY", secret=SECRET,
                               other_problem=str(other_files[0]), server_source=evolve.server.app.__file__,
                               port=server.port)
    # the targets are real: the key is in the server's environment, the store has its WAL open
    assert server.proc is not None and SECRET.encode() in Path(f"/proc/{server.proc.pid}/environ").read_bytes()
    assert (tmp_path / "served.db-wal").is_file()
    config = yaml.safe_load(QUADRATIC_YAML.replace("timeout_s: 10", "timeout_s: 60"))
    submitted = _call(server, "POST", "/problems",
                      json={"config": config, "initial_program": QUADRATIC_PROGRAM, "evaluator": source})
    before = _call(server, "GET", f"/campaigns/{other['id']}")["iterations_done"]
    hostile = _call(server, "POST", "/campaigns", json={"problem": submitted["id"], "models": [{"name": "mutator"}],
                                                        "iterations": 4, "islands": 1, "eval_concurrency": 2})
    assert hostile["config"]["evaluator_sandbox"] is True
    done = _wait(server, hostile["id"], lambda b: b["status"] != "running")
    assert done["status"] == "finished", done
    programs = _call(server, "GET", f"/campaigns/{hostile['id']}/programs", params={"limit": 50})["items"]
    scored = [_call(server, "GET", f"/programs/{p['id']}") for p in programs if p["status"] == "ok"]
    assert scored, programs
    for program in scored:
        artifacts = program["artifacts"]
        assert reached(artifacts) == {}, artifacts
        filled = re.search(r"(\d+) MiB written", artifacts["disk_tmp"])
        assert filled is not None and int(filled.group(1)) <= BOX_FILE_BYTES >> 20
        started = re.search(r"started (\d+) processes", artifacts["fork_bomb"])
        assert started is not None and int(started.group(1)) <= BOX_PROCESSES + 4
        x = program["features"]["x"]
        assert program["metrics"]["value"] == pytest.approx(-(x - 3.0) ** 2)  # it scored its candidate, correctly
    initial = next(p for p in scored if p["origin"] == "initial")
    assert initial["metrics"]["value"] == -(0.5 - 3.0) ** 2
    assert httpx.get(server.base + "/health", timeout=10).status_code == 200
    after = _wait(server, other["id"], lambda b: b["iterations_done"] > before)
    assert after["status"] == "running" and after["iterations_done"] > before  # the other campaign went on meanwhile
    log = (tmp_path / "serve.log").read_text(errors="replace")
    assert TOKEN not in log and SECRET not in log
