"""Wire actions to engine commands, and an engine command's events back to wire statuses.

Layout
------
* ``Markets``: the node's market specs by wire symbol and by engine id, and the unit
  conversions the wire needs (ticks, lots and atoms to decimal strings);
* ``to_commands(action, account, markets)``: one wire ``Action`` -> engine command Structs
  (a batch stays one engine ``Batch``); ``to_records`` then gives the journal records;
* ``statuses(action, events, first_cmd, markets, cloids)``: the per-action statuses of a
  post, in order, read from the events of its records.

Invariants
----------
* Nothing is rounded on the way in: an off-tick price or off-lot size becomes the engine's
  pre-reject with its own code (``engine.commands.to_records``); an unknown market symbol
  becomes market id ``len(specs)``, which the engine rejects as ``UNKNOWN_MARKET`` in order.
* Statuses are read only from events whose ``cmd`` is the action's own record, so orders a
  trigger or a liquidation placed after the command never count as the action's fills.

Known limitations
-----------------
* ``avgPrice`` is exact to six decimals beyond the tick (rounded half-even); the exact
  figure is the fills' own prices on ``userFills``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Sequence

import numpy as np

from api import protocol as p
from engine import commands as ec
from engine.codes import CancelReason, EventKind, MarginMode, Reject, TriggerStep
from engine.spec import MarketSpec
from engine.units import ATOMS_PER_USD

NS_PER_MS = 1_000_000
PPB = 1_000_000_000


class Markets:
    """The node's markets: ``spec(symbol)``, ``symbol(market_id)`` and the wire forms of
    engine integers."""

    def __init__(self, specs: Sequence[MarketSpec]):
        self.specs = list(specs)
        self.by_symbol = {spec.symbol: spec for spec in self.specs}
        self.atl = [spec.atoms_per_tick_lot for spec in self.specs]  # atoms per tick·lot
        self.fee_ppm = [(spec.taker_fee_ppm, spec.maker_fee_ppm) for spec in self.specs]
        self._prices: list[dict[int, str]] = [{} for _ in self.specs]
        self._sizes: list[dict[int, str]] = [{} for _ in self.specs]

    def id_of(self, symbol: str) -> int:
        """The engine id, or ``len(specs)`` (an id the engine rejects) for an unknown symbol."""
        spec = self.by_symbol.get(symbol)
        return spec.market_id if spec is not None else len(self.specs)

    def get(self, symbol: str) -> MarketSpec | None:
        return self.by_symbol.get(symbol)

    def symbol(self, market_id: int) -> str:
        return self.specs[market_id].symbol

    def price(self, market_id: int, ticks: int) -> str:
        """``ticks × tick_size`` as a wire string (formatted once per value, then cached)."""
        return _cached(self._prices[market_id], int(ticks), self.specs[market_id].tick_size)

    def size(self, market_id: int, lots: int) -> str:
        return _cached(self._sizes[market_id], int(lots), self.specs[market_id].lot_size)

    def avg_price(self, market_id: int, ticks_x_lots: int, lots: int) -> str | None:
        if lots == 0:
            return None
        whole, rest = divmod(int(ticks_x_lots), int(lots))
        if rest == 0:
            return self.price(market_id, whole)
        tick = self.specs[market_id].tick_size
        exact = Decimal(int(ticks_x_lots)) / Decimal(int(lots)) * tick
        return p.format_decimal(exact.quantize(tick.scaleb(-6), rounding=ROUND_HALF_EVEN))


_CACHE_MAX = 1 << 16


def _cached(cache: dict[int, str], units: int, step: Decimal) -> str:
    text = cache.get(units)
    if text is None:
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        text = cache[units] = p.format_decimal(step * units)
    return text


def usd(atoms: int) -> str:
    """Atoms (1e-6 USD) as a decimal string, exact."""
    return p.format_decimal(Decimal(int(atoms)).scaleb(-6).normalize())


def rate(ppb: int) -> str:
    """A rate in parts per billion as a decimal fraction, exact."""
    return p.format_decimal(Decimal(int(ppb)).scaleb(-9).normalize())


def ms_to_ns(ms: int | None) -> int:
    return int(ms or 0) * NS_PER_MS


def ns_to_ms(ns: int) -> int:
    return int(ns) // NS_PER_MS


# ------------------------------------------------------------------------ wire -> engine


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _place(a: p.Place, account: int, markets: Markets) -> ec.Place:
    return ec.Place(market=markets.id_of(a.market), account=account, side=a.side, size=Decimal(a.size),
                    price=_dec(a.price), order_type=a.orderType, tif=a.tif, stp=a.stp, cloid=a.cloid,
                    expires_at_ns=ms_to_ns(a.expiresAt), reduce_only=a.reduceOnly)


def _item(a: p.BatchItem, account: int, markets: Markets) -> ec.Place | ec.Cancel | ec.Amend:
    if isinstance(a, p.Place):
        return _place(a, account, markets)
    if isinstance(a, p.Cancel):
        return ec.Cancel(market=markets.id_of(a.market), account=account, oid=a.oid or 0, cloid=a.cloid)
    return ec.Amend(market=markets.id_of(a.market), account=account, oid=a.oid or 0, cloid=a.cloid,
                    price=_dec(a.price), size=_dec(a.size))


def to_command(action: p.Action, account: int, markets: Markets) -> ec.Command:
    """One wire action -> one engine command (a batch stays one ``Batch``)."""
    match action:
        case p.Batch(actions=items):
            return ec.Batch(actions=[_item(a, account, markets) for a in items])
        case p.CancelAll(market=None):
            return ec.CancelAll(account=account)
        case p.CancelAll(market=symbol):
            return ec.CancelAll(account=account, market=markets.id_of(symbol))
        case p.PlaceTrigger():
            return ec.PlaceTrigger(market=markets.id_of(action.market), account=account, side=action.side,
                                   trigger_price=Decimal(action.triggerPrice), kind=action.kind,
                                   order_type=action.orderType, price=_dec(action.price), size=_dec(action.size),
                                   trigger_on=action.triggerOn)
        case p.CancelTrigger():
            return ec.CancelTrigger(market=markets.id_of(action.market), account=account, tid=action.tid)
        case p.ScheduleCancel(at=at):
            return ec.ScheduleCancel(account=account, at_ns=ms_to_ns(at))
        case p.SetLeverage():
            return ec.SetLeverage(account=account, market=markets.id_of(action.market), leverage=action.leverage)
        case p.SetMarginMode():
            return ec.SetMarginMode(account=account, market=markets.id_of(action.market), mode=action.mode)
        case p.AdjustMargin():
            return ec.AdjustMargin(account=account, market=markets.id_of(action.market), amount=Decimal(action.amount))
        case p.Withdraw():
            return ec.Withdraw(account=account, amount=Decimal(action.amount))
        case _:
            return _item(action, account, markets)


def to_records(action: p.Action, account: int, markets: Markets) -> np.ndarray:
    """The journal records of one wire action (a batch: its header, then one per action)."""
    return ec.to_records([to_command(action, account, markets)], markets.specs)


def pre_rejects(records: np.ndarray) -> list[int]:
    """The reject code each record already carries from conversion (0: none)."""
    return [int(code) for code in records["pre_reject"]]


# ------------------------------------------------------------------------ events -> wire


# Events are read as plain tuples (``events.tolist()``), grouped by command once: a status
# costs a few comparisons of ints, not a numpy mask per field. The indices follow EVENT_DTYPE.
_KIND, _REASON, _CODE, _CMD, _MARKET, _OID, _PRICE, _SIZE, _REMAINING = (
    ec.EVENT_DTYPE.names.index(name) for name in ("kind", "reason", "code", "cmd", "market", "oid", "price", "size",
                                                  "remaining"))
_ACCEPTED, _REJECTED, _FILL = int(EventKind.ACCEPTED), int(EventKind.REJECTED), int(EventKind.FILL)
_CANCELLED, _EXPIRED, _AMENDED = int(EventKind.CANCELLED), int(EventKind.EXPIRED), int(EventKind.AMENDED)
_TRIGGER, _SCHEDULE = int(EventKind.TRIGGER), int(EventKind.SCHEDULE)
_LEVERAGE, _MARGIN, _BALANCE = int(EventKind.LEVERAGE), int(EventKind.MARGIN), int(EventKind.BALANCE)
_MODE_NAMES = {int(mode): mode.name.lower() for mode in MarginMode}
_TRIGGER_PLACED, _TRIGGER_CANCELLED = int(TriggerStep.PLACED), int(TriggerStep.CANCELLED)
_REASONS = {int(reason): reason.name.lower() for reason in CancelReason}
_REJECTED_BY_CODE: dict[int, p.Rejected] = {}


def reason_name(reason: int) -> str:
    return _REASONS.get(reason) or str(reason)


def _rejected_status(code: int) -> p.Rejected:
    """``p.rejected(code)``, built once per code (the Struct is immutable)."""
    status = _REJECTED_BY_CODE.get(code)
    if status is None:
        status = _REJECTED_BY_CODE[code] = p.rejected(code)
    return status


def _no_outcome() -> p.Rejected:
    return p.rejected(Reject.BAD_FIELD, "the engine reported no outcome")


def _first(evs: list[tuple], kind: int) -> tuple | None:
    for ev in evs:
        if ev[_KIND] == kind:
            return ev
    return None


def _place_status(evs: list[tuple], markets: Markets, cloid: str | None) -> p.ActionStatus:
    first = None
    for ev in evs:
        if ev[_KIND] == _ACCEPTED or ev[_KIND] == _REJECTED:
            first = ev
            break
    if first is None:
        return _no_outcome()
    if first[_KIND] == _REJECTED:
        return _rejected_status(first[_CODE])
    oid, market, size = first[_OID], first[_MARKET], first[_SIZE]
    filled = notional = 0
    gone = None
    for ev in evs:
        if ev[_OID] != oid:
            continue
        kind = ev[_KIND]
        if kind == _FILL:
            filled += ev[_SIZE]
            notional += ev[_PRICE] * ev[_SIZE]
        elif gone is None and (kind == _CANCELLED or kind == _EXPIRED):
            gone = ev
    avg = markets.avg_price(market, notional, filled)
    if filled >= size:
        return p.Filled(oid, markets.size(market, filled), avg or "0", cloid)
    if gone is not None:
        reason = "expired" if gone[_KIND] == _EXPIRED else reason_name(gone[_REASON])
        return p.Cancelled(oid, cloid, markets.size(market, filled), avg, reason)
    return p.Resting(oid, cloid, markets.size(market, filled), avg)


def _status(item: p.Action, evs: list[tuple], markets: Markets, cloids: dict[int, str]) -> p.ActionStatus:
    kind = type(item)
    if kind is p.Place:
        return _place_status(evs, markets, item.cloid)
    reject = _first(evs, _REJECTED)
    if reject is not None:
        return _rejected_status(reject[_CODE])
    if kind is p.Cancel:
        done = _first(evs, _CANCELLED)
        if done is not None:
            oid = done[_OID]
            return p.Cancelled(oid, item.cloid or cloids.get(oid), reason="user")
    elif kind is p.CancelAll:
        return p.CancelledAll(sum(1 for ev in evs if ev[_KIND] == _CANCELLED))
    elif kind is p.Amend:
        done = _first(evs, _AMENDED)
        if done is not None:
            market, oid = done[_MARKET], done[_OID]
            return p.Amended(oid, markets.price(market, done[_PRICE]), markets.size(market, done[_SIZE]),
                             item.cloid or cloids.get(oid))
    elif kind is p.PlaceTrigger or kind is p.CancelTrigger:
        step = _TRIGGER_PLACED if kind is p.PlaceTrigger else _TRIGGER_CANCELLED
        for ev in evs:
            if ev[_KIND] == _TRIGGER and ev[_REASON] == step:
                return p.TriggerPlaced(ev[_OID]) if step == _TRIGGER_PLACED else p.TriggerCancelled(ev[_OID])
    elif kind is p.ScheduleCancel:
        done = _first(evs, _SCHEDULE)
        if done is not None:
            at_ns = done[_SIZE]
            return p.Scheduled(ns_to_ms(at_ns) if at_ns else None)
    else:
        return _account_status(item, evs, markets)
    return _no_outcome()


def _account_status(item: p.Action, evs: list[tuple], markets: Markets) -> p.ActionStatus:
    """The status of an accepted account action, from its LEVERAGE, MARGIN or BALANCE event:
    MARGIN carries the mode (reason), the atoms moved (size) and the bucket after (remaining);
    BALANCE the signed amount (size, < 0 for a withdrawal) and the collateral after (remaining)."""
    kind = type(item)
    if kind is p.SetLeverage:
        done = _first(evs, _LEVERAGE)
        if done is not None:
            return p.LeverageSet(markets.symbol(done[_MARKET]), done[_SIZE])
    elif kind is p.SetMarginMode or kind is p.AdjustMargin:
        done = _first(evs, _MARGIN)
        if done is not None and kind is p.SetMarginMode:
            return p.MarginModeSet(markets.symbol(done[_MARKET]), _MODE_NAMES[done[_REASON]])
        if done is not None:
            return p.MarginAdjusted(markets.symbol(done[_MARKET]), usd(done[_SIZE]), usd(done[_REMAINING]))
    elif kind is p.Withdraw:
        done = _first(evs, _BALANCE)
        if done is not None:
            return p.Withdrawn(usd(-done[_SIZE]), usd(done[_REMAINING]))
    return _no_outcome()


def statuses(action: p.Action, events: np.ndarray, first_cmd: int, markets: Markets,
             cloids: dict[int, str] | None = None) -> list[p.ActionStatus]:
    """One status per action, in order. ``events`` holds (at least) the events of the
    action's records, whose first record has ``cmd == first_cmd``; ``cloids`` maps oids to
    client order ids for the answers to cancels and amends by oid."""
    cloids = cloids or {}
    by_cmd: dict[int, list[tuple]] = {}
    for ev in events.tolist():
        evs = by_cmd.get(ev[_CMD])
        if evs is None:
            by_cmd[ev[_CMD]] = [ev]
        else:
            evs.append(ev)
    if type(action) is p.Batch:
        head_reject = _first(by_cmd.get(first_cmd, ()), _REJECTED)
        if head_reject is not None:
            return [_rejected_status(head_reject[_CODE])] * len(action.actions)
        return [_status(item, by_cmd.get(first_cmd + 1 + k, []), markets, cloids)
                for k, item in enumerate(action.actions)]
    return [_status(action, by_cmd.get(first_cmd, []), markets, cloids)]


__all__ = ["ATOMS_PER_USD", "PPB", "Markets", "pre_rejects", "rate", "statuses", "to_command", "to_records", "usd"]
