"""Accounts, positions, fees and margin as numba kernels (docs/risk.md, mechanics.md §2).

Layout
------
* ``acc`` (``ACCOUNT_DTYPE``): one record per account plus one more at the end, the
  insurance fund (``acc.shape[0] - 1``), which no command can address.
* ``pos`` (``POSITION_DTYPE``): a dense ``[account, market]`` table. ``size`` is signed lots;
  ``cost`` the signed entry cost basis in atoms (``Σ size·price·atl`` of what is open, so a
  short has a negative cost); ``bid_*``/``ask_*`` the account's resting orders in that
  market (lots, and notional at their limit prices in atoms), reduce-only ones included;
  ``ro_n`` how many of those are reduce-only.
* ``acc["dms_at"]``: the account's dead-man deadline (ns; 0 = none), ``engine.dead_man``.
* ``pos["iso"]``/``pos["margin"]``: the position's margin mode and, when isolated, its own
  margin bucket (docs/risk.md "Isolated margin"). The account's cross figures (``equity_atoms``,
  ``total_mm``) leave isolated positions out; ``total_im`` counts, for an isolated market,
  only the IM its orders add above the position's own.
* The fee account is the counter ``ctr[C_FEES]``.

Invariants (``engine.invariants``)
----------
* Conservation to the atom: ``Σ collateral + Σ margin + fees − Σ cost = deposits −
  withdrawals`` (``Σ uPnL`` at any common price equals ``−Σ cost`` because long and short
  sizes match).
* A flat or cross position has ``margin == 0``; ``ctr[C_ISO]`` counts the isolated pairs.
* Long lots equal short lots per market and equal ``mkt["oi"]``.
* ``bid_*``/``ask_*`` equal the sums over the account's resting orders.
* A resting reduce-only order's account holds a position on the other side of it in that
  market (between commands; ``engine.reduce_only``).

Bounds: a position's notional at ``max_price`` is at most ``2^59`` atoms and its size at
most ``MAX_POSITION_LOTS`` (so two sizes multiply inside int64); an account's total at the
markets' ``max_price`` is at most ``2^62`` atoms; the pre-trade check enforces both, so
equity, costs and margins never overflow.

Known limitations: checks are O(markets) per order because positions are dense.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.book import C_FEES, C_NPOS, C_RO_DUE
from engine.certificates import cert_void
from engine.kernel_consts import PPM, R_OI_CAP
from engine.margin import initial_margin_atoms, maintenance_margin_atoms, max_leverage
from engine.modes import is_dark
from engine.pricing import OI_CAP_DARK_PPB, dark_oi_cap_atoms

ACCOUNT_DTYPE = np.dtype(
    [
        ("collateral", np.int64),
        ("npos", np.int64),
        ("dms_at", np.int64),
        # the account's margin certificate (engine.certificates): epoch serial (0: none), slack, gross
        ("c_ep", np.int64),
        ("c_slack", np.int64),
        ("c_gross", np.int64),
    ],
    align=True,
)

POSITION_DTYPE = np.dtype(
    [
        ("size", np.int64),
        ("cost", np.int64),
        ("lev", np.int64),
        ("bid_lots", np.int64),
        ("bid_ntl", np.int64),
        ("ask_lots", np.int64),
        ("ask_ntl", np.int64),
        ("realized", np.int64),
        ("funding", np.int64),
        ("liq_ts", np.int64),
        ("ro_n", np.int64),  # resting reduce-only orders of the account in the market
        ("iso", np.int64),  # MarginMode: 0 cross, 1 isolated
        ("margin", np.int64),  # an isolated position's own margin bucket (atoms); 0 when flat or cross
    ],
    align=True,
)

ACCOUNT_TOTAL_CAP_ATOMS = 1 << 62
MAX_AMOUNT_ATOMS = 1 << 60
MAX_COLLATERAL_ATOMS = 1 << 61
WITHDRAW_NOTIONAL_PPM = 100_000  # equity must stay ≥ 10% of position notional


@njit(cache=True, _nrt=False, inline="always")
def ceil_div(num, den):
    """⌈num / den⌉ for ``den > 0`` (any sign of ``num``)."""
    return -((-num) // den)


@njit(cache=True, _nrt=False, inline="always")
def fee_atoms(notional_atoms, fee_ppm):
    """Fee on a fill: a charge (ppm ≥ 0) is rounded up, a rebate (ppm < 0) is rounded down
    in magnitude; both against the trader. Split so ``notional·ppm`` never overflows."""
    mag = fee_ppm if fee_ppm >= 0 else -fee_ppm
    q = notional_atoms // PPM
    r = notional_atoms % PPM
    if fee_ppm >= 0:
        return q * mag + ceil_div(r * mag, PPM)
    return -(q * mag + (r * mag) // PPM)


# ---------------------------------------------------------------------------- exposure


@njit(cache=True, _nrt=False, inline="always")
def expo_add(pos, mkt, a, m, side, price, lots):
    """Add ``lots`` (signed) of a resting order at ``price`` to the account's order exposure."""
    ntl = lots * price * mkt[m]["atl"]
    if side == 0:
        pos[a, m]["bid_lots"] += lots
        pos[a, m]["bid_ntl"] += ntl
    else:
        pos[a, m]["ask_lots"] += lots
        pos[a, m]["ask_ntl"] += ntl


@njit(cache=True, _nrt=False, inline="always")
def expo_order(orders, mkt, pos, slot, lots):
    expo_add(pos, mkt, orders[slot]["account"], orders[slot]["market"], orders[slot]["side"],
             orders[slot]["price"], lots)


# ---------------------------------------------------------------------------- margin


@njit(cache=True, _nrt=False, inline="always")
def position_notional(pos, mkt, a, m):
    size = pos[a, m]["size"]
    mag = size if size >= 0 else -size
    return mag * mkt[m]["mark"] * mkt[m]["atl"]


@njit(cache=True, _nrt=False)
def market_im(pos, mkt, a, m):
    """Initial margin of the account's position and open orders in market ``m`` (atoms).

    Long side exposure = long position at mark + bids valued at max(their limit notional,
    their lots at mark); short side = short position at mark + asks at min(limit notional,
    lots at mark) (mechanics.md §2). IM = ⌈max(long, short) / lev⌉ with ``lev`` the
    account's leverage capped by the tier of that exposure (and, while the market is dark, by
    its ``dark_lev``: engine.modes). An order that only reduces the position leaves
    max(long, short) — and so IM — unchanged: it needs no margin.
    """
    p = pos[a, m]
    mark = mkt[m]["mark"]
    atl = mkt[m]["atl"]
    size = p["size"]
    longx = (size if size > 0 else 0) * mark * atl
    shortx = (-size if size < 0 else 0) * mark * atl
    at_mark = p["bid_lots"] * mark * atl
    longx += p["bid_ntl"] if p["bid_ntl"] > at_mark else at_mark
    at_mark = p["ask_lots"] * mark * atl
    shortx += p["ask_ntl"] if p["ask_ntl"] < at_mark else at_mark
    x = longx if longx > shortx else shortx
    if x == 0:
        return 0
    lev = p["lev"]
    cap = max_leverage(x, mkt[m]["tier_lo"], mkt[m]["tier_lev"])
    if is_dark(mkt, m) and mkt[m]["dark_lev"] < cap:
        cap = mkt[m]["dark_lev"]
    return initial_margin_atoms(x, lev if lev < cap else cap)


@njit(cache=True, _nrt=False)
def equity_atoms(acc, pos, mkt, a):
    """Cross equity: collateral + Σ uPnL at the mark (``size·mark·atl − cost``) of the cross
    positions (isolated ones have their own, ``iso_equity_atoms``)."""
    eq = acc[a]["collateral"]
    if acc[a]["npos"] == 0:
        return eq
    for m in range(mkt.shape[0]):
        size = pos[a, m]["size"]
        if size != 0 and pos[a, m]["iso"] == 0:
            eq += size * mkt[m]["mark"] * mkt[m]["atl"] - pos[a, m]["cost"]
    return eq


@njit(cache=True, _nrt=False)
def total_im(pos, mkt, a):
    """IM the cross collateral backs: every cross market's ``market_im``, and for an isolated
    market what its orders add above the position's own IM (which the bucket holds)."""
    total = 0
    for m in range(mkt.shape[0]):
        total += market_im(pos, mkt, a, m)
        if pos[a, m]["iso"] != 0:
            total -= position_im(pos, mkt, a, m)
    return total


@njit(cache=True, _nrt=False)
def total_mm(pos, mkt, a):
    """MM of the cross positions."""
    total = 0
    for m in range(mkt.shape[0]):
        if pos[a, m]["size"] != 0 and pos[a, m]["iso"] == 0:
            total += maintenance_margin_atoms(position_notional(pos, mkt, a, m), mkt[m]["tier_lo"], mkt[m]["tier_lev"])
    return total


# ---------------------------------------------------------------------------- isolated margin


@njit(cache=True, _nrt=False, inline="always")
def effective_lev(pos, mkt, a, m, notional_atoms):
    """The account's leverage in ``m`` capped by the tier of ``notional_atoms`` and, while the
    market is dark, by its ``dark_lev`` (as ``market_im``)."""
    lev = pos[a, m]["lev"]
    cap = max_leverage(notional_atoms, mkt[m]["tier_lo"], mkt[m]["tier_lev"])
    if is_dark(mkt, m) and mkt[m]["dark_lev"] < cap:
        cap = mkt[m]["dark_lev"]
    return lev if lev < cap else cap


@njit(cache=True, _nrt=False)
def position_im(pos, mkt, a, m):
    """IM of the position alone at the mark, ``⌈notional / lev⌉`` (rounded up: a charge)."""
    ntl = position_notional(pos, mkt, a, m)
    if ntl == 0:
        return 0
    return initial_margin_atoms(ntl, effective_lev(pos, mkt, a, m, ntl))


@njit(cache=True, _nrt=False, inline="always")
def iso_equity_atoms(pos, mkt, a, m):
    """An isolated position's equity: its bucket + its uPnL at the mark."""
    p = pos[a, m]
    return p["margin"] + p["size"] * mkt[m]["mark"] * mkt[m]["atl"] - p["cost"]


@njit(cache=True, _nrt=False, inline="always")
def position_mm(pos, mkt, a, m):
    """MM of one position at the mark (0 when flat), rounded up."""
    if pos[a, m]["size"] == 0:
        return 0
    return maintenance_margin_atoms(position_notional(pos, mkt, a, m), mkt[m]["tier_lo"], mkt[m]["tier_lev"])


@njit(cache=True, _nrt=False, inline="always")
def release_bucket(acc, pos, a, m):
    """A closed isolated position's bucket leaves it: to the cross collateral when ≥ 0, else
    (a loss beyond the bucket) to the insurance fund, which pays it: an isolated position
    never takes cross collateral. Returns the amount."""
    left = pos[a, m]["margin"]
    pos[a, m]["margin"] = 0
    if left >= 0:
        acc[a]["collateral"] += left
    else:
        acc[acc.shape[0] - 1]["collateral"] += left
    return left


@njit(cache=True, _nrt=False)
def within_limits(pos, mkt, a):
    """Every position of the account, with all its bids (or all its asks) filled, stays within
    the market's ``max_pos``; and Σ of those at the markets' max prices stays ≤ 2^62."""
    total = 0
    for m in range(mkt.shape[0]):
        p = pos[a, m]
        hi = p["size"] + p["bid_lots"]
        lo = p["size"] - p["ask_lots"]
        worst = hi if hi > -lo else -lo
        if worst > mkt[m]["max_pos"]:
            return False
        total += worst * mkt[m]["max_price"] * mkt[m]["atl"]  # ≤ 2^59 each
        if total > ACCOUNT_TOTAL_CAP_ATOMS:
            return False
    return True


@njit(cache=True, _nrt=False)
def oi_capped(pos, mkt, a, m, side):
    """With the order's exposure applied: the market has an open-interest cap (a quarter of it,
    ``OI_CAP_DARK_PPB``, while dark), its open interest at the mark has reached it, and the
    account's orders on ``side`` are more than the position they could close."""
    cap = mkt[m]["oi_cap"]
    if cap == 0:
        return False
    if is_dark(mkt, m):
        cap = dark_oi_cap_atoms(cap, OI_CAP_DARK_PPB)
    per_lot = mkt[m]["mark"] * mkt[m]["atl"]
    if mkt[m]["oi"] < ceil_div(cap, per_lot):  # oi·per_lot < cap, without the product
        return False
    size = pos[a, m]["size"]
    if side == 0:
        return not (size < 0 and pos[a, m]["bid_lots"] <= -size)
    return not (size > 0 and pos[a, m]["ask_lots"] <= size)


@njit(cache=True, _nrt=False, inline="always")
def closable_lots(pos, a, m, side):
    """Lots an order on ``side`` can take off the account's position in ``m`` before it
    reaches zero: the position's size when the order is on the other side of it, else 0."""
    size = pos[a, m]["size"]
    if side == 0:
        return -size if size < 0 else 0
    return size if size > 0 else 0


@njit(cache=True, _nrt=False)
def pretrade_code(acc, pos, mkt, a, m, side, price, lots, r_limit, r_margin, reduce_only):
    """0 if the account may add an order of ``lots`` at ``price``; else a reject code: a
    replacement of nothing (``replace_code`` with no old order)."""
    return replace_code(acc, pos, mkt, a, m, side, price, 0, price, lots, r_limit, r_margin, reduce_only)


@njit(cache=True, _nrt=False)
def replace_code(acc, pos, mkt, a, m, side, old_price, old_lots, price, lots, r_limit, r_margin, reduce_only):
    """0 if the account may replace its resting order (``old_*``; 0 lots for a new order) by
    one of ``lots`` at ``price``; else a reject code. The change is applied to the exposure
    tentatively and undone: the limits must hold with it, and if it raises the account's IM
    over the IM with the old order in place, equity must cover the new IM (so an amend that
    does not raise the IM, a smaller size say, never needs margin). More lots than before
    also meet the open-interest cap (``oi_capped``). A reduce-only order meets the limits
    alone: it cannot add to a position, so neither the cap nor margin applies."""
    before = total_im(pos, mkt, a)
    expo_add(pos, mkt, a, m, side, old_price, -old_lots)
    expo_add(pos, mkt, a, m, side, price, lots)
    code = 0
    if not within_limits(pos, mkt, a):
        code = r_limit
    elif reduce_only:
        code = 0
    elif lots > old_lots and oi_capped(pos, mkt, a, m, side):
        code = R_OI_CAP
    else:
        after = total_im(pos, mkt, a)
        if after > before and equity_atoms(acc, pos, mkt, a) < after:
            code = r_margin
    expo_add(pos, mkt, a, m, side, price, -lots)
    expo_add(pos, mkt, a, m, side, old_price, old_lots)
    return code


# ---------------------------------------------------------------------------- fills


@njit(cache=True, _nrt=False, inline="always")
def apply_fill(acc, pos, mkt, a, m, side, lots, price, fee, ctr):
    """One side of a fill: position, cost basis, realized PnL and the fee.

    Opening or adding adds ``±lots·price·atl`` to the cost. Reducing removes the pro-rata
    cost ``⌈cost·closing/|size|⌉`` (rounded up: the realized PnL ``cash − removed`` rounds
    against the trader; what is left stays in the cost of the remaining position, so nothing
    is created or lost) and books ``cash − removed`` to collateral. A flip closes the whole
    position first. ``cost = Q·|size| + R`` splits the product so it fits int64. Closing or
    flipping a position that has reduce-only orders sets ``C_RO_DUE`` to ``m + 1``: they are
    cancelled when the taker's matching is done (``engine.reduce_only``).

    An isolated position books its realized PnL and fee to its bucket instead; when it closes
    (or flips) the bucket is released (``release_bucket``); lots it opens or adds move their
    IM at the fill price, ``⌈lots·price·atl / lev⌉`` (``effective_lev`` of the new notional at
    that price; rounded up), from the cross collateral into the bucket, but never more than
    the collateral holds (never below zero).
    """
    cert_void(acc, a)
    p = pos[a, m]
    atl = mkt[m]["atl"]
    old = p["size"]
    s = 1 if side == 0 else -1
    new = old + s * lots
    iso = p["iso"] != 0
    realized = 0
    added = lots
    if old == 0 or (old > 0) == (s > 0):
        p["cost"] += s * lots * price * atl
    else:
        mag = old if old > 0 else -old
        closing = lots if lots < mag else mag
        if closing == mag:
            removed = p["cost"]
        else:
            q = p["cost"] // mag
            r = p["cost"] - q * mag
            removed = q * closing + ceil_div(r * closing, mag)
        realized = -s * closing * price * atl - removed
        p["cost"] -= removed
        p["realized"] += realized
        added = lots - closing
        if added > 0:
            p["cost"] += s * added * price * atl
    p["size"] = new
    if p["ro_n"] > 0 and (new == 0 or (old > 0) != (new > 0)):
        ctr[C_RO_DUE] = m + 1
    if iso:
        p["margin"] += realized - fee
        if old != 0 and (new == 0 or (old > 0) != (new > 0)):
            release_bucket(acc, pos, a, m)
        if added > 0:
            mag_new = new if new > 0 else -new
            im = initial_margin_atoms(added * price * atl, effective_lev(pos, mkt, a, m, mag_new * price * atl))
            have = acc[a]["collateral"]
            if im > have:
                im = have if have > 0 else 0
            acc[a]["collateral"] -= im
            p["margin"] += im
    else:
        acc[a]["collateral"] += realized - fee
    ctr[C_FEES] += fee
    if old == 0 and new != 0:
        acc[a]["npos"] += 1
        ctr[C_NPOS] += 1
    elif old != 0 and new == 0:
        acc[a]["npos"] -= 1
        ctr[C_NPOS] -= 1
    mkt[m]["oi"] += (new if new > 0 else 0) - (old if old > 0 else 0)


@njit(cache=True, _nrt=False)
def settle_fill(acc, pos, mkt, ctr, m, taker, taker_side, maker, lots, price):
    """Both sides of one fill: positions, PnL, the maker's order exposure, fees."""
    ntl = lots * price * mkt[m]["atl"]
    apply_fill(acc, pos, mkt, taker, m, taker_side, lots, price, fee_atoms(ntl, mkt[m]["taker_ppm"]), ctr)
    apply_fill(acc, pos, mkt, maker, m, 1 - taker_side, lots, price, fee_atoms(ntl, mkt[m]["maker_ppm"]), ctr)
    expo_add(pos, mkt, maker, m, 1 - taker_side, price, -lots)
