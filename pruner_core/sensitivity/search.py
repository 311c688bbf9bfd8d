"""One bisection for every search over a monotone condition (allocation thresholds, blends, uniform ratios).

>>> lo, hi = bisect(lambda x: x * x >= 2, 0.0, 2.0, steps=40)
>>> round(hi, 6), hi - lo < 1e-11
(1.414214, True)
"""

from __future__ import annotations

from collections.abc import Callable


def bisect(holds: Callable[[float], bool], lo: float, hi: float, steps: int) -> tuple[float, float]:
    """Narrow ``[lo, hi]`` around the point from which ``holds`` is true, halving it ``steps`` times.

    ``holds`` must be monotone on the interval: false below some point, true from it on (negate a condition that
    holds at the low end). Only midpoints are asked; the callers decide what the ends mean. Every step moves ``hi``
    to the midpoint where ``holds`` is true, else ``lo``.

    Args:
        holds: the condition.
        lo, hi: the interval's ends, ``lo <= hi``.
        steps: how many halvings (the interval ends ``(hi - lo) / 2**steps`` wide).

    Returns:
        ``(lo, hi)`` after the last step: ``hi`` the last point found true (or the given ``hi``), ``lo`` the last
        found false (or the given ``lo``).
    """
    for _ in range(steps):
        mid = (lo + hi) / 2
        if holds(mid):
            hi = mid
        else:
            lo = mid
    return lo, hi
