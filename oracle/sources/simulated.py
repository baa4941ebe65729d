"""The simulated source: seeded, calendar-aware integer price paths with scripted faults.

The default source of a local node: the whole closed-hours machinery runs with no network.

Layout:
  ``hidden_price_e9``   the path of one market, an O(1) function of the second: value noise
                        (hash-seeded values on grids of 1 s, 2 s, … 2^20 s, linearly
                        interpolated, amplitude ∝ √spacing) around the start price
  ``SimulatedFeed``     a ``Scenario`` made answerable: ``quote(symbol, source, now_ns)``,
                        ``quotes_at(now_ns)``, ``tape(start, end, step)``
  ``SimulatedSource``   the adapter: ``poll(now_ns)`` for the service's tick, or ``run(emit)``
                        as a task on any clock

How a quote at instant t (whole second s = ⌊t⌋) is made, for one market and source:
  1 ``Silent`` → none; ``Backstep`` → the quote of s − back; ``Stale`` → the quote of the
    second before the fault started (old time and all);
  2 outside the source's sessions (oracle/calendar.py): the quote of its last live second
    if ``repeat_when_dark`` (Hermes' frozen ``publish_time``), else none;
  3 live: hidden path × the ``Jump``/``Split`` factors in force × (1 + source noise), then
    ``Outlier``/``ZeroPrice``; conf and book from the source's ppm; all rounded down
    except conf and the half-spread (up);
  4 the session hint (if the source gives hints) is the calendar's state at t, any closed
    state reported as ``CLOSED_OFF_HOURS`` (v11 has one "closed"), or a ``Hint`` fault's.

Invariants:
  * Deterministic: a quote depends only on the scenario and the instant (blake2b hashes of
    the seed; no ``random`` state, no float), so any instant can be asked in any order.
  * ``ts_source_ns`` is a whole second and never after the instant asked; the price is an
    integer in the source's ``expo``.

Known limitations:
  * The path is bounded value noise, not a random walk: it wanders about ±6% (typically)
    around the start price over weeks rather than trending; scripted ``Jump``s add trends.
  * A ``Stale`` or dark repeat looks back at most ``MAX_DARK_SEGMENTS`` calendar segments.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import hashlib
import math
import time
from typing import Iterator

from oracle.calendar import build_schedule, session_at
from oracle.clock import Clock, Sleep
from oracle.quote import SourceQuote
from oracle.session import NS_PER_SECOND, Session, is_open
from oracle.sources.base import Emit, SourceHealth
from oracle.sources.scenario import (
    PPM,
    Backstep,
    Hint,
    Jump,
    Outlier,
    Scenario,
    Silent,
    SimMarket,
    SimSource,
    Split,
    Stale,
    ZeroPrice,
    ceil_seconds,
)

SCALES = 21  # grids of 2^0 … 2^20 seconds (the longest about 12 days)
MAX_DARK_SEGMENTS = 64
E9_EXPO = -9


def _hash_int(*parts: object) -> int:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _uniform(amplitude: int, *parts: object) -> int:
    """An integer in [−amplitude, amplitude], fixed by ``parts``."""
    return _hash_int(*parts) % (2 * amplitude + 1) - amplitude


@functools.lru_cache(maxsize=64)
def _amplitudes_ppm(vol_ppm_per_hour: int) -> tuple[int, ...]:
    """Per-scale amplitude: ``vol · √(2^k / 3600)`` ppm, rounded down (a uniform on ±A has
    standard deviation A/√3; summed over scales the path's one-hour move is ≈ vol)."""
    return tuple(math.isqrt(vol_ppm_per_hour**2 * 2**k // 3600) for k in range(SCALES))


def hidden_price_e9(seed: int, market: SimMarket, second: int) -> int:
    """The market's hidden price at a whole ``second`` since the epoch, in 1e-9 USD:
    ``start · (1e6 + Σ_k lerp_k) / 1e6`` rounded down; each ``lerp_k`` interpolates hashed
    values at the two grid points of spacing 2^k around the second (rounded down)."""
    noise_ppm = 0
    for k, amplitude in enumerate(_amplitudes_ppm(market.vol_ppm_per_hour)):
        if amplitude == 0:
            continue
        index, frac = divmod(second, 1 << k)
        left = _uniform(amplitude, seed, market.symbol, k, index)
        right = _uniform(amplitude, seed, market.symbol, k, index + 1)
        noise_ppm += left + ((right - left) * frac >> k)
    return market.start_price_e9 * (PPM + noise_ppm) // PPM


def _from_e9(value_e9: int, expo: int) -> int:
    """1e-9 USD → a mantissa at ``expo``, rounded down when ``expo`` is coarser."""
    shift = expo - E9_EXPO
    return value_e9 // 10**shift if shift >= 0 else value_e9 * 10**-shift


def _ceil_ppm(value: int, ppm: int) -> int:
    return -((-value * ppm) // PPM)


def _public_hint(session: Session) -> Session:
    return session if is_open(session) else Session.CLOSED_OFF_HOURS


class SimulatedFeed:
    """A scenario, answerable at any instant (see the module docstring for the recipe)."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.markets = {m.symbol: m for m in scenario.markets}
        self.sources = {s.name: s for s in scenario.sources}
        self._faults = {
            (m.symbol, s.name): [f for f in scenario.faults if f.targets(m.symbol, s.name)]
            for m in scenario.markets
            for s in scenario.sources
        }
        # permanent price factors, applied in (start_ns, position) order
        self._factors = {
            key: sorted(
                (f for f in faults if isinstance(f, (Jump, Split))),
                key=lambda f: (f.start_ns, scenario.faults.index(f)),
            )
            for key, faults in self._faults.items()
        }

    def quote(self, symbol: str, source: str, now_ns: int) -> SourceQuote | None:
        """What ``source`` says about ``symbol`` when asked at ``now_ns``, or None."""
        market, src = self.markets[symbol], self.sources[source]
        base = self._quote_at(market, src, now_ns // NS_PER_SECOND)
        if base is None:
            return None
        hint = None
        if src.hints:
            hint = _public_hint(session_at(now_ns, market.calendar).session)
            for fault in self._active(symbol, source, now_ns, Hint):
                hint = fault.hint
        return SourceQuote(
            base.source, base.symbol, base.price, base.expo, base.ts_source_ns, now_ns,
            conf=base.conf, bid=base.bid, ask=base.ask, session_hint=hint, weight=base.weight,
        )

    def quotes_at(self, now_ns: int) -> list[SourceQuote]:
        """Every quote at ``now_ns``, ordered by (symbol, source)."""
        out = []
        for symbol in sorted(self.markets):
            for source in sorted(self.sources):
                q = self.quote(symbol, source, now_ns)
                if q is not None:
                    out.append(q)
        return out

    def tape(self, start_ns: int, end_ns: int, step_ns: int = NS_PER_SECOND, max_steps: int = 100_000) -> Iterator[tuple[int, list[SourceQuote]]]:
        """``(t, quotes_at(t))`` for t = start, start + step, … < end (at most ``max_steps``)."""
        if step_ns <= 0 or (end_ns - start_ns) // step_ns > max_steps:
            raise ValueError("a tape needs a positive step and at most max_steps instants")
        for t in range(start_ns, end_ns, step_ns):
            yield t, self.quotes_at(t)

    def price_e9(self, symbol: str, source: str, second: int) -> int:
        """The hidden path with the ``Jump``/``Split`` factors in force for ``source``."""
        market = self.markets[symbol]
        price = hidden_price_e9(self.scenario.seed, market, second)
        for fault in self._factors[(symbol, source)]:
            if fault.start_ns <= second * NS_PER_SECOND < fault.end_ns:
                if isinstance(fault, Jump):
                    price = price * (PPM + fault.ppm) // PPM
                else:
                    price = price * fault.old_shares // fault.new_shares
        return price

    # -- the recipe ----------------------------------------------------------------------

    def _active(self, symbol: str, source: str, t_ns: int, kind: type):
        return [f for f in self._faults[(symbol, source)] if isinstance(f, kind) and f.applies(symbol, source, t_ns)]

    def _quote_at(self, market: SimMarket, src: SimSource, second: int) -> SourceQuote | None:
        t_ns = second * NS_PER_SECOND
        if self._active(market.symbol, src.name, t_ns, Silent):
            return None
        for fault in self._active(market.symbol, src.name, t_ns, Backstep):
            return self._quote_at(market, src, ceil_seconds(t_ns - fault.back_ns))
        for fault in self._active(market.symbol, src.name, t_ns, Stale):
            return self._quote_at(market, src, ceil_seconds(fault.start_ns) - 1)
        if market.calendar.exchange is None:
            return None  # pre-IPO: nobody quotes it
        if session_at(t_ns, market.calendar).session not in src.quotes_in():
            if not src.repeat_when_dark:
                return None
            last = self._last_live_second(market, src, t_ns)
            return None if last is None else self._quote_at(market, src, last)
        return self._live(market, src, second)

    def _last_live_second(self, market: SimMarket, src: SimSource, t_ns: int) -> int | None:
        schedule = build_schedule(market.calendar)
        i = bisect.bisect_right(schedule.starts_ns, t_ns) - 1
        for j in range(i - 1, max(i - 1 - MAX_DARK_SEGMENTS, -1), -1):
            if schedule.states[j] in src.quotes_in():
                return (schedule.starts_ns[j + 1] - 1) // NS_PER_SECOND
        return None

    def _live(self, market: SimMarket, src: SimSource, second: int) -> SourceQuote:
        t_ns = second * NS_PER_SECOND
        symbol = market.symbol
        price_e9 = self.price_e9(symbol, src.name, second)
        noise = _uniform(src.noise_ppm, self.scenario.seed, symbol, src.name, second)
        price = _from_e9(price_e9 * (PPM + noise) // PPM, src.expo)
        conf = None if src.conf_ppm is None else max(_ceil_ppm(price, src.conf_ppm), 1)
        bid = ask = None
        if src.spread_ppm is not None:
            half = _ceil_ppm(price, src.spread_ppm) // 2 + 1
            bid, ask = price - half, price + half
        for fault in self._active(symbol, src.name, t_ns, Outlier):
            price, bid, ask = (None if v is None else v * (PPM + fault.ppm) // PPM for v in (price, bid, ask))
        if self._active(symbol, src.name, t_ns, ZeroPrice):
            price, conf, bid, ask = 0, None, None, None
        return SourceQuote(
            src.name, symbol, price, src.expo, t_ns, t_ns, conf=conf, bid=bid, ask=ask, weight=src.weight
        )


class SimulatedSource:
    """The adapter: the service polls it each tick; ``run`` pushes on its own clock."""

    def __init__(
        self,
        feed: SimulatedFeed,
        name: str = "simulated",
        interval_ns: int = NS_PER_SECOND,
        clock: Clock = time.time_ns,
        sleep: Sleep = asyncio.sleep,
    ):
        self.feed = feed
        self.name = name
        self.interval_ns = interval_ns
        self.clock = clock
        self.sleep = sleep
        self.health = SourceHealth()

    def poll(self, now_ns: int) -> list[SourceQuote]:
        quotes = self.feed.quotes_at(now_ns)
        self.health.quotes += len(quotes)
        return quotes

    async def run(self, emit: Emit) -> None:
        """Emit every quote once per ``interval_ns`` grid instant of ``clock``, forever."""
        while True:
            now = self.clock()
            for q in self.poll(now):
                emit(q)
            next_tick = (now // self.interval_ns + 1) * self.interval_ns
            await self.sleep((next_tick - now) / NS_PER_SECOND)
