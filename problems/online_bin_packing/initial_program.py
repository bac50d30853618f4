"""Online bin packing: the priority function of a greedy online heuristic (the FunSearch task).

Items arrive one at a time; each goes into the open bin it fits with the
highest priority, or into a new bin when it fits none. Decisions cannot be
revised and later items are unknown.
"""

import numpy as np


# EVOLVE-BLOCK-START
def priority(item, bins):
    """Priority of each open bin that can hold ``item`` (``bins``: their remaining capacities).

    Prefers the bin whose space left after the item is closest to a small target gap.
    """
    return -np.abs(bins - item - 6.0)
# EVOLVE-BLOCK-END


def pack(items, capacity):
    """Pack ``items`` online; the bin index of each item, bins numbered in order of opening."""
    remaining = np.empty(len(items), dtype=np.float64)
    opened = 0
    assignment = []
    for item in items:
        fits = np.flatnonzero(remaining[:opened] >= item)
        if fits.size:
            scores = np.asarray(priority(item, remaining[fits]), dtype=np.float64)
            chosen = int(fits[int(np.argmax(scores))])
        else:
            chosen = opened
            remaining[chosen] = capacity
            opened += 1
        remaining[chosen] -= item
        assignment.append(chosen)
    return assignment


def pack_all(instances):
    """Pack every ``[items, capacity]`` instance."""
    return [pack(items, capacity) for items, capacity in instances]


def priorities(queries):
    """``priority`` alone on ``[item, bins]`` queries (the evaluator's check of the decisions)."""
    return [np.asarray(priority(item, np.asarray(bins, dtype=np.float64)), dtype=np.float64) for item, bins in queries]
