"""Margin certificates: a lower bound on each account's margin slack that lets the
liquidation scan skip, exactly, the accounts no mark move since can have made liquidatable
(docs/risk.md "Scan certificates").

An *epoch* is a snapshot of every market's mark (``mkt["ep_mark"][slot]``), serial
``ctr[C_EPOCH]`` (1, 2, …; slot ``serial & SLOT_MASK``), with ``ctr[C_EP_MOVE + slot]``: the
largest move of any mark away from the epoch's, in units of 2⁻³⁰ of the epoch's mark
(``MOVE_ONE`` is a 100% move; binary, so the scan's check needs shifts, not divisions),
rounded up, over every mark change since the epoch began (a running maximum, so never below
the move now).

An account's certificate (``acc["c_ep"]``, ``c_slack``, ``c_gross``), written by the scan for
an account it evaluated and did not liquidate, holds at its epoch's marks ``p`` and the
account's positions then:

* ``c_slack = min(cross equity − cross MM (if any cross position), each isolated position's
  equity − MM) − (number of positions)``;
* ``c_gross = Σ |size|·atl·p`` over every position.

Soundness: when every mark moved by at most ``move``/2³⁰ of the epoch's, a position's uPnL
falls by at most ``|size|·atl·|Δp|`` and its MM (slope at most 1/2 in notional, rounded up)
rises by at most ``|size|·atl·|Δp|/2 + 1``, so each component above falls by at most
``1.5·c_gross·move/2³⁰ + (positions)``. With ``half = ⌈c_gross·move/2³⁰⌉``, ``c_slack ≥
2·half`` proves every component is still ≥ 0: no cross check and no isolated check can find
the account below maintenance, so the scan may skip it and still liquidate exactly the
accounts, in exactly the order, of a scan that evaluates everyone (the reference engine's).

Anything that changes an account's collateral, sizes, costs, margin buckets or modes voids
its certificate (``cert_void``); funding, which only moves collateral, lowers ``c_slack`` by
what it takes (``cert_pay``). ``check_certificates`` (run with the invariants) recomputes every
live certificate and fails on one that is not a lower bound. Certificates are a cache: they
are not part of ``state_hash``, and voiding every one of them changes no event.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.book import C_EP_MOVE, C_EPOCH, CERT_EPOCHS
from engine.margin import maintenance_margin_atoms

EPOCHS = CERT_EPOCHS  # epochs alive at once (the ring of ``mkt["ep_mark"]``)
SLOT_MASK = EPOCHS - 1  # EPOCHS is a power of two: slot = serial & SLOT_MASK
MOVE_BITS = 30
MOVE_ONE = 1 << MOVE_BITS  # a move of 100%: that epoch's certificates prove nothing
MOVE_MASK = MOVE_ONE - 1
NEW_EPOCH_MOVE = MOVE_ONE // 500  # a scan starts a new epoch once the newest one's marks moved over 0.2%
INT64_MAX = (1 << 63) - 1
assert EPOCHS & SLOT_MASK == 0


@njit(cache=True, _nrt=False, inline="always")
def cert_void(acc, a):
    """Account ``a``'s state changed: the scan must evaluate it."""
    acc[a]["c_ep"] = 0


@njit(cache=True, _nrt=False, inline="always")
def cert_pay(acc, a, credit):
    """Collateral or a margin bucket of ``a`` moved by ``credit`` (funding): the slack falls
    by at most what was taken; a credit may raise only the component it went to, so it is
    not counted."""
    if credit < 0:
        acc[a]["c_slack"] += credit


@njit(cache=True, _nrt=False, inline="always")
def move_units(base, mark):
    """⌈|mark − base|·2³⁰ / base⌉ (an upper bound where that product would overflow), at least
    ``MOVE_ONE`` when the move is 100% or more or ``base`` is not a price."""
    if mark == base:
        return 0
    if base <= 0:
        return MOVE_ONE
    d = mark - base if mark > base else base - mark
    if d >= base:
        return MOVE_ONE
    if d <= INT64_MAX >> MOVE_BITS:
        return -((-(d << MOVE_BITS)) // base)
    return -((-d) // (base >> MOVE_BITS))  # base > d ≥ 2³³ here, so base >> 30 ≥ 8


@njit(cache=True, _nrt=False)
def note_mark(mkt, ctr, m):
    """Market ``m``'s mark changed: every live epoch's largest move grows to cover it."""
    cur = ctr[C_EPOCH]
    mark = mkt[m]["mark"]
    for k in range(EPOCHS):
        serial = cur - k
        if serial < 1:
            return
        slot = serial & SLOT_MASK
        dev = move_units(mkt[m]["ep_mark"][slot], mark)
        if dev > ctr[C_EP_MOVE + slot]:
            ctr[C_EP_MOVE + slot] = dev


@njit(cache=True, _nrt=False)
def begin_scan(mkt, ctr):
    """Before a scan: a new epoch at the current marks when there is none yet or the newest
    one's marks have moved more than ``NEW_EPOCH_MOVE`` (the oldest epoch's certificates lapse)."""
    cur = ctr[C_EPOCH]
    if cur != 0 and ctr[C_EP_MOVE + (cur & SLOT_MASK)] <= NEW_EPOCH_MOVE:
        return
    cur += 1
    slot = cur & SLOT_MASK
    for m in range(mkt.shape[0]):
        mkt[m]["ep_mark"][slot] = mkt[m]["mark"]
    ctr[C_EP_MOVE + slot] = 0
    ctr[C_EPOCH] = cur


@njit(cache=True, _nrt=False, inline="always")
def certified_safe(acc, ctr, a):
    """True when ``a``'s certificate proves it is above maintenance everywhere at the current
    marks; False when it has none, its epoch lapsed, or the marks moved too far for it."""
    ep = acc[a]["c_ep"]
    cur = ctr[C_EPOCH]
    if ep == 0 or ep <= cur - EPOCHS:
        return False
    move = ctr[C_EP_MOVE + (ep & SLOT_MASK)]
    if move >= MOVE_ONE:
        return False
    g = acc[a]["c_gross"]
    half = (g >> MOVE_BITS) * move + (((g & MOVE_MASK) * move + MOVE_MASK) >> MOVE_BITS)  # ⌈g·move/2³⁰⌉
    return acc[a]["c_slack"] - half >= half


@njit(cache=True, _nrt=False)
def assess(acc, pos, mkt, a, slot):
    """One pass over ``a``'s positions: (cross equity, cross MM) at the current marks, exactly
    as ``engine.risk.equity_atoms`` and ``total_mm``; then the certificate's (slack, gross, ok)
    at epoch ``slot``'s marks (module docstring), ``ok`` False when a market it holds had no
    mark at the epoch. A position whose mark is still the epoch's reuses its notional and MM,
    so right after a new epoch the scan certifies at no cost beyond its evaluation."""
    ok = True
    eq = acc[a]["collateral"]
    mm = 0
    ceq = eq
    cmm = 0
    cross = False
    worst = INT64_MAX
    gross = 0
    npos = 0
    for m in range(mkt.shape[0]):
        size = pos[a, m]["size"]
        if size == 0:
            continue
        atl = mkt[m]["atl"]
        mag = size if size > 0 else -size
        mark = mkt[m]["mark"]
        ntl = mag * mark * atl
        mmm = maintenance_margin_atoms(ntl, mkt[m]["tier_lo"], mkt[m]["tier_lev"])
        upnl = size * mark * atl - pos[a, m]["cost"]
        iso = pos[a, m]["iso"] != 0
        if not iso:
            eq += upnl
            mm += mmm
        if not ok:
            continue
        epoch_mark = mkt[m]["ep_mark"][slot]
        if epoch_mark <= 0:
            ok = False
            continue
        if epoch_mark != mark:
            ntl = mag * epoch_mark * atl
            mmm = maintenance_margin_atoms(ntl, mkt[m]["tier_lo"], mkt[m]["tier_lev"])
            upnl = size * epoch_mark * atl - pos[a, m]["cost"]
        gross += ntl
        npos += 1
        if iso:
            v = pos[a, m]["margin"] + upnl - mmm
            if v < worst:
                worst = v
        else:
            ceq += upnl
            cmm += mmm
            cross = True
    if cross and ceq - cmm < worst:
        worst = ceq - cmm
    return eq, mm, worst - npos, gross, ok


@njit(cache=True, _nrt=False, inline="always")
def store(acc, ctr, a, slack, gross, ok):
    """Write what ``assess`` found as ``a``'s certificate at the newest epoch (void if not ``ok``)."""
    if not ok:
        cert_void(acc, a)
        return
    acc[a]["c_ep"] = ctr[C_EPOCH]
    acc[a]["c_slack"] = slack
    acc[a]["c_gross"] = gross


@njit(cache=True, _nrt=False)
def certify(acc, pos, mkt, ctr, a):
    """Write ``a``'s certificate at the newest epoch (or void it when there is none yet)."""
    if ctr[C_EPOCH] == 0:
        cert_void(acc, a)
        return
    _, _, slack, gross, ok = assess(acc, pos, mkt, a, ctr[C_EPOCH] & SLOT_MASK)
    store(acc, ctr, a, slack, gross, ok)


@njit(cache=True, _nrt=False)
def check_certificates(acc, pos, mkt, ctr):
    """The first account whose live certificate is not a lower bound of what ``certify``
    would write now (slack above, or gross below, the recomputed values), or whose epoch's
    largest move is below a market's move now; −1 when all hold. For the invariants."""
    cur = ctr[C_EPOCH]
    for k in range(EPOCHS):
        serial = cur - k
        if serial < 1:
            break
        slot = serial & SLOT_MASK
        for m in range(mkt.shape[0]):
            if move_units(mkt[m]["ep_mark"][slot], mkt[m]["mark"]) > ctr[C_EP_MOVE + slot]:
                return np.int64(-2 - m)
    for a in range(acc.shape[0] - 1):
        ep = acc[a]["c_ep"]
        if ep == 0 or ep <= cur - EPOCHS:
            continue
        if ep > cur:
            return np.int64(a)
        _, _, slack, gross, ok = assess(acc, pos, mkt, a, ep & SLOT_MASK)
        if not ok or acc[a]["c_slack"] > slack or acc[a]["c_gross"] < gross:
            return np.int64(a)
    return np.int64(-1)
