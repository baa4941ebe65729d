"""Margin-mode commands: set a market's margin mode, move isolated margin (docs/risk.md
"Isolated margin", mechanics.md §2).

Each checks everything first and changes nothing on a reject; an accepted command emits one
``MARGIN`` event (reason = the mode, size = atoms moved into the bucket, remaining = the
bucket after). The bucket itself, the fills and the liquidation of an isolated position are
``engine.risk`` and ``engine.liquidator``.

* ``SetMarginMode`` (record ``size`` = ``MarginMode``): only while the account has no
  position and no open orders in the market; setting the mode it already has is accepted.
* ``AdjustMargin`` (record ``size`` = signed atoms): an open isolated position only. Adding
  needs ``amount ≤ collateral`` and cross ``equity − amount ≥ total_im``; removing needs
  ``amount ≤ bucket`` and the position's ``equity − amount ≥ its IM`` at the mark (both rounded
  against the trader: the IM is rounded up).
"""

from __future__ import annotations

from numba import njit

from engine.accounts import account_market_code
from engine.book import C_ISO
from engine.certificates import cert_void
from engine.emit import emit, emit_reject
from engine.kernel_consts import (
    E_MARGIN,
    MM_CROSS,
    MM_ISOLATED,
    R_MARGIN_ADD,
    R_MARGIN_AMOUNT_INVALID,
    R_MARGIN_MODE_INVALID,
    R_MARGIN_MODE_NOT_FLAT,
    R_MARGIN_REMOVE,
    R_NOT_ISOLATED,
)
from engine.risk import MAX_AMOUNT_ATOMS, equity_atoms, iso_equity_atoms, position_im, total_im


@njit(cache=True, _nrt=False)
def do_set_margin_mode(c, i, ev, n, mkt, acct_head, ctr, acc, pos):
    a = c["account"]
    m = c["market"]
    mode = c["size"]
    code = account_market_code(c, mkt, acct_head, ctr)
    if code == 0 and mode != MM_CROSS and mode != MM_ISOLATED:
        code = R_MARGIN_MODE_INVALID
    if code == 0:
        p = pos[a, m]
        if p["size"] != 0 or p["bid_lots"] != 0 or p["ask_lots"] != 0:
            code = R_MARGIN_MODE_NOT_FLAT
    if code != 0:
        return emit_reject(ev, n, i, c["ts"], m, a, 0, code)
    ctr[C_ISO] += mode - pos[a, m]["iso"]
    pos[a, m]["iso"] = mode
    cert_void(acc, a)
    return emit(ev, n, E_MARGIN, i, c["ts"], m, a, 0, 0, 0, 0, 0, 0, mode)


@njit(cache=True, _nrt=False)
def do_adjust_margin(c, i, ev, n, mkt, acct_head, ctr, acc, pos):
    a = c["account"]
    m = c["market"]
    amount = c["size"]
    code = account_market_code(c, mkt, acct_head, ctr)
    if code == 0 and (amount == 0 or amount > MAX_AMOUNT_ATOMS or amount < -MAX_AMOUNT_ATOMS):
        code = R_MARGIN_AMOUNT_INVALID
    if code == 0 and (pos[a, m]["iso"] == 0 or pos[a, m]["size"] == 0):
        code = R_NOT_ISOLATED
    if code == 0 and amount > 0:
        if amount > acc[a]["collateral"] or equity_atoms(acc, pos, mkt, a) - amount < total_im(pos, mkt, a):
            code = R_MARGIN_ADD
    if code == 0 and amount < 0:
        if -amount > pos[a, m]["margin"] or iso_equity_atoms(pos, mkt, a, m) + amount < position_im(pos, mkt, a, m):
            code = R_MARGIN_REMOVE
    if code != 0:
        return emit_reject(ev, n, i, c["ts"], m, a, 0, code)
    acc[a]["collateral"] -= amount
    pos[a, m]["margin"] += amount
    cert_void(acc, a)
    return emit(ev, n, E_MARGIN, i, c["ts"], m, a, 0, 0, 0, amount, pos[a, m]["margin"], 0, MM_ISOLATED)
