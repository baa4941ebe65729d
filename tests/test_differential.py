"""Differential tests: the numba ``Engine`` and the ``ReferenceEngine`` must give identical
event arrays (``np.array_equal``) and identical ``state_hash()`` for any command stream.

Streams come from tests/command_streams.py: Hypothesis streams of Structs and raw records
(hostile values included), resolved command by command so that cancels and amends can name
order ids seen in earlier ACCEPTED events; and a seeded 20k-command raw stream applied in
batches of varying sizes. ``AFTERHOURS_FUZZ_SCALE=10`` multiplies the example counts.
"""

from __future__ import annotations

import os
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from command_streams import (
    CONFIG,
    SPECS,
    Resolver,
    SeededStream,
    amend_ops,
    cancel_ops,
    place_ops,
    place_ops_with,
    set_mark_ops,
    streams,
    streams_of,
    tick_ops,
    weighted,
)
from engine.codes import CancelReason, CommandKind, EventKind, Reject, Tif
from engine.commands import COMMAND_DTYPE, EVENT_DTYPE, SetMark, events_to_structs
from engine.engine import Engine
from engine.reference import ReferenceEngine
from engine.spec import MarketSpec
from engine_helpers import INT64_MAX, SMALL_CONFIG, bid, nvda, oid, record, records

SCALE = int(os.environ.get("AFTERHOURS_FUZZ_SCALE", "1"))
# One bug at a time: shrinking several distinct failures of 60-command streams takes minutes.
FUZZ = dict(deadline=None, report_multiple_bugs=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_same_events(fast: np.ndarray, slow: np.ndarray, context: object) -> None:
    assert fast.dtype == slow.dtype == EVENT_DTYPE
    if not np.array_equal(fast, slow):
        n = min(len(fast), len(slow))
        first = next((i for i in range(n) if fast[i] != slow[i]), n)
        window = slice(max(0, first - 3), first + 3)
        raise AssertionError(
            f"engines disagree on {context!r} from event {first} (lengths {len(fast)}, {len(slow)})\n"
            f"  numba:     {events_to_structs(fast[window])}\n  reference: {events_to_structs(slow[window])}"
        )


def run_stream(ops: list, check_invariants: bool) -> tuple[Engine, ReferenceEngine]:
    """Apply ``ops`` one command unit at a time to both engines and compare after each."""
    fast, slow = Engine(SPECS, CONFIG), ReferenceEngine(SPECS, CONFIG)
    resolver = Resolver()
    for step, op in enumerate(ops):
        cmd = resolver.command(op, slow)
        slow_events = slow.apply(cmd)
        assert_same_events(fast.apply(cmd), slow_events, (step, op, cmd))
        resolver.observe(slow_events)
        if check_invariants:
            fast.check_invariants()
            slow.check_invariants()
        assert fast.state_hash() == slow.state_hash(), f"state differs after step {step}: {op!r}"
    return fast, slow


@pytest.fixture(autouse=True)
def _warm(numba_warm):
    """Compile before Hypothesis starts timing examples."""


@settings(max_examples=300 * SCALE, **FUZZ)
@given(streams)
def test_random_streams_give_identical_events_and_hash(ops):
    run_stream(ops, check_invariants=False)


@settings(max_examples=120 * SCALE, **FUZZ)
@given(streams)
def test_random_streams_keep_both_engines_consistent_after_every_command(ops):
    run_stream(ops, check_invariants=True)


# Two accounts trading with themselves and each other in one market, a few ticks around the
# mark, under every STP mode and time in force: self-trade prevention in all its paths.
_self_trade_places = place_ops_with(markets=st.just(0), accounts=st.sampled_from([0, 1]),
                                    prices=st.integers(-4, 4).map(lambda d: ("rel", d)))
_self_trade_stream = streams_of(weighted((6, _self_trade_places), (1, amend_ops), (1, cancel_ops), (1, tick_ops)))


@settings(max_examples=160 * SCALE, **FUZZ)
@given(_self_trade_stream)
def test_self_trade_streams_agree(ops):
    run_stream(ops, check_invariants=True)


@settings(max_examples=80 * SCALE, **FUZZ)
@given(streams_of(weighted((5, place_ops), (2, set_mark_ops), (2, tick_ops))))
def test_window_moves_and_expiries_agree(ops):
    run_stream(ops, check_invariants=True)


# ---------------------------------------------------------------------------- a long seeded stream

LONG_COMMANDS = 20_000


def test_seeded_long_stream_in_batches_of_varying_sizes():
    fast, slow = Engine(SPECS, CONFIG), ReferenceEngine(SPECS, CONFIG)
    stream, sizes = SeededStream(seed=20_240_601), np.random.default_rng(7)
    seen: list[int] = []
    chunks, all_events = [], []
    total = 0
    while total < LONG_COMMANDS:
        chunk = stream.chunk(int(sizes.choice([1, 2, 7, 50, 400, 1_500])), seen)
        slow_events = slow.apply(chunk)
        assert_same_events(fast.apply(chunk), slow_events, f"chunk at record {total}")
        assert fast.state_hash() == slow.state_hash(), f"state differs after record {total + len(chunk)}"
        seen += slow_events["oid"][slow_events["kind"] == EventKind.ACCEPTED].tolist()
        shifted = slow_events.copy()
        shifted["cmd"] += total
        chunks.append(chunk)
        all_events.append(shifted)
        total += len(chunk)
    fast.check_invariants()
    slow.check_invariants()

    # The same records in one apply call give the same events, renumbered, and the same state.
    whole = Engine(SPECS, CONFIG)
    assert_same_events(whole.apply(np.concatenate(chunks)), np.concatenate(all_events), "the whole stream")
    assert whole.state_hash() == slow.state_hash()

    # The stream is not degenerate: it reaches every event kind, cancel reason and most rejects.
    events = np.concatenate(all_events)
    # (a matching-only stream: the risk layer's events and liquidation cancels cannot occur)
    assert set(np.unique(events["kind"]).tolist()) == {int(k) for k in EventKind if k <= EventKind.LEVEL}
    cancelled = events[events["kind"] == EventKind.CANCELLED]
    risk_only = {CancelReason.LIQUIDATION, CancelReason.DEAD_MAN, CancelReason.REDUCE_ONLY}
    assert set(np.unique(cancelled["reason"]).tolist()) == {int(r) for r in CancelReason if r not in risk_only}
    codes = set(np.unique(events[events["kind"] == EventKind.REJECTED]["code"]).tolist())
    engine_codes = {Reject.SIZE_NOT_POSITIVE, Reject.SIZE_ABOVE_MAX, Reject.NOTIONAL_BELOW_MIN,
                    Reject.PRICE_NOT_POSITIVE, Reject.PRICE_OUTSIDE_BAND, Reject.VALUE_OVERFLOW,
                    Reject.UNKNOWN_MARKET, Reject.UNKNOWN_ACCOUNT, Reject.BAD_FIELD, Reject.EXPIRY_IN_PAST,
                    Reject.DUPLICATE_CLOID, Reject.BATCH_TOO_LARGE, Reject.MARK_INVALID, Reject.FOK_NOT_FILLABLE,
                    Reject.POST_ONLY_WOULD_CROSS, Reject.UNKNOWN_ORDER, Reject.NOT_ORDER_OWNER,
                    Reject.AMEND_NO_CHANGE, Reject.BOOK_FULL, Reject.ORDER_ID_MISSING}
    assert engine_codes <= codes, f"never produced: {sorted(Reject(c).name for c in engine_codes - codes)}"


def test_one_apply_with_more_events_than_the_buffer_holds():
    # 12_000 IOC bids that do not cross give 24_000 events, more than the numba engine's first
    # event buffer (16_384): it must stop, grow and resume without losing or repeating any.
    setup = Engine(SPECS, CONFIG).records([SetMark(market=0, price=Decimal("100.00"))])
    iocs = np.zeros(12_000, dtype=COMMAND_DTYPE)
    iocs["kind"] = CommandKind.PLACE
    iocs["account"] = np.arange(12_000) % 5
    iocs["tif"] = Tif.IOC
    iocs["price"] = 9_900
    iocs["size"] = 1_000
    iocs["ts"] = np.arange(12_000)
    fast, slow = Engine(SPECS, CONFIG), ReferenceEngine(SPECS, CONFIG)
    fast.apply(setup)
    slow.apply(setup)

    events = fast.apply(iocs)

    assert_same_events(events, slow.apply(iocs), "12k IOC orders")
    assert len(events) == 24_000
    assert events["cmd"].tolist() == np.repeat(np.arange(12_000), 2).tolist()
    assert fast.state_hash() == slow.state_hash()


# ---------------------------------------------------------------------------- extremes


def test_amend_with_a_huge_negative_size_is_rejected():
    """A raw AMEND with size -93_165_374_109_649 at 99.00 (docs/matching.md AMEND step 3):
    SIZE_NOT_POSITIVE from both engines, and the order is left as it was. (The numba engine
    once multiplied it into the notional check and wrapped.)"""
    fast, slow = Engine([nvda()], SMALL_CONFIG), ReferenceEngine([nvda()], SMALL_CONFIG)
    for engine in (fast, slow):
        engine.apply([SetMark(market=0, price=Decimal("100.00")), bid(1, "1", "99.00")])
    amend = record(CommandKind.AMEND, market=0, account=1, oid=oid(1, 0), size=-(INT64_MAX // 99_000) - 5)
    before = slow.state_hash()

    expected = events_to_structs(slow.apply(amend))
    assert [e.code for e in expected] == [Reject.SIZE_NOT_POSITIVE]
    assert slow.state_hash() == before
    assert events_to_structs(fast.apply(amend)) == expected
    assert fast.state_hash() == before


@pytest.mark.parametrize("engine_class", [Engine, ReferenceEngine], ids=["numba", "reference"])
def test_a_spec_whose_full_level_could_pass_int64_is_refused(engine_class):
    """Two INT64_MAX orders at one price would overflow the level total, so an engine refuses
    a max_order_lots × max_orders beyond int64 when it is built."""
    spec = MarketSpec(market_id=0, symbol="TINY", tick_size=Decimal("0.001"), lot_size=Decimal("0.001"),
                      max_order_lots=INT64_MAX, min_notional=Decimal(0), ladder_levels=256)
    with pytest.raises(ValueError, match="max_order_lots × max_orders exceeds int64"):
        engine_class([spec], SMALL_CONFIG)


def test_every_slot_at_the_largest_size_in_one_level_fits_in_int64():
    largest = INT64_MAX // SMALL_CONFIG.max_orders
    spec = MarketSpec(market_id=0, symbol="TINY", tick_size=Decimal("0.001"), lot_size=Decimal("0.001"),
                      max_order_lots=largest, min_notional=Decimal(0), ladder_levels=256)
    place = records(*(record(CommandKind.PLACE, market=0, account=a % SMALL_CONFIG.max_accounts, price=1,
                             size=largest) for a in range(SMALL_CONFIG.max_orders)))
    fast, slow = Engine([spec], SMALL_CONFIG), ReferenceEngine([spec], SMALL_CONFIG)
    for engine in (fast, slow):
        engine.apply([SetMark(market=0, price=Decimal("0.001"))])

    assert_same_events(fast.apply(place), slow.apply(place), "every slot at the largest size, one level")
    assert fast.depth(0, 0) == slow.depth(0, 0) == [(1, largest * SMALL_CONFIG.max_orders)]
    fast.check_invariants()
    slow.check_invariants()

