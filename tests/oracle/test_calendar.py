"""Sessions from exchange_calendars plus the extended-hours schedule (spec/oracle.md §4).

Instants are written in exchange-local wall time and converted with zoneinfo; where a test
is about the conversion itself (DST), the expected UTC instant is written out literally.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import msgspec
import pytest

from oracle.calendar import (
    DEFAULT_OVERRIDES,
    US_EXTENDED,
    CalendarOverride,
    CalendarRangeError,
    ExtendedHours,
    MarketCalendar,
    build_schedule,
    ns_from_datetime,
    session_at,
)
from oracle.session import Session

NEW_YORK = ZoneInfo("America/New_York")
SEOUL = ZoneInfo("Asia/Seoul")
XNYS = MarketCalendar("XNYS")
XKRX = MarketCalendar("XKRX")
NS = 1_000_000_000
HOUR_NS = 3600 * NS

S = Session


def ny(y, mo, d, h=0, mi=0) -> int:
    return ns_from_datetime(datetime(y, mo, d, h, mi, tzinfo=NEW_YORK))


def seoul(y, mo, d, h=0, mi=0) -> int:
    return ns_from_datetime(datetime(y, mo, d, h, mi, tzinfo=SEOUL))


def utc(y, mo, d, h=0, mi=0) -> int:
    return ns_from_datetime(datetime(y, mo, d, h, mi, tzinfo=timezone.utc))


def state(t_ns: int, cal: MarketCalendar = XNYS) -> Session:
    return session_at(t_ns, cal).session


# --- the US schedule on an ordinary day -----------------------------------------------------

ORDINARY_WEDNESDAY = [  # 2026-05-13, a plain Wednesday
    ((0, 0), S.OVERNIGHT),
    ((3, 59), S.OVERNIGHT),
    ((4, 0), S.PRE),
    ((9, 29), S.PRE),
    ((9, 30), S.REGULAR),
    ((15, 59), S.REGULAR),
    ((16, 0), S.POST),
    ((19, 59), S.POST),
    ((20, 0), S.OVERNIGHT),
    ((23, 59), S.OVERNIGHT),
]


@pytest.mark.parametrize(("hm", "expected"), ORDINARY_WEDNESDAY)
def test_ordinary_day_follows_the_spec_table(hm, expected):
    assert state(ny(2026, 5, 13, *hm)) == expected


def test_next_change_is_exact_to_the_nanosecond():
    info = session_at(ny(2026, 5, 13, 12), XNYS)
    assert (info.session, info.since_ns, info.next_change_ns, info.next_session) == (
        S.REGULAR, ny(2026, 5, 13, 9, 30), ny(2026, 5, 13, 16), S.POST,
    )
    assert state(ny(2026, 5, 13, 16) - 1) == S.REGULAR
    assert state(ny(2026, 5, 13, 16)) == S.POST


# --- holidays -------------------------------------------------------------------------------

# (holiday, state on the evening before at 20:30 ET, state on the holiday's evening at 20:30 ET)
NYSE_HOLIDAYS_2026 = [
    (date(2026, 1, 1), S.CLOSED_HOLIDAY, S.OVERNIGHT),  # New Year's Day, Thu
    (date(2026, 1, 19), S.CLOSED_WEEKEND, S.OVERNIGHT),  # Martin Luther King Jr. Day, Mon
    (date(2026, 2, 16), S.CLOSED_WEEKEND, S.OVERNIGHT),  # Washington's Birthday, Mon
    (date(2026, 4, 3), S.CLOSED_HOLIDAY, S.CLOSED_HOLIDAY),  # Good Friday
    (date(2026, 5, 25), S.CLOSED_WEEKEND, S.OVERNIGHT),  # Memorial Day, Mon
    (date(2026, 6, 19), S.CLOSED_HOLIDAY, S.CLOSED_HOLIDAY),  # Juneteenth, Fri
    (date(2026, 7, 3), S.CLOSED_HOLIDAY, S.CLOSED_HOLIDAY),  # Independence Day observed, Fri
    (date(2026, 9, 7), S.CLOSED_WEEKEND, S.OVERNIGHT),  # Labor Day, Mon
    (date(2026, 11, 26), S.CLOSED_HOLIDAY, S.OVERNIGHT),  # Thanksgiving, Thu
    (date(2026, 12, 25), S.CLOSED_HOLIDAY, S.CLOSED_HOLIDAY),  # Christmas, Fri
]


@pytest.mark.parametrize(("day", "eve_before", "eve_of"), NYSE_HOLIDAYS_2026, ids=lambda v: str(v))
def test_every_2026_nyse_holiday(day, eve_before, eve_of):
    before = day - timedelta(days=1)
    assert state(ny(day.year, day.month, day.day, 12)) == S.CLOSED_HOLIDAY
    # no overnight session on the evening before a full holiday
    assert state(ny(before.year, before.month, before.day, 20, 30)) == eve_before
    assert state(ny(day.year, day.month, day.day, 20, 30)) == eve_of


def test_the_2026_holidays_are_exactly_the_weekdays_without_trading():
    day, closed = date(2026, 1, 1), []
    while day.year == 2026:
        if day.weekday() < 5 and state(ny(day.year, day.month, day.day, 12)) == S.CLOSED_HOLIDAY:
            closed.append(day)
        day += timedelta(days=1)
    assert closed == [h for h, _, _ in NYSE_HOLIDAYS_2026]


def test_2026_07_03_holiday_then_weekend():
    info = session_at(ny(2026, 7, 2, 20), XNYS)  # Thursday evening: no overnight before a holiday
    assert (info.session, info.next_change_ns, info.next_session) == (
        S.CLOSED_HOLIDAY, ny(2026, 7, 4), S.CLOSED_WEEKEND,
    )
    info = session_at(ny(2026, 7, 4, 12), XNYS)
    assert (info.session, info.since_ns, info.next_change_ns, info.next_session) == (
        S.CLOSED_WEEKEND, ny(2026, 7, 4), ny(2026, 7, 5, 20), S.OVERNIGHT,
    )


# --- early close ------------------------------------------------------------------------------


def test_2026_11_27_early_close_regular_ends_at_1300_et_post_at_1700():
    info = session_at(ny(2026, 11, 27, 10), XNYS)
    assert (info.session, info.next_change_ns, info.next_session) == (S.REGULAR, ny(2026, 11, 27, 13), S.POST)
    assert info.next_change_ns == utc(2026, 11, 27, 18)  # 13:00 EST
    assert state(ny(2026, 11, 27, 13) - 1) == S.REGULAR
    info = session_at(ny(2026, 11, 27, 13), XNYS)
    assert (info.session, info.next_change_ns, info.next_session) == (
        S.POST, ny(2026, 11, 27, 17), S.CLOSED_WEEKEND,
    )
    info = session_at(ny(2026, 11, 27, 17), XNYS)
    assert (info.session, info.next_change_ns, info.next_session) == (
        S.CLOSED_WEEKEND, ny(2026, 11, 29, 20), S.OVERNIGHT,
    )


def test_2026_12_24_early_close_runs_into_christmas():
    assert state(ny(2026, 12, 24, 12, 59)) == S.REGULAR
    assert state(ny(2026, 12, 24, 16, 59)) == S.POST
    info = session_at(ny(2026, 12, 24, 17), XNYS)
    assert (info.session, info.next_change_ns) == (S.CLOSED_HOLIDAY, ny(2026, 12, 26))


# --- Thanksgiving evening ---------------------------------------------------------------------


def test_thanksgiving_evening_opens_the_overnight_session_for_friday():
    assert state(ny(2026, 11, 25, 20, 30)) == S.CLOSED_HOLIDAY  # Wednesday evening: none
    info = session_at(ny(2026, 11, 26, 19, 59), XNYS)
    assert (info.session, info.since_ns, info.next_change_ns, info.next_session) == (
        S.CLOSED_HOLIDAY, ny(2026, 11, 25, 20), ny(2026, 11, 26, 20), S.OVERNIGHT,
    )
    info = session_at(ny(2026, 11, 26, 20), XNYS)
    assert (info.session, info.next_change_ns, info.next_session) == (S.OVERNIGHT, ny(2026, 11, 27, 4), S.PRE)


# --- weekends and DST ----------------------------------------------------------------------------


def test_friday_2000_to_sunday_2000_et_is_closed_weekend():
    assert state(ny(2026, 5, 15, 20) - 1) == S.POST
    info = session_at(ny(2026, 5, 15, 20), XNYS)
    assert (info.session, info.since_ns, info.next_change_ns, info.next_session) == (
        S.CLOSED_WEEKEND, ny(2026, 5, 15, 20), ny(2026, 5, 17, 20), S.OVERNIGHT,
    )
    for hours in range(48):
        assert state(ny(2026, 5, 15, 20) + hours * HOUR_NS) == S.CLOSED_WEEKEND
    assert state(ny(2026, 5, 17, 20)) == S.OVERNIGHT


def test_every_ordinary_2026_weekend_is_closed_from_friday_2000_to_sunday_2000_local():
    friday, checked = date(2026, 1, 2), 0
    while friday.year == 2026:
        monday = friday + timedelta(days=3)
        fri = ny(friday.year, friday.month, friday.day, 12)
        mon = ny(monday.year, monday.month, monday.day, 12)
        if state(fri) == S.REGULAR and state(mon) == S.REGULAR and friday != date(2026, 11, 27):
            sunday = friday + timedelta(days=2)
            info = session_at(ny(friday.year, friday.month, friday.day, 20), XNYS)
            assert info.session == S.CLOSED_WEEKEND, friday
            assert info.next_change_ns == ny(sunday.year, sunday.month, sunday.day, 20), friday
            checked += 1
        friday += timedelta(days=7)
    assert checked >= 40


@pytest.mark.parametrize(
    ("friday", "weekend_start_utc", "weekend_end_utc", "monday_pre_utc", "monday_open_utc"),
    [
        # spring forward on Sun 2026-03-08 02:00 EST -> 03:00 EDT: a 47-hour weekend
        (date(2026, 3, 6), utc(2026, 3, 7, 1), utc(2026, 3, 9, 0), utc(2026, 3, 9, 8), utc(2026, 3, 9, 13, 30)),
        # fall back on Sun 2026-11-01 02:00 EDT -> 01:00 EST: a 49-hour weekend
        (date(2026, 10, 30), utc(2026, 10, 31, 0), utc(2026, 11, 2, 1), utc(2026, 11, 2, 9), utc(2026, 11, 2, 14, 30)),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_both_2026_dst_weekends(friday, weekend_start_utc, weekend_end_utc, monday_pre_utc, monday_open_utc):
    info = session_at(weekend_start_utc, XNYS)
    assert (info.session, info.since_ns, info.next_change_ns) == (
        S.CLOSED_WEEKEND, weekend_start_utc, weekend_end_utc,
    )
    assert state(weekend_start_utc - 1) == S.POST
    assert state(weekend_end_utc) == S.OVERNIGHT
    assert session_at(weekend_end_utc, XNYS).next_change_ns == monday_pre_utc
    assert session_at(monday_pre_utc, XNYS).next_change_ns == monday_open_utc
    monday = friday + timedelta(days=3)
    assert monday_open_utc == ny(monday.year, monday.month, monday.day, 9, 30)


# --- KRX -----------------------------------------------------------------------------------------


def test_krx_regular_hours_and_weeknights():
    assert [state(seoul(2026, 3, 11, h, m), XKRX) for h, m in [(8, 59), (9, 0), (15, 29), (15, 30)]] == [
        S.CLOSED_OFF_HOURS, S.REGULAR, S.REGULAR, S.CLOSED_OFF_HOURS,
    ]
    info = session_at(seoul(2026, 3, 11, 20), XKRX)
    assert (info.since_ns, info.next_change_ns) == (seoul(2026, 3, 11, 15, 30), seoul(2026, 3, 12, 9))


def test_krx_weekend_runs_from_friday_close_to_monday_open():
    info = session_at(seoul(2026, 3, 14, 12), XKRX)
    assert (info.session, info.since_ns, info.next_change_ns) == (
        S.CLOSED_WEEKEND, seoul(2026, 3, 13, 15, 30), seoul(2026, 3, 16, 9),
    )


def test_krx_lunar_new_year_holiday():
    info = session_at(seoul(2026, 2, 17, 12), XKRX)  # Seollal, Mon 16 – Wed 18 February 2026
    assert (info.session, info.since_ns, info.next_change_ns, info.next_session) == (
        S.CLOSED_HOLIDAY, seoul(2026, 2, 16), seoul(2026, 2, 19, 9), S.REGULAR,
    )
    assert state(seoul(2026, 2, 13, 16), XKRX) == S.CLOSED_WEEKEND


def test_krx_first_trading_day_opens_at_1000_per_exchange_calendars():
    # The spec's table says 09:00–15:30; exchange_calendars knows the 10:00 first-day open.
    assert state(seoul(2026, 1, 2, 9, 30), XKRX) == S.CLOSED_HOLIDAY  # after the 1 January holiday
    assert state(seoul(2026, 1, 2, 10), XKRX) == S.REGULAR


# --- overrides: one test each --------------------------------------------------------------------


def test_override_krx_2026_06_03_local_election_is_closed():
    assert state(seoul(2026, 6, 3, 12), XKRX) == S.CLOSED_HOLIDAY
    info = session_at(seoul(2026, 6, 2, 16), XKRX)
    assert (info.session, info.next_change_ns) == (S.CLOSED_HOLIDAY, seoul(2026, 6, 4, 9))


def test_exchange_calendars_still_lacks_the_2026_06_03_closure():
    """If this fails, exchange_calendars has fixed the gap: the override can be dropped."""
    bare = MarketCalendar("XKRX", overrides=())
    assert state(seoul(2026, 6, 3, 12), bare) == S.REGULAR


def test_override_krx_2025_11_13_exam_day_opens_and_closes_an_hour_late():
    assert state(seoul(2025, 11, 13, 9, 30), XKRX) == S.CLOSED_OFF_HOURS
    info = session_at(seoul(2025, 11, 13, 10), XKRX)
    assert (info.session, info.next_change_ns) == (S.REGULAR, seoul(2025, 11, 13, 16, 30))


def test_override_can_open_a_library_holiday_with_its_extended_hours():
    special = CalendarOverride("XNYS", date(2026, 7, 3), open=time(9, 30), close=time(13, 0), reason="test")
    cal = MarketCalendar("XNYS", overrides=(special,))
    assert state(ny(2026, 7, 2, 21), cal) == S.OVERNIGHT
    assert state(ny(2026, 7, 3, 12), cal) == S.REGULAR
    assert session_at(ny(2026, 7, 3, 13), cal).next_change_ns == ny(2026, 7, 3, 17)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"closed": True, "open": time(9)}, {"open": time(9)}, {"open": time(16), "close": time(9)}],
)
def test_override_refuses_ambiguous_entries(kwargs):
    with pytest.raises(ValueError):
        CalendarOverride("XNYS", date(2026, 1, 5), **kwargs)


def test_overrides_decode_from_config_and_reject_unknown_fields():
    raw = b'{"exchange": "XKRX", "day": "2026-06-03", "closed": true, "reason": "election"}'
    assert msgspec.json.decode(raw, type=CalendarOverride).day == date(2026, 6, 3)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"exchange": "XKRX", "day": "2026-06-03", "shut": true}', type=CalendarOverride)


# --- configuration, edges, structure -------------------------------------------------------------


def test_defaults_are_locked():
    assert US_EXTENDED == ExtendedHours(overnight_start=time(20), pre_start=time(4), post_minutes=240)
    assert XNYS == MarketCalendar("XNYS", True, DEFAULT_OVERRIDES, 2020, 2035)
    assert [(o.exchange, o.day, o.closed, o.open, o.close) for o in DEFAULT_OVERRIDES] == [
        ("XKRX", date(2026, 6, 3), True, None, None),
        ("XKRX", date(2025, 11, 13), False, time(10), time(16, 30)),
    ]


def test_regular_hours_only_when_extended_is_off():
    cal = MarketCalendar("XNYS", extended=False)
    assert state(ny(2026, 5, 13, 8), cal) == S.CLOSED_OFF_HOURS
    assert state(ny(2026, 5, 13, 17), cal) == S.CLOSED_OFF_HOURS
    assert state(ny(2026, 5, 13, 12), cal) == S.REGULAR
    assert state(ny(2026, 5, 15, 17), cal) == S.CLOSED_WEEKEND


def test_pre_ipo_market_is_internal_only_forever():
    info = session_at(ny(2026, 5, 13, 12), MarketCalendar(None))
    assert info == session_at(0, MarketCalendar(None))
    assert (info.session, info.since_ns, info.next_change_ns, info.next_session) == (S.INTERNAL_ONLY, None, None, None)


def test_instants_outside_the_window_are_refused():
    cal = MarketCalendar("XNYS", first_year=2026, last_year=2026)
    assert state(ny(2026, 6, 1, 12), cal) == S.REGULAR
    with pytest.raises(CalendarRangeError):
        session_at(ny(2027, 1, 5, 12), cal)
    with pytest.raises(CalendarRangeError):
        session_at(ny(2025, 12, 30, 12), cal)


def test_time_is_int_nanoseconds_and_datetimes_must_be_aware():
    with pytest.raises(TypeError):
        session_at(datetime(2026, 5, 13, 12, tzinfo=NEW_YORK), XNYS)
    with pytest.raises(ValueError):
        ns_from_datetime(datetime(2026, 5, 13, 12))
    assert ns_from_datetime(datetime(2026, 5, 29, 14, 10, 58, 123456, tzinfo=timezone.utc)) == 1_780_063_858_123_456_000


@pytest.mark.parametrize("cal", [XNYS, XKRX], ids=["XNYS", "XKRX"])
def test_2026_timeline_is_contiguous_with_real_changes_only(cal):
    schedule = build_schedule(cal)
    segments = list(schedule.segments(utc(2026, 1, 1), utc(2027, 1, 1)))
    assert segments[0][0] == utc(2026, 1, 1) and segments[-1][1] == utc(2027, 1, 1)
    for (_, end, prev), (start, _, cur) in zip(segments, segments[1:]):
        assert end == start and prev != cur
    if cal.exchange == "XNYS":
        tz = NEW_YORK
        for start, end, session in segments[1:-1]:
            if session == S.OVERNIGHT:
                begin = datetime.fromtimestamp(start // NS, tz)
                assert (begin.time(), begin.weekday()) in {(time(20), d) for d in (6, 0, 1, 2, 3)}
                assert datetime.fromtimestamp(end // NS, tz).time() == time(4)
