"""How far a measured accuracy can be trusted: the Wilson score interval of a fraction of rows, and whether
designs measured on the same rows can be told apart. Pure functions, no dependencies."""

from __future__ import annotations

import math
from itertools import pairwise

Z95 = 1.96  # the standard normal's 97.5% quantile, to 3 digits: a two-sided 95% interval


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (95% by default).

    Unlike the normal approximation it stays within [0, 1], and is not of width 0 at 0 or ``n`` correct.
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"wilson: need 0 <= k <= n and n > 0, got k={k}, n={n}")
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_interval(accuracy: float | None, n: int | None, z: float = Z95) -> tuple[float, float] | None:
    """``wilson`` of an accuracy that is a fraction of ``n`` rows; None when there is no such count (a
    macro average, or the rows are not known)."""
    if accuracy is None or not n or not math.isfinite(accuracy):
        return None
    return wilson(min(max(round(accuracy * n), 0), n), n, z)


def crowded(accuracies: list[float], n: int, z: float = Z95) -> int:
    """How many of these accuracies, each counted on the same ``n`` rows, cannot be told apart from a
    neighbour: in order of accuracy, two neighbours are not told apart when either one's figure lies
    within the other's interval. 0 when every design stands apart."""
    ranked = sorted(accuracies)
    tied: set[int] = set()
    for i, (a, b) in enumerate(pairwise(ranked)):
        (lo_a, hi_a), (lo_b, hi_b) = accuracy_interval(a, n, z), accuracy_interval(b, n, z)
        if lo_a <= b <= hi_a or lo_b <= a <= hi_b:
            tied |= {i, i + 1}
    return len(tied)
