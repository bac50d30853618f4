"""Checks for evaluators: turn a candidate's returned data into validated values or raise ``Invalid``.

Every built-in problem validates through these, so a NaN, an inf, a string
where a number belongs, a bool passing as 0/1, a ragged or mis-shaped array
or an out-of-range value is refused the same way everywhere, with a message
that names the value and the rule it broke.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evolve.evaluators.candidate import Invalid

__all__ = ["as_array", "as_list", "as_number"]

_REAL_KINDS = "iuf"


def as_number(value: Any, name: str, *, integer: bool = False, low: float | None = None, high: float | None = None) -> float:
    """A finite real number (``integer``: an integral one) within ``[low, high]``.

    Raises:
        Invalid: naming ``name`` and the broken rule.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"{name} must be a {'whole ' if integer else ''}number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise Invalid(f"{name} is {value}; it must be finite")
    if integer and value != int(value):
        raise Invalid(f"{name} must be a whole number, got {value}")
    if low is not None and value < low:
        raise Invalid(f"{name} = {value:.10g} is below the allowed minimum {low:g}")
    if high is not None and value > high:
        raise Invalid(f"{name} = {value:.10g} is above the allowed maximum {high:g}")
    return float(value)


def as_list(value: Any, name: str, *, length: int | None = None) -> list[Any]:
    """A list (a returned tuple arrives as a list) of the given length.

    Raises:
        Invalid: when it is not a list or has the wrong length.
    """
    if not isinstance(value, list):
        raise Invalid(f"{name} must be a list or tuple, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise Invalid(f"{name} must have {length} items, got {len(value)}")
    return value


def _index(arr: np.ndarray, flat: int) -> str:
    return "[" + ", ".join(str(int(i)) for i in np.unravel_index(flat, arr.shape)) + "]"


def as_array(
    value: Any,
    name: str,
    *,
    shape: tuple[int | None, ...],
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
) -> np.ndarray:
    """A finite real array of ``shape`` (``None`` matches any length) with values in ``[low, high]``.

    Accepts a NumPy array of a real dtype or nested lists of real numbers;
    refuses bools, strings, objects, complex numbers, ragged nesting, NaN and inf.
    ``integer`` arrays come back as int64, others as float64.

    Raises:
        Invalid: naming ``name`` and the broken rule.
    """
    expected = "(" + ", ".join("n" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    if isinstance(value, np.ndarray):
        arr = value
    elif isinstance(value, list):
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise Invalid(f"{name} must be a numeric array of shape {expected}; it is ragged or mixed ({exc})") from exc
        except MemoryError as exc:  # e.g. a 20 MB string among 900,000 items: NumPy sizes every cell for the longest
            raise Invalid(f"{name} must be a numeric array of shape {expected}; converting it would take more memory "
                          "than the evaluator has (it holds long strings or other non-numbers)") from exc
    else:
        raise Invalid(f"{name} must be a numeric array of shape {expected}, got {type(value).__name__}")
    if arr.dtype.kind not in _REAL_KINDS:
        raise Invalid(f"{name} must hold real numbers, got {'bools' if arr.dtype.kind == 'b' else f'dtype {arr.dtype}'}")
    if arr.ndim != len(shape) or any(want is not None and got != want for got, want in zip(arr.shape, shape, strict=True)):
        raise Invalid(f"{name} must have shape {expected}, got {arr.shape}")
    out = arr.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise Invalid(f"{name} contains NaN or inf, e.g. {name}{_index(out, int(np.argmin(np.isfinite(out))))}")
    if integer:
        if not np.all(out == np.round(out)):
            raise Invalid(f"{name} must hold whole numbers; {name}{_index(out, int(np.argmin(out == np.round(out))))} is not")
        if np.any(np.abs(out) > 2**53):
            raise Invalid(f"{name} holds a whole number too large to check exactly")
    if low is not None and out.size and out.min() < low:
        raise Invalid(f"{name}{_index(out, int(np.argmin(out)))} = {out.min():.10g} is below the allowed minimum {low:g}")
    if high is not None and out.size and out.max() > high:
        raise Invalid(f"{name}{_index(out, int(np.argmax(out)))} = {out.max():.10g} is above the allowed maximum {high:g}")
    return out.astype(np.int64) if integer else out
