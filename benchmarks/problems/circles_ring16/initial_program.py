"""26 circles in the unit square: the construction of the most popular open peer's circle-packing example.

One circle in the centre, a ring of 8 at radius 0.3, a ring of 16 at radius 0.7 (the 26th circle stays at the
origin), every centre clipped to [0.01, 0.99]; radii limited by the borders, then scaled pairwise. Written here in
our own code so the search-quality benchmark compares like with like, offline.
"""

import numpy as np


# EVOLVE-BLOCK-START
def construct_packing():
    """A centre circle, an inner ring of 8 and an outer ring of 16."""
    n = 26
    centers = np.zeros((n, 2))
    centers[0] = [0.5, 0.5]
    for i in range(8):
        angle = 2 * np.pi * i / 8
        centers[i + 1] = [0.5 + 0.3 * np.cos(angle), 0.5 + 0.3 * np.sin(angle)]
    for i in range(16):
        angle = 2 * np.pi * i / 16
        centers[i + 9] = [0.5 + 0.7 * np.cos(angle), 0.5 + 0.7 * np.sin(angle)]
    centers = np.clip(centers, 0.01, 0.99)
    radii = compute_max_radii(centers)
    return centers, radii


def compute_max_radii(centers):
    """Each radius limited by the square's borders, then every overlapping pair scaled down together."""
    n = centers.shape[0]
    radii = np.ones(n)
    for i in range(n):
        x, y = centers[i]
        radii[i] = min(x, y, 1 - x, 1 - y)
    for i in range(n):
        for j in range(i + 1, n):
            dist = np.sqrt(np.sum((centers[i] - centers[j]) ** 2))
            if radii[i] + radii[j] > dist:
                scale = dist / (radii[i] + radii[j])
                radii[i] *= scale
                radii[j] *= scale
    return radii
# EVOLVE-BLOCK-END
