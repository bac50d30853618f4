"""Circle packing: 32 disjoint circles in the unit square, maximizing the sum of radii."""

import numpy as np


# EVOLVE-BLOCK-START
def construct_packing():
    """A simple ring construction: one circle in the middle, two rings around it."""
    n = 32
    centers = np.zeros((n, 2))
    centers[0] = [0.5, 0.5]
    for i in range(10):
        angle = 2 * np.pi * i / 10
        centers[i + 1] = [0.5 + 0.3 * np.cos(angle), 0.5 + 0.3 * np.sin(angle)]
    for i in range(21):
        angle = 2 * np.pi * i / 21
        centers[i + 11] = [0.5 + 0.7 * np.cos(angle), 0.5 + 0.7 * np.sin(angle)]
    centers = np.clip(centers, 0.01, 0.99)
    radii = compute_max_radii(centers)
    return centers, radii


def compute_max_radii(centers):
    """Largest radii that keep every circle inside the square and disjoint."""
    n = centers.shape[0]
    radii = np.minimum.reduce([centers[:, 0], centers[:, 1], 1 - centers[:, 0], 1 - centers[:, 1]])
    for i in range(n):
        for j in range(i + 1, n):
            dist = np.sqrt(np.sum((centers[i] - centers[j]) ** 2))
            if radii[i] + radii[j] > dist:
                scale = dist / (radii[i] + radii[j])
                radii[i] *= scale
                radii[j] *= scale
    return radii
# EVOLVE-BLOCK-END


if __name__ == "__main__":
    c, r = construct_packing()
    print(f"sum of radii: {r.sum():.6f}")
