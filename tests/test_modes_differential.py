"""Differential tests of the market modes (docs/modes.md): with ``EngineConfig(modes=True)``
the numba ``Engine`` and the ``ReferenceEngine`` must give identical events, ``state_hash()``
and query answers (mode views included) for any stream, and both keep their invariants.

The streams of ``test_risk_differential`` (orders, amends, cancels, deposits, withdrawals,
leverage, oracle jumps of ±30%, ticks across sample and hour boundaries) gain what drives
the modes: oracle updates without a price, with ``CLOSED`` and ``BREAKER`` flags (and a bad
bit), runs of external prices long enough to reopen, admin halts, resumes and listings (and a
bad action), and time jumps of 15 s, 31 s and 6 min (the internal step's cap). Two market
sets: both markets external (NVDA with an open-interest cap and scaled dark funding, TSLA with
a ±5% band and paused dark funding), and TSLA as a pre-IPO market.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec
import numpy as np
import pytest
from command_streams import _record, weighted
from hypothesis import given, settings
from hypothesis import strategies as st
from test_differential import assert_same_events
from test_risk_differential import (
    FUZZ,
    SCALE,
    SECOND,
    SETUP,
    SPECS,
    USD,
    RiskResolver,
    check_both,
    compare_queries,
    markets,
    operations,
    steps,
)

from engine.codes import CommandKind, EventKind, FundingDark, MarketMode, OracleFlag, Reject
from engine.commands import COMMAND_DTYPE
from engine.engine import Engine
from engine.reference import ReferenceEngine
from engine.spec import EngineConfig

MODES = EngineConfig(max_orders=64, max_accounts=6, risk=True, modes=True)
EXTERNAL_SPECS = [
    msgspec.structs.replace(SPECS[0], oi_cap=Decimal(3_000), funding_dark=FundingDark.SCALED),
    msgspec.structs.replace(SPECS[1], dark_band=Decimal("0.05"), funding_dark=FundingDark.PAUSED),
]
PRE_IPO_SPECS = [EXTERNAL_SPECS[0], msgspec.structs.replace(SPECS[1], pre_ipo_reference=Decimal(50))]

flag_sets = weighted((6, st.just(0)), (2, st.just(int(OracleFlag.CLOSED))), (1, st.just(int(OracleFlag.BREAKER))),
                     (1, st.sampled_from([3, 4])))
oracle_prices = weighted((3, st.none()), (5, st.sampled_from([-1500, -300, -60, 0, 60, 300, 1500])))
oracle_x_ops = st.tuples(st.just("oracle_x"), markets, oracle_prices, flag_sets, steps)
reopen_ops = st.tuples(st.just("reopen_run"), st.sampled_from([0, 1]), st.sampled_from([-900, -50, 0, 80, 900]),
                       st.integers(14, 18))
admin_ops = st.tuples(st.just("admin"), markets, weighted((9, st.sampled_from([1, 2, 3])), (1, st.sampled_from([0, 4]))))
gap_ops = st.tuples(st.just("tick"), st.sampled_from([15, 31, 360]).map(lambda s: ("dt", s * SECOND)))

mode_operations = weighted((10, operations), (3, oracle_x_ops), (2, reopen_ops), (1, admin_ops), (2, gap_ops))
streams = st.lists(mode_operations, min_size=10, max_size=70).map(lambda ops: [*SETUP, *ops])


class ModeResolver(RiskResolver):
    """``RiskResolver`` plus the mode operations; ``reopen_run`` is several units."""

    def units(self, op: tuple, engine) -> list[np.ndarray]:
        if op[0] == "reopen_run":
            _, m, bp, count = op
            out = []
            for _ in range(count):
                self.now += SECOND
                price = self._external(engine, m, bp)
                out.append(np.array([_record(CommandKind.ORACLE, market=m, price=price, ts=self.now)],
                                    dtype=COMMAND_DTYPE))
            return out
        return [self.unit(op, engine)]

    @staticmethod
    def _external(engine, m: int, bp: int) -> int:
        """A price ``bp`` basis points from the last external price (or the oracle)."""
        view = engine.mode(m)
        base = view.external or view.oracle or 1_000
        return max(1, base + base * bp // 10_000)

    def _record(self, op: tuple, engine) -> tuple:
        kind = op[0]
        if kind == "oracle_x":
            _, m, bp, flags, step = op
            self.now += step
            price = 0
            if bp is not None and 0 <= m < len(SPECS):
                price = self._external(engine, m, bp)
            return _record(CommandKind.ORACLE, market=m, price=price, size=flags, ts=self.now)
        if kind == "admin":
            _, m, action = op
            return _record(CommandKind.MARKET_ADMIN, market=m, size=action, ts=self.now)
        return super()._record(op, engine)


def compare_modes(fast: Engine, slow: ReferenceEngine, n_markets: int) -> None:
    for m in range(n_markets):
        assert fast.mode(m) == slow.mode(m)


def run_mode_stream(ops: list, specs: list) -> list[np.ndarray]:
    fast, slow = Engine(specs, MODES), ReferenceEngine(specs, MODES)
    resolver = ModeResolver(MODES)
    all_events = []
    for step, op in enumerate(ops):
        for unit in resolver.units(op, slow):
            slow_events = slow.apply(unit)
            assert_same_events(fast.apply(unit), slow_events, (step, op, unit.tolist()))
            resolver.observe(slow_events)
            check_both(fast, slow, (step, op))
            compare_queries(fast, slow)
            compare_modes(fast, slow, len(specs))
            all_events.append(slow_events)
    return all_events


@pytest.fixture(autouse=True)
def _warm(numba_warm):
    """Compile before Hypothesis starts timing examples."""


@settings(max_examples=60 * SCALE, **FUZZ)
@given(streams)
def test_mode_streams_agree_with_external_markets(ops):
    run_mode_stream(ops, EXTERNAL_SPECS)


@settings(max_examples=40 * SCALE, **FUZZ)
@given(streams)
def test_mode_streams_agree_with_a_pre_ipo_market(ops):
    run_mode_stream(ops, PRE_IPO_SPECS)


def _seeded_stream(seed: int, length: int) -> list[tuple]:
    """A deterministic stream that walks every mode: dark by CLOSED and by silence, internal
    steps against a book, a reopen with a gap, a breaker, an admin halt and resume."""
    rng = np.random.default_rng(seed)
    ops: list[tuple] = list(SETUP)
    for _ in range(length):
        r = rng.random()
        m = int(rng.integers(0, 2))
        if r < 0.30:
            side = int(rng.integers(0, 2))
            offset = int(rng.integers(-40, 40))
            ops.append(("place", m, int(rng.integers(0, 5)), side, 0, 0, offset, int(rng.integers(1, 60)), None, None,
                        int(rng.integers(0, 400_000_000))))
        elif r < 0.40:
            ops.append(("place", m, int(rng.integers(0, 5)), int(rng.integers(0, 2)), 4, 0, 0,
                        int(rng.integers(1, 30)), None, None, 0))
        elif r < 0.55:
            ops.append(("tick", ("dt", int(rng.choice([1, 5, 15, 31, 360])) * SECOND)))
        elif r < 0.70:
            flags = int(rng.choice([0, 0, 0, 1, 2]))
            bp = None if rng.random() < 0.3 else int(rng.choice([-800, -100, 0, 100, 800]))
            ops.append(("oracle_x", m, bp, flags, 0))
        elif r < 0.82:
            ops.append(("reopen_run", m, int(rng.choice([-900, -50, 80, 900])), int(rng.integers(14, 20))))
        elif r < 0.86:
            ops.append(("admin", m, int(rng.choice([1, 2, 3]))))
        elif r < 0.93:
            ops.append(("deposit", int(rng.integers(0, 5)), int(rng.integers(50, 2_000)) * USD, False))
        else:
            ops.append(("cancel", ("live", int(rng.integers(0, 1_000))), 0))
    return ops


@pytest.mark.parametrize("specs", [EXTERNAL_SPECS, PRE_IPO_SPECS], ids=["external", "pre_ipo"])
def test_seeded_mode_stream_reaches_every_mode_and_agrees(specs):
    events = np.concatenate(run_mode_stream(_seeded_stream(7, 700), specs))
    modes_seen = set(events["reason"][events["kind"] == EventKind.MODE].tolist())
    assert {MarketMode.INTERNAL, MarketMode.REOPENING, MarketMode.EXTERNAL, MarketMode.HALTED} <= modes_seen
    if specs is PRE_IPO_SPECS:  # it starts pre-IPO, refuses external prices, then is listed
        rejected = events["code"][events["kind"] == EventKind.REJECTED]
        assert (rejected == Reject.ORACLE_NOT_EXTERNAL).any()
        listed = (events["kind"] == EventKind.MODE) & (events["market"] == 1) & (events["reason"] == MarketMode.INTERNAL)
        assert listed.any()
    assert (events["kind"] == EventKind.FUNDING_RATE).any()
