"""Auto-deleveraging: what the insurance fund cannot cover of a bankruptcy (mechanics.md §5.4,
docs/risk.md "Auto-deleveraging").

Right after a backstop of account ``a`` (the fund took its positions at the mark and its
collateral ``left``), the amount the fund cannot cover is

    need = min(−equity of the fund, −left)

(nothing when ``left ≥ 0`` or the fund's equity is still ≥ 0). It is collected by closing the
positions just taken, markets in id order, against opposite positions of other accounts:

* **Ranking.** Accounts (not the fund) with a position of the opposite sign and equity > 0
  (an isolated position's own equity, bucket + uPnL, which also pays its share),
  best first by ``uPnL of the position at the mark / equity of the account`` descending —
  the PnL ratio on the mark value times the effective leverage, ``(uPnL/V)·(V/equity)`` —
  compared exactly (``engine.liquidation.ratio_cmp``), ties by ascending account.
* **Close.** ``q = min(|its position|, lots left)`` closes at the mark between the fund and
  the counterparty, with no fee: neither equity moves.
* **Share.** The counterparty pays ``⌈need·q / lots left⌉`` atoms (rounded up, against it),
  but never more than its equity; ``need`` and the lots left shrink and the next counterparty
  is asked for its share of what is still needed. When the last lots close, the last share
  is exactly what is left, so the fund gets exactly ``need`` and nothing more.

Closing at the mark and paying the share is the same as closing at the price that makes
the fund whole, ``mark ± need/(lots left·atl)``; the atoms make it exact. One LIQUIDATION
event (step ADL) per counterparty close: account, market, its closing side, price = mark,
size = its signed lots closed, remaining = atoms paid.

Bounds: lots fit ``MAX_POSITION_LOTS`` (two multiply inside int64); no other product is taken.
Known limitations: each counterparty is found by a scan over every account, O(accounts ×
markets) per close; ADL is rare, so this is not a hot path.
"""

from __future__ import annotations

from numba import njit

from engine.certificates import cert_void
from engine.emit import emit
from engine.kernel_consts import E_LIQUIDATION, LQ_ADL
from engine.liquidation import pro_rata_ceil, ratio_cmp
from engine.risk import apply_fill, equity_atoms, iso_equity_atoms


@njit(cache=True, _nrt=False, inline="always")
def scope_equity(acc, pos, mkt, c, m):
    """The equity that backs ``c``'s position in ``m``: the account's cross equity, or the
    position's own (bucket + uPnL) when it is isolated."""
    if pos[c, m]["iso"] != 0:
        return iso_equity_atoms(pos, mkt, c, m)
    return equity_atoms(acc, pos, mkt, c)


@njit(cache=True, _nrt=False)
def best_counterparty(acc, pos, mkt, m, sign):
    """The first account in ADL order with a position of sign ``−sign`` in ``m`` and equity
    > 0, or −1. The liquidated account has no position left, so it is never chosen."""
    best = -1
    best_upnl = 0
    best_eq = 1
    mark = mkt[m]["mark"]
    atl = mkt[m]["atl"]
    for c in range(acc.shape[0] - 1):
        size = pos[c, m]["size"]
        if size == 0 or (size > 0) == (sign > 0):
            continue
        eq = scope_equity(acc, pos, mkt, c, m)
        if eq <= 0:
            continue
        upnl = size * mark * atl - pos[c, m]["cost"]
        if best < 0 or ratio_cmp(upnl, eq, best_upnl, best_eq) > 0:
            best = c
            best_upnl = upnl
            best_eq = eq
    return best


@njit(cache=True, _nrt=False)
def deleverage_market(ev, n, i, ts, mkt, ctr, acc, pos, m, taken, need):
    """Close up to ``|taken|`` lots of the fund's position in ``m`` (no more than it still holds
    on that side) against ranked counterparties; returns (n, atoms still needed)."""
    fund = acc.shape[0] - 1
    sign = 1 if taken > 0 else -1
    held = sign * pos[fund, m]["size"]
    left = sign * taken
    if held < left:
        left = held
    mark = mkt[m]["mark"]
    fund_side = 1 if sign > 0 else 0
    while left > 0 and need > 0:
        c = best_counterparty(acc, pos, mkt, m, sign)
        if c < 0:
            break
        mag = -sign * pos[c, m]["size"]
        q = mag if mag < left else left
        paid = pro_rata_ceil(need, q, left)
        eq = scope_equity(acc, pos, mkt, c, m)  # the close at the mark below moves no equity
        if paid > eq:
            paid = eq if eq > 0 else 0
        cert_void(acc, c)
        if pos[c, m]["iso"] != 0:
            pos[c, m]["margin"] -= paid  # before the close, which may release the bucket
        else:
            acc[c]["collateral"] -= paid
        acc[fund]["collateral"] += paid
        apply_fill(acc, pos, mkt, fund, m, fund_side, q, mark, 0, ctr)
        apply_fill(acc, pos, mkt, c, m, 1 - fund_side, q, mark, 0, ctr)
        need -= paid
        left -= q
        n = emit(ev, n, E_LIQUIDATION, i, ts, m, c, 0, 1 - fund_side, mark, -sign * q, paid, 0, LQ_ADL)
    return n, need


@njit(cache=True, _nrt=False)
def auto_deleverage(ev, n, first, i, ts, mkt, ctr, acc, pos):
    """After a backstop whose events are ``ev[first:n]`` (a BACKSTOP per position taken, in
    market order, then COLLATERAL with what was left): collect what the fund cannot cover."""
    fund = acc.shape[0] - 1
    left = ev[n - 1]["remaining"]
    need = -equity_atoms(acc, pos, mkt, fund)
    if -left < need:
        need = -left
    last = n - 1
    for k in range(first, last):
        if need <= 0:
            break
        n, need = deleverage_market(ev, n, i, ts, mkt, ctr, acc, pos, ev[k]["market"], ev[k]["size"], need)
    return n
