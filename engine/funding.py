"""Funding maths: premium samples, hourly rate, payments (mechanics.md §4); pure kernels.

Layout: four njit kernels over plain integers, no state. Settlement over all positions (one
numba pass calling ``funding_payment_atoms``) belongs to the engine wiring.

Fixed points: premiums and rates in parts per billion (``*_ppb``, 1e9 = 100%); the market's
multiplier in parts per million (``multiplier_ppm``, 1e6 = 1×, 500_000 for stock perps);
prices in ticks (any common unit: the premium is a ratio); money in atoms.

Rounding:

* premium sample, mean and rate: truncated toward zero. A rate is not a charge to one side
  (longs pay what shorts receive), so it is rounded symmetrically and only ever shrinks.
* payment: ``floor`` of the trader's credit, so a payer pays the exact amount rounded
  **up** and a receiver gets it rounded **down**; the sum over a balanced set of positions
  is ≤ 0 and the remainder goes to the insurance fund.

Bounds (proven not to overflow int64): prices in ``[1, MAX_PRICE_TICKS]`` (0 = a side without
impact depth); samples clamped to ``±PREMIUM_CAP_PPB`` so a sum of up to 9·10⁶ samples fits;
``|mean premium| ≤ 10¹⁸``; ``multiplier_ppm ≥ 0`` (any int64); payments for every notional
``|size|·price·atoms_per_tick_lot ≤ INT64_MAX`` and ``|rate_ppb| ≤ PPB``.

Known limitation: a sample beyond ±100,000% is clamped (``PREMIUM_CAP_PPB``); the 4%/h cap
makes any such hour capped anyway unless later samples cancel it.
"""

from __future__ import annotations

from numba import njit

PPB = 1_000_000_000
PPM = 1_000_000
MAX_PRICE_TICKS = 9_000_000_000  # |price diff| · PPB ≤ 9e18 < INT64_MAX
PREMIUM_CAP_PPB = 1_000 * PPB  # ±100,000% per sample
INTEREST_8H_PPB = 100_000  # r = 0.01% per 8 h
CLAMP_8H_PPB = 500_000  # clamp(r − P̄, ±0.05%)
RATE_CAP_1H_PPB = 40_000_000  # ±4% per hour
_RATE_SCALE = 8 * PPM  # rate = F8h · multiplier_ppm / (8 · 1e6)


@njit(cache=True, _nrt=False, inline="always")
def _div_trunc(num, den):
    """``num / den`` truncated toward zero; ``den > 0``."""
    q = num // den
    if q < 0 and q * den != num:
        q += 1
    return q


@njit(cache=True, _nrt=False, inline="always")
def _clamp(x, lo, hi):
    return lo if x < lo else (hi if x > hi else x)


@njit(cache=True, _nrt=False)
def premium_ppb(impact_bid_ticks, impact_ask_ticks, oracle_ticks):
    """One premium sample in ppb, truncated toward zero, clamped to ``±PREMIUM_CAP_PPB``.

    ``p = [max(impact_bid − oracle, 0) − max(oracle − impact_ask, 0)] / oracle``; an impact
    price ``≤ 0`` means that side lacks the impact depth and contributes 0. Bounds: all
    prices ≤ ``MAX_PRICE_TICKS``, ``oracle_ticks ≥ 1``.
    """
    diff = 0
    if impact_bid_ticks > 0 and impact_bid_ticks > oracle_ticks:
        diff += impact_bid_ticks - oracle_ticks
    if impact_ask_ticks > 0 and impact_ask_ticks < oracle_ticks:
        diff -= oracle_ticks - impact_ask_ticks
    return _clamp(_div_trunc(diff * PPB, oracle_ticks), -PREMIUM_CAP_PPB, PREMIUM_CAP_PPB)


@njit(cache=True, _nrt=False)
def premium_mean_ppb(premium_sum_ppb, n_samples):
    """Mean premium ``P̄`` in ppb, truncated toward zero; ``n_samples ≥ 1``."""
    return _div_trunc(premium_sum_ppb, n_samples)


@njit(cache=True, _nrt=False)
def funding_rate_ppb(mean_premium_ppb, multiplier_ppm):
    """Hourly funding rate in ppb, truncated toward zero, capped at ``±RATE_CAP_1H_PPB``.

    ``F8h = P̄ + clamp(r − P̄, −0.05%, +0.05%)``; ``rate = multiplier · F8h / 8``. The cap is
    decided before multiplying (``|F8h|·m > cap·8e6  ⇔  |F8h| > ⌊cap·8e6 / m⌋``), so no
    product exceeds ``cap·8e6 = 3.2e14``. Bounds: ``|P̄| ≤ 10¹⁸``, ``multiplier_ppm ≥ 0``.
    """
    f8h = mean_premium_ppb + _clamp(INTEREST_8H_PPB - mean_premium_ppb, -CLAMP_8H_PPB, CLAMP_8H_PPB)
    if multiplier_ppm == 0 or f8h == 0:
        return 0
    mag = f8h if f8h > 0 else -f8h
    if mag > (RATE_CAP_1H_PPB * _RATE_SCALE) // multiplier_ppm:
        return RATE_CAP_1H_PPB if f8h > 0 else -RATE_CAP_1H_PPB
    return _div_trunc(f8h * multiplier_ppm, _RATE_SCALE)


@njit(cache=True, _nrt=False)
def funding_payment_atoms(size_lots, price_ticks, atoms_per_tick_lot, rate_ppb):
    """The trader's funding credit in atoms (negative = pays): ``−size·price·atl·rate``.

    Rounded **down** (floor): a payer pays the exact amount rounded up, a receiver receives
    it rounded down. Longs pay when ``rate > 0``. Computed as ``notional = q·1e9 + r`` so
    ``q·rate`` and ``r·rate`` both fit; bounds: ``|size|·price·atl ≤ INT64_MAX`` (the caller's
    validated notional), ``|rate_ppb| ≤ PPB``, ``|size_lots| ≤ INT64_MAX``.
    """
    if size_lots == 0 or rate_ppb == 0:
        return 0
    mag = size_lots if size_lots > 0 else -size_lots
    notional = mag * price_ticks * atoms_per_tick_lot
    x = -rate_ppb if size_lots > 0 else rate_ppb  # credit per unit notional, in ppb
    q = notional // PPB
    r = notional % PPB
    return q * x + (r * x) // PPB
