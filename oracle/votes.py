"""Exact order statistics on integers: medians and Pyth's three-vote weighted percentiles.

Layout:
  ``median_x2``        twice the median of integers (exact, no rounding)
  ``weighted_kth``     the k-th smallest vote when each value is repeated ``weight`` times
  ``three_vote``       Pyth's price model: p25, p50, p75 and conf of the votes p−c, p, p+c
                       (small total weights: the expanded votes; large: ``weighted_kth``)

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


EXPAND_MAX_WEIGHT = 64  # ``three_vote`` sorts plain expanded votes up to this total weight


def three_vote(quotes: Sequence[tuple[int, int, int]]) -> tuple[int, int, int, int]:
    """Pyth's aggregate of ``(price, conf, weight)`` triples: ``(p25, p50, p75, conf)``.

    Each quote votes ``price − conf``, ``price`` and ``price + conf`` with its weight; over the
    ``n = 3·Σweight`` expanded votes, p25/p50/p75 follow pyth-client's indices (p50 of an even
    count rounds toward −∞); ``conf = max(p50 − p25, p75 − p50)``. Units are the caller's.

    Up to ``EXPAND_MAX_WEIGHT`` in total the votes are expanded literally (each repeated
    ``weight`` times) and indexed like pyth-client; above it, ``weighted_kth`` walks the
    ``(vote, weight)`` pairs to the same ranks, so a large weight costs no memory.
    """
    total_weight = 0
    for _, _, weight in quotes:
        if weight <= 0:
            raise ValueError("vote weights must be positive")
        total_weight += weight
    if not total_weight:
        raise ValueError("three_vote of nothing")
    if total_weight <= EXPAND_MAX_WEIGHT:
        return _percentiles_of_expanded(quotes)
    return _percentiles_of_weighted(quotes)


def _percentiles_of_expanded(quotes: Sequence[tuple[int, int, int]]) -> tuple[int, int, int, int]:
    """``three_vote`` on the explicit vote list: pyth-client's ``price_model_core`` indices."""
    votes: list[int] = []
    for price, conf, weight in quotes:
        votes += (price - conf, price, price + conf) * weight
    votes.sort()
    n = len(votes)
    p25 = votes[n >> 2]
    p75 = votes[n - 1 - (n >> 2)]
    p50 = votes[n >> 1] if n & 1 else (votes[(n >> 1) - 1] + votes[n >> 1]) // 2
    return p25, p50, p75, max(p50 - p25, p75 - p50)


def _percentiles_of_weighted(quotes: Sequence[tuple[int, int, int]]) -> tuple[int, int, int, int]:
    """``three_vote`` on ``(vote, weight)`` pairs, the same ranks found by ``weighted_kth``."""
    votes: list[tuple[int, int]] = []
    for price, conf, weight in quotes:
        votes += ((price - conf, weight), (price, weight), (price + conf, weight))
    votes.sort()
    n = sum(weight for _, weight in votes)
    p25 = weighted_kth(votes, n >> 2)
    p75 = weighted_kth(votes, n - 1 - (n >> 2))
    if n & 1:
        p50 = weighted_kth(votes, n >> 1)
    else:
        p50 = (weighted_kth(votes, (n >> 1) - 1) + weighted_kth(votes, n >> 1)) // 2
    return p25, p50, p75, max(p50 - p25, p75 - p50)
