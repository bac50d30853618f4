"""A centroidal Voronoi (CVT) archive for problems whose feature ranges are not known in advance.

A grid needs each axis's range up front; a range far wider than what the
programs reach puts them all into one or two bins (``evolve.grids``). With
``search.archive.kind: cvt`` a campaign instead learns its cells from its own
programs, once: its first ``warmup`` valid programs share one cell, then their
feature vectors (each feature standardized by those programs' mean and
spread) are clustered by k-means into at most ``cells`` centroids. From then
on a program's cell is its nearest centroid, for good: the centroids are
stored as a ``cvt_centroids`` event and never move, so an elite never drifts
out of its cell, and a resumed campaign reads them back. The elites of the
warm-up are re-filed into the new cells in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["WARMUP_CELL", "Centroids", "kmeans"]

WARMUP_CELL = "w"  # every valid program's cell until the centroids are chosen
_ITERATIONS = 50


@dataclass(frozen=True, slots=True)
class Centroids:
    """Fixed CVT cells: the features' names, their standardization, and the centroids in standardized space."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    points: tuple[tuple[float, ...], ...]

    def cell(self, features: dict[str, float]) -> str:
        """``"c<k>"``: the nearest centroid (a missing feature counts as the warm-up programs' mean)."""
        x = (np.array([features.get(n, m) for n, m in zip(self.names, self.mean, strict=True)]) - self.mean) / self.scale
        return f"c{int(np.argmin(((np.asarray(self.points) - x) ** 2).sum(axis=1)))}"

    def to_json(self) -> dict[str, Any]:
        return {"names": list(self.names), "mean": list(self.mean), "scale": list(self.scale),
                "points": [list(p) for p in self.points]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Centroids:
        return cls(names=tuple(data["names"]), mean=tuple(data["mean"]), scale=tuple(data["scale"]),
                   points=tuple(tuple(float(v) for v in p) for p in data["points"]))

    @classmethod
    def learn(cls, names: list[str], samples: list[dict[str, float]], *, cells: int, rng: np.random.Generator) -> Centroids:
        """Centroids from the warm-up programs' features (at most ``cells``, at most one per distinct vector)."""
        data = np.array([[s.get(n, 0.0) for n in names] for s in samples], dtype=np.float64)
        mean = data.mean(axis=0)
        scale = data.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        z = (data - mean) / scale
        points = kmeans(z, cells, rng)
        return cls(names=tuple(names), mean=tuple(float(v) for v in mean), scale=tuple(float(v) for v in scale),
                   points=tuple(tuple(float(v) for v in p) for p in points))


def kmeans(data: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; at most as many centroids as distinct rows of ``data``."""
    distinct = np.unique(data, axis=0)
    k = max(1, min(k, len(distinct)))
    centroids = [distinct[int(rng.integers(len(distinct)))]]
    for _ in range(1, k):
        d2 = np.min([((distinct - c) ** 2).sum(axis=1) for c in centroids], axis=0)
        centroids.append(distinct[int(rng.choice(len(distinct), p=d2 / d2.sum()))])
    c = np.array(centroids)
    for _ in range(_ITERATIONS):
        nearest = np.argmin(((data[:, None, :] - c[None, :, :]) ** 2).sum(axis=2), axis=1)
        moved = np.array([data[nearest == j].mean(axis=0) if np.any(nearest == j) else c[j] for j in range(k)])
        if np.allclose(moved, c):
            break
        c = moved
    return c
