"""The oracle service: sources in, one ``OracleUpdate`` per market per second out.

Layout:
  ``FeedSource``, ``SplitEvent``, ``MarketFeed``   per-market configuration (frozen Structs)
  ``OracleService.on_quote``   the ``emit`` every push source gets: routes a quote to its
                               market, refuses time travel (per-source monotonic timestamps)
  ``OracleService.step``       one update per market at ``now_ns``, in market order (sync,
                               deterministic given the quotes received)
  ``OracleService.run``        the task: runs the push sources, and on every whole interval
                               of the injected clock polls the poll sources, steps, submits

One market's update at ``now`` (spec/oracle.md §3–4):
  1 scheduled session from the calendar (``INTERNAL_ONLY`` for pre-IPO markets); splits that
    took effect rescale the aggregation history (``SPLIT_APPLIED``);
  2 the covering sources: those whose ``FeedSource.sessions`` include the scheduled session
    (a regular-hours-only feed neither votes nor hints outside regular hours);
  3 hints of covering sources with a fresh quote (within the session's max age) may only
    downgrade the session (``oracle.session.downgrade``, applied in source-name order);
  4 silence: open, yet no covering source has a positive price newer than ``halt_after_ns``
    (measured from when the current covered open span began) → ``HALTED``;
  5 ``oracle.aggregate.aggregate`` with that session; prices and conf to 1e-9 USD.

Invariants:
  * The service reads time only from its clock; ``step`` reads none (``now_ns`` is given).
  * Updates carry the tick's grid instant (a multiple of ``interval_ns``), strictly
    increasing; a late wake-up publishes the latest instant once (``skipped_ticks`` counts
    the others).
  * A quote older than the source's previous one for that market is dropped
    (``NON_MONOTONIC_DROPPED``); one stamped more than ``max_future_ns`` after its own
    arrival is not kept (``FUTURE_DROPPED``), so it cannot block the honest ones after it.

Known limitations:
  * An adapter that raises (a bug: adapters retry upstream trouble themselves) is not
    restarted; ``failures`` records it and its markets go stale, which their flags show.
  * ``OracleUpdate`` lives in ``oracle/update.py`` until the engine's command union takes it.
  * A split rescales history at ``effective_ns``; positions and orders are the engine's
    (an admin command), and a source still quoting the old shares is caught as an outlier
    unless ``set_multiplier`` puts it on the new basis.
"""

from __future__ import annotations

import asyncio
import bisect
import inspect
import time
from fractions import Fraction
from typing import Awaitable, Callable, Sequence

import msgspec

from oracle.aggregate import DEFAULT_PARAMS, AggFlag, AggParams, AggState, aggregate, max_age_ns
from oracle.calendar import MarketCalendar, build_schedule, session_at
from oracle.clock import Clock, Sleep
from oracle.quote import SourceQuote
from oracle.session import HALT_AFTER_NS, NS_PER_SECOND, OPEN_SESSIONS, Session, downgrade, is_open
from oracle.sources.base import PollSource, PushSource
from oracle.update import OracleUpdate, ServiceFlag, e18_to_e9_down, e18_to_e9_up

Submit = Callable[[OracleUpdate], Awaitable[None] | None]
MAX_SPAN_SEGMENTS = 64


class FeedSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A source a market listens to, and the open sessions it covers for that market."""

    name: str
    sessions: frozenset[Session] = OPEN_SESSIONS


class SplitEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``new_shares`` for ``old_shares`` from ``effective_ns`` on (5:1 → new 5, old 1)."""

    effective_ns: int
    new_shares: int
    old_shares: int = 1


class MarketFeed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One market: its engine id, the symbol its quotes carry, calendar and sources."""

    market: int
    symbol: str
    calendar: MarketCalendar
    sources: tuple[FeedSource, ...]
    params: AggParams = DEFAULT_PARAMS
    splits: tuple[SplitEvent, ...] = ()
    halt_after_ns: int = HALT_AFTER_NS


class _Market:
    """One market's mutable state."""

    def __init__(self, feed: MarketFeed):
        self.feed = feed
        self.names = frozenset(s.name for s in feed.sources)
        self.latest: dict[str, SourceQuote] = {}
        self.agg = AggState()
        self.pending = 0  # flags raised by quotes since the last update
        self.splits = sorted(feed.splits, key=lambda s: s.effective_ns)
        self.next_split = 0
        self.multipliers: dict[str, Fraction] = {}


def _rescale(state: AggState, split: SplitEvent) -> AggState:
    """The aggregation history on the new share basis (× old/new, rounded down)."""

    def scale(price: int) -> int:
        return price * split.old_shares // split.new_shares

    last = None if state.last_price_e18 is None else scale(state.last_price_e18)
    return AggState(last, state.last_ts_ns, tuple((ts, scale(p)) for ts, p in state.recent))


class OracleService:
    """Runs sources and emits updates into ``submit`` (sync, or returning an awaitable)."""

    def __init__(
        self,
        feeds: Sequence[MarketFeed],
        submit: Submit,
        poll_sources: Sequence[PollSource] = (),
        push_sources: Sequence[PushSource] = (),
        clock: Clock = time.time_ns,
        sleep: Sleep = asyncio.sleep,
        interval_ns: int = NS_PER_SECOND,
    ):
        markets = sorted(feeds, key=lambda f: f.market)
        if len({f.market for f in markets}) != len(markets) or len({f.symbol for f in markets}) != len(markets):
            raise ValueError("market ids and symbols must be unique")
        self._markets = [_Market(f) for f in markets]
        self._by_symbol = {m.feed.symbol: m for m in self._markets}
        self._by_market = {m.feed.market: m for m in self._markets}
        self.submit = submit
        self.poll_sources = tuple(poll_sources)
        self.push_sources = tuple(push_sources)
        self.clock = clock
        self.sleep = sleep
        self.interval_ns = interval_ns
        self.unrouted = 0  # quotes for a symbol no market has
        self.skipped_ticks = 0
        self.failures: dict[str, str] = {}
        self._last_tick_ns: int | None = None

    # -- input -----------------------------------------------------------------------------

    def on_quote(self, quote: SourceQuote) -> None:
        """Route one quote to its market (the ``emit`` of every source)."""
        m = self._by_symbol.get(quote.symbol)
        if m is None:
            self.unrouted += 1
            return
        if quote.source not in m.names:
            m.pending |= ServiceFlag.UNKNOWN_SOURCE_DROPPED
            return
        if quote.ts_source_ns - quote.ts_received_ns > m.feed.params.max_future_ns:
            m.pending |= AggFlag.FUTURE_DROPPED
            return
        previous = m.latest.get(quote.source)
        if previous is not None and quote.ts_source_ns < previous.ts_source_ns:
            m.pending |= ServiceFlag.NON_MONOTONIC_DROPPED
            return
        m.latest[quote.source] = quote

    def set_multiplier(self, market: int, source: str, multiplier: Fraction | None) -> None:
        """Put ``source`` on ``market``'s share basis (``Fraction(1, 5)`` for a source still
        quoting pre-split shares after a 5:1 split); None removes it."""
        m = self._by_market.get(market)
        if m is None:
            raise KeyError(f"no market {market}")
        if multiplier is None:
            m.multipliers.pop(source, None)
        else:
            m.multipliers[source] = multiplier

    # -- one tick --------------------------------------------------------------------------

    def step(self, now_ns: int) -> list[OracleUpdate]:
        """One update per market at ``now_ns``, in market-id order."""
        return [self._update(m, now_ns) for m in self._markets]

    def _update(self, m: _Market, now_ns: int) -> OracleUpdate:
        feed, params = m.feed, m.feed.params
        info = session_at(now_ns, feed.calendar)
        scheduled = info.session
        flags, m.pending = m.pending, 0
        while m.next_split < len(m.splits) and m.splits[m.next_split].effective_ns <= now_ns:
            m.agg = _rescale(m.agg, m.splits[m.next_split])
            m.next_split += 1
            flags |= ServiceFlag.SPLIT_APPLIED
        covering = [s.name for s in feed.sources if scheduled in s.sessions]
        quotes = [m.latest[name] for name in sorted(covering) if name in m.latest]
        if is_open(scheduled) and not covering:
            flags |= ServiceFlag.NO_COVERAGE
        session = self._hinted(scheduled, quotes, now_ns, params)
        if session != scheduled:
            flags |= ServiceFlag.HINT_DOWNGRADED
        if is_open(session) and covering and self._silent(m, quotes, now_ns, info.since_ns):
            session = Session.HALTED
            flags |= ServiceFlag.SILENT_HALT
        result, m.agg = aggregate(quotes, session, now_ns, m.agg, params, m.multipliers)
        flags |= result.flags
        price = None if result.price_e18 is None else e18_to_e9_down(result.price_e18)
        conf = None if result.conf_e18 is None else e18_to_e9_up(result.conf_e18)
        return OracleUpdate(feed.market, now_ns, price, conf, result.n_sources, session, int(flags))

    @staticmethod
    def _hinted(scheduled: Session, quotes: list[SourceQuote], now_ns: int, params: AggParams) -> Session:
        limit = max_age_ns(scheduled, params)
        session = scheduled
        if limit is None:
            return session
        for q in quotes:  # sorted by source name
            if q.session_hint is not None and 0 <= now_ns - q.ts_source_ns <= limit:
                session = downgrade(session, q.session_hint)
        return session

    def _silent(self, m: _Market, quotes: list[SourceQuote], now_ns: int, since_ns: int | None) -> bool:
        """Every covering source silent for more than ``halt_after_ns``, counting from the
        newest positive-price quote or from when the covered open span began."""
        newest = max((q.ts_source_ns for q in quotes if q.price > 0), default=None)
        began = self._span_start(m.feed, now_ns, since_ns)
        reference = began if newest is None else max(newest, began)
        return now_ns - reference > m.feed.halt_after_ns

    @staticmethod
    def _span_start(feed: MarketFeed, now_ns: int, since_ns: int | None) -> int:
        """Start of the run of open segments, each covered by some source, containing now."""
        schedule = build_schedule(feed.calendar)
        i = bisect.bisect_right(schedule.starts_ns, now_ns) - 1
        start = schedule.starts_ns[i] if since_ns is None else since_ns
        for j in range(i - 1, max(i - 1 - MAX_SPAN_SEGMENTS, 0), -1):
            state = schedule.states[j]
            if not (is_open(state) and any(state in s.sessions for s in feed.sources)):
                break
            start = schedule.starts_ns[j]
        return start

    # -- the task --------------------------------------------------------------------------

    async def run(self, max_ticks: int | None = None) -> None:
        """Run the push sources and tick on every whole ``interval_ns`` of the clock; stops
        after ``max_ticks`` ticks (None: only by cancellation)."""
        tasks = [asyncio.create_task(self._supervise(s)) for s in self.push_sources]
        try:
            ticks = 0
            while max_ticks is None or ticks < max_ticks:
                now = self.clock()
                await self.sleep(((now // self.interval_ns + 1) * self.interval_ns - now) / NS_PER_SECOND)
                if await self.tick(self.clock()):
                    ticks += 1
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def tick(self, now_ns: int) -> bool:
        """Poll, step and submit at the grid instant at or before ``now_ns``; False if that
        instant was already published (an early wake-up)."""
        tick_ns = now_ns // self.interval_ns * self.interval_ns
        if self._last_tick_ns is not None:
            if tick_ns <= self._last_tick_ns:
                return False
            self.skipped_ticks += (tick_ns - self._last_tick_ns) // self.interval_ns - 1
        self._last_tick_ns = tick_ns
        for source in self.poll_sources:
            for quote in source.poll(tick_ns):
                self.on_quote(quote)
        for update in self.step(tick_ns):
            result = self.submit(update)
            if inspect.isawaitable(result):
                await result
        return True

    async def _supervise(self, source: PushSource) -> None:
        try:
            await source.run(self.on_quote)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in an adapter: record it, keep the other markets going
            self.failures[source.name] = repr(exc)
