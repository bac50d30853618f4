"""Cap set: a priority function for a greedy construction of a large cap set in dimension 8.

A cap set in Z_3^n has no three distinct points on a line (no x, y, z with
x + y + z = 0 mod 3). The greedy below visits every vector in order of the
priority and keeps it when it completes no line with two kept vectors.
"""

import itertools
import math

import numpy as np


# EVOLVE-BLOCK-START
def priority(v, n):
    """Higher first: a pseudo-random score of a weighted sum of the coordinates."""
    s = sum((i + 1) * x for i, x in enumerate(v))
    return math.sin(2.0 * s + 1.3)
# EVOLVE-BLOCK-END


def build_cap_set(n):
    """Greedy: visit all 3^n vectors by decreasing priority, keep those that complete no line."""
    vectors = np.array(list(itertools.product(range(3), repeat=n)), dtype=np.int64)
    powers = 3 ** np.arange(n - 1, -1, -1)
    scores = np.array([priority(tuple(int(x) for x in v), n) for v in vectors], dtype=np.float64)
    blocked = np.zeros(len(vectors), dtype=bool)
    kept: list[int] = []
    for code in np.argsort(-scores, kind="stable"):
        if blocked[code]:
            continue
        if kept:
            thirds = (-(vectors[kept] + vectors[code])) % 3
            blocked[thirds @ powers] = True
        kept.append(int(code))
    return vectors[kept]
