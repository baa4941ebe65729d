"""Oracle updates and the mark price (mechanics.md §3, docs/risk.md).

The oracle price is the last ``Oracle`` command's price (with ``EngineConfig.modes``, the
market's mode decides it: engine.modes). The mark is the median of
``oracle``, ``oracle + EMA_150s(mid − oracle)`` and ``median(best bid, best ask, last
trade)``, recomputed on every oracle update and every tick; the EMA takes one sample of
``mid − oracle`` per recomputation, weighted by the time since the previous one
(``engine.pricing``). Without both book sides no sample is taken; without any sample the
EMA term is the oracle itself.
"""

from __future__ import annotations

from numba import njit

from engine.book import C_MODES, C_RISK
from engine.emit import emit, emit_reject
from engine.kernel_consts import (
    ADMIN_HALT,
    ADMIN_LIST,
    ADMIN_RESUME,
    E_MARK,
    MODE_HALTED,
    MODE_PRE_IPO,
    OF_ALL,
    R_BAD_FIELD,
    R_MODES_DISABLED,
    R_ORACLE_INVALID,
    R_ORACLE_NOT_EXTERNAL,
    R_UNKNOWN_MARKET,
)
from engine.liquidator import fund_work_off, liquidation_scan
from engine.market_state import move_mark
from engine.modes import admin, mode_mark, oracle_update, tick_mode
from engine.pricing import (
    MARK_EMA_TAU_NS,
    book_price_ticks,
    ema_ticks,
    ema_update,
    mark_price_ticks,
)
from engine.settlement import (
    FUNDING_PERIOD_NS,
    FUNDING_SAMPLE_NS,
    next_boundary,
    sample_premium,
    settle_funding,
)


@njit(cache=True, _nrt=False, inline="always")
def book_prices(mkt, best, m):
    """(best bid, best ask) in ticks, 0 for an empty side."""
    base = mkt[m]["base"]
    bid = base + best[m, 0] if best[m, 0] >= 0 else 0
    ask = base + best[m, 1] if best[m, 1] >= 0 else 0
    return bid, ask


@njit(cache=True, _nrt=False)
def next_mark(mkt, best, m, ts):
    """Sample the EMA at ``ts`` and return the new mark (clamped to [1, max_price]).

    The sample is ``mid − oracle`` with the mid's half tick rounded toward the oracle; its
    weight is the time since the previous recomputation (``ema_ts``).
    """
    oracle = mkt[m]["oracle"]
    bid, ask = book_prices(mkt, best, m)
    last_ts = mkt[m]["ema_ts"]
    if bid > 0 and ask > 0 and last_ts != 0 and ts > last_ts:
        mid = book_price_ticks(bid, ask, 0, oracle)
        ema, weight = ema_update(mkt[m]["ema_fp"], mkt[m]["ema_weight"], mid - oracle, ts - last_ts, MARK_EMA_TAU_NS)
        mkt[m]["ema_fp"] = ema
        mkt[m]["ema_weight"] = weight
    if ts > last_ts:
        mkt[m]["ema_ts"] = ts
    basis = ema_ticks(mkt[m]["ema_fp"]) if mkt[m]["ema_weight"] > 0 else 0
    mark = mark_price_ticks(oracle, basis, bid, ask, mkt[m]["last_trade"])
    if mark < 1:
        mark = 1
    if mark > mkt[m]["max_price"]:
        mark = mkt[m]["max_price"]
    return mark


@njit(cache=True, _nrt=False)
def oracle_code(c, mkt, ctr):
    """0 if the OracleUpdate ``c`` is valid, else its reject code."""
    m = c["market"]
    price = c["price"]
    flags = c["size"]
    modes = ctr[C_MODES] != 0
    if c["pre_reject"] != 0:
        return c["pre_reject"]
    if m < 0 or m >= mkt.shape[0]:
        return R_UNKNOWN_MARKET
    if flags < 0 or (flags & ~OF_ALL) != 0:
        return R_BAD_FIELD
    if price < 0 or price > mkt[m]["max_price"] or (price == 0 and not modes):
        return R_ORACLE_INVALID
    if flags != 0 and not modes:
        return R_MODES_DISABLED
    if modes and mkt[m]["mode"] == MODE_PRE_IPO:
        return R_ORACLE_NOT_EXTERNAL
    return 0


@njit(cache=True, _nrt=False)
def do_oracle(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
              acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos):
    """An oracle update: with modes on the market's mode decides the oracle price
    (engine.modes); then the mark is recomputed (frozen while HALTED) and one MARK event
    reports both. With risk on, a moved mark runs the liquidation scan over the accounts
    holding a position in the market (engine.liquidator)."""
    m = c["market"]
    ts = c["ts"]
    code = oracle_code(c, mkt, ctr)
    if code != 0:
        return emit_reject(ev, n, i, ts, m, -1, 0, code)
    modes = ctr[C_MODES] != 0
    old_mark = mkt[m]["mark"]
    if modes:
        n = oracle_update(ev, n, i, ts, mkt, m, c["price"], c["size"])
    else:
        mkt[m]["oracle"] = c["price"]
    oracle = mkt[m]["oracle"]
    if oracle != 0 and mkt[m]["mode"] != MODE_HALTED:
        if mkt[m]["next_sample"] == 0:  # the funding clock starts with the first oracle price
            start_funding_clock(mkt, m, ts)
        mark = next_mark(mkt, best, m, ts)
        if modes:
            mark = mode_mark(mkt, m, mark)
        n = move_mark(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                      acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, m, mark)
    n = emit(ev, n, E_MARK, i, ts, m, -1, 0, 0, mkt[m]["mark"], 0, oracle, 0, 0)
    if ctr[C_RISK] != 0 and mkt[m]["mark"] != old_mark:
        n = liquidation_scan(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                             acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, m)
    return n


@njit(cache=True, _nrt=False, inline="always")
def start_funding_clock(mkt, m, ts):
    mkt[m]["next_sample"] = next_boundary(ts, FUNDING_SAMPLE_NS)
    mkt[m]["next_funding"] = next_boundary(ts, FUNDING_PERIOD_NS)


@njit(cache=True, _nrt=False)
def tick_prices(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos):
    """The clock's price work, market by market in id order: with modes on the mode's work
    (engine.modes.tick_mode); the mark (a MARK event when it moved); with risk on the funding
    sample. HALTED markets are skipped. Then the hour's settlement, then the liquidation scan
    and the insurance fund's work-off (engine.liquidator)."""
    risk = ctr[C_RISK] != 0
    modes = ctr[C_MODES] != 0
    for m in range(mkt.shape[0]):
        if modes:
            n = tick_mode(ev, n, i, ts, mkt, lvl_qty, bits, summ, best, m)
            if mkt[m]["next_sample"] == 0 and mkt[m]["mode"] == MODE_PRE_IPO:
                start_funding_clock(mkt, m, ts)
        if mkt[m]["oracle"] == 0 or mkt[m]["mode"] == MODE_HALTED:
            continue
        mark = next_mark(mkt, best, m, ts)
        if modes:
            mark = mode_mark(mkt, m, mark)
        if mark != mkt[m]["mark"]:
            n = move_mark(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                          acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, m, mark)
            n = emit(ev, n, E_MARK, i, ts, m, -1, 0, 0, mark, 0, mkt[m]["oracle"], 0, 0)
        if risk:
            sample_premium(mkt, lvl_qty, bits, summ, best, m, ts)
    if risk:
        n = settle_funding(ev, n, i, ts, mkt, acc, pos)
        n = liquidation_scan(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                             acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, -1)
        n = fund_work_off(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                          acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos)
    return n


@njit(cache=True, _nrt=False)
def do_market_admin(c, i, ev, n, mkt, ctr):
    m = c["market"]
    ts = c["ts"]
    action = c["size"]
    code = 0
    if c["pre_reject"] != 0:
        code = c["pre_reject"]
    elif ctr[C_MODES] == 0:
        code = R_MODES_DISABLED
    elif m < 0 or m >= mkt.shape[0]:
        code = R_UNKNOWN_MARKET
    elif action != ADMIN_HALT and action != ADMIN_RESUME and action != ADMIN_LIST:
        code = R_BAD_FIELD
    else:
        n, code = admin(ev, n, i, ts, mkt, m, action)
    if code != 0:
        return emit_reject(ev, n, i, ts, m, -1, 0, code)
    return n
