"""Fewer evaluations per discovery: dedup, the novelty filter, crossover, the bandit, meta-prompts and the baselines,
each in a real campaign (real store, real evaluator, models on a loopback OpenAI-compatible server)."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evolve.campaign import Campaign
from evolve.config import CampaignConfig
from evolve.diff import render_diff
from evolve.llm.mutator import propose_edits
from evolve.novelty import shingles, similarity
from evolve.problem import Problem, load_problem
from evolve.store import Store
from evolve.values import CampaignStatus, EvalResult, EvalStatus, Origin
from tests.conftest import QUADRATIC_YAML, write_problem
from tests.llm.openai_server import serve

_FENCE = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _user(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"]) if body["messages"][-1]["role"] == "user" else ""


def _prompt(body: dict[str, Any]) -> str:
    return "\n".join(str(m["content"]) for m in body["messages"])


def _current(body: dict[str, Any]) -> str:
    return str(_FENCE.findall(str(body["messages"][1]["content"]))[-1])


_REQUESTS = itertools.count()


def _mutate(body: dict[str, Any]) -> str:
    """The mutator's edit of the prompt's current program, seeded per request (as a model samples anew each time)."""
    code = _current(body)
    return "Another constant.\n" + render_diff(propose_edits(code, np.random.default_rng(next(_REQUESTS))))


def _model(base: str, **spec: Any) -> dict[str, Any]:
    return {"name": "openai/stub", "api_base": base, "timeout_s": 20, "max_retries": 0, **spec}


def _create(store: Store, problem: Problem, tmp_path: Path, **config: Any) -> Campaign:
    cfg = CampaignConfig.model_validate({"eval_concurrency": 1, "llm_concurrency": 1, "islands": 1, **config})
    return asyncio.run(Campaign.create(store, problem, cfg, workdir=tmp_path / "work"))


def _count_evaluations(campaign: Campaign) -> list[str]:
    """Every program the campaign's (real) evaluator is asked to score."""
    seen: list[str] = []
    evaluate = campaign.evaluator.evaluate

    async def counting(code: str, *, held_out: bool = False) -> EvalResult:
        seen.append(code)
        return await evaluate(code, held_out=held_out)

    campaign.evaluator.evaluate = counting  # type: ignore[method-assign]
    return seen


async def _steps(campaign: Campaign, n: int) -> None:
    """``n`` proposals one after the other through the primitives (each asked after the one before is told)."""
    for _ in range(n):
        await campaign.step(campaign.ask())


def _rewrite(body: str) -> str:
    return f"The new program:\n```python\n# EVOLVE-BLOCK-START\n{body}# EVOLVE-BLOCK-END\n```\n"


# ------------------------------------------------------------------ dedup
def test_a_child_that_repeats_a_program_is_recorded_as_its_duplicate_and_never_evaluated(
        file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    count = [0]

    def answer(body: dict[str, Any]) -> str:
        count[0] += 1  # the same program each time, formatted anew: a comment, parentheses, blank lines
        return _rewrite(f"def solve():\n    # take {count[0]}\n    return ({1.0})\n\n")

    with serve(answer) as (base, server):
        campaign = _create(file_store, quadratic, tmp_path, iterations=5, models=[_model(base, mode="rewrite")])
        evaluated = _count_evaluations(campaign)
        asyncio.run(campaign.run())
    programs = file_store.list_programs(campaign.id)[1:]
    first = programs[0]
    assert first.status is EvalStatus.OK and len(evaluated) == 1
    # a copy of its own parent is 'unchanged' (the model changed nothing); a copy of another program is its duplicate
    for dup in programs[1:]:
        assert dup.eval_seconds == 0 and dup.score is None
        if dup.parent_id == first.id:
            assert dup.status is EvalStatus.UNCHANGED and "only reformats the current program" in dup.artifacts["error"]
        else:
            assert dup.status is EvalStatus.DUPLICATE and dup.artifacts["duplicate_of"] == first.id
            assert f"reproduced program {first.id}" in dup.artifacts["error"]
    last_prompt = _prompt(server.log[-1].body)  # the next prompt hears it, either way
    assert f"reproduced program {first.id}" in last_prompt or "only reformats the current program" in last_prompt
    duplicates = [p for p in programs[1:] if p.status is EvalStatus.DUPLICATE]
    assert duplicates and all(f"reproduced program {first.id}" in p.artifacts["error"] for p in duplicates)
    counts = file_store.status_counts(campaign.id)
    assert counts["ok"] == 2 and counts.get("duplicate", 0) + counts.get("unchanged", 0) == 4


def test_with_dedup_off_every_copy_is_evaluated_again(file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    count = iter(range(100))
    with serve(lambda body: _rewrite(f"def solve():\n    # {next(count)}\n    return 1.0\n")) as (base, _):
        campaign = _create(file_store, quadratic, tmp_path, iterations=3, models=[_model(base, mode="rewrite")],
                           search={"dedup": False, "novelty": {"enabled": "off"}})
        evaluated = _count_evaluations(campaign)
        asyncio.run(campaign.run())
    assert len(evaluated) == 3
    assert EvalStatus.DUPLICATE.value not in file_store.status_counts(campaign.id)


def test_identical_children_in_flight_together_are_evaluated_once(
        file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    count = itertools.count()
    with serve(lambda body: _rewrite(f"def solve():\n    # copy {next(count)}\n    return 2.0\n")) as (base, _):
        campaign = _create(file_store, quadratic, tmp_path, iterations=8, models=[_model(base, mode="rewrite")],
                           llm_concurrency=4, eval_concurrency=2, search={"novelty": {"enabled": "off"}})
        evaluated = _count_evaluations(campaign)
        asyncio.run(campaign.run())
    children = file_store.list_programs(campaign.id)[1:]
    (scored,) = [p for p in children if p.status is EvalStatus.OK]
    assert len(evaluated) == 1 and len(children) == 8
    assert all((p.status is EvalStatus.DUPLICATE and p.artifacts["duplicate_of"] == scored.id)
               or (p.status is EvalStatus.UNCHANGED and p.parent_id == scored.id) for p in children if p is not scored)


def test_a_copy_of_a_program_that_timed_out_is_evaluated_itself(file_store: Store, tmp_path: Path) -> None:
    slow = load_problem(write_problem(tmp_path / "slow", yaml=QUADRATIC_YAML.replace("timeout_s: 10", "timeout_s: 1")))
    count = itertools.count()
    body = "def solve():\n    import time\n    time.sleep(30)\n    return 2.0\n"
    with serve(lambda _: _rewrite(body.replace("import time", f"import time  # copy {next(count)}"))) as (base, _):
        campaign = _create(file_store, slow, tmp_path, iterations=3, models=[_model(base, mode="rewrite")],
                           llm_concurrency=3, eval_concurrency=2, search={"novelty": {"enabled": "off"}})
        evaluated = _count_evaluations(campaign)
        asyncio.run(campaign.run())
    assert [p.status for p in file_store.list_programs(campaign.id)[1:]] == [EvalStatus.TIMEOUT] * 3
    assert len(evaluated) == 3  # a timeout may be the machine's fault: no verdict to be a duplicate of


# ---------------------------------------------------------------- novelty
LONG_PROGRAM = "# EVOLVE-BLOCK-START\ndef solve():\n" + "".join(f"    a{i} = {i}\n" for i in range(40)) + \
    "    return 0.5\n# EVOLVE-BLOCK-END\n"


@pytest.fixture
def long_problem(tmp_path: Path) -> Problem:
    return load_problem(write_problem(tmp_path / "long", program=LONG_PROGRAM))


def _block(code: str) -> str:
    return code.split("# EVOLVE-BLOCK-START\n")[1].split("# EVOLVE-BLOCK-END")[0]


FAR = LONG_PROGRAM.replace("return 0.5", "return 2.5").replace("".join(f"    a{i} = {i}\n" for i in range(10, 30)), "")
THIRD = LONG_PROGRAM.replace("return 0.5", "return 1.5").replace("".join(f"    a{i} = {i}\n" for i in range(20, 40)), "")


def _tweak(code: str) -> str:
    return code.replace("a7 = 7", "a7 = 8")  # one token changed


def _near_the_other(body: dict[str, Any]) -> str:
    """A one-token tweak of whichever of LONG_PROGRAM and FAR is *not* the prompt's current program (the parent)."""
    return _tweak(LONG_PROGRAM if _current(body).strip() == FAR.strip() else FAR)


def _novelty_run(store: Store, problem: Problem, tmp_path: Path, answers: list[Callable[[dict[str, Any]], str]],
                 proposals: int | None = None, **novelty: Any) -> tuple[Campaign, list[str], Any]:
    replies = iter(answers)
    n = proposals or len(answers)
    with serve(lambda body: _rewrite(_block(next(replies)(body)))) as (base, server):
        campaign = _create(store, problem, tmp_path, iterations=n, models=[_model(base, mode="rewrite")],
                           search={"novelty": {"enabled": "on", **novelty}})
        evaluated = _count_evaluations(campaign)
        asyncio.run(_steps(campaign, n))
    return campaign, evaluated, server


def _tweak_similarities() -> list[float]:
    """The similarity of each of the two programs to its one-token tweak."""
    return [similarity(shingles(code), shingles(_tweak(code))) for code in (LONG_PROGRAM, FAR)]


def _threshold() -> float:
    return min(_tweak_similarities())  # whichever program is the parent, the child is at or above it


def test_a_child_too_like_another_elite_is_a_near_duplicate_at_the_threshold(
        file_store: Store, long_problem: Problem, tmp_path: Path) -> None:
    threshold = _threshold()
    campaign, evaluated, _ = _novelty_run(file_store, long_problem, tmp_path, [lambda b: FAR, _near_the_other],
                                          threshold=threshold, action="reject")
    initial, far, near = file_store.list_programs(campaign.id)
    assert far.status is EvalStatus.OK and evaluated == [far.code]
    assert near.status is EvalStatus.NEAR_DUPLICATE and near.score is None
    other = far.id if near.parent_id == initial.id else initial.id  # never its own parent: an edit is meant to resemble it
    assert near.artifacts["nearest"] == other and float(near.artifacts["similarity"]) >= threshold


def test_just_below_the_threshold_the_child_is_evaluated(file_store: Store, long_problem: Problem, tmp_path: Path) -> None:
    campaign, evaluated, _ = _novelty_run(file_store, long_problem, tmp_path, [lambda b: FAR, _near_the_other],
                                          threshold=max(_tweak_similarities()) + 0.005, action="reject")
    assert [p.status for p in file_store.list_programs(campaign.id)[1:]] == [EvalStatus.OK, EvalStatus.OK]
    assert len(evaluated) == 2


def test_a_child_is_never_compared_with_its_own_parent(file_store: Store, long_problem: Problem, tmp_path: Path) -> None:
    campaign, evaluated, _ = _novelty_run(file_store, long_problem, tmp_path, [lambda b: _tweak(LONG_PROGRAM)],
                                          threshold=0.5, action="reject")
    assert file_store.list_programs(campaign.id)[1].status is EvalStatus.OK and len(evaluated) == 1


def test_a_near_duplicate_with_retry_sends_the_model_back_once_and_evaluates_its_second_answer(
        file_store: Store, long_problem: Problem, tmp_path: Path) -> None:
    campaign, evaluated, server = _novelty_run(file_store, long_problem, tmp_path,
                                               [lambda b: FAR, _near_the_other, lambda b: THIRD], proposals=2,
                                               threshold=_threshold(), action="retry")
    child = file_store.list_programs(campaign.id)[2]
    assert child.status is EvalStatus.OK and child.code == THIRD and evaluated[-1] == THIRD
    second = server.log[2].body["messages"]
    assert second[-2]["role"] == "assistant" and "not new enough" in second[-1]["content"]
    assert "too similar to program" in second[-1]["content"]
    assert len([c for c in file_store.llm_calls(campaign.id) if c.iteration == 2]) == 2


def test_the_novelty_filter_is_off_for_the_mutator_by_default(file_store: Store, long_problem: Problem, tmp_path: Path) -> None:
    campaign = _create(file_store, long_problem, tmp_path, iterations=12, models=[{"name": "mutator"}])
    asyncio.run(campaign.run())
    assert EvalStatus.NEAR_DUPLICATE.value not in file_store.status_counts(campaign.id)


# -------------------------------------------------------------- crossover
def test_crossover_prompts_carry_two_parents_and_answer_against_the_first(
        file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    with serve(_mutate) as (base, server):
        campaign = _create(file_store, quadratic, tmp_path, iterations=24, islands=2, models=[_model(base)],
                           search={"mix": {"crossover": 1.0}}, seed=3)
        asyncio.run(_steps(campaign, 24))
    programs = {p.id: p for p in file_store.list_programs(campaign.id)}
    crossovers = [p for p in programs.values() if p.origin is Origin.CROSSOVER]
    assert crossovers, Counter(p.origin for p in programs.values())
    for child in crossovers:
        mate, parent = programs[child.mate_id or ""], programs[child.parent_id or ""]
        assert mate.id != parent.id and mate.island != child.island and child.template == "crossover"
        prompt = str(server.log[child.iteration - 1].body["messages"][1]["content"])
        assert "# Second parent" in prompt and "Combine the two parents" in prompt
        blocks = _FENCE.findall(prompt)
        assert blocks[-2].strip() == mate.code.strip() and blocks[-1].strip() == parent.code.strip()
    # every proposal asked for a crossover: the first ones had nothing to cross with and fell back to the model's mode
    first = next(p for p in programs.values() if p.iteration == 1)
    assert first.origin is Origin.DIFF and first.mate_id is None and first.template == "diff"
    assert all(programs[p.mate_id or ""].iteration > 0 for p in crossovers)  # the initial program is every island's


# ----------------------------------------------------------------- bandit
def test_the_bandit_converges_on_the_useful_model_and_resumes_with_its_state(
        file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    def answer(body: dict[str, Any]) -> str:  # one server, two models at the same price: one improves, one never edits
        return _mutate(body) if body["model"] == "useful" else "I would rather not change anything."

    with serve(answer) as (base, _):
        models = [_model(base, name="openai/useful"), _model(base, name="openai/useless")]
        campaign = _create(file_store, quadratic, tmp_path, iterations=60, models=models, search={"selection": "bandit"}, seed=5)
        asyncio.run(_steps(campaign, 60))
        first = Counter(p.model for p in file_store.list_programs(campaign.id)[1:])
        assert first["openai/useful"] >= 45, first  # >= 75% already; the uniform prior tries both
        before = {(e.model, e.kind): (e.proposals, e.improved) for e in campaign.selector.estimates()}
        resumed = Campaign.resume(file_store, campaign.id, workdir=tmp_path / "work2", iterations=90)
        after = {(e.model, e.kind): (e.proposals, e.improved) for e in resumed.selector.estimates()}
        assert after == before and before[("openai/useful", "diff")][0] == first["openai/useful"]
        asyncio.run(_steps(resumed, 30))
        asyncio.run(resumed.evaluator.close())
    later = Counter(p.model for p in file_store.list_programs(campaign.id)[61:])
    assert later["openai/useful"] >= 27, later  # it did not start learning from scratch


# ----------------------------------------------------------- meta-prompts
NOTE = "- NOTE-7: values of x near 3 scored best; negative x always lost."


def test_meta_summaries_are_stored_and_reach_later_prompts_of_the_island_also_after_resume(
        file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    def answer(body: dict[str, Any]) -> str:
        return NOTE if "Write a short summary" in _prompt(body) else _mutate(body)

    with serve(answer) as (base, server):
        campaign = _create(file_store, quadratic, tmp_path, iterations=6, models=[_model(base)], search={"meta_every": 3})
        asyncio.run(_steps(campaign, 6))
        meta = [n for n, e in enumerate(server.log) if "Write a short summary" in _prompt(e.body)]
        assert len(meta) == 2  # after the 3rd and the 6th proposal
        assert NOTE not in _prompt(server.log[meta[0] - 1].body)
        assert all(NOTE in _prompt(e.body) for e in server.log[meta[0] + 1:] if "Write a short summary" not in _prompt(e.body))
        assert NOTE in _prompt(server.log[meta[1]].body)  # the next summary starts from the last
        events = file_store.events(campaign.id, kind="meta_summary")
        assert [(e["data"]["island"], e["data"]["iteration"], e["data"]["text"]) for e in events] == [(0, 3, NOTE), (0, 6, NOTE)]
        assert sum(c.template == "meta" for c in file_store.llm_calls(campaign.id)) == 2
        resumed = Campaign.resume(file_store, campaign.id, workdir=tmp_path / "work2", iterations=7)
        assert NOTE in resumed.ask().messages[1]["content"]
        asyncio.run(resumed.evaluator.close())


def test_a_meta_summary_that_breaks_costs_nothing_but_itself(file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    with serve(_mutate) as (base, _):
        campaign = _create(file_store, quadratic, tmp_path, iterations=4, models=[_model(base)], search={"meta_every": 2})

        def broken(**_: Any) -> list[dict[str, str]]:
            raise RuntimeError("a template that broke")

        campaign.prompts.meta = broken  # type: ignore[method-assign]
        assert asyncio.run(campaign.run()) is CampaignStatus.FINISHED
    assert len(file_store.list_programs(campaign.id)) == 5 and file_store.events(campaign.id, kind="meta_summary") == []


def test_the_mutator_never_writes_meta_summaries(file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    campaign = _create(file_store, quadratic, tmp_path, iterations=30, models=[{"name": "mutator"}])
    asyncio.run(campaign.run())
    assert file_store.events(campaign.id, kind="meta_summary") == []


# ------------------------------------------------------------- strategies
def _run_strategy(store: Store, problem: Problem, tmp_path: Path, strategy: str, n: int) -> tuple[Campaign, list[Any]]:
    prompts: list[str] = []

    def answer(body: dict[str, Any]) -> str:
        prompts.append(_prompt(body))
        return _mutate(body)

    with serve(answer) as (base, _):
        campaign = _create(store, problem, tmp_path, iterations=n, islands=2, models=[_model(base)],
                           search={"strategy": strategy, "meta_every": 2}, seed=2)
        asyncio.run(_steps(campaign, n))
    return campaign, prompts


def test_repeated_sampling_proposes_every_child_from_the_initial_program_with_no_archive(
        file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    campaign, prompts = _run_strategy(file_store, quadratic, tmp_path, "repeated-sampling", 12)
    initial, *children = file_store.list_programs(campaign.id)
    assert all(p.parent_id == initial.id for p in children)
    assert not any("Other programs from the archive" in p or "Recent attempts that failed" in p for p in prompts)
    assert file_store.events(campaign.id, kind="meta_summary") == []  # a baseline learns nothing into its prompts


def test_hill_climbing_always_proposes_from_the_best_program_so_far(
        file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    campaign, prompts = _run_strategy(file_store, quadratic, tmp_path, "hill-climb", 16)
    initial, *children = file_store.list_programs(campaign.id)
    best = initial
    for child in children:
        assert child.parent_id == best.id, child.iteration
        if child.fitness is not None and best.fitness is not None and child.fitness > best.fitness:
            best = child
    assert best is not initial and not any("Other programs from the archive" in p for p in prompts)


def test_evolve_draws_parents_from_the_archive(file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    campaign, _ = _run_strategy(file_store, quadratic, tmp_path, "evolve", 16)
    initial, *children = file_store.list_programs(campaign.id)
    best, not_from_best = initial, 0
    for child in children:
        not_from_best += child.parent_id != best.id
        if child.fitness is not None and best.fitness is not None and child.fitness > best.fitness:
            best = child
    assert len({p.parent_id for p in children}) > 2 and not_from_best > 0
