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

from engine.codes import OracleFlag
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
        "ALICE is long 20 at 100.00 with $250. The oracle drops to 91.00 and BOB bids 5 at each of "
        "90.90, 90.80, 90.70 and 90.60. The next Tick finds her below maintenance (not below 2/3 of it): "
        "her position is above the $500 partial threshold, so an IOC sells 20% (4) at the fillable price "
        "and fills against BOB, with the liquidation fee to the fund. A Tick 10 s later sends nothing "
        "(30 s cooldown); a Tick 30 s after the first sends the next 20%.",
        [
            [OracleUpdate(market=0, price=Decimal(100), ts_ns=_s(1)),
             Deposit(account=ALICE, amount=Decimal(250)), Deposit(account=BOB, amount=Decimal(100_000)),
             Deposit(account=CAROL, amount=Decimal(100_000))],
            [ask(CAROL, "20", "100.00", ts_ns=_s(1)), bid(ALICE, "20", "100.00", ts_ns=_s(1))],
            [OracleUpdate(market=0, price=Decimal(91), ts_ns=_s(2))],
            [bid(BOB, "5", "90.90"), bid(BOB, "5", "90.80"), bid(BOB, "5", "90.70"), bid(BOB, "5", "90.60")],
            [Tick(ts_ns=_s(3))],
            [Tick(ts_ns=_s(13))],
            [Tick(ts_ns=_s(33))],
        ],
        [NVDA_PARTIAL],
        RISK,
    ),
    "isolated_long_bankrupt": (
        "ALICE ($1,000) trades NVDA on isolated margin: her buy of 10 at 100.00 moves its IM, $100, into "
        "the position's bucket, which also pays the taker fee; she adds $5 more. A gap to 85.00 leaves the "
        "position below zero: the next Tick has the fund take it at the mark with the bucket's deficit, "
        "and auto-deleveraging collects that from CAROL's short. ALICE's $895 in cross are untouched.",
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
            for step in steps[4:]]
    assert sent == [[(4 * SHARE, 4 * SHARE)], [], [(3_200, 3_200)]]  # 20% of 20, nothing, 20% of 16


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
    last = load("isolated_long_bankrupt").steps[-1].events
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
