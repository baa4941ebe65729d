"""Funding on the clock (mechanics.md §4, docs/risk.md): premium samples every 5 s, the
predicted rate after each sample, and the hourly settlement over every open position in one
pass.

Per market and Tick: if the tick reaches ``next_sample``, one premium sample is taken from the
book's impact prices (``engine.impact``) against the oracle and ``next_sample`` moves to the
next 5 s boundary after the tick (a long gap between ticks gives one sample, not many). If the
tick reaches ``next_funding`` (an hour boundary), the hour's rate is fixed from the mean
premium (no samples: premium 0, so the rate is the interest term alone) and every position
in the market is paid: ``funding_payment_atoms`` rounds each credit down (payers pay the exact
amount rounded up, receivers get it rounded down); ``−Σ credits ≥ 0`` goes to the insurance
fund, so the system never pays out more than it takes in. An isolated position is paid into
(or pays from) its own margin bucket. While a market is dark its rate
follows its ``funding_dark`` rule (``dark_rate``), for the predicted rate and the settlement.
"""

from __future__ import annotations

from numba import njit

from engine.certificates import cert_pay
from engine.emit import emit
from engine.funding import (
    funding_payment_atoms,
    funding_rate_ppb,
    premium_mean_ppb,
    premium_ppb,
)
from engine.impact import impact_price_ticks
from engine.kernel_consts import E_FUNDING, E_FUNDING_RATE, FD_PAUSED, FD_SCALED
from engine.modes import is_dark

FUNDING_SAMPLE_NS = 5_000_000_000
FUNDING_PERIOD_NS = 3_600_000_000_000


@njit(cache=True, _nrt=False, inline="always")
def next_boundary(ts, period):
    """The first multiple of ``period`` strictly after ``ts``."""
    return (ts // period + 1) * period


@njit(cache=True, _nrt=False)
def sample_premium(mkt, lvl_qty, bits, summ, best, m, ts):
    """Take one premium sample if due; update the predicted rate. Returns nothing."""
    if ts < mkt[m]["next_sample"]:
        return
    ntl = mkt[m]["imp_ntl"]
    ib = impact_price_ticks(mkt, lvl_qty, bits, summ, best, m, 0, ntl)
    ia = impact_price_ticks(mkt, lvl_qty, bits, summ, best, m, 1, ntl)
    mkt[m]["prem_sum"] += premium_ppb(ib, ia, mkt[m]["oracle"])
    mkt[m]["prem_n"] += 1
    mkt[m]["next_sample"] = next_boundary(ts, FUNDING_SAMPLE_NS)
    mkt[m]["rate_ppb"] = dark_rate(mkt, m, funding_rate_ppb(premium_mean_ppb(mkt[m]["prem_sum"], mkt[m]["prem_n"]),
                                                            mkt[m]["fund_ppm"]))


@njit(cache=True, _nrt=False, inline="always")
def dark_rate(mkt, m, rate_ppb):
    """The hourly rate under the market's ``funding_dark`` rule while it is dark (INTERNAL or
    REOPENING): unchanged, halved (toward zero) or 0. A mode only exists with modes on."""
    if not is_dark(mkt, m):
        return rate_ppb
    if mkt[m]["fund_dark"] == FD_SCALED:
        return rate_ppb // 2 if rate_ppb >= 0 else -((-rate_ppb) // 2)
    if mkt[m]["fund_dark"] == FD_PAUSED:
        return 0
    return rate_ppb


@njit(cache=True, _nrt=False)
def settle_funding(ev, n, i, ts, mkt, acc, pos):
    """Pay every position of the markets whose hour has ended (``due`` = 1), in one pass
    over the accounts (ascending account, then market); then one FUNDING_RATE event per
    settled market with its remainder, booked to the insurance fund."""
    nm = mkt.shape[0]
    any_due = False
    for m in range(nm):
        mkt[m]["due"] = 0
        if mkt[m]["next_funding"] != 0 and mkt[m]["oracle"] > 0 and ts >= mkt[m]["next_funding"]:
            mkt[m]["due"] = 1
            rate = 0
            if mkt[m]["prem_n"] > 0:
                rate = funding_rate_ppb(premium_mean_ppb(mkt[m]["prem_sum"], mkt[m]["prem_n"]), mkt[m]["fund_ppm"])
            else:
                rate = funding_rate_ppb(0, mkt[m]["fund_ppm"])
            mkt[m]["rate_ppb"] = dark_rate(mkt, m, rate)
            mkt[m]["prem_sum"] = 0  # reused below as the market's Σ credits
            mkt[m]["prem_n"] = 0
            any_due = True
    if not any_due:
        return n
    insurance = acc.shape[0] - 1
    for a in range(acc.shape[0]):
        if acc[a]["npos"] == 0:
            continue
        for m in range(nm):
            size = pos[a, m]["size"]
            if size == 0 or mkt[m]["due"] == 0:
                continue
            oracle = mkt[m]["oracle"]
            credit = funding_payment_atoms(size, oracle, mkt[m]["atl"], mkt[m]["rate_ppb"])
            if pos[a, m]["iso"] != 0:
                pos[a, m]["margin"] += credit  # an isolated position's funding goes through its bucket
            else:
                acc[a]["collateral"] += credit
            cert_pay(acc, a, credit)
            pos[a, m]["funding"] += credit
            mkt[m]["prem_sum"] += credit
            n = emit(ev, n, E_FUNDING, i, ts, m, a, mkt[m]["rate_ppb"], 0, oracle, size, credit, 0, 0)
    for m in range(nm):
        if mkt[m]["due"] == 0:
            continue
        remainder = -mkt[m]["prem_sum"]
        acc[insurance]["collateral"] += remainder
        mkt[m]["prem_sum"] = 0
        mkt[m]["due"] = 0
        mkt[m]["next_funding"] = next_boundary(ts, FUNDING_PERIOD_NS)
        n = emit(ev, n, E_FUNDING_RATE, i, ts, m, -1, mkt[m]["rate_ppb"], 0, mkt[m]["oracle"], 0, remainder, 0, 0)
    return n
