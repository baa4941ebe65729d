"""Liquidation maths (§5): bankruptcy, abr, fillable and published liquidation prices, and
the exact comparisons and shares of auto-deleveraging.

Layout: pure njit kernels over plain integers, no state; the waterfall itself is
``engine.liquidator`` (cancel, book, backstop, the fund's work-off) and ``engine.adl``.

Units: sizes in lots (signed: + long, − short, never 0), prices in ticks, money in atoms,
``atl`` = atoms per tick-lot (``units.atoms_per_tick_lot``), so a position's value per tick
is ``E = |size|·atl`` atoms. abr in ppb.

Rounding (each kernel states its own): every price is rounded **toward the current price**
(up for a long, down for a short). For the bankruptcy price that means closing there leaves
equity ≥ 0, so it never needs the insurance fund; for the fillable price it means a
liquidation IOC never fills beyond the exact limit, so the fund never covers more than the
formula allows; for the published liquidation price it means the warning is never late.

Bounds (proven not to overflow int64): ``1 ≤ |size|·atl ≤ INT64_MAX``; ``|price|, |mark|,
|equity|, |margin_available| < 2^62``; ``0 ≤ mm_atoms ≤ 9·10^17`` (abr's long division);
``1 ≤ max_lev ≤ 2^61``. Results may be ≤ 0 for a long that price alone cannot bankrupt or
liquidate; the caller treats such a price as "none".
"""

from __future__ import annotations

from numba import njit

PPB = 1_000_000_000


@njit(cache=True, _nrt=False)
def bankruptcy_price_ticks(size_lots, mark_ticks, equity_atoms, atl):
    """Price at which the position's equity is exactly 0, rounded toward the mark.

    ``p = mark − equity / (size·atl)``; long: rounded up, short: rounded down, so equity at
    the returned price is ≥ 0 (closing there needs no insurance-fund payment).
    """
    mag = size_lots if size_lots > 0 else -size_lots
    dist = equity_atoms // (mag * atl)  # floor(equity / E)
    return mark_ticks - dist if size_lots > 0 else mark_ticks + dist


@njit(cache=True, _nrt=False)
def abr_ppb(equity_atoms, mm_atoms):
    """``abr = clamp(1 − equity/MM, 0, 1)`` in ppb, **rounded down** (0 when ``MM ≤ 0``).

    Down, like the fillable price it feeds: a smaller abr keeps the liquidation limit nearer
    the mark. ``(MM − equity)·1e9 / MM`` is done as nine base-10 long-division steps, so
    ``MM ≤ 9·10^17`` atoms suffices.
    """
    if mm_atoms <= 0 or equity_atoms >= mm_atoms:
        return 0
    if equity_atoms <= 0:
        return PPB
    rem = mm_atoms - equity_atoms  # 0 < rem < mm
    out = 0
    for _ in range(9):
        rem *= 10
        out = out * 10 + rem // mm_atoms
        rem %= mm_atoms
    return out


@njit(cache=True, _nrt=False)
def fillable_price_ticks(size_lots, mark_ticks, equity_atoms, mm_atoms, atl):
    """Limit of a liquidation IOC: ``mark − side·abr·1.5·MM/size``, rounded toward the mark.

    ``abr·MM = clamp(MM − equity, 0, MM)`` exactly, so the distance is
    ``⌊3·clamp(MM − equity, 0, MM) / (2·E)⌋`` ticks (nested floors, no ``2·E`` overflow);
    long: mark − distance (rounded up), short: mark + distance (rounded down).
    """
    gap = mm_atoms - equity_atoms
    if gap < 0:
        gap = 0
    if gap > mm_atoms:
        gap = mm_atoms
    mag = size_lots if size_lots > 0 else -size_lots
    dist = (3 * gap // 2) // (mag * atl)
    return mark_ticks - dist if size_lots > 0 else mark_ticks + dist


@njit(cache=True, _nrt=False)
def liquidation_price_ticks(size_lots, price_ticks, margin_available_atoms, atl, max_lev):
    """Hyperliquid's ``liq = price − side·margin_available/|size|/(1 − l·side)``, toward price.

    ``l = 1/(2·max_lev)`` (maintenance leverage is twice the max leverage), so the distance
    is ``avail·2L / (E·(2L − side))`` ticks = ``⌊(avail + ⌊avail·side/(2L − side)⌋) / E⌋``.
    ``margin_available`` is margin (isolated) or equity (cross) minus MM at ``price``.
    Long: rounded up, short: rounded down, so at the returned price the position is still
    at or above maintenance and one tick further it is below.
    """
    side = 1 if size_lots > 0 else -1
    mag = size_lots if size_lots > 0 else -size_lots
    k = 2 * max_lev - side  # ≥ 1
    scaled = margin_available_atoms + (margin_available_atoms * side) // k  # ⌊avail·2L/k⌋
    dist = scaled // (mag * atl)
    return price_ticks - dist if size_lots > 0 else price_ticks + dist


@njit(cache=True, _nrt=False)
def fraction_cmp(num_a, den_a, num_b, den_b):
    """Sign of ``num_a/den_a − num_b/den_b`` exactly, for ``num ≥ 0`` and ``den > 0``.

    No products, so nothing overflows: integer parts first, then the remainders compared as
    ``r_a/den_a`` against ``r_b/den_b`` ⟺ ``den_b/r_b`` against ``den_a/r_a`` (Euclid's steps).
    """
    while True:
        qa = num_a // den_a
        qb = num_b // den_b
        if qa != qb:
            return 1 if qa > qb else -1
        ra = num_a - qa * den_a
        rb = num_b - qb * den_b
        if ra == 0 or rb == 0:
            if ra == rb:
                return 0
            return 1 if ra > 0 else -1
        num_a, den_a, num_b, den_b = den_b, rb, den_a, ra


@njit(cache=True, _nrt=False)
def ratio_cmp(num_a, den_a, num_b, den_b):
    """Sign of ``num_a/den_a − num_b/den_b`` exactly, for any sign of ``num`` and ``den > 0``."""
    if (num_a >= 0) != (num_b >= 0):
        return 1 if num_a >= 0 else -1
    if num_a >= 0:
        return fraction_cmp(num_a, den_a, num_b, den_b)
    return fraction_cmp(-num_b, den_b, -num_a, den_a)


@njit(cache=True, _nrt=False)
def pro_rata_ceil(total, part, whole):
    """``⌈total·part / whole⌉`` for ``total ≥ 0`` and ``0 < part ≤ whole ≤ 3·10^9`` (lots).

    ``total = Q·whole + R`` so that ``R·part < whole·part`` fits int64 (as ``apply_fill``).
    """
    q = total // whole
    r = total - q * whole
    return q * part - ((-r * part) // whole)
