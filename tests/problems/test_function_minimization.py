"""function_minimization: the hidden function, the hard budget, bad batches refused by name, secret instances."""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from evolve.problem import resolve_problem
from evolve.values import EvalStatus
from tests.problems.helpers import assert_rejected, evaluate, evaluator_module, mutator_improves, replace_block, sandboxed

NAME = "function_minimization"
P_STAR = (-1.7040828, 0.6775078)  # minimizer of the unshifted base function




def proposing(body: str) -> str:
    return replace_block(NAME, f"def propose(history, n, bounds, seed):\n{body}")


BAD = [
    ("nan", "    return [[float('nan'), 0.0]] * n", "round 0, instance 0: points contains NaN or inf"),
    ("inf", "    return [[0.0, float('inf')]] * n", "contains NaN or inf"),
    ("one point too many (over budget)", "    return [[0.0, 0.0]] * (n + 1)", "points must have shape (40, 2), got (41, 2)"),
    ("three coordinates", "    return [[0.0, 0.0, 0.0]] * n", "must have shape (40, 2), got (40, 3)"),
    ("strings", "    return [['0', '0']] * n", "points must hold real numbers"),
    ("a number", "    return 0.5", "points must be a numeric array of shape (40, 2), got float"),
    ("out of bounds", "    return [[5.5, 0.0]] * n", "points[0, 0] = 5.5 is above the allowed maximum 5"),
    ("ragged", "    return [[0.0, 0.0], [1.0]] + [[0.0, 0.0]] * (n - 2)", "ragged"),
    ("score printed", "    print('mean_gap = 0.0')", "points must be a numeric array of shape (40, 2), got NoneType"),
]


@pytest.mark.parametrize(("body", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_batches_are_refused_with_the_violation(body: str, fragment: str) -> None:
    assert_rejected(evaluate(NAME, proposing(body)), fragment)


def test_a_wrong_number_of_instances_is_refused() -> None:
    code = replace_block(NAME, "def propose(history, n, bounds, seed):\n    return [[0.0, 0.0]] * n") + "\npropose_all = lambda h, n, b, s: []\n"
    assert_rejected(evaluate(NAME, code), "propose_all() result must have 32 items, got 0")


def test_huge_output_is_cut_off() -> None:
    assert_rejected(evaluate(NAME, proposing("    print('x' * 5_000_000)\n    return [[0.0, 0.0]] * n")),
                    "printed more than", status=EvalStatus.ERROR)


def test_the_function_is_hidden_from_the_candidate() -> None:
    snoop = "    import sys\n    raise RuntimeError(sorted(k for k in sys.modules if 'evaluat' in k or 'evolve' in k))"
    result = evaluate(NAME, proposing(snoop))
    assert result.status is EvalStatus.ERROR and "RuntimeError: []" in result.artifacts["error"]


def minimizer(instance: Any) -> list[float]:
    return [float(x) for x in np.array(P_STAR) @ instance.rotation + instance.shift]  # q* = s + R^T p*


def search_known(module: ModuleType, code: str, instances: list[Any]) -> dict[str, Any]:
    """The evaluator's search on instances chosen here, through a real sandbox."""
    result: dict[str, Any] = module.search(sandboxed(code, seconds=30), instances)
    return result


def test_a_search_that_knows_every_minimizer_scores_zero_and_a_fixed_point_does_not() -> None:
    module = evaluator_module(NAME)
    instances = [module.Instance(np.random.default_rng(s)) for s in range(8)]
    oracle = replace_block(NAME, f"MIN = {[minimizer(i) for i in instances]}\n"
                                 "def propose(history, n, bounds, seed):\n    return [MIN[seed % 1000]] * n")
    result = search_known(module, oracle, instances)
    assert result["metrics"]["mean_gap"] == pytest.approx(0.0, abs=1e-10)
    assert result["features"] == {"success_rate": 1.0}
    fixed = search_known(module, proposing(f"    return [list({P_STAR!r})] * n"), instances)
    values = [float(i(np.array([P_STAR]))[0]) for i in instances]
    assert fixed["metrics"]["mean_gap"] == pytest.approx(np.mean(values) - module.GLOBAL_MIN, abs=1e-12)
    assert np.mean(values) - module.GLOBAL_MIN > 0.1  # the unshifted minimizer is not the answer


def former_instance(seed: int) -> list[float]:
    """The minimizer of an instance of the evaluator's former fixed seeds."""
    rng = np.random.default_rng([20251124, seed])
    shift, angle = rng.uniform(-1.0, 1.0, size=2), rng.uniform(0, 2 * math.pi)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return [float(x) for x in np.array(P_STAR) @ rotation + shift]


def test_minimizers_learned_from_earlier_evaluations_are_of_no_use() -> None:
    """The instances are new at every evaluation, so a table of minimizers found before finds nothing.

    Against the former fixed seeds this program scored 1.4e-15 (held out: 1.5e-15); the initial program 0.027.
    """
    learned = [[former_instance(s) for s in (11, 23, 37, 41, 53, 67, 79, 83)],
               [former_instance(s) for s in (101, 211, 307, 401, 503, 601, 701, 809)]]
    learner = replace_block(NAME, f"""
import random

LEARNED = {learned}


def propose(history, n, bounds, seed):
    rng = random.Random(seed)
    lo, hi = bounds
    if not history:
        known = [table[seed % 1000 % 8] for table in LEARNED]
        return known + [[rng.uniform(lo, hi), rng.uniform(lo, hi)] for _ in range(n - len(known))]
    bx, by, _ = min(history, key=lambda h: h[2])
    step = 2.0 * 0.8 ** (len(history) / n)
    return [[min(hi, max(lo, bx + rng.gauss(0, step))), min(hi, max(lo, by + rng.gauss(0, step)))] for _ in range(n)]
""")
    for held_out in (False, True):
        result = evaluate(NAME, learner, held_out=held_out)
        assert result.status is EvalStatus.OK, result.artifacts
        # the initial program's Gaussian search, which this falls back to: 0.091 +- 0.020 over 20 evaluations
        assert result.metrics["mean_gap"] > 0.02 and result.features["success_rate"] < 1.0


def test_every_evaluation_draws_new_instances() -> None:
    module = evaluator_module(NAME)
    first, second = module.secret_instances(32), module.secret_instances(32)
    assert not any(np.array_equal(a.shift, b.shift) for a in first for b in second)
    initial = resolve_problem(NAME).initial_program
    held = evaluate(NAME, initial, held_out=True)
    assert held.status is EvalStatus.OK and held.stage == "held_out" and held.artifacts["gaps"].count(",") == 63


@pytest.mark.slow
def test_a_short_mutator_campaign_improves_the_initial_program(tmp_path: Path) -> None:
    # every evaluation draws new instances, so the initial score is one noisy draw and 30 iterations sometimes found
    # nothing below it (seen under load, when completions reorder the search); 60 leave no such chance in practice
    initial, best = mutator_improves(NAME, tmp_path, iterations=60)
    assert best < initial
