"""Trusted evaluator of cap_set: verifies the cap property exactly and scores the size.

The candidate's ``build_cap_set(8)`` returns its set as an (m, 8) array of
digits in {0, 1, 2}. This process checks the digits and that no vector
repeats, then, for every pair of vectors a, b, that the third point of their
line, -(a + b) mod 3, is not in the set: integer arithmetic, no tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evolve.evaluators import Candidate, Invalid, as_array

N = 8


def check_cap_set(vectors: np.ndarray) -> str | None:
    """Why ``vectors`` (m × n digits 0..2) are not a cap set, or None when they are."""
    n = vectors.shape[1]
    powers = 3 ** np.arange(n - 1, -1, -1, dtype=np.int64)
    codes = vectors @ powers
    seen: dict[int, int] = {}
    for i, code in enumerate(codes.tolist()):
        if code in seen:
            return f"vectors {seen[code]} and {i} are the same point {vectors[i].tolist()}"
        seen[code] = i
    index = np.full(3**n, -1, dtype=np.int64)
    index[codes] = np.arange(len(codes))
    for i in range(len(codes) - 1):
        thirds = (-(vectors[i + 1 :] + vectors[i])) % 3 @ powers
        hits = np.flatnonzero(index[thirds] >= 0)
        if hits.size:
            j = i + 1 + int(hits[0])
            k = int(index[thirds[hits[0]]])
            return (f"vectors {i}, {j} and {k} ({vectors[i].tolist()}, {vectors[j].tolist()}, {vectors[k].tolist()}) "
                    "lie on a line: they sum to 0 mod 3")
    return None


def evaluate(candidate: Candidate) -> dict[str, Any]:
    vectors = as_array(candidate.call("build_cap_set", N), "build_cap_set(8) result", shape=(None, N),
                       integer=True, low=0, high=2)
    if len(vectors) == 0:
        raise Invalid("build_cap_set(8) returned an empty set")
    if len(vectors) > 3**N:
        raise Invalid(f"build_cap_set(8) returned {len(vectors)} vectors; Z_3^8 has only {3**N}")
    problem = check_cap_set(vectors)
    if problem is not None:
        raise Invalid(f"not a cap set: {problem}")
    return {"metrics": {"size": float(len(vectors))}, "features": {"zero_share": float(np.mean(vectors == 0))}}
