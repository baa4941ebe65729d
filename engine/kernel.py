"""The matching loop: one compiled pass over a batch of command records.

``apply_kernel`` processes records ``start..n`` in order and writes events into a
preallocated buffer. Before each command it computes an upper bound on the events that
command can emit; if the buffer cannot hold them it stops and returns, and the caller
grows the buffer and calls again from where it stopped. Nothing is allocated per command.

The per-command kernels are inlined into this loop (``inline="always"``): numba passes each
array argument as a struct of seven machine words, and with fifteen arrays a call per
command costs more than the matching itself. The dead-man and reduce-only sweeps are called,
not inlined, and only when their counter says there is work.
"""

from __future__ import annotations

from numba import njit

from engine.accounts import do_deposit, do_set_leverage, do_withdraw
from engine.book import (
    C_BATCH_LEFT,
    C_CLOCK,
    C_DMS,
    C_HEAP_N,
    C_LIVE,
    C_NPOS,
    C_NTRIG,
    C_RO,
    C_RO_DUE,
)
from engine.codes import MAX_BATCH_ACTIONS
from engine.dead_man import do_schedule_cancel, fire_deadlines
from engine.emit import emit_reject
from engine.isolated import do_adjust_margin, do_set_margin_mode
from engine.kernel_consts import (
    K_AMEND,
    K_BATCH,
    K_CANCEL,
    K_CANCEL_ALL,
    K_ADJUST_MARGIN,
    K_CANCEL_TRIGGER,
    K_DEPOSIT,
    K_MARKET_ADMIN,
    K_ORACLE,
    K_PLACE,
    K_PLACE_TRIGGER,
    K_SCHEDULE_CANCEL,
    K_SET_LEVERAGE,
    K_SET_MARGIN_MODE,
    K_SET_MARK,
    K_TICK,
    K_WITHDRAW,
    R_BAD_FIELD,
    R_BATCH_NESTED,
    R_BATCH_TOO_LARGE,
)
from engine.liquidator import LIQUIDATIONS_PER_TICK
from engine.market_state import do_set_mark, do_tick
from engine.matching import do_amend, do_cancel, do_cancel_all, do_place
from engine.prices import do_market_admin, do_oracle, tick_prices
from engine.triggers import do_cancel_trigger, do_place_trigger, run_triggers
from engine.reduce_only import cancel_stale_reduce_only

# Kernels take the engine's arrays positionally, always in this order:
# orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
# acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos.


@njit(cache=True, _nrt=False, inline="always")
def event_bound(c, mkt, count, acct_head, acct_count, ctr):
    """Most events the command ``c`` can emit (each order touched gives at most two; with
    reduce-only orders resting, a maker can be filled and then cancelled: four), and while
    triggers are live, what each of them could add when it fires after it."""
    extra = 0
    if ctr[C_NTRIG] > 0:
        extra = ctr[C_NTRIG] * (10 + 4 * ctr[C_LIVE])
    return extra + command_bound(c, mkt, count, acct_head, acct_count, ctr)


@njit(cache=True, _nrt=False, inline="always")
def command_bound(c, mkt, count, acct_head, acct_count, ctr):
    kind = c["kind"]
    m = c["market"]
    valid_m = m >= 0 and m < mkt.shape[0]
    if ctr[C_RO] != 0 and (kind == K_PLACE or kind == K_AMEND):
        if valid_m:
            return 8 + 4 * (count[m, 0] + count[m, 1])
    elif kind == K_PLACE and valid_m and c["side"] <= 1:
        return 8 + 2 * count[m, 1 - c["side"]]
    if kind == K_PLACE or kind == K_AMEND:
        if valid_m:
            return 8 + 2 * (count[m, 0] + count[m, 1])
    elif kind == K_CANCEL_ALL:
        a = c["account"]
        if a >= 0 and a < acct_head.shape[0]:
            return 4 + 2 * acct_count[a]
    elif kind == K_SET_MARK or kind == K_ORACLE:
        if valid_m:
            return 6 + 2 * (count[m, 0] + count[m, 1])
    elif kind == K_TICK:
        # expiries, dead-man cancels, then per market a MODE, a re-centre and a MARK, funding per
        # position and market, liquidations: every order cancelled or filled (with its level), a
        # few per position, and reduce-only orders cancelled after a fill; ADL closes: each empties
        # a position open at the start or opened by one of the tick's fills (at most the orders
        # resting plus one per IOC), or is the last of its liquidation and market; the fund's
        # work-off: per market its IOC, a partial fill, its level and the IOC's remainder
        nm = mkt.shape[0]
        sweeps = (1 if ctr[C_DMS] != 0 else 0) + (1 if ctr[C_RO] != 0 else 0)
        return (4 + 2 * ctr[C_HEAP_N] + (8 + 2 * sweeps) * ctr[C_LIVE] + 5 * nm + ctr[C_NPOS]
                + 8 * LIQUIDATIONS_PER_TICK * (nm + 1)
                + ctr[C_NPOS] + ctr[C_LIVE] + 2 * (LIQUIDATIONS_PER_TICK + 1) * nm
                + 6 * nm)
    return 4


@njit(cache=True, _nrt=False)
def apply_kernel(cmds, start, ev, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                 acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, trig, scratch):
    """Process ``cmds[start:]``. Returns (next command, events written, events needed): the
    loop stops early only when the next command might not fit in ``ev``. After each command,
    while any trigger is live, the triggers it reached fire (engine.triggers)."""
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
                         acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos)
            if ctr[C_RO_DUE] != 0:
                n = cancel_stale_reduce_only(ev, n, i, c["ts"], orders, mkt, lvl_qty, lvl_head, lvl_tail, bits,
                                             summ, best, count, acct_head, acct_tail, acct_count, free, heap, ctr,
                                             acc, pos)
        elif kind == K_CANCEL:
            n = do_cancel(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                          acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos)
        elif kind == K_AMEND:
            n = do_amend(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                         acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos)
            if ctr[C_RO_DUE] != 0:
                n = cancel_stale_reduce_only(ev, n, i, c["ts"], orders, mkt, lvl_qty, lvl_head, lvl_tail, bits,
                                             summ, best, count, acct_head, acct_tail, acct_count, free, heap, ctr,
                                             acc, pos)
        elif kind == K_CANCEL_ALL:
            n = do_cancel_all(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                              acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos)
        elif kind == K_SET_MARK:
            n = do_set_mark(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                            acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos)
        elif kind == K_TICK:
            if c["pre_reject"] != 0:
                n = emit_reject(ev, n, i, c["ts"], c["market"], c["account"], c["oid"], c["pre_reject"])
            else:
                ctr[C_CLOCK] = c["ts"]
                n = do_tick(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                            acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos)
                if ctr[C_DMS] != 0:
                    n = fire_deadlines(ev, n, i, c["ts"], orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ,
                                       best, count, acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos)
                n = tick_prices(ev, n, i, c["ts"], orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best,
                                count, acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos)
        elif kind == K_ORACLE:
            n = do_oracle(c, i, ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                          acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos)
        elif kind == K_MARKET_ADMIN:
            n = do_market_admin(c, i, ev, n, mkt, ctr)
        elif kind == K_PLACE_TRIGGER:
            n = do_place_trigger(c, i, ev, n, mkt, acct_head, ctr, pos, trig)
        elif kind == K_CANCEL_TRIGGER:
            n = do_cancel_trigger(c, i, ev, n, mkt, acct_head, ctr, trig)
        elif kind == K_DEPOSIT:
            n = do_deposit(c, i, ev, n, mkt, acct_head, ctr, acc, pos)
        elif kind == K_WITHDRAW:
            n = do_withdraw(c, i, ev, n, mkt, acct_head, ctr, acc, pos)
        elif kind == K_SET_LEVERAGE:
            n = do_set_leverage(c, i, ev, n, mkt, acct_head, ctr, acc, pos)
        elif kind == K_SCHEDULE_CANCEL:
            n = do_schedule_cancel(c, i, ev, n, acct_head, ctr, acc)
        elif kind == K_SET_MARGIN_MODE:
            n = do_set_margin_mode(c, i, ev, n, mkt, acct_head, ctr, acc, pos)
        elif kind == K_ADJUST_MARGIN:
            n = do_adjust_margin(c, i, ev, n, mkt, acct_head, ctr, acc, pos)
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
        if ctr[C_NTRIG] > 0:
            n = run_triggers(i, c["ts"], ev, n, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                             acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos, trig, scratch)
        i += 1
    return i, n, 0
