"""Smoke tests of the reference engine alone: one behaviour of docs/matching.md each.

Market NVDA: tick 0.01, lot 0.001 (1 share = 1000 lots), ladder 1024 ticks, mark 100.00
(10_000 ticks), so the band is [97.44, 102.56] (half-width capped at 1024 // 4 = 256 ticks).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.codes import CancelReason, Reject, Side
from engine.commands import (
    Accepted,
    Amend,
    Amended,
    Cancel,
    Cancelled,
    Expired,
    Fill,
    Level,
    Place,
    Rejected,
    SetMark,
    Tick,
    events_to_structs,
)
from engine.reference import SLOT_BITS, ReferenceEngine
from engine.spec import EngineConfig, MarketSpec

NVDA = MarketSpec(
    market_id=0,
    symbol="NVDA",
    tick_size=Decimal("0.01"),
    lot_size=Decimal("0.001"),
    max_order_lots=10**7,
    ladder_levels=1024,
)
SMALL_POOL = EngineConfig(max_orders=64, max_accounts=16)
ALICE, BOB, CAROL = 1, 2, 3
BUY, SELL = int(Side.BUY), int(Side.SELL)
SHARE = 1000  # lots


def oid(seq: int, slot: int) -> int:
    return (seq << SLOT_BITS) | slot


def bid(account: int, shares: str, price: str, **kw) -> Place:
    return Place(market=0, account=account, side="buy", size=Decimal(shares), price=Decimal(price), **kw)


def ask(account: int, shares: str, price: str, **kw) -> Place:
    return Place(market=0, account=account, side="sell", size=Decimal(shares), price=Decimal(price), **kw)


def run(engine: ReferenceEngine, commands: list) -> list:
    """Apply one batch, check the invariants, return the events as Structs."""
    events = events_to_structs(engine.apply(commands))
    engine.check_invariants()
    return events


@pytest.fixture
def engine() -> ReferenceEngine:
    e = ReferenceEngine([NVDA], SMALL_POOL)
    assert run(e, [SetMark(market=0, price=Decimal("100.00"))]) == []
    return e


def test_gtc_rests_and_emits_accepted_and_level(engine):
    events = run(engine, [bid(ALICE, "1", "99.00")])

    assert events == [
        Accepted(cmd=0, market=0, account=ALICE, oid=oid(1, 0), side=BUY, price_ticks=9900, size_lots=SHARE),
        Level(cmd=0, market=0, side=BUY, price_ticks=9900, size_lots=SHARE),
    ]
    assert engine.depth(0, BUY) == [(9900, SHARE)]


def test_crossing_ioc_fills_at_maker_price_and_cancels_remainder(engine):
    run(engine, [ask(ALICE, "2", "100.00")])

    events = run(engine, [bid(BOB, "3", "100.50", tif="ioc")])

    taker, maker = oid(2, 1), oid(1, 0)
    assert events == [
        Accepted(0, 0, BOB, taker, BUY, 10050, 3 * SHARE),
        Fill(0, 0, BOB, taker, ALICE, maker, BUY, 10000, 2 * SHARE, 0, 0),
        Level(0, 0, SELL, 10000, 0),
        Cancelled(0, 0, BOB, taker, BUY, 10050, SHARE, CancelReason.IOC_REMAINDER),
    ]
    # The maker's slot went back first, the taker's last, so the taker's slot is reused next.
    assert run(engine, [bid(CAROL, "1", "99.00")])[0].oid == oid(3, 1)


def test_fok_not_fillable_rejects_and_changes_nothing(engine):
    run(engine, [ask(ALICE, "1", "100.00")])
    before = engine.state_hash()

    events = run(engine, [bid(BOB, "2", "100.00", tif="fok")])

    assert events == [Rejected(0, 0, BOB, 0, Reject.FOK_NOT_FILLABLE)]
    assert engine.state_hash() == before


# Level 100.00 holds Alice's own sell (first) then Bob's; Alice buys 2 shares GTC at 100.00.
OWN, OTHER, TAKER = oid(1, 0), oid(2, 1), oid(3, 2)
STP_CASES = {
    "expire_maker": [
        Accepted(0, 0, ALICE, TAKER, BUY, 10000, 2 * SHARE),
        Cancelled(0, 0, ALICE, OWN, SELL, 10000, SHARE, CancelReason.STP_MAKER),
        Fill(0, 0, ALICE, TAKER, BOB, OTHER, BUY, 10000, SHARE, 0, 0),
        Level(0, 0, SELL, 10000, 0),
        Level(0, 0, BUY, 10000, SHARE),  # the rest of the taker rests
    ],
    "expire_taker": [
        Accepted(0, 0, ALICE, TAKER, BUY, 10000, 2 * SHARE),
        Cancelled(0, 0, ALICE, TAKER, BUY, 10000, 2 * SHARE, CancelReason.STP_TAKER),
    ],
    "expire_both": [
        Accepted(0, 0, ALICE, TAKER, BUY, 10000, 2 * SHARE),
        Cancelled(0, 0, ALICE, OWN, SELL, 10000, SHARE, CancelReason.STP_MAKER),
        Level(0, 0, SELL, 10000, SHARE),
        Cancelled(0, 0, ALICE, TAKER, BUY, 10000, 2 * SHARE, CancelReason.STP_TAKER),
    ],
}


@pytest.mark.parametrize("stp", list(STP_CASES))
def test_self_trade_prevention(engine, stp):
    run(engine, [ask(ALICE, "1", "100.00"), ask(BOB, "1", "100.00")])

    events = run(engine, [bid(ALICE, "2", "100.00", stp=stp)])

    assert events == STP_CASES[stp]


def test_amend_size_down_keeps_priority(engine):
    first, second = oid(1, 0), oid(2, 1)
    run(engine, [bid(ALICE, "1", "99.00"), bid(BOB, "1", "99.00")])

    amended = run(engine, [Amend(market=0, account=ALICE, oid=first, size=Decimal("0.5"))])
    fills = run(engine, [ask(CAROL, "0.5", "99.00", tif="ioc")])

    assert amended == [
        Amended(0, 0, ALICE, first, BUY, 9900, SHARE // 2, kept_priority=True),
        Level(0, 0, BUY, 9900, SHARE + SHARE // 2),
    ]
    assert [(e.maker_oid, e.size_lots) for e in fills if isinstance(e, Fill)] == [(first, SHARE // 2)]
    assert [o.oid for o in engine.open_orders(BOB)] == [second]


def test_cancel_by_cloid(engine):
    run(engine, [bid(ALICE, "1", "99.00", cloid="alpha")])
    by_cloid = Cancel(market=0, account=ALICE, cloid="alpha")

    cancelled = run(engine, [by_cloid])
    again = run(engine, [by_cloid])

    assert cancelled == [
        Cancelled(0, 0, ALICE, oid(1, 0), BUY, 9900, SHARE, CancelReason.USER),
        Level(0, 0, BUY, 9900, 0),
    ]
    assert again == [Rejected(0, 0, ALICE, 0, Reject.UNKNOWN_ORDER)]
    assert engine.open_orders(ALICE) == []


def test_gtt_order_expires_on_tick(engine):
    run(engine, [bid(ALICE, "1", "99.00", expires_at_ns=1_000, ts_ns=10)])

    early = run(engine, [Tick(ts_ns=999)])
    due = run(engine, [Tick(ts_ns=1_000)])

    assert early == []
    assert due == [
        Expired(0, 0, ALICE, oid(1, 0), BUY, 9900, SHARE),
        Level(0, 0, BUY, 9900, 0),
    ]


def test_window_recentre_cancels_orders_outside_the_new_window(engine):
    # Window [9488, 10512). Mark 101.00 keeps the band [9844, 10356] inside it; mark 104.00
    # (band up to 10656) re-centres to [9888, 10912), leaving the bid at 98.00 outside.
    run(engine, [bid(ALICE, "1", "98.00"), ask(BOB, "1", "102.00")])

    small_move = run(engine, [SetMark(market=0, price=Decimal("101.00"))])
    big_move = run(engine, [SetMark(market=0, price=Decimal("104.00"))])

    assert small_move == []
    assert big_move == [
        Cancelled(0, 0, ALICE, oid(1, 0), BUY, 9800, SHARE, CancelReason.OUT_OF_WINDOW),
        Level(0, 0, BUY, 9800, 0),
    ]
    assert engine.mark(0) == 10400
    assert engine.depth(0, SELL) == [(10200, SHARE)]


def test_order_without_mark_is_rejected():
    engine = ReferenceEngine([NVDA], SMALL_POOL)

    events = run(engine, [bid(ALICE, "1", "99.00")])

    assert events == [Rejected(0, 0, ALICE, 0, Reject.NO_MARK)]


def test_same_commands_give_the_same_hash():
    commands = [SetMark(market=0, price=Decimal("100.00")), bid(ALICE, "1", "99.00"), ask(BOB, "2", "101.00")]
    first, second = ReferenceEngine([NVDA], SMALL_POOL), ReferenceEngine([NVDA], SMALL_POOL)

    run(first, commands)
    run(second, commands)

    assert first.state_hash() == second.state_hash() != ReferenceEngine([NVDA], SMALL_POOL).state_hash()
