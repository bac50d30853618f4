"""Campaign overviews: the score series, best-so-far steps and island summaries agree with the programs they sum up."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, inspect, select

from benchmarks.synthetic import fill_campaign
from evolve.problem import Problem
from evolve.store import Store
from evolve.store.schema import metadata, programs
from evolve.store.store import _MIGRATIONS
from evolve.values import EvalStatus, Program
from tests.store.helpers import make_campaign, make_program


def _fill(store: Store, campaign_id: str, fitnesses: list[float | None], islands: int = 2) -> list[Program]:
    made = []
    for i, f in enumerate(fitnesses, start=1):
        status = EvalStatus.OK if f is not None else EvalStatus.ERROR
        p = make_program(campaign_id, i, island=i % islands, fitness=f, status=status, cell=f"{i % 3}")
        store.record_program(p)
        made.append(p)
    return made


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fitnesses=st.lists(st.one_of(st.none(), st.floats(-5, 5, allow_nan=False)), max_size=40), buckets=st.integers(1, 12))
def test_series_buckets_partition_every_program_and_summarise_it(
    store: Store, quadratic: Problem, fitnesses: list[float | None], buckets: int,
) -> None:
    campaign_id, _ = make_campaign(store, quadratic, initial_fitness=0.0)
    _fill(store, campaign_id, fitnesses)
    by_iteration = {0: 0.0, **dict(enumerate(fitnesses, start=1))}
    series = store.score_series(campaign_id, buckets=buckets)
    assert 1 <= len(series) <= buckets
    assert series[0].first == 0 and series[-1].last == len(fitnesses)
    for before, after in itertools.pairwise(series):
        assert after.first == before.last + 1  # contiguous, no overlap
    for b in series:
        inside = [by_iteration[i] for i in range(b.first, b.last + 1)]
        scored = [f for f in inside if f is not None]
        assert (b.programs, b.valid) == (len(inside), len(scored))
        assert (b.low, b.high) == ((min(scored), max(scored)) if scored else (None, None))
        assert b.best_score == (max(scored) if scored else None)


def test_series_of_a_small_campaign_is_one_bucket_per_iteration(store: Store, quadratic: Problem) -> None:
    campaign_id, _ = make_campaign(store, quadratic)
    _fill(store, campaign_id, [1.0, None, 2.0])
    series = store.score_series(campaign_id, buckets=100)
    assert [(b.first, b.last, b.valid) for b in series] == [(0, 0, 1), (1, 1, 1), (2, 2, 0), (3, 3, 1)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fitnesses=st.lists(st.one_of(st.none(), st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0])), max_size=40))
def test_best_steps_are_where_the_running_best_strictly_improved(store: Store, quadratic: Problem, fitnesses: list[float | None]) -> None:
    campaign_id, initial = make_campaign(store, quadratic, initial_fitness=0.0)
    made = _fill(store, campaign_id, fitnesses)
    expected, best = [(0, initial.id)], 0.0
    for p in made:
        if p.fitness is not None and p.fitness > best:
            best = p.fitness
            expected.append((p.iteration, p.id))
    assert [(s.iteration, s.program_id) for s in store.best_steps(campaign_id)] == expected


def test_best_steps_are_thinned_to_the_limit_keeping_first_and_last(store: Store, quadratic: Problem) -> None:
    campaign_id, _ = make_campaign(store, quadratic, initial_fitness=0.0)
    _fill(store, campaign_id, [float(i) for i in range(1, 31)])
    steps = store.best_steps(campaign_id, limit=7)
    assert len(steps) == 7 and steps[0].iteration == 0 and steps[-1].iteration == 30
    assert [s.iteration for s in steps] == sorted(s.iteration for s in steps)


def test_island_summary_counts_programs_cells_and_names_the_best_elite(store: Store, quadratic: Problem) -> None:
    campaign_id, initial = make_campaign(store, quadratic, islands=3, initial_fitness=0.0)
    made = _fill(store, campaign_id, [1.0, None, 5.0, 2.0, None, 0.5], islands=3)
    for p in made:
        if p.fitness is not None and p.cell is not None:
            store.upsert_elite(campaign_id, p.island, p.cell, p.id, p.fitness)
    summary = {s.island: s for s in store.island_summary(campaign_id, islands=3)}
    programs = [initial, *made]
    for island in range(3):
        mine = [p for p in programs if p.island == island]
        cells = {e.cell: e for e in store.elites(campaign_id, island)}
        best = max(cells.values(), key=lambda e: e.fitness)
        s = summary[island]
        assert (s.programs, s.valid, s.cells) == (len(mine), sum(p.fitness is not None for p in mine), len(cells))
        assert s.best_id == best.program_id


def test_model_statistics_count_improvements_over_the_parent(store: Store, quadratic: Problem) -> None:
    campaign_id, initial = make_campaign(store, quadratic, initial_fitness=1.0)
    better = make_program(campaign_id, 1, fitness=2.0, parent_id=initial.id)
    worse = make_program(campaign_id, 2, fitness=0.5, parent_id=better.id)
    best = make_program(campaign_id, 3, fitness=3.0, parent_id=better.id)
    for p in (better, worse, best):
        store.record_program(p)
    [stats] = store.model_stats(campaign_id)
    assert (stats.proposals, stats.valid, stats.improved) == (3, 3, 2)
    assert stats.mean_improvement is not None and math.isclose(stats.mean_improvement, ((2 - 1) + (0.5 - 2) + (3 - 2)) / 3)


def test_last_event_id_is_where_live_following_starts(store: Store, quadratic: Problem) -> None:
    campaign_id, _ = make_campaign(store, quadratic)
    before = store.last_event_id(campaign_id)
    _fill(store, campaign_id, [1.0])
    events = store.events(campaign_id, after_id=before)
    assert [e["kind"] for e in events] == ["program"] and store.last_event_id(campaign_id) == events[-1]["id"]
    assert store.last_event_id("no-such-campaign") == 0


def test_a_large_campaign_is_summed_up_without_losing_a_program(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "big.db"))
    campaign_id = fill_campaign(store, programs_n=3000, islands=3)
    series = store.score_series(campaign_id, buckets=100)
    assert len(series) <= 100 and sum(b.programs for b in series) == 3000
    assert sum(b.valid for b in series) == store.get_campaign(campaign_id).valid_done + 1  # + the initial program
    steps = store.best_steps(campaign_id)
    assert steps[-1].program_id == store.get_campaign(campaign_id).best_program_id
    assert sum(s.programs for s in store.island_summary(campaign_id, islands=3)) == 3000


def test_the_migrations_build_exactly_the_declared_schema(shared_store: Store) -> None:
    with shared_store._engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_a_store_at_an_older_schema_is_upgraded_when_opened_and_its_parents_fitness_filled_in(
        shared_store: Store, quadratic: Problem) -> None:
    campaign_id, initial = make_campaign(shared_store, quadratic, initial_fitness=1.0)
    child = make_program(campaign_id, 1, fitness=2.0, parent_id=initial.id)
    shared_store.record_program(child)
    url = shared_store.url
    shared_store.close()
    cfg = AlembicConfig()  # back to the schema before parent_fitness, as an older evolve left it (the downgrade runs too)
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    assert "parent_fitness" not in {c["name"] for c in inspect(engine).get_columns("programs")}
    engine.dispose()
    again = Store.open(url)
    [stats] = again.model_stats(campaign_id)
    assert stats.improved == 1
    assert again.get_program(child.id).fitness == 2.0
    with again._engine.connect() as conn:
        assert conn.execute(select(programs.c.parent_fitness).where(programs.c.id == child.id)).scalar() == 1.0
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    again.close()
