"""The replay scenarios of spec/oracle.md §9 through the service, and once over the wire.

Each case steps the service at chosen instants (a second apart where it matters) with the
simulated source polled directly, and states for every instant the session, whether there is
a price, how many sources voted and the exact flags. Where one source votes, the price is that
source's price exactly (the three-vote median of one quote is the quote).
"""

from __future__ import annotations

import asyncio

import pytest

from fake_datastreams import V11_FEED, FakeDataStreams, Live as CLive, Text, envelope, v11_report
from fake_hermes import FEED_IDS, Data, FakeHermes, Live as HLive, hermes_body
from loopback import NoSleep, cancel, serve, wait_until
from oracle.aggregate import AggFlag
from oracle.service import OracleService, SplitEvent
from oracle.session import Session
from oracle.sources.chainlink import DataStreamsConfig, DataStreamsSource
from oracle.sources.pyth import HermesConfig, HermesSource
from oracle.sources.scenario import SimMarket, SimSource, Split
from oracle.sources.simulated import SimulatedFeed
from oracle.update import OracleUpdate, ServiceFlag
from sim_cases import (
    CHAINLINK,
    CHAINLINK8,
    HALT_AT,
    NS,
    PYTH,
    REPLAYS,
    SPLIT_AT,
    SUNDAY_OPEN,
    WEDNESDAY_10,
    XNYS_REGULAR_ONLY,
    feed,
    ny,
    scenario,
    utc,
)

S, F, SF = Session, AggFlag, ServiceFlag
DC = F.DEFAULT_CONF  # the Chainlink-style source has no conf: max(spread/2, 2 bp) is used
THIRD = SimSource("third", expo=-8)


def replay(scn, instants, **feed_kw) -> tuple[list[OracleUpdate], SimulatedFeed]:
    sim = SimulatedFeed(scn)
    svc = OracleService([feed(scn.sources, scn.markets[0], **feed_kw)], lambda u: None)
    updates = []
    for t in instants:
        for q in sim.quotes_at(t):
            svc.on_quote(q)
        updates.extend(svc.step(t))
    return updates, sim


def summary(updates):
    return [(u.session, u.price_e9 is not None, u.n_sources, u.flags) for u in updates]


def pyth_e9(sim: SimulatedFeed, t: int) -> int:
    return sim.quote("TSLA", "pyth", t).price * 10**4  # expo −5 → 1e-9


def seconds(start, n):
    return [start + k * NS for k in range(n)]


def test_normal_ticks_publish_every_second_between_the_two_sources():
    updates, sim = replay(scenario(), seconds(WEDNESDAY_10, 8))
    assert summary(updates) == [(S.REGULAR, True, 2, DC)] * 8
    for u in updates:
        a = sim.quote("TSLA", "pyth", u.ts_ns).price * 10**13  # 1e-18
        b = sim.quote("TSLA", "chainlink", u.ts_ns).price
        assert min(a, b) // 10**9 <= u.price_e9 <= max(a, b) // 10**9


def test_close_at_1600_with_publish_time_frozen():
    close = ny(2026, 5, 13, 16)
    updates, sim = replay(scenario(sources=(PYTH, CHAINLINK8)), seconds(close - 3 * NS, 7))
    assert summary(updates) == [(S.REGULAR, True, 2, DC)] * 3 + [(S.POST, True, 1, 0)] * 4
    assert [u.price_e9 for u in updates[3:]] == [pyth_e9(sim, t) for t in seconds(close, 4)]
    regular_only = scenario(sources=(PYTH, CHAINLINK8), markets=(SimMarket("TSLA", XNYS_REGULAR_ONLY, 433_809_340_000),))
    updates, sim = replay(regular_only, seconds(close - NS, 3))
    assert sim.quote("TSLA", "pyth", close + NS).ts_source_ns == close - NS  # Hermes repeats 15:59:59
    assert summary(updates) == [(S.REGULAR, True, 2, DC)] + [(S.CLOSED_OFF_HOURS, False, 0, F.MARKET_CLOSED)] * 2


def test_a_weekend_is_closed_and_sunday_2000_reopens_after_a_gap():
    friday, sunday = ny(2026, 5, 15, 20), SUNDAY_OPEN
    instants = [friday - NS, friday, ny(2026, 5, 16, 12), sunday - NS, sunday, sunday + NS]
    updates, _ = replay(scenario(), instants)
    closed = (S.CLOSED_WEEKEND, False, 0, F.MARKET_CLOSED)
    assert summary(updates) == [
        (S.POST, True, 2, DC), closed, closed, closed, (S.OVERNIGHT, True, 2, DC | F.AFTER_GAP), (S.OVERNIGHT, True, 2, DC),
    ]


def test_the_2026_07_03_holiday_has_no_overnight_before_it():
    instants = [ny(2026, 7, 2, 19, 59, 59), ny(2026, 7, 2, 20), ny(2026, 7, 3, 12), ny(2026, 7, 4, 12), ny(2026, 7, 5, 20)]
    updates, _ = replay(scenario(), instants)
    assert summary(updates) == [
        (S.POST, True, 2, DC),
        (S.CLOSED_HOLIDAY, False, 0, F.MARKET_CLOSED),
        (S.CLOSED_HOLIDAY, False, 0, F.MARKET_CLOSED),
        (S.CLOSED_WEEKEND, False, 0, F.MARKET_CLOSED),
        (S.OVERNIGHT, True, 2, DC | F.AFTER_GAP),
    ]


def test_the_2026_11_27_early_close_ends_regular_at_1300_and_post_at_1700():
    instants = [ny(2026, 11, 27, 12, 59, 59), ny(2026, 11, 27, 13), ny(2026, 11, 27, 16, 59, 59), ny(2026, 11, 27, 17)]
    updates, sim = replay(scenario(sources=(PYTH, CHAINLINK8)), instants)
    assert summary(updates) == [
        (S.REGULAR, True, 2, DC),
        (S.POST, True, 1, 0),
        (S.POST, True, 1, F.AFTER_GAP),  # (not stepped for almost four hours: not clamped)
        (S.CLOSED_WEEKEND, False, 0, F.MARKET_CLOSED),
    ]
    assert updates[1].price_e9 == pyth_e9(sim, instants[1])


@pytest.mark.parametrize(
    "friday_close, sunday_open",
    [(utc(2026, 3, 7, 1), utc(2026, 3, 9, 0)), (utc(2026, 10, 31, 0), utc(2026, 11, 2, 1))],
    ids=["spring_forward", "fall_back"],
)
def test_both_dst_weekends_reopen_at_2000_new_york(friday_close, sunday_open):
    updates, _ = replay(scenario(), [friday_close - NS, friday_close, sunday_open - NS, sunday_open])
    closed = (S.CLOSED_WEEKEND, False, 0, F.MARKET_CLOSED)
    assert summary(updates) == [(S.POST, True, 2, DC), closed, closed, (S.OVERNIGHT, True, 2, DC | F.AFTER_GAP)]


def test_a_reopen_gapping_8pct_whose_first_fresh_quote_comes_15_s_after_the_open():
    scn = scenario(*REPLAYS["reopen_gap_8pct"][0].faults, sources=(PYTH,))
    instants = [ny(2026, 5, 15, 19, 59, 59)] + seconds(SUNDAY_OPEN, 17)
    updates, sim = replay(scn, instants)
    waiting = (S.OVERNIGHT, False, 0, F.STALE_DROPPED | F.LOW_QUORUM)  # Friday's quote, 48 h old
    assert summary(updates) == [(S.POST, True, 1, 0)] + [waiting] * 15 + [(S.OVERNIGHT, True, 1, F.AFTER_GAP)] * 1 + [(S.OVERNIGHT, True, 1, 0)]
    first = updates[16]
    assert first.ts_ns == SUNDAY_OPEN + 15 * NS and first.price_e9 == pyth_e9(sim, first.ts_ns)
    assert 1.07 < first.price_e9 / updates[0].price_e9 < 1.09  # the 8% gap, give or take the weekend's drift


def test_a_halt_is_silence_while_the_calendar_says_open():
    instants = [HALT_AT - NS, HALT_AT, HALT_AT + 4 * NS, HALT_AT + 5 * NS, HALT_AT + 59 * NS, HALT_AT + 60 * NS, HALT_AT + 180 * NS]
    updates, _ = replay(REPLAYS["halt"][0], instants)
    stale = (S.REGULAR, False, 0, F.STALE_DROPPED | F.LOW_QUORUM)
    assert summary(updates) == [
        (S.REGULAR, True, 2, DC),  # 10:59:59
        (S.REGULAR, True, 2, DC),  # 11:00:00, the 10:59:59 quotes again: 1 s old
        (S.REGULAR, True, 2, DC),  # 11:00:04: 5 s old, still fresh
        stale,  # 11:00:05: 6 s old
        stale,  # 11:00:59: silent for exactly 60 s
        (S.HALTED, False, 0, SF.SILENT_HALT | F.MARKET_CLOSED),  # 11:01:00: 61 s
        (S.REGULAR, True, 2, DC | F.AFTER_GAP),  # 11:03:00: quotes are back
    ]


def test_a_30pct_outlier_is_dropped_with_three_sources_and_drops_both_with_two():
    scn = REPLAYS["outlier_30pct"][0]
    three = scenario(*scn.faults, sources=(PYTH, CHAINLINK, THIRD))
    updates, _ = replay(three, seconds(WEDNESDAY_10, 4))
    assert summary(updates) == [(S.REGULAR, True, 3, DC)] * 2 + [(S.REGULAR, True, 2, DC | F.OUTLIER_DROPPED | F.MAD_DROPPED), (S.REGULAR, True, 3, DC)]
    updates, _ = replay(scn, seconds(WEDNESDAY_10, 4))
    assert summary(updates)[2] == (S.REGULAR, False, 0, F.OUTLIER_DROPPED | F.LOW_QUORUM)


def test_an_overnight_mid_zero_is_invalid_and_the_other_source_carries_the_price():
    scn, start, _ = REPLAYS["overnight_mid_zero"]
    updates, sim = replay(scn, seconds(start, 5))
    assert summary(updates) == [(S.OVERNIGHT, True, 2, DC)] * 2 + [(S.OVERNIGHT, True, 1, F.INVALID_DROPPED)] * 2 + [(S.OVERNIGHT, True, 2, DC)]
    assert [u.price_e9 for u in updates[2:4]] == [pyth_e9(sim, t) for t in seconds(start + 2 * NS, 2)]


def test_non_monotonic_timestamps_are_dropped_and_the_newer_quotes_kept():
    updates, _ = replay(REPLAYS["non_monotonic"][0], seconds(WEDNESDAY_10, 5))
    assert summary(updates) == [(S.REGULAR, True, 2, DC)] * 3 + [(S.REGULAR, True, 2, DC | SF.NON_MONOTONIC_DROPPED), (S.REGULAR, True, 2, DC)]
    assert updates[3].price_e9 == updates[2].price_e9  # the 10:00:02 quotes, again


def test_a_5_for_1_split_before_the_pre_market():
    instants = seconds(SPLIT_AT - 2 * NS, 5)
    scn = REPLAYS["split_5_for_1"][0]
    told, _ = replay(scn, instants, splits=(SplitEvent(SPLIT_AT, 5),))
    assert summary(told) == [(S.OVERNIGHT, True, 2, DC)] * 2 + [(S.PRE, True, 2, DC | SF.SPLIT_APPLIED)] + [(S.PRE, True, 2, DC)] * 2
    assert abs(told[2].price_e9 * 5 - told[1].price_e9) * 1000 < told[1].price_e9  # within 0.1% of a fifth
    untold, _ = replay(scn, instants)
    assert summary(untold)[2] == (S.PRE, True, 2, DC | F.CLAMPED | F.BREAKER | F.BREAKER_MOVE)
    lagging = scenario(Split(start_ns=SPLIT_AT, new_shares=5, sources=("pyth", "chainlink")), sources=(PYTH, CHAINLINK, THIRD))
    late, _ = replay(lagging, instants, splits=(SplitEvent(SPLIT_AT, 5),))
    assert summary(late)[2] == (S.PRE, True, 2, DC | SF.SPLIT_APPLIED | F.OUTLIER_DROPPED | F.MAD_DROPPED)


# --- over the wire ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["halt", "non_monotonic", "overnight_mid_zero", "split_5_for_1"])
def test_through_fake_hermes_and_data_streams_the_updates_are_the_same(name):
    scn, start, end = REPLAYS[name]
    instants = list(range(start, end, NS))
    splits = (SplitEvent(SPLIT_AT, 5),) if name == "split_5_for_1" else ()
    direct, sim = replay(scn, instants, splits=splits)
    hermes, streams = FakeHermes(), FakeDataStreams("k", "s")
    hermes.streams, streams.sessions = [[HLive()]], [[CLive()]]
    now = [start]

    async def main():
        async with serve(hermes.app(), hermes.release) as hurl, serve(streams.app(), streams.release) as curl:
            svc = OracleService([feed(scn.sources, splits=splits)], lambda u: None)
            pyth = HermesSource(HermesConfig(feeds={"TSLA": FEED_IDS["TSLA"]}, base_url=hurl), clock=lambda: now[0], sleep=NoSleep())
            chain = DataStreamsSource(
                DataStreamsConfig(feeds={"TSLA": V11_FEED}, api_key="k", api_secret="s", ws_url=curl),
                clock=lambda: now[0], sleep=NoSleep(),
            )
            tasks = [asyncio.create_task(s.run(svc.on_quote)) for s in (pyth, chain)]
            updates = []
            for t in instants:
                now[0] = t
                quotes = sim.quotes_at(t)
                hermes.push(Data(hermes_body([q for q in quotes if q.source == "pyth"])))
                for q in quotes:
                    if q.source == "chainlink":
                        streams.push(Text(envelope(v11_report(q, V11_FEED, t // NS))))
                sent = sum(1 for q in quotes if q.source == "pyth") + pyth.health.quotes
                sent_c = sum(1 for q in quotes if q.source == "chainlink") + chain.health.quotes
                await wait_until(lambda: pyth.health.quotes == sent and chain.health.quotes == sent_c, what="the tick")
                updates.extend(svc.step(t))
            for task in tasks:
                await cancel(task)
            return updates

    assert asyncio.run(main()) == direct
