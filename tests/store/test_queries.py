"""Browsing queries: pages cover every program exactly once in the promised order; lineage, children, archive cells."""

from __future__ import annotations

import dataclasses
import itertools
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evolve.problem import Problem
from evolve.store import ProgramOrder, Store
from evolve.values import EvalStatus
from tests.store.helpers import make_campaign, make_program


def _fill(store: Store, campaign_id: str, fitnesses: list[float | None]) -> None:
    for i, f in enumerate(fitnesses, start=1):
        status = EvalStatus.OK if f is not None else EvalStatus.ERROR
        store.record_program(make_program(campaign_id, i, island=i % 2, fitness=f, status=status, cell=f"{i % 3}"))


def _walk(store: Store, campaign_id: str, **kw: object) -> list[int]:
    seen, after = [], None
    while True:
        page, after = store.page_programs(campaign_id, after=after, **kw)  # type: ignore[arg-type]
        seen += [p.iteration for p in page]
        if after is None:
            return seen


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fitnesses=st.lists(st.one_of(st.none(), st.sampled_from([0.0, 1.0, 2.5, -3.0])), max_size=25),
    order=st.sampled_from(list(ProgramOrder)), descending=st.booleans(), limit=st.integers(1, 7),
    island=st.one_of(st.none(), st.integers(0, 1)),
)
def test_pages_cover_every_program_once_in_order(
    store: Store, quadratic: Problem, fitnesses: list[float | None], order: ProgramOrder, descending: bool, limit: int,
    island: int | None,
) -> None:
    campaign_id, _ = make_campaign(store, quadratic, initial_fitness=0.5)
    _fill(store, campaign_id, fitnesses)
    everything = {0: 0.5, **dict(enumerate(fitnesses, start=1))}
    wanted = [it for it in everything if island is None or it % 2 == island or (it == 0 and island == 0)]
    seen = _walk(store, campaign_id, order=order, descending=descending, limit=limit, island=island)
    if order is ProgramOrder.TIME:
        assert seen == sorted(wanted, reverse=descending)
    else:  # scored first (best first when descending), ties and the unscored tail by iteration
        def key(it: int) -> tuple[bool, float, int]:
            f = everything[it]
            return (f is None, 0.0 if f is None else (-f if descending else f), it)
        assert seen == sorted(wanted, key=key)


def test_filters_by_status_and_generation(store: Store, quadratic: Problem) -> None:
    campaign_id, _ = make_campaign(store, quadratic)
    _fill(store, campaign_id, [1.0, None, 2.0, None])
    failed, _ = store.page_programs(campaign_id, status=EvalStatus.ERROR)
    assert sorted(p.iteration for p in failed) == [2, 4]
    store.record_program(dataclasses.replace(make_program(campaign_id, 5), generation=2))
    deeper, _ = store.page_programs(campaign_id, generation=2)
    assert [p.iteration for p in deeper] == [5]


def test_lineage_runs_from_the_initial_program_to_the_program(store: Store, quadratic: Problem) -> None:
    campaign_id, initial = make_campaign(store, quadratic)
    chain = [initial]
    rng = random.Random(3)
    for i in range(1, 30):
        parent = rng.choice(chain)
        child = make_program(campaign_id, i, parent_id=parent.id)
        store.record_program(child)
        chain.append(child)
    last = chain[-1]
    lineage = store.lineage(last.id)
    assert lineage[0].id == initial.id and lineage[-1].id == last.id
    for parent, child in itertools.pairwise(lineage):
        assert child.parent_id == parent.id
    assert store.lineage("no-such-program") == []
    assert set(store.children_ids(initial.id)) == {p.id for p in chain if p.parent_id == initial.id}


def test_archive_cells_carry_the_elite_and_its_score(store: Store, quadratic: Problem) -> None:
    campaign_id, initial = make_campaign(store, quadratic, islands=2, initial_fitness=0.0)
    better = make_program(campaign_id, 1, island=1, fitness=5.0, cell="3")
    store.record_program(better)
    cells = store.archive_cells(campaign_id)
    assert {(c.island, c.cell, c.program_id, c.score) for c in cells} == {
        (0, "0", initial.id, 0.0), (1, "0", initial.id, 0.0), (1, "3", better.id, 5.0),
    }
    assert [c.island for c in cells] == sorted(c.island for c in cells)


def test_stored_problems_are_listed(store: Store, quadratic: Problem) -> None:
    make_campaign(store, quadratic)
    assert [(p.id, p.name) for p in store.list_problems()] == [(quadratic.fingerprint(), "quadratic")]
