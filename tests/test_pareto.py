"""Pareto fronts: no kept point is dominated, every dropped point is."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from evolve.pareto import front_indices


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a >= b) and np.any(a > b))


@given(arrays(np.float64, st.tuples(st.integers(0, 40), st.integers(1, 4)),
              elements=st.sampled_from([0.0, 1.0, 2.0, 2.5, -1.0, 1e6])))  # few values: many ties
def test_the_front_is_exactly_the_non_dominated_points(values: np.ndarray) -> None:
    front = front_indices(values)
    assert len(set(front)) == len(front)
    for i in front:
        assert not any(dominates(values[j], values[i]) for j in range(len(values)))
    for i in set(range(len(values))) - set(front):
        assert any(dominates(values[j], values[i]) or np.array_equal(values[j], values[i]) for j in front)
    assert [values[i][0] for i in front] == sorted((values[i][0] for i in front), reverse=True)


def test_two_objectives_keep_the_trade_off_curve() -> None:
    values = np.array([[3.0, 1.0], [2.0, 2.0], [1.0, 3.0], [1.5, 1.5], [3.0, 0.5]])
    assert front_indices(values) == [0, 1, 2]


def test_non_finite_values_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        front_indices(np.array([[1.0, float("nan")]]))
