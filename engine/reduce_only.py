"""Reduce-only orders: cancelling those left with nothing to reduce (docs/risk.md,
"Reduce-only orders").

A reduce-only order is sized at acceptance to at most the position it reduces
(``matching.reduce_only_size``), and each fill of it as a maker is capped at the position left
(``matching.match``). When a fill closes or flips a position whose account has reduce-only
orders in that market, ``apply_fill`` records the market in ``ctr[C_RO_DUE]`` (market + 1);
once the taker's matching is done (after a place, an amend that re-entered the book, or a
liquidation IOC) ``cancel_stale_reduce_only`` cancels, in ascending account and then
ascending order id, every reduce-only order in that market whose account has no position on
the other side of it any more (reason REDUCE_ONLY, each followed by its level).

Invariant (between commands): every resting reduce-only order's account holds a position on
the other side of it in that market; ``pos["ro_n"]`` counts them per position, ``ctr[C_RO]``
in all.

Known limitation: a resting reduce-only order keeps its size when the position shrinks
without closing; only its fills are capped.
"""

from __future__ import annotations

from numba import njit

from engine.book import C_RO, C_RO_DUE
from engine.kernel_consts import CR_REDUCE_ONLY, E_CANCELLED, FL_REDUCE_ONLY
from engine.matching import cancel_resting
from engine.risk import closable_lots

# Kernels take the engine's arrays positionally, always in this order:
# orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
# acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos.


@njit(cache=True, _nrt=False)
def cancel_stale_reduce_only(ev, n, cmd, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                             acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos):
    """If a fill closed or flipped a position with reduce-only orders, cancel the reduce-only
    orders of that market that have nothing left to reduce. O(accounts) when it runs."""
    due = ctr[C_RO_DUE]
    if due == 0:
        return n
    ctr[C_RO_DUE] = 0
    m = due - 1
    for a in range(acct_head.shape[0]):
        if pos[a, m]["ro_n"] == 0:
            continue
        s = acct_head[a]
        while s != -1:
            nxt = orders[s]["anext"]
            if (orders[s]["market"] == m and (orders[s]["flags"] & FL_REDUCE_ONLY) != 0
                    and closable_lots(pos, a, m, orders[s]["side"]) == 0):
                n = cancel_resting(ev, n, cmd, ts, E_CANCELLED, CR_REDUCE_ONLY, orders, mkt, lvl_qty, lvl_head,
                                   lvl_tail, bits, summ, best, count, acct_head, acct_tail, acct_count, free, heap,
                                   ctr, acc, pos, s, True)
            s = nxt
    return n


@njit(cache=True, _nrt=False)
def cancel_all_stale_reduce_only(ev, n, cmd, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                                 acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos):
    """Every market at once, after closes that bypass matching (auto-deleveraging may empty
    positions in several markets): each reduce-only order with nothing left to reduce is
    cancelled, by ascending account, then oid (an account's orders are listed in oid order).
    O(accounts + resting orders)."""
    ctr[C_RO_DUE] = 0
    if ctr[C_RO] == 0:
        return n
    for a in range(acct_head.shape[0]):
        s = acct_head[a]
        while s != -1:
            nxt = orders[s]["anext"]
            if ((orders[s]["flags"] & FL_REDUCE_ONLY) != 0
                    and closable_lots(pos, a, orders[s]["market"], orders[s]["side"]) == 0):
                n = cancel_resting(ev, n, cmd, ts, E_CANCELLED, CR_REDUCE_ONLY, orders, mkt, lvl_qty, lvl_head,
                                   lvl_tail, bits, summ, best, count, acct_head, acct_tail, acct_count, free, heap,
                                   ctr, acc, pos, s, True)
            s = nxt
    return n
