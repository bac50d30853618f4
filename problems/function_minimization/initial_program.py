"""Function minimization: a black-box search strategy, asked for batches of points.

Each round, ``propose`` sees every point it asked for so far with the
function's value there, and returns the next ``n`` points to evaluate.
"""

import random


# EVOLVE-BLOCK-START
def propose(history, n, bounds, seed):
    """Random points first, then Gaussian steps around the best point so far."""
    rng = random.Random(seed)
    lo, hi = bounds
    if not history:
        return [[rng.uniform(lo, hi), rng.uniform(lo, hi)] for _ in range(n)]
    bx, by, _ = min(history, key=lambda h: h[2])
    step = 2.0 * 0.8 ** (len(history) / n)
    points = []
    for _ in range(n):
        x = min(hi, max(lo, bx + rng.gauss(0, step)))
        y = min(hi, max(lo, by + rng.gauss(0, step)))
        points.append([x, y])
    return points
# EVOLVE-BLOCK-END


def propose_all(histories, n, bounds, seeds):
    """One batch of ``n`` points per instance (called once per round)."""
    return [propose(history, n, tuple(bounds), seed) for history, seed in zip(histories, seeds, strict=True)]
