"""``OracleUpdate``: what the oracle service tells the engine about one market, once a second.

Layout:
  ``ServiceFlag``     the service's own flag bits (16 and up), beside ``AggFlag``'s (0–15)
  ``OracleUpdate``    the command: frozen, tagged msgspec Struct, integers only
  ``e18_to_e9_down``, ``e18_to_e9_up``  the one conversion from aggregation units

Invariants:
  * Prices are integers of 1e-9 USD (``*_e9``): every price the engine may see fits int64
    (up to ~9.2e9 USD), unlike the aggregator's 1e-18 units. Price rounds down, conf rounds
    up (wider), so the conversion never makes a quote look more precise than it was.
  * ``price_e9`` None means *no external price* (closed, halted, no quorum); the flags say
    why. The oracle never invents a price.
  * ``flags`` is one int: bits 0–15 are ``oracle.aggregate.AggFlag``, bits 16 and up are
    ``ServiceFlag``. Both are append only.

The engine's own command is ``engine.commands.OracleUpdate`` (a price on the market's tick
grid, ``OracleFlag`` bits); ``to_engine_command`` is the one conversion (docs/modes.md).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from enum import IntFlag

import msgspec

from engine import commands as engine_commands
from engine.codes import OracleFlag
from engine.spec import MarketSpec
from oracle.aggregate import AggFlag
from oracle.session import Session

E9_PER_E18 = 10**9


class ServiceFlag(IntFlag):
    """The service's flags, above ``AggFlag``'s bits. Stable bit numbers; append only."""

    NONE = 0
    NON_MONOTONIC_DROPPED = 1 << 16  # a source sent a quote older than its previous one
    HINT_DOWNGRADED = 1 << 17  # a source's session hint made the session less open
    SILENT_HALT = 1 << 18  # open by the calendar, every covering source silent > 60 s
    NO_COVERAGE = 1 << 19  # open by the calendar, but no configured source covers the session
    SPLIT_APPLIED = 1 << 20  # a split took effect since the last update; history rescaled
    UNKNOWN_SOURCE_DROPPED = 1 << 21  # a quote from a source this market does not list


class OracleUpdate(msgspec.Struct, tag="oracle_update", frozen=True, forbid_unknown_fields=True):
    """One market's external price at ``ts_ns`` (ns since the epoch, the service's tick).

    ``price_e9``/``conf_e9``: 1e-9 USD, None together when there is no external price;
    ``n_sources``: the sources that voted; ``session``: the calendar's state after source
    hints and the silence rule (``Session`` numbers); ``flags``: ``AggFlag | ServiceFlag``.
    """

    market: int
    ts_ns: int
    price_e9: int | None
    conf_e9: int | None
    n_sources: int
    session: Session
    flags: int = 0


def e18_to_e9_down(value_e18: int) -> int:
    """1e-18 → 1e-9 units, rounded toward −∞ (a price never rounds up)."""
    return value_e18 // E9_PER_E18


def e18_to_e9_up(value_e18: int) -> int:
    """1e-18 → 1e-9 units, rounded toward +∞ (a confidence never narrows)."""
    return -((-value_e18) // E9_PER_E18)


CLOSED_SESSIONS = frozenset({Session.CLOSED_WEEKEND, Session.CLOSED_HOLIDAY, Session.CLOSED_OFF_HOURS})
E9 = Decimal(10**9)


def to_engine_command(update: OracleUpdate, spec: MarketSpec) -> engine_commands.OracleUpdate:
    """The engine's command for one update of the market ``spec``.

    The price goes to the nearest tick (half to even; the engine's oracle lives on the tick
    grid) and a price under half a tick becomes none. A closed session sets ``CLOSED`` (the
    market goes dark at once), a tripped breaker ``BREAKER``; every other flag is the oracle's
    own diagnostics and stays out of the engine.
    """
    flags = OracleFlag.NONE
    if update.session in CLOSED_SESSIONS:
        flags |= OracleFlag.CLOSED
    if update.flags & AggFlag.BREAKER:
        flags |= OracleFlag.BREAKER
    price = None
    if update.price_e9 is not None:
        ticks = (Decimal(update.price_e9) / E9 / spec.tick_size).to_integral_value(ROUND_HALF_EVEN)
        if ticks > 0:
            price = ticks * spec.tick_size
    return engine_commands.OracleUpdate(update.market, price, update.ts_ns, int(flags))
