"""Price band, market-order protection price and notional limits of one market.

Rounding: the band half-width and the market-order slippage are floored, so neither ever
widens by rounding; the half-width is also capped at a quarter of the ladder so the band
always lies inside the book's window (docs/matching.md).
"""

from __future__ import annotations

from numba import njit

from engine.kernel_consts import (
    INT64_MAX,
    PPM,
    R_NOTIONAL_BELOW_MIN,
    R_OUTSIDE_DISCOVERY,
    R_PRICE_OUTSIDE_BAND,
    R_VALUE_OVERFLOW,
)
from engine.modes import has_band


@njit(cache=True, _nrt=False, inline="always")
def band(mkt, m):
    """(low, high) ticks of the price band; the half-width is floored and capped at L/4.

    While the market has a discovery band (INTERNAL or PRE_IPO, engine.modes) that band
    applies instead, within the same L/4 of the mark."""
    mark = mkt[m]["mark"]
    cap = mkt[m]["levels"] // 4
    if has_band(mkt, m):
        low = mkt[m]["band_lo"] if mkt[m]["band_lo"] > mark - cap else mark - cap
        high = mkt[m]["band_hi"] if mkt[m]["band_hi"] < mark + cap else mark + cap
        return (low if low > 1 else 1), high
    hw = mark * mkt[m]["band_ppm"] // PPM
    if hw > cap:
        hw = cap
    low = mark - hw
    if low < 1:
        low = 1
    return low, mark + hw


@njit(cache=True, _nrt=False, inline="always")
def band_code(mkt, m, price):
    """0 inside the band; else PRICE_OUTSIDE_DISCOVERY_BAND when the discovery band is what
    the price is outside of, PRICE_OUTSIDE_BAND otherwise."""
    low, high = band(mkt, m)
    if low <= price <= high:
        return 0
    if has_band(mkt, m) and (price < mkt[m]["band_lo"] or price > mkt[m]["band_hi"]):
        return R_OUTSIDE_DISCOVERY
    return R_PRICE_OUTSIDE_BAND


@njit(cache=True, _nrt=False, inline="always")
def protection_price(mkt, m, side):
    """Limit of a market order: mark ± floored slippage, clamped into the band."""
    mark = mkt[m]["mark"]
    off = mark * mkt[m]["slip_ppm"] // PPM
    low, high = band(mkt, m)
    if side == 0:
        p = mark + off
        return high if p > high else p
    p = mark - off
    return low if p < low else p


@njit(cache=True, _nrt=False, inline="always")
def notional_check(mkt, m, price, size):
    """0, VALUE_OVERFLOW or NOTIONAL_BELOW_MIN for price × size × atoms-per-tick-lot."""
    atl = mkt[m]["atl"]
    if price > INT64_MAX // atl or size > INT64_MAX // (price * atl):
        return R_VALUE_OVERFLOW
    if price * size * atl < mkt[m]["min_notional"]:
        return R_NOTIONAL_BELOW_MIN
    return 0


@njit(cache=True, _nrt=False, inline="always")
def crosses(mkt, best, m, side, price):
    """Would an order at ``price`` on ``side`` take liquidity?"""
    b = best[m, 1 - side]
    if b < 0:
        return False
    lp = mkt[m]["base"] + b
    return lp <= price if side == 0 else lp >= price
