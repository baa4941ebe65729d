"""What the simulator plays: markets, simulated sources, and scripted faults.

A ``Scenario`` is plain frozen data (msgspec Structs, so it loads from JSON for a stress lab
as easily as a test builds it): a seed, the markets with their calendars and start prices,
the sources that quote them, and a tuple of faults. ``oracle.sources.simulated`` turns it
into quotes.

Layout:
  ``SimMarket``     one market: symbol, calendar, start price (1e-9 USD), volatility
  ``SimSource``     one simulated upstream: expo, conf, book, noise, the sessions it quotes in,
                    whether it repeats its last quote while dark (Hermes does), session hints
  fault types       ``Silent``, ``Stale``, ``Outlier``, ``ZeroPrice``, ``Jump``, ``Split``,
                    ``Backstep``, ``Hint`` (tagged union ``Fault``); helpers ``halt``,
                    ``gap_at_open``
  ``Scenario``      seed + markets + sources + faults

Invariants:
  * A fault applies on the half-open window ``[start_ns, end_ns)`` of quote instants, to the
    markets in ``symbols`` and the sources in ``sources`` (empty: all of them).
  * ``Jump`` and ``Split`` change the price from ``start_ns`` on (their ``end_ns`` defaults
    to never); several apply in ``(start_ns, position in faults)`` order.
  * Everything is an integer: prices in 1e-9 USD, moves in ppm, times in ns.

Known limitations:
  * ``Backstep`` resends one earlier quote at one instant; longer time-travel is several.
"""

from __future__ import annotations

from typing import Union

import msgspec

from oracle.calendar import MarketCalendar
from oracle.session import NS_PER_SECOND, OPEN_SESSIONS, Session

NEVER_NS = 1 << 62
PPM = 1_000_000


class SimMarket(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A simulated market. ``vol_ppm_per_hour``: the typical one-hour move of the hidden
    price path (it keeps moving while the market is dark, so reopens gap naturally)."""

    symbol: str
    calendar: MarketCalendar
    start_price_e9: int
    vol_ppm_per_hour: int = 4_000

    def __post_init__(self) -> None:
        if self.start_price_e9 <= 0:
            raise ValueError("a simulated market needs a positive start price")
        if not 0 <= self.vol_ppm_per_hour <= 8_000:
            raise ValueError("vol_ppm_per_hour must be in [0, 8000] so the path stays positive")


class SimSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A simulated upstream.

    ``expo``: its fixed point (Pyth equities −5, Chainlink −18); ``conf_ppm``: conf as a share
    of the price (None: it sends none); ``spread_ppm``: full bid/ask spread (None: no book);
    ``noise_ppm``: its own disagreement with the hidden path, uniform in ±noise;
    ``sessions``: the open sessions it quotes in (None: all of them); ``repeat_when_dark``:
    outside those it resends its last live quote with the old time, as Hermes does (False:
    silence); ``hints``: it reports the session as Chainlink v11's ``marketStatus`` does.
    """

    name: str
    expo: int = -8
    conf_ppm: int | None = 100
    spread_ppm: int | None = None
    noise_ppm: int = 50
    weight: int = 1
    sessions: frozenset[Session] | None = None
    repeat_when_dark: bool = True
    hints: bool = False

    def __post_init__(self) -> None:
        if self.sessions is not None and not self.sessions <= OPEN_SESSIONS:
            raise ValueError("a source can only quote in open sessions")

    def quotes_in(self) -> frozenset[Session]:
        return OPEN_SESSIONS if self.sessions is None else self.sessions


class _Fault(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag=True, kw_only=True):
    start_ns: int
    end_ns: int = NEVER_NS
    symbols: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    def applies(self, symbol: str, source: str, t_ns: int) -> bool:
        return (
            self.start_ns <= t_ns < self.end_ns
            and (not self.symbols or symbol in self.symbols)
            and (not self.sources or source in self.sources)
        )

    def targets(self, symbol: str, source: str) -> bool:
        return (not self.symbols or symbol in self.symbols) and (not self.sources or source in self.sources)


class Silent(_Fault, tag="silent"):
    """No quote at all (a disconnect, a feed that stopped publishing)."""


class Stale(_Fault, tag="stale"):
    """The source resends its last quote from before ``start_ns``, old time included. On every
    source of a market while the calendar says open, this is a halt (see ``halt``)."""


class Outlier(_Fault, tag="outlier"):
    """Price, bid and ask × (1 + ppm/1e6), rounded down."""

    ppm: int


class ZeroPrice(_Fault, tag="zero_price"):
    """Price 0 with advancing timestamps, no conf, no book (Chainlink's overnight ``mid = 0``)."""


class Jump(_Fault, tag="jump"):
    """The hidden path × (1 + ppm/1e6) from ``start_ns`` on (a gap at an open, news)."""

    ppm: int


class Split(_Fault, tag="split"):
    """``new_shares`` for ``old_shares``: prices × old/new from ``start_ns`` on. A source that
    adopts it late is a second ``Split`` restricted to it, starting later."""

    new_shares: int
    old_shares: int = 1


class Backstep(_Fault, tag="backstep"):
    """In the window, the source resends the quote it sent ``back_ns`` earlier (a
    non-monotonic timestamp)."""

    back_ns: int


class Hint(_Fault, tag="hint"):
    """The source's session hint is ``hint`` (an unscheduled closure: a closed state)."""

    hint: Session


Fault = Union[Silent, Stale, Outlier, ZeroPrice, Jump, Split, Backstep, Hint]


class Scenario(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything the simulator needs; equal scenarios give equal quotes."""

    seed: int
    markets: tuple[SimMarket, ...]
    sources: tuple[SimSource, ...] = (SimSource("sim"),)
    faults: tuple[Fault, ...] = ()
    name: str = "scenario"

    def __post_init__(self) -> None:
        names = [s.name for s in self.sources]
        symbols = [m.symbol for m in self.markets]
        if len(set(names)) != len(names) or len(set(symbols)) != len(symbols):
            raise ValueError("source names and market symbols must be unique")


def halt(start_ns: int, end_ns: int, symbols: tuple[str, ...] = ()) -> Stale:
    """Every source of ``symbols`` freezes: open by the calendar, timestamps frozen."""
    return Stale(start_ns=start_ns, end_ns=end_ns, symbols=symbols)


def gap_at_open(open_ns: int, ppm: int, first_quote_after_ns: int, symbols: tuple[str, ...] = ()) -> tuple[Fault, ...]:
    """A reopen that gaps by ``ppm`` and whose first fresh quote comes ``first_quote_after_ns``
    after ``open_ns`` (until then every source is silent)."""
    return (
        Jump(start_ns=open_ns, ppm=ppm, symbols=symbols),
        Silent(start_ns=open_ns, end_ns=open_ns + first_quote_after_ns, symbols=symbols),
    )


def ceil_seconds(t_ns: int) -> int:
    """The first whole second at or after ``t_ns`` (quote instants are whole seconds)."""
    return -((-t_ns) // NS_PER_SECOND)
