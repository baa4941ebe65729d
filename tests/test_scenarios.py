"""Golden transcripts: tests/scenarios/*.json hold command Structs and the events they must
produce, step by step (one ``apply`` call per step), and the final ``state_hash()``.

Both engines replay every transcript and must reproduce it exactly. The tests never write the
files; after a deliberate change of behaviour, regenerate them with

    .venv/bin/python tests/test_scenarios.py

which runs ``SCENARIOS`` below through the reference engine, then read the diff.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from engine.codes import CancelReason, LiquidationStep, OracleFlag
from engine.commands import (
    AdjustMargin,
    Amend,
    Batch,
    Cancel,
    Command,
    Deposit,
    Event,
    OracleUpdate,
    PlaceTrigger,
    SetMarginMode,
    SetMark,
    Tick,
    events_to_structs,
)
from engine.spec import EngineConfig, MarketSpec

if __name__ == "__main__":  # run as a script: make the helpers importable as pytest does
    sys.path.insert(0, str(Path(__file__).parent))

from engine_helpers import ALICE, BOB, CAROL, DAVE, ENGINES, NVDA, SHARE, ask, bid, oid  # noqa: E402

SCENARIO_DIR = Path(__file__).parent / "scenarios"


class Step(msgspec.Struct, forbid_unknown_fields=True):
    commands: list[Command]
    events: list[Event]


class Transcript(msgspec.Struct, forbid_unknown_fields=True):
    description: str
    specs: list[MarketSpec]
    config: EngineConfig
    steps: list[Step]
    state_hash: str


CONFIG = EngineConfig(max_orders=16, max_accounts=8)
RISK = EngineConfig(max_orders=16, max_accounts=8, risk=True)
MODES = EngineConfig(max_orders=16, max_accounts=8, risk=True, modes=True)
MARK_100 = SetMark(market=0, price=Decimal("100.00"))
SECOND = 1_000_000_000
HOUR = 3_600 * SECOND
# NVDA with a $500 partial-liquidation threshold, so a $1,820 position is closed 20% at a time
NVDA_PARTIAL = MarketSpec(**{**msgspec.structs.asdict(NVDA), "partial_liq_notional": Decimal(500)})
# NVDA with a ladder wide enough for a ±10% discovery band at $100
NVDA_WIDE = MarketSpec(**{**msgspec.structs.asdict(NVDA), "ladder_levels": 1 << 14})
# a second market like it, for an account with two positions (cross margin)
AAPL_WIDE = MarketSpec(**{**msgspec.structs.asdict(NVDA_WIDE), "market_id": 1, "symbol": "AAPL"})


def _s(seconds: float) -> int:
    return int(seconds * SECOND)


# name -> (description, steps of commands[, specs, config]); the default is [NVDA] and CONFIG
SCENARIOS: dict[str, tuple] = {
    "sweep_three_levels": (
        "An IOC buy of 5 shares at 100.20 takes three ask levels (100.00, 100.10, 100.20) at the "
        "makers' prices, emits a LEVEL after each, and cancels its last share.",
        [
            [MARK_100],
            [ask(BOB, "1", "100.00"), ask(CAROL, "1", "100.10"), ask(BOB, "2", "100.20"), ask(CAROL, "1", "100.30")],
            [bid(ALICE, "5", "100.20", tif="ioc", ts_ns=1_000)],
        ],
    ),
    "stp_expire_both": (
        "ALICE's own ask is first at 100.00, BOB's second. ALICE buys 2 with expire_both: her ask is "
        "cancelled (STP_MAKER), the level shrinks to BOB's share, and the taker is cancelled (STP_TAKER).",
        [
            [MARK_100],
            [ask(ALICE, "1", "100.00"), ask(BOB, "1", "100.00")],
            [bid(ALICE, "2", "100.00", stp="expire_both")],
        ],
    ),
    "amend_keeps_priority": (
        "ALICE and BOB bid 1 at 99.00 in that order. ALICE amends down to 0.6 (same price: keeps her "
        "place); BOB amends up to 2 (loses his). CAROL sells 1.5: ALICE's 0.6 fills first, then 0.9 of BOB's.",
        [
            [MARK_100],
            [bid(ALICE, "1", "99.00"), bid(BOB, "1", "99.00")],
            [Amend(market=0, account=ALICE, oid=oid(1, 0), size=Decimal("0.6"))],
            [Amend(market=0, account=BOB, oid=oid(2, 1), size=Decimal("2"))],
            [ask(CAROL, "1.5", "99.00", tif="ioc")],
        ],
    ),
    "gtt_expiry": (
        "Good-till-time orders expire on the first tick at or after their expiry, in (expiry, oid) "
        "order; the one without expiry stays.",
        [
            [MARK_100],
            [
                bid(ALICE, "1", "99.00", expires_at_ns=2_000, ts_ns=1),
                ask(BOB, "1", "101.00", expires_at_ns=1_000, ts_ns=2),
                bid(CAROL, "1", "98.00", expires_at_ns=2_000, ts_ns=3),
                bid(DAVE, "1", "97.50", ts_ns=4),
            ],
            [Tick(ts_ns=999)],
            [Tick(ts_ns=1_000)],
            [Tick(ts_ns=5_000)],
        ],
    ),
    "batch_statuses_and_window": (
        "A batch gets one status per action in order; then the mark moves far enough to re-centre "
        "the window and the orders left outside it are cancelled.",
        [
            [MARK_100],
            [
                Batch(
                    actions=[
                        bid(ALICE, "1", "102.40"),
                        bid(ALICE, "1", "300.00"),
                        ask(BOB, "1", "102.50", cloid="b"),
                        Cancel(market=0, account=BOB, cloid="nope"),
                        bid(ALICE, "1", "99.00"),
                    ],
                    ts_ns=5,
                )
            ],
            [SetMark(market=0, price=Decimal("97.00"), ts_ns=6)],
        ],
    ),
    "partial_liquidation_with_cooldown": (
        "ALICE is long 20 at 100.00 with $250. The oracle drops to 93.00, BOB bids 5 at each of 90.90, "
        "90.80, 90.70 and 90.60 (inside the window around 93), then the oracle drops to 91.00. The mark "
        "follows and the update finds her below maintenance (not below 2/3 of it): her position is above "
        "the $500 partial threshold, so an IOC sells 20% (4) at the fillable price and fills against BOB, "
        "with the liquidation fee to the fund. Ticks 1 s and 11 s later send nothing (30 s cooldown); a "
        "Tick 31 s after the first sends the next 20%.",
        [
            [OracleUpdate(market=0, price=Decimal(100), ts_ns=_s(1)),
             Deposit(account=ALICE, amount=Decimal(250)), Deposit(account=BOB, amount=Decimal(100_000)),
             Deposit(account=CAROL, amount=Decimal(100_000))],
            [ask(CAROL, "20", "100.00", ts_ns=_s(1)), bid(ALICE, "20", "100.00", ts_ns=_s(1))],
            [OracleUpdate(market=0, price=Decimal(93), ts_ns=_s(2)),
             bid(BOB, "5", "90.90"), bid(BOB, "5", "90.80"), bid(BOB, "5", "90.70"), bid(BOB, "5", "90.60")],
            [OracleUpdate(market=0, price=Decimal(91), ts_ns=_s(2))],
            [Tick(ts_ns=_s(3))],
            [Tick(ts_ns=_s(13))],
            [Tick(ts_ns=_s(33))],
        ],
        [NVDA_PARTIAL],
        RISK,
    ),
    "book_step_stops_at_bankruptcy": (
        "ALICE ($142.455) is long 3 NVDA (from BOB) and 10 AAPL (3 from CAROL and 7 from BOB), all at "
        "100.00, paying 0.455 of taker fees. AAPL's oracle falls to 93.00; DAVE bids 3 NVDA at 91.00 and "
        "5 AAPL at 84.82. AAPL gaps to 90.00: the update finds ALICE at equity 42.00 < MM 60.00, not "
        "below 2/3 of it (40.00), so the book step runs, market by market. NVDA: an IOC of all 3 at the "
        "fillable price 100.00 − 1.5 × 18.00 / 3 = 91.00 fills DAVE's bid, and the fee of 4.50 goes to "
        "the fund; equity is now 10.40445 against MM 45.00. AAPL: the shortfall alone would allow "
        "90.00 − 1.5 × 34.59555 / 10 = 84.82, but the 10 lots may not lose more than the 10.40445 of "
        "equity left: the limit is 90.00 − 1.04 = 88.96, DAVE's bid is below it and nothing fills. The "
        "fund takes the 10 AAPL at the mark 90.00 with the collateral left, 10.40445: nobody went "
        "bankrupt, so no ADL.",
        [
            [OracleUpdate(market=0, price=Decimal(100), ts_ns=_s(1)),
             OracleUpdate(market=1, price=Decimal(100), ts_ns=_s(1)),
             Deposit(account=ALICE, amount=Decimal("142.455")), Deposit(account=BOB, amount=Decimal(10_000)),
             Deposit(account=CAROL, amount=Decimal(40)), Deposit(account=DAVE, amount=Decimal(10_000))],
            [ask(BOB, "3", "100.00", ts_ns=_s(1)), bid(ALICE, "3", "100.00", tif="ioc", ts_ns=_s(1)),
             ask(CAROL, "3", "100.00", market=1, ts_ns=_s(1)), ask(BOB, "7", "100.00", market=1, ts_ns=_s(1)),
             bid(ALICE, "10", "100.00", market=1, tif="ioc", ts_ns=_s(1))],
            [OracleUpdate(market=1, price=Decimal(93), ts_ns=_s(2)),
             bid(DAVE, "3", "91.00", ts_ns=_s(2)), bid(DAVE, "5", "84.82", market=1, ts_ns=_s(2))],
            [OracleUpdate(market=1, price=Decimal(90), ts_ns=_s(3))],
        ],
        [NVDA_WIDE, AAPL_WIDE],
        RISK,
    ),
    "gap_bankrupts_trader": (
        "ALICE is long 20 at 100.00 with $250 against CAROL's short. The oracle falls to 93.00 and BOB "
        "bids 5 at 90.90; at 91.00 the update finds ALICE below maintenance (equity 69.30 < MM 91.00, "
        "above 2/3 of it): the book step sells 20% (4) at the fillable 89.38, filled at 90.90, with "
        "the liquidation fee of 5.46 to the fund; she is still below (63.31274 < 72.80) and cools down "
        "for 30 s. One second later the oracle gaps to 70.00: her 16 left lose 336, equity −272.68726 "
        "is below 2/3 of MM, so the fund takes the 16 at the mark at once (BACKSTOP) with the negative "
        "collateral (COLLATERAL); the fund's 5.46 covers part, and auto-deleveraging collects the other "
        "267.22726 from CAROL, the only short, who closes 16 at 70.00 against the fund.",
        [
            [OracleUpdate(market=0, price=Decimal(100), ts_ns=_s(1)),
             Deposit(account=ALICE, amount=Decimal(250)), Deposit(account=BOB, amount=Decimal(100_000)),
             Deposit(account=CAROL, amount=Decimal(100_000))],
            [ask(CAROL, "20", "100.00", ts_ns=_s(1)), bid(ALICE, "20", "100.00", ts_ns=_s(1))],
            [OracleUpdate(market=0, price=Decimal(93), ts_ns=_s(2)), bid(BOB, "5", "90.90", ts_ns=_s(2))],
            [OracleUpdate(market=0, price=Decimal(91), ts_ns=_s(2))],
            [OracleUpdate(market=0, price=Decimal(70), ts_ns=_s(3))],
        ],
        [NVDA_PARTIAL],
        RISK,
    ),
    "reduce_only_flip": (
        "ALICE buys 2 from BOB at 100.00. A reduce-only sell of 5 at 101.00 would flip her long to "
        "short 3, so it is resized to her position, 2; a second one of 1 at 101.50 keeps its size. "
        "She sells 3 to CAROL's bid at 99.50 with an ordinary IOC: her position flips to short 1 and, "
        "after the taker, both reduce-only sells are cancelled (REDUCE_ONLY), in oid order. A "
        "reduce-only buy of 4 at 99.00 is resized to 1. Her ordinary bid of 1 at 99.80 is filled by "
        "BOB's IOC: the position closes through a maker fill, and her reduce-only buy is cancelled "
        "after BOB's taker.",
        [
            [OracleUpdate(market=0, price=Decimal(100), ts_ns=_s(1)),
             Deposit(account=ALICE, amount=Decimal(10_000)), Deposit(account=BOB, amount=Decimal(10_000)),
             Deposit(account=CAROL, amount=Decimal(10_000))],
            [ask(BOB, "2", "100.00"), bid(ALICE, "2", "100.00", tif="ioc")],
            [ask(ALICE, "5", "101.00", reduce_only=True), ask(ALICE, "1", "101.50", reduce_only=True)],
            [bid(CAROL, "3", "99.50"), ask(ALICE, "3", "99.50", tif="ioc")],
            [bid(ALICE, "4", "99.00", reduce_only=True)],
            [bid(ALICE, "1", "99.80"), ask(BOB, "1", "99.80", tif="ioc")],
        ],
        [NVDA],
        RISK,
    ),
    "isolated_long_bankrupt": (
        "ALICE ($1,000) trades NVDA on isolated margin: her buy of 10 at 100.00 moves its IM, $100, into "
        "the position's bucket, which also pays the taker fee; she adds $5 more. A gap to 85.00 leaves the "
        "position below zero: the update itself has the fund take it at the mark with the bucket's "
        "deficit, and auto-deleveraging collects that from CAROL's short; the Tick after it has nothing "
        "left to do. ALICE's $895 in cross are untouched.",
        [
            [OracleUpdate(market=0, price=Decimal(100), ts_ns=_s(1)),
             Deposit(account=ALICE, amount=Decimal(1_000)), Deposit(account=CAROL, amount=Decimal(10_000)),
             SetMarginMode(account=ALICE, market=0, mode="isolated")],
            [ask(CAROL, "10", "100.00", ts_ns=_s(1)), bid(ALICE, "10", "100.00", ts_ns=_s(1))],
            [AdjustMargin(account=ALICE, market=0, amount=Decimal(5), ts_ns=_s(1))],
            [OracleUpdate(market=0, price=Decimal(85), ts_ns=_s(2))],
            [Tick(ts_ns=_s(3))],
        ],
        [NVDA],
        RISK,
    ),
    "funding_over_a_day": (
        "ALICE is long 10 and BOB short 10 at 100.00; CAROL keeps a book whose impact bid is above "
        "the oracle (premium > 0). Ticks every 30 minutes for 24 hours: a premium sample each, and on "
        "each hour the settlement: ALICE pays, BOB receives (rounded down), the remainder goes to the fund.",
        [
            [OracleUpdate(market=0, price=Decimal(100), ts_ns=_s(1)),
             Deposit(account=ALICE, amount=Decimal(10_000)), Deposit(account=BOB, amount=Decimal(10_000)),
             Deposit(account=CAROL, amount=Decimal(100_000))],
            [ask(BOB, "10", "100.00", ts_ns=_s(1)), bid(ALICE, "10", "100.00", ts_ns=_s(1)),
             bid(CAROL, "100", "100.10", ts_ns=_s(1)), ask(CAROL, "100", "100.30", ts_ns=_s(1))],
            *[[Tick(ts_ns=k * HOUR // 2 + _s(1))] for k in range(1, 49)],
        ],
        [NVDA],
        RISK,
    ),
    "position_tp_sl": (
        "ALICE buys 2 at 100.00 and sets a position stop-loss at 95.00 and a take-profit at 110.00 (no "
        "size: the whole position when they fire). She buys 1 more. The oracle falls to 95.00: the mark "
        "reaches the stop, which fires a market sell of 3 (her position then) into CAROL's bid; her "
        "position is closed, so the take-profit is cancelled in the same command.",
        [
            [OracleUpdate(market=0, price=Decimal(100), ts_ns=_s(1)),
             Deposit(account=ALICE, amount=Decimal(10_000)), Deposit(account=BOB, amount=Decimal(10_000)),
             Deposit(account=CAROL, amount=Decimal(10_000))],
            [ask(BOB, "3", "100.00"), bid(ALICE, "2", "100.00")],
            [PlaceTrigger(market=0, account=ALICE, side="sell", trigger_price=Decimal(95)),
             PlaceTrigger(market=0, account=ALICE, side="sell", trigger_price=Decimal(110), kind="take_profit")],
            [bid(ALICE, "1", "100.00")],
            [OracleUpdate(market=0, price=Decimal(97), ts_ns=_s(2))],
            [bid(CAROL, "5", "94.50")],
            [OracleUpdate(market=0, price=Decimal(95), ts_ns=_s(3))],
        ],
        [NVDA_WIDE],
        RISK,
    ),
    "dark_weekend_and_reopen": (
        "NVDA closes at 100.00 (the CLOSED flag): INTERNAL, band 90.00–110.00. Over the weekend a bid "
        "at 105.00 (100 shares, deeper than the impact notional) pulls the internal price up 9.5% of "
        "the way per 6-minute Tick, to 103.13 after an hour. The market reopens at 108.00: after 15 s of "
        "external prices the "
        "gap is above 1%, so REOPENING moves the oracle at most 50 bps per update until within 0.1%.",
        [
            [OracleUpdate(market=0, price=Decimal(100), ts_ns=_s(1)),
             Deposit(account=ALICE, amount=Decimal(100_000))],
            [OracleUpdate(market=0, price=None, ts_ns=_s(2), flags=int(OracleFlag.CLOSED))],
            [bid(ALICE, "100", "105.00", ts_ns=_s(3))],
            *[[Tick(ts_ns=_s(3 + 360 * k))] for k in range(1, 11)],
            *[[OracleUpdate(market=0, price=Decimal(108), ts_ns=_s(4_000 + k))] for k in range(0, 30)],
        ],
        [NVDA_WIDE],
        MODES,
    ),
}


def scenario(name: str) -> tuple[str, list[list[Command]], list[MarketSpec], EngineConfig]:
    description, steps, *rest = SCENARIOS[name]
    specs, config = rest if rest else ([NVDA], CONFIG)
    return description, steps, specs, config


def load(name: str) -> Transcript:
    return msgspec.json.decode((SCENARIO_DIR / f"{name}.json").read_bytes(), type=Transcript)


def replay(engine_class, transcript: Transcript) -> tuple[list[list[Event]], str]:
    engine = engine_class(transcript.specs, transcript.config)
    out = []
    for step in transcript.steps:
        out.append(events_to_structs(engine.apply(step.commands)))
        engine.check_invariants()
    return out, engine.state_hash()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("engine_kind", sorted(ENGINES))
def test_engine_reproduces_the_transcript(name, engine_kind, numba_warm):
    transcript = load(name)

    events, state_hash = replay(ENGINES[engine_kind], transcript)

    for number, (step, got) in enumerate(zip(transcript.steps, events)):
        assert got == step.events, f"{name}: step {number} differs"
    assert state_hash == transcript.state_hash


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_transcript_holds_the_scenario_as_defined_here(name):
    description, steps, specs, config = scenario(name)
    transcript = load(name)

    assert transcript.description == description
    assert [s.commands for s in transcript.steps] == steps
    assert transcript.specs == specs and transcript.config == config


def test_no_stray_transcripts():
    assert sorted(p.stem for p in SCENARIO_DIR.glob("*.json")) == sorted(SCENARIOS)


def test_partial_liquidation_transcript_sends_a_fifth_then_waits_30_s():
    steps = load("partial_liquidation_with_cooldown").steps
    sent = [[(e.size_lots, e.amount) for e in step.events if e.__struct_config__.tag == "liquidation" and e.step == 1]
            for step in steps[3:]]
    assert sent == [[(4 * SHARE, 4 * SHARE)], [], [], [(3_200, 3_200)]]  # 20% of 20, nothing twice, 20% of 16


def test_a_book_step_over_two_positions_stops_at_bankruptcy():
    steps = load("book_step_stops_at_bankruptcy").steps
    last = steps[-1].events
    liq = [(e.step, e.market, e.account, e.price_ticks, e.size_lots, e.amount) for e in last
           if e.__struct_config__.tag == "liquidation"]
    # at 90, ALICE: 142.455 − taker fees 0.105 + 0.35 − 10 × 10.00 = 42.00; MM 5% × (300 + 900) = 60
    # NVDA: 10000 − ⌊1.5 × 18_000_000 / (3000 × 10)⌋ = 9100, all 3 filled; fee 1.5% × 300 = 4.50
    # then 42 − 27 − ⌈273 × 0.035%⌉ − 4.5 = 10.40445 against MM 45:
    # AAPL: min(⌊1.5 × 34_595_550 / (10_000 × 10)⌋, ⌊10_404_450 / (10_000 × 10)⌋) = min(518, 104) ticks
    assert liq == [
        (LiquidationStep.BOOK, 0, ALICE, 9_100, 3 * SHARE, 3 * SHARE),
        (LiquidationStep.FEE, 0, ALICE, 10_000, 0, 4_500_000),
        (LiquidationStep.BOOK, 1, ALICE, 8_896, 10 * SHARE, 0),
        (LiquidationStep.BACKSTOP, 1, ALICE, 9_000, 10 * SHARE, 0),
        (LiquidationStep.COLLATERAL, -1, ALICE, 0, 0, 10_404_450),
    ]
    fills = [(e.market, e.maker_account, e.price_ticks, e.size_lots) for e in last if e.__struct_config__.tag == "fill"]
    assert fills == [(0, DAVE, 9_100, 3 * SHARE)]


def test_gap_transcript_runs_book_then_backstop_and_adl():
    steps = load("gap_bankrupts_trader").steps

    def liq(k):
        return [(e.step, e.account, e.price_ticks, e.size_lots, e.amount) for e in steps[k].events
                if e.__struct_config__.tag == "liquidation"]

    # at 91: equity 250 − 0.70 − 20 × 9 = 69.30, MM 5% × 1820 = 91.00; 20% = 4 at
    # 9100 − ⌊1.5 × 21_700_000 / (20_000 × 10)⌋ = 8938, filled at 90.90; fee 1.5% × 364 = 5.46
    assert liq(3) == [(LiquidationStep.BOOK, ALICE, 8_938, 4 * SHARE, 4 * SHARE),
                      (LiquidationStep.FEE, ALICE, 9_100, 0, 5_460_000)]
    # at 70: 69.30 − 0.40 − ⌈363.60 × 0.035%⌉ − 5.46 − 16 × 21 = −272.68726; the fund holds 5.46
    assert liq(4) == [(LiquidationStep.BACKSTOP, ALICE, 7_000, 16 * SHARE, 0),
                      (LiquidationStep.COLLATERAL, ALICE, 0, 0, -272_687_260),
                      (LiquidationStep.ADL, CAROL, 7_000, -16 * SHARE, 272_687_260 - 5_460_000)]

    engine = ENGINES["reference"](*scenario("gap_bankrupts_trader")[2:])
    for commands in scenario("gap_bankrupts_trader")[1]:
        engine.apply(commands)
        engine.check_invariants()  # conservation to the atom among them
    assert engine.insurance_fund() == 0 and engine.collateral(ALICE) == 0
    assert engine.position(ALICE, 0).size_lots == 0 and engine.position(CAROL, 0).size_lots == -4 * SHARE


def test_reduce_only_transcript_resizes_and_cancels_on_the_flip_and_on_the_close():
    steps = load("reduce_only_flip").steps
    sizes = [[e.size_lots for e in steps[k].events if e.__struct_config__.tag == "accepted"] for k in (2, 4)]
    assert sizes == [[2 * SHARE, SHARE], [SHARE]]  # 5 cut to the long 2; 4 cut to the short 1
    cancels = [[(e.oid, e.size_lots, e.reason) for e in steps[k].events if e.__struct_config__.tag == "cancelled"]
               for k in (3, 5)]
    ro = CancelReason.REDUCE_ONLY
    assert cancels == [[(oid(3, 1), 2 * SHARE, ro), (oid(4, 0), SHARE, ro)], [(oid(7, 0), SHARE, ro)]]
    for k in (3, 5):  # after the taker is done
        tags = [e.__struct_config__.tag for e in steps[k].events]
        assert tags.index("cancelled") > tags.index("fill")


def test_dark_transcript_reopens_by_steps_of_at_most_50_bps():
    steps = load("dark_weekend_and_reopen").steps
    oracle = [e.oracle_ticks for step in steps[13:] for e in step.events if e.__struct_config__.tag == "mark"]
    steps_taken = [(a, b) for a, b in zip(oracle, oracle[1:]) if b != a]
    assert oracle[0] == 10_313 and oracle[-1] == 10_800
    assert len(steps_taken) == 10
    assert all(0 < b - a <= a * 5 // 1000 for a, b in steps_taken)
    modes = [e.mode for step in steps for e in step.events if e.__struct_config__.tag == "mode"]
    assert [int(m) for m in modes] == [1, 2, 0]  # INTERNAL, REOPENING, EXTERNAL


def test_tp_sl_transcript_fires_the_stop_for_the_whole_position_and_cancels_the_take_profit():
    last = load("position_tp_sl").steps[-1].events
    triggers = [(e.tid, int(e.step), e.size_lots) for e in last if e.__struct_config__.tag == "trigger"]
    assert triggers == [(1, 2, 3 * SHARE), (2, 4, 0)]  # FIRED for 3 shares, then POSITION_CLOSED
    fills = [(e.taker_account, e.maker_account, e.price_ticks, e.size_lots) for e in last
             if e.__struct_config__.tag == "fill"]
    assert fills == [(ALICE, CAROL, 9_450, 3 * SHARE)]


def test_isolated_transcript_takes_the_deficit_from_the_bucket_and_adl_not_from_cross():
    gap, tick = (step.events for step in load("isolated_long_bankrupt").steps[-2:])
    last = gap  # the oracle update that moves the mark checks the position at once
    assert not [e for e in tick if e.__struct_config__.tag == "liquidation"]
    steps = [(int(e.step), e.market, e.account, e.amount) for e in last if e.__struct_config__.tag == "liquidation"]
    # bucket 100 − 0.35 fee + 5 = 104.65; loss at 85.00: 150; deficit 45.35
    assert steps == [(2, 0, ALICE, 0), (3, 0, ALICE, -45_350_000), (5, 0, CAROL, 45_350_000)]
    assert not [e for e in last if e.__struct_config__.tag == "balance"]


def test_sweep_transcript_says_what_its_description_says():
    # Spot-check one golden file by hand, so a wrong regeneration cannot pass unseen.
    last = load("sweep_three_levels").steps[-1].events
    fills = [(e.maker_oid, e.price_ticks, e.size_lots) for e in last if e.__struct_config__.tag == "fill"]
    assert fills == [(oid(1, 0), 10000, SHARE), (oid(2, 1), 10010, SHARE), (oid(3, 2), 10020, 2 * SHARE)]
    assert last[-1].__struct_config__.tag == "cancelled" and last[-1].size_lots == SHARE


def regenerate() -> None:
    """Write every transcript from the reference engine (by hand only; see the module doc)."""
    SCENARIO_DIR.mkdir(exist_ok=True)
    for name in SCENARIOS:
        description, steps, specs, config = scenario(name)
        engine = ENGINES["reference"](specs, config)
        recorded = [Step(commands, events_to_structs(engine.apply(commands))) for commands in steps]
        transcript = Transcript(description, specs, config, recorded, engine.state_hash())
        text = msgspec.json.format(msgspec.json.encode(transcript), indent=2)
        (SCENARIO_DIR / f"{name}.json").write_bytes(text + b"\n")
        print(f"wrote {name}.json")


if __name__ == "__main__":
    regenerate()
