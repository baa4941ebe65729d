"""The matching loop: one compiled pass over a batch of command records.

``apply_kernel`` processes records ``start..n`` in order and writes events into a
preallocated buffer. Before each command it computes an upper bound on the events that
command can emit; if the buffer cannot hold them it stops and returns, and the caller
grows the buffer and calls again from where it stopped. Nothing is allocated per command.

The rules (checks in order, events in order) are those of docs/matching.md; the reference
engine (engine/reference.py) implements the same rules slowly and obviously.

Rounding: the band half-width and the market-order slippage are floored, so neither ever
widens by rounding.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.book import (
    C_BATCH_LEFT,
    C_HEAP_N,
    C_LIVE,
    C_ORDER_SEQ,
    C_PRIO_SEQ,
    SLOT_BITS,
    SLOT_MASK,
    acct_link,
    acct_unlink,
    find_cloid,
    find_down,
    find_up,
    heap_push,
    heap_remove,
    level_link,
    level_unlink,
    next_level,
    rebuild_occupancy,
    slot_alloc,
    slot_release,
)
from engine.codes import (
    MAX_BATCH_ACTIONS,
    MAX_MARK_TICKS,
    CancelReason,
    CommandKind,
    EventKind,
    Reject,
    Stp,
    Tif,
)

INT64_MAX = (1 << 63) - 1
PPM = 1_000_000

K_PLACE = int(CommandKind.PLACE)
K_CANCEL = int(CommandKind.CANCEL)
K_CANCEL_ALL = int(CommandKind.CANCEL_ALL)
K_AMEND = int(CommandKind.AMEND)
K_BATCH = int(CommandKind.BATCH)
K_SET_MARK = int(CommandKind.SET_MARK)
K_TICK = int(CommandKind.TICK)

E_ACCEPTED = int(EventKind.ACCEPTED)
E_REJECTED = int(EventKind.REJECTED)
E_FILL = int(EventKind.FILL)
E_CANCELLED = int(EventKind.CANCELLED)
E_EXPIRED = int(EventKind.EXPIRED)
E_AMENDED = int(EventKind.AMENDED)
E_LEVEL = int(EventKind.LEVEL)

TIF_GTC = int(Tif.GTC)
TIF_IOC = int(Tif.IOC)
TIF_FOK = int(Tif.FOK)
TIF_ALO = int(Tif.ALO)
TIF_MARKET = int(Tif.MARKET)

STP_MAKER = int(Stp.EXPIRE_MAKER)
STP_TAKER = int(Stp.EXPIRE_TAKER)
STP_BOTH = int(Stp.EXPIRE_BOTH)

CR_USER = int(CancelReason.USER)
CR_IOC = int(CancelReason.IOC_REMAINDER)
CR_STP_MAKER = int(CancelReason.STP_MAKER)
CR_STP_TAKER = int(CancelReason.STP_TAKER)
CR_CANCEL_ALL = int(CancelReason.CANCEL_ALL)
CR_WINDOW = int(CancelReason.OUT_OF_WINDOW)

R_SIZE_NOT_POSITIVE = int(Reject.SIZE_NOT_POSITIVE)
R_SIZE_ABOVE_MAX = int(Reject.SIZE_ABOVE_MAX)
R_NOTIONAL_BELOW_MIN = int(Reject.NOTIONAL_BELOW_MIN)
R_PRICE_NOT_POSITIVE = int(Reject.PRICE_NOT_POSITIVE)
R_PRICE_OUTSIDE_BAND = int(Reject.PRICE_OUTSIDE_BAND)
R_VALUE_OVERFLOW = int(Reject.VALUE_OVERFLOW)
R_UNKNOWN_MARKET = int(Reject.UNKNOWN_MARKET)
R_UNKNOWN_ACCOUNT = int(Reject.UNKNOWN_ACCOUNT)
R_BAD_FIELD = int(Reject.BAD_FIELD)
R_EXPIRY_IN_PAST = int(Reject.EXPIRY_IN_PAST)
R_DUPLICATE_CLOID = int(Reject.DUPLICATE_CLOID)
R_BATCH_TOO_LARGE = int(Reject.BATCH_TOO_LARGE)
R_BATCH_NESTED = int(Reject.BATCH_NESTED)
R_MARK_INVALID = int(Reject.MARK_INVALID)
R_FOK_NOT_FILLABLE = int(Reject.FOK_NOT_FILLABLE)
R_POST_ONLY = int(Reject.POST_ONLY_WOULD_CROSS)
R_UNKNOWN_ORDER = int(Reject.UNKNOWN_ORDER)
R_NOT_OWNER = int(Reject.NOT_ORDER_OWNER)
R_AMEND_NO_CHANGE = int(Reject.AMEND_NO_CHANGE)
R_BOOK_FULL = int(Reject.BOOK_FULL)
R_NO_MARK = int(Reject.NO_MARK)
R_ORDER_ID_MISSING = int(Reject.ORDER_ID_MISSING)


# Kernels take the engine's arrays positionally, always in this order:
# orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
# acct_head, acct_tail, acct_count, free, heap, ctr.


# ---------------------------------------------------------------------------- events


@njit(cache=True, _nrt=False, inline="always")
def emit(ev, n, kind, cmd, ts, market, account, oid, side, price, size, remaining, code, reason):
    e = ev[n]
    e["kind"] = kind
    e["side"] = side
    e["reason"] = reason
    e["code"] = code
    e["cmd"] = cmd
    e["market"] = market
    e["account"] = account
    e["maker_account"] = 0
    e["oid"] = oid
    e["maker_oid"] = 0
    e["price"] = price
    e["size"] = size
    e["remaining"] = remaining
    e["ts"] = ts
    return n + 1


@njit(cache=True, _nrt=False, inline="always")
def emit_order(ev, n, kind, cmd, ts, orders, slot, size, reason):
    """An event about one order (cancelled, expired, amended) read from its slot."""
    o = orders[slot]
    return emit(ev, n, kind, cmd, ts, o["market"], o["account"], o["oid"], o["side"], o["price"], size, 0, 0, reason)


@njit(cache=True, _nrt=False, inline="always")
def emit_reject(ev, n, cmd, ts, market, account, oid, code):
    return emit(ev, n, E_REJECTED, cmd, ts, market, account, oid, 0, 0, 0, 0, code, 0)


@njit(cache=True, _nrt=False, inline="always")
def emit_level(ev, n, cmd, ts, mkt, lvl_qty, m, side, idx):
    li = mkt[m]["lvl_off"] + side * mkt[m]["levels"] + idx
    return emit(ev, n, E_LEVEL, cmd, ts, m, 0, 0, side, mkt[m]["base"] + idx, lvl_qty[li], 0, 0, 0)


# ---------------------------------------------------------------------------- removal


@njit(cache=True, _nrt=False, inline="always")
def remove_resting(orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                   acct_head, acct_tail, acct_count, free, heap, ctr, slot):
    """A resting order leaves the book for good: level, account list, heap, slot."""
    level_unlink(orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count, slot)
    acct_unlink(orders, acct_head, acct_tail, acct_count, slot)
    if orders[slot]["heap_pos"] >= 0:
        heap_remove(orders, heap, ctr, slot)
    slot_release(orders, free, ctr, slot)


@njit(cache=True, _nrt=False, inline="always")
def cancel_resting(ev, n, cmd, ts, kind, reason, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ,
                   best, count, acct_head, acct_tail, acct_count, free, heap, ctr, slot, with_level):
    """Event (CANCELLED or EXPIRED), removal, then the level's new total if asked."""
    m = orders[slot]["market"]
    side = orders[slot]["side"]
    idx = orders[slot]["price"] - mkt[m]["base"]
    n = emit_order(ev, n, kind, cmd, ts, orders, slot, orders[slot]["remaining"], reason)
    remove_resting(orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                   acct_head, acct_tail, acct_count, free, heap, ctr, slot)
    if with_level:
        n = emit_level(ev, n, cmd, ts, mkt, lvl_qty, m, side, idx)
    return n


# ---------------------------------------------------------------------------- prices


@njit(cache=True, _nrt=False, inline="always")
def band(mkt, m):
    """(low, high) ticks of the price band; the half-width is floored and capped at L/4."""
    mark = mkt[m]["mark"]
    hw = mark * mkt[m]["band_ppm"] // PPM
    cap = mkt[m]["levels"] // 4
    if hw > cap:
        hw = cap
    low = mark - hw
    if low < 1:
        low = 1
    return low, mark + hw


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


@njit(cache=True, _nrt=False)
def fok_fillable(orders, mkt, lvl_head, bits, summ, best, m, side, price, size, account, stp):
    opp = 1 - side
    base = mkt[m]["base"]
    off = mkt[m]["lvl_off"] + opp * mkt[m]["levels"]
    total = 0
    idx = best[m, opp]
    while idx >= 0:
        lp = base + idx
        if (side == 0 and lp > price) or (side == 1 and lp < price):
            break
        s = lvl_head[off + idx]
        while s != -1:
            if orders[s]["account"] == account:
                if stp != STP_MAKER:
                    return total >= size
            else:
                total += orders[s]["remaining"]
                if total >= size:
                    return True
            s = orders[s]["next"]
        idx = next_level(mkt, bits, summ, m, opp, idx)
    return total >= size


# ---------------------------------------------------------------------------- matching


@njit(cache=True, _nrt=False, inline="always")
def match(ev, n, cmd, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
          acct_head, acct_tail, acct_count, free, heap, ctr, taker):
    """Match the taker in ``taker`` against the opposite side. Returns (n, stopped_by_stp);
    the taker's ``remaining`` is updated in place."""
    m = orders[taker]["market"]
    side = orders[taker]["side"]
    price = orders[taker]["price"]
    account = orders[taker]["account"]
    stp = orders[taker]["stp"]
    taker_oid = orders[taker]["oid"]
    opp = 1 - side
    base = mkt[m]["base"]
    off = mkt[m]["lvl_off"] + opp * mkt[m]["levels"]
    rem = orders[taker]["remaining"]
    stopped = False
    while rem > 0:
        idx = best[m, opp]
        if idx < 0:
            break
        lp = base + idx
        if (side == 0 and lp > price) or (side == 1 and lp < price):
            break
        li = off + idx
        touched = False
        s = lvl_head[li]
        while s != -1 and rem > 0:
            nxt = orders[s]["next"]
            if orders[s]["account"] == account:
                if stp == STP_TAKER:
                    stopped = True
                    break
                n = cancel_resting(ev, n, cmd, ts, E_CANCELLED, CR_STP_MAKER, orders, mkt, lvl_qty, lvl_head,
                                   lvl_tail, bits, summ, best, count, acct_head, acct_tail, acct_count,
                                   free, heap, ctr, s, False)
                touched = True
                if stp == STP_BOTH:
                    stopped = True
                    break
                s = nxt
                continue
            mrem = orders[s]["remaining"]
            q = rem if rem < mrem else mrem
            e = ev[n]
            e["kind"] = E_FILL
            e["side"] = side
            e["reason"] = 0
            e["code"] = 0
            e["cmd"] = cmd
            e["market"] = m
            e["account"] = account
            e["maker_account"] = orders[s]["account"]
            e["oid"] = taker_oid
            e["maker_oid"] = orders[s]["oid"]
            e["price"] = lp
            e["size"] = q
            e["remaining"] = mrem - q
            e["ts"] = ts
            n += 1
            orders[s]["remaining"] = mrem - q
            lvl_qty[li] -= q
            rem -= q
            touched = True
            if mrem == q:
                remove_resting(orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                               acct_head, acct_tail, acct_count, free, heap, ctr, s)
            s = nxt
        if touched:
            n = emit_level(ev, n, cmd, ts, mkt, lvl_qty, m, opp, idx)
        if stopped:
            break
    orders[taker]["remaining"] = rem
    return n, stopped


@njit(cache=True, _nrt=False, inline="always")
def finish_taker(ev, n, cmd, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                 acct_head, acct_tail, acct_count, free, heap, ctr, taker, stopped, in_account):
    """After matching: cancel, rest or retire the taker. ``in_account``: an amended order is
    already in its account list and maybe in the heap."""
    rem = orders[taker]["remaining"]
    tif = orders[taker]["tif"]
    rests = rem > 0 and not stopped and (tif == TIF_GTC or tif == TIF_ALO)
    if rests:
        ctr[C_PRIO_SEQ] += 1
        orders[taker]["prio"] = ctr[C_PRIO_SEQ]
        level_link(orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count, taker)
        if not in_account:
            acct_link(orders, acct_head, acct_tail, acct_count, taker)
            if orders[taker]["expires_at"] != 0:
                heap_push(orders, heap, ctr, taker)
        m = orders[taker]["market"]
        return emit_level(ev, n, cmd, ts, mkt, lvl_qty, m, orders[taker]["side"], orders[taker]["price"] - mkt[m]["base"])
    if rem > 0:
        reason = CR_STP_TAKER if stopped else CR_IOC
        n = emit_order(ev, n, E_CANCELLED, cmd, ts, orders, taker, rem, reason)
    if in_account:
        acct_unlink(orders, acct_head, acct_tail, acct_count, taker)
        if orders[taker]["heap_pos"] >= 0:
            heap_remove(orders, heap, ctr, taker)
    slot_release(orders, free, ctr, taker)
    return n


# ---------------------------------------------------------------------------- commands


@njit(cache=True, _nrt=False, inline="always")
def do_place(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
             acct_head, acct_tail, acct_count, free, heap, ctr):
    ts = c["ts"]
    m = c["market"]
    a = c["account"]
    side = np.int64(c["side"])
    tif = np.int64(c["tif"])
    stp = np.int64(c["stp"])
    size = c["size"]
    code = 0
    if c["pre_reject"] != 0:
        code = c["pre_reject"]
    elif m < 0 or m >= mkt.shape[0]:
        code = R_UNKNOWN_MARKET
    elif a < 0 or a >= acct_head.shape[0]:
        code = R_UNKNOWN_ACCOUNT
    elif side > 1 or tif > TIF_MARKET or stp > STP_BOTH:
        code = R_BAD_FIELD
    elif mkt[m]["mark"] == 0:
        code = R_NO_MARK
    elif size <= 0:
        code = R_SIZE_NOT_POSITIVE
    elif size > mkt[m]["max_order_lots"]:
        code = R_SIZE_ABOVE_MAX
    if code != 0:
        return emit_reject(ev, n, i, ts, m, a, 0, code)
    price = c["price"]
    if tif == TIF_MARKET:
        price = protection_price(mkt, m, side)
    elif price <= 0:
        code = R_PRICE_NOT_POSITIVE
    else:
        low, high = band(mkt, m)
        if price < low or price > high:
            code = R_PRICE_OUTSIDE_BAND
    if code == 0:
        code = notional_check(mkt, m, price, size)
    expires = c["expires_at"]
    if tif != TIF_GTC and tif != TIF_ALO:
        expires = 0
    if code == 0 and expires != 0 and expires <= ts:
        code = R_EXPIRY_IN_PAST
    c0 = c["cloid0"]
    c1 = c["cloid1"]
    c2 = c["cloid2"]
    c3 = c["cloid3"]
    has_cloid = (c0 | c1 | c2 | c3) != 0
    if code == 0 and has_cloid and find_cloid(orders, acct_head, a, c0, c1, c2, c3) >= 0:
        code = R_DUPLICATE_CLOID
    if code == 0 and tif == TIF_ALO and crosses(mkt, best, m, side, price):
        code = R_POST_ONLY
    if code == 0 and tif == TIF_FOK and not fok_fillable(orders, mkt, lvl_head, bits, summ, best, m, side,
                                                         price, size, a, stp):
        code = R_FOK_NOT_FILLABLE
    slot = -1
    if code == 0:
        slot = slot_alloc(free, ctr)
        if slot < 0:
            code = R_BOOK_FULL
    if code != 0:
        return emit_reject(ev, n, i, ts, m, a, 0, code)
    ctr[C_ORDER_SEQ] += 1
    ctr[C_LIVE] += 1
    oid = (ctr[C_ORDER_SEQ] << SLOT_BITS) | slot
    o = orders[slot]
    o["oid"] = oid
    o["price"] = price
    o["remaining"] = size
    o["expires_at"] = expires
    o["prio"] = 0
    o["cloid0"] = c0
    o["cloid1"] = c1
    o["cloid2"] = c2
    o["cloid3"] = c3
    o["next"] = -1
    o["prev"] = -1
    o["anext"] = -1
    o["aprev"] = -1
    o["heap_pos"] = -1
    o["account"] = a
    o["market"] = m
    o["side"] = side
    o["tif"] = tif
    o["stp"] = stp
    o["live"] = 1
    n = emit(ev, n, E_ACCEPTED, i, ts, m, a, oid, side, price, size, 0, 0, 0)
    n, stopped = match(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                       acct_head, acct_tail, acct_count, free, heap, ctr, slot)
    return finish_taker(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                        acct_head, acct_tail, acct_count, free, heap, ctr, slot, stopped, False)


@njit(cache=True, _nrt=False, inline="always")
def locate(c, orders, mkt, acct_head):
    """(slot, code) of the open order a cancel/amend names; code 0 when found and owned."""
    m = c["market"]
    a = c["account"]
    if c["pre_reject"] != 0:
        return -1, c["pre_reject"]
    if m < 0 or m >= mkt.shape[0]:
        return -1, R_UNKNOWN_MARKET
    if a < 0 or a >= acct_head.shape[0]:
        return -1, R_UNKNOWN_ACCOUNT
    oid = c["oid"]
    if oid != 0:
        slot = oid & SLOT_MASK
        if slot >= orders.shape[0] or orders[slot]["live"] == 0 or orders[slot]["oid"] != oid:
            return -1, R_UNKNOWN_ORDER
    elif (c["cloid0"] | c["cloid1"] | c["cloid2"] | c["cloid3"]) == 0:
        return -1, R_ORDER_ID_MISSING
    else:
        slot = find_cloid(orders, acct_head, a, c["cloid0"], c["cloid1"], c["cloid2"], c["cloid3"])
        if slot < 0:
            return -1, R_UNKNOWN_ORDER
    if orders[slot]["market"] != m:
        return -1, R_UNKNOWN_ORDER
    if orders[slot]["account"] != a:
        return -1, R_NOT_OWNER
    return slot, 0


@njit(cache=True, _nrt=False, inline="always")
def do_cancel(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
              acct_head, acct_tail, acct_count, free, heap, ctr):
    slot, code = locate(c, orders, mkt, acct_head)
    if code != 0:
        return emit_reject(ev, n, i, c["ts"], c["market"], c["account"], c["oid"], code)
    return cancel_resting(ev, n, i, c["ts"], E_CANCELLED, CR_USER, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits,
                          summ, best, count, acct_head, acct_tail, acct_count, free, heap, ctr, slot, True)


@njit(cache=True, _nrt=False)
def do_cancel_all(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                  acct_head, acct_tail, acct_count, free, heap, ctr):
    m = c["market"]
    a = c["account"]
    code = 0
    if c["pre_reject"] != 0:
        code = c["pre_reject"]
    elif m < -1 or m >= mkt.shape[0]:
        code = R_UNKNOWN_MARKET
    elif a < 0 or a >= acct_head.shape[0]:
        code = R_UNKNOWN_ACCOUNT
    if code != 0:
        return emit_reject(ev, n, i, c["ts"], m, a, c["oid"], code)
    s = acct_head[a]
    while s != -1:
        nxt = orders[s]["anext"]
        if m == -1 or orders[s]["market"] == m:
            n = cancel_resting(ev, n, i, c["ts"], E_CANCELLED, CR_CANCEL_ALL, orders, mkt, lvl_qty, lvl_head,
                               lvl_tail, bits, summ, best, count, acct_head, acct_tail, acct_count, free, heap,
                               ctr, s, True)
        s = nxt
    return n


@njit(cache=True, _nrt=False, inline="always")
def do_amend(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
             acct_head, acct_tail, acct_count, free, heap, ctr):
    ts = c["ts"]
    slot, code = locate(c, orders, mkt, acct_head)
    if code != 0:
        return emit_reject(ev, n, i, ts, c["market"], c["account"], c["oid"], code)
    m = c["market"]
    old_price = orders[slot]["price"]
    old_size = orders[slot]["remaining"]
    price = c["price"] if c["price"] != 0 else old_price
    size = c["size"] if c["size"] != 0 else old_size
    side = orders[slot]["side"]
    if price == old_price and size == old_size:
        code = R_AMEND_NO_CHANGE
    elif size > mkt[m]["max_order_lots"]:
        code = R_SIZE_ABOVE_MAX
    elif price != old_price:
        low, high = band(mkt, m)
        if price < low or price > high:
            code = R_PRICE_OUTSIDE_BAND
    if code == 0:
        code = notional_check(mkt, m, price, size)
    if code == 0 and not (price == old_price and size < old_size):
        if orders[slot]["tif"] == TIF_ALO and crosses(mkt, best, m, side, price):
            code = R_POST_ONLY
    if code != 0:
        return emit_reject(ev, n, i, ts, m, c["account"], c["oid"], code)
    base = mkt[m]["base"]
    li = mkt[m]["lvl_off"] + side * mkt[m]["levels"] + (old_price - base)
    if price == old_price and size < old_size:
        orders[slot]["remaining"] = size
        lvl_qty[li] -= old_size - size
        n = emit_order(ev, n, E_AMENDED, i, ts, orders, slot, size, 1)
        return emit_level(ev, n, i, ts, mkt, lvl_qty, m, side, old_price - base)
    level_unlink(orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count, slot)
    orders[slot]["price"] = price
    orders[slot]["remaining"] = size
    n = emit_order(ev, n, E_AMENDED, i, ts, orders, slot, size, 0)
    n = emit_level(ev, n, i, ts, mkt, lvl_qty, m, side, old_price - base)
    n, stopped = match(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                       acct_head, acct_tail, acct_count, free, heap, ctr, slot)
    return finish_taker(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                        acct_head, acct_tail, acct_count, free, heap, ctr, slot, stopped, True)


@njit(cache=True, _nrt=False)
def recentre(ev, n, cmd, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
             acct_head, acct_tail, acct_count, free, heap, ctr, m, new_base):
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
                                       free, heap, ctr, s, False)
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
                acct_head, acct_tail, acct_count, free, heap, ctr):
    m = c["market"]
    price = c["price"]
    code = 0
    if c["pre_reject"] != 0:
        code = c["pre_reject"]
    elif m < 0 or m >= mkt.shape[0]:
        code = R_UNKNOWN_MARKET
    elif price <= 0 or price > MAX_MARK_TICKS:
        code = R_MARK_INVALID
    if code != 0:
        return emit_reject(ev, n, i, c["ts"], m, c["account"], c["oid"], code)
    levels = mkt[m]["levels"]
    mkt[m]["mark"] = price
    new_base = price - levels // 2
    if new_base < 1:
        new_base = 1
    if mkt[m]["base"] == 0:
        mkt[m]["base"] = new_base
        return n
    low, high = band(mkt, m)
    base = mkt[m]["base"]
    if low < base or high >= base + levels:
        n = recentre(ev, n, i, c["ts"], orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                     acct_head, acct_tail, acct_count, free, heap, ctr, m, new_base)
    return n


@njit(cache=True, _nrt=False)
def do_tick(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
            acct_head, acct_tail, acct_count, free, heap, ctr):
    ts = c["ts"]
    if c["pre_reject"] != 0:
        return emit_reject(ev, n, i, ts, c["market"], c["account"], c["oid"], c["pre_reject"])
    while ctr[C_HEAP_N] > 0 and orders[heap[0]]["expires_at"] <= ts:
        n = cancel_resting(ev, n, i, ts, E_EXPIRED, 0, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ,
                           best, count, acct_head, acct_tail, acct_count, free, heap, ctr, heap[0], True)
    return n


# ---------------------------------------------------------------------------- the loop


@njit(cache=True, _nrt=False, inline="always")
def event_bound(c, mkt, count, acct_head, acct_count, ctr):
    """Most events the command ``c`` can emit (each order touched gives at most two)."""
    kind = c["kind"]
    m = c["market"]
    valid_m = m >= 0 and m < mkt.shape[0]
    if kind == K_PLACE and valid_m and c["side"] <= 1:
        return 8 + 2 * count[m, 1 - c["side"]]
    if kind == K_PLACE or kind == K_AMEND:
        if valid_m:
            return 8 + 2 * (count[m, 0] + count[m, 1])
    elif kind == K_CANCEL_ALL:
        a = c["account"]
        if a >= 0 and a < acct_head.shape[0]:
            return 4 + 2 * acct_count[a]
    elif kind == K_SET_MARK:
        if valid_m:
            return 4 + 2 * (count[m, 0] + count[m, 1])
    elif kind == K_TICK:
        return 4 + 2 * ctr[C_HEAP_N]
    return 4


@njit(cache=True, _nrt=False)
def apply_kernel(cmds, start, ev, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                 acct_head, acct_tail, acct_count, free, heap, ctr):
    """Process ``cmds[start:]``. Returns (next command, events written, events needed): the
    loop stops early only when the next command might not fit in ``ev``."""
    n = 0
    ncmd = cmds.shape[0]
    cap = ev.shape[0]
    i = start
    while i < ncmd:
        c = cmds[i]
        need = event_bound(c, mkt, count, acct_head, acct_count, ctr)
        if n + need > cap:
            return i, n, need
        kind = c["kind"]
        in_batch = ctr[C_BATCH_LEFT] > 0
        if in_batch:
            ctr[C_BATCH_LEFT] -= 1
            if kind == K_BATCH:
                n = emit_reject(ev, n, i, c["ts"], c["market"], c["account"], c["oid"], R_BATCH_NESTED)
                i += 1
                continue
            if kind != K_PLACE and kind != K_CANCEL and kind != K_AMEND:
                n = emit_reject(ev, n, i, c["ts"], c["market"], c["account"], c["oid"], R_BAD_FIELD)
                i += 1
                continue
        if kind == K_PLACE:
            n = do_place(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                         acct_head, acct_tail, acct_count, free, heap, ctr)
        elif kind == K_CANCEL:
            n = do_cancel(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                          acct_head, acct_tail, acct_count, free, heap, ctr)
        elif kind == K_AMEND:
            n = do_amend(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                         acct_head, acct_tail, acct_count, free, heap, ctr)
        elif kind == K_CANCEL_ALL:
            n = do_cancel_all(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                              acct_head, acct_tail, acct_count, free, heap, ctr)
        elif kind == K_SET_MARK:
            n = do_set_mark(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                            acct_head, acct_tail, acct_count, free, heap, ctr)
        elif kind == K_TICK:
            n = do_tick(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                        acct_head, acct_tail, acct_count, free, heap, ctr)
        elif kind == K_BATCH:
            left = ncmd - i - 1
            cnt = c["size"]
            if c["pre_reject"] != 0:
                n = emit_reject(ev, n, i, c["ts"], c["market"], c["account"], c["oid"], c["pre_reject"])
            elif cnt < 0 or cnt > MAX_BATCH_ACTIONS or cnt > left:
                n = emit_reject(ev, n, i, c["ts"], c["market"], c["account"], c["oid"], R_BATCH_TOO_LARGE)
                skip = min(max(cnt, 0), left)
                i += 1 + skip
                continue
            else:
                ctr[C_BATCH_LEFT] = cnt
        else:
            n = emit_reject(ev, n, i, c["ts"], c["market"], c["account"], c["oid"], R_BAD_FIELD)
        i += 1
    return i, n, 0
