"""The oracle service: routing, sessions and hints, silence, splits, and the ticking task."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import msgspec
import pytest

from oracle.aggregate import DEFAULT_PARAMS, AggFlag
from oracle.calendar import MarketCalendar
from oracle.clock import VirtualClock
from oracle.quote import SourceQuote
from oracle.service import FeedSource, MarketFeed, OracleService, SplitEvent
from oracle.session import HALT_AFTER_NS, OPEN_SESSIONS, Session
from oracle.sources.simulated import SimulatedFeed, SimulatedSource
from oracle.update import OracleUpdate, ServiceFlag, e18_to_e9_down, e18_to_e9_up
from sim_cases import NS, WEDNESDAY_10, XNYS, feed, ny, scenario

S = Session
F = AggFlag
SF = ServiceFlag
T = WEDNESDAY_10
REGULAR_ONLY = frozenset({S.REGULAR})
TSLA = MarketFeed(0, "TSLA", XNYS, (FeedSource("a"), FeedSource("b"), FeedSource("v8", REGULAR_ONLY)))


def quote(source, price, ts, conf=30_000, hint=None, received=None, symbol="TSLA", expo=-5):
    return SourceQuote(source, symbol, price, expo, ts, ts if received is None else received, conf=conf, session_hint=hint)


def service(*feeds, **kw) -> tuple[OracleService, list[OracleUpdate]]:
    out: list[OracleUpdate] = []
    return OracleService(feeds or (TSLA,), out.append, **kw), out


def one(svc: OracleService, now: int) -> OracleUpdate:
    (update,) = svc.step(now)
    return update


# --- the update itself ---------------------------------------------------------------------------


def test_update_and_config_defaults_are_locked_and_the_update_round_trips():
    update = OracleUpdate(3, T, 433_809_670_000, 300_330_000, 2, S.REGULAR, int(F.DEFAULT_CONF | SF.SPLIT_APPLIED))
    wire = msgspec.json.encode(update)
    assert wire.startswith(b'{"type":"oracle_update","market":3,')
    assert msgspec.json.decode(wire, type=OracleUpdate) == update
    assert msgspec.structs.asdict(FeedSource("x")) == {"name": "x", "sessions": OPEN_SESSIONS}
    assert msgspec.structs.asdict(MarketFeed(0, "X", XNYS, ())) == {
        "market": 0, "symbol": "X", "calendar": XNYS, "sources": (), "params": DEFAULT_PARAMS,
        "splits": (), "halt_after_ns": 60 * NS,
    }
    assert HALT_AFTER_NS == 60 * NS
    assert min(SF) > max(F)  # the two flag sets share no bit
    assert (e18_to_e9_down(1_999_999_999), e18_to_e9_up(1_000_000_001), e18_to_e9_down(-1)) == (1, 2, -1)


def test_two_sources_give_the_three_vote_median_in_nano_usd():
    svc, _ = service()
    svc.on_quote(quote("a", 43_380_934, T, conf=30_066))
    svc.on_quote(quote("b", 43_381_000, T, conf=30_000))
    # votes: 433.50868 433.51000 433.80934 433.81000 434.11000 434.11000
    # p50 = (433.80934 + 433.81000) / 2; conf = max(p50 − p25, p75 − p50) = 434.11 − 433.80967
    assert one(svc, T + NS) == OracleUpdate(0, T + NS, 433_809_670_000, 300_330_000, 2, S.REGULAR, 0)


# --- routing ---------------------------------------------------------------------------------------------


def test_routing_refuses_unknown_symbols_and_sources_time_travel_and_the_future():
    svc, _ = service()
    svc.on_quote(quote("a", 43_380_934, T, symbol="AAPL"))
    svc.on_quote(quote("zz", 43_380_934, T))
    assert svc.unrouted == 1
    first = one(svc, T)  # and nothing heard since the open on Sunday 20:00: halted
    assert (first.session, first.flags) == (S.HALTED, SF.UNKNOWN_SOURCE_DROPPED | SF.SILENT_HALT | F.MARKET_CLOSED)
    svc.on_quote(quote("a", 43_380_934, T))
    svc.on_quote(quote("b", 43_381_000, T))
    svc.on_quote(quote("a", 99_000_000, T - NS))  # older than what "a" already sent
    svc.on_quote(quote("b", 99_000_000, T + 3 * NS, received=T))  # 3 s after its arrival
    update = one(svc, T + NS)
    assert update.flags == SF.NON_MONOTONIC_DROPPED | F.FUTURE_DROPPED
    assert (update.price_e9, update.n_sources) == (433_809_670_000, 2)
    assert one(svc, T + 2 * NS).flags == 0  # flags from quotes are reported once


# --- sessions ----------------------------------------------------------------------------------------------


def test_fresh_hints_only_downgrade_and_a_closed_hint_halts():
    svc, _ = service()
    svc.on_quote(quote("a", 43_380_934, T, hint=S.POST))
    svc.on_quote(quote("b", 43_381_000, T, hint=S.REGULAR))
    update = one(svc, T)
    assert (update.session, update.flags, update.n_sources) == (S.POST, SF.HINT_DOWNGRADED, 2)
    svc.on_quote(quote("b", 43_381_000, T + NS, hint=S.CLOSED_OFF_HOURS))
    update = one(svc, T + NS)
    assert (update.session, update.price_e9) == (S.HALTED, None)
    assert update.flags == SF.HINT_DOWNGRADED | F.MARKET_CLOSED
    stale_hint = one(svc, T + 7 * NS)  # both quotes older than the 5 s regular max age
    assert (stale_hint.session, stale_hint.flags) == (S.REGULAR, F.STALE_DROPPED | F.LOW_QUORUM)


def test_a_regular_hours_source_neither_votes_nor_hints_after_the_close():
    close = ny(2026, 5, 13, 16)
    svc, _ = service()
    svc.on_quote(quote("a", 43_380_934, close - NS))
    svc.on_quote(quote("v8", 43_381_000, close - NS, hint=S.CLOSED_OFF_HOURS))  # v8 "closed" at 15:59:59
    update = one(svc, close + 2 * NS)
    assert (update.session, update.n_sources, update.flags) == (S.POST, 1, 0)
    assert update.price_e9 == 433_809_340_000


def test_every_covering_source_silent_for_over_60_s_is_a_halt():
    svc, _ = service()
    svc.on_quote(quote("a", 43_380_934, T))
    svc.on_quote(quote("b", 43_381_000, T))
    assert one(svc, T + 60 * NS).session == S.REGULAR
    halted = one(svc, T + 61 * NS)
    assert (halted.session, halted.price_e9, halted.flags) == (S.HALTED, None, SF.SILENT_HALT | F.MARKET_CLOSED)
    svc.on_quote(quote("a", 0, T + 62 * NS))  # a zero price is not speaking
    assert one(svc, T + 62 * NS).session == S.HALTED


def test_silence_counts_from_the_open_not_from_the_last_close():
    monday_open = ny(2026, 5, 17, 20)  # Sunday 20:00: overnight opens after the weekend
    svc, _ = service()
    svc.on_quote(quote("a", 43_380_934, ny(2026, 5, 15, 19, 59, 59)))
    assert one(svc, monday_open + 60 * NS).session == S.OVERNIGHT
    assert one(svc, monday_open + 61 * NS).session == S.HALTED


def test_pre_ipo_and_uncovered_sessions():
    pre_ipo = MarketFeed(1, "SPACEX", MarketCalendar(None), ())
    regular_only = MarketFeed(2, "AAPL", XNYS, (FeedSource("v8", REGULAR_ONLY),))
    svc, _ = service(pre_ipo, regular_only)
    evening = ny(2026, 5, 13, 17)
    assert svc.step(evening) == [
        OracleUpdate(1, evening, None, None, 0, S.INTERNAL_ONLY, int(F.MARKET_CLOSED)),
        OracleUpdate(2, evening, None, None, 0, S.POST, int(SF.NO_COVERAGE | F.LOW_QUORUM)),
    ]


# --- splits ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("told", [True, False])
def test_a_split_rescales_history_so_the_new_shares_are_not_clamped(told):
    at = ny(2026, 5, 13, 4)
    tsla = MarketFeed(0, "TSLA", XNYS, (FeedSource("a"),), splits=(SplitEvent(at, 5),) if told else ())
    svc, _ = service(tsla)
    svc.on_quote(quote("a", 43_380_000, at - NS))
    assert one(svc, at - NS).price_e9 == 433_800_000_000
    svc.on_quote(quote("a", 8_676_000, at))
    update = one(svc, at)
    if told:
        assert (update.price_e9, update.flags) == (86_760_000_000, SF.SPLIT_APPLIED)
    else:  # the old history clamps the new shares to −1% and trips the breaker
        assert update.price_e9 == 429_462_000_000
        assert update.flags == F.CLAMPED | F.BREAKER | F.BREAKER_MOVE


def test_a_source_still_on_old_shares_can_be_put_on_the_new_basis():
    pre = ny(2026, 5, 13, 8)  # pre-market: one source is a quorum
    svc, _ = service(MarketFeed(0, "TSLA", XNYS, (FeedSource("a"),)))
    svc.set_multiplier(0, "a", Fraction(1, 5))
    svc.on_quote(quote("a", 43_380_000, pre))
    assert one(svc, pre).price_e9 == 86_760_000_000
    svc.set_multiplier(0, "a", None)
    assert one(svc, pre + NS).price_e9 == 87_627_600_000  # clamped +1% toward the unscaled price
    with pytest.raises(KeyError):
        svc.set_multiplier(9, "a", None)


# --- the task ----------------------------------------------------------------------------------------------


def test_run_publishes_one_update_per_market_per_second_on_virtual_time():
    sim = SimulatedSource(SimulatedFeed(scenario()))
    pre_ipo = MarketFeed(7, "SPACEX", MarketCalendar(None), ())
    submitted: list[OracleUpdate] = []

    async def submit(update):  # an async submit is awaited
        await asyncio.sleep(0)
        submitted.append(update)

    async def main():
        clock = VirtualClock(T - NS // 3)
        svc = OracleService([pre_ipo, feed()], submit, poll_sources=[sim], clock=clock, sleep=clock.sleep)
        task = asyncio.create_task(svc.run())
        await clock.advance_to(T + 9 * NS + NS // 2)
        task.cancel()
        return svc

    svc = asyncio.run(main())
    assert [(u.market, u.ts_ns) for u in submitted] == [(m, T + k * NS) for k in range(10) for m in (0, 7)]
    assert all(u.price_e9 is not None and u.n_sources == 2 for u in submitted if u.market == 0)
    assert svc.skipped_ticks == 0


def test_late_wake_ups_skip_instants_and_a_crashing_adapter_is_recorded():
    class Broken:
        name = "broken"

        async def run(self, emit):
            raise RuntimeError("adapter bug")

    class Clock:
        now = T

        def __call__(self):
            return self.now

        async def sleep(self, seconds):  # wakes 2 s later than asked
            self.now += round(seconds * NS) + 2 * NS
            await asyncio.sleep(0)

    clock = Clock()
    svc, out = service(feed(), push_sources=[Broken()], clock=clock, sleep=clock.sleep)
    asyncio.run(svc.run(max_ticks=3))
    assert [u.ts_ns for u in out] == [T + 3 * NS, T + 6 * NS, T + 9 * NS]
    assert svc.skipped_ticks == 4
    assert svc.failures == {"broken": "RuntimeError('adapter bug')"}


def test_virtual_clock_wakes_sleepers_in_time_then_arrival_order():
    async def main():
        clock = VirtualClock(1_000)
        woke = []

        async def sleeper(name, seconds):
            await clock.sleep(seconds)
            woke.append((name, clock()))

        tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("late", 2e-6), ("early", 1e-6), ("tie", 2e-6))]
        await clock.advance_to(2_500)
        assert woke == [("early", 2_000)] and clock() == 2_500
        await clock.advance_to(3_000)
        assert woke == [("early", 2_000), ("late", 3_000), ("tie", 3_000)]
        with pytest.raises(ValueError):
            await clock.advance_to(2_999)
        stuck = asyncio.create_task(sleeper("never", 1e-9))
        await clock.settle()
        with pytest.raises(RuntimeError):
            await clock.advance_to(10_000, max_wakeups=0)
        await asyncio.gather(*tasks)
        stuck.cancel()

    asyncio.run(main())
