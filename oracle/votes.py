"""Exact order statistics on integers: medians and Pyth's three-vote weighted percentiles.

Layout:
  ``median_x2``        twice the median of integers (exact, no rounding)
  ``weighted_kth``     the k-th smallest vote when each value is repeated ``weight`` times
  ``three_vote``       Pyth's price model: p25, p50, p75 and conf of the votes p−c, p, p+c

Invariants:
  * With every weight 1, ``three_vote`` is exactly pyth-client's ``price_model_core``
    (``program/c/src/oracle/model/price_model.c``): ``p25 = v[n>>2]``,
    ``p75 = v[n−1−(n>>2)]``, ``p50 = v[n>>1]`` for odd ``n`` and
    ``floor((v[n/2−1] + v[n/2]) / 2)`` for even ``n`` (its ``avg_2_int64`` rounds toward −∞).
  * A weight ``w`` counts exactly as ``w`` identical sources; ties between equal values are
    indistinguishable, so the result does not depend on input order.

Known limitations:
  * Python integers: exact and unbounded, but not a numba kernel.
"""

from __future__ import annotations

from typing import Sequence


def median_x2(values: Sequence[int]) -> int:
    """2 × the median of ``values`` (the two middle values summed for an even count), so the
    median is exact without a division. Raises ``ValueError`` on an empty sequence."""
    if not values:
        raise ValueError("median of nothing")
    ordered = sorted(values)
    n = len(ordered)
    if n & 1:
        return 2 * ordered[n >> 1]
    return ordered[(n >> 1) - 1] + ordered[n >> 1]


def weighted_kth(votes: Sequence[tuple[int, int]], k: int) -> int:
    """The ``k``-th smallest (0-based) value when each ``(value, weight)`` vote is expanded into
    ``weight`` copies; ``votes`` must be sorted by value."""
    seen = 0
    for value, weight in votes:
        seen += weight
        if k < seen:
            return value
    raise IndexError(f"vote rank {k} beyond total weight {seen}")


def three_vote(quotes: Sequence[tuple[int, int, int]]) -> tuple[int, int, int, int]:
    """Pyth's aggregate of ``(price, conf, weight)`` triples: ``(p25, p50, p75, conf)``.

    Each quote votes ``price − conf``, ``price`` and ``price + conf`` with its weight; over the
    ``n = 3·Σweight`` expanded votes, p25/p50/p75 follow pyth-client's indices (p50 of an even
    count rounds toward −∞); ``conf = max(p50 − p25, p75 − p50)``. Units are the caller's.
    """
    votes: list[tuple[int, int]] = []
    for price, conf, weight in quotes:
        if weight <= 0:
            raise ValueError("vote weights must be positive")
        votes += ((price - conf, weight), (price, weight), (price + conf, weight))
    if not votes:
        raise ValueError("three_vote of nothing")
    votes.sort()
    n = sum(weight for _, weight in votes)
    p25 = weighted_kth(votes, n >> 2)
    p75 = weighted_kth(votes, n - 1 - (n >> 2))
    if n & 1:
        p50 = weighted_kth(votes, n >> 1)
    else:
        p50 = (weighted_kth(votes, (n >> 1) - 1) + weighted_kth(votes, n >> 1)) // 2
    return p25, p50, p75, max(p50 - p25, p75 - p50)
