"""Order types, amend, cancel, cancel-all, batches, STP, several markets and the ladder window,
each against both engines (docs/matching.md), with exact events, depth and open orders.

Numbers: see tests/engine_helpers.py (NVDA at mark 100.00: band [9744, 10256], window
[9488, 10512); at mark 10.00: band [900, 1100], protection 1050 / 950). Order ids follow
``oid(seq, slot)``: the n-th accepted order takes the top free slot (0, 1, 2, … at first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from engine.codes import CancelReason, CommandKind, Reject, Stp, Tif
from engine.commands import (
    Accepted,
    Amend,
    Amended,
    Batch,
    Cancel,
    CancelAll,
    Cancelled,
    Command,
    Event,
    Expired,
    Fill,
    Level,
    OpenOrder,
    Rejected,
    SetMark,
    Tick,
    events_to_structs,
)
from engine_helpers import (
    ALICE,
    BOB,
    BUY,
    CAROL,
    DAVE,
    NVDA,
    SELL,
    SHARE,
    TSLA,
    apply_checked,
    arrange,
    apply_records_checked,
    ask,
    bid,
    market_order,
    nvda,
    oid,
    record,
    records,
)

USER, IOC_REST, STP_MAKER, STP_TAKER = (
    CancelReason.USER,
    CancelReason.IOC_REMAINDER,
    CancelReason.STP_MAKER,
    CancelReason.STP_TAKER,
)


@dataclass(frozen=True)
class Case:
    """Arrange ``setup`` at ``mark``; act with ``act``; expect ``events``, then this depth."""

    setup: list[Command]
    act: list[Command]
    events: list[Event]
    bids: list[tuple[int, int]] = field(default_factory=list)
    asks: list[tuple[int, int]] = field(default_factory=list)
    mark: str = "100.00"


def run_case(make_engine, case: Case):
    engine = make_engine(marks={0: case.mark})
    arrange(engine, case.setup)

    events = apply_checked(engine, case.act)

    assert events == case.events
    assert engine.depth(0, BUY) == case.bids
    assert engine.depth(0, SELL) == case.asks
    return engine


# ---------------------------------------------------------------------------- order types

ORDER_TYPE_CASES = [
    pytest.param(
        Case(
            setup=[],
            act=[bid(ALICE, "1", "99.00")],
            events=[
                Accepted(0, 0, ALICE, oid(1, 0), BUY, 9900, SHARE),
                Level(0, 0, BUY, 9900, SHARE),
            ],
            bids=[(9900, SHARE)],
        ),
        id="gtc_rests_at_its_price",
    ),
    pytest.param(
        Case(
            setup=[bid(BOB, "1", "99.00")],
            act=[bid(ALICE, "2", "99.00")],
            events=[
                Accepted(0, 0, ALICE, oid(2, 1), BUY, 9900, 2 * SHARE),
                Level(0, 0, BUY, 9900, 3 * SHARE),
            ],
            bids=[(9900, 3 * SHARE)],
        ),
        id="gtc_joins_an_existing_level",
    ),
    pytest.param(
        Case(
            setup=[ask(BOB, "1", "100.00"), ask(BOB, "1", "100.50")],
            act=[bid(ALICE, "3", "100.20")],
            events=[
                Accepted(0, 0, ALICE, oid(3, 2), BUY, 10020, 3 * SHARE),
                Fill(0, 0, ALICE, oid(3, 2), BOB, oid(1, 0), BUY, 10000, SHARE, 0, 0),
                Level(0, 0, SELL, 10000, 0),
                Level(0, 0, BUY, 10020, 2 * SHARE),
            ],
            bids=[(10020, 2 * SHARE)],
            asks=[(10050, SHARE)],
        ),
        id="gtc_crosses_then_rests_the_remainder",
    ),
    pytest.param(
        Case(
            setup=[ask(BOB, "3", "100.00")],
            act=[bid(ALICE, "1", "100.00")],
            events=[
                Accepted(0, 0, ALICE, oid(2, 1), BUY, 10000, SHARE),
                Fill(0, 0, ALICE, oid(2, 1), BOB, oid(1, 0), BUY, 10000, SHARE, 2 * SHARE, 0),
                Level(0, 0, SELL, 10000, 2 * SHARE),
            ],
            asks=[(10000, 2 * SHARE)],
        ),
        id="gtc_fully_filled_against_part_of_a_maker",
    ),
    pytest.param(
        Case(
            setup=[ask(BOB, "1", "100.00"), ask(CAROL, "1", "100.00")],
            act=[bid(ALICE, "1.5", "101.00", tif="ioc")],
            events=[
                Accepted(0, 0, ALICE, oid(3, 2), BUY, 10100, 1500),
                Fill(0, 0, ALICE, oid(3, 2), BOB, oid(1, 0), BUY, 10000, SHARE, 0, 0),
                Fill(0, 0, ALICE, oid(3, 2), CAROL, oid(2, 1), BUY, 10000, 500, 500, 0),
                Level(0, 0, SELL, 10000, 500),
            ],
            asks=[(10000, 500)],
        ),
        id="fifo_within_a_level_at_the_makers_price",
    ),
    pytest.param(
        Case(
            setup=[ask(BOB, "1", "100.00"), ask(CAROL, "1", "100.10"), ask(BOB, "2", "100.20")],
            act=[bid(ALICE, "5", "100.20", tif="ioc")],
            events=[
                Accepted(0, 0, ALICE, oid(4, 3), BUY, 10020, 5 * SHARE),
                Fill(0, 0, ALICE, oid(4, 3), BOB, oid(1, 0), BUY, 10000, SHARE, 0, 0),
                Level(0, 0, SELL, 10000, 0),
                Fill(0, 0, ALICE, oid(4, 3), CAROL, oid(2, 1), BUY, 10010, SHARE, 0, 0),
                Level(0, 0, SELL, 10010, 0),
                Fill(0, 0, ALICE, oid(4, 3), BOB, oid(3, 2), BUY, 10020, 2 * SHARE, 0, 0),
                Level(0, 0, SELL, 10020, 0),
                Cancelled(0, 0, ALICE, oid(4, 3), BUY, 10020, SHARE, IOC_REST),
            ],
        ),
        id="ioc_sweeps_three_levels_and_cancels_the_rest",
    ),
    pytest.param(
        Case(
            setup=[ask(BOB, "1", "100.00")],
            act=[bid(ALICE, "1", "99.99", tif="ioc")],
            events=[
                Accepted(0, 0, ALICE, oid(2, 1), BUY, 9999, SHARE),
                Cancelled(0, 0, ALICE, oid(2, 1), BUY, 9999, SHARE, IOC_REST),
            ],
            asks=[(10000, SHARE)],
        ),
        id="ioc_that_does_not_cross_is_cancelled_whole",
    ),
    pytest.param(
        Case(
            setup=[bid(BOB, "1", "99.00"), bid(CAROL, "1", "99.50")],
            act=[ask(ALICE, "2", "99.00", tif="ioc")],
            events=[
                Accepted(0, 0, ALICE, oid(3, 2), SELL, 9900, 2 * SHARE),
                Fill(0, 0, ALICE, oid(3, 2), CAROL, oid(2, 1), SELL, 9950, SHARE, 0, 0),
                Level(0, 0, BUY, 9950, 0),
                Fill(0, 0, ALICE, oid(3, 2), BOB, oid(1, 0), SELL, 9900, SHARE, 0, 0),
                Level(0, 0, BUY, 9900, 0),
            ],
        ),
        id="ioc_sell_walks_bids_from_the_highest",
    ),
    pytest.param(
        Case(
            setup=[ask(BOB, "1", "100.00")],
            act=[bid(ALICE, "1", "100.00", tif="ioc", expires_at_ns=5, ts_ns=10)],
            events=[
                Accepted(0, 0, ALICE, oid(2, 1), BUY, 10000, SHARE),
                Fill(0, 0, ALICE, oid(2, 1), BOB, oid(1, 0), BUY, 10000, SHARE, 0, 10),
                Level(0, 0, SELL, 10000, 0),
            ],
        ),
        id="ioc_ignores_an_expiry_in_the_past_and_fills_carry_ts",
    ),
    pytest.param(
        Case(
            setup=[ask(BOB, "1", "100.00"), ask(CAROL, "1", "100.10")],
            act=[bid(ALICE, "2", "100.10", tif="fok")],
            events=[
                Accepted(0, 0, ALICE, oid(3, 2), BUY, 10010, 2 * SHARE),
                Fill(0, 0, ALICE, oid(3, 2), BOB, oid(1, 0), BUY, 10000, SHARE, 0, 0),
                Level(0, 0, SELL, 10000, 0),
                Fill(0, 0, ALICE, oid(3, 2), CAROL, oid(2, 1), BUY, 10010, SHARE, 0, 0),
                Level(0, 0, SELL, 10010, 0),
            ],
        ),
        id="fok_fills_exactly_across_two_levels",
    ),
    pytest.param(
        Case(
            setup=[ask(BOB, "3", "100.00")],
            act=[bid(ALICE, "2", "100.00", tif="fok")],
            events=[
                Accepted(0, 0, ALICE, oid(2, 1), BUY, 10000, 2 * SHARE),
                Fill(0, 0, ALICE, oid(2, 1), BOB, oid(1, 0), BUY, 10000, 2 * SHARE, SHARE, 0),
                Level(0, 0, SELL, 10000, SHARE),
            ],
            asks=[(10000, SHARE)],
        ),
        id="fok_takes_part_of_a_maker",
    ),
    pytest.param(
        Case(
            setup=[ask(ALICE, "1", "100.00"), ask(BOB, "1", "100.00")],
            act=[bid(ALICE, "1", "100.00", tif="fok")],
            events=[
                Accepted(0, 0, ALICE, oid(3, 2), BUY, 10000, SHARE),
                Cancelled(0, 0, ALICE, oid(1, 0), SELL, 10000, SHARE, STP_MAKER),
                Fill(0, 0, ALICE, oid(3, 2), BOB, oid(2, 1), BUY, 10000, SHARE, 0, 0),
                Level(0, 0, SELL, 10000, 0),
            ],
        ),
        id="fok_counts_past_its_own_order_under_expire_maker",
    ),
    pytest.param(
        Case(
            setup=[ask(BOB, "1", "100.00")],
            act=[bid(ALICE, "1", "99.99", tif="alo")],
            events=[
                Accepted(0, 0, ALICE, oid(2, 1), BUY, 9999, SHARE),
                Level(0, 0, BUY, 9999, SHARE),
            ],
            bids=[(9999, SHARE)],
            asks=[(10000, SHARE)],
        ),
        id="alo_buy_rests_one_tick_below_the_best_ask",
    ),
    pytest.param(
        Case(
            setup=[bid(BOB, "1", "99.00")],
            act=[ask(ALICE, "1", "99.01", tif="alo")],
            events=[
                Accepted(0, 0, ALICE, oid(2, 1), SELL, 9901, SHARE),
                Level(0, 0, SELL, 9901, SHARE),
            ],
            bids=[(9900, SHARE)],
            asks=[(9901, SHARE)],
        ),
        id="alo_sell_rests_one_tick_above_the_best_bid",
    ),
    pytest.param(
        Case(
            mark="10.00",
            setup=[ask(BOB, "1", "10.40"), ask(BOB, "1", "10.50"), ask(CAROL, "1", "10.60")],
            act=[market_order(ALICE, "buy", "3")],
            events=[
                Accepted(0, 0, ALICE, oid(4, 3), BUY, 1050, 3 * SHARE),
                Fill(0, 0, ALICE, oid(4, 3), BOB, oid(1, 0), BUY, 1040, SHARE, 0, 0),
                Level(0, 0, SELL, 1040, 0),
                Fill(0, 0, ALICE, oid(4, 3), BOB, oid(2, 1), BUY, 1050, SHARE, 0, 0),
                Level(0, 0, SELL, 1050, 0),
                Cancelled(0, 0, ALICE, oid(4, 3), BUY, 1050, SHARE, IOC_REST),
            ],
            asks=[(1060, SHARE)],
        ),
        id="market_buy_stops_at_mark_plus_5pct",
    ),
    pytest.param(
        Case(
            mark="10.00",
            setup=[bid(BOB, "2", "9.60"), bid(CAROL, "1.1", "9.40")],
            act=[market_order(ALICE, "sell", "3")],
            events=[
                Accepted(0, 0, ALICE, oid(3, 2), SELL, 950, 3 * SHARE),
                Fill(0, 0, ALICE, oid(3, 2), BOB, oid(1, 0), SELL, 960, 2 * SHARE, 0, 0),
                Level(0, 0, BUY, 960, 0),
                Cancelled(0, 0, ALICE, oid(3, 2), SELL, 950, SHARE, IOC_REST),
            ],
            bids=[(940, 1100)],
        ),
        id="market_sell_stops_at_mark_minus_5pct",
    ),
    pytest.param(
        Case(
            setup=[ask(BOB, "1", "102.56")],
            act=[market_order(ALICE, "buy", "2")],
            events=[
                Accepted(0, 0, ALICE, oid(2, 1), BUY, 10256, 2 * SHARE),
                Fill(0, 0, ALICE, oid(2, 1), BOB, oid(1, 0), BUY, 10256, SHARE, 0, 0),
                Level(0, 0, SELL, 10256, 0),
                Cancelled(0, 0, ALICE, oid(2, 1), BUY, 10256, SHARE, IOC_REST),
            ],
        ),
        id="market_buy_protection_clamped_to_the_band_high",
    ),
    pytest.param(
        Case(
            setup=[],
            act=[market_order(ALICE, "sell", "1")],
            events=[
                Accepted(0, 0, ALICE, oid(1, 0), SELL, 9744, SHARE),
                Cancelled(0, 0, ALICE, oid(1, 0), SELL, 9744, SHARE, IOC_REST),
            ],
        ),
        id="market_sell_on_an_empty_book_is_cancelled_at_the_band_low",
    ),
]


@pytest.mark.parametrize("case", ORDER_TYPE_CASES)
def test_order_type(make_engine, case):
    run_case(make_engine, case)


def test_taker_that_does_not_rest_frees_its_slot_last(nvda_at_100):
    # The maker (slot 0) leaves first, then the taker (slot 1): slot 1 is on top of the stack.
    arrange(nvda_at_100, [ask(BOB, "1", "100.00")])
    arrange(nvda_at_100, [bid(ALICE, "1", "100.00", tif="ioc")])

    events = apply_checked(nvda_at_100, [bid(CAROL, "1", "99.00"), bid(CAROL, "1", "98.00")])

    assert [e.oid for e in events if isinstance(e, Accepted)] == [oid(3, 1), oid(4, 0)]


# ---------------------------------------------------------------------------- good-till-time


def test_gtt_orders_expire_on_tick_in_expiry_then_oid_order(nvda_at_100):
    engine = nvda_at_100
    arrange(engine, [
        bid(ALICE, "1", "99.00", expires_at_ns=2_000, ts_ns=1),
        ask(BOB, "1", "101.00", expires_at_ns=1_000, ts_ns=2),
        bid(CAROL, "1", "98.00", expires_at_ns=2_000, ts_ns=3),
        bid(DAVE, "1", "97.50", ts_ns=4),
    ])

    early = engine.apply([Tick(ts_ns=999)])
    due = engine.apply([Tick(ts_ns=2_000)])
    engine.check_invariants()

    assert len(early) == 0
    assert list(due["ts"]) == [2_000] * 6
    assert events_to_structs(due) == [
        Expired(0, 0, BOB, oid(2, 1), SELL, 10100, SHARE),
        Level(0, 0, SELL, 10100, 0),
        Expired(0, 0, ALICE, oid(1, 0), BUY, 9900, SHARE),
        Level(0, 0, BUY, 9900, 0),
        Expired(0, 0, CAROL, oid(3, 2), BUY, 9800, SHARE),
        Level(0, 0, BUY, 9800, 0),
    ]
    assert engine.depth(0, BUY) == [(9750, SHARE)]
    assert apply_checked(engine, [Tick(ts_ns=10**18)]) == []


def test_gtt_order_expires_with_its_remaining_after_a_partial_fill(nvda_at_100):
    engine = nvda_at_100
    arrange(engine, [bid(ALICE, "2", "99.00", expires_at_ns=1_000), ask(BOB, "0.5", "99.00", tif="ioc")])

    events = apply_checked(engine, [Tick(ts_ns=1_000)])

    assert events == [Expired(0, 0, ALICE, oid(1, 0), BUY, 9900, 1500), Level(0, 0, BUY, 9900, 0)]
    assert engine.open_orders(ALICE) == []


def test_open_order_reports_expiry_tif_stp_and_cloid(nvda_at_100):
    arrange(nvda_at_100, [
        bid(ALICE, "1", "99.00", tif="alo", stp="expire_both", cloid="grid-7", expires_at_ns=2_000, ts_ns=1),
        ask(ALICE, "1", "101.00", tif="ioc", expires_at_ns=2_000),  # IOC: nothing rests
        ask(ALICE, "2", "101.00"),
    ])

    assert nvda_at_100.open_orders(ALICE) == [
        OpenOrder(oid(1, 0), 0, ALICE, BUY, 9900, SHARE, Tif.ALO, Stp.EXPIRE_BOTH, 2_000, "grid-7"),
        OpenOrder(oid(3, 1), 0, ALICE, SELL, 10100, 2 * SHARE, Tif.GTC, Stp.EXPIRE_MAKER, 0, None),
    ]


# ---------------------------------------------------------------------------- amend


def test_amend_size_down_keeps_priority(nvda_at_100):
    engine = nvda_at_100
    arrange(engine, [bid(ALICE, "1", "99.00"), bid(BOB, "1", "99.00")])

    amended = apply_checked(engine, [Amend(market=0, account=ALICE, oid=oid(1, 0), size=Decimal("0.6"))])
    fills = apply_checked(engine, [ask(CAROL, "0.6", "99.00", tif="ioc")])

    assert amended == [
        Amended(0, 0, ALICE, oid(1, 0), BUY, 9900, 600, kept_priority=True),
        Level(0, 0, BUY, 9900, 1600),
    ]
    assert fills == [
        Accepted(0, 0, CAROL, oid(3, 2), SELL, 9900, 600),
        Fill(0, 0, CAROL, oid(3, 2), ALICE, oid(1, 0), SELL, 9900, 600, 0, 0),
        Level(0, 0, BUY, 9900, SHARE),
    ]
    assert engine.open_orders(ALICE) == []


def test_amend_size_up_loses_priority(nvda_at_100):
    engine = nvda_at_100
    arrange(engine, [bid(ALICE, "1", "99.00"), bid(BOB, "1", "99.00")])

    amended = apply_checked(engine, [Amend(market=0, account=ALICE, oid=oid(1, 0), size=Decimal("2"))])
    fills = apply_checked(engine, [ask(CAROL, "1", "99.00", tif="ioc")])

    assert amended == [
        Amended(0, 0, ALICE, oid(1, 0), BUY, 9900, 2 * SHARE, kept_priority=False),
        Level(0, 0, BUY, 9900, SHARE),
        Level(0, 0, BUY, 9900, 3 * SHARE),
    ]
    assert [(e.maker_oid, e.size_lots) for e in fills if isinstance(e, Fill)] == [(oid(2, 1), SHARE)]


def test_amend_price_change_loses_priority(nvda_at_100):
    engine = nvda_at_100
    arrange(engine, [bid(ALICE, "1", "99.00"), bid(BOB, "1", "99.01")])

    amended = apply_checked(engine, [Amend(market=0, account=ALICE, oid=oid(1, 0), price=Decimal("99.01"))])
    fills = apply_checked(engine, [ask(CAROL, "1", "99.01", tif="ioc")])

    assert amended == [
        Amended(0, 0, ALICE, oid(1, 0), BUY, 9901, SHARE, kept_priority=False),
        Level(0, 0, BUY, 9900, 0),
        Level(0, 0, BUY, 9901, 2 * SHARE),
    ]
    assert [(e.maker_oid, e.size_lots) for e in fills if isinstance(e, Fill)] == [(oid(2, 1), SHARE)]
    assert engine.depth(0, BUY) == [(9901, SHARE)]


def test_amend_that_crosses_trades_and_rests_the_rest(nvda_at_100):
    engine = nvda_at_100
    arrange(engine, [bid(ALICE, "1", "99.00", cloid="a1", expires_at_ns=50), ask(BOB, "0.4", "100.00")])

    events = apply_checked(engine, [Amend(market=0, account=ALICE, cloid="a1", price=Decimal("100.00"), ts_ns=7)])

    assert events == [
        Amended(0, 0, ALICE, oid(1, 0), BUY, 10000, SHARE, kept_priority=False),
        Level(0, 0, BUY, 9900, 0),
        Fill(0, 0, ALICE, oid(1, 0), BOB, oid(2, 1), BUY, 10000, 400, 0, 7),
        Level(0, 0, SELL, 10000, 0),
        Level(0, 0, BUY, 10000, 600),
    ]
    # Same oid, cloid, tif and expiry after re-queueing.
    assert engine.open_orders(ALICE) == [
        OpenOrder(oid(1, 0), 0, ALICE, BUY, 10000, 600, Tif.GTC, Stp.EXPIRE_MAKER, 50, "a1"),
    ]


def test_amend_that_fills_completely_leaves_the_book_and_frees_its_slot(nvda_at_100):
    engine = nvda_at_100
    arrange(engine, [bid(ALICE, "1", "99.00", expires_at_ns=50), ask(BOB, "2", "100.00")])

    events = apply_checked(engine, [Amend(market=0, account=ALICE, oid=oid(1, 0), price=Decimal("100.00"))])
    after = apply_checked(engine, [bid(CAROL, "1", "98.00"), Tick(ts_ns=100)])

    assert events == [
        Amended(0, 0, ALICE, oid(1, 0), BUY, 10000, SHARE, kept_priority=False),
        Level(0, 0, BUY, 9900, 0),
        Fill(0, 0, ALICE, oid(1, 0), BOB, oid(2, 1), BUY, 10000, SHARE, SHARE, 0),
        Level(0, 0, SELL, 10000, SHARE),
    ]
    assert engine.open_orders(ALICE) == []
    assert after == [Accepted(0, 0, CAROL, oid(3, 0), BUY, 9800, SHARE), Level(0, 0, BUY, 9800, SHARE)]


def test_alo_amend_that_would_cross_is_rejected_and_untouched(nvda_at_100):
    engine = nvda_at_100
    arrange(engine, [bid(ALICE, "1", "99.00", tif="alo"), bid(BOB, "1", "99.00"), ask(CAROL, "1", "100.00")])
    before = engine.state_hash()

    events = apply_checked(engine, [Amend(market=0, account=ALICE, oid=oid(1, 0), price=Decimal("100.00"))])

    assert events == [Rejected(0, 0, ALICE, oid(1, 0), Reject.POST_ONLY_WOULD_CROSS)]
    assert engine.state_hash() == before
    assert engine.open_orders(ALICE) == [
        OpenOrder(oid(1, 0), 0, ALICE, BUY, 9900, SHARE, Tif.ALO, Stp.EXPIRE_MAKER, 0, None),
    ]
    # Still first in its level.
    fills = apply_checked(engine, [ask(DAVE, "1", "99.00", tif="ioc")])
    assert [e.maker_oid for e in fills if isinstance(e, Fill)] == [oid(1, 0)]


def test_alo_amend_to_a_non_crossing_price_requeues(nvda_at_100):
    engine = nvda_at_100
    arrange(engine, [bid(ALICE, "1", "99.00", tif="alo"), ask(CAROL, "1", "100.00")])

    events = apply_checked(engine, [Amend(market=0, account=ALICE, oid=oid(1, 0), price=Decimal("99.99"))])

    assert events == [
        Amended(0, 0, ALICE, oid(1, 0), BUY, 9999, SHARE, kept_priority=False),
        Level(0, 0, BUY, 9900, 0),
        Level(0, 0, BUY, 9999, SHARE),
    ]


def test_amend_stopped_by_stp_cancels_the_amended_order(nvda_at_100):
    engine = nvda_at_100
    arrange(engine, [bid(ALICE, "1", "99.00", stp="expire_taker"), ask(ALICE, "1", "100.00")])

    events = apply_checked(engine, [Amend(market=0, account=ALICE, oid=oid(1, 0), price=Decimal("100.00"))])

    assert events == [
        Amended(0, 0, ALICE, oid(1, 0), BUY, 10000, SHARE, kept_priority=False),
        Level(0, 0, BUY, 9900, 0),
        Cancelled(0, 0, ALICE, oid(1, 0), BUY, 10000, SHARE, STP_TAKER),
    ]
    assert [o.oid for o in engine.open_orders(ALICE)] == [oid(2, 1)]
    assert engine.depth(0, SELL) == [(10000, SHARE)]


# ---------------------------------------------------------------------------- cancel


def test_cancel_by_oid_reports_the_remaining(nvda_at_100):
    engine = nvda_at_100
    arrange(engine, [bid(ALICE, "2", "99.00"), bid(BOB, "1", "99.00"), ask(CAROL, "0.5", "99.00", tif="ioc")])

    events = apply_checked(engine, [Cancel(market=0, account=ALICE, oid=oid(1, 0))])

    assert events == [Cancelled(0, 0, ALICE, oid(1, 0), BUY, 9900, 1500, USER), Level(0, 0, BUY, 9900, SHARE)]
    assert engine.depth(0, BUY) == [(9900, SHARE)]


def test_cancel_by_cloid_frees_the_slot_and_the_cloid(nvda_at_100):
    engine = nvda_at_100
    arrange(engine, [bid(ALICE, "1", "99.00", cloid="q-1")])

    events = apply_checked(engine, [Cancel(market=0, account=ALICE, cloid="q-1")])
    again = apply_checked(engine, [bid(ALICE, "1", "98.00", cloid="q-1")])

    assert events == [Cancelled(0, 0, ALICE, oid(1, 0), BUY, 9900, SHARE, USER), Level(0, 0, BUY, 9900, 0)]
    assert again == [Accepted(0, 0, ALICE, oid(2, 0), BUY, 9800, SHARE), Level(0, 0, BUY, 9800, SHARE)]


def two_market_book(make_engine):
    """ALICE: NVDA bid 99.00 (seq 1), TSLA bid 249.00 (seq 2), NVDA ask 101.00 (seq 3);
    BOB: NVDA bid 99.00 (seq 4). TSLA at mark 250.00 (5000 ticks): band [4872, 5128]."""
    engine = make_engine(specs=[NVDA, TSLA], marks={0: "100.00", 1: "250.00"})
    arrange(engine, [
        bid(ALICE, "1", "99.00"),
        bid(ALICE, "1", "249.00", market=1),
        ask(ALICE, "1", "101.00"),
        bid(BOB, "1", "99.00"),
    ])
    return engine


def test_cancel_all_in_one_market(make_engine):
    engine = two_market_book(make_engine)

    events = apply_checked(engine, [CancelAll(account=ALICE, market=0)])

    assert events == [
        Cancelled(0, 0, ALICE, oid(1, 0), BUY, 9900, SHARE, CancelReason.CANCEL_ALL),
        Level(0, 0, BUY, 9900, SHARE),
        Cancelled(0, 0, ALICE, oid(3, 2), SELL, 10100, SHARE, CancelReason.CANCEL_ALL),
        Level(0, 0, SELL, 10100, 0),
    ]
    assert [o.oid for o in engine.open_orders(ALICE)] == [oid(2, 1)]
    assert engine.depth(1, BUY) == [(4980, 100)]


def test_cancel_all_markets_in_ascending_oid(make_engine):
    engine = two_market_book(make_engine)

    events = apply_checked(engine, [CancelAll(account=ALICE)])

    assert events == [
        Cancelled(0, 0, ALICE, oid(1, 0), BUY, 9900, SHARE, CancelReason.CANCEL_ALL),
        Level(0, 0, BUY, 9900, SHARE),
        Cancelled(0, 1, ALICE, oid(2, 1), BUY, 4980, 100, CancelReason.CANCEL_ALL),
        Level(0, 1, BUY, 4980, 0),
        Cancelled(0, 0, ALICE, oid(3, 2), SELL, 10100, SHARE, CancelReason.CANCEL_ALL),
        Level(0, 0, SELL, 10100, 0),
    ]
    assert engine.open_orders(ALICE) == []
    assert [o.oid for o in engine.open_orders(BOB)] == [oid(4, 3)]


def test_cancel_all_without_orders_emits_nothing(nvda_at_100):
    before = nvda_at_100.state_hash()

    assert apply_checked(nvda_at_100, [CancelAll(account=CAROL), CancelAll(account=CAROL, market=0)]) == []
    assert nvda_at_100.state_hash() == before


# ---------------------------------------------------------------------------- batches


def test_batch_gives_each_action_its_status_in_order(nvda_at_100):
    batch = Batch(
        actions=[
            bid(ALICE, "1", "99.00"),
            bid(ALICE, "1", "200.00"),
            Cancel(market=0, account=ALICE, oid=oid(1, 0)),
            Cancel(market=0, account=ALICE, oid=oid(1, 0)),
        ],
        ts_ns=3,
    )

    raw = nvda_at_100.apply([batch])
    nvda_at_100.check_invariants()

    assert events_to_structs(raw) == [
        Accepted(1, 0, ALICE, oid(1, 0), BUY, 9900, SHARE),
        Level(1, 0, BUY, 9900, SHARE),
        Rejected(2, 0, ALICE, 0, Reject.PRICE_OUTSIDE_BAND),
        Cancelled(3, 0, ALICE, oid(1, 0), BUY, 9900, SHARE, USER),
        Level(3, 0, BUY, 9900, 0),
        Rejected(4, 0, ALICE, oid(1, 0), Reject.UNKNOWN_ORDER),
    ]
    # A batch's actions carry their own ts (0 here), not the header's.
    assert list(raw["ts"]) == [0] * 6


def test_batch_of_fifty_is_accepted_and_fifty_one_rejected_whole(nvda_at_100):
    fifty = Batch(actions=[bid(ALICE, "1", f"{97.50 + k / 100:.2f}") for k in range(50)])
    fifty_one = Batch(actions=[ask(BOB, "1", f"{101.00 + k / 100:.2f}") for k in range(51)])

    accepted = apply_checked(nvda_at_100, [fifty])
    before = nvda_at_100.state_hash()
    rejected = apply_checked(nvda_at_100, [fifty_one])

    assert sum(isinstance(e, Accepted) for e in accepted) == 50
    assert rejected == [Rejected(0, 0, 0, 0, Reject.BATCH_TOO_LARGE)]
    assert nvda_at_100.state_hash() == before
    assert nvda_at_100.depth(0, SELL) == []


def test_batch_inside_a_batch_is_rejected_alone(nvda_at_100):
    inner = Batch(actions=[bid(BOB, "1", "98.00")])
    outer = Batch(actions=[bid(ALICE, "1", "99.00"), inner, ask(CAROL, "1", "101.00")])  # type: ignore[list-item]

    events = apply_checked(nvda_at_100, [outer])

    assert events == [
        Accepted(1, 0, ALICE, oid(1, 0), BUY, 9900, SHARE),
        Level(1, 0, BUY, 9900, SHARE),
        Rejected(2, 0, 0, 0, Reject.BATCH_NESTED),
        Accepted(3, 0, CAROL, oid(2, 1), SELL, 10100, SHARE),
        Level(3, 0, SELL, 10100, SHARE),
    ]


def raw_place(account: int, price: int, size: int, side: int = BUY, **fields):
    return record(CommandKind.PLACE, market=0, account=account, side=side, price=price, size=size, **fields)


def test_raw_nested_header_is_one_action_of_the_outer_batch(nvda_at_100):
    recs = records(
        record(CommandKind.BATCH, size=2),
        record(CommandKind.BATCH, size=1),  # counts as the outer batch's first action
        raw_place(ALICE, 9900, SHARE),  # the outer batch's second action
        raw_place(BOB, 9800, SHARE),  # top level again
    )

    events = apply_records_checked(nvda_at_100, recs)

    assert events == [
        Rejected(1, 0, 0, 0, Reject.BATCH_NESTED),
        Accepted(2, 0, ALICE, oid(1, 0), BUY, 9900, SHARE),
        Level(2, 0, BUY, 9900, SHARE),
        Accepted(3, 0, BOB, oid(2, 1), BUY, 9800, SHARE),
        Level(3, 0, BUY, 9800, SHARE),
    ]


def test_raw_batch_of_other_kinds_rejects_them_with_bad_field(nvda_at_100):
    arrange(nvda_at_100, [bid(ALICE, "1", "99.00", expires_at_ns=5)])
    recs = records(
        record(CommandKind.BATCH, size=3),
        record(CommandKind.SET_MARK, market=0, price=20_000),
        record(CommandKind.TICK, ts=100),
        record(CommandKind.CANCEL_ALL, market=-1, account=ALICE, oid=77),
    )

    events = apply_records_checked(nvda_at_100, recs)

    assert events == [
        Rejected(1, 0, 0, 0, Reject.BAD_FIELD),
        Rejected(2, 0, 0, 0, Reject.BAD_FIELD),
        Rejected(3, -1, ALICE, 77, Reject.BAD_FIELD),
    ]
    assert nvda_at_100.mark(0) == 10000
    assert [o.oid for o in nvda_at_100.open_orders(ALICE)] == [oid(1, 0)]


@pytest.mark.parametrize(
    "size, skipped",
    [
        pytest.param(-1, 0, id="negative_count_skips_nothing"),
        pytest.param(3, 1, id="count_beyond_the_end_skips_the_rest"),
        pytest.param(51, 1, id="count_above_fifty_skips_what_follows"),
    ],
)
def test_raw_malformed_batch_header(nvda_at_100, size, skipped):
    recs = records(record(CommandKind.BATCH, size=size, account=5), raw_place(ALICE, 9900, SHARE))

    events = nvda_at_100.apply(recs)
    nvda_at_100.check_invariants()

    expected = [Rejected(0, 0, 5, 0, Reject.BATCH_TOO_LARGE)]
    if not skipped:
        expected += [Accepted(1, 0, ALICE, oid(1, 0), BUY, 9900, SHARE), Level(1, 0, BUY, 9900, SHARE)]
    assert events_to_structs(events) == expected


# ---------------------------------------------------------------------------- self-trade prevention

# Level 100.00 holds ALICE's own ask (first) then BOB's; ALICE buys 2 GTC at 100.00.
OWN, OTHER, TAKER = oid(1, 0), oid(2, 1), oid(3, 2)
STP_CASES = [
    pytest.param(
        "expire_maker",
        [
            Accepted(0, 0, ALICE, TAKER, BUY, 10000, 2 * SHARE),
            Cancelled(0, 0, ALICE, OWN, SELL, 10000, SHARE, STP_MAKER),
            Fill(0, 0, ALICE, TAKER, BOB, OTHER, BUY, 10000, SHARE, 0, 0),
            Level(0, 0, SELL, 10000, 0),
            Level(0, 0, BUY, 10000, SHARE),
        ],
        [(10000, SHARE)], [], [TAKER],
        id="expire_maker_cancels_own_then_fills_and_rests",
    ),
    pytest.param(
        "expire_taker",
        [
            Accepted(0, 0, ALICE, TAKER, BUY, 10000, 2 * SHARE),
            Cancelled(0, 0, ALICE, TAKER, BUY, 10000, 2 * SHARE, STP_TAKER),
        ],
        [], [(10000, 2 * SHARE)], [OWN],
        id="expire_taker_cancels_the_taker_without_a_level_event",
    ),
    pytest.param(
        "expire_both",
        [
            Accepted(0, 0, ALICE, TAKER, BUY, 10000, 2 * SHARE),
            Cancelled(0, 0, ALICE, OWN, SELL, 10000, SHARE, STP_MAKER),
            Level(0, 0, SELL, 10000, SHARE),
            Cancelled(0, 0, ALICE, TAKER, BUY, 10000, 2 * SHARE, STP_TAKER),
        ],
        [], [(10000, SHARE)], [],
        id="expire_both_cancels_own_and_taker",
    ),
]


@pytest.mark.parametrize("stp, events, bids, asks, alice_open", STP_CASES)
def test_self_trade_prevention_at_the_first_order(nvda_at_100, stp, events, bids, asks, alice_open):
    arrange(nvda_at_100, [ask(ALICE, "1", "100.00"), ask(BOB, "1", "100.00")])

    assert apply_checked(nvda_at_100, [bid(ALICE, "2", "100.00", stp=stp)]) == events
    assert nvda_at_100.depth(0, BUY) == bids
    assert nvda_at_100.depth(0, SELL) == asks
    assert [o.oid for o in nvda_at_100.open_orders(ALICE)] == alice_open


# BOB's ask at 100.00 then ALICE's own at 100.10; ALICE buys 3 at 100.20: one fill first.
STP_AFTER_FILL_CASES = [
    pytest.param(
        "expire_maker",
        [
            Cancelled(0, 0, ALICE, oid(2, 1), SELL, 10010, SHARE, STP_MAKER),
            Level(0, 0, SELL, 10010, 0),
            Level(0, 0, BUY, 10020, 2 * SHARE),
        ],
        id="expire_maker_walks_on_and_rests",
    ),
    pytest.param(
        "expire_taker",
        [Cancelled(0, 0, ALICE, oid(3, 2), BUY, 10020, 2 * SHARE, STP_TAKER)],
        id="expire_taker_stops_with_no_level_event_at_the_untouched_level",
    ),
    pytest.param(
        "expire_both",
        [
            Cancelled(0, 0, ALICE, oid(2, 1), SELL, 10010, SHARE, STP_MAKER),
            Level(0, 0, SELL, 10010, 0),
            Cancelled(0, 0, ALICE, oid(3, 2), BUY, 10020, 2 * SHARE, STP_TAKER),
        ],
        id="expire_both_cancels_both_after_the_fill",
    ),
]


@pytest.mark.parametrize("stp, tail", STP_AFTER_FILL_CASES)
def test_self_trade_prevention_after_a_fill(nvda_at_100, stp, tail):
    arrange(nvda_at_100, [ask(BOB, "1", "100.00"), ask(ALICE, "1", "100.10")])

    events = apply_checked(nvda_at_100, [bid(ALICE, "3", "100.20", stp=stp)])

    assert events == [
        Accepted(0, 0, ALICE, oid(3, 2), BUY, 10020, 3 * SHARE),
        Fill(0, 0, ALICE, oid(3, 2), BOB, oid(1, 0), BUY, 10000, SHARE, 0, 0),
        Level(0, 0, SELL, 10000, 0),
        *tail,
    ]


# ---------------------------------------------------------------------------- several markets


def test_markets_are_separate_books_sharing_one_slot_pool(make_engine):
    engine = make_engine(specs=[NVDA, TSLA], marks={0: "100.00", 1: "250.00"})
    arrange(engine, [ask(BOB, "1", "249.95", market=1), bid(ALICE, "1", "99.00")])

    events = apply_checked(engine, [bid(ALICE, "1", "250.00", market=1, tif="ioc")])
    wrong_market = apply_checked(engine, [Cancel(market=1, account=ALICE, oid=oid(2, 1))])

    assert events == [
        Accepted(0, 1, ALICE, oid(3, 2), BUY, 5000, 100),
        Fill(0, 1, ALICE, oid(3, 2), BOB, oid(1, 0), BUY, 4999, 100, 0, 0),
        Level(0, 1, SELL, 4999, 0),
    ]
    assert wrong_market == [Rejected(0, 1, ALICE, oid(2, 1), Reject.UNKNOWN_ORDER)]
    assert engine.depth(0, BUY) == [(9900, SHARE)]
    assert engine.depth(1, SELL) == []
    assert (engine.mark(0), engine.mark(1)) == (10000, 5000)


def test_a_market_without_a_mark_rejects_while_another_trades(make_engine):
    engine = make_engine(specs=[NVDA, TSLA], marks={0: "100.00"})

    events = apply_checked(engine, [bid(ALICE, "1", "250.00", market=1), bid(ALICE, "1", "99.00")])

    assert events == [
        Rejected(0, 1, ALICE, 0, Reject.NO_MARK),
        Accepted(1, 0, ALICE, oid(1, 0), BUY, 9900, SHARE),
        Level(1, 0, BUY, 9900, SHARE),
    ]
    assert engine.mark(1) == 0


# ---------------------------------------------------------------------------- window re-centre


def test_recentre_cancels_bids_top_down_then_asks_bottom_up(nvda_at_100):
    engine = nvda_at_100
    arrange(engine, [
        bid(ALICE, "1", "102.40"),  # oid(1, 0)
        bid(BOB, "1", "102.40"),  # oid(2, 1)
        bid(ALICE, "1", "102.30"),  # oid(3, 2)
        bid(ALICE, "1", "99.00"),  # oid(4, 3), stays
        ask(CAROL, "1", "102.56"),  # oid(5, 4)
        ask(CAROL, "1", "102.50"),  # oid(6, 5)
    ])

    # Mark 97.00: band [9444, 9956], low < base 9488, so base = 9700 - 512 = 9188, window [9188, 10212).
    events = apply_checked(engine, [SetMark(market=0, price=Decimal("97.00"), ts_ns=9)])

    W = CancelReason.OUT_OF_WINDOW
    assert events == [
        Cancelled(0, 0, ALICE, oid(1, 0), BUY, 10240, SHARE, W),
        Cancelled(0, 0, BOB, oid(2, 1), BUY, 10240, SHARE, W),
        Level(0, 0, BUY, 10240, 0),
        Cancelled(0, 0, ALICE, oid(3, 2), BUY, 10230, SHARE, W),
        Level(0, 0, BUY, 10230, 0),
        Cancelled(0, 0, CAROL, oid(6, 5), SELL, 10250, SHARE, W),
        Level(0, 0, SELL, 10250, 0),
        Cancelled(0, 0, CAROL, oid(5, 4), SELL, 10256, SHARE, W),
        Level(0, 0, SELL, 10256, 0),
    ]
    assert engine.depth(0, BUY) == [(9900, SHARE)]
    assert engine.depth(0, SELL) == []
    # The new band is in force: 94.44 is its low, 94.43 is outside.
    placed = apply_checked(engine, [ask(DAVE, "1", "94.44", tif="alo"), bid(DAVE, "1", "94.43")])
    assert placed[-1] == Rejected(1, 0, DAVE, 0, Reject.PRICE_OUTSIDE_BAND)


@pytest.mark.parametrize(
    "mark, cancelled",
    [
        pytest.param("102.55", False, id="band_high_10511_stays_inside_the_window"),
        pytest.param("102.56", False, id="band_high_10512_recentres_to_base_9744_keeping_97.44"),
        pytest.param("102.57", True, id="recentre_to_base_9745_drops_97.44"),
        pytest.param("97.44", False, id="band_low_9488_equals_base"),
    ],
)
def test_recentre_boundaries(nvda_at_100, mark, cancelled):
    engine = nvda_at_100
    arrange(engine, [bid(ALICE, "1", "97.44")])

    events = apply_checked(engine, [SetMark(market=0, price=Decimal(mark))])

    expected = [
        Cancelled(0, 0, ALICE, oid(1, 0), BUY, 9744, SHARE, CancelReason.OUT_OF_WINDOW),
        Level(0, 0, BUY, 9744, 0),
    ]
    assert events == (expected if cancelled else [])
    assert engine.depth(0, BUY) == ([] if cancelled else [(9744, SHARE)])


def test_first_mark_near_zero_clamps_base_to_one(make_engine):
    # Mark 1.00 = 100 ticks: hw = 10, band [90, 110]; base max(1, 100 - 512) = 1.
    engine = make_engine(specs=[nvda(min_notional=Decimal("0"))], marks={0: "1.00"})

    events = apply_checked(engine, [bid(ALICE, "1", "0.90"), bid(ALICE, "1", "0.89")])

    assert events == [
        Accepted(0, 0, ALICE, oid(1, 0), BUY, 90, SHARE),
        Level(0, 0, BUY, 90, SHARE),
        Rejected(1, 0, ALICE, 0, Reject.PRICE_OUTSIDE_BAND),
    ]

