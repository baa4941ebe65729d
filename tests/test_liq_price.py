"""The published liquidation price (engine.liq_price, mechanics.md §5) in both engines:
Hyperliquid's worked 92.31, its symmetric short, the cross-margin effect of another
position, and the price really being the edge of maintenance."""

from __future__ import annotations

from decimal import Decimal

from engine_helpers import ALICE, BOB, CAROL, apply_checked, arrange, ask, bid, nvda, tsla

from engine.commands import Deposit, Liquidation, OracleUpdate, SetLeverage
from engine.spec import EngineConfig

RISK = EngineConfig(max_orders=256, max_accounts=16, risk=True)
FEELESS = dict(maker_fee=Decimal(0), taker_fee=Decimal(0), tiers=((Decimal(0), 20),), ladder_levels=1 << 14)


def engine_with_long(make_engine, deposit="100", side="buy"):
    engine = make_engine(specs=(nvda(**FEELESS),), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=1),
                     Deposit(account=ALICE, amount=Decimal(deposit)), Deposit(account=CAROL, amount=Decimal(10**6))])
    mine, theirs = (bid, ask) if side == "buy" else (ask, bid)
    arrange(engine, [theirs(CAROL, "10", "100.00"), mine(ALICE, "10", "100.00")])
    return engine


def test_hyperliquid_example_long_10_at_100_with_100_of_margin_is_92_31(make_engine):
    """Max leverage 20 (mmr 2.5%): available 100 − 25 = 75; 100 − 75/10/0.975 = 92.3077, up to 92.31."""
    engine = engine_with_long(make_engine)
    assert engine.maintenance_margin(ALICE) == 25_000_000
    assert engine.liquidation_price(ALICE, 0) == 9_231


def test_short_mirror_rounds_down(make_engine):
    """Short 10 at 100: 100 + 75/10/1.025 = 107.317…, down to 107.31."""
    engine = engine_with_long(make_engine, side="sell")
    assert engine.liquidation_price(ALICE, 0) == 10_731


def test_at_the_published_price_the_account_is_still_at_maintenance(make_engine):
    engine = engine_with_long(make_engine)
    apply_checked(engine, [OracleUpdate(market=0, price=Decimal("92.31"), ts_ns=2)])
    assert engine.mark(0) == 9_231
    assert engine.equity(ALICE) >= engine.maintenance_margin(ALICE)
    # one tick below it she is under maintenance, and the oracle update itself liquidates her
    events = apply_checked(engine, [OracleUpdate(market=0, price=Decimal("92.30"), ts_ns=3)])
    assert any(isinstance(e, Liquidation) and e.account == ALICE for e in events)


def test_flat_position_has_none_and_a_long_that_cannot_be_liquidated_has_none(make_engine):
    engine = engine_with_long(make_engine, deposit="10000")
    assert engine.liquidation_price(BOB, 0) == 0
    assert engine.liquidation_price(ALICE, 0) == 0  # $10,000 behind a $1,000 long


def test_another_positions_loss_moves_the_cross_margin_liquidation_price(make_engine):
    engine = make_engine(specs=(nvda(**FEELESS), tsla(maker_fee=Decimal(0), taker_fee=Decimal(0))), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=1),
                     OracleUpdate(market=1, price=Decimal(50), ts_ns=1),
                     Deposit(account=ALICE, amount=Decimal(200)), Deposit(account=CAROL, amount=Decimal(10**6)),
                     SetLeverage(account=ALICE, market=1, leverage=10),
                     ask(CAROL, "10", "100.00"), bid(ALICE, "10", "100.00"),
                     ask(CAROL, "4", "50.00", market=1), bid(ALICE, "4", "50.00", market=1)])
    before = engine.liquidation_price(ALICE, 0)
    apply_checked(engine, [OracleUpdate(market=1, price=Decimal(45), ts_ns=2)])  # TSLA long loses $20
    after = engine.liquidation_price(ALICE, 0)
    assert after > before  # less margin available: NVDA's liquidation price moves up toward the mark
