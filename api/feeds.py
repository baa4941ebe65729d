"""Channel payloads built from engine events and engine queries (spec/gateway.md §2).

Layout
------
* ``market_info``: the ``market`` channel's payload, read from the engine between batches;
* ``position`` and ``account_state``: the ``positions`` and ``account`` payloads;
* ``trade``, ``user_fills``, ``user_funding``, ``liquidation``: one event row each;
* ``OrderBook`` (the publisher's ``OrderInfo`` table): what the engine's events do not
  repeat about an order (its side, original size and client order id).

Invariants
----------
* Every amount is exact: ticks, lots and atoms are turned into decimal strings by
  ``api.actions`` without rounding (entry prices excepted, see there).
* Fees are those the engine charges: ⌈notional·ppm / 10^6⌉ for the taker and the maker
  (a negative maker fee is a rebate rounded toward zero), zero when risk is off.

Known limitations
-----------------
* The ``session`` of a market comes from a callable the node may give (the oracle's
  calendar); without one it is derived from the engine's mode.
* A liquidation's book fills appear on ``trades`` and ``userFills``; its ``liquidations``
  entry gives the lots filled at the IOC's limit price, not each fill.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from api import protocol as p
from api.actions import Markets, ns_to_ms, rate, usd
from engine.codes import LiquidationStep, MarketMode, Side
from engine.pricing import MAX_RESETS

NS_PER_HOUR = 3600 * 1_000_000_000
PPM = 1_000_000

_SESSION_OF_MODE = {
    MarketMode.EXTERNAL: "regular", MarketMode.REOPENING: "regular", MarketMode.INTERNAL: "closed_off_hours",
    MarketMode.PRE_IPO: "internal_only", MarketMode.HALTED: "halted",
}
_DARK = (MarketMode.INTERNAL, MarketMode.PRE_IPO, MarketMode.REOPENING)


class Ev(NamedTuple):
    """One event row as Python integers, fields in ``EVENT_DTYPE`` order (``events.tolist()``)."""

    kind: int
    side: int
    reason: int
    code: int
    cmd: int
    market: int
    account: int
    maker_account: int
    oid: int
    maker_oid: int
    price: int
    size: int
    remaining: int
    ts: int


def side_name(side: int) -> str:
    return "buy" if side == Side.BUY else "sell"


def default_session(mode: MarketMode) -> str:
    return _SESSION_OF_MODE[mode]


def market_info(engine, markets: Markets, m: int, seq: int, ts_ns: int, last_funding_ppb: int | None,
                session: str | None = None) -> p.MarketInfo:
    view = engine.mode(m)
    rec = engine.mkt[m]
    price = lambda ticks: markets.price(m, ticks) if ticks > 0 else None  # noqa: E731
    band = None
    if view.mode in _DARK and view.ref > 0:
        band = p.Band(markets.price(m, view.ref), markets.price(m, view.band_low), markets.price(m, view.band_high),
                      max(0, MAX_RESETS - int(rec["res_up"])), max(0, MAX_RESETS - int(rec["res_dn"])))
    next_funding = int(rec["next_funding"]) or (ts_ns // NS_PER_HOUR + 1) * NS_PER_HOUR
    return p.MarketInfo(
        market=markets.symbol(m), seq=seq, time=ns_to_ms(ts_ns), mode=view.mode.name.lower(),
        session=session or default_session(view.mode), oracle=price(view.oracle), mark=price(view.mark),
        external=price(view.external), band=band, predictedFunding=rate(engine.predicted_rate_ppb(m)),
        lastFunding=None if last_funding_ppb is None else rate(last_funding_ppb),
        nextFundingTime=ns_to_ms(next_funding), openInterest=markets.size(m, int(rec["oi"])),
    )


def fee_atoms(notional_atoms: int, fee_ppm: int) -> int:
    """⌈notional·ppm / 10^6⌉: a charge rounds up, a rebate (ppm < 0) toward zero."""
    return -((-notional_atoms * fee_ppm) // PPM)


def trade(markets: Markets, ev: Ev, trade_id: int) -> p.Trade:
    m = (ev.market)
    return p.Trade(trade_id, markets.price(m, (ev.price)), markets.size(m, (ev.size)),
                   side_name((ev.side)), ns_to_ms((ev.ts)))


def user_fills(engine, markets: Markets, ev: Ev, trade_id: int, taker_cloid: str | None,
               maker_cloid: str | None) -> tuple[p.UserFill, p.UserFill]:
    """The taker's fill and the maker's fill of one FILL event."""
    m, price, size = (ev.market), (ev.price), (ev.size)
    notional = price * size * markets.atl[m]
    taker_ppm, maker_ppm = markets.fee_ppm[m] if engine.config.risk else (0, 0)
    taker_fee, maker_fee = fee_atoms(notional, taker_ppm), fee_atoms(notional, maker_ppm)
    side, ts = (ev.side), ns_to_ms((ev.ts))
    px, sz = markets.price(m, price), markets.size(m, size)
    taker = p.UserFill(markets.symbol(m), trade_id, (ev.oid), side_name(side), px, sz, usd(taker_fee),
                       "taker", ts, taker_cloid)
    maker = p.UserFill(markets.symbol(m), trade_id, (ev.maker_oid), side_name(1 - side), px, sz,
                       usd(maker_fee), "maker", ts, maker_cloid)
    return taker, maker


def user_funding(markets: Markets, ev: Ev) -> p.UserFunding:
    m = (ev.market)
    return p.UserFunding(markets.symbol(m), rate((ev.oid)), markets.size(m, (ev.size)),
                         markets.price(m, (ev.price)), usd((ev.remaining)), ns_to_ms((ev.ts)))


_LIQ_KINDS = {LiquidationStep.BOOK: "liquidation", LiquidationStep.BACKSTOP: "backstop", LiquidationStep.ADL: "adl"}


def liquidation(markets: Markets, ev: Ev) -> p.Liquidation | None:
    """BOOK (lots filled at the IOC's limit), BACKSTOP and ADL steps; others are not public."""
    step = (ev.reason)
    kind = _LIQ_KINDS.get(step)
    if kind is None:
        return None
    m = (ev.market)
    if step == LiquidationStep.BOOK:
        lots = (ev.remaining)
        if lots == 0:
            return None
        closing_long = (ev.side) == Side.SELL
    elif step == LiquidationStep.BACKSTOP:
        lots = (ev.size)
        closing_long = lots > 0
    else:  # ADL: the counterparty's signed lots closed
        lots = (ev.size)
        closing_long = lots > 0
    return p.Liquidation(markets.symbol(m), kind, "long" if closing_long else "short", markets.price(m, (ev.price)),
                         markets.size(m, abs(lots)), ns_to_ms((ev.ts)))


def position(engine, markets: Markets, account: int, m: int) -> p.Position:
    view = engine.position(account, m)
    mark = engine.mark(m)
    size, cost, atl = view.size_lots, view.cost_atoms, markets.atl[m]
    entry_str = markets.avg_price(m, abs(cost) // atl, abs(size)) if size else "0"
    notional = abs(size) * mark * atl
    margin = -(-notional // max(1, view.leverage))
    liq = engine.liquidation_price(account, m) if size else 0
    return p.Position(markets.symbol(m), markets.size(m, size), entry_str, usd(size * mark * atl - cost),
                      usd(margin), view.leverage, "isolated" if view.isolated else "cross",
                      markets.price(m, liq) if liq > 0 else None, usd(view.margin_atoms) if view.isolated else None)


def account_state(engine, account: int, seq: int, is_snapshot: bool) -> p.AccountState:
    equity = engine.equity(account)
    im = engine.initial_margin(account)
    return p.AccountState(account, seq, is_snapshot, usd(engine.collateral(account)), usd(equity),
                          usd(equity - im), usd(im), usd(engine.maintenance_margin(account)))


class OrderInfo(msgspec.Struct):
    """What the publisher remembers of a live order: its owner, market, side, limit price,
    total size (filled + open) and open lots, in engine units, and its client order id."""

    account: int
    market: int
    side: int
    price: int
    size: int
    remaining: int
    cloid: str | None

    def update(self, markets: Markets, status: str, ts_ns: int, reason: str | None = None,
               oid: int = 0) -> p.OrderUpdate:
        m = self.market
        return p.OrderUpdate(markets.symbol(m), oid, side_name(self.side),
                             markets.price(m, self.price) if self.price > 0 else None,
                             markets.size(m, self.size), markets.size(m, self.remaining), status,
                             ns_to_ms(ts_ns), self.cloid, reason)
