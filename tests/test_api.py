"""The Python API as a notebook or a scheduler uses it: the README's example, the blocking and async runs, the primitives."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import evolve
from evolve.campaign import Campaign
from evolve.errors import ConfigError
from evolve.values import CampaignStatus, EvalStatus, Origin
from tests.conftest import write_problem

README = Path(__file__).resolve().parents[1] / "README.md"
MUTATOR = [evolve.ModelSpec(name="mutator")]


def readme_example() -> str:
    section = README.read_text().split("### Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)  # type: ignore[union-attr]


def test_the_readme_example_runs(tmp_path: Path) -> None:
    (tmp_path / "example.py").write_text(readme_example())
    result = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    first, *_, last = result.stdout.strip().splitlines()
    campaign_id = first.split()[0]
    assert re.fullmatch(r"[0-9a-f]{12} finished best: [0-9.]+", first), first
    assert last.startswith(f"{campaign_id} 9 programs; the best begins:"), last
    assert " island 0 cell " in result.stdout and "outcomes: {" in result.stdout


def test_run_takes_settings_as_keywords_and_reads_back_what_it_found(tmp_path: Path) -> None:
    folder = write_problem(tmp_path / "quad")
    with evolve.run(folder, db=str(tmp_path / "k.db"), iterations=6, seed=2, models=[{"name": "mutator"}]) as result:
        assert result.status is CampaignStatus.FINISHED and result.config.iterations == 6
        programs = result.programs()
        assert len(programs) == 7 and programs[0].origin is Origin.INITIAL
        assert sum(result.counts().values()) == 7 and result.problem.name == "quadratic"
        best = result.best
        assert best is not None and best.score == max(p.score for p in programs if p.score is not None)
        assert {c.program_id for c in result.archive()} <= {p.id for p in programs}
    with pytest.raises(ConfigError, match="iterations: Input should be greater than or equal to 1"):
        evolve.run(folder, db=str(tmp_path / "k.db"), iterations=0)
    with pytest.raises(ConfigError, match="either a CampaignConfig or settings"):
        evolve.run(folder, evolve.CampaignConfig(), db=str(tmp_path / "k.db"), iterations=3)


def test_run_works_inside_a_running_event_loop_and_resume_continues(tmp_path: Path) -> None:
    folder = write_problem(tmp_path / "quad")
    db = str(tmp_path / "n.db")

    async def notebook_cell() -> evolve.CampaignResult:  # Jupyter runs every cell inside an event loop
        return evolve.run(folder, evolve.CampaignConfig(iterations=3, models=MUTATOR), db=db)

    with asyncio.run(notebook_cell()) as first:
        assert first.status is CampaignStatus.FINISHED
        campaign_id = first.id
    with evolve.resume(db, campaign_id, iterations=5) as more:
        assert more.id == campaign_id and more.status is CampaignStatus.FINISHED
        assert [p.iteration for p in more.programs()] == [0, 1, 2, 3, 4, 5] and more.config.iterations == 5


def test_run_async_stops_cleanly_when_asked(tmp_path: Path) -> None:
    folder = write_problem(tmp_path / "quad")

    async def go() -> evolve.CampaignResult:
        stop = asyncio.Event()
        seen: list[int] = []

        def progress(p: evolve.Progress) -> None:
            seen.append(p.iterations_done)
            if p.iterations_done >= 2:
                stop.set()

        config = evolve.CampaignConfig(iterations=1000, models=MUTATOR, llm_concurrency=1, eval_concurrency=1)
        return await evolve.run_async(folder, config, db=str(tmp_path / "a.db"), stop=stop, on_progress=progress)

    with asyncio.run(go()) as result:
        assert result.status is CampaignStatus.STOPPED
        assert 2 <= len(result.programs()) - 1 < 1000
    with evolve.open_campaign(str(tmp_path / "a.db")) as again:
        assert again.id == result.id and again.status is CampaignStatus.STOPPED


def test_the_primitives_driven_by_hand(tmp_path: Path) -> None:
    """ask → generate → evaluate → tell, one proposal at a time, as a custom scheduler would."""
    problem = evolve.Problem.from_folder(write_problem(tmp_path / "quad"))
    store = evolve.Store.open(str(tmp_path / "h.db"))
    config = evolve.CampaignConfig(iterations=4, models=MUTATOR, seed=5)

    async def drive() -> list[EvalStatus]:
        campaign = await Campaign.create(store, problem, config, workdir=tmp_path / "work")
        statuses = []
        async with campaign.session():  # the lease renewed meanwhile; the workers stopped and the status set after
            for _ in range(4):
                proposal = campaign.ask()
                assert proposal.sample.parent.campaign_id == campaign.id and proposal.messages
                child = await campaign.generate(proposal)
                result = await campaign.evaluate(child, proposal=proposal)
                assert (result is None) == (child.code is None or child.failure is not None)
                outcome = campaign.tell(proposal.id, child, result)
                statuses.append(child.failure or (result.status if result else EvalStatus.ERROR))
                assert outcome.iterations_done == len(statuses)
        return statuses

    statuses = asyncio.run(drive())
    campaign_row = store.list_campaigns()[0]
    recorded = store.list_programs(campaign_row.id)
    assert [p.status for p in recorded[1:]] == statuses and campaign_row.iterations_done == 4
    assert campaign_row.status is CampaignStatus.FINISHED and campaign_row.lease_expires is None
    budget = evolve.Budget.of(config.model_copy(update={"max_tokens": 1}), campaign_row)
    assert budget.reached() is not None and "token budget reached" in (budget.reached() or "")
    store.close()


def test_builtin_problems_by_name_and_a_clear_error_for_an_unknown_one() -> None:
    assert evolve.Problem.builtin("circle_packing").name == "circle_packing"
    with pytest.raises(evolve.ProblemError, match="unknown built-in problem 'nope': use one of autocorrelation"):
        evolve.Problem.builtin("nope")


CTRL_C_SCRIPT = """\
import faulthandler
import signal
import sys
import evolve

faulthandler.register(signal.SIGUSR1, all_threads=True)  # a run that does not stop shows the test where it waits

# what Python installs at start-up in a terminal; a suite started in the background (bash sets SIGINT to ignored for
# background jobs, and a child inherits that) would leave it ignored, and no Ctrl-C could reach the run
signal.signal(signal.SIGINT, signal.default_int_handler)

def progress(p):
    if p.iterations_done == 2:
        print("two", flush=True)

config = evolve.CampaignConfig(iterations=100000, models=[evolve.ModelSpec(name="mutator")], eval_concurrency=1,
                               llm_concurrency=1)
with evolve.run(sys.argv[1], config, db=sys.argv[2], on_progress=progress) as result:
    print(result.status.value, len(result.programs()), flush=True)
"""


def test_ctrl_c_stops_a_blocking_run_cleanly_and_returns_its_result(tmp_path: Path) -> None:
    folder = write_problem(tmp_path / "quad")
    (tmp_path / "run.py").write_text(CTRL_C_SCRIPT)
    child = subprocess.Popen([sys.executable, "run.py", str(folder), str(tmp_path / "c.db")], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "two"
        child.send_signal(signal.SIGINT)  # the kernel may hand it to any of the run's threads: each must do
        try:
            out, err = child.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGUSR1)
            time.sleep(2)
            child.kill()
            pytest.fail(f"the run did not stop on Ctrl-C; its threads:\n{child.communicate()[1][-6000:]}")
    finally:
        child.kill()
    assert child.returncode == 0, err
    status, programs = out.split()
    assert status == "stopped" and 3 <= int(programs) < 100000
    with evolve.open_campaign(tmp_path / "c.db") as again:  # committed and resumable
        assert again.status is CampaignStatus.STOPPED and len(again.programs()) == int(programs)
    with pytest.raises(evolve.StoreError, match="no database at"):
        evolve.open_campaign(tmp_path / "typo.db")
    assert not (tmp_path / "typo.db").exists()
