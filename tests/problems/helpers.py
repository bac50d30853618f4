"""Run a built-in problem's evaluator on hand-written candidates, and a short mutator campaign on it.

Candidates go through the real path: the trusted evaluator process and the
sandbox (``auto``: bubblewrap here), exactly as in a campaign.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import importlib.util
import re
import shutil
import tempfile
import time
from pathlib import Path
from types import ModuleType

from evolve.blocks import END_MARKER, START_MARKER
from evolve.campaign import Campaign
from evolve.config import CampaignConfig
from evolve.evaluators import Candidate
from evolve.evaluators.runner import Evaluator
from evolve.problem import Problem, resolve_problem
from evolve.sandbox import SandboxLimits, get_sandbox
from evolve.store import Store
from evolve.values import CampaignStatus, EvalResult, EvalStatus

__all__ = ["assert_rejected", "evaluate", "evaluator_module", "mutator_improves", "replace_block", "sandboxed"]


@functools.cache
def _evaluator(name: str) -> Evaluator:
    folder = tempfile.mkdtemp(prefix=f"evolve-test-{name}-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the suite leaves nothing of evolve on the host
    return Evaluator(resolve_problem(name), problem_dir=Path(folder))


def evaluate(name: str, code: str, *, held_out: bool = False) -> EvalResult:
    """Score ``code`` with the built-in problem ``name``."""
    return asyncio.run(_evaluator(name).evaluate(code, held_out=held_out))


def evaluator_module(name: str) -> ModuleType:
    """The problem's ``evaluator.py``, loaded here: to draw its instances, or to run its functions on chosen ones."""
    spec = importlib.util.spec_from_file_location(f"{name}_evaluator", Path(resolve_problem(name).source) / "evaluator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sandboxed(code: str, *, seconds: float = 60.0) -> Candidate:
    """``code`` as the candidate an evaluator function gets, run by the real sandbox backend (``auto``)."""
    limits = SandboxLimits(wall_s=seconds, cpu_s=int(seconds), memory_bytes=1 << 30)
    return Candidate(code, sandbox=get_sandbox("auto"), limits=limits, deadline=time.monotonic() + seconds)


def replace_block(name: str, body: str) -> str:
    """The problem's initial program with its (single) EVOLVE-BLOCK replaced by ``body``."""
    initial = resolve_problem(name).initial_program
    pattern = re.compile(re.escape(START_MARKER) + r".*?" + re.escape(END_MARKER), re.DOTALL)
    assert len(pattern.findall(initial)) == 1, "replace_block needs a one-block initial program"
    return pattern.sub(lambda _m: f"{START_MARKER}\n{body.strip()}\n# {END_MARKER}", initial)


def assert_rejected(result: EvalResult, fragment: str, *, status: EvalStatus = EvalStatus.INVALID) -> None:
    """The candidate was refused with ``status`` and a message containing ``fragment``."""
    error = result.artifacts.get("error", "")
    assert result.status is status, f"expected {status.value}, got {result.status.value}: {error}"
    assert fragment in error, f"{fragment!r} not in {error!r}"


def mutator_improves(name: str, tmp_path: Path, *, iterations: int, seed: int = 1) -> tuple[float, float]:
    """Run ``iterations`` of the mutator on the problem; the initial and the best score."""
    problem: Problem = resolve_problem(name)
    store = Store.open(str(tmp_path / "evolve.db"))
    try:
        config = CampaignConfig.model_validate(
            {"eval_concurrency": 2, "models": [{"name": "mutator"}], "iterations": iterations, "seed": seed, "islands": 2}
        )
        campaign = asyncio.run(Campaign.create(store, problem, config, workdir=tmp_path / "work"))
        assert asyncio.run(campaign.run()) is CampaignStatus.FINISHED
        programs = store.list_programs(campaign.id)
        best = store.best_program(campaign.id)
        assert best is not None and best.score is not None and programs[0].score is not None
        return programs[0].score, best.score
    finally:
        store.close()
