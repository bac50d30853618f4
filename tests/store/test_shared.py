"""Several processes on one store at once (a SQLite file, then PostgreSQL: the `shared_store` fixture), and what
each backend must hold exactly as the other does.

These are the situations scale-out creates: controllers and servers on other hosts opening the same database
for the first time together, saving the same problem, recording programs and migrating islands concurrently.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evolve.errors import StoreError
from evolve.problem import Problem, load_problem
from evolve.store import Store
from evolve.values import EvalStatus
from tests.postgres import PostgresServer
from tests.store.helpers import make_campaign, make_program

WRITERS = 4


def _together(target: Callable[..., None], args: list[tuple[Any, ...]]) -> None:
    """Run ``target(*a)`` for each ``a`` in its own spawned process, all released at once; each must exit 0."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(len(args), timeout=60)  # one that dies breaks the others out rather than stalling the suite
    procs = [ctx.Process(target=target, args=(start, *a)) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def _open_and_save(start: Any, url: str, problem_dir: str) -> None:
    start.wait()
    store = Store.open(url)  # the first open of an empty database migrates it
    store.save_problem(load_problem(Path(problem_dir)))
    store.close()


def test_processes_opening_a_new_database_together_all_get_one_schema_and_one_problem(
        request: pytest.FixtureRequest, shared_store: Store, quadratic: Problem) -> None:
    url = _empty_twin(request, shared_store)
    _together(_open_and_save, [(url, quadratic.source)] * WRITERS)
    store = Store.open(url)
    assert [p.id for p in store.list_problems()] == [quadratic.fingerprint()]
    store.close()


def _open_fresh(start: Any, folder: str, rounds: int) -> None:
    for r in range(rounds):
        start.wait()  # every process opens the same new file at once, round after round
        Store.open(f"sqlite:///{folder}/round{r}.db").close()


def test_processes_racing_to_open_new_sqlite_files_all_get_in(tmp_path: Path) -> None:
    # SQLite refuses a second process its switch to WAL at once ("database is locked", no busy wait): the store
    # must wait it out, or one controller in a few that start beside another dies on its first open
    rounds = 20
    _together(_open_fresh, [(str(tmp_path), rounds)] * WRITERS)
    for r in range(rounds):
        store = Store.open(f"sqlite:///{tmp_path}/round{r}.db")
        assert store.list_problems() == []
        store.close()


def _empty_twin(request: pytest.FixtureRequest, shared_store: Store) -> str:
    """A URL of a second, empty database of the same kind as ``shared_store`` (nothing migrated yet)."""
    if shared_store.url.startswith("sqlite"):
        return shared_store.url.replace("evolve.db", "twin.db")
    server = request.getfixturevalue("postgres")
    url: str = server.fresh_url()
    request.addfinalizer(lambda: server.drop(url))
    return url


def _record(start: Any, url: str, campaign_id: str, writer: int, count: int) -> None:
    store = Store.open(url)
    start.wait()
    for k in range(count):
        iteration = 1 + writer * count + k
        ok = iteration % 3 != 0
        store.record_program(make_program(campaign_id, iteration, island=iteration % 2, cell=str(iteration % 5),
                                          fitness=float(iteration * 7919 % 1000) if ok else None,
                                          status=EvalStatus.OK if ok else EvalStatus.ERROR))
        if iteration % 10 == 0:
            store.migrate_islands(campaign_id, upto_iteration=iteration // 10 * 10, islands=2, size=2)
    store.close()


def test_concurrent_writers_lose_no_program_no_count_and_no_better_elite(shared_store: Store, quadratic: Problem) -> None:
    campaign_id, _ = make_campaign(shared_store, quadratic)
    per_writer = 30
    _together(_record, [(shared_store.url, campaign_id, w, per_writer) for w in range(WRITERS)])
    total = WRITERS * per_writer
    programs = shared_store.list_programs(campaign_id)
    assert [p.iteration for p in programs] == list(range(total + 1))
    row = shared_store.get_campaign(campaign_id)
    assert (row.iterations_done, row.valid_done) == (total, sum(1 for i in range(1, total + 1) if i % 3 != 0))
    best = max((p for p in programs if p.fitness is not None), key=lambda p: p.fitness or 0.0)
    assert (row.best_program_id, row.best_fitness) == (best.id, best.fitness)
    for island in (0, 1):  # each cell holds at least the best program ever recorded there (migration may add better)
        held = {e.cell: e.fitness for e in shared_store.elites(campaign_id, island)}
        for p in programs:
            if p.island == island and p.fitness is not None and p.cell is not None:
                assert held[p.cell] >= p.fitness
    migrations = [e for e in shared_store.events(campaign_id, kind="migration")]
    assert len(migrations) == len({e["data"]["iteration"] for e in migrations})  # each boundary migrated once


def test_metrics_that_are_not_finite_come_back_as_they_went_in(store: Store, quadratic: Problem) -> None:
    campaign_id, _ = make_campaign(store, quadratic)
    program = make_program(campaign_id, 1, fitness=None, status=EvalStatus.INVALID)
    odd = {"value": math.nan, "high": math.inf, "low": -math.inf, "plain": 1.5}
    store.record_program(dataclasses.replace(program, metrics=odd, features={"x": math.inf}, artifacts={"note": "NaN"}))
    back = store.get_program(program.id)
    assert math.isnan(back.metrics["value"]) and back.metrics["high"] == math.inf and back.metrics["low"] == -math.inf
    assert back.metrics["plain"] == 1.5 and back.features == {"x": math.inf} and back.artifacts == {"note": "NaN"}


def test_a_database_that_cannot_be_reached_is_a_store_error_that_says_so() -> None:
    with pytest.raises(StoreError, match="cannot open database postgresql"):
        Store.open("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_a_password_in_the_url_never_reaches_the_error(postgres: PostgresServer) -> None:
    url = postgres.url("missing").replace("postgres@", "postgres:s3cret-pass@")
    with pytest.raises(StoreError) as caught:
        Store.open(url.replace(f":{postgres.port}/", ":1/"))  # nothing listens there
    assert "s3cret-pass" not in str(caught.value) and "***" in str(caught.value)
    with pytest.raises(StoreError) as caught:
        Store.open("postgresql+psycopg://u:s3cret-pass@[::1/x")  # not even a URL
    assert "s3cret-pass" not in str(caught.value)
