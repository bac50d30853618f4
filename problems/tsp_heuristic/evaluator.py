"""Trusted evaluator of tsp_heuristic: a two-stage cascade over generated Euclidean instances.

The candidate's ``solve_all`` returns one tour per instance: a permutation of
the point indices. This process checks it (whole numbers, every city exactly
once) and measures the closed tour itself, relative to a reference tour of the
same instance (``reference_tours.json``: the best of three LKH runs of 20
trials each, via the elkai package, on distances scaled to integers by 10^6;
for 100 uniform points these are optimal or within a hair of it).

Stage ``small`` (one 20-city instance) stops a program whose tours are more
than 60% too long before the 100-city instances run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from evolve.evaluators import Candidate, Invalid, as_array, as_list

SMALL = ((20, 0),)
SEARCH = tuple((100, seed) for seed in (1, 2, 3, 4, 5))
HELD_OUT = tuple((100, seed) for seed in (101, 102, 103, 104, 105))
REFERENCE_TOURS: dict[str, list[int]] = json.loads(Path(__file__).with_name("reference_tours.json").read_text())


def points(n: int, seed: int) -> np.ndarray:
    """The instance's n points, uniform in the unit square."""
    return np.random.default_rng([4243, n, seed]).random((n, 2))


def tour_length(pts: np.ndarray, tour: np.ndarray) -> float:
    """Length of the closed tour visiting ``pts`` in ``tour`` order."""
    ordered = pts[tour]
    return float(np.sum(np.linalg.norm(ordered - np.roll(ordered, -1, axis=0), axis=1)))


def check_tour(raw: Any, n: int, what: str) -> np.ndarray:
    """A permutation of range(n).

    Raises:
        Invalid: naming a missing or repeated city.
    """
    tour = as_array(raw, f"{what}: tour", shape=(n,), integer=True, low=0, high=n - 1)
    counts = np.bincount(tour, minlength=n)
    if np.any(counts != 1):
        repeated, missing = np.flatnonzero(counts > 1), np.flatnonzero(counts == 0)
        raise Invalid(f"{what}: the tour must visit every city exactly once; city {int(repeated[0])} appears "
                      f"{int(counts[repeated[0]])} times and city {int(missing[0])} never")
    return tour


def _ratio(candidate: Candidate, specs: tuple[tuple[int, int], ...]) -> tuple[float, list[float]]:
    instances = [points(n, seed) for n, seed in specs]
    tours = as_list(candidate.call("solve_all", [p.tolist() for p in instances]), "solve_all() result", length=len(specs))
    ratios = []
    for (n, seed), pts, raw in zip(specs, instances, tours, strict=True):
        tour = check_tour(raw, n, f"instance {n}:{seed}")
        ratios.append(tour_length(pts, tour) / tour_length(pts, np.array(REFERENCE_TOURS[f"{n}:{seed}"])))
    return float(np.mean(ratios)), ratios


def evaluate_small(candidate: Candidate) -> dict[str, Any]:
    ratio, _ = _ratio(candidate, SMALL)
    return {"metrics": {"small_ratio": ratio}}


def evaluate(candidate: Candidate) -> dict[str, Any]:
    ratio, ratios = _ratio(candidate, SEARCH)
    return {"metrics": {"length_ratio": ratio, "worst_ratio": max(ratios)},
            "artifacts": {"ratios": ", ".join(f"{r:.4f}" for r in ratios)}}


def evaluate_held_out(candidate: Candidate) -> dict[str, Any]:
    ratio, ratios = _ratio(candidate, HELD_OUT)
    return {"metrics": {"length_ratio": ratio, "worst_ratio": max(ratios)}}
