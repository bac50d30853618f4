"""matmul_rank: decompositions are verified exactly; Strassen scores 7, a Strassen block in 3×3 scores 26."""

from __future__ import annotations

from pathlib import Path

import pytest

from evolve.values import EvalStatus
from tests.problems.helpers import assert_rejected, evaluate, mutator_improves, replace_block

NAME = "matmul_rank"

STRASSEN = """
STRASSEN_U = [[1, 0, 0, 1], [0, 0, 1, 1], [1, 0, 0, 0], [0, 0, 0, 1], [1, 1, 0, 0], [-1, 0, 1, 0], [0, 1, 0, -1]]
STRASSEN_V = [[1, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, -1], [-1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0], [0, 0, 1, 1]]
STRASSEN_W = [[1, 0, 0, 1], [0, 1, 0, -1], [0, 0, 1, 1], [1, 1, 0, 0], [-1, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]]


def naive(n, m, p, skip=lambda i, j, k: False):
    u, v, w = [], [], []
    for i in range(n):
        for j in range(m):
            for k in range(p):
                if skip(i, j, k):
                    continue
                u.append([1 if a == i * m + j else 0 for a in range(n * m)])
                v.append([1 if b == j * p + k else 0 for b in range(m * p)])
                w.append([1 if c == k * n + i else 0 for c in range(p * n)])
    return u, v, w


def embed(rows, index, size):
    return [[sum(r[q] for q, at in enumerate(index) if at == x) for x in range(size)] for r in rows]


def strassen_block_3x3():
    # Strassen on the top-left 2x2 blocks of A and B, schoolbook products for the rest
    u, v, w = naive(3, 3, 3, skip=lambda i, j, k: i < 2 and j < 2 and k < 2)
    u += embed(STRASSEN_U, [0, 1, 3, 4], 9)
    v += embed(STRASSEN_V, [0, 1, 3, 4], 9)
    w += embed(STRASSEN_W, [0, 1, 3, 4], 9)
    return u, v, w
"""


def deciding(body: str) -> str:
    return replace_block(NAME, STRASSEN + f"\n\ndef decompose(n, m, p):\n{body}")


@pytest.mark.parametrize(
    ("body", "ranks"),
    [
        ("    return naive(n, m, p)", (8, 27)),
        ("    return (STRASSEN_U, STRASSEN_V, STRASSEN_W) if n == 2 else naive(n, m, p)", (7, 27)),
        ("    return (STRASSEN_U, STRASSEN_V, STRASSEN_W) if n == 2 else strassen_block_3x3()", (7, 26)),
        ("    u = [[2 * x for x in r] for r in STRASSEN_U]\n    w = [[x / 2 for x in r] for r in STRASSEN_W]\n"
         "    return (u, STRASSEN_V, w) if n == 2 else naive(n, m, p)", (7, 27)),  # scaled terms: exact with halves
    ],
    ids=["schoolbook", "strassen", "strassen block in 3x3", "scaled strassen"],
)
def test_known_decompositions_score_their_rank(body: str, ranks: tuple[int, int]) -> None:
    result = evaluate(NAME, deciding(body))
    assert result.status is EvalStatus.OK, result.artifacts
    assert (int(result.metrics["rank_222"]), int(result.metrics["rank_333"])) == ranks
    assert result.metrics["total_rank"] == sum(ranks)  # the weighted objective the archive ranks by


BAD = [
    ("nan", "    u, v, w = naive(n, m, p)\n    u[0][0] = float('nan')\n    return u, v, w", "<2,2,2>: U contains NaN or inf"),
    ("inf", "    u, v, w = naive(n, m, p)\n    w[1][0] = float('inf')\n    return u, v, w", "W contains NaN or inf"),
    ("wrong width", "    u, v, w = naive(n, m, p)\n    return [r[:-1] for r in u], v, w", "U must have shape (n, 4), got (8, 3)"),
    ("strings", "    u, v, w = naive(n, m, p)\n    return [[str(x) for x in r] for r in u], v, w", "must hold real numbers"),
    ("entry too large", "    u, v, w = naive(n, m, p)\n    u[0][0] = 17\n    return u, v, w", "= 17 is above the allowed maximum 16"),
    ("a third", "    u, v, w = naive(n, m, p)\n    u[0][0] = 1 / 3\n    return u, v, w", "not a multiple of 1/8"),
    ("rank mismatch", "    u, v, w = naive(n, m, p)\n    return u[:-1], v, w", "must have the same number of rows (the rank), got [7, 8, 8]"),
    ("one term dropped", "    u, v, w = naive(n, m, p)\n    return u[:-1], v[:-1], w[:-1]", "not a decomposition: 1 tensor entries are wrong"),
    ("a term duplicated", "    u, v, w = naive(n, m, p)\n    return u + u[:1], v + v[:1], w + w[:1]",
     "is 2 but must be 1"),
    ("sign flipped", "    return (STRASSEN_U, STRASSEN_V, [[-x for x in r] for r in STRASSEN_W])", "not a decomposition"),
    ("empty", "    return [], [], []", "must have shape (n, 4), got (0,)"),
    ("two factors", "    return naive(n, m, p)[:2]", "decompose() result (U, V, W) must have 3 items, got 2"),
    ("score printed", "    print('total_rank = 30')", "got NoneType"),
]


@pytest.mark.parametrize(("body", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_decompositions_are_refused_with_the_violation(body: str, fragment: str) -> None:
    assert_rejected(evaluate(NAME, deciding(body)), fragment)


def test_huge_output_is_cut_off() -> None:
    assert_rejected(evaluate(NAME, deciding("    print('x' * 5_000_000)\n    return naive(n, m, p)")), "printed more than",
                    status=EvalStatus.ERROR)


@pytest.mark.slow
def test_a_short_mutator_campaign_improves_the_initial_program(tmp_path: Path) -> None:
    # the initial program is a flip-graph walk: its seed, restarts, walk length and bound are what the mutator varies
    initial, best = mutator_improves(NAME, tmp_path, iterations=30)
    assert best < initial
