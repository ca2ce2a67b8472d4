"""The project's small statistics, one copy each: a percentile and a confidence interval for a proportion.

routing/ imports nothing from server/, so these live here and server/ (call benchmark, supervisors' dashboard)
imports them from here.
"""
from __future__ import annotations

import math
from typing import Sequence

Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), linearly interpolated as numpy's default does; None for no values."""
    if not values:
        return None
    xs = sorted(float(v) for v in values)
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% by default); (nan, nan) for n == 0.

    Unlike the normal approximation it stays inside [0, 1] and is not zero-width at 0 or n successes, which matters
    for the small per-language counts of an evaluation set (13/14 is not "certainly above 90%").
    """
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
