"""Trusted evaluator of function_minimization.

The candidate runs `run_searches` in the sandbox and returns the points it
found; this code recomputes the function at those points, checks the box and
the evaluation budget, and scores the mean gap to the global minimum.
"""

from __future__ import annotations

import math
from typing import Any

from evolve.evaluators import Candidate, Invalid

SEEDS = [11, 23, 37, 41, 53, 67, 79, 83]
BUDGET = 400
BOUNDS = (-5.0, 5.0)
GLOBAL_MIN = -1.5186858408485788  # f(-1.7040828, 0.6775078): dense grid + local refinement
SUCCESS_GAP = 1e-3


def objective(x: float, y: float) -> float:
    return math.sin(x) * math.cos(y) + math.sin(x * y) + (x**2 + y**2) / 20


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"{what} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise Invalid(f"{what} is {value}; it must be finite")
    return float(value)


def evaluate(candidate: Candidate) -> dict[str, Any]:
    results = candidate.call("run_searches", SEEDS, BUDGET, list(BOUNDS))
    if not isinstance(results, list) or len(results) != len(SEEDS):
        raise Invalid(f"run_searches must return one result per seed ({len(SEEDS)})")
    gaps = []
    for seed, item in zip(SEEDS, results, strict=True):
        if not isinstance(item, dict) or set(item) != {"x", "y", "calls"}:
            raise Invalid(f"seed {seed}: each result must be a dict with x, y and calls")
        x, y = _number(item["x"], f"seed {seed}: x"), _number(item["y"], f"seed {seed}: y")
        calls = _number(item["calls"], f"seed {seed}: calls")
        if not (BOUNDS[0] <= x <= BOUNDS[1] and BOUNDS[0] <= y <= BOUNDS[1]):
            raise Invalid(f"seed {seed}: point ({x:.4g}, {y:.4g}) is outside the box {list(BOUNDS)}")
        if calls > BUDGET:
            raise Invalid(f"seed {seed}: used {int(calls)} function evaluations; the budget is {BUDGET}")
        gaps.append(max(0.0, objective(x, y) - GLOBAL_MIN))
    mean_gap = sum(gaps) / len(gaps)
    return {
        "metrics": {"mean_gap": mean_gap, "worst_gap": max(gaps)},
        "features": {"success_rate": sum(g < SUCCESS_GAP for g in gaps) / len(gaps)},
    }
