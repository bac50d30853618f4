"""Soak: 2,000 mutator iterations on the warm path, with candidates that crash, time out and eat memory.

The program's behaviour is one number the mutator keeps changing (``KIND``),
so the campaign mixes every kind of bad candidate with good ones for its
whole length. Afterwards: every iteration is recorded, the warm workers'
memory stayed bounded, and the host has the same processes and this
process the same open descriptors as before the campaign.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

import pytest

from evolve.campaign import Campaign, Progress
from evolve.config import CampaignConfig
from evolve.evaluators.pool import WarmPool
from evolve.problem import load_problem
from evolve.store import Store
from evolve.values import CampaignStatus
from tests.conftest import write_problem

pytestmark = pytest.mark.slow

ITERATIONS = 2000

YAML = """\
name: soak
description: Every kind of candidate, again and again.
objective:
  metric: score
limits:
  timeout_s: 0.5
  cpu_s: 1
  memory_mb: 256
  processes: 8
"""

PROGRAM = """\
import os
import time

# EVOLVE-BLOCK-START
KIND = 7
# EVOLVE-BLOCK-END


def solve():
    kind = KIND % 12
    if kind == 0:
        raise RuntimeError("a crash")
    if kind == 1:
        time.sleep(5)  # past the evaluation's 0.5 s
    if kind == 2:
        hoard = [bytearray(16 << 20) for _ in range(64)]  # a gigabyte, in a 256 MiB sandbox
        return len(hoard)
    if kind == 3:
        os._exit(3)
    return float(kind)
"""

EVALUATOR = """\
def evaluate(candidate):
    return {"metrics": {"score": float(candidate.call("solve"))}}
"""


def _resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _evolve_processes() -> set[int]:
    """Live (not zombie) processes on the host that are evolve's: its workers, launchers, sandboxes and candidates.

    Recognised by their command line (evolve's modules, bwrap, the harness) or by a run uid (``confine.run_uid``);
    processes of anything else on the machine come and go on their own.
    """
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        if uid >= 1_000_000 or any(mark in cmdline for mark in (b"evolve.evaluators", b"bwrap", b"Child-side harness")):
            found.add(int(entry))
    return found


def _descriptors() -> dict[str, str]:
    """This process's open descriptors and what they point at, less the store's SQLite connections (a bounded pool)."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if not target.endswith((".db", ".db-wal", ".db-shm")):
            found[fd] = target
    return found


def test_two_thousand_mixed_iterations_leave_the_host_as_they_found_it(file_store: Store, tmp_path: Path) -> None:
    problem = load_problem(write_problem(tmp_path / "soak", yaml=YAML, program=PROGRAM, evaluator=EVALUATOR))
    config = CampaignConfig.model_validate({"models": [{"name": "mutator"}], "iterations": ITERATIONS, "eval_concurrency": 2,
                                            "llm_concurrency": 2, "islands": 2, "seed": 5,
                                            # every iteration must reach the sandbox: dedup would skip the repeated ones
                                            "search": {"dedup": False}})
    processes_before, fds_before = _evolve_processes(), _descriptors()
    samples: list[float] = []

    async def go() -> CampaignStatus:
        campaign = await Campaign.create(file_store, problem, config, workdir=tmp_path / "work")
        pool = campaign.evaluator.executor
        assert isinstance(pool, WarmPool)

        def watch(progress: Progress) -> None:
            if progress.iterations_done % 100 == 0:
                samples.extend(_resident_mb(pid) for pid in pool.worker_pids())

        status = await campaign.run(on_progress=watch)
        assert pool.health().warm_launchers
        return status

    assert asyncio.run(go()) is CampaignStatus.FINISHED
    programs = file_store.list_programs(file_store.list_campaigns()[0].id)
    assert sorted(p.iteration for p in programs) == list(range(ITERATIONS + 1)), "an iteration went unrecorded"
    kinds = Counter(p.status.value for p in programs[1:])
    assert {"ok", "error", "timeout"} <= set(kinds), kinds
    assert kinds["timeout"] >= 20 and kinds["error"] >= 100, kinds
    assert samples and max(samples) < 200, f"a warm worker grew to {max(samples):.0f} MB"
    assert max(samples[len(samples) // 2:]) < min(samples) + 40, f"the workers' memory kept growing: {samples}"
    leftover = _evolve_processes() - processes_before
    assert not leftover, [Path(f"/proc/{pid}/cmdline").read_bytes()[:200] for pid in leftover if Path(f"/proc/{pid}").exists()]
    assert _descriptors() == fds_before, "the campaign left descriptors open"
