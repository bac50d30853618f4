"""Trusted evaluator of matmul_rank: exact verification of matrix multiplication tensor decompositions.

For each case <n,m,p> the candidate returns factor matrices U (R × nm),
V (R × mp) and W (R × pn). They decompose the tensor when

    sum_r U[r, a] V[r, b] W[r, c] = T[a, b, c]

for every entry, where T[i·m+j, j·p+k, k·n+i] = 1 and every other entry is 0
(so C = A·B is computed with R multiplications). Entries must be multiples of
1/8 of at most 16 in size; they are scaled to integers and the check is
integer arithmetic: exact, no tolerance. The rank R of each exact
decomposition is the score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evolve.evaluators import Candidate, Invalid, as_array, as_list

CASES = ((2, 2, 2), (3, 3, 3))
SCALE = 8  # entries are multiples of 1/SCALE
MAX_ENTRY = 16
MAX_RANK = 64


def matmul_tensor(n: int, m: int, p: int) -> np.ndarray:
    """The <n,m,p> matrix multiplication tensor, shape (nm, mp, pn)."""
    t = np.zeros((n * m, m * p, p * n), dtype=np.int64)
    for i in range(n):
        for j in range(m):
            for k in range(p):
                t[i * m + j, j * p + k, k * n + i] = 1
    return t


def check_decomposition(factors: list[np.ndarray], n: int, m: int, p: int, what: str) -> int:
    """The rank of an exact decomposition.

    Raises:
        Invalid: naming the first entry of the tensor that comes out wrong.
    """
    scaled = []
    for name, f in zip("UVW", factors, strict=True):
        s = f * SCALE
        if not np.all(s == np.round(s)):
            raise Invalid(f"{what}: {name} has an entry that is not a multiple of 1/{SCALE}")
        scaled.append(s.astype(np.int64))
    u, v, w = scaled
    product = np.einsum("ra,rb,rc->abc", u, v, w)  # |entry| <= 64 * 128^3 < 2^63
    target = matmul_tensor(n, m, p) * SCALE**3
    wrong = np.argwhere(product != target)
    if wrong.size:
        a, b, c = (int(x) for x in wrong[0])
        got = product[a, b, c] / SCALE**3
        raise Invalid(f"{what}: not a decomposition: {len(wrong)} tensor entries are wrong, e.g. entry (a={a}, b={b}, c={c}) "
                      f"is {got:g} but must be {int(target[a, b, c] // SCALE**3)}")
    return len(u)


def evaluate(candidate: Candidate) -> dict[str, Any]:
    metrics: dict[str, float] = {}
    for n, m, p in CASES:
        what = f"<{n},{m},{p}>"
        result = as_list(candidate.call("decompose", n, m, p), f"{what}: decompose() result (U, V, W)", length=3)
        factors = []
        for name, raw, width in zip("UVW", result, (n * m, m * p, p * n), strict=True):
            factors.append(as_array(raw, f"{what}: {name}", shape=(None, width), low=-MAX_ENTRY, high=MAX_ENTRY))
        ranks = {len(f) for f in factors}
        if len(ranks) != 1:
            raise Invalid(f"{what}: U, V and W must have the same number of rows (the rank), got {[len(f) for f in factors]}")
        rank = ranks.pop()
        if not 1 <= rank <= MAX_RANK:
            raise Invalid(f"{what}: the rank must be between 1 and {MAX_RANK}, got {rank}")
        metrics[f"rank_{n}{m}{p}"] = float(check_decomposition(factors, n, m, p, what))
    return {"metrics": metrics}
