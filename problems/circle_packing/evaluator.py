"""Trusted evaluator of circle_packing.

The candidate's `construct_packing()` runs in the sandbox; only its returned
arrays come back here. This code checks them and recomputes the score itself:
a candidate cannot print, patch or forge its way to a score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evolve.evaluators import Candidate, Invalid

N_CIRCLES = 26
TOLERANCE = 1e-9  # allowed overlap / protrusion, absolute, in unit-square units


def _as_array(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise Invalid(f"{name} must be numeric, got dtype {value.dtype}")
        arr = value.astype(np.float64)
    else:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise Invalid(f"{name} must be a numeric array of shape {shape}: {exc}") from exc
    if arr.shape != shape:
        raise Invalid(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise Invalid(f"{name} contains NaN or inf")
    return arr


def check_packing(centers: np.ndarray, radii: np.ndarray) -> list[str]:
    """Every violation of the packing rules, as messages (empty when valid)."""
    problems: list[str] = []
    if np.any(radii < 0):
        problems.append(f"negative radius for circle(s) {np.flatnonzero(radii < 0).tolist()}")
    low = centers - radii[:, None]
    high = centers + radii[:, None]
    outside = np.flatnonzero(np.any(low < -TOLERANCE, axis=1) | np.any(high > 1 + TOLERANCE, axis=1))
    if outside.size:
        problems.append(f"circle(s) {outside.tolist()} extend outside the unit square")
    diff = centers[:, None, :] - centers[None, :, :]
    dist = np.sqrt(np.sum(diff**2, axis=-1))
    overlap = radii[:, None] + radii[None, :] - dist
    i, j = np.triu_indices(len(radii), k=1)
    bad = overlap[i, j] > TOLERANCE
    if np.any(bad):
        pairs = list(zip(i[bad].tolist(), j[bad].tolist(), strict=True))
        problems.append(f"{len(pairs)} overlapping pair(s), e.g. circles {pairs[:3]}")
    return problems


def evaluate(candidate: Candidate) -> dict[str, Any]:
    result = candidate.call("construct_packing")
    if not isinstance(result, list) or len(result) != 2:
        raise Invalid("construct_packing() must return a pair (centers, radii)")
    centers = _as_array(result[0], "centers", (N_CIRCLES, 2))
    radii = _as_array(result[1], "radii", (N_CIRCLES,))
    problems = check_packing(centers, radii)
    if problems:
        raise Invalid("invalid packing: " + "; ".join(problems))
    total = float(np.sum(radii))
    mean = float(np.mean(radii))
    cv = float(np.std(radii) / mean) if mean > 0 else 0.0
    return {
        "metrics": {"sum_radii": total, "min_radius": float(np.min(radii)), "max_radius": float(np.max(radii))},
        "features": {"radius_cv": cv},
    }
