"""The store's behaviour, run on a SQLite file, on in-memory SQLite and on PostgreSQL (the `store` fixture; the
`shared_store` one for what several processes do at once)."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect

from evolve.errors import StoreError
from evolve.problem import Problem
from evolve.store import LLMCallRecord, Store
from evolve.values import CampaignStatus, EvalStatus
from tests.store.helpers import make_campaign, make_program


def test_schema_is_created_by_the_alembic_migration(shared_store: Store) -> None:
    tables = set(inspect(shared_store._engine).get_table_names())
    assert {"alembic_version", "problems", "campaigns", "programs", "elites", "llm_calls", "events"} <= tables


def test_sqlite_file_runs_in_wal_mode(file_store: Store) -> None:
    with file_store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_reopening_keeps_everything(tmp_path: Path, quadratic: Problem) -> None:
    path = str(tmp_path / "e.db")
    store = Store.open(path)
    cid, initial = make_campaign(store, quadratic)
    store.close()
    again = Store.open(path)
    assert again.get_campaign(cid).best_program_id == initial.id
    assert again.load_problem(again.get_campaign(cid).problem_id).initial_program == quadratic.initial_program


def test_unreadable_database_is_a_store_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a database"):
        Store.open(str(junk))
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(str(tmp_path / "missing" / "e.db"))


def test_record_program_updates_counters_best_and_elite(store: Store, quadratic: Problem) -> None:
    cid, initial = make_campaign(store, quadratic, initial_fitness=0.0)
    better = make_program(cid, 1, fitness=2.0, parent_id=initial.id)
    outcome = store.record_program(better, llm_calls=[LLMCallRecord("m", "diff", 100, 20, 0.01, 0.5, True)])
    assert outcome.new_elite and outcome.new_best
    failed = make_program(cid, 2, status=EvalStatus.INVALID, fitness=None, parent_id=initial.id)
    assert not store.record_program(failed).new_elite
    row = store.get_campaign(cid)
    assert (row.iterations_done, row.valid_done, row.best_program_id) == (2, 1, better.id)
    assert (row.prompt_tokens, row.completion_tokens, row.cost_usd) == (100, 20, 0.01)
    assert store.get_program(initial.id).status is EvalStatus.OK
    assert store.elites(cid, 1)[0].n_children == 2  # island 1 still holds the initial program
    assert store.status_counts(cid) == {"ok": 2, "invalid": 1}
    kinds = [e["kind"] for e in store.events(cid)]
    assert kinds.count("program") == 2 and kinds[0] == "created"


def test_an_iteration_cannot_be_recorded_twice(store: Store, quadratic: Problem) -> None:
    cid, _ = make_campaign(store, quadratic)
    store.record_program(make_program(cid, 1))
    with pytest.raises(StoreError):
        store.record_program(make_program(cid, 1))
    assert store.get_campaign(cid).iterations_done == 1  # the failed transaction left no trace


def test_elite_cas_keeps_the_better_program(store: Store, quadratic: Problem) -> None:
    cid, _ = make_campaign(store, quadratic)
    a, b, c = (make_program(cid, i, fitness=f, cell="3") for i, f in ((1, 5.0), (2, 4.0), (3, 5.0)))
    for p in (a, b, c):
        store.record_program(p)
    elite = next(e for e in store.elites(cid, 0) if e.cell == "3")
    assert elite.program_id == a.id  # worse never replaces; ties keep the incumbent


def test_elites_are_per_island(store: Store, quadratic: Problem) -> None:
    cid, initial = make_campaign(store, quadratic, islands=3)
    store.record_program(make_program(cid, 1, island=1, fitness=9.0, cell="7"))
    assert {e.cell for e in store.elites(cid, 1)} == {"0", "7"}
    assert {e.cell for e in store.elites(cid, 0)} == {"0"}
    assert {e.program_id for e in store.elites(cid, 2)} == {initial.id}


def test_ring_migration_moves_best_elites_once(store: Store, quadratic: Problem) -> None:
    cid, _ = make_campaign(store, quadratic, islands=3)
    star = make_program(cid, 1, island=0, fitness=10.0, cell="5")
    store.record_program(star)
    assert store.migrate_islands(cid, upto_iteration=30, islands=3, size=1) == 1
    assert star.id in {e.program_id for e in store.elites(cid, 1)}
    assert star.id not in {e.program_id for e in store.elites(cid, 2)}  # one hop per migration
    assert store.migrate_islands(cid, upto_iteration=30, islands=3, size=1) == 0  # idempotent
    store.migrate_islands(cid, upto_iteration=60, islands=3, size=1)
    assert star.id in {e.program_id for e in store.elites(cid, 2)}


def test_random_program_comes_from_the_island_and_is_valid(store: Store, quadratic: Problem) -> None:
    cid, _ = make_campaign(store, quadratic)
    for i in range(1, 21):
        status = EvalStatus.OK if i % 2 else EvalStatus.ERROR
        store.record_program(make_program(cid, i, island=i % 2, status=status, fitness=float(i) if status.is_ok else None))
    picked = {store.random_program_id(cid, 1, u / 10) for u in range(10)}
    programs = store.get_programs([p for p in picked if p])
    assert programs and all(p.island == 1 and p.status is EvalStatus.OK for p in programs.values())


def test_interrupted_campaigns_are_found(store: Store, quadratic: Problem) -> None:
    cid, _ = make_campaign(store, quadratic)
    store.claim_campaign(cid, "host:1", owner_alive=lambda o: True, target=None)
    with pytest.raises(StoreError, match="being run by"):
        store.claim_campaign(cid, "host:2", owner_alive=lambda o: True, target=None)
    assert store.mark_interrupted(lambda owner: False) == [cid]
    assert store.get_campaign(cid).status is CampaignStatus.INTERRUPTED


def _hammer(path: str, campaign_id: str, start: int, count: int) -> None:
    store = Store.open(path)
    for k in range(count):
        fitness = float((start + k) * 7919 % 1000)
        store.upsert_elite(campaign_id, 0, "hot", f"p{start + k}", fitness)
    store.close()


def _seed_programs(store: Store, cid: str, n: int) -> None:
    for i in range(1, n + 1):
        p = make_program(cid, i, cell=None, fitness=None, status=EvalStatus.ERROR)
        store.record_program(p)
    with store._engine.begin() as conn:  # give programs the ids the writers use, for the FK
        conn.exec_driver_sql("UPDATE programs SET id = 'p' || iteration WHERE iteration > 0")


def test_cas_under_concurrent_threads_keeps_the_maximum(shared_store: Store, quadratic: Problem) -> None:
    cid, _ = make_campaign(shared_store, quadratic)
    _seed_programs(shared_store, cid, 200)
    path = shared_store.url
    threads = [threading.Thread(target=_hammer, args=(path, cid, 1 + 50 * t, 50)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elite = next(e for e in shared_store.elites(cid, 0) if e.cell == "hot")
    best = max(range(1, 201), key=lambda i: i * 7919 % 1000)
    assert elite.fitness == float(best * 7919 % 1000) and elite.program_id == f"p{best}"


def test_cas_under_concurrent_processes_keeps_the_maximum(shared_store: Store, quadratic: Problem) -> None:
    cid, _ = make_campaign(shared_store, quadratic)
    _seed_programs(shared_store, cid, 240)
    path = shared_store.url
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(path, cid, 1 + 60 * t, 60)) for t in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    elite = next(e for e in shared_store.elites(cid, 0) if e.cell == "hot")
    assert elite.fitness == max(float(i * 7919 % 1000) for i in range(1, 241))
