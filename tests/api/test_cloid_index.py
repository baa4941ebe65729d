"""The durable cloid index (api/cloid_index.py): built live from the sequencer's batches, and
rebuilt after a restart from ``cloids.state`` plus the journal replayed after the snapshot."""

from __future__ import annotations

import asyncio

import pytest

from api import protocol as p
from api.actions import Markets
from api.client import place_action
from api.cloid_index import STATE_NAME, CloidIndex
from api.records import RecordWriter
from api.sequencer import Sequencer
from engine.journal import JournaledEngine
from tests.api.gateway_harness import ALICE, BOB, CONFIG, SETUP, SPECS, Clock, warm_engine

MARKETS = Markets(SPECS)


@pytest.fixture(scope="module", autouse=True)
def warm_kernels() -> None:
    warm_engine()


def open_node(directory: str, per_account: int = 1000) -> tuple[CloidIndex, Sequencer]:
    index = CloidIndex.open(directory, MARKETS, per_account)
    journaled = JournaledEngine.open(f"{directory}/journal", SPECS, CONFIG, on_events=index.on_replay)
    return index, Sequencer(journaled, clock_ns=Clock(), tick_interval_s=None, cloids=index)


async def place(seq: Sequencer, account: int, action: p.Action) -> int:
    return (await seq.submit_many(list(RecordWriter(MARKETS).records(action, account))))[0].seq


def states(index: CloidIndex, cloids) -> dict:
    return {c: (index.answer(ALICE, c), index.order(ALICE, c)) for c in cloids}


CLOIDS = ["r", "x", "c", "after"]


async def run_first(directory: str, *, snapshot_at: int | None) -> dict:
    """Alice: a resting bid ``r``, an IOC ``x`` that fills against Bob, a bid ``c`` she
    cancels, and ``after``; a snapshot after the ``snapshot_at``-th step; then a stop with no
    last snapshot (what a kill -9 leaves)."""
    index, seq = open_node(directory)
    await seq.start()
    await seq.submit_many(SETUP)
    steps = [
        (BOB, place_action("NVDA", "sell", "1", "100.50", tif="alo", cloid="b")),
        (ALICE, place_action("NVDA", "buy", "1", "99.00", cloid="r")),
        (ALICE, place_action("NVDA", "buy", "1", "100.50", tif="ioc", cloid="x")),
        (ALICE, place_action("NVDA", "buy", "1", "98.00", cloid="c")),
        (ALICE, p.Cancel("NVDA", cloid="c")),
        (ALICE, place_action("NVDA", "buy", "1", "99.10", cloid="after")),
    ]
    for k, (account, action) in enumerate(steps):
        await place(seq, account, action)
        if snapshot_at == k:
            await seq.snapshot()
    live = states(index, CLOIDS)
    await seq.stop()
    return live


@pytest.mark.parametrize("snapshot_at", [None, 2, 5])
def test_the_index_rebuilt_after_a_restart_equals_the_live_one(tmp_path, snapshot_at):
    live = asyncio.run(run_first(str(tmp_path), snapshot_at=snapshot_at))
    assert (tmp_path / STATE_NAME).exists() == (snapshot_at is not None)
    r, x, c = (live[k][0].statuses[0] for k in "rxc")
    assert isinstance(r, p.Resting) and isinstance(x, p.Filled) and isinstance(c, p.Resting)
    assert [live[k][1][2] for k in CLOIDS] == ["open", "filled", "cancelled", "open"]
    assert live["c"][1][3] == "user"

    index, seq = open_node(str(tmp_path))
    assert states(index, CLOIDS) == live
    seq.journaled.close()


def test_only_the_last_cloids_of_each_account_are_kept(tmp_path):
    async def run() -> CloidIndex:
        index, seq = open_node(str(tmp_path), per_account=2)
        await seq.start()
        await seq.submit_many(SETUP)
        for k in range(3):
            await place(seq, ALICE, place_action("NVDA", "buy", "1", f"99.{k}0", cloid=f"k{k}"))
        await place(seq, BOB, place_action("NVDA", "sell", "1", "101.00", cloid="k0"))
        await seq.snapshot()
        await seq.stop()
        return index

    live = asyncio.run(run())
    rebuilt, seq = open_node(str(tmp_path), per_account=2)
    for index in (live, rebuilt):
        assert [index.answer(ALICE, f"k{k}") is not None for k in range(3)] == [False, True, True]
        assert index.answer(BOB, "k0") is not None and len(index) == 3
    seq.journaled.close()


def test_a_rejected_place_makes_no_entry(tmp_path):
    async def run() -> CloidIndex:
        index, seq = open_node(str(tmp_path))
        await seq.start()
        await seq.submit_many(SETUP)
        await place(seq, ALICE, place_action("NVDA", "buy", "1", "99.00", tif="alo", cloid="ok"))
        await place(seq, ALICE, place_action("NVDA", "buy", "1", "99.00", cloid="ok"))  # DUPLICATE_CLOID
        await seq.stop()
        return index

    index = asyncio.run(run())
    assert isinstance(index.answer(ALICE, "ok").statuses[0], p.Resting) and len(index) == 1
