"""Trigger orders: stop and take-profit, market or limit, on the mark or the last trade, and
position TP/SL (docs/triggers.md, mechanics.md §1).

Layout: ``trig`` (``TRIGGER_DTYPE``) is a fixed table of ``EngineConfig.max_triggers`` slots; a
new trigger takes the lowest free slot, ids (``tid``) count up from 1 (``ctr[C_TRIG_SEQ]``),
``ctr[C_NTRIG]`` counts the live ones. Record fields of the commands: ``PLACE_TRIGGER`` uses
``oid`` = trigger price (ticks), ``price`` = limit (0 for a market order), ``size`` = lots
(0 = the whole position at trigger time), ``tif`` = ``Tif.MARKET`` or ``Tif.GTC``, ``stp`` =
bit 0 take-profit, bit 1 on the last trade; ``CANCEL_TRIGGER`` uses ``oid`` = trigger id.

After every command (``run_triggers``, called by the kernel loop while any trigger is
live), in ascending trigger id, one at a time until none applies:

* a position TP/SL whose position is closed (or on the order's own side) is cancelled
  (TRIGGER event, POSITION_CLOSED);
* a trigger whose price is reached fires: a TRIGGER event (FIRED, with the lots it places),
  then the order enters exactly as a ``Place`` of its owner would (every check, matching,
  margin), with a new time priority. Reached means, with ``ref`` the market's mark (or last
  trade; none before the first trade): stop buy ``ref ≥ trigger``, stop sell
  ``ref ≤ trigger``, take-profit buy ``ref ≤ trigger``, take-profit sell ``ref ≥ trigger``.

An order a trigger placed can move the last price and fire more triggers: the loop runs until
nothing applies, and ends because each pass retires a trigger. Cost: O(live triggers) per
command while any is live, nothing otherwise.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.book import C_NTRIG, C_RISK, C_RO_DUE, C_TRIG_SEQ
from engine.codes import MAX_MARK_TICKS
from engine.emit import emit, emit_reject
from engine.kernel_consts import (
    E_TRIGGER,
    K_PLACE,
    R_BAD_FIELD,
    R_MARKET_WITH_PRICE,
    R_NOT_OWNER,
    R_PRICE_NOT_POSITIVE,
    R_RISK_DISABLED,
    R_SIZE_ABOVE_MAX,
    R_SIZE_NOT_POSITIVE,
    R_TRIGGER_FULL,
    R_TRIGGER_POSITION,
    R_TRIGGER_PRICE,
    R_UNKNOWN_ACCOUNT,
    R_UNKNOWN_MARKET,
    R_UNKNOWN_TRIGGER,
    TIF_GTC,
    TIF_MARKET,
    TS_CANCELLED,
    TS_FIRED,
    TS_PLACED,
    TS_POSITION_CLOSED,
)
from engine.matching import do_place
from engine.reduce_only import cancel_stale_reduce_only

TRIGGER_DTYPE = np.dtype(
    [
        ("tid", np.int64),
        ("trigger", np.int64),  # ticks
        ("price", np.int64),  # the limit (ticks); 0 for a market order
        ("size", np.int64),  # lots; 0: the whole position at trigger time
        ("account", np.int32),
        ("market", np.int32),
        ("side", np.uint8),
        ("tif", np.uint8),  # Tif.MARKET or Tif.GTC
        ("flags", np.uint8),  # bit 0 take-profit, bit 1 on the last trade
        ("live", np.uint8),
    ],
    align=True,
)
TAKE_PROFIT = 1
ON_LAST = 2


@njit(cache=True, _nrt=False, inline="always")
def emit_trigger(ev, n, i, ts, trig, k, step, size):
    t = trig[k]
    return emit(ev, n, E_TRIGGER, i, ts, t["market"], t["account"], t["tid"], t["side"], t["trigger"], size, 0, 0,
                step)


@njit(cache=True, _nrt=False)
def place_trigger_code(c, mkt, acct_head, ctr, pos, trig):
    """0 or the reject code of a PLACE_TRIGGER record, checks in the order of docs/triggers.md."""
    m = c["market"]
    a = c["account"]
    if c["pre_reject"] != 0:
        return c["pre_reject"]
    if m < 0 or m >= mkt.shape[0]:
        return R_UNKNOWN_MARKET
    if a < 0 or a >= acct_head.shape[0]:
        return R_UNKNOWN_ACCOUNT
    if c["side"] > 1 or (c["tif"] != TIF_MARKET and c["tif"] != TIF_GTC) or c["stp"] > 3:
        return R_BAD_FIELD
    if c["oid"] <= 0 or c["oid"] > MAX_MARK_TICKS:
        return R_TRIGGER_PRICE
    if c["tif"] == TIF_GTC and c["price"] <= 0:
        return R_PRICE_NOT_POSITIVE
    if c["tif"] == TIF_MARKET and c["price"] != 0:
        return R_MARKET_WITH_PRICE
    if c["size"] < 0:
        return R_SIZE_NOT_POSITIVE
    if c["size"] > mkt[m]["max_order_lots"]:
        return R_SIZE_ABOVE_MAX
    if c["size"] == 0:
        if ctr[C_RISK] == 0:
            return R_RISK_DISABLED
        if not closes(pos[a, m]["size"], c["side"]):
            return R_TRIGGER_POSITION
    if ctr[C_NTRIG] >= trig.shape[0]:
        return R_TRIGGER_FULL
    return 0


@njit(cache=True, _nrt=False, inline="always")
def closes(size, side):
    """An order on ``side`` would reduce a position of ``size`` lots."""
    return size < 0 if side == 0 else size > 0


@njit(cache=True, _nrt=False)
def do_place_trigger(c, i, ev, n, mkt, acct_head, ctr, pos, trig):
    code = place_trigger_code(c, mkt, acct_head, ctr, pos, trig)
    if code != 0:
        return emit_reject(ev, n, i, c["ts"], c["market"], c["account"], 0, code)
    k = 0
    while trig[k]["live"] != 0:
        k += 1
    ctr[C_TRIG_SEQ] += 1
    ctr[C_NTRIG] += 1
    t = trig[k]
    t["tid"] = ctr[C_TRIG_SEQ]
    t["trigger"] = c["oid"]
    t["price"] = c["price"]
    t["size"] = c["size"]
    t["account"] = c["account"]
    t["market"] = c["market"]
    t["side"] = c["side"]
    t["tif"] = c["tif"]
    t["flags"] = c["stp"]
    t["live"] = 1
    return emit_trigger(ev, n, i, c["ts"], trig, k, TS_PLACED, c["size"])


@njit(cache=True, _nrt=False)
def do_cancel_trigger(c, i, ev, n, mkt, acct_head, ctr, trig):
    m = c["market"]
    a = c["account"]
    code = 0
    k = -1
    if c["pre_reject"] != 0:
        code = c["pre_reject"]
    elif m < 0 or m >= mkt.shape[0]:
        code = R_UNKNOWN_MARKET
    elif a < 0 or a >= acct_head.shape[0]:
        code = R_UNKNOWN_ACCOUNT
    else:
        for j in range(trig.shape[0]):
            if trig[j]["live"] != 0 and trig[j]["tid"] == c["oid"] and trig[j]["market"] == m:
                k = j
        if k < 0:
            code = R_UNKNOWN_TRIGGER
        elif trig[k]["account"] != a:
            code = R_NOT_OWNER
    if code != 0:
        return emit_reject(ev, n, i, c["ts"], m, a, c["oid"], code)
    trig[k]["live"] = 0
    ctr[C_NTRIG] -= 1
    return emit_trigger(ev, n, i, c["ts"], trig, k, TS_CANCELLED, trig[k]["size"])


@njit(cache=True, _nrt=False, inline="always")
def reached(mkt, t):
    m = t["market"]
    ref = mkt[m]["last_trade"] if (t["flags"] & ON_LAST) != 0 else mkt[m]["mark"]
    if ref <= 0:
        return False
    above = ref >= t["trigger"]
    below = ref <= t["trigger"]
    if (t["flags"] & TAKE_PROFIT) == 0:
        return above if t["side"] == 0 else below
    return below if t["side"] == 0 else above


@njit(cache=True, _nrt=False)
def next_trigger(mkt, pos, trig):
    """(slot, fire) of the live trigger with the lowest id that must act now, or (−1, False)."""
    best = -1
    fire = False
    for k in range(trig.shape[0]):
        t = trig[k]
        if t["live"] == 0 or (best >= 0 and t["tid"] > trig[best]["tid"]):
            continue
        if t["size"] == 0 and not closes(pos[t["account"], t["market"]]["size"], t["side"]):
            best = k
            fire = False
        elif reached(mkt, t):
            best = k
            fire = True
    return best, fire


@njit(cache=True, _nrt=False)
def run_triggers(i, ts, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                 acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, trig, scratch):
    """Cancel closed position TP/SLs and fire reached triggers, lowest id first, until none acts."""
    while ctr[C_NTRIG] > 0:
        k, fire = next_trigger(mkt, pos, trig)
        if k < 0:
            break
        t = trig[k]
        t["live"] = 0
        ctr[C_NTRIG] -= 1
        if not fire:
            n = emit_trigger(ev, n, i, ts, trig, k, TS_POSITION_CLOSED, t["size"])
            continue
        lots = t["size"]
        if lots == 0:
            size = pos[t["account"], t["market"]]["size"]
            lots = size if size > 0 else -size
        n = emit_trigger(ev, n, i, ts, trig, k, TS_FIRED, lots)
        c = scratch[0]
        c["kind"] = K_PLACE
        c["side"] = t["side"]
        c["tif"] = t["tif"]
        c["stp"] = 0
        c["pre_reject"] = 0
        c["market"] = t["market"]
        c["account"] = t["account"]
        c["price"] = t["price"]
        c["size"] = lots
        c["oid"] = 0
        c["ts"] = ts
        c["expires_at"] = 0
        c["cloid0"] = 0
        c["cloid1"] = 0
        c["cloid2"] = 0
        c["cloid3"] = 0
        c["flags"] = 0
        n = do_place(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                     acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos)
        if ctr[C_RO_DUE] != 0:  # as after a Place command (engine.kernel)
            n = cancel_stale_reduce_only(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best,
                                         count, acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos)
    return n


@njit(cache=True)
def dump_triggers(trig, ctr):
    """State-hash words: the id counter, then each live trigger in ascending id (tid, account,
    market, side, tif, flags, trigger, price, size)."""
    live = np.flatnonzero(trig["live"] != 0)
    order = np.argsort(trig["tid"][live])
    out = np.empty(1 + 9 * len(live), dtype=np.int64)
    out[0] = ctr[C_TRIG_SEQ]
    k = 1
    for j in order:
        t = trig[live[j]]
        out[k] = t["tid"]
        out[k + 1] = t["account"]
        out[k + 2] = t["market"]
        out[k + 3] = t["side"]
        out[k + 4] = t["tif"]
        out[k + 5] = t["flags"]
        out[k + 6] = t["trigger"]
        out[k + 7] = t["price"]
        out[k + 8] = t["size"]
        k += 9
    return out
