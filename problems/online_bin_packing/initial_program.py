"""Online bin packing: the priority function of a greedy online heuristic (the FunSearch task).

Items arrive one at a time and each goes at once, for good, into the bin with
the highest priority among the bins that can hold it: the bins already in use
that have room for it, and one empty bin. The evaluator does the packing and
calls ``priorities`` for each item; later items are never shown.
"""

import numpy as np


# EVOLVE-BLOCK-START
def priority(item, bins):
    """Priority of each bin that can hold ``item``; ``bins`` holds their remaining capacities.

    The bins in use come first, in the order they were first used; the last
    entry is an empty bin (its remaining capacity is the full capacity).
    Prefers the bin whose space left after the item is closest to a small target gap.
    """
    return -np.abs(bins - item - 6.0)
# EVOLVE-BLOCK-END


def priorities(queries):
    """``priority`` for each ``[item, bins]`` query (one per instance being packed): what the evaluator calls."""
    return [priority(float(item), np.asarray(bins, dtype=np.float64)) for item, bins in queries]
