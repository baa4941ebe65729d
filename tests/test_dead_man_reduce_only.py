"""The dead-man switch and reduce-only orders in both engines, with exact events (docs/risk.md,
"Reduce-only orders" and "Dead-man switch"). Invariants are checked after every command by
``apply_checked``; among them: a resting reduce-only order always has a position to reduce.

The book: NVDA at oracle and mark 100.00 (band 97.44–102.56), lots of 0.001 share. ``long_2``
leaves ALICE long 2 shares (2000 lots) bought from BOB at 100.00, with no order resting.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from engine_helpers import (
    ALICE,
    BOB,
    BUY,
    CAROL,
    SELL,
    SHARE,
    apply_checked,
    arrange,
    ask,
    bid,
    market_order,
    nvda,
    oid,
    record,
)

from engine.codes import CancelReason, CommandKind, OrderFlag, Reject
from engine.commands import (
    Accepted,
    Amend,
    Amended,
    Batch,
    Cancelled,
    Deposit,
    Expired,
    Fill,
    Level,
    Mark,
    OracleUpdate,
    Rejected,
    Schedule,
    ScheduleCancel,
    Tick,
    Withdraw,
    events_to_structs,
)
from engine.spec import EngineConfig

RISK = EngineConfig(max_orders=256, max_accounts=16, risk=True)
NO_RISK = EngineConfig(max_orders=256, max_accounts=16)
USD = 1_000_000  # atoms
SECOND = 1_000_000_000
DEAD_MAN, REDUCE_ONLY = CancelReason.DEAD_MAN, CancelReason.REDUCE_ONLY


def funded(make_engine, *accounts, amount=100_000):
    engine = make_engine(specs=(nvda(),), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND)]
            + [Deposit(account=a, amount=Decimal(amount)) for a in accounts])
    return engine


def long_2(make_engine):
    engine = funded(make_engine, ALICE, BOB, CAROL)
    arrange(engine, [ask(BOB, "2", "100.00"), bid(ALICE, "2", "100.00", tif="ioc")])
    assert engine.position(ALICE, 0).size_lots == 2 * SHARE and engine.open_orders(ALICE) == []
    return engine


def accepted_oid(events) -> int:
    return next(e.oid for e in events if isinstance(e, Accepted))


def reduce_only_ask(shares: str, price: str, **kw):
    return ask(ALICE, shares, price, reduce_only=True, **kw)


# ---------------------------------------------------------------------------- dead-man switch


def test_the_deadline_cancels_every_open_order_of_the_account_at_the_first_tick_at_or_after_it(make_engine):
    engine = funded(make_engine, ALICE, BOB)
    a1, a2, b1 = (accepted_oid(apply_checked(engine, [order])) for order in
                  (bid(ALICE, "1", "99.00"), ask(ALICE, "1", "101.00"), bid(BOB, "1", "99.00")))
    assert (a1, a2, b1) == (oid(1, 0), oid(2, 1), oid(3, 2))

    assert apply_checked(engine, [ScheduleCancel(account=ALICE, at_ns=50 * SECOND, ts_ns=2 * SECOND)]) == [
        Schedule(0, ALICE, 50 * SECOND)]
    assert engine.deadline(ALICE) == 50 * SECOND
    assert apply_checked(engine, [Tick(ts_ns=50 * SECOND - 1)]) == []
    events = apply_checked(engine, [Tick(ts_ns=50 * SECOND)])

    assert events == [
        Cancelled(0, 0, ALICE, a1, BUY, 9900, SHARE, DEAD_MAN), Level(0, 0, BUY, 9900, SHARE),
        Cancelled(0, 0, ALICE, a2, SELL, 10100, SHARE, DEAD_MAN), Level(0, 0, SELL, 10100, 0),
    ]
    assert engine.deadline(ALICE) == 0
    assert [o.oid for o in engine.open_orders(BOB)] == [b1]
    assert apply_checked(engine, [bid(ALICE, "1", "99.00"), Tick(ts_ns=60 * SECOND)])[-1] == Level(0, 0, BUY, 9900,
                                                                                                  2 * SHARE)


def test_a_later_schedule_moves_the_deadline_and_zero_clears_it(make_engine):
    engine = funded(make_engine, ALICE)
    arrange(engine, [bid(ALICE, "1", "99.00"), ScheduleCancel(account=ALICE, at_ns=10 * SECOND, ts_ns=2 * SECOND),
                     ScheduleCancel(account=ALICE, at_ns=20 * SECOND, ts_ns=9 * SECOND)])
    assert apply_checked(engine, [Tick(ts_ns=15 * SECOND)]) == []
    assert apply_checked(engine, [ScheduleCancel(account=ALICE, at_ns=0, ts_ns=16 * SECOND)]) == [
        Schedule(0, ALICE, 0)]
    assert apply_checked(engine, [Tick(ts_ns=25 * SECOND)]) == []
    assert len(engine.open_orders(ALICE)) == 1 and engine.deadline(ALICE) == 0


def test_deadlines_fire_after_the_expiries_in_ascending_account(make_engine):
    engine = funded(make_engine, ALICE, BOB, CAROL)
    carol = accepted_oid(apply_checked(engine, [bid(CAROL, "1", "98.00")]))
    bob = accepted_oid(apply_checked(engine, [bid(BOB, "1", "98.00")]))
    alice_gtt = accepted_oid(apply_checked(engine, [bid(ALICE, "1", "98.00", expires_at_ns=30 * SECOND)]))
    alice = accepted_oid(apply_checked(engine, [bid(ALICE, "1", "98.00")]))
    arrange(engine, [ScheduleCancel(account=CAROL, at_ns=20 * SECOND), ScheduleCancel(account=ALICE, at_ns=30 * SECOND),
                     ScheduleCancel(account=BOB, at_ns=40 * SECOND)])

    events = apply_checked(engine, [Tick(ts_ns=30 * SECOND)])

    assert events == [
        Expired(0, 0, ALICE, alice_gtt, BUY, 9800, SHARE), Level(0, 0, BUY, 9800, 3 * SHARE),
        Cancelled(0, 0, ALICE, alice, BUY, 9800, SHARE, DEAD_MAN), Level(0, 0, BUY, 9800, 2 * SHARE),
        Cancelled(0, 0, CAROL, carol, BUY, 9800, SHARE, DEAD_MAN), Level(0, 0, BUY, 9800, SHARE),
    ]
    assert (engine.deadline(ALICE), engine.deadline(BOB), engine.deadline(CAROL)) == (0, 40 * SECOND, 0)
    assert [o.oid for o in engine.open_orders(BOB)] == [bob]


def test_a_deadline_with_no_orders_fires_silently_and_a_rejected_tick_fires_nothing(make_engine):
    engine = funded(make_engine, ALICE)
    arrange(engine, [ScheduleCancel(account=ALICE, at_ns=5 * SECOND)])
    rejected_tick = record(CommandKind.TICK, ts=9 * SECOND, pre_reject=int(Reject.VALUE_OVERFLOW))
    assert events_to_structs(engine.apply(rejected_tick)) == [Rejected(0, 0, 0, 0, Reject.VALUE_OVERFLOW)]
    assert engine.deadline(ALICE) == 5 * SECOND
    assert apply_checked(engine, [Tick(ts_ns=9 * SECOND)]) == []
    assert engine.deadline(ALICE) == 0


@pytest.mark.parametrize(
    "command, config, code",
    [
        pytest.param(ScheduleCancel(account=ALICE, at_ns=7, ts_ns=7), RISK, Reject.DEADLINE_IN_PAST, id="at_ts"),
        pytest.param(ScheduleCancel(account=ALICE, at_ns=6, ts_ns=7), RISK, Reject.DEADLINE_IN_PAST, id="before_ts"),
        pytest.param(ScheduleCancel(account=ALICE, at_ns=-1), RISK, Reject.VALUE_OVERFLOW, id="negative"),
        pytest.param(ScheduleCancel(account=16, at_ns=9), RISK, Reject.UNKNOWN_ACCOUNT, id="unknown_account"),
        pytest.param(ScheduleCancel(account=ALICE, at_ns=9), NO_RISK, Reject.RISK_DISABLED, id="risk_off"),
    ],
)
def test_schedule_rejects(make_engine, command, config, code):
    engine = make_engine(specs=(nvda(),), config=config)
    before = engine.state_hash()
    assert apply_checked(engine, [command]) == [Rejected(0, -1, command.account, 0, code)]
    assert engine.state_hash() == before


def test_a_raw_negative_deadline_is_in_the_past(make_engine):
    engine = funded(make_engine, ALICE)
    events = engine.apply(record(CommandKind.SCHEDULE_CANCEL, account=ALICE, expires_at=-5, ts=0))
    assert events_to_structs(events) == [Rejected(0, -1, ALICE, 0, Reject.DEADLINE_IN_PAST)]


def test_schedule_inside_a_batch_is_refused(make_engine):
    engine = funded(make_engine, ALICE)
    events = apply_checked(engine, [Batch(actions=[ScheduleCancel(account=ALICE, at_ns=9)])])  # type: ignore[list-item]
    assert [(type(e), e.code) for e in events] == [(Rejected, Reject.BAD_FIELD)]


def test_a_deadline_is_part_of_the_state_and_clearing_it_restores_the_hash(make_engine):
    engine = funded(make_engine, ALICE)
    before = engine.state_hash()
    arrange(engine, [ScheduleCancel(account=ALICE, at_ns=9 * SECOND, ts_ns=2 * SECOND)])
    moved = engine.state_hash()
    arrange(engine, [ScheduleCancel(account=ALICE, at_ns=10 * SECOND, ts_ns=2 * SECOND)])
    assert len({before, moved, engine.state_hash()}) == 3
    arrange(engine, [ScheduleCancel(account=ALICE, at_ns=0, ts_ns=2 * SECOND)])
    assert engine.state_hash() == before


# ---------------------------------------------------------------------------- reduce-only: acceptance


def test_reduce_only_is_resized_to_the_position(make_engine):
    engine = long_2(make_engine)
    events = apply_checked(engine, [reduce_only_ask("5", "101.00")])
    assert events == [Accepted(0, 0, ALICE, events[0].oid, SELL, 10100, 2 * SHARE), Level(0, 0, SELL, 10100, 2 * SHARE)]
    assert [(o.remaining_lots, o.reduce_only) for o in engine.open_orders(ALICE)] == [(2 * SHARE, True)]
    # each is sized against the position alone: a second one is 2 shares too
    assert apply_checked(engine, [reduce_only_ask("3", "101.50")])[0].size_lots == 2 * SHARE


def test_the_resize_comes_before_the_size_cap(make_engine):
    engine = long_2(make_engine)
    events = apply_checked(engine, [reduce_only_ask("10000.001", "101.00")])  # one lot above max_order_lots
    assert events[0].size_lots == 2 * SHARE


@pytest.mark.parametrize(
    "setup, order",
    [
        pytest.param([], ask(ALICE, "1", "101.00", reduce_only=True), id="flat"),
        pytest.param([ask(BOB, "2", "100.00"), bid(ALICE, "2", "100.00", tif="ioc")],
                     bid(ALICE, "1", "99.00", reduce_only=True), id="same_side_as_a_long"),
        pytest.param([ask(BOB, "2", "100.00"), bid(ALICE, "2", "100.00", tif="ioc")],
                     market_order(ALICE, "buy", "1", reduce_only=True), id="market_buy_on_a_long"),
    ],
)
def test_reduce_only_that_would_open_or_add_is_rejected(make_engine, setup, order):
    engine = funded(make_engine, ALICE, BOB)
    arrange(engine, setup)
    before = engine.state_hash()
    assert apply_checked(engine, [order]) == [Rejected(0, 0, ALICE, 0, Reject.REDUCE_ONLY_WOULD_INCREASE)]
    assert engine.state_hash() == before


def test_reduce_only_needs_risk(make_engine):
    engine = make_engine(specs=(nvda(),), config=NO_RISK, marks={0: "100.00"})
    assert apply_checked(engine, [ask(ALICE, "1", "101.00", reduce_only=True)]) == [
        Rejected(0, 0, ALICE, 0, Reject.RISK_DISABLED)]


def test_reduce_only_needs_no_margin_at_zero_available_margin(make_engine):
    engine = long_2(make_engine)
    free = engine.equity(ALICE) - engine.initial_margin(ALICE)
    arrange(engine, [Withdraw(account=ALICE, amount=Decimal(free) / USD)])
    assert engine.equity(ALICE) == engine.initial_margin(ALICE) == 20 * USD  # 2 shares at 100.00, 10×
    assert apply_checked(engine, [ask(ALICE, "2.001", "101.00")]) == [
        Rejected(0, 0, ALICE, 0, Reject.INSUFFICIENT_MARGIN)]
    arrange(engine, [ask(ALICE, "2", "101.00")])  # closes at most: IM unchanged, accepted
    # The asks now outweigh the long: one more ask would raise the IM, but a reduce-only one
    # cannot add exposure and needs no margin.
    assert apply_checked(engine, [ask(ALICE, "0.5", "101.00")]) == [
        Rejected(0, 0, ALICE, 0, Reject.INSUFFICIENT_MARGIN)]
    events = apply_checked(engine, [reduce_only_ask("0.5", "101.00")])
    assert events[0] == Accepted(0, 0, ALICE, events[0].oid, SELL, 10100, 500)


# ---------------------------------------------------------------------------- reduce-only: fills and sweeps


def test_closing_the_position_cancels_the_other_reduce_only_orders_after_the_taker(make_engine):
    engine = long_2(make_engine)
    first = accepted_oid(apply_checked(engine, [reduce_only_ask("1", "101.00")]))
    second = accepted_oid(apply_checked(engine, [reduce_only_ask("2", "102.00")]))
    plain = accepted_oid(apply_checked(engine, [ask(ALICE, "1", "102.50")]))
    bob = accepted_oid(apply_checked(engine, [bid(BOB, "3", "100.00")]))

    taker = apply_checked(engine, [market_order(ALICE, "sell", "5", reduce_only=True)])

    oid = taker[0].oid
    assert taker == [
        Accepted(0, 0, ALICE, oid, SELL, 9744, 2 * SHARE),  # resized to the position
        Fill(0, 0, ALICE, oid, BOB, bob, SELL, 10000, 2 * SHARE, SHARE, 0),
        Level(0, 0, BUY, 10000, SHARE),
        Cancelled(0, 0, ALICE, first, SELL, 10100, SHARE, REDUCE_ONLY), Level(0, 0, SELL, 10100, 0),
        Cancelled(0, 0, ALICE, second, SELL, 10200, 2 * SHARE, REDUCE_ONLY), Level(0, 0, SELL, 10200, 0),
    ]
    assert engine.position(ALICE, 0).size_lots == 0
    assert [(o.oid, o.reduce_only) for o in engine.open_orders(ALICE)] == [(plain, False)]


def test_a_reduce_only_maker_fills_at_most_the_position_left(make_engine):
    engine = long_2(make_engine)
    ro = accepted_oid(apply_checked(engine, [reduce_only_ask("2", "100.50")]))
    plain = accepted_oid(apply_checked(engine, [ask(ALICE, "1.5", "100.40")]))
    # CAROL lifts 1.5 at 100.40 first: ALICE is long 0.5, yet her reduce-only order still shows 2
    taker = apply_checked(engine, [bid(CAROL, "3", "100.50", tif="ioc")])

    carol = taker[0].oid
    assert taker == [
        Accepted(0, 0, CAROL, carol, BUY, 10050, 3 * SHARE),
        Fill(0, 0, CAROL, carol, ALICE, plain, BUY, 10040, 1500, 0, 0),
        Level(0, 0, SELL, 10040, 0),
        Fill(0, 0, CAROL, carol, ALICE, ro, BUY, 10050, 500, 1500, 0),
        Cancelled(0, 0, ALICE, ro, SELL, 10050, 1500, REDUCE_ONLY),
        Level(0, 0, SELL, 10050, 0),
        Cancelled(0, 0, CAROL, carol, BUY, 10050, 1000, CancelReason.IOC_REMAINDER),
    ]
    assert engine.position(ALICE, 0).size_lots == 0 and engine.open_orders(ALICE) == []


def test_a_capped_maker_left_resting_is_swept_after_the_taker(make_engine):
    engine = long_2(make_engine)
    ro = accepted_oid(apply_checked(engine, [reduce_only_ask("2", "100.50")]))
    arrange(engine, [bid(BOB, "1.5", "99.00"), ask(ALICE, "1.5", "99.00", tif="ioc")])  # ALICE long 0.5
    taker = apply_checked(engine, [bid(CAROL, "0.5", "100.50", tif="ioc")])

    carol = taker[0].oid
    assert taker == [
        Accepted(0, 0, CAROL, carol, BUY, 10050, 500),
        Fill(0, 0, CAROL, carol, ALICE, ro, BUY, 10050, 500, 1500, 0),
        Level(0, 0, SELL, 10050, 1500),
        Cancelled(0, 0, ALICE, ro, SELL, 10050, 1500, REDUCE_ONLY),
        Level(0, 0, SELL, 10050, 0),
    ]


def test_a_flip_by_an_ordinary_order_cancels_the_reduce_only_ones(make_engine):
    engine = long_2(make_engine)
    ro = accepted_oid(apply_checked(engine, [reduce_only_ask("2", "101.00")]))
    events = apply_checked(engine, [bid(BOB, "3", "99.50"), ask(ALICE, "3", "99.50", tif="ioc")])
    assert engine.position(ALICE, 0).size_lots == -SHARE
    assert events[-2:] == [Cancelled(1, 0, ALICE, ro, SELL, 10100, 2 * SHARE, REDUCE_ONLY),
                           Level(1, 0, SELL, 10100, 0)]


def test_fill_or_kill_does_not_count_reduce_only_makers(make_engine):
    engine = long_2(make_engine)
    arrange(engine, [reduce_only_ask("2", "100.50"), ask(BOB, "1", "100.50")])
    assert apply_checked(engine, [bid(CAROL, "1.5", "100.50", tif="fok")]) == [
        Rejected(0, 0, CAROL, 0, Reject.FOK_NOT_FILLABLE)]
    assert apply_checked(engine, [bid(CAROL, "1", "100.50", tif="fok")])[0].size_lots == SHARE


def test_an_amend_is_capped_at_the_position(make_engine):
    engine = long_2(make_engine)
    ro = accepted_oid(apply_checked(engine, [reduce_only_ask("1", "101.00")]))
    events = apply_checked(engine, [Amend(market=0, account=ALICE, oid=ro, price=Decimal("101.50"), size=Decimal(5))])
    assert events == [Amended(0, 0, ALICE, ro, SELL, 10150, 2 * SHARE, kept_priority=False),
                      Level(0, 0, SELL, 10100, 0), Level(0, 0, SELL, 10150, 2 * SHARE)]
    assert engine.open_orders(ALICE)[0].reduce_only


def test_the_flag_is_part_of_the_state(make_engine):
    plain, flagged = long_2(make_engine), long_2(make_engine)
    arrange(plain, [ask(ALICE, "2", "101.00")])
    arrange(flagged, [reduce_only_ask("2", "101.00")])
    assert plain.open_orders(ALICE)[0].oid == flagged.open_orders(ALICE)[0].oid
    assert plain.state_hash() != flagged.state_hash()


def test_a_raw_place_with_an_unknown_flag_bit_is_a_bad_field(make_engine):
    engine = long_2(make_engine)
    recs = record(CommandKind.PLACE, market=0, account=ALICE, side=SELL, price=10100, size=SHARE,
                  flags=int(OrderFlag.REDUCE_ONLY) | 2)
    assert events_to_structs(engine.apply(recs)) == [Rejected(0, 0, ALICE, 0, Reject.BAD_FIELD)]


def test_a_liquidation_ioc_caps_and_then_sweeps_the_makers_reduce_only_orders(make_engine):
    # ALICE long 10 at 100.00 on $110 against BOB; BOB bids to close his short, reduce-only.
    engine = make_engine(specs=(nvda(ladder_levels=4096),), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND),
                     Deposit(account=ALICE, amount=Decimal(110)), Deposit(account=BOB, amount=Decimal(10_000)),
                     ask(BOB, "10", "100.00"), bid(ALICE, "10", "100.00", tif="ioc")])
    first = accepted_oid(apply_checked(engine, [bid(BOB, "5", "93.40", reduce_only=True)]))
    second = accepted_oid(apply_checked(engine, [bid(BOB, "10", "93.30", reduce_only=True)]))
    # at 93.50 equity 44.65 < MM 46.75: the update itself liquidates, an IOC of all 10 at the
    # fillable 93.19 (test_liquidation.py)
    events = apply_checked(engine, [OracleUpdate(market=0, price=Decimal("93.50"), ts_ns=2 * SECOND)])
    assert isinstance(events[0], Mark)
    events = events[1:]

    ioc = events[0].oid
    assert [type(e).__name__ for e in events] == ["Liquidation", "Fill", "Level", "Fill", "Level", "Cancelled", "Level",
                                                  "Liquidation"]
    assert events[1:7] == [
        Fill(0, 0, ALICE, ioc, BOB, first, SELL, 9340, 5 * SHARE, 0, 2 * SECOND),
        Level(0, 0, BUY, 9340, 0),
        Fill(0, 0, ALICE, ioc, BOB, second, SELL, 9330, 5 * SHARE, 5 * SHARE, 2 * SECOND),  # capped at BOB's 5 left
        Level(0, 0, BUY, 9330, 5 * SHARE),
        Cancelled(0, 0, BOB, second, BUY, 9330, 5 * SHARE, REDUCE_ONLY),  # swept before the fee step
        Level(0, 0, BUY, 9330, 0),
    ]
    assert engine.position(BOB, 0).size_lots == 0 and engine.position(ALICE, 0).size_lots == 0
