"""The liquidation waterfall on a mark change and on the clock, in both engines (mechanics.md §5, docs/risk.md).

ALICE holds 10 NVDA long at 100.00 against BOB on $110 of collateral (IM $100 at 10×, MM 5%
of the notional at the mark). Invariants, conservation to the atom among them, are checked
after every command by ``apply_checked``.
"""

from __future__ import annotations

from decimal import Decimal

from engine.codes import CancelReason, LiquidationStep
from engine.commands import Cancelled, Deposit, Fill, Liquidation, Mark, OracleUpdate, Tick
from engine.spec import EngineConfig
from engine_helpers import ALICE, BOB, CAROL, apply_checked, arrange, ask, bid, nvda

RISK = EngineConfig(max_orders=256, max_accounts=16, risk=True)
SECOND = 1_000_000_000
USD = 1_000_000


def long_alice(make_engine, **spec):
    engine = make_engine(specs=(nvda(ladder_levels=4096, **spec),), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND),
                     Deposit(account=ALICE, amount=Decimal(110)), Deposit(account=BOB, amount=Decimal(10_000)),
                     Deposit(account=CAROL, amount=Decimal(10_000)),
                     ask(BOB, "10", "100.00"), bid(ALICE, "10", "100.00", tif="ioc")])
    return engine


def move_oracle(engine, price):
    """The oracle moves at 2 s (the mark follows and the accounts holding NVDA are checked at
    once), then the 3 s Tick (the full scan, and the fund's work-off); all their events."""
    return apply_checked(engine, [OracleUpdate(market=0, price=Decimal(price), ts_ns=2 * SECOND),
                                  Tick(ts_ns=3 * SECOND)])


def liquidations(events):
    return [e for e in events if isinstance(e, Liquidation)]


def test_a_healthy_account_is_left_alone(make_engine):
    engine = long_alice(make_engine)
    # equity 109.65 − 60 = 49.65 ≥ MM 47.00
    assert liquidations(move_oracle(engine, "94.00")) == []
    assert engine.position(ALICE, 0).size_lots == 10_000


def test_below_maintenance_the_book_takes_what_it_can_at_the_fillable_price(make_engine):
    engine = long_alice(make_engine)
    arrange(engine, [bid(CAROL, "5", "93.40"), bid(CAROL, "1", "93.10")])
    # equity 110 − 0.35 fee − 65 = 44.65 < MM 46.75, above 2/3 MM: the book step.
    # fillable = 93.50 − ⌊1.5 × (46.75 − 44.65) / 10⌋ ticks = 93.50 − 0.31 = 93.19
    events = move_oracle(engine, "93.50")
    steps = liquidations(events)
    assert [s.step for s in steps] == [LiquidationStep.BOOK, LiquidationStep.FEE]
    assert steps[0].price_ticks == 9319
    assert steps[0].size_lots == 10_000 and steps[0].amount == 5_000  # only CAROL's 5 at 93.40 is above 93.19
    fills = [e for e in events if isinstance(e, Fill)]
    assert [(f.price_ticks, f.size_lots) for f in fills] == [(9340, 5_000)]
    assert steps[1].amount == 7_012_500  # 1.5% of 5 × 93.50, from the surplus
    # half closed is enough: equity 36.97 ≥ MM 23.375 for the 5 left; the rest stays with ALICE
    assert engine.position(ALICE, 0).size_lots == 5_000
    assert engine.equity(ALICE) >= engine.maintenance_margin(ALICE)
    assert engine.insurance_fund() == 7_012_500


def test_when_the_book_cannot_absorb_the_fund_takes_the_position(make_engine):
    engine = long_alice(make_engine)
    arrange(engine, [bid(CAROL, "10", "93.10")])
    steps = liquidations(move_oracle(engine, "93.50"))
    assert [s.step for s in steps] == [LiquidationStep.BOOK, LiquidationStep.BACKSTOP, LiquidationStep.COLLATERAL,
                                       LiquidationStep.FUND_BOOK]
    assert steps[0].amount == 0  # nothing at or above the fillable 93.19
    assert (steps[1].size_lots, steps[1].price_ticks) == (10_000, 9350)
    assert steps[2].amount == 44_650_000  # 109.65 − 65 of loss at the mark
    assert engine.position(ALICE, 0).size_lots == 0 and engine.collateral(ALICE) == 0
    # after the scan the fund sells a fifth of what it took, down to 93.50 − ⌊5%⌋ = 88.83: CAROL's bid
    assert (steps[3].price_ticks, steps[3].size_lots, steps[3].amount) == (8883, 2_000, 2_000)
    assert engine.position(RISK.max_accounts, 0).size_lots == 8_000  # the fund's record
    # 44.65, less 0.40 a share on 2 shares and the taker fee ⌈186.20 × 0.035%⌉
    assert engine.insurance_fund() == 44_650_000 - 800_000 - 65_170


def test_a_fully_absorbed_book_liquidation_leaves_the_rest_with_the_trader(make_engine):
    engine = long_alice(make_engine)
    arrange(engine, [bid(CAROL, "10", "93.40")])
    steps = liquidations(move_oracle(engine, "93.50"))
    assert [s.step for s in steps] == [LiquidationStep.BOOK, LiquidationStep.FEE]
    # realized 934 − 1000 = −66, taker fee ⌈934 × 0.035%⌉ = 0.3269, liquidation fee 14.025
    left = 110 * USD - 350_000 - 66 * USD - 326_900 - 14_025_000
    assert engine.collateral(ALICE) == left and left > 0
    assert engine.position(ALICE, 0).size_lots == 0


def test_deep_below_maintenance_cancels_the_orders_and_goes_straight_to_the_fund(make_engine):
    engine = long_alice(make_engine)
    arrange(engine, [ask(ALICE, "1", "100.50")])
    # equity 109.65 − 90 = 19.65 < 2/3 of MM 45.50: no book step
    events = move_oracle(engine, 91)
    assert isinstance(events[0], Mark) and events[0].mark_ticks == 9100  # then the account is checked
    assert isinstance(events[1], Cancelled) and events[1].reason == CancelReason.LIQUIDATION
    steps = liquidations(events)
    assert [s.step for s in steps] == [LiquidationStep.BACKSTOP, LiquidationStep.COLLATERAL,
                                       LiquidationStep.FUND_BOOK]
    assert (steps[0].size_lots, steps[0].price_ticks, steps[1].amount) == (10_000, 9100, 19_650_000)
    assert steps[2].amount == 0  # no bids for the fund's work-off
    assert engine.open_orders(ALICE) == [] and engine.collateral(ALICE) == 0
    assert engine.insurance_fund() == 19_650_000


def test_a_gap_past_bankruptcy_is_paid_by_the_fund_then_collected_from_the_short(make_engine):
    engine = long_alice(make_engine)
    events = move_oracle(engine, 70)
    steps = liquidations(events)
    assert [s.step for s in steps] == [LiquidationStep.BACKSTOP, LiquidationStep.COLLATERAL, LiquidationStep.ADL]
    assert steps[1].amount == 109_650_000 - 300 * USD  # the fund pays the loss beyond the collateral
    # the fund had nothing: BOB, the only short, closes at the mark against it and pays it all back
    assert (steps[2].account, steps[2].size_lots, steps[2].price_ticks, steps[2].amount) == \
        (BOB, -10_000, 7000, -steps[1].amount)
    assert engine.insurance_fund() == 0 and engine.position(RISK.max_accounts, 0).size_lots == 0
    assert engine.collateral(ALICE) == 0 and engine.equity(ALICE) == 0


def test_a_large_position_is_closed_a_fifth_at_a_time_with_a_cooldown(make_engine):
    engine = long_alice(make_engine, partial_liq_notional=Decimal(500))
    arrange(engine, [bid(CAROL, "10", "92.90")])
    # equity 39.65 < MM 46.50; notional 930 > 500: 20% first
    first = liquidations(move_oracle(engine, 93))
    assert first[0].step == LiquidationStep.BOOK and (first[0].size_lots, first[0].amount) == (2_000, 2_000)
    # still below: equity 36.59 < MM 37.20 for the 8 left, but the position cools down for 30 s
    assert engine.equity(ALICE) < engine.maintenance_margin(ALICE)
    assert liquidations(apply_checked(engine, [Tick(ts_ns=20 * SECOND)])) == []
    again = liquidations(apply_checked(engine, [Tick(ts_ns=33 * SECOND)]))
    assert again[0].step == LiquidationStep.BOOK and again[0].size_lots == 1_600
