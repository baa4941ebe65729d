"""Accounts, positions, fees, margin, mark and funding in both engines, with exact worked
numbers (mechanics.md §2–§4, docs/risk.md). Invariants (conservation to the atom, open
interest, order exposure) are checked after every command by ``apply_checked``."""

from __future__ import annotations

from decimal import Decimal

import pytest
from engine_helpers import (
    ALICE,
    BOB,
    CAROL,
    SHARE,
    apply_checked,
    arrange,
    ask,
    bid,
    market_order,
    nvda,
)

from engine.codes import Reject
from engine.commands import (
    Amend,
    Balance,
    Batch,
    Deposit,
    Fill,
    Funding,
    FundingRate,
    Mark,
    OracleUpdate,
    Rejected,
    SetLeverage,
    Tick,
    Withdraw,
    events_to_structs,
)
from engine.spec import EngineConfig, MarketSpec

RISK = EngineConfig(max_orders=256, max_accounts=16, risk=True)
USD = 1_000_000  # atoms
SECOND = 1_000_000_000
HOUR = 3_600 * SECOND


def usd(x) -> Decimal:
    return Decimal(x)


def funded(make_engine, *accounts, amount=100_000, specs=None, oracle="100.00"):
    engine = make_engine(specs=specs or (nvda(),), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(oracle), ts_ns=SECOND)]
            + [Deposit(account=a, amount=usd(amount)) for a in accounts])
    return engine


def conservation(engine) -> int:
    deposits, withdrawals = engine.totals()
    return deposits - withdrawals


# ---------------------------------------------------------------------------- fees and PnL


def test_fill_charges_taker_and_maker_fees_to_the_atom(make_engine):
    engine = funded(make_engine, ALICE, BOB)
    events = apply_checked(engine, [ask(BOB, "3", "100.00"), bid(ALICE, "3", "100.00", tif="ioc")])
    assert [e for e in events if isinstance(e, Fill)][0].size_lots == 3 * SHARE
    # $300 notional: taker 0.035% = $0.105, maker 0.01% = $0.03
    assert engine.collateral(ALICE) == 100_000 * USD - 105_000
    assert engine.collateral(BOB) == 100_000 * USD - 30_000
    assert engine.fees() == 135_000
    assert engine.position(ALICE, 0).size_lots == 3 * SHARE
    assert engine.position(BOB, 0).size_lots == -3 * SHARE
    assert engine.position(ALICE, 0).cost_atoms == 300 * USD
    assert engine.position(BOB, 0).cost_atoms == -300 * USD


def test_a_maker_rebate_is_paid_from_the_fees_and_rounds_down(make_engine):
    spec = nvda(maker_fee=Decimal("-0.00015"), taker_fee=Decimal("0.00035"))
    engine = funded(make_engine, ALICE, BOB, specs=(spec,))
    apply_checked(engine, [ask(BOB, "0.123", "100.01"), bid(ALICE, "0.123", "100.01", tif="ioc")])
    notional = 123 * 10_001 * 10  # lots × ticks × atoms per tick·lot = 12,301,230 atoms
    taker = -(-notional * 350 // 1_000_000)  # 4,305.4305 -> 4,306 (a charge rounds up)
    rebate = notional * 150 // 1_000_000  # 1,845.1845 -> 1,845 (a rebate rounds down)
    assert (taker, rebate) == (4_306, 1_845)
    assert engine.collateral(ALICE) == 100_000 * USD - taker
    assert engine.collateral(BOB) == 100_000 * USD + rebate
    assert engine.fees() == taker - rebate


def test_open_add_reduce_flip_close_books_exact_realized_pnl(make_engine):
    spec = nvda(maker_fee=Decimal(0), taker_fee=Decimal(0))
    engine = funded(make_engine, ALICE, BOB, specs=(spec,))
    trade = [  # ALICE takes each time (the test book's band is ±2.56 around 100)
        (bid, "1", "100.00"),  # open long 1 @ 100
        (bid, "2", "101.50"),  # add: long 3, cost 303
        (ask, "1", "102.00"),  # reduce 1: removes cost 101, realizes +1
        (ask, "4", "101.00"),  # flip: close 2 (cost 202, realizes 0), then short 2 @ 101
        (bid, "2", "100.50"),  # close the short: realizes +1
    ]
    for side, shares, price in trade:
        maker = ask if side is bid else bid
        apply_checked(engine, [maker(BOB, shares, price), side(ALICE, shares, price, tif="ioc")])
    p = engine.position(ALICE, 0)
    assert (p.size_lots, p.cost_atoms, p.realized_atoms) == (0, 0, 2 * USD)
    assert engine.collateral(ALICE) == 100_002 * USD
    assert engine.collateral(BOB) == 99_998 * USD
    assert engine.position(BOB, 0).realized_atoms == -2 * USD


def test_partial_close_removes_pro_rata_cost_rounded_against_the_trader(make_engine):
    spec = nvda(maker_fee=Decimal(0), taker_fee=Decimal(0), min_notional=Decimal(0))
    engine = funded(make_engine, ALICE, BOB, specs=(spec,))
    for price in ("100.01", "100.01", "100.02"):  # long 3 lots, cost 10 × (10001 + 10001 + 10002)
        apply_checked(engine, [ask(BOB, "0.001", price), bid(ALICE, "0.001", price, tif="ioc")])
    assert engine.position(ALICE, 0).cost_atoms == 300_040
    apply_checked(engine, [bid(BOB, "0.001", "100.00"), ask(ALICE, "0.001", "100.00", tif="ioc")])
    p = engine.position(ALICE, 0)
    # removed = ⌈300,040 / 3⌉ = 100,014 (exactly 100,013.33): realized 100,000 − 100,014 = −14
    assert (p.size_lots, p.cost_atoms, p.realized_atoms) == (2, 200_026, -14)
    assert engine.collateral(ALICE) == 100_000 * USD - 14


# ---------------------------------------------------------------------------- margin


def test_an_order_needs_initial_margin_at_the_tier_leverage(make_engine):
    engine = funded(make_engine, ALICE, amount=100)
    # 10× by default; a bid below the mark 100 is valued at the mark: 10 shares need $100
    assert apply_checked(engine, [bid(ALICE, "10", "99.00")])[0].__struct_config__.tag == "accepted"
    assert engine.initial_margin(ALICE) == 100 * USD
    events = apply_checked(engine, [bid(ALICE, "0.11", "99.00")])
    assert events == [Rejected(0, 0, ALICE, 0, Reject.INSUFFICIENT_MARGIN)]


def test_a_bid_below_the_mark_is_margined_at_the_mark(make_engine):
    engine = funded(make_engine, ALICE, amount=1_000)
    arrange(engine, [bid(ALICE, "5", "98.00")])
    assert engine.initial_margin(ALICE) == 50 * USD  # 5 × max(98, 100) / 10
    arrange(engine, [ask(ALICE, "5", "102.00")])
    # asks at min(102, mark 100): short side 500 = long side 500, so IM stays 50
    assert engine.initial_margin(ALICE) == 50 * USD


def test_an_order_that_only_reduces_needs_no_margin(make_engine):
    engine = funded(make_engine, ALICE, BOB, amount=1_000)
    arrange(engine, [ask(BOB, "50", "100.00"), bid(ALICE, "50", "100.00", tif="ioc")])
    # ALICE: long 50 ($5,000) on $1,000 less fees; IM 500. Withdraw until nothing is free.
    free = engine.equity(ALICE) - engine.initial_margin(ALICE)
    arrange(engine, [Withdraw(account=ALICE, amount=Decimal(free) / USD)])
    assert engine.equity(ALICE) == engine.initial_margin(ALICE)
    assert apply_checked(engine, [bid(ALICE, "1", "99.00")])[0] == Rejected(0, 0, ALICE, 0, Reject.INSUFFICIENT_MARGIN)
    events = apply_checked(engine, [ask(ALICE, "50", "101.00")])
    assert events[0].__struct_config__.tag == "accepted"


def test_withdraw_keeps_ten_percent_of_notional(make_engine):
    engine = funded(make_engine, ALICE, BOB, amount=1_000)
    arrange(engine, [SetLeverage(account=ALICE, market=0, leverage=10), ask(BOB, "50", "100.00"),
                     bid(ALICE, "50", "100.00", tif="ioc")])
    # equity 1000 − 1.75 fee; IM = 500 = 10% of 5,000: max(IM, 10%) = 500
    equity = engine.equity(ALICE)
    assert equity == 998_250_000
    too_much = Decimal(equity - 500 * USD + 1) / USD
    assert apply_checked(engine, [Withdraw(account=ALICE, amount=too_much)]) == [
        Rejected(0, -1, ALICE, 0, Reject.WITHDRAW_TOO_LARGE)]
    events = apply_checked(engine, [Withdraw(account=ALICE, amount=too_much - Decimal("0.000001"))])
    assert events == [Balance(0, ALICE, -(equity - 500 * USD), 500 * USD)]


def test_leverage_is_capped_by_the_positions_tier(make_engine):
    spec = nvda(tiers=((Decimal(0), 10), (Decimal(20_000), 5)))
    engine = funded(make_engine, ALICE, BOB, specs=(spec,), amount=100_000)
    arrange(engine, [ask(BOB, "250", "100.00"), bid(ALICE, "250", "100.00", tif="ioc")])  # $25,000
    assert apply_checked(engine, [SetLeverage(account=ALICE, market=0, leverage=6)]) == [
        Rejected(0, 0, ALICE, 0, Reject.LEVERAGE_INVALID)]
    assert engine.maintenance_margin(ALICE) == 20_000 * USD // 20 + 5_000 * USD // 10  # 1,000 + 500


# ---------------------------------------------------------------------------- mark


def test_mark_is_the_oracle_without_a_book_and_the_median_with_one(make_engine):
    engine = funded(make_engine, ALICE, BOB)
    assert engine.mark(0) == engine.oracle(0) == 10_000
    arrange(engine, [bid(ALICE, "1", "100.50"), ask(BOB, "1", "101.50")])
    # first sample 10 s later: EMA(mid − oracle) = 101 − 100 = 1.00; book (100.50, 101.50) -> 101
    events = apply_checked(engine, [OracleUpdate(market=0, price=Decimal("100.00"), ts_ns=11 * SECOND)])
    assert events == [Mark(0, 0, 10_100, 10_000)]
    # oracle jumps to 110: median(110, 110 + EMA ≈ 0.09, book 101) = 110
    events = apply_checked(engine, [OracleUpdate(market=0, price=Decimal("110.00"), ts_ns=12 * SECOND)])
    assert events[-1] == Mark(0, 0, 11_000, 11_000)


# ---------------------------------------------------------------------------- funding


def test_hyperliquid_funding_example_pays_118_75(make_engine):
    # oracle 10,000, impact bid 10,100 -> p = 1%; F8h = 0.95%; hourly 0.11875% with multiplier 1;
    # a 10-unit long pays 10 × 10,000 × 0.0011875 = $118.75 to the short.
    spec = MarketSpec(market_id=0, symbol="X", tick_size=Decimal(1), lot_size=Decimal(1), max_order_lots=1_000,
                      funding_multiplier=Decimal(1), maker_fee=Decimal(0), taker_fee=Decimal(0), ladder_levels=65536)
    engine = make_engine(specs=(spec,), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(10_000), ts_ns=SECOND)]
            + [Deposit(account=a, amount=usd(100_000)) for a in (ALICE, BOB, CAROL)]
            + [ask(BOB, "10", "10000"), bid(ALICE, "10", "10000", tif="ioc"), bid(CAROL, "1", "10100")])
    ticks = [Tick(ts_ns=t * 5 * SECOND) for t in range(1, 721)]
    structs = events_to_structs(engine.apply(ticks))
    engine.check_invariants()
    fundings = [e for e in structs if isinstance(e, Funding)]
    assert {(e.account, e.credit_atoms) for e in fundings} == {(ALICE, -118_750_000), (BOB, 118_750_000)}
    assert all(e.rate_ppb == 1_187_500 and e.oracle_ticks == 10_000 for e in fundings)
    assert [e for e in structs if isinstance(e, FundingRate)] == [FundingRate(719, 0, 1_187_500, 10_000, 0)]
    assert engine.position(ALICE, 0).funding_atoms == -118_750_000


def test_funding_rounds_payers_up_receivers_down_and_the_fund_keeps_the_rest(make_engine):
    engine = funded(make_engine, ALICE, BOB, CAROL)
    # ALICE long 0.7 at 100.01 against BOB (0.4) and CAROL (0.3); no depth left: interest only,
    # rate = 0.5 × 0.01% / 8 = 6,250 ppb per hour
    arrange(engine, [ask(BOB, "0.4", "100.01"), ask(CAROL, "0.3", "100.01"), bid(ALICE, "0.7", "100.01", tif="ioc")])
    structs = apply_checked(engine, [Tick(ts_ns=HOUR)])
    fundings = {e.account: e.credit_atoms for e in structs if isinstance(e, Funding)}
    assert structs[-1].rate_ppb == 6_250
    # 70,007,000 atoms × 6.25e-6 = 437.54375; 40,004,000 → 250.025; 30,003,000 → 187.51875
    assert fundings == {ALICE: -438, BOB: 250, CAROL: 187}  # payer rounded up, receivers down
    assert structs[-1].remainder_atoms == 1
    assert engine.insurance_fund() == 1


def test_predicted_rate_follows_the_samples(make_engine):
    engine = funded(make_engine, ALICE, BOB)
    assert engine.predicted_rate_ppb(0) == 0
    arrange(engine, [Tick(ts_ns=5 * SECOND)])
    assert engine.predicted_rate_ppb(0) == 6_250  # no depth either side: premium 0, interest only


def test_deposits_and_withdrawals_balance_the_books_to_the_atom(make_engine):
    engine = funded(make_engine, ALICE, BOB, CAROL, amount=10_000)
    arrange(engine, [ask(BOB, "5", "100.00"), market_order(ALICE, "buy", "3"), ask(CAROL, "2", "100.50"),
                     market_order(ALICE, "sell", "1"), Withdraw(account=CAROL, amount=Decimal(10))])
    assert conservation(engine) == 29_990 * USD
    total = sum(engine.collateral(a) for a in (ALICE, BOB, CAROL)) + engine.fees() + engine.insurance_fund()
    cost = sum(engine.position(a, 0).cost_atoms for a in (ALICE, BOB, CAROL))
    assert total - cost == conservation(engine)


@pytest.mark.parametrize("kind", ["deposit", "withdraw", "leverage", "oracle"])
def test_account_and_oracle_commands_inside_a_batch_are_refused(make_engine, kind):
    engine = funded(make_engine, ALICE)
    before = engine.state_hash()
    action = {"deposit": Deposit(account=ALICE, amount=usd(1)), "withdraw": Withdraw(account=ALICE, amount=usd(1)),
              "leverage": SetLeverage(account=ALICE, market=0, leverage=2),
              "oracle": OracleUpdate(market=0, price=Decimal(101))}[kind]
    events = apply_checked(engine, [Batch(actions=[action])])
    assert [(type(e), e.code) for e in events] == [(Rejected, Reject.BAD_FIELD)]
    assert engine.state_hash() == before


def test_shrinking_an_order_never_needs_margin_even_when_the_account_is_short_of_it(make_engine):
    engine = make_engine(specs=(nvda(ladder_levels=4096),), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND), Deposit(account=ALICE, amount=usd(100)),
                     bid(ALICE, "10", "99.00")])
    arrange(engine, [OracleUpdate(market=0, price=Decimal(110), ts_ns=2 * SECOND)])
    assert engine.initial_margin(ALICE) == 110 * USD > engine.equity(ALICE)
    oid = engine.open_orders(ALICE)[0].oid
    events = apply_checked(engine, [Amend(market=0, account=ALICE, oid=oid, size=Decimal("9.5"))])
    assert events[0].__struct_config__.tag == "amended"
    assert engine.initial_margin(ALICE) == 104_500_000  # still above equity, but lower than before
    events = apply_checked(engine, [Amend(market=0, account=ALICE, oid=oid, size=Decimal("9.6"))])
    assert events == [Rejected(0, 0, ALICE, oid, Reject.INSUFFICIENT_MARGIN)]
