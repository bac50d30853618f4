"""Circle packing in the unit square, shared by the ``circle_packing`` problems.

The candidate returns ``(centers, radii)``; everything here recomputes from
those arrays: containment in the square, pairwise disjointness (all pairs,
not only neighbours) and the score, the sum of the radii.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evolve.evaluators.candidate import Candidate, Invalid
from evolve.evaluators.checks import as_array, as_list

__all__ = ["TOLERANCE", "check_packing", "evaluate_packing"]

#: Allowed overlap or protrusion per constraint, absolute, in unit-square units.
#: The most a packing can gain from it is n × TOLERANCE / 2 in the sum of radii.
TOLERANCE = 1e-9


def check_packing(centers: np.ndarray, radii: np.ndarray) -> list[str]:
    """Every violation of the packing rules, as messages (empty when valid)."""
    problems: list[str] = []
    low = centers - radii[:, None]
    high = centers + radii[:, None]
    outside = np.flatnonzero(np.any(low < -TOLERANCE, axis=1) | np.any(high > 1 + TOLERANCE, axis=1))
    if outside.size:
        problems.append(f"circle(s) {outside.tolist()[:8]} extend outside the unit square")
    diff = centers[:, None, :] - centers[None, :, :]
    dist = np.sqrt(np.sum(diff**2, axis=-1))
    overlap = radii[:, None] + radii[None, :] - dist
    i, j = np.triu_indices(len(radii), k=1)
    bad = overlap[i, j] > TOLERANCE
    if np.any(bad):
        pairs = list(zip(i[bad].tolist(), j[bad].tolist(), strict=True))
        problems.append(f"{len(pairs)} overlapping pair(s), e.g. circles {pairs[:3]}")
    return problems


def evaluate_packing(candidate: Candidate, n: int) -> dict[str, Any]:
    """Score ``construct_packing()`` of the candidate for ``n`` circles.

    Raises:
        Invalid: for a malformed, non-finite or invalid packing, naming the violation.
    """
    result = as_list(candidate.call("construct_packing"), "construct_packing() result (centers, radii)", length=2)
    centers = as_array(result[0], "centers", shape=(n, 2))
    radii = as_array(result[1], "radii", shape=(n,), low=0.0)
    problems = check_packing(centers, radii)
    if problems:
        raise Invalid("invalid packing: " + "; ".join(problems))
    total = float(np.sum(radii))
    mean = float(np.mean(radii))
    return {
        "metrics": {"sum_radii": total, "min_radius": float(np.min(radii)), "max_radius": float(np.max(radii))},
        "features": {"radius_cv": float(np.std(radii) / mean) if mean > 0 else 0.0},
    }
