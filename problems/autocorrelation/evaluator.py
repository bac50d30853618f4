"""Trusted evaluator of autocorrelation: the first autocorrelation inequality, computed exactly for step functions.

The candidate returns the heights h_0..h_{n-1} >= 0 of a step function f on
n equal pieces of [-1/4, 1/4]. Its autoconvolution f*f is piecewise linear
with knots where it equals w * c_k, c = h (*) h (discrete convolution),
w = 1/(2n), so

    max (f*f) / (integral f)^2 = 2n * max_k c_k / (sum h)^2,

an upper bound on the constant C1 of the inequality (lower is better).
Heights are scaled to a maximum of 1 first, so no overflow or underflow can
forge a small ratio.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evolve.evaluators import Candidate, Invalid, as_array

MAX_PIECES = 10_000


def upper_bound(heights: np.ndarray) -> float:
    """max(f*f) / (∫f)^2 for the step function with these heights on [-1/4, 1/4]."""
    h = heights / heights.max()
    return float(2 * len(h) * np.convolve(h, h).max() / h.sum() ** 2)


def evaluate(candidate: Candidate) -> dict[str, Any]:
    heights = as_array(candidate.call("construct_function"), "construct_function() result (heights)", shape=(None,), low=0.0)
    if not 1 <= len(heights) <= MAX_PIECES:
        raise Invalid(f"construct_function() must return between 1 and {MAX_PIECES} heights, got {len(heights)}")
    if not heights.max() > 0:
        raise Invalid("every height is 0: the function must have a positive integral")
    return {"metrics": {"upper_bound": upper_bound(heights)}, "features": {"pieces": float(len(heights))}}
