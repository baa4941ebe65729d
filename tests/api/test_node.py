"""The node in-process: health over a real socket, the demo account, keys that survive a
restart, and a weekend start that prices a stock internally."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from api.auth import NonceStore
from api.config import DEFAULT_MARKETS, NodeConfig
from api.node import Node
from api.nonce_log import NonceLog
from api.sequencer import SequencerUnavailable
from engine.codes import MarketMode
from engine.commands import Deposit
from engine.journal import JournalMismatch
from oracle.calendar import ns_from_datetime, session_at
from oracle.session import Session

NVDA, SPACEX = DEFAULT_MARKETS[0], DEFAULT_MARKETS[5]
SATURDAY_NOON = ns_from_datetime(datetime(2026, 5, 16, 12, 0, tzinfo=ZoneInfo("America/New_York")))


def config(tmp_path, **kw) -> NodeConfig:
    base = dict(port=0, data_dir=str(tmp_path / "data"), bots=False, oracle=False, max_orders=1 << 12,
                max_accounts=64, markets=(NVDA, SPACEX), tick_interval_s=0.05)
    return NodeConfig(**(base | kw))


async def get_health(node: Node) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{node.rest_url}/health") as resp:
            return resp.status, await resp.json()


def test_health_the_demo_account_and_a_restart(tmp_path):
    lines: list[str] = []

    async def run(cfg):
        node = Node(cfg, out=lines.append)
        await node.start()
        status, body = await get_health(node)
        out = dict(status=status, body=body, collateral=node.engine.collateral(cfg.demo_account),
                   key=node.demo.export(), seq=node.sequencer.seq)
        await node.sequencer.record_nonce(node.demo.key_id, 1_000)
        await node.stop()
        out["final"] = (node.sequencer.seq, node.sequencer.engine.state_hash())
        return out

    cfg = config(tmp_path)
    first = asyncio.run(run(cfg))
    assert first["status"] == 200 and first["body"]["status"] == "ok" and first["body"]["seq"] >= 1
    assert first["collateral"] == 1_000_000 * 10**6  # demo_deposit, in atoms
    assert any("ws://127.0.0.1:" in line and "/ws" in line for line in lines)
    assert any("Signer.parse" in line for line in lines)  # the connection example
    second = asyncio.run(run(cfg))
    assert second["key"] == first["key"]  # the same credential, not a new key
    assert second["collateral"] == first["collateral"]  # not funded twice
    assert second["seq"] >= first["final"][0]
    resumed = f"resumed from the journal at seq {first['final'][0]}, state hash {first['final'][1]}"
    assert any(resumed in line for line in lines)
    store = NonceStore.load(NonceLog.open(cfg.data_dir).state())
    assert store.check("demo-1", 1_000, 2_000) is not None  # the logon nonce survived the restart


def test_a_disk_failure_turns_health_degraded_and_refuses_actions(tmp_path):
    def broken_fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    async def run():
        node = Node(config(tmp_path, tick_interval_s=60.0), out=lambda text: None)
        await node.start()
        node.sequencer.journaled.journal.ops.fsync = broken_fsync
        with pytest.raises(SequencerUnavailable, match="disk full during fsync"):
            await node.sequencer.submit(Deposit(account=5, amount=Decimal("1")))
        status, body = await get_health(node)
        with pytest.raises(SequencerUnavailable, match="accepts no actions: journal failed: disk full"):
            await node.sequencer.submit(Deposit(account=5, amount=Decimal("1")))
        await node.stop()
        return status, body

    status, body = asyncio.run(run())
    assert status == 503 and body["status"] == "degraded" and "disk full" in body["reason"]


def test_a_node_first_started_on_a_weekend_prices_the_stock_internally(tmp_path):
    offset_s = (SATURDAY_NOON - time.time_ns()) / 1e9
    cfg = config(tmp_path, oracle=True, time_offset_s=offset_s)

    async def run():
        node = Node(cfg, out=lambda text: None)
        await node.start()
        await asyncio.wait_for(node.oracle_ready.wait(), 120)
        for _ in range(200):
            if node.engine.mode(0).mode == MarketMode.INTERNAL:
                break
            await asyncio.sleep(0.05)
        modes = node.engine.mode(0), node.engine.mode(1)
        sessions = node.session_of(0), node.session_of(1)
        await node.stop()
        return modes, sessions

    (nvda, spacex), sessions = asyncio.run(run())
    assert sessions == ("closed_weekend", "internal_only")  # what the gateway's market channel shows
    assert nvda.mode == MarketMode.INTERNAL
    assert nvda.band_low < nvda.oracle < nvda.band_high and nvda.ref == nvda.external  # around the close
    assert abs(Decimal(nvda.oracle) / 100 - NVDA.start_price) < NVDA.start_price / 4
    assert spacex.mode == MarketMode.PRE_IPO and spacex.oracle == 20_000


def test_a_data_directory_of_other_markets_is_refused_with_a_hint(tmp_path):
    async def run(cfg):
        node = Node(cfg, out=lambda text: None)
        try:
            await node.start()
        finally:
            await node.stop()

    asyncio.run(run(config(tmp_path)))
    with pytest.raises(JournalMismatch, match="another --data-dir"):
        asyncio.run(run(config(tmp_path, markets=(NVDA,))))



def test_the_us_markets_go_dark_on_friday_at_2000_new_york_time():
    ny = ZoneInfo("America/New_York")
    before = ns_from_datetime(datetime(2026, 5, 15, 19, 59, 59, tzinfo=ny))
    after = ns_from_datetime(datetime(2026, 5, 15, 20, 0, 0, tzinfo=ny))
    calendar = NVDA.calendar()
    assert session_at(before, calendar).session == Session.POST
    assert session_at(after, calendar).session == Session.CLOSED_WEEKEND
    assert session_at(after, SPACEX.calendar()).session == Session.INTERNAL_ONLY


@pytest.mark.parametrize("offset_s", [0.0, -86_400.0])
def test_the_bots_log_on_with_the_nodes_clock_when_it_is_shifted(tmp_path, monkeypatch, offset_s):
    import api.bots
    from api.node import default_bots

    seen: dict = {}
    monkeypatch.setattr(api.bots, "bot_coroutines", lambda url, **kw: seen.update(kw) or [])
    node = Node(config(tmp_path, time_offset_s=offset_s), clock_ns=lambda: 1_700_000_000_123_456_789)
    assert default_bots(node) == []
    if offset_s:
        assert seen["clock_ms"]() == 1_700_000_000_123
    else:
        assert seen["clock_ms"] is None  # the wall clock
