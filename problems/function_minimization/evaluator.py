"""Trusted evaluator of function_minimization: an ask/tell protocol with a hidden function.

The function never enters the sandbox. Each round the candidate's
``propose_all`` gets, per instance, the history of points it asked for with
their values, and answers with the next batch of points; this process computes
the values itself. So the evaluation budget cannot be exceeded (only
``ROUNDS × BATCH`` points are ever evaluated) and the function cannot be
minimized analytically: each instance is the base function shifted and rotated
by amounts the candidate never sees. The score is the mean gap between the
best value found and the global minimum.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evolve.evaluators import Candidate, as_array, as_list

ROUNDS = 10
BATCH = 40  # points per instance per round: a budget of 400 evaluations
BOUNDS = (-5.0, 5.0)
SEARCH_SEEDS = (11, 23, 37, 41, 53, 67, 79, 83)
HELD_OUT_SEEDS = (101, 211, 307, 401, 503, 601, 701, 809)
# min of the base function over the plane, at (-1.7040828, 0.6775078); a dense
# grid over [-12, 12]^2 plus local refinement. Every instance's minimizer lies
# inside the box (shift <= 1 per axis, |minimizer| = 1.83, box half-width 5).
GLOBAL_MIN = -1.5186858408485788
SUCCESS_GAP = 1e-3


def base(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sin(x) * np.cos(y) + np.sin(x * y) + (x**2 + y**2) / 20


class Instance:
    """The base function, shifted and rotated by secret amounts drawn from ``seed``."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng([20251124, seed])
        self.shift = rng.uniform(-1.0, 1.0, size=2)
        angle = rng.uniform(0, 2 * math.pi)
        self.rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])

    def __call__(self, points: np.ndarray) -> np.ndarray:
        p = (points - self.shift) @ self.rotation.T
        return np.asarray(base(p[:, 0], p[:, 1]), dtype=np.float64)


def _search(candidate: Candidate, seeds: tuple[int, ...]) -> dict[str, Any]:
    instances = [Instance(s) for s in seeds]
    histories: list[list[list[float]]] = [[] for _ in seeds]
    best = np.full(len(seeds), np.inf)
    for round_ in range(ROUNDS):
        rng_seeds = [1000 * round_ + i for i in range(len(seeds))]
        answer = candidate.call("propose_all", histories, BATCH, list(BOUNDS), rng_seeds)
        batches = as_list(answer, f"round {round_}: propose_all() result", length=len(seeds))
        for i, raw in enumerate(batches):
            points = as_array(raw, f"round {round_}, instance {i}: points", shape=(BATCH, 2), low=BOUNDS[0], high=BOUNDS[1])
            values = instances[i](points)
            best[i] = min(best[i], float(values.min()))
            histories[i].extend([[float(x), float(y), float(v)] for (x, y), v in zip(points, values, strict=True)])
    gaps = np.maximum(0.0, best - GLOBAL_MIN)
    return {
        "metrics": {"mean_gap": float(gaps.mean()), "worst_gap": float(gaps.max())},
        "features": {"success_rate": float(np.mean(gaps < SUCCESS_GAP))},
        "artifacts": {"gaps": ", ".join(f"{g:.3g}" for g in gaps)},
    }


def evaluate(candidate: Candidate) -> dict[str, Any]:
    return _search(candidate, SEARCH_SEEDS)


def evaluate_held_out(candidate: Candidate) -> dict[str, Any]:
    return _search(candidate, HELD_OUT_SEEDS)

