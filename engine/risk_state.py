"""The risk state's fixed parts shared by both engines: market risk fields from a spec, the
position view, and the canonical integers ``state_hash`` appends for the risk state
(docs/risk.md, "State hash")."""

from __future__ import annotations

import msgspec
import numpy as np
from numba import njit

from engine.book import C_DEPOSITS, C_DMS, C_FEES, C_ISO, C_MODES, C_RISK, C_WITHDRAWALS
from engine.codes import MarketMode
from engine.margin import MAX_TIERS
from engine.pricing import band_ticks
from engine.spec import EngineConfig, MarketSpec
from engine.units import INT64_MAX, to_atoms, to_ppm


class PositionView(msgspec.Struct, frozen=True):
    size_lots: int
    cost_atoms: int  # signed entry cost basis: Σ size·price·atl of what is open
    leverage: int
    realized_atoms: int
    funding_atoms: int
    isolated: bool = False  # MarginMode.ISOLATED
    margin_atoms: int = 0  # an isolated position's own margin bucket


class TriggerView(msgspec.Struct, frozen=True):
    """A live trigger (docs/triggers.md): prices in ticks, ``size_lots`` 0 for the whole position,
    ``tif`` ``Tif.MARKET`` or ``Tif.GTC``, ``flags`` bit 0 take-profit, bit 1 on the last trade."""

    tid: int
    market: int
    side: int
    trigger_ticks: int
    price_ticks: int
    size_lots: int
    tif: int
    flags: int


class ModeView(msgspec.Struct, frozen=True):
    """A market's closed-hours pricing state (docs/modes.md); prices in ticks."""

    mode: MarketMode
    oracle: int
    mark: int
    external: int  # the last external price, 0 if none yet
    ref: int  # the discovery band's reference (dark or pre-IPO)
    band_low: int
    band_high: int


def initial_mode(spec: MarketSpec, config: EngineConfig) -> dict[str, int]:
    """Mode fields a market starts with: a pre-IPO market (with modes on) starts in PRE_IPO
    with its oracle and mark at the reference, inside the band around it; others start
    EXTERNAL with nothing set."""
    ref = spec.pre_ipo_reference_ticks
    if not config.modes or ref == 0:
        return {}
    low, high = band_ticks(ref, spec.dark_band_ppb)
    return {"mode": int(MarketMode.PRE_IPO), "oracle": ref, "mark": ref, "ref": ref,
            "band_lo": int(low), "band_hi": int(high), "base": max(1, ref - spec.ladder_levels // 2)}


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
    rec["oi_cap"] = spec.oi_cap_atoms
    rec["disc_ppb"] = spec.dark_band_ppb
    rec["dark_lev"] = spec.dark_max_leverage
    rec["fund_dark"] = int(spec.funding_dark)
    rec["pipo_ref"] = spec.pre_ipo_reference_ticks


# with modes on, each market's mode state follows its price state, in this order
MODE_WORDS = ("mode", "ext", "ext_ts", "fresh_ts", "ref", "band_lo", "band_hi", "res_up", "res_dn", "int_ts",
              "halt", "clean", "pipo_ref", "pipo_fp", "pipo_w", "pipo_ts", "next_min")


@njit(cache=True)
def dump_risk(mkt, ctr, acc, pos):
    """Counters, per-market price and funding state, then every account with collateral or
    positions: (account, collateral, then per non-empty position market, size, cost, lev,
    bid lots/notional, ask lots/notional, realized, funding, last liquidation time; -1); then,
    only when some account has a dead-man deadline, their number and (account, deadline) for
    each in ascending account; then, only when some position is isolated, their number and
    (account, market, margin) for each, ascending. Empty when risk is off, except the markets'
    price state."""
    nm = mkt.shape[0]
    out = np.empty(10 + nm * (12 + len(MODE_WORDS)) + acc.shape[0] * (5 + nm * 14), dtype=np.int64)
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
        if ctr[C_MODES] != 0:
            out[k + 0] = r["mode"]
            out[k + 1] = r["ext"]
            out[k + 2] = r["ext_ts"]
            out[k + 3] = r["fresh_ts"]
            out[k + 4] = r["ref"]
            out[k + 5] = r["band_lo"]
            out[k + 6] = r["band_hi"]
            out[k + 7] = r["res_up"]
            out[k + 8] = r["res_dn"]
            out[k + 9] = r["int_ts"]
            out[k + 10] = r["halt"]
            out[k + 11] = r["clean"]
            out[k + 12] = r["pipo_ref"]
            out[k + 13] = r["pipo_fp"]
            out[k + 14] = r["pipo_w"]
            out[k + 15] = r["pipo_ts"]
            out[k + 16] = r["next_min"]
            k += len(MODE_WORDS)  # the fields of MODE_WORDS, in order
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
    if ctr[C_DMS] != 0:
        out[k] = ctr[C_DMS]
        k += 1
        for a in range(acc.shape[0]):
            if acc[a]["dms_at"] != 0:
                out[k] = a
                out[k + 1] = acc[a]["dms_at"]
                k += 2
    if ctr[C_ISO] != 0:
        out[k] = ctr[C_ISO]
        k += 1
        for a in range(acc.shape[0]):
            for m in range(nm):
                if pos[a, m]["iso"] != 0:
                    out[k] = a
                    out[k + 1] = m
                    out[k + 2] = pos[a, m]["margin"]
                    k += 3
    return out[:k]
