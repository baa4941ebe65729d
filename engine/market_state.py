"""Commands that move a market's reference points: SetMark (band, window re-centre) and
Tick (good-till-time expiry).

Re-centring costs O(L) for the market's ladder and is rare: it happens only when the band
leaves the window, i.e. when the mark has drifted about a quarter of the ladder.
"""

from __future__ import annotations

from numba import njit

from engine.book import (
    C_HEAP_N,
    C_RISK,
    find_down,
    find_up,
    next_level,
    rebuild_occupancy,
)
from engine.certificates import note_mark
from engine.codes import MAX_MARK_TICKS
from engine.emit import emit, emit_reject
from engine.kernel_consts import (
    CR_WINDOW,
    E_CANCELLED,
    E_EXPIRED,
    E_LEVEL,
    R_MARK_INVALID,
    R_UNKNOWN_MARKET,
)
from engine.limits import band
from engine.matching import cancel_resting

# Kernels take the engine's arrays positionally, always in this order:
# orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
# acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos.


@njit(cache=True, _nrt=False)
def recentre(ev, n, cmd, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
             acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, m, new_base):
    """Move market ``m``'s window to start at ``new_base``: cancel what falls outside (bids
    from the top down, then asks from the bottom up), then shift the surviving levels."""
    levels = mkt[m]["levels"]
    base = mkt[m]["base"]
    for side in range(2):
        idx = find_down(mkt, bits, summ, m, side, levels - 1) if side == 0 else find_up(mkt, bits, summ, m, side, 0)
        while idx >= 0:
            price = base + idx
            if price < new_base or price >= new_base + levels:
                li = mkt[m]["lvl_off"] + side * levels + idx
                s = lvl_head[li]
                while s != -1:
                    nxt = orders[s]["next"]
                    n = cancel_resting(ev, n, cmd, ts, E_CANCELLED, CR_WINDOW, orders, mkt, lvl_qty, lvl_head,
                                       lvl_tail, bits, summ, best, count, acct_head, acct_tail, acct_count,
                                       free, heap, ctr, acc, pos, s, False)
                    s = nxt
                n = emit(ev, n, E_LEVEL, cmd, ts, m, 0, 0, side, price, 0, 0, 0, 0)
            idx = next_level(mkt, bits, summ, m, side, idx)
    # Shift the survivors: level idx moves to idx - delta, walking in the direction in
    # which a destination has always been vacated already.
    delta = new_base - base
    for side in range(2):
        off = mkt[m]["lvl_off"] + side * levels
        if delta > 0:
            start, stop, step = delta, levels, 1
        else:
            start, stop, step = levels - 1 + delta, -1, -1
        for idx in range(start, stop, step):
            if lvl_head[off + idx] != -1:
                j = off + idx - delta
                lvl_qty[j] = lvl_qty[off + idx]
                lvl_head[j] = lvl_head[off + idx]
                lvl_tail[j] = lvl_tail[off + idx]
                lvl_qty[off + idx] = 0
                lvl_head[off + idx] = -1
                lvl_tail[off + idx] = -1
    mkt[m]["base"] = new_base
    for side in range(2):
        rebuild_occupancy(mkt, lvl_head, bits, summ, best, m, side)
    return n


@njit(cache=True, _nrt=False)
def do_set_mark(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos):
    m = c["market"]
    price = c["price"]
    code = 0
    if c["pre_reject"] != 0:
        code = c["pre_reject"]
    elif m < 0 or m >= mkt.shape[0]:
        code = R_UNKNOWN_MARKET
    elif price <= 0 or price > MAX_MARK_TICKS or (ctr[C_RISK] != 0 and price > mkt[m]["max_price"]):
        code = R_MARK_INVALID
    if code != 0:
        return emit_reject(ev, n, i, c["ts"], m, c["account"], c["oid"], code)
    return move_mark(ev, n, i, c["ts"], orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                     acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, m, price)


@njit(cache=True, _nrt=False)
def move_mark(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
              acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, m, price):
    """Set market ``m``'s mark; re-centre the book's window when the band leaves it."""
    levels = mkt[m]["levels"]
    mkt[m]["mark"] = price
    note_mark(mkt, ctr, m)
    new_base = price - levels // 2
    if new_base < 1:
        new_base = 1
    if mkt[m]["base"] == 0:
        mkt[m]["base"] = new_base
        return n
    low, high = band(mkt, m)
    base = mkt[m]["base"]
    if low < base or high >= base + levels:
        n = recentre(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                     acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, m, new_base)
    return n


@njit(cache=True, _nrt=False)
def do_tick(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
            acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos):
    ts = c["ts"]
    if c["pre_reject"] != 0:
        return emit_reject(ev, n, i, ts, c["market"], c["account"], c["oid"], c["pre_reject"])
    while ctr[C_HEAP_N] > 0 and orders[heap[0]]["expires_at"] <= ts:
        n = cancel_resting(ev, n, i, ts, E_EXPIRED, 0, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ,
                           best, count, acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, heap[0], True)
    return n
