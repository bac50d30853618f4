"""A grid that does not fit its programs is reported: in `evolve status`, the API and the dashboard's data."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from evolve.campaign import Campaign
from evolve.config import CampaignConfig
from evolve.grids import grid_fit, grid_warnings
from evolve.problem import Problem, load_problem, resolve_problem
from evolve.store import Store
from tests.conftest import QUADRATIC_YAML, write_problem


def _problem(tmp_path: Path, low: float, high: float) -> Problem:
    yaml = QUADRATIC_YAML.replace("    min: -10\n    max: 10\n", f"    min: {low}\n    max: {high}\n")
    return load_problem(write_problem(tmp_path / f"q{low}_{high}", yaml=yaml))


def _campaign(store: Store, problem: Problem, tmp_path: Path, iterations: int) -> Campaign:
    config = CampaignConfig.model_validate({"models": [{"name": "mutator"}], "iterations": iterations, "islands": 1,
                                            "eval_concurrency": 2, "seed": 4})
    campaign = asyncio.run(Campaign.create(store, problem, config, workdir=tmp_path / "work"))
    asyncio.run(campaign.run())
    return campaign


@pytest.mark.parametrize(("low", "high", "warned"), [(-1000, 1000, True), (0, 4, False)])
def test_an_axis_far_wider_than_the_programs_values_is_warned_about_after_100_programs(
        file_store: Store, tmp_path: Path, low: float, high: float, warned: bool) -> None:
    problem = _problem(tmp_path, low, high)
    campaign = _campaign(file_store, problem, tmp_path, 100)
    (fit,) = grid_fit(file_store, campaign.id, list(problem.config.features))
    assert fit.low is not None and fit.high is not None and low <= fit.low <= fit.high <= high
    warnings = grid_warnings(file_store, campaign.id, list(problem.config.features), programs=100)
    assert bool(warnings) is warned and fit.too_wide is warned
    if warned:
        assert "grid axis 'x'" in warnings[0] and f"only {fit.filled} of its 20 bins" in warnings[0]
    assert grid_warnings(file_store, campaign.id, list(problem.config.features), programs=99) == []  # too early to say


def test_evolve_status_shows_the_warning(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    store = Store.open(str(db))
    try:
        _campaign(store, _problem(tmp_path, -1000, 1000), tmp_path, 100)
    finally:
        store.close()
    shown = subprocess.run([sys.executable, "-m", "evolve", "status", "--db", str(db)], capture_output=True, text=True,
                           check=True, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert "warning: grid axis 'x'" in " ".join(shown.stdout.split())
    data = json.loads(subprocess.run([sys.executable, "-m", "evolve", "status", "--db", str(db), "--json"],
                                     capture_output=True, text=True, check=True).stdout)
    assert data[0]["grid_warnings"] and "narrow its range" in data[0]["grid_warnings"][0]


def test_every_built_in_problems_code_length_axis_brackets_its_initial_program() -> None:
    for name in ("circle_packing", "circle_packing_32", "cap_set", "autocorrelation", "function_minimization",
                 "matmul_rank", "online_bin_packing", "tsp_heuristic"):
        problem = resolve_problem(name)
        (axis,) = [a for a in problem.config.features if a.name == "code_length"]
        length = len(problem.initial_program)
        # a bin of at most an eighth of the program: edits of a few lines move a program across bins
        assert axis.min < length < axis.max and (axis.max - axis.min) / axis.bins <= length / 8, name
