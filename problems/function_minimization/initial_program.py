"""Function minimization: a search algorithm for a multimodal function in two variables."""

import numpy as np


def objective(x, y):
    """The function to minimize (its global minimum on [-5, 5]^2 is unknown to the search)."""
    return np.sin(x) * np.cos(y) + np.sin(x * y) + (x**2 + y**2) / 20


# EVOLVE-BLOCK-START
def search_minimum(f, bounds, budget, rng):
    """A simple hill climber from one random start."""
    lo, hi = bounds
    x, y = rng.uniform(lo, hi), rng.uniform(lo, hi)
    best = f(x, y)
    step = 1.0
    for _ in range(budget - 1):
        nx = min(hi, max(lo, x + rng.normal(0, step)))
        ny = min(hi, max(lo, y + rng.normal(0, step)))
        value = f(nx, ny)
        if value < best:
            x, y, best = nx, ny, value
    return x, y
# EVOLVE-BLOCK-END


def run_searches(seeds, budget, bounds):
    """Run the search once per seed, counting the function evaluations it makes."""
    results = []
    for seed in seeds:
        calls = 0

        def f(x, y):
            nonlocal calls
            calls += 1
            return float(objective(x, y))

        x, y = search_minimum(f, tuple(bounds), budget, np.random.default_rng(seed))
        results.append({"x": float(x), "y": float(y), "calls": calls})
    return results
