"""Market sessions: exchange calendars plus afterhours' own extended-hours schedule.

Time is an ``int`` of nanoseconds since the Unix epoch (UTC), the engine's time unit;
``ns_from_datetime`` converts an aware ``datetime`` at the edge. Wall-clock hours are
always exchange-local (``America/New_York``, ``Asia/Seoul``) and converted with
``zoneinfo``: no UTC offset is hard-coded anywhere.

Layout:
  ``ExtendedHours``, ``EXTENDED_HOURS``   afterhours' own schedule around the regular session
  ``CalendarOverride``, ``DEFAULT_OVERRIDES``  patches for known calendar errors (config)
  ``MarketCalendar``                      per-market config: exchange, extended on/off, window
  ``SessionSchedule``                     the timeline built once per config: sorted segment
                                          starts and states; ``at(t_ns)`` is a bisect
  ``session_at(t_ns, calendar)``          the public answer: state, since when, until when

How a timeline is built (spec/oracle.md §4): for every trading day D of the exchange calendar
(holidays, early closes and late opens from ``exchange_calendars``, then the overrides), the
open intervals are OVERNIGHT [D−1 20:00, D 04:00), PRE [04:00, open), REGULAR [open, close),
POST [close, close + 4 h) in local wall time, so 16:00 → 20:00 and 13:00 → 17:00 on early-close
days. Because overnight belongs to the next trading day, there is none on Friday or Saturday
evening and none on the evening before a full holiday, exactly as the spec's table says. Every
gap between open intervals is closed; each closed piece of a local day is classified as:
a Saturday/Sunday → ``CLOSED_WEEKEND``; a weekday that is not a trading day →
``CLOSED_HOLIDAY``; closed hours of a trading day that reach its midnight take the class of the
neighbouring day on that side (Friday 20:00–24:00 → weekend; the evening before a holiday →
holiday; KRX Monday 00:00–09:00 → weekend); any other closed hours → ``CLOSED_OFF_HOURS``.
Adjacent segments of the same state are merged, so ``next_change_ns`` is a real change.

Invariants:
  * Segments are contiguous, non-overlapping, sorted, and adjacent states differ.
  * Pure: the answer depends only on ``t_ns`` and the config; no clock is read.
  * Calendars load once per process (XKRX takes seconds: its lunar holidays are computed).

Known limitations:
  * Only instants inside the config's window of years are answered (``CalendarRangeError``
    otherwise); the first and last segment of the window are not answerable because their
    true start or end lies outside it.
  * Lunch breaks (``break_start``/``break_end`` in exchange_calendars) are not modelled;
    XNYS and XKRX have none today. ``build_schedule`` refuses a calendar that has them.
  * Where the spec and exchange_calendars disagree, the library wins unless an override says
    otherwise: XKRX opens at 10:00 on the first trading day of the year (the spec's table says
    09:00; the library is right). The spec names no state for a KRX weeknight:
    ``CLOSED_OFF_HOURS`` (see oracle/session.py).
  * Where the library is wrong, ``DEFAULT_OVERRIDES`` patches it (each has a test): in
    exchange_calendars 4.13 XKRX trades on 2026-06-03 (local elections; KRX is closed) and
    keeps 09:00–15:30 on exam days (KRX trades 10:00–16:30). Later exam days and elections
    must be added as they are announced.
  * A choice the spec leaves open: Sunday 20:00–24:00 before a Monday holiday is
    ``CLOSED_WEEKEND`` (it is Sunday); the holiday starts at Monday 00:00 local.
"""

from __future__ import annotations

import bisect
import functools
import warnings
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterator
from zoneinfo import ZoneInfo

import msgspec

from oracle.session import NS_PER_SECOND, Session

class CalendarRangeError(ValueError):
    """An instant outside the window of years a schedule was built for."""


class ExtendedHours(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Afterhours' own sessions around the regular one, in exchange-local wall time.

    ``overnight_start``: the evening before each trading day (None: no overnight session);
    ``pre_start``: start of pre-market, also the end of overnight (None: no pre-market);
    ``post_minutes``: length of post-market after the regular close (0: none).
    """

    overnight_start: time | None = None
    pre_start: time | None = None
    post_minutes: int = 0


US_EXTENDED = ExtendedHours(overnight_start=time(20, 0), pre_start=time(4, 0), post_minutes=240)
EXTENDED_HOURS: dict[str, ExtendedHours] = {"XNYS": US_EXTENDED, "XKRX": ExtendedHours()}


class CalendarOverride(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One correction to an exchange calendar, for one local trading date.

    Either ``closed=True`` (no trading that day, and so no overnight into it), or both
    ``open`` and ``close`` (local wall time) replacing the day's regular hours, which also
    opens a day the library thinks is a holiday.
    """

    exchange: str
    day: date
    closed: bool = False
    open: time | None = None
    close: time | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        has_hours = self.open is not None or self.close is not None
        if self.closed == has_hours:
            raise ValueError("an override is either closed=True or has both open and close")
        if has_hours and (self.open is None or self.close is None or self.open >= self.close):
            raise ValueError("an override's open must be before its close")


# Known gaps in exchange_calendars (4.13.2), checked by tests/oracle/test_calendar.py.
DEFAULT_OVERRIDES: tuple[CalendarOverride, ...] = (
    CalendarOverride(
        "XKRX", date(2026, 6, 3), closed=True,
        reason="9th nationwide local elections: KRX closed; missing from exchange_calendars 4.13",
    ),
    CalendarOverride(
        "XKRX", date(2025, 11, 13), open=time(10, 0), close=time(16, 30),
        reason="college entrance exam (CSAT) day: KRX opens and closes an hour late",
    ),
)


class MarketCalendar(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which calendar a market follows. ``exchange`` None: a pre-IPO market, always
    ``INTERNAL_ONLY``. ``extended`` False: regular hours only, even on XNYS."""

    exchange: str | None
    extended: bool = True
    overrides: tuple[CalendarOverride, ...] = DEFAULT_OVERRIDES
    first_year: int = 2020
    last_year: int = 2035


class SessionInfo(msgspec.Struct, frozen=True):
    """The state at an instant. ``since_ns``/``next_change_ns`` are None for a state that
    never started or never ends (``INTERNAL_ONLY``); ``next_session`` is the state after."""

    session: Session
    since_ns: int | None
    next_change_ns: int | None
    next_session: Session | None


def ns_from_datetime(moment: datetime) -> int:
    """Nanoseconds since the epoch for an aware datetime (exact, microsecond resolution)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a naive datetime has no instant; give it a time zone")
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1_000


def _local_ns(day: date, at: time, tz: ZoneInfo) -> int:
    return ns_from_datetime(datetime.combine(day, at, tzinfo=tz))


def _wall_plus_minutes(t_ns: int, minutes: int, tz: ZoneInfo) -> int:
    """``t_ns`` moved by ``minutes`` of local wall-clock time (DST-safe)."""
    local = datetime.fromtimestamp(t_ns // NS_PER_SECOND, tz).replace(tzinfo=None)
    return ns_from_datetime((local + timedelta(minutes=minutes)).replace(tzinfo=tz))


class SessionSchedule:
    """A built timeline: segment ``i`` has state ``states[i]`` on ``[starts_ns[i], starts_ns[i+1])``."""

    __slots__ = ("exchange", "starts_ns", "states")

    def __init__(self, exchange: str, starts_ns: list[int], states: list[Session]):
        if len(starts_ns) != len(states) + 1 or len(states) < 3:
            raise AssertionError("a schedule needs an end sentinel and at least three segments")
        self.exchange = exchange
        self.starts_ns = tuple(starts_ns)
        self.states = tuple(states)

    @property
    def valid_from_ns(self) -> int:
        return self.starts_ns[1]

    @property
    def valid_until_ns(self) -> int:
        """Exclusive: the last segment's start (its end lies outside the window)."""
        return self.starts_ns[-2]

    def at(self, t_ns: int) -> SessionInfo:
        """The state at ``t_ns`` and its next change. Raises ``CalendarRangeError`` outside
        ``[valid_from_ns, valid_until_ns)``."""
        if not self.valid_from_ns <= t_ns < self.valid_until_ns:
            raise CalendarRangeError(f"{self.exchange}: instant {t_ns} ns outside the calendar window")
        i = bisect.bisect_right(self.starts_ns, t_ns) - 1
        return SessionInfo(self.states[i], self.starts_ns[i], self.starts_ns[i + 1], self.states[i + 1])

    def segments(self, from_ns: int, to_ns: int) -> Iterator[tuple[int, int, Session]]:
        """``(start_ns, end_ns, session)`` of every segment overlapping ``[from_ns, to_ns)``,
        clipped to it, in time order."""
        i = max(bisect.bisect_right(self.starts_ns, from_ns) - 1, 0)
        while i < len(self.states) and self.starts_ns[i] < to_ns:
            yield max(self.starts_ns[i], from_ns), min(self.starts_ns[i + 1], to_ns), self.states[i]
            i += 1


@functools.lru_cache(maxsize=None)
def _exchange_calendar(exchange: str, first_year: int, last_year: int):
    import exchange_calendars  # heavy import, only when a schedule is first built

    with warnings.catch_warnings():
        # exchange_calendars 4.13 calls Series.values on tz-aware columns, which pandas 3.1
        # deprecates; the values it gets today are right. Silence only that message.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return exchange_calendars.get_calendar(
            exchange, start=f"{first_year - 1}-12-01", end=f"{last_year + 1}-01-31"
        )


def _trading_days(calendar: MarketCalendar) -> tuple[dict[date, tuple[int, int]], ZoneInfo, set[int]]:
    """``{local date: (open_ns, close_ns)}`` after overrides, the time zone, and the weekdays
    (0 = Monday) on which the exchange normally trades."""
    xcal = _exchange_calendar(calendar.exchange, calendar.first_year, calendar.last_year)
    sched = xcal.schedule
    if sched["break_start"].notna().any():
        raise ValueError(f"{calendar.exchange}: lunch breaks are not modelled")
    tz = ZoneInfo(str(xcal.tz))
    days = {
        label.date(): (int(opened.value), int(closed.value))
        for label, opened, closed in zip(sched.index, sched["open"], sched["close"])
    }
    for fix in calendar.overrides:
        if fix.exchange != calendar.exchange:
            continue
        if fix.closed:
            days.pop(fix.day, None)
        else:
            days[fix.day] = (_local_ns(fix.day, fix.open, tz), _local_ns(fix.day, fix.close, tz))
    weekdays = {i for i, flag in enumerate(xcal.weekmask) if flag == "1"}
    return days, tz, weekdays


def _open_intervals(days, tz, ext: ExtendedHours) -> list[tuple[int, int, Session]]:
    """Every open interval of every trading day, in time order (overnight before pre, …)."""
    out: list[tuple[int, int, Session]] = []
    for day in sorted(days):
        open_ns, close_ns = days[day]
        pre_ns = _local_ns(day, ext.pre_start, tz) if ext.pre_start is not None else open_ns
        if ext.overnight_start is not None:
            out.append((_local_ns(day - timedelta(days=1), ext.overnight_start, tz), min(pre_ns, open_ns), Session.OVERNIGHT))
        out.append((pre_ns, open_ns, Session.PRE))
        out.append((open_ns, close_ns, Session.REGULAR))
        out.append((close_ns, _wall_plus_minutes(close_ns, ext.post_minutes, tz), Session.POST))
    out = [iv for iv in out if iv[0] < iv[1]]
    for (_, end, _), (start, _, _) in zip(out, out[1:]):
        if start < end:
            raise ValueError("extended-hours schedule overlaps itself; check the overrides")
    return out


def _closed_state(day: date, touches_start: bool, touches_end: bool, days, weekdays) -> Session:
    """Class of a closed piece of local ``day`` (see the module docstring)."""

    def kind(d: date) -> Session | None:
        if d.weekday() not in weekdays:
            return Session.CLOSED_WEEKEND
        return None if d in days else Session.CLOSED_HOLIDAY

    own = kind(day)
    if own is not None:
        return own
    if touches_end:
        return kind(day + timedelta(days=1)) or Session.CLOSED_OFF_HOURS
    if touches_start:
        return kind(day - timedelta(days=1)) or Session.CLOSED_OFF_HOURS
    return Session.CLOSED_OFF_HOURS


def _closed_pieces(start_ns: int, end_ns: int, tz: ZoneInfo, days, weekdays):
    """Split a closed gap at local midnights and classify each piece."""
    day = datetime.fromtimestamp(start_ns // NS_PER_SECOND, tz).date()
    cursor = start_ns
    while cursor < end_ns:
        day_start = _local_ns(day, time(0), tz)
        day_end = _local_ns(day + timedelta(days=1), time(0), tz)
        piece_end = min(end_ns, day_end)
        state = _closed_state(day, cursor == day_start, piece_end == day_end, days, weekdays)
        yield cursor, piece_end, state
        cursor, day = piece_end, day + timedelta(days=1)


@functools.lru_cache(maxsize=64)
def build_schedule(calendar: MarketCalendar) -> SessionSchedule:
    """The timeline of ``calendar`` over its window of years, built once and cached."""
    if calendar.exchange is None:
        raise ValueError("a pre-IPO market has no schedule; it is always INTERNAL_ONLY")
    days, tz, weekdays = _trading_days(calendar)
    ext = EXTENDED_HOURS.get(calendar.exchange, ExtendedHours()) if calendar.extended else ExtendedHours()
    window_start = _local_ns(date(calendar.first_year, 1, 1), time(0), tz)
    window_end = _local_ns(date(calendar.last_year + 1, 1, 1), time(0), tz)
    starts: list[int] = []
    states: list[Session] = []

    def push(start: int, end: int, state: Session) -> None:
        start, end = max(start, window_start), min(end, window_end)
        if start >= end:
            return
        if states and states[-1] == state:
            return  # merged with the previous segment
        starts.append(start)
        states.append(state)

    cursor = window_start
    for start, end, state in _open_intervals(days, tz, ext):
        if end <= window_start or start >= window_end:
            continue
        for piece in _closed_pieces(max(cursor, window_start), start, tz, days, weekdays):
            push(*piece)
        push(start, end, state)
        cursor = end
    for piece in _closed_pieces(cursor, window_end, tz, days, weekdays):
        push(*piece)
    starts.append(window_end)
    return SessionSchedule(calendar.exchange, starts, states)


def session_at(t_ns: int, calendar: MarketCalendar) -> SessionInfo:
    """The scheduled state of ``calendar``'s market at ``t_ns`` (int ns since the epoch, UTC)
    and when it next changes. Pre-IPO markets are ``INTERNAL_ONLY`` forever."""
    if isinstance(t_ns, bool) or not isinstance(t_ns, int):
        raise TypeError("t_ns must be an int of nanoseconds since the epoch; see ns_from_datetime")
    if calendar.exchange is None:
        return SessionInfo(Session.INTERNAL_ONLY, None, None, None)
    return build_schedule(calendar).at(t_ns)
