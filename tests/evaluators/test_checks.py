"""The checks evaluators validate with: a value is accepted as it is, or refused with a message naming it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evolve.evaluators import Invalid, as_array, as_list, as_number


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.booleans() | st.text(max_size=3) | st.none())
def test_as_number_accepts_exactly_the_finite_reals(value: object) -> None:
    ok = not isinstance(value, (bool, str)) and value is not None and math.isfinite(value)  # type: ignore[arg-type]
    if ok:
        assert as_number(value, "x") == float(value)  # type: ignore[arg-type]
    else:
        with pytest.raises(Invalid, match=r"^x "):
            as_number(value, "x")


@pytest.mark.parametrize(
    ("value", "kwargs", "fragment"),
    [
        (np.float64(2.5), {"integer": True}, "x must be a whole number, got 2.5"),
        (-1, {"low": 0}, "x = -1 is below the allowed minimum 0"),
        (7, {"high": 5}, "x = 7 is above the allowed maximum 5"),
    ],
)
def test_as_number_bounds_and_wholeness(value: object, kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(Invalid, match=fragment):
        as_number(value, "x", **kwargs)


def test_as_list_checks_type_and_length() -> None:
    assert as_list([1, 2], "pair", length=2) == [1, 2]
    with pytest.raises(Invalid, match="pair must be a list or tuple, got dict"):
        as_list({}, "pair")
    with pytest.raises(Invalid, match="pair must have 2 items, got 3"):
        as_list([1, 2, 3], "pair", length=2)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=20))
def test_as_array_accepts_a_list_of_floats_iff_all_are_finite(values: list[float]) -> None:
    if all(math.isfinite(v) for v in values):
        assert as_array(values, "v", shape=(None,)).tolist() == values
    else:
        with pytest.raises(Invalid, match=r"v contains NaN or inf, e.g. v\["):
            as_array(values, "v", shape=(None,))


def test_as_array_whole_numbers_come_back_as_int64() -> None:
    out = as_array([[1.0, 2.0]], "m", shape=(1, 2), integer=True)
    assert out.dtype == np.int64 and out.tolist() == [[1, 2]]
    with pytest.raises(Invalid, match=r"m must hold whole numbers; m\[0, 1\] is not"):
        as_array([[1.0, 2.5]], "m", shape=(1, 2), integer=True)


def test_a_list_numpy_cannot_afford_to_convert_is_invalid_not_an_evaluator_error() -> None:
    # one 20 MB string among 900,000 items: NumPy sizes every cell for the longest (terabytes)
    with pytest.raises(Invalid, match="more memory than the evaluator has"):
        as_array(["x" * 20_000_000] + ["a"] * 900_000, "radii", shape=(None,))
