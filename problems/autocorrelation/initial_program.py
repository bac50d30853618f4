"""Autocorrelation: a non-negative step function on [-1/4, 1/4] with a small autoconvolution peak."""


# EVOLVE-BLOCK-START
def construct_function():
    """Heights of n equal pieces of [-1/4, 1/4]: a gentle ramp."""
    n = 40
    heights = []
    for i in range(n):
        x = (i + 0.5) / n - 0.5  # the piece's centre, rescaled to [-1/2, 1/2]
        heights.append(1.0 + 0.2 * x)
    return heights
# EVOLVE-BLOCK-END
