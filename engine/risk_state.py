"""The risk state's fixed parts shared by both engines: market risk fields from a spec, the
position view, and the canonical integers ``state_hash`` appends for the risk state
(docs/risk.md, "State hash")."""

from __future__ import annotations

import msgspec
import numpy as np
from numba import njit

from engine.book import C_DEPOSITS, C_FEES, C_RISK, C_WITHDRAWALS
from engine.margin import MAX_TIERS
from engine.spec import MarketSpec
from engine.units import INT64_MAX, to_atoms, to_ppm


class PositionView(msgspec.Struct, frozen=True):
    size_lots: int
    cost_atoms: int  # signed entry cost basis: Σ size·price·atl of what is open
    leverage: int
    realized_atoms: int
    funding_atoms: int


def padded_tiers(spec: MarketSpec) -> tuple[list[int], list[int]]:
    """The tier table padded to MAX_TIERS rows: lower bound INT64_MAX (never reached) and the
    last tier's leverage, which leaves every margin figure unchanged."""
    lower = [int(x) for x in spec.tier_lower_atoms]
    lev = [int(x) for x in spec.tier_max_lev]
    pad = MAX_TIERS - len(lower)
    return lower + [INT64_MAX] * pad, lev + [lev[-1]] * pad


def set_risk_fields(rec: np.void, spec: MarketSpec) -> None:
    rec["max_price"] = spec.max_price_ticks
    rec["max_pos"] = spec.max_position_lots
    rec["maker_ppm"] = spec.maker_fee_ppm
    rec["taker_ppm"] = spec.taker_fee_ppm
    lower, lev = padded_tiers(spec)
    rec["tier_lo"][:] = lower
    rec["tier_lev"][:] = lev
    rec["imp_ntl"] = to_atoms(spec.impact_notional)
    rec["fund_ppm"] = to_ppm(spec.funding_multiplier)
    rec["liq_partial"] = to_atoms(spec.partial_liq_notional)
    rec["liq_fee_ppm"] = to_ppm(spec.liq_fee)


@njit(cache=True)
def dump_risk(mkt, ctr, acc, pos):
    """Counters, per-market price and funding state, then every account with collateral or
    positions: (account, collateral, then per non-empty position market, size, cost, lev,
    bid lots/notional, ask lots/notional, realized, funding). Empty when risk is off, except
    the markets' price state."""
    nm = mkt.shape[0]
    out = np.empty(8 + nm * 12 + acc.shape[0] * (3 + nm * 11), dtype=np.int64)
    k = 0
    out[0] = ctr[C_RISK]
    out[1] = ctr[C_DEPOSITS]
    out[2] = ctr[C_WITHDRAWALS]
    out[3] = ctr[C_FEES]
    k = 4
    for m in range(nm):
        r = mkt[m]
        out[k] = r["oracle"]
        out[k + 1] = r["last_trade"]
        out[k + 2] = r["ema_fp"]
        out[k + 3] = r["ema_weight"]
        out[k + 4] = r["ema_ts"]
        out[k + 5] = r["prem_sum"]
        out[k + 6] = r["prem_n"]
        out[k + 7] = r["next_sample"]
        out[k + 8] = r["next_funding"]
        out[k + 9] = r["rate_ppb"]
        out[k + 10] = r["oi"]
        k += 11
    if ctr[C_RISK] == 0:
        return out[:k]
    for a in range(acc.shape[0]):
        if acc[a]["collateral"] == 0 and acc[a]["npos"] == 0:
            empty = True
            for m in range(nm):
                p = pos[a, m]
                if (p["bid_lots"] != 0 or p["ask_lots"] != 0 or p["realized"] != 0 or p["funding"] != 0
                        or p["lev"] != mkt[m]["tier_lev"][0] or p["liq_ts"] != 0):
                    empty = False
            if empty:
                continue
        out[k] = a
        out[k + 1] = acc[a]["collateral"]
        k += 2
        for m in range(nm):
            p = pos[a, m]
            if (p["size"] == 0 and p["bid_lots"] == 0 and p["ask_lots"] == 0 and p["realized"] == 0
                    and p["funding"] == 0 and p["lev"] == mkt[m]["tier_lev"][0] and p["liq_ts"] == 0):
                continue
            out[k] = m
            out[k + 1] = p["size"]
            out[k + 2] = p["cost"]
            out[k + 3] = p["lev"]
            out[k + 4] = p["bid_lots"]
            out[k + 5] = p["bid_ntl"]
            out[k + 6] = p["ask_lots"]
            out[k + 7] = p["ask_ntl"]
            out[k + 8] = p["realized"]
            out[k + 9] = p["funding"]
            out[k + 10] = p["liq_ts"]
            k += 11
        out[k] = -1
        k += 1
    return out[:k]
