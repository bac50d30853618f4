"""Trusted evaluator of tsp_heuristic: a two-stage cascade over Euclidean instances drawn for each evaluation.

Every evaluation draws new instances, points uniform in the unit square, from
a seed this process takes from ``secrets``: a program cannot recognise an
instance it has met before, so neither it nor a model reading earlier output
can keep a tour found in an earlier evaluation. The candidate's ``solve_all``
returns one tour per instance, a permutation of the point indices. This
process checks it (whole numbers, every city exactly once) and measures the
closed tour itself, relative to the Held-Karp lower bound of the instance
(the 1-tree bound with subgradient optimization, as in the DIMACS TSP
Challenge), so no tour can score below 1 and an optimal one scores about
1.006 at 100 points.

Stage ``small`` (one 20-city instance) stops a program whose tours are more
than 60% over the bound before the 100-city instances run.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from evolve.evaluators import Candidate, Invalid, as_array, as_list

SMALL = (20, 1)  # (cities, instances)
SEARCH = (100, 20)
HELD_OUT = (100, 40)  # a second secret draw, twice as large
HK_ITERATIONS = 300


def secret_instances(n: int, count: int) -> list[np.ndarray]:
    """``count`` instances of ``n`` points, uniform in the unit square, from a seed never shown to the candidate."""
    return [np.random.default_rng(s).random((n, 2)) for s in np.random.SeedSequence(secrets.randbits(128)).spawn(count)]


def tour_length(pts: np.ndarray, tour: np.ndarray) -> float:
    """Length of the closed tour visiting ``pts`` in ``tour`` order."""
    ordered = pts[tour]
    return float(np.sum(np.linalg.norm(ordered - np.roll(ordered, -1, axis=0), axis=1)))


def _one_trees(costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum 1-trees of a stack of cost matrices (k, n, n), node 0 the special one: their costs and node degrees.

    Prim's algorithm on nodes 1..n-1 for all k at once, then node 0's two cheapest edges.
    """
    k, n, _ = costs.shape
    rows = np.arange(k)
    in_tree = np.zeros((k, n), dtype=bool)
    in_tree[:, :2] = True
    key = np.where(in_tree, np.inf, costs[:, 1, :])
    parent = np.ones((k, n), dtype=np.int64)
    degree = np.zeros((k, n))
    total = np.zeros(k)
    for _ in range(n - 2):
        j = np.argmin(key, axis=1)
        total += key[rows, j]
        degree[rows, j] += 1
        np.add.at(degree, (rows, parent[rows, j]), 1)
        in_tree[rows, j] = True
        row = costs[rows, j, :]
        closer = (row < key) & ~in_tree
        key = np.where(in_tree, np.inf, np.where(closer, row, key))
        parent = np.where(closer, j[:, None], parent)
    to_zero = costs[:, 0, 1:]
    two = np.argpartition(to_zero, 1, axis=1)[:, :2]
    total += np.take_along_axis(to_zero, two, axis=1).sum(axis=1)
    degree[:, 0] = 2
    np.add.at(degree, (np.repeat(rows, 2), (two + 1).ravel()), 1)
    return total, degree


def held_karp_bounds(instances: list[np.ndarray], *, iterations: int = HK_ITERATIONS) -> np.ndarray:
    """A lower bound on the optimal tour of each instance (same size each): the best 1-tree bound found.

    Every node penalty vector gives a valid bound, so the result is a lower bound however far the
    subgradient steps (Polyak steps against a nearest-neighbour tour, halved after 10 without progress) got.
    """
    pts = np.stack(instances)
    k, n, _ = pts.shape
    dist = np.linalg.norm(pts[:, :, None, :] - pts[:, None, :, :], axis=-1)
    dist[:, np.arange(n), np.arange(n)] = np.inf
    upper = _nearest_neighbour_lengths(dist)
    penalty = np.zeros((k, n))
    best = np.full(k, -np.inf)
    step = np.full(k, 2.0)
    stall = np.zeros(k)
    for _ in range(iterations):
        cost, degree = _one_trees(dist + penalty[:, :, None] + penalty[:, None, :])
        bound = cost - 2 * penalty.sum(axis=1)
        stall = np.where(bound > best + 1e-12, 0, stall + 1)
        best = np.maximum(best, bound)
        step = np.where(stall >= 10, step / 2, step)
        stall = np.where(stall >= 10, 0, stall)
        gradient = degree - 2
        norm = (gradient * gradient).sum(axis=1)
        if not norm.any() or step.max() < 1e-6:  # a 1-tree that is a tour: the bound is exact
            break
        penalty += (step * (upper - bound) / np.maximum(norm, 1))[:, None] * gradient
    return best


def _nearest_neighbour_lengths(dist: np.ndarray) -> np.ndarray:
    k, n, _ = dist.shape
    rows = np.arange(k)
    seen = np.zeros((k, n), dtype=bool)
    seen[:, 0] = True
    here = np.zeros(k, dtype=np.int64)
    total = np.zeros(k)
    for _ in range(n - 1):
        d = np.where(seen, np.inf, dist[rows, here])
        here = d.argmin(axis=1)
        total += d[rows, here]
        seen[rows, here] = True
    return total + dist[rows, here, 0]


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


def ratios(candidate: Candidate, instances: list[np.ndarray]) -> list[float]:
    """Each instance's tour length over its Held-Karp bound.

    Raises:
        Invalid: when a tour is malformed (the message names the instance).
        CandidateError: when the candidate crashes or runs out of time.
    """
    bounds = held_karp_bounds(instances)  # before the call: the candidate's time is what is left after
    tours = as_list(candidate.call("solve_all", [p.tolist() for p in instances]), "solve_all() result", length=len(instances))
    out = []
    for i, (pts, bound, raw) in enumerate(zip(instances, bounds, tours, strict=True)):
        tour = check_tour(raw, len(pts), f"instance {i} ({len(pts)} cities)")
        out.append(tour_length(pts, tour) / float(bound))
    return out


def evaluate_small(candidate: Candidate) -> dict[str, Any]:
    return {"metrics": {"small_ratio": float(np.mean(ratios(candidate, secret_instances(*SMALL))))}}


def _full(candidate: Candidate, spec: tuple[int, int]) -> dict[str, Any]:
    values = ratios(candidate, secret_instances(*spec))
    return {"metrics": {"length_ratio": float(np.mean(values)), "worst_ratio": max(values)},
            "artifacts": {"ratios": ", ".join(f"{r:.4f}" for r in values)}}


def evaluate(candidate: Candidate) -> dict[str, Any]:
    return _full(candidate, SEARCH)


def evaluate_held_out(candidate: Candidate) -> dict[str, Any]:
    return _full(candidate, HELD_OUT)
