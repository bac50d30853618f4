"""online_bin_packing: the evaluator packs secret instances one item at a time, so look-ahead cannot pay.

The probes are programs that would beat every online heuristic if they could
see the items ahead (an offline first-fit-decreasing plan scores under 1%):
they regenerate the instances of the evaluator's old fixed seeds, try to
recover the seed from the items seen so far, or read their caller's frames,
the heap and their request channel. Each scores like the best fit it falls
back to. The figures the bands use are measured in the problem's README.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evolve.problem import resolve_problem
from evolve.values import EvalResult, EvalStatus
from tests.problems.helpers import assert_rejected, evaluate, evaluator_module, mutator_improves, replace_block, sandboxed

NAME = "online_bin_packing"
# Measured through this evaluator, 20 evaluations each (README): the mean and standard deviation of excess_weibull.
BEST_FIT_MEAN, BEST_FIT_STD = 4.03, 0.05
FUNSEARCH_MEAN, FUNSEARCH_STD = 0.69, 0.04  # FunSearch's published Weibull heuristic: the problem's known best
# An honest score below this would be a best-fit evaluation more than 6 standard deviations below its mean.
BEST_FIT_FLOOR = BEST_FIT_MEAN - 6 * BEST_FIT_STD




def with_priority(body: str, extra: str = "") -> str:
    return replace_block(NAME, f"{extra}\ndef priority(item, bins):\n{body}")


def assert_scored_like_best_fit(result: EvalResult) -> None:
    assert result.status is EvalStatus.OK, result.artifacts
    assert result.metrics["excess_weibull"] > BEST_FIT_FLOOR, result.metrics


# --- the look-ahead packer probes ------------------------------------------------------------------------------

# A look-ahead planner (first fit decreasing over the whole instance, then replayed online: under FunSearch's
# rule any packing can be replayed item by item), shared by the probes and checked here to pay when it can.
PLANNER = '''
def _plan(items, capacity):
    """{(item, offered bins): the offered bin to choose} replaying an offline first-fit-decreasing packing."""
    items = np.asarray(items, dtype=np.int64)
    remaining, where = np.full(len(items), capacity), np.empty(len(items), dtype=np.int64)
    used = 0
    for i in np.argsort(-items, kind="stable"):
        j = int(np.argmax(remaining[:used + 1] >= items[i]))
        where[i] = j
        remaining[j] -= items[i]
        used = max(used, j + 1)
    table, slot, left = {}, {}, []
    for i, item in enumerate(items.tolist()):
        fits = [b for b, r in enumerate(left) if r >= item]
        key = (item, tuple(left[b] for b in fits) + (capacity,))
        if where[i] in slot:
            table[key] = fits.index(slot[where[i]])
            left[slot[where[i]]] -= item
        else:
            table[key] = len(fits)
            slot[where[i]] = len(left)
            left.append(capacity - item)
    return table, len(left)


def _follow(table, item, bins):
    """The plan's one-hot scores for this state, or best fit where the plan does not know it."""
    k = table.get((int(item), tuple(int(b) for b in bins)))
    if k is None:
        return -(bins - item)
    scores = np.zeros(len(bins))
    scores[k] = 1.0
    return scores
'''

FIXED_SEEDS = PLANNER + '''
def _old_instances():
    """The evaluator's former instances (fixed seeds), with both roundings of the Weibull sizes."""
    for seed in (1, 2, 101, 102):
        rng = np.random.default_rng([7919, seed, 0])
        yield rng.integers(20, 101, size=500), 150
        for rounding in (np.round, np.floor):
            rng = np.random.default_rng([7919, seed, 1])
            yield np.clip(rounding(rng.weibull(3.0, size=5000) * 45), 1, 100).astype(np.int64), 100


_TABLE = {}
for _items, _capacity in _old_instances():
    _TABLE.update(_plan(_items, _capacity)[0])


def priority(item, bins):
    """A lookup table of look-ahead packings of instances regenerated from fixed seeds; best fit elsewhere."""
    return _follow(_TABLE, item, bins)
'''

SEED_GUESSER = PLANNER + '''
_PREFIX = 12  # this program's priorities() replaces the frozen wrapper: it goes after it
_SEEN = {}      # instance position in the query -> the items seen so far
_FUTURE = {}    # instance position -> the plan of its regenerated sequence, once the seed is recognised


def _candidates():
    """(prefix, generator of the whole sequence) for every seed this program can think of."""
    def weibull(make, rounding):
        return lambda: (np.clip(rounding(make().weibull(3.0, size=5000) * 45), 1, 100).astype(np.int64), 100)
    def uniform(make):
        return lambda: (make().integers(20, 101, size=500), 150)
    for seed in range(64):
        for make in (lambda s=seed: np.random.default_rng(s), lambda s=seed: np.random.default_rng([7919, s, 1]),
                     lambda s=seed: np.random.default_rng([7919, s, 0])):
            for gen in (weibull(make, np.round), weibull(make, np.floor), uniform(make)):
                items, capacity = gen()
                yield tuple(items[:_PREFIX].tolist()), (items, capacity)


_GUESSES = dict(_candidates())


def priorities(queries):
    """Remembers every item, recognises a sequence it can regenerate, and then follows a plan of its future."""
    out = []
    for position, (item, bins) in enumerate(queries):
        seen = _SEEN.setdefault(position, [])
        seen.append(int(item))
        if len(seen) == _PREFIX and tuple(seen) in _GUESSES:
            _FUTURE[position] = _plan(*_GUESSES[tuple(seen)])[0]
        bins = np.asarray(bins, dtype=np.float64)
        out.append(_follow(_FUTURE[position], item, bins) if position in _FUTURE else -(bins - item))
    return out
'''

SPY = '''
import gc
import select
import sys

_FOUND = []
_CALLS = [0]


def _look_for_the_items():
    """Every place this process could hold the items to come: caller frames, the heap, unread requests."""
    frame = sys._getframe()
    while frame is not None:
        for name, value in frame.f_locals.items():
            if name in ("items", "instances", "packings", "remaining", "future"):
                _FOUND.append(("frame", name))
        frame = frame.f_back
    for obj in gc.get_objects():
        if isinstance(obj, list) and len(obj) in (500, 5000) and all(isinstance(x, (int, float)) for x in obj):
            _FOUND.append(("heap", len(obj)))
    if select.select([sys.stdin], [], [], 0)[0]:
        _FOUND.append(("stdin", "a request beyond the current one is waiting"))


np.argmax = lambda a, *args, **kwargs: len(a) - 1  # patching NumPy here cannot touch the evaluator's packing


def priority(item, bins):
    """Looks for the items to come at a few calls; finding any, it says so with NaN (the evaluation is refused)."""
    _CALLS[0] += 1
    if _CALLS[0] in (1, 2, 50, 3000):
        _look_for_the_items()
    if _FOUND:
        return np.full(len(bins), np.nan)  # made visible: the evaluation is refused with a message
    return -(bins - item)
'''


def _planner() -> dict[str, Any]:
    namespace: dict[str, Any] = {"np": np}
    exec(PLANNER, namespace)  # the probes' own planner, run here on instances it is allowed to see
    return namespace


def test_the_probes_planner_would_beat_every_online_heuristic_if_it_could_see_the_items() -> None:
    module = evaluator_module(NAME)
    rng = np.random.default_rng(3)
    items = module.draw(module.WEIBULL, rng).astype(np.int64)
    table, bins = _planner()["_plan"](items, 100)
    assert 100 * (bins / math.ceil(items.sum() / 100) - 1) < 1.0  # best fit: ~4%, FunSearch's heuristic: ~0.7%
    assert len(table) > 4000


PROBES = [  # (EVOLVE-BLOCK, code after the frozen part)
    ("replays plans of fixed-seed instances", FIXED_SEEDS, ""),
    ("recognises a seed from the items it has seen", "def priority(item, bins):\n    return -(bins - item)", SEED_GUESSER),
    ("reads frames, heap and stdin, patches numpy", SPY, ""),
]


@pytest.mark.parametrize(("block", "tail"), [p[1:] for p in PROBES], ids=[p[0] for p in PROBES])
def test_a_look_ahead_packer_scores_no_better_than_best_fit(block: str, tail: str) -> None:
    assert_scored_like_best_fit(evaluate(NAME, replace_block(NAME, block) + tail))


# --- figures ---------------------------------------------------------------------------------------------------


def test_best_fit_scores_within_its_measured_spread() -> None:
    result = evaluate(NAME, with_priority("    return -(bins - item)"))
    assert result.status is EvalStatus.OK, result.artifacts
    assert abs(result.metrics["excess_weibull"] - BEST_FIT_MEAN) < 5 * BEST_FIT_STD  # FunSearch: 3.98 on its 5 instances
    assert 4.0 < result.metrics["excess_uniform"] < 6.5


FUNSEARCH_WEIBULL = """
def priority(item, bins):
    \"\"\"FunSearch's heuristic for the Weibull datasets (google-deepmind/funsearch, bin_packing/bin_packing.ipynb).\"\"\"
    max_bin_cap = max(bins)
    score = (bins - max_bin_cap)**2 / item + bins**2 / (item**2)
    score += bins**2 / item**3
    score[bins > item] = -score[bins > item]
    score[1:] -= score[:-1]
    return score
"""


def test_funsearchs_heuristic_scores_the_known_best_within_its_spread() -> None:
    result = evaluate(NAME, replace_block(NAME, FUNSEARCH_WEIBULL))
    assert result.status is EvalStatus.OK, result.artifacts
    known = resolve_problem(NAME).config.known_best
    assert known is not None and known.value == FUNSEARCH_MEAN
    assert abs(result.metrics["excess_weibull"] - FUNSEARCH_MEAN) < 5 * FUNSEARCH_STD


def reference_bins(items: list[int], capacity: int, priority: Any) -> int:
    """FunSearch's own packing loop (every bin exists from the start), written independently of the evaluator."""
    bins = np.full(len(items), capacity)
    for item in items:
        valid = np.nonzero(bins - item >= 0)[0]
        bins[valid[np.argmax(priority(item, bins[valid].astype(float)))]] -= item
    return int((bins != capacity).sum())


ELEMENTWISE = [  # priorities of each bin alone (or of its position): one empty bin offered is all of them
    ("best fit", "    return -(bins - item)", lambda item, bins: -(bins - item)),
    ("first fit", "    return -np.arange(len(bins)) * 1.0", lambda item, bins: -np.arange(len(bins)) * 1.0),
    ("target gap", "    return -np.abs(bins - item - 6.0)", lambda item, bins: -np.abs(bins - item - 6.0)),
]


@pytest.mark.parametrize(("body", "reference"), [h[1:] for h in ELEMENTWISE], ids=[h[0] for h in ELEMENTWISE])
def test_the_packing_is_funsearchs_rule_exactly(body: str, reference: Any) -> None:
    """The evaluator's packing through a real sandbox on instances chosen here, against FunSearch's loop."""
    module = evaluator_module(NAME)
    rng = np.random.default_rng(11)
    instances = [("weibull instance 0", module.draw(module.WEIBULL, rng)[:1500], 100),
                 ("uniform instance 0", module.draw(module.UNIFORM, rng), 150)]
    excess = module.pack(sandboxed(with_priority(body)), instances)
    for (_label, items, capacity), got in zip(instances, excess, strict=True):
        want = reference_bins(items.astype(int).tolist(), capacity, reference)
        assert got == pytest.approx(100 * (want / math.ceil(items.sum() / capacity) - 1), abs=1e-12)


def test_every_evaluation_draws_new_instances() -> None:
    module = evaluator_module(NAME)
    first, second = module.secret_instances(), module.secret_instances()
    assert len(first) == 20 and [len(i) for _l, i, _c in first] == [5000] * 10 + [500] * 10
    assert not any(np.array_equal(a, b) for (_l, a, _c), (_m, b, _d) in zip(first, second, strict=True))
    result = evaluate(NAME, resolve_problem(NAME).initial_program, held_out=True)
    assert result.status is EvalStatus.OK and result.stage == "held_out"
    per_kind = dict(part.split(": ") for part in result.artifacts["excess_per_instance"].split("; "))
    assert [len(per_kind[k].split(", ")) for k in ("weibull", "uniform")] == [20, 20]  # twice the search's draw


# --- rejections ------------------------------------------------------------------------------------------------

BAD_PRIORITIES = [
    ("nan", "    return np.full(len(bins), np.nan)", "priority() at item 0 (size"),
    ("inf", "    return np.where(bins == bins.max(), np.inf, -(bins - item))", "contains NaN or inf"),
    ("one number too few", "    return -(bins - item)[:-1]", "bins offered) must have shape (1,), got (0,)"),
    ("a scalar", "    return 1.0", "must be a numeric array of shape (1,), got float"),
    ("nothing", "    print('priority = 1')", "got NoneType"),
    ("strings", "    return ['high'] * len(bins)", "must hold real numbers"),
    ("bools", "    return bins >= item", "must hold real numbers, got bools"),
]


@pytest.mark.parametrize(("body", "fragment"), [b[1:] for b in BAD_PRIORITIES], ids=[b[0] for b in BAD_PRIORITIES])
def test_a_malformed_priority_is_refused_with_the_item_it_failed_on(body: str, fragment: str) -> None:
    result = evaluate(NAME, with_priority(body))
    assert_rejected(result, fragment)
    assert "instance 0: priority() at item 0" in result.artifacts["error"]


def test_nan_at_a_later_item_names_that_item() -> None:
    body = "    return np.full(len(bins), np.nan) if item == 77 else -(bins - item)"
    result = evaluate(NAME, with_priority(body))
    assert_rejected(result, "(size 77,")
    assert "contains NaN or inf" in result.artifacts["error"]


def test_a_wrapper_that_answers_for_the_wrong_number_of_instances_is_refused() -> None:
    program = with_priority("    return -(bins - item)") + "\n\ndef priorities(queries):\n    return []\n"
    assert_rejected(evaluate(NAME, program), "priorities() result at item 0 must have 20 items, got 0")


def test_a_score_printed_instead_of_priorities_is_refused() -> None:
    program = with_priority("    return -(bins - item)") + "\n\ndef priorities(queries):\n    print('excess_weibull = 0.0')\n"
    assert_rejected(evaluate(NAME, program), "priorities() result at item 0 must be a list or tuple, got NoneType")


def test_a_priority_that_raises_is_an_error_naming_it() -> None:
    assert_rejected(evaluate(NAME, with_priority("    raise ValueError('no bin for ' + str(item))")),
                    "'ValueError: no bin for", status=EvalStatus.ERROR)


def test_a_hopeless_packing_is_stopped_early() -> None:
    started = time.monotonic()
    assert_rejected(evaluate(NAME, with_priority("    return bins - item")), "more than 25% over the lower bound")  # worst fit
    assert time.monotonic() - started < 30


def test_huge_output_is_cut_off() -> None:
    assert_rejected(evaluate(NAME, with_priority("    print('x' * 100_000)\n    return -bins")), "printed more than",
                    status=EvalStatus.ERROR)


@pytest.mark.slow
def test_a_short_mutator_campaign_improves_the_initial_program(tmp_path: Path) -> None:
    initial, best = mutator_improves(NAME, tmp_path, iterations=30)
    assert best < initial
