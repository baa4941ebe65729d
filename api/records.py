"""Wire actions straight to ``COMMAND_DTYPE`` records: the gateway's fast path beside
``engine.commands.to_records``.

Layout
------
``RecordWriter(markets).records(action, account)`` -> the journal records of one wire
action (a batch: its header, then one record per action), the same bytes as
``api.actions.to_records`` gives.

A place, cancel or amend that converts cleanly (known market, price and size on the grid,
a valid cloid, values in range) is packed into its record's bytes here, each decimal string
converted once (a bounded cache per market) and no engine ``Struct`` in between. Anything else (a pre-reject of any kind, and every other action) goes through
the engine's own conversion, so each pre-reject code and its precedence stay defined in
one place (``engine.commands``).

Invariants
----------
* ``records(action, account)`` and ``api.actions.to_records(action, account, markets)``
  give identical records for every action (tests/api/test_records.py).
* A row is packed with ``struct`` in the field order of ``COMMAND_DTYPE``, which has no
  padding (asserted at import).
"""

from __future__ import annotations

import struct
from decimal import Decimal

import numpy as np

from api import actions
from api import protocol as p
from engine import commands as ec
from engine import units
from engine.codes import CommandKind, OrderFlag, Side, Stp, Tif

# One record's bytes, field by field in COMMAND_DTYPE's order (which has no padding).
_pack = struct.Struct("<4B3i6q4Q").pack
_FIELDS = ("kind", "side", "tif", "stp", "pre_reject", "market", "account", "flags", "price", "size", "oid", "ts",
           "expires_at", "cloid0", "cloid1", "cloid2", "cloid3")
assert ec.COMMAND_DTYPE.names == _FIELDS and ec.COMMAND_DTYPE.itemsize == struct.calcsize("<4B3i6q4Q")

_PLACE, _CANCEL, _AMEND, _BATCH = (int(kind) for kind in (CommandKind.PLACE, CommandKind.CANCEL, CommandKind.AMEND,
                                                          CommandKind.BATCH))
_SIDES = {"buy": int(Side.BUY), "sell": int(Side.SELL)}
_TIFS = {"gtc": int(Tif.GTC), "ioc": int(Tif.IOC), "fok": int(Tif.FOK), "alo": int(Tif.ALO)}
_STPS = {"expire_maker": int(Stp.EXPIRE_MAKER), "expire_taker": int(Stp.EXPIRE_TAKER),
         "expire_both": int(Stp.EXPIRE_BOTH)}
_TIF_MARKET = int(Tif.MARKET)
_REDUCE_ONLY = int(OrderFlag.REDUCE_ONLY)
_INT32_MAX = ec.INT32_MAX
_INT64_MAX = units.INT64_MAX
_NO_CLOID = (0, 0, 0, 0)
_words = struct.Struct("<4Q").unpack
_CACHE_MAX = 1 << 16


def _pack_cloid(cloid: str | None) -> tuple[int, int, int, int] | None:
    """``engine.commands.pack_cloid``, one ``struct`` call instead of four ``from_bytes``."""
    if cloid is None:
        return _NO_CLOID
    raw = cloid.encode("utf-8")
    if not 1 <= len(raw) <= ec.CLOID_MAX_BYTES or b"\x00" in raw:
        return None
    return _words(raw.ljust(ec.CLOID_MAX_BYTES, b"\x00"))


class _Grid:
    """Decimal strings -> whole multiples of one step (ticks or lots), cached per string;
    ``None`` for a string the engine's conversion refuses."""

    def __init__(self, step, convert):
        self.step, self.convert = step, convert
        self.cache: dict[str, int | None] = {}

    def units(self, text: str) -> int | None:
        cache = self.cache
        try:
            return cache[text]
        except KeyError:
            pass
        try:
            value = self.convert(Decimal(text), self.step)
        except (units.UnitError, ArithmeticError):
            value = None
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[text] = value
        return value


class RecordWriter:
    """See the module docstring."""

    def __init__(self, markets: actions.Markets):
        self.markets = markets
        self._market = {spec.symbol: (spec.market_id, _Grid(spec.tick_size, units.to_ticks),
                                      _Grid(spec.lot_size, units.to_lots)) for spec in markets.specs}

    def records(self, action: p.Action, account: int) -> np.ndarray:
        """The journal records of one wire action (a batch: its header, then one per action)."""
        if not (type(account) is int and 0 <= account <= _INT32_MAX):
            return actions.to_records(action, account, self.markets)
        if type(action) is p.Batch:
            items = action.actions
            rows = [_pack(_BATCH, 0, 0, 0, 0, 0, 0, 0, 0, len(items), 0, 0, 0, 0, 0, 0, 0)]
            row = self._row
            for item in items:
                rows.append(row(item, account) or self._slow_row(item, account))
        elif type(action) in (p.Place, p.Cancel, p.Amend):
            rows = [self._row(action, account) or self._slow_row(action, account)]
        else:
            return actions.to_records(action, account, self.markets)
        return np.frombuffer(bytearray(b"".join(rows)), dtype=ec.COMMAND_DTYPE)

    def _slow_row(self, item: p.BatchItem, account: int) -> bytes:
        return ec.to_records([actions.to_command(item, account, self.markets)], self.markets.specs).tobytes()

    def _row(self, a: p.BatchItem, account: int) -> bytes | None:
        """The record of a place, cancel or amend that converts with no pre-reject; None
        for anything else (the caller converts it the engine's way)."""
        market = self._market.get(a.market)
        if market is None:
            return None
        market_id, ticks, lots = market
        kind = type(a)
        if kind is p.Place:
            if a.orderType == "limit":
                if a.price is None:
                    return None
                price, tif = ticks.units(a.price), _TIFS[a.tif]
                if price is None:
                    return None
            elif a.orderType == "market" and a.price is None:
                price, tif = 0, _TIF_MARKET
            else:
                return None
            size = lots.units(a.size)
            words = _pack_cloid(a.cloid)
            expires_at = actions.ms_to_ns(a.expiresAt)
            if size is None or words is None or not 0 <= expires_at <= _INT64_MAX or type(a.reduceOnly) is not bool:
                return None
            return _pack(_PLACE, _SIDES[a.side], tif, _STPS[a.stp], 0, market_id, account,
                    _REDUCE_ONLY if a.reduceOnly else 0, price, size, 0, 0, expires_at, *words)
        if kind is not p.Cancel and kind is not p.Amend:
            return None
        oid = a.oid or 0
        words = _pack_cloid(a.cloid)
        if words is None or type(oid) is not int or not 0 <= oid <= _INT64_MAX or (oid == 0 and a.cloid is None):
            return None
        if kind is p.Cancel:
            return _pack(_CANCEL, 0, 0, 0, 0, market_id, account, 0, 0, 0, oid, 0, 0, *words)
        price = 0 if a.price is None else ticks.units(a.price)
        size = 0 if a.size is None else lots.units(a.size)
        if price is None or size is None or (a.price is not None and price <= 0) or (a.size is not None and size <= 0):
            return None
        return _pack(_AMEND, 0, 0, 0, 0, market_id, account, 0, price, size, oid, 0, 0, *words)
