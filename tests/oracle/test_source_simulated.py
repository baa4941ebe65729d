"""The simulated source: determinism, the calendar, and every scripted fault."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from oracle.calendar import MarketCalendar
from oracle.clock import VirtualClock
from oracle.quote import SourceQuote
from oracle.session import Session
from oracle.sources.base import PollSource
from oracle.sources.scenario import (
    Backstep,
    Fault,
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
    gap_at_open,
    halt,
)
from oracle.sources.simulated import SimulatedFeed, SimulatedSource, hidden_price_e9
from sim_cases import (
    CHAINLINK,
    CHAINLINK8,
    NS,
    PYTH,
    SEED,
    TSLA,
    WEDNESDAY_10,
    XNYS,
    XNYS_REGULAR_ONLY,
    ny,
    scenario,
    utc,
)

S = Session
T = WEDNESDAY_10


def q(feed: SimulatedFeed, t_ns: int, source: str = "pyth", symbol: str = "TSLA") -> SourceQuote | None:
    return feed.quote(symbol, source, t_ns)


def same_but_received(a: SourceQuote, b: SourceQuote) -> bool:
    return msgspec.structs.replace(a, ts_received_ns=0) == msgspec.structs.replace(b, ts_received_ns=0)


# --- the path -----------------------------------------------------------------------------------


def test_equal_scenarios_give_equal_tapes_and_another_seed_does_not():
    one = list(SimulatedFeed(scenario()).tape(T, T + 5 * NS))
    two = list(SimulatedFeed(scenario()).tape(T, T + 5 * NS))
    other = list(SimulatedFeed(scenario(seed=SEED + 1)).tape(T, T + 5 * NS))
    assert one == two
    assert [x.price for _, quotes in one for x in quotes] != [x.price for _, quotes in other for x in quotes]


def test_a_quote_does_not_depend_on_what_was_asked_before():
    fresh = SimulatedFeed(scenario())
    warmed = SimulatedFeed(scenario())
    warmed.quotes_at(T + 3600 * NS)
    assert fresh.quotes_at(T) == warmed.quotes_at(T)


def test_zero_volatility_and_no_noise_quote_the_start_price_exactly():
    flat = SimMarket("FLAT", XNYS, 123_456_789_012, vol_ppm_per_hour=0)
    src = SimSource("pyth", expo=-5, conf_ppm=100, noise_ppm=0)
    feed = SimulatedFeed(Scenario(seed=1, markets=(flat,), sources=(src,)))
    quote = feed.quote("FLAT", "pyth", T + 123 * NS + 456)
    assert quote == SourceQuote(
        "pyth", "FLAT", 12_345_678, -5, T + 123 * NS, T + 123 * NS + 456, conf=1_235, weight=1
    )  # 123.456789012 rounded down to 1e-5; conf 1 bp of 12,345,678 rounded up


def test_the_path_moves_under_0_2pct_a_second_and_does_move():
    seconds = range(T // NS, T // NS + 600)
    prices = [hidden_price_e9(SEED, TSLA, s) for s in seconds]
    steps = [abs(b - a) for a, b in zip(prices, prices[1:])]
    assert max(steps) * 1_000_000 < TSLA.start_price_e9 * 2_000  # < 0.2% a second
    assert len(set(prices)) > 500  # and it does move


def test_book_and_conf_follow_the_source_settings():
    feed = SimulatedFeed(scenario())
    chain = q(feed, T, "chainlink")
    assert (chain.expo, chain.conf, chain.session_hint) == (-18, None, S.REGULAR)
    half = -(-chain.price * 200 // 1_000_000) // 2 + 1
    assert (chain.bid, chain.ask) == (chain.price - half, chain.price + half)
    pyth = q(feed, T)
    assert (pyth.expo, pyth.conf, pyth.bid, pyth.session_hint) == (-5, -(-pyth.price * 100 // 1_000_000), None, None)


# --- sessions --------------------------------------------------------------------------------------


def test_a_regular_hours_source_freezes_its_publish_time_at_the_close():
    feed = SimulatedFeed(scenario(sources=(CHAINLINK8, SimSource("quiet", sessions=frozenset({S.REGULAR}), repeat_when_dark=False))))
    last = q(feed, ny(2026, 5, 13, 15, 59, 59), "chainlink8")
    after = q(feed, ny(2026, 5, 13, 16, 0, 0), "chainlink8")
    assert last.ts_source_ns == after.ts_source_ns == ny(2026, 5, 13, 15, 59, 59)
    assert after.price == last.price
    assert (last.session_hint, after.session_hint) == (S.REGULAR, S.POST)
    assert q(feed, ny(2026, 5, 13, 16), "quiet") is None


@pytest.mark.parametrize(
    "asked, live_until",
    [
        (ny(2026, 5, 16, 12), ny(2026, 5, 15, 19, 59, 59)),  # Saturday: Friday's post-market close
        (ny(2026, 7, 3, 12), ny(2026, 7, 2, 19, 59, 59)),  # the 2026-07-03 holiday: no overnight before it
        (ny(2026, 11, 27, 17, 30), ny(2026, 11, 27, 16, 59, 59)),  # early close: post ends 17:00
        (utc(2026, 3, 8, 23, 59, 59), utc(2026, 3, 7, 0, 59, 59)),  # spring DST Sunday, 19:59:59 EDT
        (utc(2026, 11, 2, 0, 59, 59), utc(2026, 10, 31, 0, 0, 0) - NS),  # autumn DST Sunday, 19:59:59 EST
    ],
)
def test_while_dark_the_last_live_quote_repeats(asked, live_until):
    feed = SimulatedFeed(scenario())
    repeat = q(feed, asked)
    assert repeat.ts_source_ns == live_until
    assert same_but_received(repeat, q(feed, live_until))
    assert q(feed, asked, "chainlink").session_hint == S.CLOSED_OFF_HOURS


@pytest.mark.parametrize(
    "opens_at",
    [ny(2026, 5, 17, 20), utc(2026, 3, 9, 0), utc(2026, 11, 2, 1), ny(2026, 7, 5, 20)],
    ids=["sunday", "dst_spring", "dst_autumn", "after_holiday"],
)
def test_quotes_come_back_at_sunday_2000_new_york(opens_at):
    feed = SimulatedFeed(scenario())
    assert q(feed, opens_at - NS).ts_source_ns < opens_at - 3600 * NS
    assert q(feed, opens_at).ts_source_ns == opens_at
    assert q(feed, opens_at, "chainlink").session_hint == S.OVERNIGHT


def test_early_close_day_regular_ends_at_1300():
    feed = SimulatedFeed(scenario(sources=(CHAINLINK, CHAINLINK8)))
    assert q(feed, ny(2026, 11, 27, 12, 59, 59), "chainlink").session_hint == S.REGULAR
    assert q(feed, ny(2026, 11, 27, 13), "chainlink").session_hint == S.POST
    assert q(feed, ny(2026, 11, 27, 13), "chainlink8").ts_source_ns == ny(2026, 11, 27, 12, 59, 59)


def test_regular_only_calendar_and_pre_ipo_market():
    reg = SimMarket("AAPL", XNYS_REGULAR_ONLY, 200_000_000_000)
    pre_ipo = SimMarket("SPACEX", MarketCalendar(None), 500_000_000_000)
    feed = SimulatedFeed(Scenario(seed=3, markets=(reg, pre_ipo), sources=(PYTH,)))
    assert q(feed, ny(2026, 5, 13, 9, 29, 59), symbol="AAPL").ts_source_ns == ny(2026, 5, 12, 15, 59, 59)
    assert q(feed, ny(2026, 5, 13, 9, 30), symbol="AAPL").ts_source_ns == ny(2026, 5, 13, 9, 30)
    assert q(feed, T, symbol="SPACEX") is None
    assert [x.symbol for x in feed.quotes_at(T)] == ["AAPL"]


# --- faults ------------------------------------------------------------------------------------


def test_stale_spell_resends_the_quote_from_before_it_and_halt_freezes_every_source():
    feed = SimulatedFeed(scenario(Stale(start_ns=T, end_ns=T + 10 * NS, sources=("pyth",))))
    stale = q(feed, T + 5 * NS)
    assert stale.ts_source_ns == T - NS and same_but_received(stale, q(feed, T - NS))
    assert q(feed, T + 5 * NS, "chainlink").ts_source_ns == T + 5 * NS
    assert q(feed, T + 10 * NS).ts_source_ns == T + 10 * NS
    halted = SimulatedFeed(scenario(halt(T, T + 10 * NS)))
    assert {x.ts_source_ns for x in halted.quotes_at(T + 7 * NS)} == {T - NS}
    assert q(halted, T + 7 * NS, "chainlink").session_hint == S.REGULAR  # the calendar still says open


def test_silent_outlier_zero_price_and_hint_faults():
    clean = SimulatedFeed(scenario())
    faulty = SimulatedFeed(scenario(
        Silent(start_ns=T, end_ns=T + NS, sources=("pyth",)),
        Outlier(start_ns=T + NS, end_ns=T + 2 * NS, sources=("chainlink",), ppm=300_000),
        ZeroPrice(start_ns=T + 2 * NS, end_ns=T + 3 * NS, sources=("chainlink",)),
        Hint(start_ns=T + 3 * NS, end_ns=T + 4 * NS, sources=("chainlink",), hint=S.CLOSED_OFF_HOURS),
    ))
    assert q(faulty, T) is None and q(faulty, T, "chainlink") == q(clean, T, "chainlink")
    base, bad = q(clean, T + NS, "chainlink"), q(faulty, T + NS, "chainlink")
    assert (bad.price, bad.bid, bad.ask) == tuple(v * 1_300_000 // 1_000_000 for v in (base.price, base.bid, base.ask))
    zero = q(faulty, T + 2 * NS, "chainlink")
    assert (zero.price, zero.conf, zero.bid, zero.ask, zero.ts_source_ns) == (0, None, None, None, T + 2 * NS)
    assert q(faulty, T + 3 * NS, "chainlink").session_hint == S.CLOSED_OFF_HOURS
    assert q(faulty, T + 4 * NS) == q(clean, T + 4 * NS)


def test_jump_and_split_scale_the_path_exactly_from_their_start():
    clean = SimulatedFeed(scenario())
    at = T + 2 * NS
    moved = SimulatedFeed(scenario(
        Jump(start_ns=at, ppm=80_000),
        Split(start_ns=at, new_shares=5, sources=("pyth",)),
        Split(start_ns=at + 3600 * NS, new_shares=5, sources=("chainlink",)),  # adopts it an hour late
    ))
    second = at // NS
    path = clean.price_e9("TSLA", "pyth", second)
    assert moved.price_e9("TSLA", "chainlink", second - 1) == clean.price_e9("TSLA", "chainlink", second - 1)
    assert moved.price_e9("TSLA", "chainlink", second) == path * 1_080_000 // 1_000_000
    assert moved.price_e9("TSLA", "pyth", second) == path * 1_080_000 // 1_000_000 // 5
    later = second + 3600
    assert moved.price_e9("TSLA", "chainlink", later) == clean.price_e9("TSLA", "chainlink", later) * 1_080_000 // 1_000_000 // 5


def test_backstep_resends_an_older_quote_once():
    feed = SimulatedFeed(scenario(Backstep(start_ns=T, end_ns=T + NS, back_ns=10 * NS, sources=("pyth",))))
    back = q(feed, T)
    assert back.ts_source_ns == T - 10 * NS and same_but_received(back, q(feed, T - 10 * NS))
    assert q(feed, T + NS).ts_source_ns == T + NS


def test_gap_at_open_is_silence_then_a_jump():
    opens = ny(2026, 5, 17, 20)
    clean = SimulatedFeed(scenario())
    feed = SimulatedFeed(scenario(*gap_at_open(opens, 80_000, 15 * NS)))
    assert q(feed, opens + 14 * NS) is None
    first = q(feed, opens + 15 * NS)
    assert first.ts_source_ns == opens + 15 * NS
    second = (opens + 15 * NS) // NS
    assert feed.price_e9("TSLA", "pyth", second) == clean.price_e9("TSLA", "pyth", second) * 1_080_000 // 1_000_000


# --- scenarios as data ---------------------------------------------------------------------------


def test_a_scenario_with_every_fault_round_trips_through_json():
    faults = (
        Silent(start_ns=1, end_ns=2), Stale(start_ns=1, end_ns=2, sources=("pyth",)),
        Outlier(start_ns=1, ppm=300_000), ZeroPrice(start_ns=1, symbols=("TSLA",)), Jump(start_ns=1, ppm=-50_000),
        Split(start_ns=1, new_shares=5), Backstep(start_ns=1, back_ns=NS), Hint(start_ns=1, hint=S.CLOSED_OFF_HOURS),
    )
    original = scenario(*faults, sources=(PYTH, CHAINLINK, CHAINLINK8))
    assert msgspec.json.decode(msgspec.json.encode(original), type=Scenario) == original
    assert msgspec.json.decode(b'{"type": "silent", "start_ns": 5}', type=Fault) == Silent(start_ns=5)


def test_invalid_scenarios_are_refused():
    with pytest.raises(ValueError):
        Scenario(seed=1, markets=(TSLA,), sources=(PYTH, PYTH))
    with pytest.raises(ValueError):
        SimMarket("X", XNYS, 0)
    with pytest.raises(ValueError):
        SimMarket("X", XNYS, 1, vol_ppm_per_hour=9_000)
    with pytest.raises(ValueError):
        SimSource("x", sessions=frozenset({S.CLOSED_WEEKEND}))
    with pytest.raises(ValueError):
        list(SimulatedFeed(scenario()).tape(T, T + 10 * NS, step_ns=NS, max_steps=5))


# --- the adapter ---------------------------------------------------------------------------------


def test_the_adapter_polls_and_pushes_once_a_second_on_its_clock():
    feed = SimulatedFeed(scenario())
    source = SimulatedSource(feed)
    assert isinstance(source, PollSource)
    assert source.poll(T) == feed.quotes_at(T)

    async def main():
        clock = VirtualClock(T - NS // 2)
        pushed = SimulatedSource(feed, clock=clock, sleep=clock.sleep)
        got: list[SourceQuote] = []
        task = asyncio.create_task(pushed.run(got.append))
        await clock.advance_to(T + 2 * NS)
        task.cancel()
        return got

    got = asyncio.run(main())
    assert [x.ts_source_ns for x in got] == [T - NS] * 2 + [T] * 2 + [T + NS] * 2 + [T + 2 * NS] * 2
    assert [x.ts_received_ns for x in got][:2] == [T - NS // 2] * 2
