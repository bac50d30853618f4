"""Pareto fronts: the programs no other program beats on every objective at once."""

from __future__ import annotations

import numpy as np

__all__ = ["front_indices"]


def front_indices(values: np.ndarray) -> list[int]:
    """Indices of the non-dominated rows of ``values`` (n × k, every column higher-is-better).

    A row is dominated when another is at least as good in every column and
    better in one. Of identical rows only the first is kept. The result is
    sorted by the first column, best first. Cost O(n · front size).

    Raises:
        ValueError: when ``values`` is not a finite 2-D array.
    """
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (programs × objectives), got shape {values.shape}")
    if values.size and not np.all(np.isfinite(values)):
        raise ValueError("objective values must be finite")
    order = np.lexsort(tuple(-values[:, j] for j in reversed(range(values.shape[1]))))  # best first, column 0 leading
    front: list[int] = []
    kept = np.empty((0, values.shape[1]))
    for i in order.tolist():
        row = values[i]
        # sorted lexicographically, no later row can dominate an earlier one: only check against the front
        if kept.shape[0] and np.any(np.all(kept >= row, axis=1)):
            continue
        front.append(i)
        kept = np.vstack([kept, row])
    return front
