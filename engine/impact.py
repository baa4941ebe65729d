"""Impact prices: the average price at which a given notional would fill against one side of
the book (mechanics.md §4, the inputs of the funding premium). A pure read of the book.

Rounding: the impact bid is floored and the impact ask is ceiled, i.e. both are rounded to the
worse price for the trader taking the impact notional; either way the premium they feed only
shrinks in magnitude by rounding.

Bounds: ``1 ≤ impact_notional_atoms ≤ 2^61``; prices and levels as the book admits them (every
resting order's notional fits in int64, so ``price · atoms_per_tick_lot`` does). A level's total
notional is never formed: a level is either taken whole while its lots stay below what the
remaining notional needs, or taken in part and the walk ends.
"""

from __future__ import annotations

from numba import njit

from engine.book import next_level

MAX_IMPACT_NOTIONAL_ATOMS = 1 << 61


@njit(cache=True, _nrt=False)
def impact_price_ticks(mkt, lvl_qty, bits, summ, best, m, side, impact_notional_atoms):
    """Average fill price in ticks of a market order of ``impact_notional_atoms`` against
    ``side`` (0: the bids, giving the impact bid; 1: the asks, giving the impact ask), or 0
    when that side does not hold the notional. The last level is taken in whole lots, rounded
    up, so the notional is reached: ``Σ price·lots / Σ lots`` over the lots taken."""
    atl = mkt[m]["atl"]
    base = mkt[m]["base"]
    off = mkt[m]["lvl_off"] + side * mkt[m]["levels"]
    need = impact_notional_atoms
    price_lots = 0
    lots = 0
    idx = best[m, side]
    while idx >= 0:
        price = base + idx
        qty = lvl_qty[off + idx]
        per_lot = price * atl
        lots_needed = need // per_lot + (1 if need % per_lot != 0 else 0)
        if qty >= lots_needed:
            price_lots += price * lots_needed
            lots += lots_needed
            if side == 0:
                return price_lots // lots
            return (price_lots + lots - 1) // lots
        price_lots += price * qty
        lots += qty
        need -= qty * per_lot
        idx = next_level(mkt, bits, summ, m, side, idx)
    return 0
