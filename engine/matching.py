"""The matching loop: one compiled pass over a batch of command records.

``apply_kernel`` processes records ``start..n`` in order and writes events into a
preallocated buffer. Before each command it computes an upper bound on the events that
command can emit; if the buffer cannot hold them it stops and returns, and the caller
grows the buffer and calls again from where it stopped. Nothing is allocated per command.

The rules (checks in order, events in order) are those of docs/matching.md; the reference
engine (engine/reference.py) implements the same rules slowly and obviously.

"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.book import (
    C_LIVE,
    C_ORDER_SEQ,
    C_PRIO_SEQ,
    C_RISK,
    C_RO,
    SLOT_BITS,
    SLOT_MASK,
    acct_link,
    acct_unlink,
    find_cloid,
    heap_push,
    heap_remove,
    level_link,
    level_unlink,
    next_level,
    slot_alloc,
    slot_release,
)
from engine.emit import emit, emit_fill, emit_level, emit_order, emit_reject
from engine.kernel_consts import (
    CR_CANCEL_ALL,
    CR_IOC,
    CR_REDUCE_ONLY,
    CR_STP_MAKER,
    CR_STP_TAKER,
    CR_USER,
    E_ACCEPTED,
    E_AMENDED,
    E_CANCELLED,
    FL_ALL,
    FL_REDUCE_ONLY,
    MODE_HALTED,
    R_AMEND_NO_CHANGE,
    R_BAD_FIELD,
    R_BOOK_FULL,
    R_DUPLICATE_CLOID,
    R_EXPIRY_IN_PAST,
    R_FOK_NOT_FILLABLE,
    R_INSUFFICIENT_MARGIN,
    R_MARKET_HALTED,
    R_NO_MARK,
    R_NOT_OWNER,
    R_ORDER_ID_MISSING,
    R_POSITION_LIMIT,
    R_POST_ONLY,
    R_PRICE_ABOVE_MAX,
    R_PRICE_NOT_POSITIVE,
    R_REDUCE_ONLY,
    R_RISK_DISABLED,
    R_SIZE_ABOVE_MAX,
    R_SIZE_NOT_POSITIVE,
    R_UNKNOWN_ACCOUNT,
    R_UNKNOWN_MARKET,
    R_UNKNOWN_ORDER,
    STP_BOTH,
    STP_MAKER,
    STP_TAKER,
    TIF_ALO,
    TIF_FOK,
    TIF_GTC,
    TIF_MARKET,
)
from engine.limits import band_code, crosses, notional_check, protection_price
from engine.risk import closable_lots, expo_order, pretrade_code, replace_code, settle_fill

# Kernels take the engine's arrays positionally, always in this order:
# orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
# acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos.


@njit(cache=True, _nrt=False, inline="always")
def remove_resting(orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                   acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, slot):
    """A resting order leaves the book for good: level, account list, heap, slot."""
    if ctr[C_RISK] != 0:
        expo_order(orders, mkt, pos, slot, -orders[slot]["remaining"])
        count_reduce_only(orders, ctr, pos, slot, -1)
    level_unlink(orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count, slot)
    acct_unlink(orders, acct_head, acct_tail, acct_count, slot)
    if orders[slot]["heap_pos"] >= 0:
        heap_remove(orders, heap, ctr, slot)
    slot_release(orders, free, ctr, slot)


@njit(cache=True, _nrt=False, inline="always")
def count_reduce_only(orders, ctr, pos, slot, delta):
    """Count an order in (``delta`` 1) or out of (-1) the resting reduce-only orders, if it is one."""
    if (orders[slot]["flags"] & FL_REDUCE_ONLY) != 0:
        pos[orders[slot]["account"], orders[slot]["market"]]["ro_n"] += delta
        ctr[C_RO] += delta


@njit(cache=True, _nrt=False, inline="always")
def cancel_resting(ev, n, cmd, ts, kind, reason, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ,
                   best, count, acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, slot, with_level):
    """Event (CANCELLED or EXPIRED), removal, then the level's new total if asked."""
    m = orders[slot]["market"]
    side = orders[slot]["side"]
    idx = orders[slot]["price"] - mkt[m]["base"]
    n = emit_order(ev, n, kind, cmd, ts, orders, slot, orders[slot]["remaining"], reason)
    remove_resting(orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                   acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, slot)
    if with_level:
        n = emit_level(ev, n, cmd, ts, mkt, lvl_qty, m, side, idx)
    return n


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
            elif (orders[s]["flags"] & FL_REDUCE_ONLY) == 0:  # a reduce-only maker may fill less
                total += orders[s]["remaining"]
                if total >= size:
                    return True
            s = orders[s]["next"]
        idx = next_level(mkt, bits, summ, m, opp, idx)
    return total >= size


# ---------------------------------------------------------------------------- matching


@njit(cache=True, _nrt=False, inline="always")
def match(ev, n, cmd, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
          acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, taker):
    """Match the taker in ``taker`` against the opposite side. Returns (n, stopped_by_stp);
    the taker's ``remaining`` is updated in place. A reduce-only maker fills at most the
    position it can close (``closable_lots``); one with nothing left to close is cancelled
    (REDUCE_ONLY) when the taker reaches it."""
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
                                   free, heap, ctr, acc, pos, s, False)
                touched = True
                if stp == STP_BOTH:
                    stopped = True
                    break
                s = nxt
                continue
            mrem = orders[s]["remaining"]
            cap = mrem
            if (orders[s]["flags"] & FL_REDUCE_ONLY) != 0:
                cap = closable_lots(pos, orders[s]["account"], m, opp)
                if cap == 0:
                    n = cancel_resting(ev, n, cmd, ts, E_CANCELLED, CR_REDUCE_ONLY, orders, mkt, lvl_qty, lvl_head,
                                       lvl_tail, bits, summ, best, count, acct_head, acct_tail, acct_count,
                                       free, heap, ctr, acc, pos, s, False)
                    touched = True
                    s = nxt
                    continue
                if cap > mrem:
                    cap = mrem
            q = rem if rem < cap else cap
            n = emit_fill(ev, n, cmd, ts, m, account, taker_oid, side, orders[s]["account"], orders[s]["oid"],
                          lp, q, mrem - q)
            mkt[m]["last_trade"] = lp
            if ctr[C_RISK] != 0:
                settle_fill(acc, pos, mkt, ctr, m, account, side, orders[s]["account"], q, lp)
            orders[s]["remaining"] = mrem - q
            lvl_qty[li] -= q
            rem -= q
            touched = True
            if mrem == q:
                remove_resting(orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                               acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, s)
                s = nxt
            # else: the taker is done, or a reduce-only maker was capped: it is visited again
        if touched:
            n = emit_level(ev, n, cmd, ts, mkt, lvl_qty, m, opp, idx)
        if stopped:
            break
    orders[taker]["remaining"] = rem
    return n, stopped


@njit(cache=True, _nrt=False, inline="always")
def finish_taker(ev, n, cmd, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                 acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, taker, stopped, in_account):
    """After matching: cancel, rest or retire the taker. ``in_account``: an amended order is
    already in its account list and maybe in the heap."""
    rem = orders[taker]["remaining"]
    tif = orders[taker]["tif"]
    rests = rem > 0 and not stopped and (tif == TIF_GTC or tif == TIF_ALO)
    if rests:
        if ctr[C_RISK] != 0:
            expo_order(orders, mkt, pos, taker, rem)
            if not in_account:
                count_reduce_only(orders, ctr, pos, taker, 1)
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
        if ctr[C_RISK] != 0:
            count_reduce_only(orders, ctr, pos, taker, -1)
        acct_unlink(orders, acct_head, acct_tail, acct_count, taker)
        if orders[taker]["heap_pos"] >= 0:
            heap_remove(orders, heap, ctr, taker)
    slot_release(orders, free, ctr, taker)
    return n


# ---------------------------------------------------------------------------- commands


@njit(cache=True, _nrt=False, inline="always")
def do_place(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
             acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos):
    ts = c["ts"]
    m = c["market"]
    a = c["account"]
    side = np.int64(c["side"])
    tif = np.int64(c["tif"])
    stp = np.int64(c["stp"])
    flags = np.int64(c["flags"])
    reduce_only = (flags & FL_REDUCE_ONLY) != 0
    size = c["size"]
    risk = ctr[C_RISK] != 0
    code = 0
    if c["pre_reject"] != 0:
        code = c["pre_reject"]
    elif m < 0 or m >= mkt.shape[0]:
        code = R_UNKNOWN_MARKET
    elif a < 0 or a >= acct_head.shape[0]:
        code = R_UNKNOWN_ACCOUNT
    elif side > 1 or tif > TIF_MARKET or stp > STP_BOTH or (flags & ~FL_ALL) != 0:
        code = R_BAD_FIELD
    elif mkt[m]["mark"] == 0:
        code = R_NO_MARK
    elif mkt[m]["mode"] == MODE_HALTED:
        code = R_MARKET_HALTED
    elif size <= 0:
        code = R_SIZE_NOT_POSITIVE
    elif reduce_only:
        size, code = reduce_only_size(pos, a, m, side, size, risk)
    if code == 0 and size > mkt[m]["max_order_lots"]:
        code = R_SIZE_ABOVE_MAX
    if code != 0:
        return emit_reject(ev, n, i, ts, m, a, 0, code)
    price = c["price"]
    if tif == TIF_MARKET:
        price = protection_price(mkt, m, side)
    elif price <= 0:
        code = R_PRICE_NOT_POSITIVE
    else:
        code = band_code(mkt, m, price)
    if code == 0 and risk and price > mkt[m]["max_price"]:
        code = R_PRICE_ABOVE_MAX
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
    if code == 0 and risk:
        code = pretrade_code(acc, pos, mkt, a, m, side, price, size, R_POSITION_LIMIT, R_INSUFFICIENT_MARGIN,
                             reduce_only)
    slot = -1
    if code == 0:
        slot = slot_alloc(free, ctr)
        if slot < 0:
            code = R_BOOK_FULL
    if code != 0:
        return emit_reject(ev, n, i, ts, m, a, 0, code)
    oid = new_order(orders, ctr, slot, m, a, side, price, size, tif, stp, flags, expires, c0, c1, c2, c3)
    n = emit(ev, n, E_ACCEPTED, i, ts, m, a, oid, side, price, size, 0, 0, 0)
    n, stopped = match(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                       acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, slot)
    return finish_taker(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                        acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, slot, stopped, False)


@njit(cache=True, _nrt=False, inline="always")
def reduce_only_size(pos, a, m, side, size, risk):
    """(size, code) of a reduce-only order: RISK_DISABLED without positions; REDUCE_ONLY if it
    has no position on the other side to reduce; else the size capped at that position."""
    if not risk:
        return size, R_RISK_DISABLED
    cap = closable_lots(pos, a, m, side)
    if cap == 0:
        return size, R_REDUCE_ONLY
    return (cap if size > cap else size), 0


@njit(cache=True, _nrt=False, inline="always")
def new_order(orders, ctr, slot, m, a, side, price, size, tif, stp, flags, expires, c0, c1, c2, c3):
    """Fill a freshly allocated slot as a new taker (not yet in any list); returns its oid."""
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
    o["flags"] = flags
    return oid


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
              acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos):
    slot, code = locate(c, orders, mkt, acct_head)
    if code != 0:
        return emit_reject(ev, n, i, c["ts"], c["market"], c["account"], c["oid"], code)
    return cancel_resting(ev, n, i, c["ts"], E_CANCELLED, CR_USER, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits,
                          summ, best, count, acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, slot, True)


@njit(cache=True, _nrt=False)
def do_cancel_all(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                  acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos):
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
                               ctr, acc, pos, s, True)
        s = nxt
    return n


@njit(cache=True, _nrt=False, inline="always")
def do_amend(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
             acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos):
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
    reduce_only = (orders[slot]["flags"] & FL_REDUCE_ONLY) != 0
    if reduce_only and size > 0:  # capped at the position like a place (it has one: docs/risk.md)
        cap = closable_lots(pos, c["account"], m, side)
        if size > cap:
            size = cap
    if mkt[m]["mode"] == MODE_HALTED:
        code = R_MARKET_HALTED
    elif size <= 0:
        code = R_SIZE_NOT_POSITIVE
    elif price <= 0:
        code = R_PRICE_NOT_POSITIVE
    elif price == old_price and size == old_size:
        code = R_AMEND_NO_CHANGE
    elif size > mkt[m]["max_order_lots"]:
        code = R_SIZE_ABOVE_MAX
    elif price != old_price:
        code = band_code(mkt, m, price)
    if code == 0:
        code = notional_check(mkt, m, price, size)
    if code == 0 and not (price == old_price and size < old_size):
        if orders[slot]["tif"] == TIF_ALO and crosses(mkt, best, m, side, price):
            code = R_POST_ONLY
    risk = ctr[C_RISK] != 0
    if code == 0 and risk and price > mkt[m]["max_price"]:
        code = R_PRICE_ABOVE_MAX
    if code == 0 and risk:
        code = replace_code(acc, pos, mkt, c["account"], m, side, old_price, old_size, price, size,
                            R_POSITION_LIMIT, R_INSUFFICIENT_MARGIN, reduce_only)
    if code != 0:
        return emit_reject(ev, n, i, ts, m, c["account"], c["oid"], code)
    base = mkt[m]["base"]
    li = mkt[m]["lvl_off"] + side * mkt[m]["levels"] + (old_price - base)
    if risk:
        expo_order(orders, mkt, pos, slot, -old_size)
    if price == old_price and size < old_size:
        orders[slot]["remaining"] = size
        if risk:
            expo_order(orders, mkt, pos, slot, size)
        lvl_qty[li] -= old_size - size
        n = emit_order(ev, n, E_AMENDED, i, ts, orders, slot, size, 1)
        return emit_level(ev, n, i, ts, mkt, lvl_qty, m, side, old_price - base)
    level_unlink(orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count, slot)
    orders[slot]["price"] = price
    orders[slot]["remaining"] = size
    n = emit_order(ev, n, E_AMENDED, i, ts, orders, slot, size, 0)
    n = emit_level(ev, n, i, ts, mkt, lvl_qty, m, side, old_price - base)
    n, stopped = match(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                       acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, slot)
    return finish_taker(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                        acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, slot, stopped, True)
