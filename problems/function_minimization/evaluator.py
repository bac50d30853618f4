"""Trusted evaluator of function_minimization: an ask/tell protocol with a hidden function.

The function never enters the sandbox. Each round the candidate's
``propose_all`` gets, per instance, the history of points it asked for with
their values, and answers with the next batch of points; this process computes
the values itself. So the evaluation budget cannot be exceeded (only
``ROUNDS × BATCH`` points are ever evaluated) and the function cannot be
minimized analytically: each instance is the base function shifted and rotated
by amounts the candidate never sees, drawn afresh at every evaluation from a
seed this process takes from ``secrets``. So a program cannot learn the
instances either: what it (or a model reading its output) found in one
evaluation is of no use in the next. The score is the mean gap between the
best value found and the global minimum.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

import numpy as np

from evolve.evaluators import Candidate, as_array, as_list

ROUNDS = 10
BATCH = 40  # points per instance per round: a budget of 400 evaluations
BOUNDS = (-5.0, 5.0)
INSTANCES = 32  # per evaluation; the held-out figure uses twice as many
# min of the base function over the plane, at (-1.7040828, 0.6775078); a dense
# grid over [-12, 12]^2 plus local refinement. Every instance's minimizer lies
# inside the box (shift <= 1 per axis, |minimizer| = 1.83, box half-width 5).
GLOBAL_MIN = -1.5186858408485788
SUCCESS_GAP = 1e-3


def base(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sin(x) * np.cos(y) + np.sin(x * y) + (x**2 + y**2) / 20


class Instance:
    """The base function, shifted and rotated by amounts drawn from ``rng``."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.shift = rng.uniform(-1.0, 1.0, size=2)
        angle = rng.uniform(0, 2 * math.pi)
        self.rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])

    def __call__(self, points: np.ndarray) -> np.ndarray:
        p = (points - self.shift) @ self.rotation.T
        return np.asarray(base(p[:, 0], p[:, 1]), dtype=np.float64)


def secret_instances(count: int) -> list[Instance]:
    """``count`` instances from a seed drawn here, never shown to the candidate."""
    return [Instance(np.random.default_rng(s)) for s in np.random.SeedSequence(secrets.randbits(128)).spawn(count)]


def search(candidate: Candidate, instances: list[Instance]) -> dict[str, Any]:
    """Run the ask/tell rounds on ``instances``; the metrics, features and artifacts of the evaluation.

    Raises:
        Invalid: when a batch of points is malformed or outside the box.
        CandidateError: when the candidate crashes or runs out of time.
    """
    histories: list[list[list[float]]] = [[] for _ in instances]
    best = np.full(len(instances), np.inf)
    for round_ in range(ROUNDS):
        rng_seeds = [1000 * round_ + i for i in range(len(instances))]  # the candidate's own randomness
        answer = candidate.call("propose_all", histories, BATCH, list(BOUNDS), rng_seeds)
        batches = as_list(answer, f"round {round_}: propose_all() result", length=len(instances))
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
    return search(candidate, secret_instances(INSTANCES))


def evaluate_held_out(candidate: Candidate) -> dict[str, Any]:
    # another secret draw, twice as large: instances new at every evaluation leave no fixed set to hold out
    return search(candidate, secret_instances(2 * INSTANCES))

