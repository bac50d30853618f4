"""online_bin_packing: packings are checked, decisions must follow priority() online, known heuristics score exactly."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from evolve.problem import resolve_problem
from evolve.values import EvalStatus
from tests.problems.helpers import assert_rejected, evaluate, mutator_improves, replace_block

NAME = "online_bin_packing"


def evaluator_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("obp_evaluator", Path(resolve_problem(NAME).source) / "evaluator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def with_priority(body: str) -> str:
    return replace_block(NAME, f"def priority(item, bins):\n{body}")


def with_packing(body: str) -> str:
    """A program whose pack_all is replaced (after the frozen code) by ``body``."""
    return with_priority("    return -bins") + f"\n\ndef pack_all(instances):\n{body}\n"


BAD_PACKINGS = [
    ("nan", "    return [[float('nan')] * len(i) for i, c in instances]", "assignment contains NaN or inf"),
    ("missing items", "    return [list(range(len(i) - 1)) for i, c in instances]", "assignment must have shape (500,), got (499,)"),
    ("strings", "    return [['0'] * len(i) for i, c in instances]", "must hold real numbers"),
    ("fractional bin", "    return [[0.5] * len(i) for i, c in instances]", "must hold whole numbers"),
    ("negative bin", "    return [[-1] * len(i) for i, c in instances]", "= -1 is below the allowed minimum 0"),
    ("over capacity", "    return [[0] * len(i) for i, c in instances]", "bin 0 holds"),
    ("bins out of order", "    return [[0, 5] + list(range(2, len(i))) for i, c in instances]", "item 1 goes to bin 5 but only 1 bins are open"),
    ("one item per bin, offline", "    return [list(range(len(i))) for i, c in instances]", "priority() alone ranks bin"),
    ("wrong instance count", "    return []", "pack_all() result must have 4 items, got 0"),
    ("score printed", "    print('excess_weibull = 0.0')", "pack_all() result must be a list or tuple, got NoneType"),
]


@pytest.mark.parametrize(("body", "fragment"), [b[1:] for b in BAD_PACKINGS], ids=[b[0] for b in BAD_PACKINGS])
def test_bad_packings_are_refused_with_the_violation(body: str, fragment: str) -> None:
    assert_rejected(evaluate(NAME, with_packing(body)), fragment)


OFF_LINE = [
    ("looks ahead through the caller's frame",
     "    import inspect\n    future = inspect.currentframe().f_back.f_locals.get('items', [])\n"
     "    big = sum(1 for x in future if x > 60)\n    return -(bins - item) if big % 2 else (bins - item)"),
    ("patches the packing loop's argmax", "    return -(bins - item)\nnp.argmax = lambda a: len(a) - 1"),
    ("is not deterministic", "    return np.random.default_rng().random(len(bins))"),
]


@pytest.mark.parametrize("body", [b[1] for b in OFF_LINE], ids=[b[0] for b in OFF_LINE])
def test_a_packing_that_does_not_follow_its_priority_online_is_refused(body: str) -> None:
    assert_rejected(evaluate(NAME, with_priority(body)), "the packing must follow priority() online")


def test_a_priority_that_returns_nothing_is_refused() -> None:
    # None becomes NaN scores: refused at whichever sampled step the check reaches first
    result = evaluate(NAME, with_priority("    print('priority = 1')"))
    assert_rejected(result, "priority() at item")
    assert "must have shape" in result.artifacts["error"] or "NaN" in result.artifacts["error"]


def test_huge_output_is_cut_off() -> None:
    assert_rejected(evaluate(NAME, with_priority("    print('x' * 100_000)\n    return -bins")), "printed more than",
                    status=EvalStatus.ERROR)


def reference_bins(items: list[float], capacity: int, *, best_fit: bool) -> int:
    """Best fit / first fit, written independently of the problem's code."""
    bins: list[float] = []
    for item in items:
        fitting = [j for j, free in enumerate(bins) if free >= item]
        if not fitting:
            bins.append(capacity - item)
            continue
        j = min(fitting, key=lambda k: (bins[k], k)) if best_fit else fitting[0]
        bins[j] -= item
    return len(bins)


@pytest.mark.parametrize(("body", "best_fit"), [("    return -(bins - item)", True), ("    return -np.arange(len(bins)) * 1.0", False)],
                         ids=["best fit", "first fit"])
def test_known_heuristics_score_exactly(body: str, best_fit: bool) -> None:
    module = evaluator_module()
    expected: dict[str, list[float]] = {"uniform": [], "weibull": []}
    for kind, seed in module.SEARCH:
        items, capacity = module.instance(kind, seed)
        bins = reference_bins(items.tolist(), capacity, best_fit=best_fit)
        expected[kind].append(100 * (bins / math.ceil(items.sum() / capacity) - 1))
    result = evaluate(NAME, with_priority(body))
    assert result.status is EvalStatus.OK, result.artifacts
    assert result.metrics["excess_weibull"] == pytest.approx(np.mean(expected["weibull"]), abs=1e-12)
    assert result.metrics["excess_uniform"] == pytest.approx(np.mean(expected["uniform"]), abs=1e-12)
    if best_fit:
        assert 3.5 < result.metrics["excess_weibull"] < 4.5  # FunSearch reports 3.98% for best fit on Weibull 5k


def test_held_out_instances_are_new_instances() -> None:
    module = evaluator_module()
    search = {tuple(module.instance(k, s)[0][:20]) for k, s in module.SEARCH}
    held = {tuple(module.instance(k, s)[0][:20]) for k, s in module.HELD_OUT}
    assert not search & held
    result = evaluate(NAME, resolve_problem(NAME).initial_program, held_out=True)
    assert result.status is EvalStatus.OK and result.stage == "held_out"


@pytest.mark.slow
def test_a_short_mutator_campaign_improves_the_initial_program(tmp_path: Path) -> None:
    initial, best = mutator_improves(NAME, tmp_path, iterations=30)
    assert best < initial
