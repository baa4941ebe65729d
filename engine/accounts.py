"""Account commands: deposit, withdraw, set leverage (docs/risk.md).

Each checks everything first and changes nothing on a reject; an accepted command emits one
event. Amounts are atoms (``size`` field of the record), leverage an integer.
"""

from __future__ import annotations

from numba import njit

from engine.book import C_DEPOSITS, C_RISK, C_WITHDRAWALS
from engine.certificates import cert_void
from engine.emit import emit, emit_reject
from engine.kernel_consts import (
    E_BALANCE,
    E_LEVERAGE,
    INT64_MAX,
    PPM,
    R_AMOUNT_INVALID,
    R_LEVERAGE_INVALID,
    R_LEVERAGE_NEEDS_MARGIN,
    R_RISK_DISABLED,
    R_UNKNOWN_ACCOUNT,
    R_UNKNOWN_MARKET,
    R_WITHDRAW_TOO_LARGE,
)
from engine.margin import max_leverage
from engine.risk import (
    MAX_AMOUNT_ATOMS,
    MAX_COLLATERAL_ATOMS,
    WITHDRAW_NOTIONAL_PPM,
    ceil_div,
    equity_atoms,
    position_notional,
    total_im,
)


@njit(cache=True, _nrt=False, inline="always")
def account_code(c, acct_head, ctr):
    if c["pre_reject"] != 0:
        return c["pre_reject"]
    if ctr[C_RISK] == 0:
        return R_RISK_DISABLED
    a = c["account"]
    if a < 0 or a >= acct_head.shape[0]:
        return R_UNKNOWN_ACCOUNT
    return 0


@njit(cache=True, _nrt=False, inline="always")
def account_market_code(c, mkt, acct_head, ctr):
    """``account_code``, then ``R_UNKNOWN_MARKET`` for a market the engine does not have."""
    code = account_code(c, acct_head, ctr)
    if code == 0 and (c["market"] < 0 or c["market"] >= mkt.shape[0]):
        return R_UNKNOWN_MARKET
    return code


@njit(cache=True, _nrt=False)
def do_deposit(c, i, ev, n, mkt, acct_head, ctr, acc, pos):
    a = c["account"]
    code = account_code(c, acct_head, ctr)
    amount = c["size"]
    if code == 0 and (amount <= 0 or amount > MAX_AMOUNT_ATOMS or acc[a]["collateral"] > MAX_COLLATERAL_ATOMS - amount
                      or ctr[C_DEPOSITS] > INT64_MAX - amount):
        code = R_AMOUNT_INVALID
    if code != 0:
        return emit_reject(ev, n, i, c["ts"], -1, a, 0, code)
    acc[a]["collateral"] += amount
    cert_void(acc, a)
    ctr[C_DEPOSITS] += amount
    return emit(ev, n, E_BALANCE, i, c["ts"], -1, a, 0, 0, 0, amount, acc[a]["collateral"], 0, 0)


@njit(cache=True, _nrt=False)
def withdraw_floor(pos, mkt, a):
    """max(Σ IM the cross collateral backs, 10% of the cross positions' notional, rounded up)."""
    notional = 0
    for m in range(mkt.shape[0]):
        if pos[a, m]["iso"] == 0:
            notional += position_notional(pos, mkt, a, m)
    im = total_im(pos, mkt, a)
    q = notional // PPM
    r = notional % PPM
    tenth = q * WITHDRAW_NOTIONAL_PPM + ceil_div(r * WITHDRAW_NOTIONAL_PPM, PPM)
    return im if im > tenth else tenth


@njit(cache=True, _nrt=False)
def do_withdraw(c, i, ev, n, mkt, acct_head, ctr, acc, pos):
    a = c["account"]
    code = account_code(c, acct_head, ctr)
    amount = c["size"]
    if code == 0 and (amount <= 0 or amount > MAX_AMOUNT_ATOMS):
        code = R_AMOUNT_INVALID
    if code == 0:
        if amount > acc[a]["collateral"] or equity_atoms(acc, pos, mkt, a) - amount < withdraw_floor(pos, mkt, a):
            code = R_WITHDRAW_TOO_LARGE
    if code != 0:
        return emit_reject(ev, n, i, c["ts"], -1, a, 0, code)
    acc[a]["collateral"] -= amount
    cert_void(acc, a)
    ctr[C_WITHDRAWALS] += amount
    return emit(ev, n, E_BALANCE, i, c["ts"], -1, a, 0, 0, 0, -amount, acc[a]["collateral"], 0, 0)


@njit(cache=True, _nrt=False)
def do_set_leverage(c, i, ev, n, mkt, acct_head, ctr, acc, pos):
    a = c["account"]
    m = c["market"]
    lev = c["size"]
    code = account_market_code(c, mkt, acct_head, ctr)
    if code == 0:
        cap = max_leverage(position_notional(pos, mkt, a, m), mkt[m]["tier_lo"], mkt[m]["tier_lev"])
        if lev < 1 or lev > cap:
            code = R_LEVERAGE_INVALID
    if code == 0:
        old = pos[a, m]["lev"]
        before = total_im(pos, mkt, a)
        pos[a, m]["lev"] = lev
        after = total_im(pos, mkt, a)
        if after > before and equity_atoms(acc, pos, mkt, a) < after:
            pos[a, m]["lev"] = old
            code = R_LEVERAGE_NEEDS_MARGIN
    if code != 0:
        return emit_reject(ev, n, i, c["ts"], m, a, 0, code)
    return emit(ev, n, E_LEVERAGE, i, c["ts"], m, a, 0, 0, 0, lev, 0, 0, 0)
