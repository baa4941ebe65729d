"""Auto-deleveraging and the insurance fund's work-off through the book, in both engines
(mechanics.md §5.4 and §6, docs/risk.md "Auto-deleveraging" and "The fund's work-off").

NVDA: tick 0.01, lot 0.001 (1000 lots a share), 10 atoms per tick·lot, taker fee 0.035%,
maker fee 0.01%, MM 5% of the notional at the mark. A gap from 100 to 70 bankrupts a long of
10 shares opened at ~100 on $110: the fund takes the position at the mark with the negative
collateral, and what it cannot cover is collected from the shorts in ADL order. Invariants,
conservation to the atom among them, are checked after every command by ``apply_checked``.
"""

from __future__ import annotations

from decimal import Decimal

from engine.codes import CancelReason, LiquidationStep
from engine.commands import Cancelled, Deposit, Fill, Liquidation, MarketAdmin, OracleUpdate, Tick
from engine.spec import EngineConfig
from engine_helpers import ALICE, BOB, CAROL, DAVE, apply_checked, arrange, ask, bid, nvda, tsla

RISK = EngineConfig(max_orders=256, max_accounts=16, risk=True)
FUND = RISK.max_accounts  # the insurance fund's row
SECOND = 1_000_000_000
USD = 1_000_000
NVDA_WIDE = nvda(ladder_levels=4096)


def liquidations(events) -> list[Liquidation]:
    return [e for e in events if isinstance(e, Liquidation)]


def adl_closes(events) -> list[tuple[int, int, int, int]]:
    """(account, signed lots closed, price, atoms paid) of each ADL step, in order."""
    return [(s.account, s.size_lots, s.price_ticks, s.amount) for s in liquidations(events)
            if s.step == LiquidationStep.ADL]


def no_bankrupt_account_with_positions(engine, specs) -> bool:
    """After the waterfall, every account (not the fund) with a position has equity ≥ 0."""
    return all(engine.equity(a) >= 0 for a in range(RISK.max_accounts)
               if any(engine.position(a, m).size_lots for m in range(len(specs))))


def gap(engine, price):
    """NVDA's oracle jumps at 2 s: the mark follows and the accounts holding NVDA are checked
    at once; then the 3 s Tick (the full scan and the fund's work-off). All their events."""
    return apply_checked(engine, [OracleUpdate(market=0, price=Decimal(price), ts_ns=2 * SECOND),
                                  Tick(ts_ns=3 * SECOND)])


def test_a_gap_past_bankruptcy_is_collected_from_the_shorts_in_ranking_order(make_engine):
    """Shorts of 3 at 101 (BOB, $400), 3 at 100 (CAROL, $40), 4 at 99 (DAVE, $100) against
    ALICE's long 10. At 70 their keys uPnL/equity are BOB 93/492.9697, CAROL 90/129.97 and
    DAVE 116/215.9604: CAROL (most leveraged) first, then DAVE, then BOB, whatever the ids,
    the uPnL or the order of the fills."""
    engine = make_engine(specs=(NVDA_WIDE,), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND),
                     Deposit(account=ALICE, amount=Decimal("110.000007")), Deposit(account=BOB, amount=Decimal(400)),
                     Deposit(account=CAROL, amount=Decimal(40)), Deposit(account=DAVE, amount=Decimal(100)),
                     ask(BOB, "3", "101.00"), ask(CAROL, "3", "100.00"), ask(DAVE, "4", "99.00"),
                     bid(ALICE, "10", "101.00", tif="ioc")])
    # at 70, ALICE: 110.000007 − taker fee ⌈999 × 0.035%⌉ = 0.34965 − loss 299 = −189.349643
    events = gap(engine, 70)
    steps = liquidations(events)
    assert [s.step for s in steps] == [LiquidationStep.BACKSTOP, LiquidationStep.COLLATERAL] + [LiquidationStep.ADL] * 3
    assert steps[1].amount == -189_349_643
    # each pays ⌈need · its lots / lots left⌉; the last pays exactly what is left:
    # ⌈189_349_643 × 3/10⌉ = 56_804_893, ⌈132_544_750 × 4/7⌉ = 75_739_858, then 56_804_892
    assert adl_closes(events) == [(CAROL, -3_000, 7_000, 56_804_893), (DAVE, -4_000, 7_000, 75_739_858),
                                  (BOB, -3_000, 7_000, 56_804_892)]
    assert sum(close[3] for close in adl_closes(events)) == -steps[1].amount
    assert all(s.side == 0 for s in steps[2:])  # the shorts buy back
    assert engine.insurance_fund() == 0 and engine.position(FUND, 0).size_lots == 0
    # CAROL: 40 − maker fee 0.03 + 90 realized − 56.804893 paid
    assert engine.collateral(CAROL) == 40 * USD - 30_000 + 90 * USD - 56_804_893
    assert engine.collateral(DAVE) == 100 * USD - 39_600 + 116 * USD - 75_739_858
    assert engine.collateral(BOB) == 400 * USD - 30_300 + 93 * USD - 56_804_892
    assert all(engine.position(a, 0).size_lots == 0 for a in (ALICE, BOB, CAROL, DAVE))
    assert engine.collateral(ALICE) == 0 and no_bankrupt_account_with_positions(engine, [NVDA_WIDE])


def test_equal_keys_go_by_ascending_account_and_the_first_pays_the_odd_atom(make_engine):
    """CAROL's ask rests first, so she fills first; BOB and CAROL are alike in every number,
    so BOB (the lower id) is deleveraged first and pays the rounded-up half."""
    engine = make_engine(specs=(NVDA_WIDE,), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND),
                     Deposit(account=ALICE, amount=Decimal("110.000007")), Deposit(account=BOB, amount=Decimal(500)),
                     Deposit(account=CAROL, amount=Decimal(500)),
                     ask(CAROL, "5", "100.00"), ask(BOB, "5", "100.00"), bid(ALICE, "10", "100.00", tif="ioc")])
    assert engine.equity(BOB) == engine.equity(CAROL)
    events = gap(engine, 70)
    # need 110.000007 − 0.35 − 300 = −190.349993: ⌈190_349_993 / 2⌉ then the rest
    assert adl_closes(events) == [(BOB, -5_000, 7_000, 95_174_997), (CAROL, -5_000, 7_000, 95_174_996)]
    assert engine.insurance_fund() == 0


def test_a_bankrupt_short_is_collected_from_the_longs(make_engine):
    engine = make_engine(specs=(NVDA_WIDE,), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND),
                     Deposit(account=ALICE, amount=Decimal(110)), Deposit(account=BOB, amount=Decimal(10_000)),
                     bid(BOB, "10", "100.00"), ask(ALICE, "10", "100.00", tif="ioc")])
    events = gap(engine, 130)
    steps = liquidations(events)
    assert [s.step for s in steps] == [LiquidationStep.BACKSTOP, LiquidationStep.COLLATERAL, LiquidationStep.ADL]
    assert (steps[0].size_lots, steps[0].side) == (-10_000, 0)
    assert adl_closes(events) == [(BOB, 10_000, 13_000, 190_350_000)]  # 110 − 0.35 − 300
    assert steps[2].side == 1  # the long sells
    assert engine.insurance_fund() == 0 and engine.position(FUND, 0).size_lots == 0


def test_the_fund_pays_what_it_can_and_adl_collects_only_the_rest(make_engine):
    """A first liquidation on the book leaves the fund its fee of 14.025; a second account's
    bankruptcy of 175.32725 then costs the fund all of it, and the shorts only the rest."""
    engine = make_engine(specs=(NVDA_WIDE,), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND),
                     Deposit(account=ALICE, amount=Decimal(110)), Deposit(account=BOB, amount=Decimal(10_000)),
                     Deposit(account=CAROL, amount=Decimal(10_000)),
                     ask(BOB, "10", "100.00"), bid(ALICE, "10", "100.00", tif="ioc"),
                     bid(CAROL, "10", "93.40"), OracleUpdate(market=0, price=Decimal("93.50"), ts_ns=2 * SECOND),
                     Tick(ts_ns=3 * SECOND)])
    assert engine.insurance_fund() == 14_025_000 and engine.position(ALICE, 0).size_lots == 0
    arrange(engine, [Deposit(account=DAVE, amount=Decimal(110)), ask(BOB, "10", "93.50"),
                     bid(DAVE, "10", "93.50", tif="ioc")])
    # at 65, DAVE: 110 − fee 0.32725 − 285 = −175.32725; CAROL is long too (from ALICE's
    # liquidation): no counterparty
    events = apply_checked(engine, [OracleUpdate(market=0, price=Decimal(65), ts_ns=4 * SECOND),
                                    Tick(ts_ns=5 * SECOND)])
    assert liquidations(events)[1].amount == -175_327_250
    assert adl_closes(events) == [(BOB, -10_000, 6_500, 175_327_250 - 14_025_000)]
    assert engine.insurance_fund() == 0 and engine.position(BOB, 0).size_lots == -10_000


def test_a_counterparty_pays_at_most_its_equity_and_the_fund_keeps_the_rest_of_the_loss(make_engine):
    """BOB, the only short of NVDA, is also long 20 TSLA and 1 AAPL. AAPL is halted, so when TSLA
    falls from 100 to 75 BOB is below maintenance but cannot be liquidated (an account holding
    a position in a halted market waits). NVDA then gaps to 70: ALICE is bankrupt by 190.35 and
    BOB's equity of 120.165 (his NVDA gain included) is all he can pay; the fund keeps the rest.

    A single oracle move cannot make an opposite position's equity the limit: its gain covers its
    share of the need, and every account is checked when a mark it holds moves. Two markets
    moving with the account not liquidated in between (a halt, or the per-tick cap) can."""
    specs = (NVDA_WIDE, tsla(), nvda(market_id=2, symbol="AAPL", ladder_levels=4096))
    config = EngineConfig(max_orders=256, max_accounts=16, risk=True, modes=True)
    engine = make_engine(specs=specs, config=config)
    arrange(engine, [OracleUpdate(market=m, price=Decimal(100), ts_ns=SECOND) for m in range(3)])
    arrange(engine, [Deposit(account=ALICE, amount=Decimal(110)), Deposit(account=BOB, amount=Decimal(321)),
                     Deposit(account=CAROL, amount=Decimal(10_000)),
                     ask(BOB, "10", "100.00"), bid(ALICE, "10", "100.00", tif="ioc"),
                     ask(CAROL, "20", "100.00", market=1), bid(BOB, "20", "100.00", market=1, tif="ioc"),
                     ask(CAROL, "1", "100.00", market=2), bid(BOB, "1", "100.00", market=2, tif="ioc"),
                     MarketAdmin(2, "halt")])
    assert liquidations(apply_checked(engine, [OracleUpdate(market=1, price=Decimal(75), ts_ns=2 * SECOND)])) == []
    # 321 − fees 0.10 + 0.70 + 0.035 − 500 on TSLA
    assert engine.equity(BOB) == -179_835_000 < engine.maintenance_margin(BOB)
    events = gap(engine, 70)
    steps = [(s.step, s.account, s.market) for s in liquidations(events)]
    assert steps == [(LiquidationStep.BACKSTOP, ALICE, 0), (LiquidationStep.COLLATERAL, ALICE, -1),
                     (LiquidationStep.ADL, BOB, 0)]
    assert liquidations(events)[1].amount == -190_350_000  # 110 − 0.35 − 300
    assert adl_closes(events) == [(BOB, -10_000, 7_000, 120_165_000)]  # −179.835 + 300 of NVDA gain
    assert engine.insurance_fund() == -190_350_000 + 120_165_000
    assert engine.position(FUND, 0).size_lots == 0 and engine.equity(BOB) == 0
    # BOB keeps his TSLA and AAPL until AAPL resumes
    assert engine.position(BOB, 1).size_lots == 20 * 100 and engine.position(BOB, 2).size_lots == 1_000


def test_the_fund_works_its_position_off_a_fifth_at_a_time_through_the_book(make_engine):
    """ALICE's long 10 goes to the fund at 91 with her equity of 19.65 (not bankrupt, no ADL).
    On that tick and each after it, the fund sends an IOC of a fifth of what it holds, rounded
    up, limited at the protection price 91 − ⌊5% × 91⌋ = 86.45: it takes the bids at 90 and
    88 and never the one at 86; it never rests, and trading with every account is fine."""
    engine = make_engine(specs=(NVDA_WIDE,), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND),
                     Deposit(account=ALICE, amount=Decimal(110)), Deposit(account=BOB, amount=Decimal(10_000)),
                     Deposit(account=CAROL, amount=Decimal(10_000)),
                     ask(BOB, "10", "100.00"), bid(ALICE, "10", "100.00", tif="ioc")])
    # the gap liquidates ALICE at once (the fund takes her position); the bids come before the Tick
    taken = apply_checked(engine, [OracleUpdate(market=0, price=Decimal(91), ts_ns=2 * SECOND),
                                   bid(CAROL, "1", "90.00"), bid(BOB, "5", "88.00"), bid(CAROL, "3", "86.00")])
    sent, filled, limits = [], [], set()
    first = None
    for t in range(3, 9):
        events = apply_checked(engine, [Tick(ts_ns=t * SECOND)])
        first = first or taken + events
        work = [s for s in liquidations(events) if s.step == LiquidationStep.FUND_BOOK]
        assert len(work) == 1 and work[0].account == FUND and work[0].side == 1
        sent.append(work[0].size_lots)
        filled.append(work[0].amount)
        limits.add(work[0].price_ticks)
        assert engine.depth(0, 1) == []  # nothing of the fund rests
        assert not [e for e in events if isinstance(e, Cancelled) and e.reason != CancelReason.IOC_REMAINDER]
    assert [s.step for s in liquidations(first)] == [LiquidationStep.BACKSTOP, LiquidationStep.COLLATERAL,
                                                    LiquidationStep.FUND_BOOK]
    assert sent == [2_000, 1_600, 1_280, 1_024, 820, 800]  # ⌈10000/5⌉, ⌈8000/5⌉, …, ⌈4096/5⌉, ⌈4000/5⌉
    assert filled == [2_000, 1_600, 1_280, 1_024, 96, 0]  # BOB's 88 bid runs out, 86 is below the limit
    assert limits == {8_645}
    fills = [(f.maker_account, f.price_ticks, f.size_lots) for f in first if isinstance(f, Fill)]
    assert fills == [(CAROL, 9_000, 1_000), (BOB, 8_800, 1_000)]
    assert engine.position(FUND, 0).size_lots == 4_000 and engine.depth(0, 0) == [(8_600, 3_000)]
    # 19.65 + realized (90 − 91) + (88 − 91) per share − taker fee ⌈178 × 0.035%⌉, then 1.6, 1.28,
    # 1.024 and 0.096 shares at 88, each losing 3 a share and paying its fee
    assert engine.insurance_fund() == 3_464_499


def test_a_short_fund_buys_back_no_higher_than_the_max_price(make_engine):
    """The protection price 109 + ⌊5% × 109⌋ = 114.45 is above NVDA's max price of 112 here, so
    the fund's IOC (a fifth of its short 10) is limited at 112: it buys CAROL's ask at 111."""
    spec = nvda(ladder_levels=4096, max_price=Decimal(112))
    engine = make_engine(specs=(spec,), config=RISK)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND),
                     Deposit(account=ALICE, amount=Decimal(110)), Deposit(account=BOB, amount=Decimal(10_000)),
                     Deposit(account=CAROL, amount=Decimal(10_000)),
                     bid(BOB, "10", "100.00"), ask(ALICE, "10", "100.00", tif="ioc")])
    # the gap liquidates ALICE at once; CAROL's ask (inside the band once the mark is 109) is
    # there for the Tick's work-off
    events = apply_checked(engine, [OracleUpdate(market=0, price=Decimal(109), ts_ns=2 * SECOND),
                                    ask(CAROL, "1", "111.00"), Tick(ts_ns=3 * SECOND)])
    assert [s.step for s in liquidations(events)] == [LiquidationStep.BACKSTOP, LiquidationStep.COLLATERAL,
                                                     LiquidationStep.FUND_BOOK]
    work = liquidations(events)[-1]
    assert (work.side, work.price_ticks, work.size_lots, work.amount) == (0, 11_200, 2_000, 1_000)
    assert engine.position(FUND, 0).size_lots == -9_000 and engine.depth(0, 1) == []
