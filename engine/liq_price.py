"""The published liquidation price of a position (mechanics.md §5, docs/risk.md).

Cross margin: the price of market ``m`` at which the account's equity would meet its
maintenance margin, every other position held at its mark. With ``avail = equity − MM`` at
the mark and ``L`` the max leverage of the position's tier (maintenance rate ``1/(2L)``),
Hyperliquid's formula ``liq = mark − side·avail/|size|/(1 − side/(2L))`` is exact while the
position's notional stays inside its tier (the continuous deduction is constant there).
``engine.liquidation.liquidation_price_ticks`` rounds toward the mark, so the warning is never
late. A result ≤ 0 (a long that no price above zero can liquidate) is reported as 0, as is a
flat position; ``avail < 0`` (already liquidatable) gives a price on the other side of the mark.

Isolated: the same formula on the position alone, ``avail = bucket + uPnL − MM`` of the
position (mechanics.md's worked 92.31 is an isolated long).
"""

from __future__ import annotations

from numba import njit

from engine.liquidation import liquidation_price_ticks
from engine.margin import max_leverage
from engine.risk import equity_atoms, iso_equity_atoms, position_mm, position_notional, total_mm


@njit(cache=True, _nrt=False)
def position_liquidation_price(acc, pos, mkt, a, m):
    """Ticks; 0 for none."""
    size = pos[a, m]["size"]
    if size == 0:
        return 0
    if pos[a, m]["iso"] != 0:
        avail = iso_equity_atoms(pos, mkt, a, m) - position_mm(pos, mkt, a, m)
    else:
        avail = equity_atoms(acc, pos, mkt, a) - total_mm(pos, mkt, a)
    lev = max_leverage(position_notional(pos, mkt, a, m), mkt[m]["tier_lo"], mkt[m]["tier_lev"])
    price = liquidation_price_ticks(size, mkt[m]["mark"], avail, mkt[m]["atl"], lev)
    return price if price > 0 else 0
