"""Writing events into the preallocated event buffer.

Each function writes one ``EVENT_DTYPE`` record at index ``n`` and returns ``n + 1``; the
caller guarantees room (``engine.kernel.event_bound``). Unused fields are written as 0.
"""

from __future__ import annotations

from numba import njit

from engine.kernel_consts import E_FILL, E_LEVEL, E_REJECTED


@njit(cache=True, _nrt=False, inline="always")
def emit(ev, n, kind, cmd, ts, market, account, oid, side, price, size, remaining, code, reason):
    return emit_record(ev, n, kind, cmd, ts, market, account, oid, side, price, size, remaining, code, reason, 0, 0)


@njit(cache=True, _nrt=False, inline="always")
def emit_fill(ev, n, cmd, ts, market, taker_account, taker_oid, taker_side, maker_account, maker_oid,
              price, size, maker_remaining):
    """A FILL: the taker in ``account``/``oid``/``side``, the maker in ``maker_*``, the
    maker's remaining lots after the fill in ``remaining``."""
    return emit_record(ev, n, E_FILL, cmd, ts, market, taker_account, taker_oid, taker_side, price, size,
                       maker_remaining, 0, 0, maker_account, maker_oid)


@njit(cache=True, _nrt=False, inline="always")
def emit_record(ev, n, kind, cmd, ts, market, account, oid, side, price, size, remaining, code, reason,
                maker_account, maker_oid):
    """Write every field of event ``n``; the one place that lays out an event record."""
    e = ev[n]
    e["kind"] = kind
    e["side"] = side
    e["reason"] = reason
    e["code"] = code
    e["cmd"] = cmd
    e["market"] = market
    e["account"] = account
    e["maker_account"] = maker_account
    e["oid"] = oid
    e["maker_oid"] = maker_oid
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
