"""Margin certificates (engine.certificates, docs/risk.md "Scan certificates"): the bound they
rest on, that the scan skips certified accounts, that they change no event, and that the
invariants catch a stale one. Certificates exist in the numba engine only; the reference
engine evaluates every account on every scan, and the risk differential compares the two."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_differential import assert_same_events
from test_risk_differential import RISK, SETUP, SPECS, RiskResolver, _seeded_op

from engine.book import C_EP_MOVE, C_EPOCH
from engine.certificates import (
    EPOCHS,
    MOVE_ONE,
    NEW_EPOCH_MOVE,
    assess,
    begin_scan,
    certified_safe,
    certify,
    move_units,
    note_mark,
)
from engine.codes import CommandKind, EventKind
from engine.commands import Deposit, Funding, OracleUpdate, SetMarginMode, Tick
from engine.engine import Engine
from engine.reference import ReferenceEngine
from engine.margin import maintenance_margin_atoms
from engine.risk import equity_atoms, position_mm, total_mm
from engine.spec import EngineConfig
from engine_helpers import ALICE, BOB, arrange, ask, bid, nvda, tsla

CONFIG = EngineConfig(max_orders=64, max_accounts=8, risk=True)
SECOND = 1_000_000_000
SPECS_2 = (nvda(ladder_levels=4096), tsla(ladder_levels=4096))


@pytest.fixture(autouse=True)
def _warm(numba_warm):
    """Compile before Hypothesis starts timing examples."""


def test_move_is_the_relative_change_in_units_of_two_to_the_minus_30_rounded_up():
    assert MOVE_ONE == 1 << 30
    assert move_units(10_000, 10_000) == 0
    assert move_units(1 << 20, (1 << 20) + 1) == 1 << 10  # one part in 2^20
    assert move_units(1 << 20, (1 << 20) - 1) == 1 << 10
    assert move_units(10_000, 10_001) == 107_375  # 2^30 / 10,000 = 107,374.18…, rounded up
    assert move_units(3, 4) == 357_913_942  # 2^30 / 3, rounded up
    assert move_units(10_000, 20_000) == MOVE_ONE  # 100%: proves nothing
    assert move_units(10_000, 0) == MOVE_ONE
    assert move_units(0, 10_000) == MOVE_ONE  # no mark at the epoch
    assert NEW_EPOCH_MOVE == MOVE_ONE // 500  # 0.2%


@given(st.integers(1 << 34, 1 << 40), st.integers(-10**9 + 1, 10**9 - 1))
def test_move_past_int64_products_is_still_an_upper_bound(base, ppb):
    """Where |Δ|·2^30 would overflow int64 the move divides by ⌊base/2^30⌋ instead: never
    less than the exact ratio, and within an eighth of it."""
    mark = base + base * ppb // 10**9
    exact = -((-abs(mark - base) << 30) // base)
    got = move_units(base, mark)
    assert exact <= got <= exact + exact // 8 + 1


def positioned(nvda_shares: int, tsla_shares: int, collateral_usd: int, iso: tuple[bool, bool]) -> Engine:
    """ALICE holds the given signed positions (NVDA at 100.00, TSLA at 50.00, filled against
    BOB) on ``collateral_usd``; markets flagged in ``iso`` are isolated."""
    engine = Engine(list(SPECS_2), CONFIG)
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND),
                     OracleUpdate(market=1, price=Decimal(50), ts_ns=SECOND),
                     Deposit(account=ALICE, amount=Decimal(collateral_usd)),
                     Deposit(account=BOB, amount=Decimal(1_000_000))])
    arrange(engine, [SetMarginMode(account=ALICE, market=m, mode="isolated") for m in (0, 1) if iso[m]])
    for m, shares, price in ((0, nvda_shares, "100.00"), (1, tsla_shares, "50.00")):
        if shares > 0:
            arrange(engine, [ask(BOB, str(shares), price, market=m), bid(ALICE, str(shares), price, market=m,
                                                                            tif="ioc")])
        elif shares < 0:
            arrange(engine, [bid(BOB, str(-shares), price, market=m), ask(ALICE, str(-shares), price, market=m,
                                                                             tif="ioc")])
    return engine


def move_marks(engine: Engine, marks: tuple[int, int]) -> None:
    """White-box: put the marks at ``marks`` (ticks) as move_mark would, without a scan."""
    for m, mark in enumerate(marks):
        engine.mkt[m]["mark"] = mark
        note_mark(engine.mkt, engine.ctr, m)


def above_maintenance_everywhere(engine: Engine, a: int) -> bool:
    cross_ok = engine.maintenance_margin(a) == 0 or engine.equity(a) >= engine.maintenance_margin(a)
    iso_ok = all(engine.isolated_equity(a, m) >= position_mm(engine.pos, engine.mkt, a, m)
                 for m in range(len(SPECS_2)) if engine.position(a, m).isolated and engine.position(a, m).size_lots)
    return cross_ok and iso_ok


shares = st.integers(-30, 30)


@settings(max_examples=300)
@given(shares, shares, st.integers(100, 4_000), st.tuples(st.booleans(), st.booleans()),
       st.tuples(st.integers(-200_000_000, 200_000_000), st.integers(-200_000_000, 200_000_000)))
def test_a_certified_account_is_above_maintenance_at_any_marks_its_certificate_passes(nvda_shares, tsla_shares,
                                                                                      collateral, iso, moves_ppb):
    """The soundness lemma: certify ALICE, move both marks by up to ±20%; whenever her
    certificate still passes, the exact checks (cross equity against cross MM, each isolated
    position's equity against its MM) find her above maintenance."""
    try:
        engine = positioned(nvda_shares, tsla_shares, collateral, iso)
    except AssertionError:  # not enough collateral to open: nothing to certify
        return
    if engine.acc[ALICE]["npos"] == 0:
        return
    begin_scan(engine.mkt, engine.ctr)
    certify(engine.acc, engine.pos, engine.mkt, engine.ctr, ALICE)
    assert engine.acc[ALICE]["c_ep"] == engine.ctr[C_EPOCH] != 0
    marks = tuple(max(1, int(engine.mark(m)) + int(engine.mark(m)) * d // 10**9) for m, d in enumerate(moves_ppb))
    move_marks(engine, marks)
    if certified_safe(engine.acc, engine.ctr, ALICE):
        assert above_maintenance_everywhere(engine, ALICE), (marks, engine.acc[ALICE])


def reference_certificate(engine: Engine, a: int, slot: int) -> tuple[int, int]:
    """docs/risk.md "Scan certificates" in Python integers, from the public position views:
    (slack, gross) of account ``a`` at epoch ``slot``'s marks."""
    cross_eq, cross_mm, components, gross, held = engine.collateral(a), 0, [], 0, 0
    for m in range(len(engine.specs)):
        p = engine.position(a, m)
        if p.size_lots == 0:
            continue
        rec = engine.mkt[m]
        mark, atl = int(rec["ep_mark"][slot]), int(rec["atl"])
        notional = abs(p.size_lots) * mark * atl
        mm = int(maintenance_margin_atoms(notional, rec["tier_lo"], rec["tier_lev"]))
        upnl = p.size_lots * mark * atl - p.cost_atoms
        gross, held = gross + notional, held + 1
        if p.isolated:
            components.append(p.margin_atoms + upnl - mm)
        else:
            cross_eq, cross_mm = cross_eq + upnl, cross_mm + mm
    if any(not engine.position(a, m).isolated and engine.position(a, m).size_lots for m in range(len(engine.specs))):
        components.append(cross_eq - cross_mm)
    return (min(components) if components else (1 << 63) - 1) - held, gross


@settings(max_examples=150)
@given(shares, shares, st.integers(100, 4_000), st.tuples(st.booleans(), st.booleans()),
       st.tuples(st.sampled_from([0, 0, 1_000_000, -30_000_000]), st.sampled_from([0, 5_000_000, -70_000_000])))
def test_the_scan_s_one_pass_gives_equity_mm_and_the_certificate(nvda_shares, tsla_shares, collateral, iso,
                                                                  moves_ppb):
    """``assess`` (the scan's evaluation and certificate in one pass, reusing a position's
    MM while its mark is the epoch's) equals ``equity_atoms`` and ``total_mm`` at the marks
    and the Python reference certificate at the epoch's, with marks at the epoch's and moved
    away from it."""
    try:
        engine = positioned(nvda_shares, tsla_shares, collateral, iso)
    except AssertionError:
        return
    begin_scan(engine.mkt, engine.ctr)
    marks = tuple(max(1, int(engine.mark(m)) + int(engine.mark(m)) * d // 10**9) for m, d in enumerate(moves_ppb))
    move_marks(engine, marks)
    acc, pos, mkt = engine.acc, engine.pos, engine.mkt
    slot = int(engine.ctr[C_EPOCH]) % EPOCHS
    for a in (ALICE, BOB):
        expect = (equity_atoms(acc, pos, mkt, a), total_mm(pos, mkt, a), *reference_certificate(engine, a, slot), True)
        assert tuple(int(x) for x in assess(acc, pos, mkt, a, slot)) == expect


def test_a_small_move_passes_the_certificate_and_a_large_one_does_not():
    """Long 10 NVDA at 100 on $200 (equity 200, MM 50: slack 150 of a 1,000 gross): a 1%
    move needs 2 × 10 = 20 of slack and passes; a 10% move needs 200 and fails, so the scan
    evaluates the account (which at 90.00, equity 100 ≥ MM 45, is still fine)."""
    engine = positioned(10, 0, 200, (False, False))
    begin_scan(engine.mkt, engine.ctr)
    certify(engine.acc, engine.pos, engine.mkt, engine.ctr, ALICE)
    move_marks(engine, (9_900, engine.mark(1)))
    assert certified_safe(engine.acc, engine.ctr, ALICE)
    move_marks(engine, (9_000, engine.mark(1)))
    assert not certified_safe(engine.acc, engine.ctr, ALICE)
    assert above_maintenance_everywhere(engine, ALICE)


def test_the_tick_certifies_evaluated_accounts_and_funding_keeps_their_certificates():
    """After a Tick every holder has a certificate at the newest epoch; the hour's settlement
    lowers a payer's slack by what it paid (to the atom) and leaves a receiver's as it was, so
    that Tick's scan skips both."""
    engine = positioned(10, 0, 500, (False, False))
    arrange(engine, [Tick(ts_ns=2 * SECOND)])
    for a in (ALICE, BOB):
        assert engine.acc[a]["c_ep"] == engine.ctr[C_EPOCH] != 0
        assert certified_safe(engine.acc, engine.ctr, a)
    slack = {a: int(engine.acc[a]["c_slack"]) for a in (ALICE, BOB)}
    hour = int(engine.mkt[0]["next_funding"])
    events = arrange(engine, [Tick(ts_ns=hour)])
    paid = {e.account: e.credit_atoms for e in events if isinstance(e, Funding)}
    assert paid[ALICE] != 0 and paid[BOB] != 0 and (paid[ALICE] < 0) != (paid[BOB] < 0)
    for a in (ALICE, BOB):
        assert int(engine.acc[a]["c_slack"]) == slack[a] + min(paid[a], 0)
    assert all(certified_safe(engine.acc, engine.ctr, a) for a in (ALICE, BOB))


def test_a_fill_deposit_or_margin_move_voids_the_certificate():
    engine = positioned(10, 0, 500, (False, True))
    arrange(engine, [Tick(ts_ns=2 * SECOND)])
    assert engine.acc[ALICE]["c_ep"] != 0
    arrange(engine, [Deposit(account=ALICE, amount=Decimal(1))])
    assert engine.acc[ALICE]["c_ep"] == 0
    arrange(engine, [Tick(ts_ns=3 * SECOND)])
    assert engine.acc[ALICE]["c_ep"] != 0
    arrange(engine, [ask(BOB, "1", "100.00"), bid(ALICE, "1", "100.00", tif="ioc")])
    assert engine.acc[ALICE]["c_ep"] == 0 and engine.acc[BOB]["c_ep"] == 0


def test_a_scan_starts_a_new_epoch_once_the_marks_moved_past_the_threshold():
    engine = positioned(10, 0, 500, (False, False))
    arrange(engine, [Tick(ts_ns=2 * SECOND)])
    first = int(engine.ctr[C_EPOCH])
    small = Decimal("100.10")  # a 0.1% move, half the threshold
    arrange(engine, [OracleUpdate(market=0, price=small.quantize(Decimal("0.01")), ts_ns=3 * SECOND),
                     Tick(ts_ns=4 * SECOND)])
    assert engine.ctr[C_EPOCH] == first
    arrange(engine, [OracleUpdate(market=0, price=Decimal("101.00"), ts_ns=5 * SECOND), Tick(ts_ns=6 * SECOND)])
    assert engine.ctr[C_EPOCH] == first + 1
    assert engine.ctr[C_EP_MOVE + first % EPOCHS] > NEW_EPOCH_MOVE


def test_a_certificate_lapses_once_eight_newer_epochs_began():
    """Each 1% oracle step starts an epoch; ALICE, certified before the first, is skipped
    while her epoch lives (her slack covers the moves) and evaluated again once it has left
    the ring, then certified at the newest epoch."""
    engine = positioned(10, 0, 2_000, (False, False))
    arrange(engine, [Tick(ts_ns=2 * SECOND)])
    first = int(engine.acc[ALICE]["c_ep"])
    assert first == engine.ctr[C_EPOCH]
    for k in range(EPOCHS):
        big = Decimal(100) + (Decimal(1) if k % 2 else Decimal(-1))  # ±1% away and back: a new epoch each time
        arrange(engine, [OracleUpdate(market=0, price=big, ts_ns=(3 + k) * SECOND)])
        if engine.ctr[C_EPOCH] - first < EPOCHS:
            assert engine.acc[ALICE]["c_ep"] == first and certified_safe(engine.acc, engine.ctr, ALICE)
    assert engine.ctr[C_EPOCH] - first >= EPOCHS
    assert engine.acc[ALICE]["c_ep"] == engine.ctr[C_EPOCH]  # lapsed, evaluated, certified anew


def test_the_invariants_catch_a_stale_certificate_and_an_unrecorded_mark_move():
    engine = positioned(10, 0, 500, (False, False))
    arrange(engine, [Tick(ts_ns=2 * SECOND)])
    engine.check_invariants()
    engine.acc[ALICE]["collateral"] -= 1
    engine.acc[-1]["collateral"] += 1  # conservation still holds: only the certificate is wrong
    with pytest.raises(AssertionError, match="certificate of account 1"):
        engine.check_invariants()
    engine.forget_certificates()
    engine.check_invariants()
    arrange(engine, [Tick(ts_ns=3 * SECOND)])
    engine.mkt[0]["mark"] += 50  # a mark written past move_mark
    with pytest.raises(AssertionError, match="largest move is below market 0"):
        engine.check_invariants()


def test_certificates_survive_a_snapshot():
    engine = positioned(10, -4, 900, (False, True))
    arrange(engine, [Tick(ts_ns=2 * SECOND)])
    copy = Engine.restore(list(SPECS_2), CONFIG, engine.export_state())
    assert np.array_equal(copy.acc, engine.acc) and np.array_equal(copy.ctr, engine.ctr)
    copy.check_invariants()


SEEDED_UNITS = 1_500


def test_certificates_change_no_event_and_the_scan_skips_certified_accounts():
    """The seeded risk stream of the differential, through two numba engines: one keeps its
    certificates, the other forgets them before every command (so every scan evaluates every
    account); events and state hashes are identical throughout, and they agree with the
    reference. Scans skipped certified accounts thousands of times on the way."""
    rng = np.random.default_rng(3)
    kept, forgetful, slow = Engine(SPECS, RISK), Engine(SPECS, RISK), ReferenceEngine(SPECS, RISK)
    resolver = RiskResolver(RISK)
    skipped = liquidations = 0
    for step, op in enumerate([*SETUP, *(_seeded_op(rng) for _ in range(SEEDED_UNITS))]):
        unit = resolver.unit(op, slow)
        scans = bool(np.isin(unit["kind"], [int(CommandKind.TICK), int(CommandKind.ORACLE)]).any())
        if scans:
            skipped += sum(bool(certified_safe(kept.acc, kept.ctr, a)) for a in range(RISK.max_accounts)
                           if kept.acc[a]["npos"] != 0)
        forgetful.forget_certificates()
        slow_events = slow.apply(unit)
        fast_events = kept.apply(unit)
        assert_same_events(fast_events, slow_events, (step, op))
        assert_same_events(forgetful.apply(unit), slow_events, (step, op))
        assert kept.state_hash() == forgetful.state_hash() == slow.state_hash(), (step, op)
        kept.check_invariants()
        resolver.observe(slow_events)
        liquidations += int((slow_events["kind"] == EventKind.LIQUIDATION).sum())
    assert liquidations > 0, "the stream never liquidated: nothing was tested at the boundary"
    assert skipped > 1_000, f"scans skipped only {skipped} certified accounts"


def test_thirty_holders_keep_their_certificates_through_the_hour():
    """Thirty accounts long 1 NVDA each: the first Tick certifies them all; the settlement
    Tick's scan skips every one (no certificate rewritten, none voided)."""
    engine = Engine(list(SPECS_2), EngineConfig(max_orders=256, max_accounts=40, risk=True))
    arrange(engine, [OracleUpdate(market=0, price=Decimal(100), ts_ns=SECOND),
                     Deposit(account=BOB, amount=Decimal(1_000_000))])
    for a in range(3, 33):
        arrange(engine, [Deposit(account=a, amount=Decimal(300)), ask(BOB, "1", "100.00"),
                         bid(a, "1", "100.00", tif="ioc")])
    arrange(engine, [Tick(ts_ns=2 * SECOND)])
    before = engine.acc.copy()
    assert before["c_ep"][2:33].all()
    events = arrange(engine, [Tick(ts_ns=int(engine.mkt[0]["next_funding"]))])
    credits = {e.account: e.credit_atoms for e in events if isinstance(e, Funding)}
    assert sorted(credits) == list(range(2, 33))
    assert np.array_equal(engine.acc["c_ep"], before["c_ep"])
    # a rewritten certificate of a receiver would have risen by its credit
    assert all(int(engine.acc[a]["c_slack"]) == int(before[a]["c_slack"]) + min(c, 0) for a, c in credits.items())
