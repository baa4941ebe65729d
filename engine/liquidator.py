"""The liquidation waterfall on the clock (mechanics.md §5–§6, docs/risk.md "Liquidation").

On each Tick with risk on, after funding, one pass over the accounts in ascending id finds
those whose cross equity at the mark is below their cross maintenance margin (every position
of the account but its isolated ones) and runs, for each, in order (an oracle update that
moves a market's mark runs the same pass over the accounts holding a position in that market,
without the work-off):

1. **Cancel** every resting order of the account in a cross market (reason LIQUIDATION).
2. **Book**: unless equity is already below 2/3 of MM, per market in id order an IOC closes the
   position (20% of it, rounded up in lots, when its notional is above ``partial_liq_notional``;
   at most once per 30 s per position) at the *fillable price*, so fills never land beyond what
   the insurance fund would cover. A liquidation fee of ``liq_fee`` × the filled notional at the
   mark, rounded up, but never more than the equity left (the surplus), goes to the fund.
3. **Backstop**: if equity is below 2/3 of MM, or still below MM after an IOC the book could not
   fill in full, or the book closed every cross position but left the collateral negative (the
   taker fees of the IOCs can), the insurance fund takes every cross position over at the mark,
   with what is left of the collateral (negative when the account is bankrupt: the fund pays).
   Taking over at the
   mark with the equity is the same transfer of value as taking over at the bankruptcy price.
4. **Auto-deleveraging** (``engine.adl``): what the fund cannot cover of a bankruptcy is
   collected by closing the positions just taken against ranked opposite positions.

An isolated position is judged and liquidated on its own, after its account's cross check,
markets in id order (``liquidate_isolated``): its equity is its bucket plus its uPnL, its MM
its own; the same steps run scoped to it (its market's orders, its IOC and fee from its
bucket, the fund taking it over with what is left of the bucket, ADL in its market), and the
cross collateral never pays for it.

At most ``LIQUIDATIONS_PER_TICK`` liquidations (cross accounts and isolated positions) run
per tick (in id order; the rest wait
for the next tick), which bounds a tick's events. After the scan the fund works its positions
off through the book (``fund_work_off``): per market one reduce-only IOC of a fifth of it at
the protection price. Every IOC here (``liquidation_ioc``) is filled or cancelled within the
tick, so neither the liquidated accounts nor the fund ever rest an order.

Known limitations: the fund's balance can still go negative, when ADL finds no counterparty
with equity to pay, or through the fund's own losses on its work-off; the fund has no position
limit of its own.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.adl import auto_deleverage
from engine.book import C_EPOCH, C_ISO, C_MODES, CERT_EPOCHS, slot_alloc
from engine.certificates import assess, begin_scan, cert_void, certified_safe, store
from engine.emit import emit
from engine.kernel_consts import (
    CR_LIQUIDATION,
    E_CANCELLED,
    E_LIQUIDATION,
    LQ_BACKSTOP,
    LQ_BOOK,
    LQ_COLLATERAL,
    LQ_FEE,
    LQ_FUND_BOOK,
    MODE_HALTED,
    PPM,
    STP_MAKER,
    TIF_IOC,
)
from engine.limits import protection_price
from engine.liquidation import fillable_price_ticks
from engine.matching import cancel_resting, finish_taker, match, new_order
from engine.modes import iso_liquidation_allowed, liquidation_allowed
from engine.reduce_only import cancel_all_stale_reduce_only, cancel_stale_reduce_only
from engine.risk import (
    apply_fill,
    ceil_div,
    equity_atoms,
    iso_equity_atoms,
    position_mm,
    position_notional,
    total_mm,
)

LIQUIDATIONS_PER_TICK = 64
LIQ_COOLDOWN_NS = 30_000_000_000
PARTIAL_DIVISOR = 5  # 20% at a time


@njit(cache=True, _nrt=False, inline="always")
def below_two_thirds(eq, mm):
    """``eq < 2/3·MM`` exactly, without overflow (``3·eq`` only when ``0 ≤ eq < mm``)."""
    if eq < 0:
        return mm >= 0
    if eq >= mm:
        return False
    return 3 * eq < 2 * mm


@njit(cache=True, _nrt=False, inline="always")
def capped_fillable_price(size, chunk, mark, eq, mm, atl):
    """The fillable price (``engine.liquidation.fillable_price_ticks``), moved toward the mark
    so that the IOC's ``chunk`` lots cannot lose more than the account's equity at the mark:
    ``distance = min(⌊1.5·gap / (|size|·atl)⌋, ⌊max(equity, 0) / (chunk·atl)⌋)`` ticks. With
    one position the cap never binds (the book step starts at equity ≥ 2/3·MM, where
    ``1.5·gap ≤ MM/2 < equity``); with several, an earlier IOC's loss would otherwise let the
    next one fill past bankruptcy, paid by the fund and ADL."""
    price = fillable_price_ticks(size, mark, eq, mm, atl)
    room = eq if eq > 0 else 0
    cap = room // (chunk * atl)
    if size > 0 and mark - price > cap:
        return mark - cap
    if size < 0 and price - mark > cap:
        return mark + cap
    return price


@njit(cache=True, _nrt=False)
def liquidation_fee(acc, pos, mkt, a, m, lots):
    """min(⌈lots·mark·atl·liq_fee⌉, equity left), never negative."""
    return capped_fee(mkt, m, lots, equity_atoms(acc, pos, mkt, a))


@njit(cache=True, _nrt=False, inline="always")
def capped_fee(mkt, m, lots, eq):
    """min(⌈lots·mark·atl·liq_fee⌉ (rounded up: a charge), ``eq``), never negative."""
    ntl = lots * mkt[m]["mark"] * mkt[m]["atl"]
    ppm = mkt[m]["liq_fee_ppm"]
    fee = (ntl // PPM) * ppm + ceil_div((ntl % PPM) * ppm, PPM)
    if fee > eq:
        fee = eq
    return fee if fee > 0 else 0


@njit(cache=True, _nrt=False)
def liquidation_ioc(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                    acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, a, m, side, price, lots, step):
    """An IOC of account ``a`` (or the fund) that never rests: the LIQUIDATION event of ``step``
    (oid, side, limit, lots sent, lots filled), then its fills, then the reduce-only orders its
    fills left without a position to reduce are cancelled (engine.reduce_only). Returns (n, lots filled), or
    (n, −1) with nothing done when no order slot is free."""
    slot = slot_alloc(free, ctr)
    if slot < 0:
        return n, -1
    zero = np.uint64(0)
    oid = new_order(orders, ctr, slot, m, a, side, price, lots, TIF_IOC, STP_MAKER, 0, 0, zero, zero, zero, zero)
    n = emit(ev, n, E_LIQUIDATION, i, ts, m, a, oid, side, price, lots, 0, 0, step)
    at = n - 1
    n, stopped = match(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                       acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, slot)
    filled = lots - orders[slot]["remaining"]
    ev[at]["remaining"] = filled
    n = finish_taker(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                     acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, slot, stopped, False)
    n = cancel_stale_reduce_only(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                                 acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos)
    return n, filled


@njit(cache=True, _nrt=False)
def book_step(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
              acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, a):
    """IOCs at the fillable price, market by market; returns (n, every IOC filled in full)."""
    insurance = acc.shape[0] - 1
    absorbed = True
    for m in range(mkt.shape[0]):
        size = pos[a, m]["size"]
        if size == 0 or pos[a, m]["iso"] != 0:
            continue
        last = pos[a, m]["liq_ts"]
        if last != 0 and ts - last < LIQ_COOLDOWN_NS:
            continue
        eq = equity_atoms(acc, pos, mkt, a)
        mm = total_mm(pos, mkt, a)
        if eq >= mm:
            break
        mag = size if size > 0 else -size
        chunk = mag
        if position_notional(pos, mkt, a, m) > mkt[m]["liq_partial"]:
            chunk = ceil_div(mag, PARTIAL_DIVISOR)
        price = capped_fillable_price(size, chunk, mkt[m]["mark"], eq, mm, mkt[m]["atl"])
        if price < 1:
            price = 1
        if price > mkt[m]["max_price"]:
            price = mkt[m]["max_price"]
        side = 1 if size > 0 else 0
        n, filled = liquidation_ioc(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best,
                                    count, acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, a, m, side,
                                    price, chunk, LQ_BOOK)
        if filled < 0:
            return n, False
        pos[a, m]["liq_ts"] = ts
        if filled < chunk:
            absorbed = False
        if filled > 0:
            fee = liquidation_fee(acc, pos, mkt, a, m, filled)
            if fee > 0:
                acc[a]["collateral"] -= fee
                acc[insurance]["collateral"] += fee
                n = emit(ev, n, E_LIQUIDATION, i, ts, m, a, 0, 0, mkt[m]["mark"], 0, fee, 0, LQ_FEE)
    return n, absorbed


@njit(cache=True, _nrt=False)
def backstop(ev, n, i, ts, mkt, ctr, acc, pos, a):
    """The insurance fund takes every cross position at the mark, then the collateral."""
    insurance = acc.shape[0] - 1
    for m in range(mkt.shape[0]):
        size = pos[a, m]["size"]
        if size == 0 or pos[a, m]["iso"] != 0:
            continue
        mag = size if size > 0 else -size
        mark = mkt[m]["mark"]
        close_side = 1 if size > 0 else 0
        apply_fill(acc, pos, mkt, a, m, close_side, mag, mark, 0, ctr)
        apply_fill(acc, pos, mkt, insurance, m, 1 - close_side, mag, mark, 0, ctr)
        n = emit(ev, n, E_LIQUIDATION, i, ts, m, a, 0, close_side, mark, size, 0, 0, LQ_BACKSTOP)
    left = acc[a]["collateral"]
    acc[a]["collateral"] = 0
    acc[insurance]["collateral"] += left
    return emit(ev, n, E_LIQUIDATION, i, ts, -1, a, 0, 0, 0, 0, left, 0, LQ_COLLATERAL)


@njit(cache=True, _nrt=False)
def liquidate(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
              acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, a):
    """A cross account's waterfall: its orders in cross markets, its cross positions."""
    cert_void(acc, a)
    s = acct_head[a]
    while s != -1:
        nxt = orders[s]["anext"]
        if pos[a, orders[s]["market"]]["iso"] == 0:
            n = cancel_resting(ev, n, i, ts, E_CANCELLED, CR_LIQUIDATION, orders, mkt, lvl_qty, lvl_head, lvl_tail,
                               bits, summ, best, count, acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos,
                               s, True)
        s = nxt
    eq = equity_atoms(acc, pos, mkt, a)
    mm = total_mm(pos, mkt, a)
    absorbed = True
    if not below_two_thirds(eq, mm):
        n, absorbed = book_step(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                                acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, a)
        eq = equity_atoms(acc, pos, mkt, a)
        mm = total_mm(pos, mkt, a)
    if (mm > 0 and (below_two_thirds(eq, mm) or (eq < mm and not absorbed))) or \
            (mm == 0 and acc[a]["collateral"] < 0):
        first = n
        n = backstop(ev, n, i, ts, mkt, ctr, acc, pos, a)
        n = auto_deleverage(ev, n, first, i, ts, mkt, ctr, acc, pos)
        n = cancel_all_stale_reduce_only(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best,
                                         count, acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos)
    return n


@njit(cache=True, _nrt=False)
def liquidate_isolated(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                       acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, a, m):
    """The waterfall of one isolated position, on its bucket alone: its market's orders are
    cancelled; unless below 2/3 of MM (and outside the cooldown) one IOC at the fillable price
    with the liquidation fee from what is left (the bucket, or once closed what the bucket
    gave back); then, if still needed, the fund takes the position at the mark and the rest
    of the bucket (step COLLATERAL, market ``m``), and ADL in ``m``."""
    insurance = acc.shape[0] - 1
    cert_void(acc, a)
    s = acct_head[a]
    while s != -1:
        nxt = orders[s]["anext"]
        if orders[s]["market"] == m:
            n = cancel_resting(ev, n, i, ts, E_CANCELLED, CR_LIQUIDATION, orders, mkt, lvl_qty, lvl_head, lvl_tail,
                               bits, summ, best, count, acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos,
                               s, True)
        s = nxt
    eq = iso_equity_atoms(pos, mkt, a, m)
    mm = position_mm(pos, mkt, a, m)
    absorbed = True
    last = pos[a, m]["liq_ts"]
    if not below_two_thirds(eq, mm) and (last == 0 or ts - last >= LIQ_COOLDOWN_NS):
        size = pos[a, m]["size"]
        mag = size if size > 0 else -size
        chunk = mag
        if position_notional(pos, mkt, a, m) > mkt[m]["liq_partial"]:
            chunk = ceil_div(mag, PARTIAL_DIVISOR)
        price = fillable_price_ticks(size, mkt[m]["mark"], eq, mm, mkt[m]["atl"])
        if price < 1:
            price = 1
        if price > mkt[m]["max_price"]:
            price = mkt[m]["max_price"]
        before = acc[a]["collateral"]
        n, filled = liquidation_ioc(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best,
                                    count, acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, a, m,
                                    1 if size > 0 else 0, price, chunk, LQ_BOOK)
        if filled < 0:
            absorbed = False
        else:
            pos[a, m]["liq_ts"] = ts
            if filled < chunk:
                absorbed = False
            if filled > 0:
                still_open = pos[a, m]["size"] != 0
                left = iso_equity_atoms(pos, mkt, a, m) if still_open else acc[a]["collateral"] - before
                fee = capped_fee(mkt, m, filled, left)
                if fee > 0:
                    if still_open:
                        pos[a, m]["margin"] -= fee
                    else:
                        acc[a]["collateral"] -= fee
                    acc[insurance]["collateral"] += fee
                    n = emit(ev, n, E_LIQUIDATION, i, ts, m, a, 0, 0, mkt[m]["mark"], 0, fee, 0, LQ_FEE)
        eq = iso_equity_atoms(pos, mkt, a, m)
        mm = position_mm(pos, mkt, a, m)
    size = pos[a, m]["size"]
    if size != 0 and (below_two_thirds(eq, mm) or (eq < mm and not absorbed)):
        first = n
        mag = size if size > 0 else -size
        mark = mkt[m]["mark"]
        close_side = 1 if size > 0 else 0
        left = iso_equity_atoms(pos, mkt, a, m)
        apply_fill(acc, pos, mkt, a, m, close_side, mag, mark, 0, ctr)  # releases the bucket, == left
        apply_fill(acc, pos, mkt, insurance, m, 1 - close_side, mag, mark, 0, ctr)
        n = emit(ev, n, E_LIQUIDATION, i, ts, m, a, 0, close_side, mark, size, 0, 0, LQ_BACKSTOP)
        if left >= 0:  # the release put it in the cross collateral: it is the fund's
            acc[a]["collateral"] -= left
            acc[insurance]["collateral"] += left
        n = emit(ev, n, E_LIQUIDATION, i, ts, m, a, 0, 0, 0, 0, left, 0, LQ_COLLATERAL)
        n = auto_deleverage(ev, n, first, i, ts, mkt, ctr, acc, pos)
        n = cancel_all_stale_reduce_only(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best,
                                         count, acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos)
    return n


@njit(cache=True, _nrt=False)
def liquidation_scan(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                     acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, only_m):
    """One pass over the accounts (not the fund) in id order: the account's cross check, then
    (while any pair is isolated) its isolated positions in market order; liquidate those below
    MM (with modes on, as ``engine.modes`` permits). ``only_m`` ≥ 0 (an oracle update moved
    that market's mark): only accounts holding a position in it can have changed, so only
    those are checked; −1 (the Tick): every account.

    An account whose margin certificate proves it above maintenance at the current marks is
    skipped without reading its positions (``engine.certificates``); one evaluated and not
    liquidated is certified again. Which accounts are liquidated, and in what order, is the
    same as evaluating every account."""
    begin_scan(mkt, ctr)
    done = 0
    modes = ctr[C_MODES] != 0
    for a in range(acc.shape[0] - 1):
        if acc[a]["npos"] == 0 or certified_safe(acc, ctr, a):
            continue
        if only_m >= 0 and pos[a, only_m]["size"] == 0:
            continue
        touched = False
        eq, mm, slack, gross, ok = assess(acc, pos, mkt, a, ctr[C_EPOCH] % CERT_EPOCHS)  # begin_scan: an epoch
        if mm > 0 and eq < mm and (not modes or liquidation_allowed(acc, pos, mkt, a)):
            n = liquidate(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                          acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, a)
            touched = True
            done += 1
            if done == LIQUIDATIONS_PER_TICK:
                break
        if ctr[C_ISO] != 0:
            for m in range(mkt.shape[0]):
                if pos[a, m]["iso"] == 0 or pos[a, m]["size"] == 0:
                    continue
                if iso_equity_atoms(pos, mkt, a, m) >= position_mm(pos, mkt, a, m):
                    continue
                if modes and not iso_liquidation_allowed(pos, mkt, a, m):
                    continue
                n = liquidate_isolated(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best,
                                       count, acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, a, m)
                touched = True
                done += 1
                if done == LIQUIDATIONS_PER_TICK:
                    return n
        if not touched:
            store(acc, ctr, a, slack, gross, ok)
    return n


@njit(cache=True, _nrt=False)
def fund_work_off(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                  acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos):
    """After the scan, per market in id order where the fund holds a position (HALTED markets
    skipped): an IOC of the fund for a fifth of it, rounded up in lots, at the protection price
    (mark ∓ the slippage, inside the band and ``[1, max_price]``). With no free order slot the
    rest waits for the next tick."""
    fund = acc.shape[0] - 1
    for m in range(mkt.shape[0]):
        size = pos[fund, m]["size"]
        if size == 0 or mkt[m]["mode"] == MODE_HALTED:
            continue
        side = 1 if size > 0 else 0
        price = protection_price(mkt, m, side)
        if price > mkt[m]["max_price"]:
            price = mkt[m]["max_price"]
        lots = ceil_div(size if size > 0 else -size, PARTIAL_DIVISOR)
        n, filled = liquidation_ioc(ev, n, i, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best,
                                    count, acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, fund, m,
                                    side, price, lots, LQ_FUND_BOOK)
        if filled < 0:
            break
    return n


@njit(cache=True, _nrt=False)
def scan_cost(acc, pos, mkt):
    """How many accounts are below maintenance (no changes): the scan's arithmetic alone."""
    below = 0
    for a in range(acc.shape[0] - 1):
        if acc[a]["npos"] != 0 and equity_atoms(acc, pos, mkt, a) < total_mm(pos, mkt, a):
            below += 1  # cross accounts only
    return np.int64(below)
