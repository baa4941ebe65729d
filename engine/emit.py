"""Writing events into the preallocated event buffer.

Each function writes one ``EVENT_DTYPE`` record at index ``n`` and returns ``n + 1``; the
caller guarantees room (``engine.kernel.event_bound``). Unused fields are written as 0.
"""

from __future__ import annotations

from numba import njit

from engine.kernel_consts import E_LEVEL, E_REJECTED


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
