"""The dead-man switch (docs/risk.md, "Dead-man switch"): ``ScheduleCancel`` sets an account's
deadline; the first Tick at or after it cancels all the account's open orders.

Layout: the deadline is ``acc["dms_at"]`` (ns; 0 = none) and ``ctr[C_DMS]`` counts the
accounts that have one, so a Tick costs nothing while nobody has a deadline and O(accounts)
otherwise.

Invariant: ``ctr[C_DMS]`` equals the number of accounts with ``dms_at != 0``, and every
deadline is positive.
"""

from __future__ import annotations

from numba import njit

from engine.accounts import account_code
from engine.book import C_DMS
from engine.emit import emit, emit_reject
from engine.kernel_consts import CR_DEAD_MAN, E_CANCELLED, E_SCHEDULE, R_DEADLINE_IN_PAST
from engine.matching import cancel_resting

# Kernels take the engine's arrays positionally, always in this order:
# orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
# acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos.


@njit(cache=True, _nrt=False)
def do_schedule_cancel(c, i, ev, n, acct_head, ctr, acc):
    """Set (``expires_at`` > ts) or clear (0) the account's deadline; one SCHEDULE event."""
    a = c["account"]
    ts = c["ts"]
    at = c["expires_at"]
    code = account_code(c, acct_head, ctr)
    if code == 0 and (at < 0 or (at != 0 and at <= ts)):
        code = R_DEADLINE_IN_PAST
    if code != 0:
        return emit_reject(ev, n, i, ts, -1, a, 0, code)
    old = acc[a]["dms_at"]
    if old == 0 and at != 0:
        ctr[C_DMS] += 1
    elif old != 0 and at == 0:
        ctr[C_DMS] -= 1
    acc[a]["dms_at"] = at
    return emit(ev, n, E_SCHEDULE, i, ts, -1, a, 0, 0, 0, at, 0, 0, 0)


@njit(cache=True, _nrt=False)
def fire_deadlines(ev, n, cmd, ts, orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count,
                   acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos):
    """Each account (ascending) whose deadline is at or before ``ts``: clear the deadline and
    cancel its open orders in ascending oid (reason DEAD_MAN, each followed by its level)."""
    if ctr[C_DMS] == 0:
        return n
    for a in range(acct_head.shape[0]):
        at = acc[a]["dms_at"]
        if at == 0 or at > ts:
            continue
        acc[a]["dms_at"] = 0
        ctr[C_DMS] -= 1
        s = acct_head[a]
        while s != -1:
            nxt = orders[s]["anext"]
            n = cancel_resting(ev, n, cmd, ts, E_CANCELLED, CR_DEAD_MAN, orders, mkt, lvl_qty, lvl_head, lvl_tail,
                               bits, summ, best, count, acct_head, acct_tail, acct_count, free, heap, ctr, acc, pos,
                               s, True)
            s = nxt
    return n
