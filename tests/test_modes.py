"""Market modes in both engines (docs/modes.md, oracle.md §5–§8): going dark, internal
pricing with the oil example's exact re-anchors, the reopen (snap, 15 s of fresh prices, the
8% gap in 16 steps), halts (admin and breaker), pre-IPO markets and their listing, and the
risk rules while dark (leverage, open-interest cap, funding, liquidation at both prices).
Invariants are checked after every command (``apply_checked``)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from engine_helpers import ALICE, BOB, CAROL, apply_checked, arrange, ask, bid, nvda, tsla

from engine.codes import FundingDark, MarketMode, OracleFlag, Reject
from engine.commands import (
    Cancel,
    Cancelled,
    Deposit,
    Funding,
    FundingRate,
    Liquidation,
    MarketAdmin,
    Mode,
    OracleUpdate,
    Rejected,
    Tick,
)
from engine.spec import EngineConfig

MODES = EngineConfig(max_orders=256, max_accounts=16, risk=True, modes=True)
SECOND = 1_000_000_000
HOUR = 3_600 * SECOND
WIDE = 1 << 14  # a ladder wide enough that a ±5–10% band is not capped by L/4 at $100


def oracle(price, ts_s, market=0, flags=0) -> OracleUpdate:
    return OracleUpdate(market=market, price=None if price is None else Decimal(price), ts_ns=ts_s * SECOND,
                        flags=int(flags))


def tick(ts_s) -> Tick:
    return Tick(ts_ns=ts_s * SECOND)


def modes_of(events) -> list[Mode]:
    return [e for e in events if isinstance(e, Mode)]


def codes(events) -> list[Reject]:
    return [e.code for e in events if isinstance(e, Rejected)]


def started(make_engine, *accounts, amount=1_000_000, **spec):
    """One market at 100.00 (EXTERNAL from t = 1 s), accounts funded."""
    engine = make_engine(specs=(nvda(ladder_levels=WIDE, **spec),), config=MODES)
    arrange(engine, [oracle("100.00", 1)] + [Deposit(account=a, amount=Decimal(amount)) for a in accounts])
    return engine


# ---------------------------------------------------------------------------- going dark


def test_closed_flag_turns_the_market_dark_with_a_band_around_the_last_price(make_engine):
    engine = started(make_engine)
    events = apply_checked(engine, [oracle(None, 2, flags=OracleFlag.CLOSED)])
    assert modes_of(events) == [Mode(0, 0, MarketMode.INTERNAL, 10_000, 10_000, 9_000, 11_000)]
    assert engine.mode(0).mode == MarketMode.INTERNAL


def test_a_closed_session_price_is_a_repeat_and_is_ignored(make_engine):
    engine = started(make_engine)
    apply_checked(engine, [oracle("120.00", 2, flags=OracleFlag.CLOSED)])
    assert engine.oracle(0) == 10_000
    assert engine.mode(0).external == 10_000


def test_no_external_price_for_more_than_30_s_turns_the_market_dark(make_engine):
    engine = started(make_engine)
    quiet = apply_checked(engine, [oracle(None, 20), tick(31), oracle(None, 31)])
    assert modes_of(quiet) == []  # exactly 30 s without a price is still EXTERNAL
    events = apply_checked(engine, [tick(32)])
    assert [m.mode for m in modes_of(events)] == [MarketMode.INTERNAL]


def test_orders_while_dark_must_lie_inside_the_discovery_band(make_engine):
    engine = started(make_engine, ALICE)
    arrange(engine, [oracle(None, 2, flags=OracleFlag.CLOSED)])
    events = apply_checked(engine, [bid(ALICE, "1", "89.99"), bid(ALICE, "1", "90.00"), ask(ALICE, "1", "110.01")])
    assert codes(events) == [Reject.PRICE_OUTSIDE_DISCOVERY_BAND, Reject.PRICE_OUTSIDE_DISCOVERY_BAND]


# ---------------------------------------------------------------------------- internal pricing


def test_oil_example_reanchors_exactly_and_stops_at_the_hard_cap(make_engine):
    """oracle.md §6: close 100.00, ±5%, threshold 90%: 95–105 → 99.75–110.25 →
    104.74–115.76, a hard cap. A bid at the band's top edge pulls S up 9.5% of the way per
    360 s step (τ/10)."""
    engine = started(make_engine, ALICE, dark_band=Decimal("0.05"))
    events = apply_checked(engine, [oracle(None, 2, flags=OracleFlag.CLOSED)])
    assert modes_of(events)[-1] == Mode(0, 0, MarketMode.INTERNAL, 10_000, 10_000, 9_500, 10_500)
    bands = []
    ts = 2
    for top in ("105.00", "110.25", "115.76"):  # 100 shares: deeper than the $6,000 impact notional
        arrange(engine, [bid(ALICE, "100", top)])
        for _ in range(60):
            ts += 360
            for m in modes_of(apply_checked(engine, [tick(ts)])):
                bands.append((m.ref_ticks, m.band_low_ticks, m.band_high_ticks))
            assert engine.oracle(0) <= 11_576
            assert 9_500 <= engine.mark(0) <= 11_576
    assert bands == [(10_500, 9_975, 11_025), (11_025, 10_474, 11_576)]
    # past the third trigger (11,025 + ⌈0.9·551⌉ = 11,521) with no third re-anchor: a hard cap;
    # a step is truncated toward S, so S stops once the book is ≤ 10 ticks away
    assert 11_566 <= engine.oracle(0) <= 11_575
    assert engine.mode(0).band_high == 11_576


def test_internal_price_does_not_move_without_book_depth(make_engine):
    engine = started(make_engine)
    arrange(engine, [oracle(None, 2, flags=OracleFlag.CLOSED)])
    apply_checked(engine, [tick(2 + 360 * k) for k in range(1, 5)])
    assert engine.oracle(0) == 10_000


# ---------------------------------------------------------------------------- reopen


def dark_at(make_engine, *accounts, **spec):
    engine = started(make_engine, *accounts, **spec)
    arrange(engine, [oracle(None, 2, flags=OracleFlag.CLOSED)])
    return engine


def test_reopen_waits_for_15_s_of_unbroken_external_prices_then_snaps_within_1pct(make_engine):
    engine = dark_at(make_engine)
    apply_checked(engine, [oracle("100.90", 10 + k) for k in range(15)])  # t = 10…24: 14 s
    assert engine.mode(0).mode == MarketMode.INTERNAL
    apply_checked(engine, [oracle(None, 25)])  # a gap restarts the wait
    apply_checked(engine, [oracle("100.90", 26 + k) for k in range(15)])
    assert engine.mode(0).mode == MarketMode.INTERNAL
    events = apply_checked(engine, [oracle("100.90", 41)])
    assert [m.mode for m in modes_of(events)] == [MarketMode.EXTERNAL]
    assert engine.oracle(0) == 10_090


def test_reopen_with_an_8pct_gap_converges_in_16_steps_of_at_most_50_bps(make_engine):
    """docs/pricing.md: 10,000 → 10,050 → 10,100 → … → 10,771 → 10,800."""
    engine = dark_at(make_engine)
    arrange(engine, [oracle("108.00", 10 + k) for k in range(15)])
    path = []
    events = []
    for k in range(16):
        events += apply_checked(engine, [oracle("108.00", 25 + k)])
        path.append(engine.oracle(0))
    expected = [10_000]
    while expected[-1] != 10_800:
        expected.append(min(expected[-1] + expected[-1] * 5 // 1000, 10_800))
    assert path == expected[1:]
    assert [m.mode for m in modes_of(events)] == [MarketMode.REOPENING, MarketMode.EXTERNAL]
    assert path[-2] == 10_771


def test_reopening_mark_moves_at_most_50_bps_per_update(make_engine):
    engine = dark_at(make_engine)
    arrange(engine, [oracle("120.00", 10 + k) for k in range(15)])
    marks = [engine.mark(0)]
    for k in range(5):
        apply_checked(engine, [oracle("120.00", 25 + k)])
        marks.append(engine.mark(0))
    for before, after in zip(marks, marks[1:]):
        assert 0 < after - before <= before * 5 // 1000


def test_reopening_falls_back_to_dark_without_prices(make_engine):
    engine = dark_at(make_engine)
    arrange(engine, [oracle("108.00", 10 + k) for k in range(16)])
    assert engine.mode(0).mode == MarketMode.REOPENING
    s = engine.oracle(0)
    events = apply_checked(engine, [tick(60)])
    assert modes_of(events) == [Mode(0, 0, MarketMode.INTERNAL, s, s, s - s // 10, s + s // 10)]


# ---------------------------------------------------------------------------- halts


def test_admin_halt_allows_cancels_only_and_freezes_prices(make_engine):
    engine = started(make_engine, ALICE)
    arrange(engine, [bid(ALICE, "1", "99.00")])
    oid = engine.open_orders(ALICE)[0].oid
    events = apply_checked(engine, [MarketAdmin(0, "halt"), bid(ALICE, "1", "99.00"),
                                    oracle("101.00", 3), tick(4), Cancel(market=0, account=ALICE, oid=oid)])
    assert codes(events) == [Reject.MARKET_HALTED]
    assert any(isinstance(e, Cancelled) for e in events)
    assert engine.oracle(0) == 10_000 and engine.mark(0) == 10_000
    assert codes(apply_checked(engine, [MarketAdmin(0, "halt")])) == [Reject.MODE_TRANSITION_INVALID]


def test_resume_goes_dark_so_the_price_returns_through_the_reopen(make_engine):
    engine = started(make_engine)
    arrange(engine, [MarketAdmin(0, "halt")])
    events = apply_checked(engine, [MarketAdmin(0, "resume")])
    assert [m.mode for m in modes_of(events)] == [MarketMode.INTERNAL]
    assert codes(apply_checked(engine, [MarketAdmin(0, "resume")])) == [Reject.MODE_TRANSITION_INVALID]


def test_breaker_halts_until_five_clean_updates(make_engine):
    engine = started(make_engine)
    events = apply_checked(engine, [oracle("100.00", 2, flags=OracleFlag.BREAKER)])
    assert [m.mode for m in modes_of(events)] == [MarketMode.HALTED]
    apply_checked(engine, [oracle("100.00", 3 + k) for k in range(4)])
    assert engine.mode(0).mode == MarketMode.HALTED
    apply_checked(engine, [oracle("100.00", 7, flags=OracleFlag.BREAKER)])  # trips again: count restarts
    apply_checked(engine, [oracle("100.00", 8 + k) for k in range(4)])
    assert engine.mode(0).mode == MarketMode.HALTED
    events = apply_checked(engine, [oracle("100.00", 12)])
    assert [m.mode for m in modes_of(events)] == [MarketMode.INTERNAL]


# ---------------------------------------------------------------------------- pre-IPO


def pre_ipo(make_engine, *accounts):
    spec = nvda(ladder_levels=WIDE, tiers=((Decimal(0), 3),), pre_ipo_reference=Decimal("50.00"),
                funding_multiplier=Decimal("0.01"))
    engine = make_engine(specs=(spec,), config=MODES)
    arrange(engine, [Deposit(account=a, amount=Decimal(1_000_000)) for a in accounts])
    return engine


def test_pre_ipo_market_starts_at_its_reference_inside_a_third_band(make_engine):
    engine = pre_ipo(make_engine, ALICE)
    view = engine.mode(0)
    assert (view.mode, view.oracle, view.mark, view.band_low, view.band_high) == (
        MarketMode.PRE_IPO, 5_000, 5_000, 5_000 - 1_666, 5_000 + 1_666)
    assert codes(apply_checked(engine, [oracle("55.00", 1)])) == [Reject.ORACLE_NOT_EXTERNAL]
    assert codes(apply_checked(engine, [bid(ALICE, "1", "66.67")])) == [Reject.PRICE_OUTSIDE_DISCOVERY_BAND]


def test_pre_ipo_oracle_is_the_ema_of_the_minutely_mark(make_engine):
    engine = pre_ipo(make_engine, ALICE, BOB)
    arrange(engine, [bid(ALICE, "1", "60.00"), ask(BOB, "1", "60.00"),  # last trade 60
                     bid(ALICE, "1", "59.90"), ask(BOB, "1", "60.10")])
    apply_checked(engine, [tick(60)])  # the EMA's first sample: the mark, 50.00
    assert (engine.oracle(0), engine.mark(0)) == (5_000, 5_000)
    apply_checked(engine, [tick(120)])  # the basis EMA's first sample lifts the mark to the book's 60.00
    assert (engine.oracle(0), engine.mark(0)) == (5_000, 6_000)
    apply_checked(engine, [tick(120 + 60 * k) for k in range(1, 241)])  # four hours of minutely samples
    assert 5_900 < engine.oracle(0) < 6_000  # two samples of 50 against 240 of 60
    assert engine.mark(0) == 6_000


def test_listing_a_pre_ipo_market_is_a_reopen(make_engine):
    engine = pre_ipo(make_engine)
    events = apply_checked(engine, [MarketAdmin(0, "list")])
    assert [m.mode for m in modes_of(events)] == [MarketMode.INTERNAL]
    assert codes(apply_checked(engine, [MarketAdmin(0, "list")])) == [Reject.MODE_TRANSITION_INVALID]
    apply_checked(engine, [oracle("60.00", 10 + k) for k in range(16)])
    assert engine.mode(0).mode == MarketMode.REOPENING
    assert engine.oracle(0) == 5_025


# ---------------------------------------------------------------------------- risk while dark


def test_dark_leverage_raises_initial_margin_not_maintenance(make_engine):
    engine = started(make_engine, ALICE, BOB)
    arrange(engine, [bid(ALICE, "10", "100.00"), ask(BOB, "10", "100.00")])
    im, mm = engine.initial_margin(ALICE), engine.maintenance_margin(ALICE)
    assert im == 100_000_000  # $1,000 at 10×
    arrange(engine, [oracle(None, 2, flags=OracleFlag.CLOSED)])
    assert engine.initial_margin(ALICE) == 200_000_000  # 5× while dark
    assert engine.maintenance_margin(ALICE) == mm


def test_open_interest_cap_allows_only_reducing_orders_and_shrinks_while_dark(make_engine):
    engine = started(make_engine, ALICE, BOB, CAROL, oi_cap=Decimal(4_000))
    arrange(engine, [bid(ALICE, "10", "100.00"), ask(BOB, "10", "100.00")])  # OI $1,000
    assert codes(apply_checked(engine, [bid(CAROL, "1", "99.00")])) == []  # $1,000 < $4,000
    arrange(engine, [oracle(None, 2, flags=OracleFlag.CLOSED)])  # cap $1,000: reached
    events = apply_checked(engine, [bid(CAROL, "1", "99.00"), ask(ALICE, "10", "101.00"), ask(ALICE, "1", "101.00"),
                                    bid(BOB, "10", "99.00")])
    assert codes(events) == [Reject.OI_CAP_REACHED, Reject.OI_CAP_REACHED]  # ALICE's 11th lot flips


@pytest.mark.parametrize("rule, rate_ppb", [(FundingDark.NORMAL, 6_250), (FundingDark.SCALED, 3_125),
                                            (FundingDark.PAUSED, 0)])
def test_funding_while_dark_follows_the_market_rule(make_engine, rule, rate_ppb):
    """With an empty book the premium is 0 and the hour's rate is the interest term:
    0.01% per 8 h × multiplier 0.5 / 8 = 6,250 ppb an hour."""
    engine = started(make_engine, ALICE, BOB, funding_dark=rule)
    arrange(engine, [bid(ALICE, "10", "100.00"), ask(BOB, "10", "100.00"), oracle(None, 2, flags=OracleFlag.CLOSED)])
    events = apply_checked(engine, [tick(HOUR // SECOND)])
    assert [e.rate_ppb for e in events if isinstance(e, FundingRate)] == [rate_ppb]
    credits = {e.account: e.credit_atoms for e in events if isinstance(e, Funding)}
    assert credits == {ALICE: -rate_ppb, BOB: rate_ppb}  # $1,000 = 1e9 atoms × rate / 1e9


def test_liquidation_waits_for_a_halted_market(make_engine):
    """ALICE, long 15 NVDA and 2 TSLA at 100 with $200, falls below maintenance when TSLA drops
    to 20 (equity about $39, MM about $77) while NVDA is halted: an account holding a position
    in a halted market is not liquidated, neither on the TSLA update nor on the Tick; after
    NVDA resumes, the first Tick liquidates."""
    engine = make_engine(specs=(nvda(ladder_levels=WIDE), tsla(ladder_levels=WIDE)), config=MODES)
    arrange(engine, [oracle("100.00", 1), oracle("100.00", 1, market=1),
                     Deposit(account=ALICE, amount=Decimal(200)), Deposit(account=CAROL, amount=Decimal(10**6)),
                     bid(ALICE, "15", "100.00"), ask(CAROL, "15", "100.00"),
                     bid(ALICE, "2", "100.00", market=1), ask(CAROL, "2", "100.00", market=1),
                     MarketAdmin(0, "halt")])
    events = apply_checked(engine, [oracle("20.00", 2, market=1)])
    assert engine.equity(ALICE) < engine.maintenance_margin(ALICE)
    assert not [e for e in events if isinstance(e, Liquidation)]
    events = apply_checked(engine, [tick(3)])
    assert not [e for e in events if isinstance(e, Liquidation)]
    events = apply_checked(engine, [MarketAdmin(0, "resume"), tick(4)])
    assert [e for e in events if isinstance(e, Liquidation)]


def force_market(engine, **fields) -> None:
    """Set market 0's price and mode fields directly, in either engine (white-box: the state a
    long stream would reach, without the stream)."""
    if hasattr(engine, "mkt"):
        for name, value in fields.items():
            engine.mkt[0][name] = value
        engine.forget_certificates()  # a mark written here went past the certificates' bookkeeping
    else:
        for name, value in fields.items():
            setattr(engine._markets[0], name, value)


@pytest.mark.parametrize("external, liquidated", [("100.00", False), ("89.00", True)])
def test_while_reopening_only_accounts_below_maintenance_at_both_prices_are_liquidated(make_engine, external,
                                                                                       liquidated):
    """ALICE, long 15 at 100 with $200: at the internal 88.00 equity $20 < MM $66. At an
    external 100.00 she is fine (equity $200, MM $75): no liquidation. At 89.00 she is below
    there too (equity $35 < MM $66.75): liquidated."""
    engine = started(make_engine, CAROL)
    arrange(engine, [Deposit(account=ALICE, amount=Decimal(200)),
                     bid(ALICE, "15", "100.00"), ask(CAROL, "15", "100.00")])
    ext = int(Decimal(external) * 100)
    force_market(engine, mode=int(MarketMode.REOPENING), oracle=8_800, mark=8_800, ext=ext, ext_ts=5 * SECOND)
    assert engine.equity(ALICE) < engine.maintenance_margin(ALICE)
    events = apply_checked(engine, [tick(5)])
    assert engine.mark(0) == 8_800
    assert bool([e for e in events if isinstance(e, Liquidation) and e.account == ALICE]) == liquidated
