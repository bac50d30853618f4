"""TSP heuristic: a tour through points in the unit square, as short as possible."""

import math


# EVOLVE-BLOCK-START
def solve(points):
    """Nearest neighbour from the first point, then one sweep of 2-opt improvements."""
    n = len(points)

    def dist(a, b):
        return math.dist(points[a], points[b])

    tour = [0]
    left = set(range(1, n))
    while left:
        last = tour[-1]
        nxt = min(left, key=lambda c: dist(last, c))
        tour.append(nxt)
        left.remove(nxt)
    max_passes = 1
    for _ in range(max_passes):
        improved = False
        for i in range(1, n - 1):
            for j in range(i + 1, n):
                a, b, c, d = tour[i - 1], tour[i], tour[j], tour[(j + 1) % n]
                if dist(a, c) + dist(b, d) < dist(a, b) + dist(c, d) - 1e-12:
                    tour[i : j + 1] = reversed(tour[i : j + 1])
                    improved = True
        if not improved:
            break
    return tour
# EVOLVE-BLOCK-END


def solve_all(instances):
    """A tour (a permutation of the point indices) for each instance."""
    return [solve([tuple(p) for p in points]) for points in instances]
