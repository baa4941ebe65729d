"""Closed-hours pricing maths: decay, EMAs, mark, discovery band, reopen, pre-IPO caps.

The formulas are those of mechanics.md §2–§3 and oracle.md §6–§8; docs/pricing.md lists them
with every rounding direction and bound.

Layout: pure njit kernels over plain integers, no state. The engine wiring (modes, when to
sample, which S to publish) is not here.

Fixed points: prices in ticks; money in atoms; rates and fractions in ppb (1e9 = 100%); time in
ns. ``exp(−x)`` is an integer in units of 1e-18 (``*_e18``, ``DECAY_ONE`` = 1). An EMA's value
is in ticks·2^-20 (``*_fp``) and its weight in τ/2^26 (``EMA_WEIGHT_PER_TAU`` per τ).

Determinism: no floating point at run time. ``exp`` is a product of integer tables built at
import with ``decimal`` (whose ``exp`` is correctly rounded, so the tables are the same on
every machine): ``e^(−n)`` for whole ``n`` and ``e^(−c/256^(k+1))`` for each byte ``c`` of the
first 64 bits of the fraction ``dt/τ − n`` (found by exact long division).

Invariants / bounds (each kernel restates its own):

* ``1 ≤ tau_ns ≤ MAX_TAU_NS`` (2^55 ns, 417 days); any int64 ``dt_ns`` (``≤ 0`` means no time).
* ``|decay_e18 − 1e18·e^(−dt/τ)| ≤ DECAY_MAX_ERROR_E18`` (13); 0 once ``dt ≥ 43·τ``.
* EMA samples ``|s| ≤ EMA_MAX_SAMPLE_TICKS`` (2^40): then ``|ema_fp| ≤ 2^60`` and the weight
  stays ``≤ EMA_MAX_WEIGHT`` (43·2^26 + 1), so no product exceeds 2^62.9.
* Prices below ``MAX_PRICE_TICKS`` (2^61), so sums and differences of two fit.

Known limitations: an EMA weighs a sample by ``⌊dt·2^26/τ⌋`` units, so the weight of one
interval is short by less than τ/2^26 (2.3 µs for τ = 150 s, 0.43 ms for τ = 8 h), and a sample
less than τ/2^26 after the previous one has no weight at all. The decay itself uses the exact
``dt``. ``decay_e18`` is monotone in ``dt`` only to within its error: a longer ``dt`` may give
a value a few units of 1e-18 larger.
"""

from __future__ import annotations

import decimal

import numpy as np
from numba import njit

PPB = 1_000_000_000
DECAY_ONE = 10**18  # e^0 in units of 1e-18
DECAY_ZERO_TAUS = 43  # e^(−43)·1e18 < 0.22: rounds to 0 from here on
DECAY_MAX_ERROR_E18 = 13
MAX_TAU_NS = 1 << 55  # remainder·256 < 2^63 in the long division
MAX_PRICE_TICKS = 1 << 61

EMA_FRAC_BITS = 20
EMA_ONE = 1 << EMA_FRAC_BITS  # one tick in ``*_fp`` units
EMA_WEIGHT_PER_TAU = 1 << 26
EMA_MAX_WEIGHT = DECAY_ZERO_TAUS * EMA_WEIGHT_PER_TAU + 1
EMA_MAX_SAMPLE_TICKS = 1 << 40

SECOND_NS = 1_000_000_000
MARK_EMA_TAU_NS = 150 * SECOND_NS  # mechanics §3
INTERNAL_TAU_NS = 3_600 * SECOND_NS  # oracle §6: τ = 1 h
REANCHOR_THRESHOLD_PPB = 900_000_000  # re-anchor at 90% of the way to an edge
MAX_RESETS = 2  # per direction
REOPEN_SNAP_PPB = 10_000_000  # |E/S − 1| ≤ 1% at the start: snap
REOPEN_STEP_PPB = 5_000_000  # otherwise ≤ 50 bps of S per update
REOPEN_DONE_PPB = 1_000_000  # |S/E − 1| < 0.1%: converged
PREIPO_EMA_TAU_NS = 8 * 3_600 * SECOND_NS
PREIPO_ORACLE_CAP_MULT = 4  # oracle ≤ 4 × reference
PREIPO_MARK_CAP_MULT = 3  # mark ≤ 3 × its own 8 h EMA
DARK_MAX_LEV = 5
OI_CAP_DARK_PPB = 250_000_000


def _exp_neg_e18(x: decimal.Decimal, ctx: decimal.Context) -> int:
    """``e^(−x)·1e18`` rounded half-even to an integer, from a correctly rounded exp."""
    value = ctx.multiply(ctx.exp(ctx.minus(x)), decimal.Decimal(DECAY_ONE))
    return int(value.to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    ctx = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN, Emin=-999, Emax=999)
    whole = np.array([_exp_neg_e18(decimal.Decimal(n), ctx) for n in range(DECAY_ZERO_TAUS + 1)], np.int64)
    frac = np.empty((8, 256), np.int64)
    for k in range(8):
        for c in range(256):
            # c / 2^(8k+8) = c·5^(8k+8) / 10^(8k+8): at most 48 digits, so the division is exact
            x = ctx.divide(decimal.Decimal(c), decimal.Decimal(256 ** (k + 1)))
            frac[k, c] = _exp_neg_e18(x, ctx)
    return whole, frac


EXP_NEG_WHOLE_E18, EXP_NEG_BYTE_E18 = _build_tables()


@njit(cache=True, _nrt=False, inline="always")
def _clamp(x, lo, hi):
    return lo if x < lo else (hi if x > hi else x)


@njit(cache=True, _nrt=False, inline="always")
def _mul_e18(a, b):
    """``⌊a·b / 1e18⌋`` for ``0 ≤ a < 2^62``, ``0 ≤ b ≤ 1e18``, without a 128-bit product.

    With ``a = a1·1e9 + a0`` and ``b = b1·1e9 + b0`` the result is
    ``a1·b1 + ⌊(a1·b0 + a0·b1 + ⌊a0·b0/1e9⌋)/1e9⌋``; the inner sum is below 4.7e18 + 1e18 + 1e9.
    """
    a1 = a // PPB
    a0 = a % PPB
    b1 = b // PPB
    b0 = b % PPB
    return a1 * b1 + (a1 * b0 + a0 * b1 + (a0 * b0) // PPB) // PPB


@njit(cache=True, _nrt=False, inline="always")
def _mul_e18_trunc(a, b):
    """``a·b / 1e18`` truncated toward zero, ``|a| < 2^62``, ``0 ≤ b ≤ 1e18``."""
    if a < 0:
        return -_mul_e18(-a, b)
    return _mul_e18(a, b)


@njit(cache=True, _nrt=False, inline="always")
def _mul_ppb(a, p):
    """``(q, r)`` with ``a·p = q·1e9 + r``, ``0 ≤ r < 1e9``; ``0 ≤ a ≤ INT64_MAX``, ``0 ≤ p ≤ 1e9``.

    With ``a = a1·1e9 + a0``: ``a1·p ≤ a`` and ``a0·p < 1e18``, so nothing overflows."""
    a1 = a // PPB
    a0 = a % PPB
    lo = a0 * p
    return a1 * p + lo // PPB, lo % PPB


@njit(cache=True, _nrt=False, inline="always")
def _decay_and_weight(dt_ns, tau_ns):
    """``(e^(−dt/τ) in e18, ⌊min(dt, 43τ)·2^26/τ⌋)``; ``dt ≤ 0`` gives ``(1e18, 0)``."""
    if dt_ns <= 0:
        return DECAY_ONE, 0
    n = dt_ns // tau_ns
    if n >= DECAY_ZERO_TAUS:
        return 0, DECAY_ZERO_TAUS * EMA_WEIGHT_PER_TAU
    value = EXP_NEG_WHOLE_E18[n]
    weight = n
    rem = dt_ns - n * tau_ns  # 0 ≤ rem < τ ≤ 2^55
    for k in range(8):
        rem *= 256
        c = rem // tau_ns  # the k-th byte of the fraction dt/τ − n
        rem -= c * tau_ns
        if k < 4:  # the fraction's first 32 bits, of which the top 26 are kept
            weight = weight * 256 + c
        if c != 0:
            value = _mul_e18(value, EXP_NEG_BYTE_E18[k, c])
    return value, weight >> 6


@njit(cache=True, _nrt=False)
def decay_e18(dt_ns, tau_ns):
    """``e^(−dt/τ)`` in units of 1e-18, within ``DECAY_MAX_ERROR_E18`` of the exact value.

    ``e^(−n) · Π_k e^(−c_k/256^(k+1))``: tables rounded to nearest (≤ ½ each, 9 factors), each
    product floored (≤ 1 each, 8 products), the fraction truncated after 64 bits (< 0.06);
    no factor exceeds 1, so no error is amplified: ``|error| < 12.6``. Never above 1e18;
    exactly 0 once ``dt ≥ 43·τ``. Bounds: ``1 ≤ tau_ns ≤ MAX_TAU_NS``, any ``dt_ns``.
    """
    return _decay_and_weight(dt_ns, tau_ns)[0]


@njit(cache=True, _nrt=False)
def ema_update(ema_fp, weight, sample_ticks, dt_ns, tau_ns):
    """One irregular-interval EMA step (mechanics §3); returns ``(ema_fp, weight)``.

    The spec's ``num ← num·d + s·t, den ← den·d + t, ema = num/den`` (``d = e^(−t/τ)``) is
    carried as ``(ema, den)``: ``den' = den·d + t`` and ``ema' = ema + (s − ema)·t/den'``, the
    same value, and an ``ema`` with 20 fraction bits whatever the price (``num`` itself would
    need ``2^40 · den`` in int64). ``t`` is ``w = ⌊min(dt, 43τ)·2^26/τ⌋`` weight units.
    Rounding: ``den·d`` to nearest, halves up (floor would underweight the history a little at
    every step); the step ``(s − ema)·w/den'`` truncated toward zero, so the EMA never passes
    the sample and always lies within the samples' range. A first sample (``weight == 0``)
    sets the EMA to itself; a sample with ``w == 0`` only decays the weight. Bounds:
    ``|sample_ticks| ≤ 2^40``, ``0 ≤ weight ≤ EMA_MAX_WEIGHT`` (kept so),
    ``|ema_fp| ≤ 2^60`` (kept so), τ as ``decay_e18``.
    """
    d, w = _decay_and_weight(dt_ns, tau_ns)
    weight = (_mul_e18(2 * weight, d) + 1) // 2 + w  # ⌊x + ½⌋ = ⌊(⌊2x⌋ + 1)/2⌋
    if w == 0:
        return ema_fp, weight
    diff = sample_ticks * EMA_ONE - ema_fp  # |diff| ≤ 2^61
    mag = diff if diff >= 0 else -diff
    # ⌊mag·w/den'⌋ exactly: mag = q·den' + r, w ≤ den' < 2^31.43, so q·w ≤ mag and r·w < 2^62.9
    q = mag // weight
    r = mag - q * weight
    step = q * w + (r * w) // weight
    return (ema_fp + step if diff >= 0 else ema_fp - step), weight


@njit(cache=True, _nrt=False)
def ema_ticks(ema_fp):
    """An EMA's value in ticks, rounded to nearest, halves away from zero (symmetric)."""
    half = EMA_ONE // 2
    if ema_fp >= 0:
        return (ema_fp + half) // EMA_ONE
    return -((-ema_fp + half) // EMA_ONE)


@njit(cache=True, _nrt=False, inline="always")
def _median3(a, b, c):
    lo = a if a < b else b
    hi = b if a < b else a
    m = hi if hi < c else c
    return lo if lo > m else m


@njit(cache=True, _nrt=False, inline="always")
def _mean_toward(a, b, anchor):
    """``(a + b)/2``; a half tick is rounded toward ``anchor`` (down when ``anchor`` is at or
    below the midpoint, up when above). ``0 ≤ a, b < 2^62``."""
    s = a + b
    lo = s // 2
    if s % 2 != 0 and 2 * anchor > s:
        return lo + 1
    return lo


@njit(cache=True, _nrt=False)
def book_price_ticks(best_bid, best_ask, last_trade, oracle_ticks):
    """Median of the available of (bid, ask, last); ``≤ 0`` means missing; 0 if none is.

    Of two, the median is their mean with a half tick rounded toward the oracle, so rounding
    never moves the mark away from the oracle. Bounds: prices ``< MAX_PRICE_TICKS``.
    """
    n = 0
    x = 0
    y = 0
    for p in (best_bid, best_ask, last_trade):
        if p > 0:
            if n == 0:
                x = p
            elif n == 1:
                y = p
            n += 1
    if n == 3:
        return _median3(best_bid, best_ask, last_trade)
    if n == 2:
        return _mean_toward(x, y, oracle_ticks)
    return x  # the single one, or 0


@njit(cache=True, _nrt=False)
def mark_price_ticks(oracle_ticks, ema_basis_ticks, best_bid, best_ask, last_trade):
    """``median(oracle, oracle + EMA_150s(basis), book)`` (mechanics §3); no book: the oracle.

    ``book`` is ``book_price_ticks`` (missing inputs drop out). The result is one of its three
    inputs, so it lies within their range and needs no rounding of its own. Bounds: prices in
    ``[1, MAX_PRICE_TICKS)``, ``|ema_basis_ticks| < MAX_PRICE_TICKS``.
    """
    book = book_price_ticks(best_bid, best_ask, last_trade, oracle_ticks)
    if book == 0:
        return oracle_ticks
    return _median3(oracle_ticks, oracle_ticks + ema_basis_ticks, book)


@njit(cache=True, _nrt=False)
def clamp_ticks(price_ticks, low_ticks, high_ticks):
    """``price`` clamped into ``[low, high]`` (the dark mark and internal price)."""
    return _clamp(price_ticks, low_ticks, high_ticks)


@njit(cache=True, _nrt=False)
def band_ticks(ref_ticks, band_ppb):
    """Discovery band ``ref·(1 ± B)`` as ``(low, high)``: low rounded up, high rounded down.

    Both edges are ``ref ∓ ⌊ref·B⌋``, so the band never widens by rounding. Bounds:
    ``1 ≤ ref_ticks < MAX_PRICE_TICKS``, ``0 ≤ band_ppb < 1e9`` (then ``low ≥ 1``).
    """
    half = _mul_ppb(ref_ticks, band_ppb)[0]
    return ref_ticks - half, ref_ticks + half


@njit(cache=True, _nrt=False)
def reanchor_reach_ticks(ref_ticks, band_ppb, threshold_ppb):
    """Ticks from ``ref`` that ``S`` must reach to re-anchor: ``⌈threshold·(high − ref)⌉``.

    Rounded up: ``S`` reaches a trigger that is not on a tick only by passing it. The band is
    symmetric, so one distance serves both edges. ``0 < threshold_ppb ≤ 1e9``.
    """
    half = _mul_ppb(ref_ticks, band_ppb)[0]
    q, r = _mul_ppb(half, threshold_ppb)
    return q + (1 if r != 0 else 0)


@njit(cache=True, _nrt=False)
def reanchor(s_ticks, ref_ticks, band_ppb, threshold_ppb, resets_up, resets_down, max_resets):
    """Bounded re-anchoring (oracle §6); returns ``(ref, resets_up, resets_down)``.

    When ``S − ref ≥ reanchor_reach_ticks`` and ``resets_up < max_resets``, ``ref`` moves to
    the band's high edge (``resets_up + 1``); mirrored downward. After ``max_resets`` in a
    direction the band is a hard cap on that side. Nothing moves while the band is a single
    tick wide (``⌊ref·B⌋ = 0``). At most one re-anchor per call: ``S`` lies inside the old band,
    so it cannot already be past the new one's trigger. With ``band_ppb ≤ threshold_ppb`` (5–33%
    bands, 90% threshold) ``S`` also lies inside the new band. Bounds: as ``band_ticks``.
    """
    half = _mul_ppb(ref_ticks, band_ppb)[0]
    if half == 0:
        return ref_ticks, resets_up, resets_down
    reach = reanchor_reach_ticks(ref_ticks, band_ppb, threshold_ppb)
    if s_ticks - ref_ticks >= reach and resets_up < max_resets:
        return ref_ticks + half, resets_up + 1, resets_down
    if ref_ticks - s_ticks >= reach and resets_down < max_resets:
        return ref_ticks - half, resets_up, resets_down + 1
    return ref_ticks, resets_up, resets_down


@njit(cache=True, _nrt=False)
def impact_price_difference_ticks(s_ticks, impact_bid, impact_ask):
    """``IPD = max(impact_bid − S, 0) − max(S − impact_ask, 0)``; an impact price ``≤ 0``
    (that side lacks the impact depth) contributes 0. Exact."""
    ipd = 0
    if impact_bid > 0 and impact_bid > s_ticks:
        ipd += impact_bid - s_ticks
    if impact_ask > 0 and impact_ask < s_ticks:
        ipd -= s_ticks - impact_ask
    return ipd


@njit(cache=True, _nrt=False)
def internal_beta_e18(dt_ns, tau_ns):
    """``β = e^(−min(Δt, τ/10)/τ)`` in e18 (oracle §6), as ``decay_e18``."""
    if dt_ns >= (tau_ns + 9) // 10:  # Δt ≥ τ/10, exactly, for integer Δt
        return decay_e18(1, 10)
    return decay_e18(dt_ns, tau_ns)


@njit(cache=True, _nrt=False)
def internal_step_ticks(s_ticks, impact_bid, impact_ask, dt_ns, tau_ns, low_ticks, high_ticks):
    """``S ← clamp(S + (1 − β)·IPD, low, high)``: the dark internal price after one update.

    The move is truncated toward zero, i.e. rounded toward the current ``S``: it never
    overshoots the book (``|move| ≤ (1 − e^(−0.1))·|IPD|``). Bounds: prices in
    ``[1, MAX_PRICE_TICKS)``, τ as ``decay_e18``.
    """
    ipd = impact_price_difference_ticks(s_ticks, impact_bid, impact_ask)
    move = _mul_e18_trunc(ipd, DECAY_ONE - internal_beta_e18(dt_ns, tau_ns))
    return _clamp(s_ticks + move, low_ticks, high_ticks)


@njit(cache=True, _nrt=False, inline="always")
def _within(dist, base, ratio_ppb):
    """``dist ≤ base·ratio`` exactly; ``dist, base ≥ 0``."""
    return dist <= _mul_ppb(base, ratio_ppb)[0]


@njit(cache=True, _nrt=False)
def reopen_snaps(s_ticks, e_ticks, snap_ppb):
    """At the start of a reopen: ``|E/S − 1| ≤ snap`` (default 1%), so the price snaps to E.

    Exact (``|E − S| ≤ ⌊S·snap⌋`` is ``|E − S|·1e9 ≤ S·snap`` for integers). ``S ≥ 1``.
    """
    dist = e_ticks - s_ticks if e_ticks > s_ticks else s_ticks - e_ticks
    return _within(dist, s_ticks, snap_ppb)


@njit(cache=True, _nrt=False)
def reopen_step_ticks(s_ticks, e_ticks, step_ppb):
    """The next price from ``S`` toward ``E``: at most ``max(⌊S·step⌋, 1)`` ticks, never past E.

    The step is rounded down (never more than ``step_ppb`` of ``S``) but is at least one tick,
    so a reopen always converges, even for a price below ``1e9/step_ppb`` ticks.
    ``|S − E|`` shrinks at every call until ``S = E``. Bounds: prices in ``[1, MAX_PRICE_TICKS)``.
    """
    limit = _mul_ppb(s_ticks, step_ppb)[0]
    if limit < 1:
        limit = 1
    if e_ticks > s_ticks:
        return e_ticks if e_ticks - s_ticks <= limit else s_ticks + limit
    return e_ticks if s_ticks - e_ticks <= limit else s_ticks - limit


@njit(cache=True, _nrt=False)
def reopen_converged(s_ticks, e_ticks, done_ppb):
    """``|S/E − 1| < done`` (default 0.1%), exactly: ``|S − E|·1e9 < E·done``. ``E ≥ 1``."""
    dist = e_ticks - s_ticks if e_ticks > s_ticks else s_ticks - e_ticks
    q, r = _mul_ppb(e_ticks, done_ppb)
    return dist < q or (dist == q and r != 0)


@njit(cache=True, _nrt=False)
def preipo_oracle_ticks(oracle_ema_ticks, reference_ticks):
    """Pre-IPO oracle: the 8 h EMA of the minutely mark, capped at 4 × the reference. Exact.

    ``reference_ticks < 2^61``."""
    cap = PREIPO_ORACLE_CAP_MULT * reference_ticks
    return cap if oracle_ema_ticks > cap else oracle_ema_ticks


@njit(cache=True, _nrt=False)
def preipo_mark_ticks(mark_ticks, mark_ema_ticks):
    """Pre-IPO mark capped at 3 × its own 8 h EMA; no cap while that EMA is ``≤ 0`` (none yet).

    Exact; ``mark_ema_ticks < 2^61``."""
    if mark_ema_ticks <= 0:
        return mark_ticks
    cap = PREIPO_MARK_CAP_MULT * mark_ema_ticks
    return cap if mark_ticks > cap else mark_ticks


@njit(cache=True, _nrt=False)
def dark_max_leverage(max_lev, dark_max_lev):
    """Max leverage for new exposure while dark: ``min(max_lev, dark_max_lev)`` (mechanics §2)."""
    return dark_max_lev if dark_max_lev < max_lev else max_lev


@njit(cache=True, _nrt=False)
def dark_oi_cap_atoms(oi_cap_atoms, oi_cap_dark_ppb):
    """Open-interest cap while dark: ``cap·oi_cap_dark``, rounded down (a cap never widens).

    Exact for any ``0 ≤ oi_cap_atoms ≤ INT64_MAX`` and ``0 ≤ oi_cap_dark_ppb ≤ 1e9``."""
    return _mul_ppb(oi_cap_atoms, oi_cap_dark_ppb)[0]
