"""Sandboxed evaluators: a hostile evaluator.py is walled in, a behaving one still scores its candidates correctly."""

from __future__ import annotations

import asyncio
import re
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import evolve.server.app
from evolve.evaluators.confined import BOX_FILE_BYTES, BOX_PROCESSES, EVALUATOR_MODULES
from evolve.evaluators.runner import Evaluator
from evolve.problem import load_problem, resolve_problem
from evolve.sandbox.bwrap import bwrap_problem
from evolve.values import EvalResult, EvalStatus
from tests.conftest import QUADRATIC_YAML, write_problem
from tests.hostile import PROBES, hostile_evaluator, outside_address, reached
from tests.sandbox.helpers import unavailable


@pytest.fixture(autouse=True)
def _bwrap() -> None:
    if (problem := bwrap_problem()) is not None:
        unavailable("bwrap", problem)


SECRET = "sk-planted-0123456789abcdef"
OUTSIDE = outside_address()  # this host's own address beyond loopback, where the listener answers too
YAML = QUADRATIC_YAML.replace("timeout_s: 10", "timeout_s: 60")


@pytest.fixture
def listener() -> Iterator[int]:
    """A server on every address of this host (loopback and its outside address) that a walled-in evaluator must not
    reach."""
    with socket.create_server(("0.0.0.0", 0)) as server:
        yield server.getsockname()[1]


@pytest.fixture
def targets(tmp_path: Path, listener: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    store = tmp_path / "store.db"
    db = sqlite3.connect(store)  # a real WAL-mode database, open, so its -wal file is there
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    other = write_problem(tmp_path / "other")
    monkeypatch.setenv("EVOLVE_PLANTED_KEY", SECRET)  # in this (the controller's) environment
    yield {"store": str(store), "secret_name": "EVOLVE_PLANTED_KEY", "secret": SECRET,
            "other_problem": str(other / "evaluator.py"), "server_source": evolve.server.app.__file__, "port": listener,
           "outside_host": OUTSIDE or "10.255.255.1"}
    db.close()


def _evaluate(tmp_path: Path, evaluator_source: str, *, executor: str, confine: bool, code: str | None = None) -> EvalResult:
    problem = load_problem(write_problem(tmp_path / "hostile", yaml=YAML, evaluator=evaluator_source))

    async def go() -> EvalResult:
        evaluator = Evaluator(problem, problem_dir=tmp_path / f"run-{executor}", sandbox="bwrap", executor=executor,
                              confine_evaluator=confine)
        try:
            return await evaluator.evaluate(code or problem.initial_program)
        finally:
            await evaluator.close()

    return asyncio.run(go())


@pytest.mark.parametrize("executor", ["warm", "cold"])
def test_a_hostile_evaluator_is_walled_in_and_still_scores_its_candidate(executor: str, tmp_path: Path,
                                                                         targets: dict[str, object]) -> None:
    result = _evaluate(tmp_path, hostile_evaluator(**targets), executor=executor, confine=True)  # type: ignore[arg-type]
    assert result.status is EvalStatus.OK, result.artifacts
    assert result.metrics["value"] == -(0.5 - 3.0) ** 2  # solve() returns 0.5: the candidate call went through
    assert set(PROBES) <= set(result.artifacts)
    assert reached(result.artifacts) == {}
    filled = re.search(r"(\d+) MiB written", result.artifacts["disk_tmp"])
    assert filled is not None and int(filled.group(1)) <= BOX_FILE_BYTES >> 20
    started = re.search(r"started (\d+) processes", result.artifacts["fork_bomb"])
    assert started is not None and int(started.group(1)) <= BOX_PROCESSES + 4  # the cap has a slack for bubblewrap's own
    assert result.artifacts["disk_elsewhere"].count("Read-only file system") == 2
    assert "ModuleNotFoundError" in result.artifacts["server_import"]


def test_the_same_probes_reach_the_host_from_a_trusted_evaluator(tmp_path: Path, targets: dict[str, object]) -> None:
    """The control: each wall the sandboxed run met is a wall, not a probe that cannot succeed."""
    source = hostile_evaluator(**targets, fill_bytes=4 << 20, forks=4)  # type: ignore[arg-type]
    result = _evaluate(tmp_path, source, executor="warm", confine=False)
    assert result.status is EvalStatus.OK, result.artifacts
    got = reached(result.artifacts)
    # (not the environment: /proc shows a process's starting environment, and this test planted its key later;
    # tests/server/test_submitted.py plants it in a server's starting environment)
    for probe in ("store", "store_wal", "other_problem", "server_source", "server_import", "loopback", "host_processes",
                  "disk_tmp", "fork_bomb", *(["network"] if OUTSIDE else [])):
        assert probe in got, (probe, result.artifacts[probe])


def test_every_built_in_evaluator_imports_only_what_the_box_holds(tmp_path: Path) -> None:
    """Sandboxed, a built-in problem's initial program scores as it does trusted (its evaluator's imports are there)."""
    for name in ("circle_packing", "online_bin_packing", "cap_set"):  # evaluate_packing, sessions, as_list
        problem = resolve_problem(name)

        async def go(confine: bool, problem: object = problem, name: str = name) -> EvalResult:
            evaluator = Evaluator(problem, problem_dir=tmp_path / f"{name}-{confine}", sandbox="bwrap",  # type: ignore[arg-type]
                                  executor="warm", confine_evaluator=confine)
            try:
                return await evaluator.evaluate(problem.initial_program)  # type: ignore[attr-defined]
            finally:
                await evaluator.close()

        confined = asyncio.run(go(True))
        assert confined.status is EvalStatus.OK, (name, confined.artifacts)
        assert set(confined.metrics) == set(asyncio.run(go(False)).metrics)
    assert "evolve.server" not in " ".join(EVALUATOR_MODULES)


_FRAMES = "import os, sys, json\ndef send(*parts):\n    fd = int(sys.argv[2])\n" \
          "    os.write(fd, b''.join(len(p).to_bytes(4, 'big') + p for p in parts))\n"


@pytest.mark.parametrize(("evaluator", "expected"), [
    ("import os\ndef evaluate(candidate):\n    os._exit(0)\n", "without an answer"),
    (_FRAMES + "def evaluate(candidate):\n    os.write(int(sys.argv[2]), b'\\xff\\xff\\xff\\xff')\n    os.read(int(sys.argv[2]), 1)\n",
     "broke its protocol"),
    (_FRAMES + "def evaluate(candidate):\n    send(json.dumps({'op': 'call', 'session': 7}).encode(), b'')\n"
     "    os.read(int(sys.argv[2]), 1)\n", "broke its protocol"),
    (_FRAMES + "def evaluate(candidate):\n    send(json.dumps({'op': 'run', 'limits': {'wall_s': 'long'}}).encode(), b'')\n"
     "    os.read(int(sys.argv[2]), 1)\n", "broke its protocol"),
    # it claims the candidate's sandbox failed (which would stop the campaign): the supervisor saw no such thing
    (_FRAMES + "def evaluate(candidate):\n    send(b'{\"op\": \"answer\"}', json.dumps({'outcome': 'sandbox_error', "
     "'message': 'fake'}).encode())\n    os._exit(0)\n", "a sandbox failure that did not happen"),
])
def test_a_sandboxed_evaluator_that_breaks_the_protocol_is_an_evaluator_error(evaluator: str, expected: str,
                                                                             tmp_path: Path) -> None:
    result = _evaluate(tmp_path, evaluator, executor="warm", confine=True)
    assert result.status is EvalStatus.ERROR
    assert expected in str(result.artifacts.get("error")), result.artifacts
