"""Trigger orders in both engines (docs/triggers.md): stop and take-profit, market and limit, on
the mark and on the last trade, position TP/SL sized at trigger time and cancelled when the
position closes, cascades, and the order in which several fire. Invariants after every command."""

from __future__ import annotations

from decimal import Decimal

import pytest
from engine_helpers import ALICE, BOB, CAROL, DAVE, SHARE, apply_checked, arrange, ask, bid, nvda

from engine.codes import Reject, TriggerStep
from engine.commands import (
    Accepted,
    CancelTrigger,
    Deposit,
    Fill,
    OracleUpdate,
    PlaceTrigger,
    Rejected,
    SetMark,
    Trigger,
)
from engine.spec import EngineConfig

RISK = EngineConfig(max_orders=64, max_accounts=8, risk=True)
PLAIN = EngineConfig(max_orders=64, max_accounts=8)
NVDA_WIDE = nvda(ladder_levels=1 << 14)


def steps(events) -> list[tuple[int, TriggerStep, int]]:
    return [(e.tid, e.step, e.size_lots) for e in events if isinstance(e, Trigger)]


def plain(make_engine):
    engine = make_engine(specs=(NVDA_WIDE,), config=PLAIN)
    arrange(engine, [SetMark(market=0, price=Decimal(100))])
    return engine


def funded(make_engine):
    engine = make_engine(specs=(NVDA_WIDE,), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=1)]
            + [Deposit(account=a, amount=Decimal(100_000)) for a in (ALICE, BOB, CAROL, DAVE)])
    return engine


def test_stop_buy_fires_when_the_mark_reaches_it_and_enters_as_a_market_order(make_engine):
    engine = plain(make_engine)
    arrange(engine, [ask(BOB, "1", "102.00")])
    placed = apply_checked(engine, [PlaceTrigger(market=0, account=ALICE, side="buy", trigger_price=Decimal(101),
                                                 size=Decimal(1))])
    assert steps(placed) == [(1, TriggerStep.PLACED, SHARE)]
    assert steps(apply_checked(engine, [SetMark(market=0, price=Decimal("100.99"))])) == []
    events = apply_checked(engine, [SetMark(market=0, price=Decimal(101))])
    assert steps(events) == [(1, TriggerStep.FIRED, SHARE)]
    fills = [e for e in events if isinstance(e, Fill)]
    assert [(f.taker_account, f.price_ticks, f.size_lots) for f in fills] == [(ALICE, 10_200, SHARE)]
    assert engine.triggers(ALICE) == []


@pytest.mark.parametrize("kind, side, mark, fires", [
    ("stop", "sell", "99.00", True), ("stop", "sell", "99.01", False),
    ("take_profit", "sell", "101.00", True), ("take_profit", "sell", "100.99", False),
    ("take_profit", "buy", "99.00", True), ("take_profit", "buy", "99.01", False),
])
def test_each_kind_fires_on_its_side_of_the_trigger(make_engine, kind, side, mark, fires):
    engine = plain(make_engine)
    trigger = "99.00" if (kind, side) in (("stop", "sell"), ("take_profit", "buy")) else "101.00"
    arrange(engine, [PlaceTrigger(market=0, account=ALICE, side=side, trigger_price=Decimal(trigger), kind=kind,
                                  order_type="limit", price=Decimal(mark), size=Decimal(1))])
    events = apply_checked(engine, [SetMark(market=0, price=Decimal(mark))])
    assert bool(steps(events)) == fires
    if fires:  # the limit order rests as a new order
        assert [e.price_ticks for e in events if isinstance(e, Accepted)] == [int(Decimal(mark) * 100)]


def test_trigger_on_last_trade_ignores_the_mark(make_engine):
    engine = plain(make_engine)
    arrange(engine, [PlaceTrigger(market=0, account=ALICE, side="sell", trigger_price=Decimal(99), size=Decimal(1),
                                  trigger_on="last"),
                     bid(CAROL, "5", "98.50")])
    assert steps(apply_checked(engine, [SetMark(market=0, price=Decimal(98))])) == []  # no trade yet
    events = apply_checked(engine, [bid(BOB, "1", "99.00"), ask(DAVE, "1", "99.00")])  # a trade at 99.00
    assert steps(events) == [(1, TriggerStep.FIRED, SHARE)]
    fills = [(f.taker_account, f.maker_account, f.price_ticks) for f in events if isinstance(f, Fill)]
    assert fills == [(DAVE, BOB, 9_900), (ALICE, CAROL, 9_850)]


def test_several_fire_in_ascending_id_and_cascade_through_the_last_price(make_engine):
    """Two stops on the last trade: #1 at 99.50, #2 at 99.00. A trade at 99.50 fires #1; its
    market sell trades at 98.90 and fires #2 in the same command."""
    engine = plain(make_engine)
    arrange(engine, [bid(CAROL, "1", "99.50"), bid(CAROL, "1", "98.90"), bid(CAROL, "1", "98.80"),
                     PlaceTrigger(market=0, account=ALICE, side="sell", trigger_price=Decimal("99.50"),
                                  size=Decimal(1), trigger_on="last"),
                     PlaceTrigger(market=0, account=BOB, side="sell", trigger_price=Decimal("99.00"),
                                  size=Decimal(1), trigger_on="last")])
    events = apply_checked(engine, [ask(DAVE, "1", "99.50")])
    assert steps(events) == [(1, TriggerStep.FIRED, SHARE), (2, TriggerStep.FIRED, SHARE)]
    fills = [(f.taker_account, f.price_ticks) for f in events if isinstance(f, Fill)]
    assert fills == [(DAVE, 9_950), (ALICE, 9_890), (BOB, 9_880)]


def test_position_tp_sl_is_sized_at_trigger_time_and_cancelled_when_the_position_closes(make_engine):
    engine = funded(make_engine)
    arrange(engine, [ask(BOB, "2", "100.00"), bid(ALICE, "2", "100.00"),
                     PlaceTrigger(market=0, account=ALICE, side="sell", trigger_price=Decimal(95)),  # SL
                     PlaceTrigger(market=0, account=ALICE, side="sell", trigger_price=Decimal(110),
                                  kind="take_profit"),
                     ask(BOB, "1", "100.00"), bid(ALICE, "1", "100.00")])  # now long 3
    arrange(engine, [bid(CAROL, "10", "94.00")])
    events = apply_checked(engine, [OracleUpdate(market=0, price=Decimal(95), ts_ns=2)])
    assert steps(events) == [(1, TriggerStep.FIRED, 3 * SHARE), (2, TriggerStep.POSITION_CLOSED, 0)]
    assert engine.position(ALICE, 0).size_lots == 0


def test_position_tp_sl_needs_a_position_it_would_close(make_engine):
    engine = funded(make_engine)
    events = apply_checked(engine, [PlaceTrigger(market=0, account=ALICE, side="sell", trigger_price=Decimal(95))])
    assert [e.code for e in events if isinstance(e, Rejected)] == [Reject.TRIGGER_NEEDS_POSITION]


def test_fired_order_gets_every_check_of_a_place(make_engine):
    engine = plain(make_engine)
    arrange(engine, [PlaceTrigger(market=0, account=ALICE, side="buy", trigger_price=Decimal(101),
                                  order_type="limit", price=Decimal(150), size=Decimal(1))])
    events = apply_checked(engine, [SetMark(market=0, price=Decimal(101))])
    assert steps(events) == [(1, TriggerStep.FIRED, SHARE)]
    assert [e.code for e in events if isinstance(e, Rejected)] == [Reject.PRICE_OUTSIDE_BAND]


def test_cancel_trigger_and_its_rejects(make_engine):
    engine = plain(make_engine)
    arrange(engine, [PlaceTrigger(market=0, account=ALICE, side="buy", trigger_price=Decimal(101), size=Decimal(1))])
    events = apply_checked(engine, [CancelTrigger(market=0, account=BOB, tid=1),
                                    CancelTrigger(market=0, account=ALICE, tid=2),
                                    CancelTrigger(market=0, account=ALICE, tid=1),
                                    CancelTrigger(market=0, account=ALICE, tid=1)])
    assert [e.code for e in events if isinstance(e, Rejected)] == [
        Reject.NOT_ORDER_OWNER, Reject.UNKNOWN_TRIGGER, Reject.UNKNOWN_TRIGGER]
    assert steps(events) == [(1, TriggerStep.CANCELLED, SHARE)]
    assert steps(apply_checked(engine, [SetMark(market=0, price=Decimal(102))])) == []


def test_trigger_table_full(make_engine):
    engine = make_engine(specs=(NVDA_WIDE,), config=EngineConfig(max_orders=8, max_accounts=8, max_triggers=2))
    arrange(engine, [SetMark(market=0, price=Decimal(100))])
    place = PlaceTrigger(market=0, account=ALICE, side="buy", trigger_price=Decimal(101), size=Decimal(1))
    events = apply_checked(engine, [place, place, place])
    assert [e.code for e in events if isinstance(e, Rejected)] == [Reject.TRIGGER_BOOK_FULL]
    assert [t.tid for t in engine.triggers(ALICE)] == [1, 2]
