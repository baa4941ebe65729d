"""Shared fixtures for the source and service tests: instants, simulated sources, and the
replay scenarios of spec/oracle.md §9 as ``Scenario`` values.

Sources are named after the upstream whose style they imitate, so a tape they produce can be
sent through that upstream's fake server and must come back unchanged:
``pyth`` (expo −5, conf 1 bp, every open session, repeats its last price while dark),
``chainlink`` (v11 style: expo −18, no conf, a book, session hints), ``chainlink8`` (v8 style:
regular hours only, expo −18, no conf, hints).
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from oracle.calendar import MarketCalendar, ns_from_datetime
from oracle.service import FeedSource, MarketFeed
from oracle.session import Session
from oracle.sources.scenario import (
    Backstep,
    Outlier,
    Scenario,
    SimMarket,
    SimSource,
    Split,
    ZeroPrice,
    gap_at_open,
    halt,
)

NS = 1_000_000_000
NEW_YORK = ZoneInfo("America/New_York")
XNYS = MarketCalendar("XNYS")
XNYS_REGULAR_ONLY = MarketCalendar("XNYS", extended=False)
S = Session

PYTH = SimSource("pyth", expo=-5, conf_ppm=100)
CHAINLINK = SimSource("chainlink", expo=-18, conf_ppm=None, spread_ppm=200, hints=True)
CHAINLINK8 = SimSource(
    "chainlink8", expo=-18, conf_ppm=None, sessions=frozenset({Session.REGULAR}), hints=True
)
TSLA = SimMarket("TSLA", XNYS, 433_809_340_000)
SEED = 20260513


def ny(y, mo, d, h=0, mi=0, s=0) -> int:
    return ns_from_datetime(datetime(y, mo, d, h, mi, s, tzinfo=NEW_YORK))


def utc(y, mo, d, h=0, mi=0, s=0) -> int:
    return ns_from_datetime(datetime(y, mo, d, h, mi, s, tzinfo=timezone.utc))


def scenario(*faults, sources=(PYTH, CHAINLINK), markets=(TSLA,), seed=SEED) -> Scenario:
    return Scenario(seed=seed, markets=markets, sources=sources, faults=tuple(faults))


def feed(sources=(PYTH, CHAINLINK), market=TSLA, **kw) -> MarketFeed:
    """The service's view of ``market``: every sim source, with its sessions."""
    return MarketFeed(
        0, market.symbol, market.calendar,
        tuple(FeedSource(s.name, s.quotes_in()) for s in sources), **kw,
    )


# --- the replay scenarios (instants in New York time unless the case is about UTC) --------

WEDNESDAY_10 = ny(2026, 5, 13, 10)
HALT_AT = ny(2026, 5, 13, 11)
FRIDAY_CLOSE = ny(2026, 5, 15, 20)  # Friday 20:00: the weekend starts
SUNDAY_OPEN = ny(2026, 5, 17, 20)  # Sunday 20:00: overnight opens
SPLIT_AT = ny(2026, 5, 13, 4)  # Wednesday 04:00: pre-market opens on the new shares

REPLAYS: dict[str, tuple[Scenario, int, int]] = {
    # name: (scenario, first instant, instant after the last), 1 s apart
    "normal_ticks": (scenario(), WEDNESDAY_10, WEDNESDAY_10 + 8 * NS),
    "close_1600_frozen": (scenario(sources=(PYTH, CHAINLINK8)), ny(2026, 5, 13, 15, 59, 57), ny(2026, 5, 13, 16, 0, 4)),
    "weekend": (scenario(), FRIDAY_CLOSE - 3 * NS, FRIDAY_CLOSE + 3 * NS),
    "holiday_0703": (scenario(), ny(2026, 7, 2, 19, 59, 58), ny(2026, 7, 2, 20, 0, 3)),
    "early_close_1127": (scenario(sources=(PYTH, CHAINLINK8)), ny(2026, 11, 27, 12, 59, 58), ny(2026, 11, 27, 13, 0, 3)),
    "dst_spring": (scenario(), utc(2026, 3, 8, 23, 59, 58), utc(2026, 3, 9, 0, 0, 3)),
    "dst_autumn": (scenario(), utc(2026, 11, 2, 0, 59, 58), utc(2026, 11, 2, 1, 0, 3)),
    "reopen_gap_8pct": (scenario(*gap_at_open(SUNDAY_OPEN, 80_000, 15 * NS)), SUNDAY_OPEN - 2 * NS, SUNDAY_OPEN + 18 * NS),
    "halt": (scenario(halt(HALT_AT, HALT_AT + 180 * NS)), HALT_AT - 2 * NS, HALT_AT + 8 * NS),
    "outlier_30pct": (
        scenario(Outlier(start_ns=WEDNESDAY_10 + 2 * NS, end_ns=WEDNESDAY_10 + 3 * NS, sources=("pyth",), ppm=300_000)),
        WEDNESDAY_10, WEDNESDAY_10 + 5 * NS,
    ),
    "overnight_mid_zero": (
        scenario(ZeroPrice(start_ns=ny(2026, 5, 12, 22, 0, 2), end_ns=ny(2026, 5, 12, 22, 0, 4), sources=("chainlink",))),
        ny(2026, 5, 12, 22), ny(2026, 5, 12, 22, 0, 6),
    ),
    "non_monotonic": (
        scenario(Backstep(start_ns=WEDNESDAY_10 + 3 * NS, end_ns=WEDNESDAY_10 + 4 * NS, back_ns=10 * NS)),
        WEDNESDAY_10, WEDNESDAY_10 + 6 * NS,
    ),
    "split_5_for_1": (scenario(Split(start_ns=SPLIT_AT, new_shares=5)), SPLIT_AT - 2 * NS, SPLIT_AT + 3 * NS),
}
