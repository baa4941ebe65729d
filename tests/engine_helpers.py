"""Shared fixtures-as-values for the engine tests: market specs, people, order builders, and
runners that apply commands one at a time and check both engines' invariants after each.

Markets (docs/matching.md numbers, worked out once here so the tests can use them):

* ``NVDA``: tick 0.01, lot 0.001 (1 share = 1000 lots), 10 atoms per tick·lot, ladder 1024,
  min notional $10. At mark 100.00 (10_000 ticks) the band half-width is
  min(10_000 · 10%, 1024 // 4) = 256 ticks, so the band is [9744, 10256], the window
  [9488, 10512), and the protection prices are 10256 (buy, clamped) and 9744 (sell).
  At mark 10.00 (1000 ticks): band [900, 1100] (100 ticks, not capped), protection 1050/950.
* ``TSLA``: tick 0.05, lot 0.01, 500 atoms per tick·lot, ladder 512.

Runners return events as Structs with ``cmd`` re-based to the record index the command would
have had if the whole list had been given to one ``apply`` call.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Iterable, Sequence

import msgspec
import numpy as np

from engine.codes import CommandKind, Side
from engine.commands import (
    COMMAND_DTYPE,
    Command,
    Event,
    Place,
    Rejected,
    count_records,
    events_to_structs,
)
from engine.engine import Engine
from engine.reference import SLOT_BITS, ReferenceEngine
from engine.spec import EngineConfig, MarketSpec

ENGINES = {"numba": Engine, "reference": ReferenceEngine}

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)

ALICE, BOB, CAROL, DAVE = 1, 2, 3, 4
BUY, SELL = int(Side.BUY), int(Side.SELL)
SHARE = 1000  # NVDA lots in one share

SMALL_CONFIG = EngineConfig(max_orders=256, max_accounts=64)


def nvda(market_id: int = 0, **overrides) -> MarketSpec:
    fields = dict(
        market_id=market_id,
        symbol="NVDA",
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.001"),
        max_order_lots=10**7,
        ladder_levels=1024,
    )
    fields.update(overrides)
    return MarketSpec(**fields)


def tsla(market_id: int = 1, **overrides) -> MarketSpec:
    fields = dict(
        market_id=market_id,
        symbol="TSLA",
        tick_size=Decimal("0.05"),
        lot_size=Decimal("0.01"),
        max_order_lots=10**6,
        ladder_levels=512,
    )
    fields.update(overrides)
    return MarketSpec(**fields)


NVDA = nvda()
TSLA = tsla()


def oid(seq: int, slot: int) -> int:
    """The order id of the ``seq``-th accepted order, which took ``slot``."""
    return (seq << SLOT_BITS) | slot


def bid(account: int, shares: str, price: str, market: int = 0, **kw) -> Place:
    return Place(market=market, account=account, side="buy", size=Decimal(shares), price=Decimal(price), **kw)


def ask(account: int, shares: str, price: str, market: int = 0, **kw) -> Place:
    return Place(market=market, account=account, side="sell", size=Decimal(shares), price=Decimal(price), **kw)


def market_order(account: int, side: str, shares: str, market: int = 0, **kw) -> Place:
    return Place(market=market, account=account, side=side, size=Decimal(shares), order_type="market", **kw)


# ---------------------------------------------------------------------------- raw records


def record(kind: int, **fields) -> np.ndarray:
    """One COMMAND_DTYPE record (as a length-1 array), every field not given zero."""
    out = np.zeros(1, dtype=COMMAND_DTYPE)
    out["kind"] = kind
    for name, value in fields.items():
        out[name] = value
    return out


def records(*parts: np.ndarray) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=COMMAND_DTYPE)


def record_units(recs: np.ndarray) -> list[np.ndarray]:
    """Split a record array into the units one ``apply`` call handles as one command: a single
    record, or a batch header with the records it governs (docs/matching.md, BATCH)."""
    units = []
    i = 0
    while i < len(recs):
        n = 1
        if recs[i]["kind"] == CommandKind.BATCH and recs[i]["pre_reject"] == 0:
            size = int(recs[i]["size"])
            n = 1 + max(0, min(size, len(recs) - i - 1))
        units.append(recs[i : i + n])
        i += n
    return units


# ---------------------------------------------------------------------------- runners


def _rebase(events: Sequence[Event], offset: int) -> list[Event]:
    return [msgspec.structs.replace(e, cmd=e.cmd + offset) for e in events] if offset else list(events)


def apply_checked(engine, commands: Iterable[Command]) -> list[Event]:
    """Apply each command alone, check the invariants after each, return all events."""
    out: list[Event] = []
    offset = 0
    for cmd in commands:
        out += _rebase(events_to_structs(engine.apply([cmd])), offset)
        engine.check_invariants()
        offset += count_records([cmd])
    return out


def apply_records_checked(engine, recs: np.ndarray) -> list[Event]:
    """As ``apply_checked`` for a raw record array, one command unit at a time."""
    out: list[Event] = []
    offset = 0
    for unit in record_units(recs):
        out += _rebase(events_to_structs(engine.apply(unit)), offset)
        engine.check_invariants()
        offset += len(unit)
    return out


def arrange(engine, commands: Iterable[Command]) -> list[Event]:
    """``apply_checked`` for the Arrange step: every command must go through (no rejects)."""
    events = apply_checked(engine, commands)
    rejected = [e for e in events if isinstance(e, Rejected)]
    assert not rejected, f"setup command rejected: {rejected}"
    return events
