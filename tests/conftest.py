"""Shared fixtures: real stores on disk, small real problems."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import settings

from evolve.problem import Problem, load_problem
from evolve.store import Store
from tests.postgres import PostgresServer, PostgresUnavailableError
from tests.sandbox.helpers import unavailable

# The suite that gates a landing draws the same examples every run, so a rare random draw can
# never block a merge; `HYPOTHESIS_PROFILE=explore pytest` searches afresh with more examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=1000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

QUADRATIC_YAML = """\
name: quadratic
description: Find x maximizing -(x - 3)^2. The program defines solve() returning x.
objective:
  metric: value
  direction: maximize
features:
  - name: x
    min: -10
    max: 10
    bins: 20
limits:
  timeout_s: 10
  memory_mb: 512
"""

QUADRATIC_PROGRAM = """\
# EVOLVE-BLOCK-START
def solve():
    return 0.5
# EVOLVE-BLOCK-END
"""

QUADRATIC_EVALUATOR = """\
import math
from evolve.evaluators import Invalid


def evaluate(candidate):
    x = candidate.call("solve")
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise Invalid(f"solve() must return a number, got {type(x).__name__}")
    return {"metrics": {"value": -(x - 3.0) ** 2}, "features": {"x": x}}
"""


def write_problem(folder: Path, *, yaml: str = QUADRATIC_YAML, program: str = QUADRATIC_PROGRAM,
                  evaluator: str = QUADRATIC_EVALUATOR) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "problem.yaml").write_text(textwrap.dedent(yaml))
    (folder / "initial_program.py").write_text(program)
    (folder / "evaluator.py").write_text(evaluator)
    return folder


@pytest.fixture
def quadratic_dir(tmp_path: Path) -> Path:
    return write_problem(tmp_path / "quadratic")


@pytest.fixture
def quadratic(quadratic_dir: Path) -> Problem:
    return load_problem(quadratic_dir)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session (a failure, not a skip, where scripts/test.sh requires it)."""
    try:
        server = PostgresServer()
    except PostgresUnavailableError as exc:
        unavailable("postgresql", str(exc), what="store")
    yield server
    server.stop()


@contextmanager
def _store_at(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    """A fresh store of ``kind``: "file" (SQLite on disk), "memory" (in-memory SQLite) or "postgresql" (a new
    database on the session's server, dropped afterwards)."""
    if kind == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.fresh_url()
        s = Store.open(url)
        try:
            yield s
        finally:
            s.close()
            server.drop(url)
        return
    s = Store.open(str(tmp_path / "evolve.db") if kind == "file" else ":memory:")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(params=["file", "memory", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same tests run on a SQLite file, on in-memory SQLite and on PostgreSQL."""
    with _store_at(request.param, tmp_path, request) as s:
        yield s


@pytest.fixture(params=["file", "postgresql"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store other processes can open too, by ``Store.open(shared_store.url)``: a SQLite file, then PostgreSQL."""
    with _store_at(request.param, tmp_path, request) as s:
        yield s
    s.close()


@pytest.fixture(params=["file", "postgresql"])
def db_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """What a user passes as ``--db``: a SQLite file's path, then a PostgreSQL URL (a new database, dropped after)."""
    if request.param == "file":
        yield str(tmp_path / "evolve.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.fresh_url()
    yield url
    server.drop(url)


@pytest.fixture
def file_store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(str(tmp_path / "evolve.db"))
    yield s
    s.close()
