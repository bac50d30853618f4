"""function_minimization: the hidden function, the hard budget, bad batches refused by name."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from evolve.problem import resolve_problem
from evolve.values import EvalStatus
from tests.problems.helpers import assert_rejected, evaluate, mutator_improves, replace_block

NAME = "function_minimization"
P_STAR = (-1.7040828, 0.6775078)  # minimizer of the unshifted base function


def evaluator_module() -> ModuleType:
    path = Path(resolve_problem(NAME).source) / "evaluator.py"
    spec = importlib.util.spec_from_file_location("fm_evaluator", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    assert_rejected(evaluate(NAME, code), "propose_all() result must have 8 items, got 0")


def test_huge_output_is_cut_off() -> None:
    assert_rejected(evaluate(NAME, proposing("    print('x' * 5_000_000)\n    return [[0.0, 0.0]] * n")),
                    "printed more than", status=EvalStatus.ERROR)


def test_the_function_is_hidden_from_the_candidate() -> None:
    snoop = "    import sys\n    raise RuntimeError(sorted(k for k in sys.modules if 'evaluat' in k or 'evolve' in k))"
    result = evaluate(NAME, proposing(snoop))
    assert result.status is EvalStatus.ERROR and "RuntimeError: []" in result.artifacts["error"]


def test_a_search_that_knows_every_minimizer_scores_zero_and_a_fixed_point_does_not() -> None:
    module = evaluator_module()
    minimizers = []
    for seed in module.SEARCH_SEEDS:
        inst = module.Instance(seed)
        minimizers.append((np.array(P_STAR) @ inst.rotation + inst.shift).tolist())  # q* = s + R^T p*
    oracle = replace_block(NAME, f"MIN = {minimizers}\ndef propose(history, n, bounds, seed):\n    return [MIN[seed % 1000]] * n")
    result = evaluate(NAME, oracle)
    assert result.status is EvalStatus.OK and result.metrics["mean_gap"] == pytest.approx(0.0, abs=1e-10)
    assert result.features["success_rate"] == 1.0
    fixed = evaluate(NAME, proposing(f"    return [list({P_STAR!r})] * n"))
    assert fixed.status is EvalStatus.OK and fixed.metrics["mean_gap"] > 0.1  # the unshifted minimizer is not the answer
    values = [float(module.Instance(s)(np.array([P_STAR]))[0]) for s in module.SEARCH_SEEDS]
    assert fixed.metrics["mean_gap"] == pytest.approx(np.mean(values) - module.GLOBAL_MIN, abs=1e-12)


def test_held_out_instances_differ_from_the_search_instances() -> None:
    initial = resolve_problem(NAME).initial_program
    search, held = evaluate(NAME, initial), evaluate(NAME, initial, held_out=True)
    assert search.status is held.status is EvalStatus.OK and search.metrics["mean_gap"] != held.metrics["mean_gap"]


@pytest.mark.slow
def test_a_short_mutator_campaign_improves_the_initial_program(tmp_path: Path) -> None:
    initial, best = mutator_improves(NAME, tmp_path, iterations=30)
    assert best < initial
