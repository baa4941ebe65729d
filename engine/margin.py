"""Margin tiers, maintenance and initial margin: pure integer kernels (mechanics.md §2).

Layout: ``check_tiers`` validates a tier table in Python; the njit kernels take plain
int64 arrays and integers and hold no state.

Tiers are two int64 arrays of equal length ``n`` (1 ≤ n ≤ ``MAX_TIERS``):

* ``tier_lower_atoms``: lower bound of each tier's notional, in atoms; ``[0] == 0``,
  strictly increasing. A notional equal to a bound belongs to the upper tier.
* ``tier_max_lev``: max leverage of each tier, an integer in ``[1, MAX_TIER_LEV]``.

Maintenance margin ratio of tier ``k`` is the exact fraction ``mmr(k) = 1 / (2·max_lev(k))``;
no ppb rounding of ratios, so the spec's example is exact. The continuous-deduction formula

    MM = notional · mmr(t) − deduction(t),
    deduction(t) = Σ_{k=1..t} lower(k) · (mmr(k) − mmr(k−1))

is, term by term, the marginal sum ``Σ_k segment_k · mmr(k)``, where ``segment_k`` is the
part of the notional lying inside tier ``k``. The kernel sums that form: each term's whole
atoms plus its remainder over the common denominator ``Π 2·max_lev(k)``.

Invariants / bounds: any ``0 ≤ notional_atoms ≤ INT64_MAX`` is safe. With ``n ≤ 4`` and
``max_lev ≤ 1000`` the common denominator is at most ``2000⁴ = 1.6e13`` and the remainder sum
below ``4 · 1.6e13``, far inside int64.

Known limitations: MM is in whole atoms rounded up, so at a tier boundary the two formulas
agree only to the atom they round to (exactly, when the spec's values are whole atoms).
"""

from __future__ import annotations

import numpy as np
from numba import njit

MAX_TIERS = 4
MAX_TIER_LEV = 1000


def check_tiers(tier_lower_atoms: np.ndarray, tier_max_lev: np.ndarray) -> None:
    """Raise ``ValueError`` unless the arrays are a valid tier table (see module doc)."""
    lower = np.asarray(tier_lower_atoms)
    lev = np.asarray(tier_max_lev)
    if lower.dtype != np.int64 or lev.dtype != np.int64:
        raise ValueError("tier arrays must be int64")
    if lower.ndim != 1 or lower.shape != lev.shape or not 1 <= lower.shape[0] <= MAX_TIERS:
        raise ValueError(f"tiers: two 1-D arrays of equal length 1..{MAX_TIERS}")
    if lower[0] != 0:
        raise ValueError("first tier must start at notional 0")
    if np.any(np.diff(lower) <= 0):
        raise ValueError("tier lower bounds must be strictly increasing")
    if np.any(lev < 1) or np.any(lev > MAX_TIER_LEV):
        raise ValueError(f"tier max leverage must lie in [1, {MAX_TIER_LEV}]")


@njit(cache=True, _nrt=False)
def tier_of(notional_atoms, tier_lower_atoms):
    """Index of the tier holding ``notional_atoms``: the last ``k`` with lower(k) ≤ notional."""
    t = 0
    for k in range(1, tier_lower_atoms.shape[0]):
        if notional_atoms >= tier_lower_atoms[k]:
            t = k
    return t


@njit(cache=True, _nrt=False)
def max_leverage(notional_atoms, tier_lower_atoms, tier_max_lev):
    """Max leverage allowed for a position of ``notional_atoms`` (its tier's)."""
    return tier_max_lev[tier_of(notional_atoms, tier_lower_atoms)]


@njit(cache=True, _nrt=False)
def maintenance_margin_atoms(notional_atoms, tier_lower_atoms, tier_max_lev):
    """MM in atoms of a position notional (≥ 0, atoms, at mark); **rounded up** (a charge).

    ``MM = Σ_k segment_k / (2·max_lev(k))`` = ``notional·mmr(t) − deduction(t)`` exactly,
    then the ceiling. Safe for every ``0 ≤ notional_atoms ≤ INT64_MAX`` with a table that
    passes ``check_tiers``.
    """
    n = tier_lower_atoms.shape[0]
    den = 1
    for k in range(n):
        den *= 2 * tier_max_lev[k]
    whole = 0
    frac_num = 0  # Σ remainder_k / d_k, over the common denominator ``den``
    for k in range(n):
        lo = tier_lower_atoms[k]
        if notional_atoms <= lo:
            break
        hi = notional_atoms
        if k + 1 < n and tier_lower_atoms[k + 1] < notional_atoms:
            hi = tier_lower_atoms[k + 1]
        seg = hi - lo
        d = 2 * tier_max_lev[k]
        whole += seg // d
        frac_num += (seg % d) * (den // d)
    return whole + frac_num // den + (1 if frac_num % den != 0 else 0)


@njit(cache=True, _nrt=False)
def initial_margin_atoms(notional_atoms, lev):
    """IM in atoms = ``notional / lev``, **rounded up** (a charge); ``lev ≥ 1``.

    Safe for every ``0 ≤ notional_atoms ≤ INT64_MAX`` (no ``n + lev − 1`` overflow).
    """
    return notional_atoms // lev + (1 if notional_atoms % lev != 0 else 0)
