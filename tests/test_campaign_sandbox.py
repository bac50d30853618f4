"""README: "a sandbox that breaks mid-campaign stops the campaign with an error (resumable); it is never recorded as
the candidate's fault". A real campaign on the docker backend, served by a podman service this test starts and then
stops under the running campaign."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from evolve.campaign import Campaign, Progress
from evolve.config import CampaignConfig
from evolve.errors import SandboxError
from evolve.evaluators.runner import Evaluator
from evolve.problem import Problem
from evolve.store import Store
from evolve.values import CampaignStatus, EvalStatus
from tests.podman import start_podman_service
from tests.sandbox.helpers import unavailable

pytestmark = pytest.mark.slow

TARGET = 12
BREAK_AFTER = 4  # programs told before the engine goes away


class Engine:
    """A podman service speaking the Docker API on a private socket; DOCKER_HOST points at the running one."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder, self.monkeypatch = folder, monkeypatch
        self.service: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        sock = self.folder / f"docker-{self.starts}.sock"  # a fresh socket: a stale one would look like a live service
        try:
            self.service = start_podman_service(sock)
        except SandboxError as exc:
            unavailable("docker", str(exc))
        self.monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")

    def stop(self) -> None:
        if self.service is not None and self.service.poll() is None:
            self.service.terminate()
            try:
                self.service.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait()


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    running = Engine(tmp_path, monkeypatch)
    running.start()
    yield running
    running.stop()


def test_a_sandbox_that_breaks_mid_campaign_fails_it_resumably_and_blames_no_candidate(
        engine: Engine, file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    config = CampaignConfig.model_validate({"models": [{"name": "mutator"}], "iterations": TARGET, "islands": 2, "seed": 5,
                                            "eval_concurrency": 2, "sandbox": "docker"})
    campaign = asyncio.run(Campaign.create(file_store, quadratic, config, workdir=tmp_path / "work"))
    told: list[Progress] = []

    def progress(p: Progress) -> None:
        told.append(p)
        if len(told) == BREAK_AFTER:
            engine.stop()  # the Docker engine goes away under the running campaign

    with pytest.raises(SandboxError, match="docker"):
        asyncio.run(campaign.run(on_progress=progress))
    row = file_store.get_campaign(campaign.id)
    assert row.status is CampaignStatus.FAILED and row.error is not None and "sandbox" in row.error, row.error
    programs = file_store.list_programs(campaign.id)
    assert BREAK_AFTER <= row.iterations_done == len(programs) - 1 < TARGET, (row.iterations_done, len(programs))
    # Nothing half-told: each iteration recorded once, whole. With two evaluations in flight, the one beside the
    # broken call may finish and be kept, leaving the broken one's number as a gap the resumed run fills (below).
    recorded = sorted(p.iteration for p in programs)
    assert len(set(recorded)) == len(recorded) and recorded[0] == 0, recorded
    assert len(set(range(recorded[-1] + 1)) - set(recorded)) < config.eval_concurrency, recorded

    # No recorded failure is the broken engine's: each non-OK candidate fails the same way on a working one. (A program
    # blamed for the engine would come back OK here: the mutator's edits of this problem all evaluate.)
    engine.start()
    evaluator = Evaluator(quadratic, problem_dir=tmp_path / "recheck", sandbox="docker")
    for program in programs:
        if program.status in (EvalStatus.ERROR, EvalStatus.TIMEOUT, EvalStatus.INVALID):
            again = asyncio.run(evaluator.evaluate(program.code))
            assert again.status is program.status, (program.iteration, program.artifacts, again.artifacts)
        assert "engine" not in repr(program.artifacts).lower(), program.artifacts

    resumed = Campaign.resume(file_store, campaign.id, workdir=tmp_path / "work")
    assert asyncio.run(resumed.run()) is CampaignStatus.FINISHED
    row = file_store.get_campaign(campaign.id)
    programs = file_store.list_programs(campaign.id)
    assert row.status is CampaignStatus.FINISHED and row.error is None and row.iterations_done == TARGET
    assert sorted(p.iteration for p in programs) == list(range(TARGET + 1))
