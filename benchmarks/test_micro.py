"""Micro-benchmarks of ``Engine.apply`` (pytest-benchmark): place, cancel, a sweeping IOC.

Not part of ``make test`` (they live outside ``tests/``). Run them with::

    .venv/bin/python -m pytest benchmarks/test_micro.py --benchmark-enable -p no:cacheprovider

Each round gets a fresh engine from an untimed setup (market AAPL-PERP of
``benchmarks/workload.py``, mark 200.00 = 20,000 ticks); only the ``apply`` call is timed,
events copied out included. One round is one batch of ``N`` commands (``place``,
``cancel``) or one IOC that sweeps ``N`` makers over ``N / 10`` levels; divide the times
by ``N`` for a per-command or per-fill figure. Compile time is paid by a module fixture
before any round. Every benchmark asserts the events it got.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.workload import MARKETS
from engine.codes import CancelReason, CommandKind, EventKind, Reject, Side, Tif
from engine.commands import COMMAND_DTYPE
from engine.engine import Engine
from engine.spec import EngineConfig

N = 1_000
PER_LEVEL = 10
MARK_TICKS = 20_000
MAKER, TAKER = 1, 2
CONFIG = EngineConfig(max_orders=1 << 14, max_accounts=16)
ROUNDS = 200


def set_mark() -> np.ndarray:
    rec = np.zeros(1, dtype=COMMAND_DTYPE)
    rec["kind"] = CommandKind.SET_MARK
    rec["price"] = MARK_TICKS
    return rec


def places(side: int, prices: np.ndarray, size: int = 5, tif: int = Tif.GTC, account: int = MAKER) -> np.ndarray:
    rec = np.zeros(len(prices), dtype=COMMAND_DTYPE)
    rec["kind"] = CommandKind.PLACE
    rec["tif"] = tif
    rec["account"] = account
    rec["side"] = side
    rec["price"] = prices
    rec["size"] = size
    rec["ts"] = np.arange(1, len(prices) + 1)
    return rec


def cancels(oids: np.ndarray, account: int = MAKER) -> np.ndarray:
    rec = np.zeros(len(oids), dtype=COMMAND_DTYPE)
    rec["kind"] = CommandKind.CANCEL
    rec["account"] = account
    rec["oid"] = oids
    return rec


def ask_ladder() -> np.ndarray:
    """N asks, PER_LEVEL per tick from mark + 1 up."""
    return MARK_TICKS + 1 + np.arange(N) // PER_LEVEL


def rejected(n: int) -> np.ndarray:
    """``n`` commands that are rejected before touching any state (one event each)."""
    rec = np.zeros(n, dtype=COMMAND_DTYPE)
    rec["kind"] = CommandKind.PLACE
    rec["pre_reject"] = Reject.BAD_FIELD
    return rec


def fresh_engine(*batches: np.ndarray) -> tuple[Engine, list[np.ndarray]]:
    """A new engine with the mark set and ``batches`` applied; its event buffer has been
    written once (by rejected commands), so no first-touch page fault lands in a round."""
    engine = Engine([MARKETS[0]], CONFIG)
    engine.apply(rejected(4 * N))
    events = [engine.apply(set_mark())] + [engine.apply(b) for b in batches]
    return engine, events


@pytest.fixture(scope="module", autouse=True)
def compiled() -> None:
    engine, _ = fresh_engine(places(Side.SELL, ask_ladder()))
    engine.apply(places(Side.BUY, np.array([MARK_TICKS + 200]), size=10 * N, tif=Tif.IOC, account=TAKER))
    engine.state_hash()


def kinds(events: np.ndarray) -> np.ndarray:
    return events["kind"].astype(np.int64)


def test_place_resting(benchmark):
    batch = places(Side.BUY, MARK_TICKS - 1 - np.arange(N) // PER_LEVEL)

    def setup():
        engine, _ = fresh_engine()
        return (engine,), {}

    events = benchmark.pedantic(lambda engine: engine.apply(batch), setup=setup, rounds=ROUNDS)
    benchmark.extra_info["commands_per_round"] = N
    assert len(events) == 2 * N
    assert (kinds(events[0::2]) == EventKind.ACCEPTED).all()
    assert (kinds(events[1::2]) == EventKind.LEVEL).all()
    assert events["size"][-1] == PER_LEVEL * 5  # the last level holds its ten orders


def test_cancel(benchmark):
    def setup():
        engine, (_, placed) = fresh_engine(places(Side.SELL, ask_ladder()))
        oids = placed["oid"][placed["kind"] == EventKind.ACCEPTED]
        return (engine, cancels(oids)), {}

    def cancel_all(engine, batch):
        return engine, engine.apply(batch)

    engine, events = benchmark.pedantic(cancel_all, setup=setup, rounds=ROUNDS)
    benchmark.extra_info["commands_per_round"] = N
    assert len(events) == 2 * N
    assert (kinds(events[0::2]) == EventKind.CANCELLED).all()
    assert (events["reason"][0::2] == CancelReason.USER).all()
    assert (kinds(events[1::2]) == EventKind.LEVEL).all()
    assert engine.depth(0, Side.SELL) == []


def test_sweeping_ioc(benchmark):
    levels = N // PER_LEVEL
    taker = places(Side.BUY, np.array([MARK_TICKS + levels]), size=5 * N, tif=Tif.IOC, account=TAKER)

    def setup():
        engine, _ = fresh_engine(places(Side.SELL, ask_ladder()))
        return (engine,), {}

    def sweep(engine):
        return engine, engine.apply(taker)

    engine, events = benchmark.pedantic(sweep, setup=setup, rounds=ROUNDS)
    benchmark.extra_info["fills_per_round"] = N
    k = kinds(events)
    assert k[0] == EventKind.ACCEPTED
    assert (k == EventKind.FILL).sum() == N
    assert events["size"][k == EventKind.FILL].sum() == 5 * N
    assert (k == EventKind.LEVEL).sum() == levels
    assert (events["size"][k == EventKind.LEVEL] == 0).all()
    assert len(events) == 1 + N + levels  # filled in full: no IOC remainder
    assert engine.depth(0, Side.SELL) == []
