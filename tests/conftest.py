"""Fixtures for the engine tests: every behavioural test runs against both engines.

``make_engine`` is parametrised with ids ``numba`` and ``reference``; it depends on a
session-scoped warm-up so the numba kernels are compiled (or loaded from the cache) once per
process, outside any single test (and so never inside a Hypothesis example's deadline).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Callable, Sequence

import os

import pytest
from hypothesis import settings

from engine.commands import SetMark, Tick, to_records
from engine.engine import Engine
from engine.spec import EngineConfig, MarketSpec
from engine_helpers import ENGINES, NVDA, SMALL_CONFIG, TSLA, apply_checked, ask, bid

EngineFactory = Callable[..., object]

# No per-example deadline anywhere: timing on a loaded 2-core machine is not a test result.
# In CI the examples are derived from each test's name, so a run is reproducible.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def numba_warm() -> None:
    """Run every kernel once (place, match, amend, cancel, cancel-all, re-centre, tick, hash)."""
    engine = Engine([NVDA, TSLA], SMALL_CONFIG)
    engine.apply(
        to_records(
            [
                SetMark(market=0, price=Decimal("100.00")),
                bid(1, "1", "99.00", expires_at_ns=5),
                ask(2, "1", "99.00"),
                SetMark(market=0, price=Decimal("90.00")),
                Tick(ts_ns=10),
            ],
            [NVDA, TSLA],
        )
    )
    engine.state_hash()
    engine.check_invariants()


@pytest.fixture(params=sorted(ENGINES), ids=sorted(ENGINES))
def make_engine(request, numba_warm) -> EngineFactory:
    """A factory ``make_engine(specs=[NVDA], config=SMALL_CONFIG, marks=None)``; ``marks`` maps
    market id to a decimal mark price applied (and invariant-checked) before returning."""
    engine_class = ENGINES[request.param]

    def factory(
        specs: Sequence[MarketSpec] = (NVDA,),
        config: EngineConfig = SMALL_CONFIG,
        marks: dict[int, str] | None = None,
    ):
        engine = engine_class(list(specs), config)
        for market, price in (marks or {}).items():
            assert apply_checked(engine, [SetMark(market=market, price=Decimal(price))]) == []
        return engine

    return factory


@pytest.fixture
def nvda_at_100(make_engine):
    """One NVDA market with its mark at 100.00: band [9744, 10256], window [9488, 10512)."""
    return make_engine(marks={0: "100.00"})
