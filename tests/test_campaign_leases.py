"""A controller frozen past its lease (a suspended VM, a partitioned host) while another resumes its campaign: the
second runs it to the end, the first wakes up to find every write refused, and no iteration is recorded twice.

Real controller processes on a real PostgreSQL server (the multi-host store): one is stopped with SIGSTOP.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evolve.campaign import Campaign
from evolve.config import CampaignConfig
from evolve.problem import Problem
from evolve.store import Store
from evolve.values import CampaignStatus
from tests.postgres import PostgresServer

pytestmark = pytest.mark.slow

LEASE_S = 2.0
TARGET = 60

CONTROLLER = """
import asyncio, sys
from pathlib import Path
from evolve.campaign import Campaign
from evolve.store import Store

store = Store.open(sys.argv[1])
campaign = Campaign.resume(store, sys.argv[2], workdir=Path(sys.argv[3]), lease_s=float(sys.argv[4]))
asyncio.run(campaign.run())
"""


def _wait_for(store: Store, campaign_id: str, done: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while store.get_campaign(campaign_id).iterations_done < done:
        assert time.monotonic() < deadline, f"fewer than {done} iterations within {timeout:g} s"
        time.sleep(0.05)


def test_a_controller_frozen_past_its_lease_loses_the_campaign_and_nothing_is_recorded_twice(
        postgres: PostgresServer, quadratic: Problem, tmp_path: Path) -> None:
    url = postgres.fresh_url()
    store = Store.open(url)
    config = CampaignConfig.model_validate({"models": [{"name": "mutator"}], "iterations": TARGET, "islands": 2,
                                            "seed": 9, "migration_interval": 3})
    created = asyncio.run(Campaign.create(store, quadratic, config, workdir=tmp_path / "made", lease_s=LEASE_S))
    asyncio.run(created.evaluator.close())
    store.set_status(created.id, CampaignStatus.STOPPED, owner=created.owner)

    first = subprocess.Popen([sys.executable, "-c", CONTROLLER, url, created.id, str(tmp_path / "a"), str(LEASE_S)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(store, created.id, 5)
        os.kill(first.pid, signal.SIGSTOP)  # frozen: no heartbeat, no writes, its connections idle
        frozen_at = store.get_campaign(created.id).iterations_done
        time.sleep(LEASE_S + 0.5)
        second = Campaign.resume(store, created.id, workdir=tmp_path / "b", lease_s=LEASE_S)  # any host may now
        assert asyncio.run(second.run()) is CampaignStatus.FINISHED
        os.kill(first.pid, signal.SIGCONT)  # it wakes up still believing it runs the campaign
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGCONT)
            first.kill()
            first.wait()
    assert first.returncode != 0
    assert "taken over by another controller" in err or "no longer this controller's" in err, err[-3000:]

    row = store.get_campaign(created.id)
    assert (row.status, row.owner, row.iterations_done) == (CampaignStatus.FINISHED, second.owner, TARGET)
    iterations = [p.iteration for p in store.list_programs(created.id)]
    assert len(iterations) == len(set(iterations)) == TARGET + 1 and frozen_at >= 5
    kinds = [e["kind"] for e in store.events(created.id)]
    assert kinds.count("program") == TARGET  # the frozen controller's proposals in flight were never recorded
    store.close()
    postgres.drop(url)
