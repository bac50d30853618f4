"""The ask/tell campaign over a real store, real evaluator processes and real models."""

from __future__ import annotations

import asyncio
import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evolve.campaign import Campaign, Child
from evolve.config import CampaignConfig, ModelSpec
from evolve.diff import render_diff
from evolve.errors import ProblemError
from evolve.llm.mutator import propose_edits
from evolve.problem import Problem, load_problem, resolve_problem
from evolve.store import Store
from evolve.values import CampaignStatus, EvalStatus, Origin
from tests.conftest import write_problem
from tests.llm.openai_server import serve


def create(store: Store, problem: Problem, tmp_path: Path, **config: object) -> Campaign:
    cfg = CampaignConfig.model_validate({"eval_concurrency": 2, "models": [{"name": "mutator"}], **config})
    return asyncio.run(Campaign.create(store, problem, cfg, workdir=tmp_path / "work"))


@pytest.mark.slow
def test_mutator_campaign_improves_circle_packing_and_stores_every_candidate(file_store: Store, tmp_path: Path) -> None:
    campaign = create(file_store, resolve_problem("circle_packing"), tmp_path, iterations=60, seed=1, islands=2)
    assert asyncio.run(campaign.run()) is CampaignStatus.FINISHED
    programs = file_store.list_programs(campaign.id)
    initial = programs[0]
    assert initial.origin is Origin.INITIAL and len(programs) == 61
    assert sorted(p.iteration for p in programs) == list(range(61))
    best = file_store.best_program(campaign.id)
    assert best is not None and best.score is not None and initial.score is not None and best.score > initial.score
    assert len(file_store.llm_calls(campaign.id)) == 60
    assert {p.island for p in programs[1:]} == {0, 1}  # islands take turns
    assert file_store.get_campaign(campaign.id).status is CampaignStatus.FINISHED


def test_tell_matches_results_by_id_in_any_order(file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    campaign = create(file_store, quadratic, tmp_path, iterations=10, islands=2)

    async def go() -> None:
        proposals = [campaign.ask() for _ in range(3)]
        children = [await campaign.generate(p) for p in proposals]
        results = [await campaign.evaluator.evaluate(c.code) if c.code else None for c in children]
        for p, c, r in reversed(list(zip(proposals, children, results, strict=True))):
            campaign.tell(p.id, c, r)

    asyncio.run(go())
    programs = file_store.list_programs(campaign.id)
    assert [p.iteration for p in programs] == [0, 1, 2, 3]
    assert [p.island for p in programs[1:]] == [1, 0, 1]
    with pytest.raises(KeyError):
        campaign.tell("not-a-proposal", Child(code=None, answer="", completion=None, failure=EvalStatus.DIFF_FAILED), None)


def test_resume_continues_counters_without_a_second_initial_program(file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    first = create(file_store, quadratic, tmp_path, iterations=8, islands=2)
    asyncio.run(first.run())
    before = {p.id for p in file_store.list_programs(first.id)}
    again = Campaign.resume(file_store, first.id, workdir=tmp_path / "w2", iterations=16)
    assert asyncio.run(again.run()) is CampaignStatus.FINISHED
    programs = file_store.list_programs(first.id)
    assert before <= {p.id for p in programs}
    assert sum(p.origin is Origin.INITIAL for p in programs) == 1
    assert sorted(p.iteration for p in programs) == list(range(17))
    assert file_store.get_campaign(first.id).iterations_done == 16


def test_islands_migrate_on_schedule(file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    campaign = create(file_store, quadratic, tmp_path, iterations=12, islands=2, migration_interval=2)
    asyncio.run(campaign.run())
    migrations = [e for e in file_store.events(campaign.id) if e["kind"] == "migration"]
    assert [e["data"]["iteration"] for e in migrations] == [4, 8, 12]


def test_stop_event_stops_cleanly_and_marks_the_campaign_stopped(file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    campaign = create(file_store, quadratic, tmp_path, iterations=1000)

    async def go() -> CampaignStatus:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.5, stop.set)
        return await campaign.run(stop=stop)

    assert asyncio.run(go()) is CampaignStatus.STOPPED
    row = file_store.get_campaign(campaign.id)
    assert row.status is CampaignStatus.STOPPED and 0 < row.iterations_done < 1000
    assert len(file_store.list_programs(campaign.id)) == row.iterations_done + 1


def test_a_failing_initial_program_creates_no_campaign(file_store: Store, tmp_path: Path) -> None:
    folder = write_problem(tmp_path / "bad", program="# EVOLVE-BLOCK-START\ndef solve():\n    return 1 / 0\n# EVOLVE-BLOCK-END\n")
    with pytest.raises(ProblemError, match=r"initial program .* does not evaluate: error: .*ZeroDivisionError"):
        create(file_store, load_problem(folder), tmp_path, iterations=5)
    assert file_store.list_campaigns() == []


def test_a_campaign_through_litellm_and_a_loopback_openai_server(file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    requests = itertools.count()  # a model samples anew each request (seeding by the prompt would repeat edits: duplicates)

    def model_answer(body: dict[str, object]) -> str:
        prompt = str(body["messages"])
        code = re.findall(r"```python\\n(.*?)```", prompt, re.DOTALL)[-1].encode().decode("unicode_escape")
        return "Try another constant.\n" + render_diff(propose_edits(code, np.random.default_rng(next(requests))))

    with serve(model_answer) as (base, server):
        campaign = create(file_store, quadratic, tmp_path, iterations=10, islands=2,
                          models=[ModelSpec(name="openai/stub-model", api_base=base, timeout_s=20).model_dump()])
        assert asyncio.run(campaign.run()) is CampaignStatus.FINISHED
    programs = file_store.list_programs(campaign.id)[1:]
    assert len(server.log) == 10 and len(programs) == 10
    assert all(p.model == "openai/stub-model" for p in programs)
    assert sum(p.status is EvalStatus.OK for p in programs) >= 5
    calls = file_store.llm_calls(campaign.id)
    assert all(c.ok and c.prompt_tokens == 120 and c.completion_tokens == 30 for c in calls)


def test_an_answer_that_reproduces_its_parent_is_recorded_unchanged_and_never_evaluated(tmp_path: Path) -> None:
    from tests.test_campaign_hostile import create, run_answers

    problem = load_problem(write_problem(tmp_path / "quadratic"))
    store = Store.open(str(tmp_path / "e.db"))
    campaign_id = create(store, problem, tmp_path, "rewrite")

    def fenced(code: str) -> str:
        return f"```python\n{code}```"

    evaluated: list[str] = []

    def counting(campaign: Campaign) -> Any:
        real = campaign.evaluator

        class Counting:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            async def evaluate(self, code: str, **kwargs: Any) -> Any:
                evaluated.append(code)
                return await real.evaluate(code, **kwargs)

        return Counting()

    status, programs = run_answers(store, campaign_id, tmp_path / "run", [
        lambda parent: fenced(parent),  # the same program
        lambda parent: fenced(parent.replace("def solve():", "# a comment\n\ndef solve():  # still the same")),  # reformatted
        lambda parent: fenced(parent.replace("return 0.5", "return 2.5")),  # a real change
    ], evaluator=counting)
    assert status is CampaignStatus.FINISHED
    by_iteration = {p.iteration: p for p in programs}
    assert [by_iteration[i].status for i in sorted(by_iteration)][:2] == [EvalStatus.UNCHANGED, EvalStatus.UNCHANGED]
    assert "reproduces the current program unchanged" in by_iteration[min(by_iteration)].artifacts["error"]
    assert "only reformats" in sorted(by_iteration.items())[1][1].artifacts["error"]
    assert len(evaluated) == 1 and "return 2.5" in evaluated[0]  # only the real change reached the evaluator
    assert store.status_counts(campaign_id).get("diff_failed", 0) == 0  # the model's answer, not a failure of the path
    counts = store.applied_counts(campaign_id)[("mutator", "rewrite")]
    assert next(m for m in store.model_stats(campaign_id) if m.model == "mutator").applied == counts
    assert counts["unchanged"] == 2 and counts["rewrite"] == 1
