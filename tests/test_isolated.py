"""Isolated margin in both engines (mechanics.md §2 and §5, docs/risk.md "Isolated margin"):
the bucket a position opens with, what goes through it, adding and removing margin, the
published liquidation price, and a liquidation that never touches the cross collateral.

NVDA: tick 0.01, lot 0.001 (1000 lots a share), 10 atoms per tick·lot; 10 shares at 100.00
are 10,000 lots and $1,000 = 1e9 atoms. Default fees: taker 0.035%, maker 0.01%; tiers 10×
(MM 5%). ``FEELESS`` NVDA has no fees and one 20× tier (MM 2.5%), as in test_liq_price.
Invariants, conservation with the buckets among them, are checked after every command.
"""

from __future__ import annotations

from decimal import Decimal

from engine_helpers import ALICE, BOB, CAROL, apply_checked, arrange, ask, bid, nvda

from engine.codes import LiquidationStep, MarginMode, Reject
from engine.engine import Engine
from engine.commands import (
    AdjustMargin,
    Deposit,
    Funding,
    Liquidation,
    Margin,
    OracleUpdate,
    Rejected,
    SetLeverage,
    SetMarginMode,
    Tick,
    Withdraw,
)
from engine.journal import read_snapshot, write_snapshot
from engine.risk_state import PositionView
from engine.spec import EngineConfig

RISK = EngineConfig(max_orders=256, max_accounts=16, risk=True)
FUND = RISK.max_accounts
SECOND = 1_000_000_000
USD = 1_000_000
FEELESS = nvda(maker_fee=Decimal(0), taker_fee=Decimal(0), tiers=((Decimal(0), 20),), ladder_levels=1 << 14)
ISOLATE = SetMarginMode(account=ALICE, market=0, mode="isolated")


def isolated_long(make_engine, spec, leverage=None, deposit="1000"):
    """ALICE (``deposit`` USD) isolated, buys 10 shares at 100.00 from CAROL as the taker."""
    engine = make_engine(specs=(spec,), config=RISK)
    setup = [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND),
             Deposit(account=ALICE, amount=Decimal(deposit)), Deposit(account=CAROL, amount=Decimal(10_000)),
             Deposit(account=BOB, amount=Decimal(10_000)), ISOLATE]
    if leverage:
        setup.append(SetLeverage(account=ALICE, market=0, leverage=leverage))
    arrange(engine, [*setup, ask(CAROL, "10", "100.00"), bid(ALICE, "10", "100.00")])
    return engine


def steps(events) -> list[Liquidation]:
    return [e for e in events if isinstance(e, Liquidation)]


def test_set_margin_mode_is_acknowledged_and_shown_in_the_position(make_engine):
    engine = make_engine(specs=(nvda(),), config=RISK)
    arrange(engine, [Deposit(account=ALICE, amount=Decimal(100))])

    events = apply_checked(engine, [ISOLATE])

    assert events == [Margin(0, 0, ALICE, MarginMode.ISOLATED, 0, 0)]
    assert engine.position(ALICE, 0) == PositionView(0, 0, 10, 0, 0, True, 0)
    assert apply_checked(engine, [SetMarginMode(account=ALICE, market=0, mode="cross")]) == [
        Margin(0, 0, ALICE, MarginMode.CROSS, 0, 0)]
    assert engine.position(ALICE, 0).isolated is False


def test_opening_moves_the_initial_margin_into_the_bucket_and_the_fee_comes_out_of_it(make_engine):
    """IM = 1e9 / 10 = 100 USD moves from cross; the taker fee ⌈1e9 × 0.035%⌉ = 0.35 is the bucket's."""
    engine = isolated_long(make_engine, nvda())

    assert engine.position(ALICE, 0) == PositionView(10_000, 1_000 * USD, 10, 0, 0, True, 99_650_000)
    assert engine.collateral(ALICE) == 900 * USD
    # the cross figures leave the isolated position out; its own equity is bucket + uPnL
    assert (engine.equity(ALICE), engine.initial_margin(ALICE), engine.maintenance_margin(ALICE)) == (900 * USD, 0, 0)
    assert engine.isolated_equity(ALICE, 0) == 99_650_000


def test_closing_releases_the_bucket_with_its_pnl_to_cross(make_engine):
    """Sold at 101.00: realized +10 USD, fee ⌈1.01e9 × 0.035%⌉ = 0.3535; the bucket
    99.65 + 10 − 0.3535 = 109.2965 goes back to the cross collateral."""
    engine = isolated_long(make_engine, nvda())

    apply_checked(engine, [bid(BOB, "10", "101.00"), ask(ALICE, "10", "101.00")])

    assert engine.position(ALICE, 0) == PositionView(0, 0, 10, 10 * USD, 0, True, 0)
    assert engine.collateral(ALICE) == 900 * USD + 109_296_500


def test_a_flip_releases_the_old_bucket_and_opens_the_new_one(make_engine):
    """Long 10 at 100 (bucket 100), sell 15 at 100: the bucket returns, then the short 5 moves
    ⌈5e8 / 10⌉ = 50 USD in."""
    engine = isolated_long(make_engine, FEELESS, leverage=10)

    apply_checked(engine, [bid(BOB, "15", "100.00"), ask(ALICE, "15", "100.00")])

    assert engine.position(ALICE, 0) == PositionView(-5_000, -500 * USD, 10, 0, 0, True, 50 * USD)
    assert engine.collateral(ALICE) == 950 * USD


def test_an_isolated_order_needs_its_initial_margin_in_cross(make_engine):
    """$100 at 10×: bids for 9.9 and 0.1 shares at 100.00 need exactly $100; $10 more do not fit."""
    engine = make_engine(specs=(nvda(),), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND),
                     Deposit(account=ALICE, amount=Decimal(100)), ISOLATE, bid(ALICE, "9.9", "100.00"),
                     bid(ALICE, "0.1", "100.00")])
    assert engine.initial_margin(ALICE) == 100 * USD

    events = apply_checked(engine, [bid(ALICE, "0.1", "100.00")])

    assert events == [Rejected(0, 0, ALICE, 0, Reject.INSUFFICIENT_MARGIN)]


def test_adding_and_removing_margin_down_to_the_initial_margin(make_engine):
    engine = isolated_long(make_engine, nvda())

    assert apply_checked(engine, [AdjustMargin(account=ALICE, market=0, amount=Decimal(50))]) == [
        Margin(0, 0, ALICE, MarginMode.ISOLATED, 50 * USD, 149_650_000)]
    assert engine.collateral(ALICE) == 850 * USD
    # equity 149.65 at the mark, IM 100: 49.65 can come out, not an atom more
    assert apply_checked(engine, [AdjustMargin(account=ALICE, market=0, amount=Decimal("-49.650001"))]) == [
        Rejected(0, 0, ALICE, 0, Reject.MARGIN_REMOVE_TOO_LARGE)]
    assert apply_checked(engine, [AdjustMargin(account=ALICE, market=0, amount=Decimal("-49.65"))]) == [
        Margin(0, 0, ALICE, MarginMode.ISOLATED, -49_650_000, 100 * USD)]
    assert engine.collateral(ALICE) == 899_650_000


def test_a_withdrawal_sees_only_the_cross_side(make_engine):
    """The $900 left in cross back nothing but cross: all of it can be withdrawn."""
    engine = isolated_long(make_engine, nvda())

    events = apply_checked(engine, [Withdraw(account=ALICE, amount=Decimal(900))])

    assert engine.collateral(ALICE) == 0 and len(events) == 1
    assert engine.position(ALICE, 0).margin_atoms == 99_650_000


def test_hyperliquid_isolated_long_10_at_100_with_100_of_margin_liquidates_at_92_31(make_engine):
    """mechanics.md §5: 10× (margin 100), max leverage 20 (mmr 2.5%): available 100 − 25 = 75,
    liq = 100 − 75/10/0.975 = 92.3077, published as 92.31 (toward the mark)."""
    engine = isolated_long(make_engine, FEELESS, leverage=10)
    assert engine.position(ALICE, 0).margin_atoms == 100 * USD

    assert engine.liquidation_price(ALICE, 0) == 9_231

    # at 92.31 the position's equity 23.10 is still ≥ its MM 23.0775; one tick lower it is not
    apply_checked(engine, [OracleUpdate(market=0, price=Decimal("92.31"), ts_ns=2 * SECOND)])
    assert engine.isolated_equity(ALICE, 0) == 23_100_000 >= 23_077_500
    # (equity 23.00 < MM 23.075): the update itself liquidates the position
    events = apply_checked(engine, [OracleUpdate(market=0, price=Decimal("92.30"), ts_ns=3 * SECOND)])
    assert steps(events) and steps(events)[0].account == ALICE


def test_book_liquidation_of_an_isolated_position_pays_its_fee_from_what_the_bucket_returns(make_engine):
    """At 92.00: equity 100 − 80 = 20 < MM 23 (not below 2/3 of it). The IOC goes at the fillable
    price 9200 − ⌊1.5 × 3e6 / 1e5⌋ = 9155, fills BOB's bid at 92.00, the bucket (20) goes back
    to cross and the liquidation fee ⌈920 × 1.5%⌉ = 13.80 comes out of it."""
    engine = isolated_long(make_engine, FEELESS, leverage=10)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(95), ts_ns=2 * SECOND), bid(BOB, "10", "92.00")])

    events = apply_checked(engine, [OracleUpdate(market=0, price=Decimal(92), ts_ns=2 * SECOND)])

    book, fee = steps(events)
    assert (book.step, book.side, book.price_ticks, book.size_lots, book.amount) == (
        LiquidationStep.BOOK, 1, 9_155, 10_000, 10_000)
    assert (fee.step, fee.amount) == (LiquidationStep.FEE, 13_800_000)
    assert engine.position(ALICE, 0).size_lots == 0 and engine.position(ALICE, 0).margin_atoms == 0
    assert engine.collateral(ALICE) == 900 * USD + 20 * USD - 13_800_000
    assert engine.insurance_fund() == 13_800_000


def test_a_bankrupt_isolated_position_never_takes_cross_collateral(make_engine):
    """Gap to 85.00: equity 99.65 − 150 = −50.35 (MM 42.50). The fund takes the position at the
    mark with the bucket's −50.35 (step COLLATERAL, in market 0), and ADL collects that from
    CAROL's short; ALICE's $900 in cross are untouched and nothing cross is liquidated."""
    engine = isolated_long(make_engine, nvda())

    events = apply_checked(engine, [OracleUpdate(market=0, price=Decimal(85), ts_ns=2 * SECOND),
                                    Tick(ts_ns=3 * SECOND)])

    got = [(s.step, s.market, s.account, s.size_lots, s.amount) for s in steps(events)]
    assert got == [
        (LiquidationStep.BACKSTOP, 0, ALICE, 10_000, 0),
        (LiquidationStep.COLLATERAL, 0, ALICE, 0, -50_350_000),
        (LiquidationStep.ADL, 0, CAROL, -10_000, 50_350_000),
    ]
    assert engine.collateral(ALICE) == 900 * USD
    assert engine.position(ALICE, 0) == PositionView(0, 0, 10, -150 * USD, 0, True, 0)
    assert engine.insurance_fund() == 0 and engine.position(FUND, 0).size_lots == 0


def test_cross_liquidation_leaves_the_isolated_position_alone(make_engine):
    """ALICE: isolated long in NVDA (bucket 99.65), cross long in TSLA on the rest. A TSLA gap
    liquidates the cross side; the NVDA position and its bucket stay as they were."""
    tsla_feeless = nvda(market_id=1, symbol="TSLA")
    engine = make_engine(specs=(nvda(), tsla_feeless), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND),
                     OracleUpdate(market=1, price=Decimal(100), ts_ns=SECOND),
                     Deposit(account=ALICE, amount=Decimal(200)), Deposit(account=CAROL, amount=Decimal(10_000)),
                     ISOLATE, ask(CAROL, "10", "100.00"), bid(ALICE, "10", "100.00"),
                     ask(CAROL, "5", "100.00", market=1), bid(ALICE, "5", "100.00", market=1)])
    before = engine.position(ALICE, 0)

    events = apply_checked(engine, [OracleUpdate(market=1, price=Decimal(80), ts_ns=2 * SECOND),
                                    Tick(ts_ns=3 * SECOND)])

    assert steps(events) and {s.market for s in steps(events)} <= {1, -1}  # COLLATERAL of cross: market −1
    assert engine.position(ALICE, 0) == before
    assert engine.position(ALICE, 1).size_lots == 0


def test_funding_of_an_isolated_position_goes_through_its_bucket(make_engine):
    engine = isolated_long(make_engine, nvda())
    collateral, margin = engine.collateral(ALICE), engine.position(ALICE, 0).margin_atoms

    events = apply_checked(engine, [Tick(ts_ns=3_600 * SECOND)])

    paid = [e for e in events if isinstance(e, Funding) and e.account == ALICE]
    assert len(paid) == 1 and paid[0].credit_atoms != 0
    assert engine.collateral(ALICE) == collateral
    assert engine.position(ALICE, 0).margin_atoms == margin + paid[0].credit_atoms


def test_a_snapshot_keeps_the_mode_and_the_bucket_and_the_hash_sees_them(tmp_path):
    spec = nvda()
    engine = Engine([spec], RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND),
                     Deposit(account=ALICE, amount=Decimal(1_000)), Deposit(account=CAROL, amount=Decimal(10_000)),
                     ISOLATE, ask(CAROL, "10", "100.00"), bid(ALICE, "10", "100.00")])
    before = engine.state_hash()

    loaded = read_snapshot(write_snapshot(str(tmp_path), engine, 7), [spec], RISK)

    assert loaded.engine.state_hash() == before
    assert loaded.engine.position(ALICE, 0) == engine.position(ALICE, 0)


def test_the_state_hash_sees_the_mode_and_is_unchanged_without_it(make_engine):
    engine = make_engine(specs=(nvda(),), config=RISK)
    arrange(engine, [Deposit(account=ALICE, amount=Decimal(100))])
    cross = engine.state_hash()

    apply_checked(engine, [ISOLATE])
    isolated = engine.state_hash()
    apply_checked(engine, [SetMarginMode(account=ALICE, market=0, mode="cross")])

    assert isolated != cross and engine.state_hash() == cross
