"""spec/gateway.md §6 items 9, 15 and 16 over real sockets: a signed request replayed after a
restart, a stuck client that never reads (closed as a slow consumer while another client
gets every message), a silent client (idle close) beside one that answers pings, a
reconnect storm of 500 clients, and a client that resyncs after an injected sequence gap
and an injected checksum mismatch and ends equal to the engine's book."""

from __future__ import annotations

import asyncio

import socket

import aiohttp
import msgspec
import pytest

from api import protocol as p
from api.errors import GatewayCode as G
from api.l2book import L2Book, ResyncRequired
from api.ratelimit import Limits
from gateway_harness import FAST, NVDA, Node, WsClient, book_levels, place, warm_engine

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    warm_engine()


async def started(tmp_path, config=FAST, **limits) -> Node:
    node = Node(tmp_path, limits=Limits(**limits), config=config)
    await node.start()
    return node


async def test_9_a_replayed_request_is_refused_after_a_restart(tmp_path, aiohttp_client):
    node = await started(tmp_path)
    frame = node.signed(node.alice, place("NVDA", "buy", "1", "99.00"), 1)
    client = await aiohttp_client(node.app)
    conn = WsClient(await client.ws_connect("/ws"), node)
    await conn.send(frame)
    assert isinstance((await conn.next("post")).data.response, p.PostOk)
    await conn.ws.close()
    await node.sequencer.stop()

    again = Node(tmp_path)
    await again.start(setup=False)
    try:
        before = again.engine.state_hash()
        client = await aiohttp_client(again.app)
        conn = WsClient(await client.ws_connect("/ws"), again)
        await conn.send(frame)
        assert (await conn.next("post")).data.response.code == -G.NONCE_REUSED
        assert again.engine.state_hash() == before
    finally:
        await again.sequencer.stop()


async def test_15_a_stuck_client_is_closed_while_a_healthy_one_gets_everything(tmp_path, aiohttp_client):
    node = await started(tmp_path, msgspec.structs.replace(FAST, send_buffer_bytes=32 * 1024),
                         outbound_queue_max=16, orders_per_s=100_000, orders_burst=100_000,
                         cancels_per_s=100_000, cancels_burst=100_000, messages_per_s=1000, messages_burst=1000)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=small_receive_buffer))
    try:
        client = await aiohttp_client(node.app)
        stuck = WsClient(await session.ws_connect(client.make_url("/ws")), node)
        await stuck.logon(node.alice)
        for sub in (p.OrderUpdatesSub(), p.UserFillsSub(), p.TradesSub(market="NVDA"), p.L2DeltaSub(market="NVDA")):
            await stuck.subscribe(sub)  # ... and from now on it never reads
        healthy = WsClient(await client.ws_connect("/ws"), node)
        await healthy.subscribe(p.TradesSub(market="NVDA"))
        maker = WsClient(await client.ws_connect("/ws"), node)
        await maker.logon(node.alice)
        taker = WsClient(await client.ws_connect("/ws"), node)
        await taker.logon(node.bob)
        metrics = node.gateway.metrics
        traded = rounds = 0
        while metrics.value("afterhours_slow_consumers_total") == 0:
            rounds += 1
            assert rounds <= 150, "the stuck client was never closed"
            asks = [place("NVDA", "sell", "0.1", f"100.{k:02d}") for k in range(50)]
            await maker.post(p.Batch(asks))
            took = await taker.post(place("NVDA", "buy", "5", "100.49", tif="ioc"))
            assert took.statuses[0].filledSize == "5.000"
            traded += 50
        received = 0
        while received < traded:
            received += len((await healthy.next("trades")).data.trades)
        assert received == traded
        await healthy.send(p.Ping())
        assert isinstance(await healthy.next("pong"), p.PongPush)
        for _ in range(50):
            if len(node.gateway.connections) == 3:
                break
            await asyncio.sleep(0.1)
        assert len(node.gateway.connections) == 3  # the stuck one is gone, the others are not
        assert metrics.value("afterhours_connections_closed_total", reason="slow_consumer") == 1
    finally:
        await session.close()
        await node.sequencer.stop()


def small_receive_buffer(addr_info) -> socket.socket:
    """A client socket with a small, fixed receive buffer (no autotuning): a stuck reader
    stops the server's writes after a few kilobytes rather than megabytes."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=kind, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    return sock


async def test_15_a_silent_client_is_closed_and_one_that_answers_pings_is_not(tmp_path, aiohttp_client):
    node = await started(tmp_path, idle_timeout_s=2, ping_interval_s=1)
    try:
        client = await aiohttp_client(node.app)
        silent = await client.ws_connect("/ws", autoping=False)
        lively = await client.ws_connect("/ws", autoping=True)
        seen: list = []

        async def read_lively():
            async for msg in lively:
                seen.append(msg)

        reader = asyncio.create_task(read_lively())
        first = await silent.receive(timeout=5)
        assert first.type == aiohttp.WSMsgType.PING  # the server pings; this client will not answer
        error = await silent.receive(timeout=5)
        assert p.decode_push(error.data).data.code == -G.IDLE_TIMEOUT
        closing = await silent.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1001
        assert not lively.closed
        reader.cancel()
        await lively.close()
    finally:
        await node.sequencer.stop()


async def test_15_a_reconnect_storm_of_500_clients_is_bounded(tmp_path, aiohttp_server):
    node = await started(tmp_path, connects_per_ip_per_s=1, connects_per_ip_burst=500)
    try:
        server = await aiohttp_server(node.app)
        url = server.make_url("/ws")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def one() -> int:
                async with session.ws_connect(url) as ws:
                    await ws.send_str(p.encode(p.Subscribe(p.L2DeltaSub(market="NVDA"))).decode())
                    while True:
                        push = p.decode_push((await ws.receive(timeout=30)).data)
                        if isinstance(push, p.L2DeltaPush):
                            return push.data.seq

            seqs = await asyncio.gather(*(one() for _ in range(500)))
            assert set(seqs) == {node.gateway.publisher.books[0].seq}
            for _ in range(20):  # the bucket refilled by a few during the storm: spend those
                refused = await session.get(url)
                if refused.status != 400:
                    break
            assert refused.status == 429 and (await refused.json())["code"] == -G.IP_CONNECT_RATE
            assert int(refused.headers["Retry-After"]) >= 1
        for _ in range(50):
            if not node.gateway.connections:
                break
            await asyncio.sleep(0.1)
        assert node.gateway.connections == {}
        assert node.gateway.publisher.subscriber_count(p.L2DeltaSub(market="NVDA")) == 0
    finally:
        await node.sequencer.stop()


async def test_16_a_client_resyncs_after_a_gap_and_a_checksum_mismatch(tmp_path, aiohttp_client):
    node = await started(tmp_path)
    try:
        client = await aiohttp_client(node.app)
        watcher = WsClient(await client.ws_connect("/ws"), node)
        alice = WsClient(await client.ws_connect("/ws"), node)
        await alice.logon(node.alice)
        key = p.L2DeltaSub(market="NVDA")
        await watcher.subscribe(key)
        book, resyncs = L2Book("NVDA"), 0
        book.apply((await watcher.next("l2Delta")).data)
        injected = ["gap", "checksum"]
        for k in range(8):
            await alice.post(place("NVDA", "buy", "1", f"99.{k:02d}"))
            msg = (await watcher.next("l2Delta")).data
            if k in (2, 5):
                fault = injected.pop(0)
                if fault == "gap":
                    continue  # this delta is lost
                level = msg.bids[0]
                msg = p.L2Delta(msg.market, msg.snapshot, msg.seq, msg.prevSeq, msg.checksum, msg.time,
                                [(level[0], "7.000")], msg.asks)
            try:
                if book.synced or msg.snapshot:
                    book.apply(msg)
            except ResyncRequired:
                resyncs += 1
                await watcher.send(p.Subscribe(key))
                await watcher.next("subscriptionResponse")
                book.apply((await watcher.next("l2Delta", where=lambda x: x.data.snapshot)).data)
        assert resyncs == 2 and injected == []
        assert book.bids() == book_levels(node.engine, 0, 0, NVDA)
        assert len(book.bids()) == 8
    finally:
        await node.sequencer.stop()


async def test_15_every_connection_is_closed_at_its_maximum_age(tmp_path, aiohttp_client):
    node = await started(tmp_path, max_connection_age_s=1, idle_timeout_s=10**6)
    try:
        client = await aiohttp_client(node.app)
        conn = WsClient(await client.ws_connect("/ws"), node)
        assert (await conn.error(timeout=5)).code == -G.CONNECTION_TOO_OLD
        assert await conn.closed() == 1001
        for _ in range(50):  # counted when the server's handler has ended
            if node.gateway.metrics.value("afterhours_connections_closed_total", reason="age"):
                break
            await asyncio.sleep(0.05)
        assert node.gateway.metrics.value("afterhours_connections_closed_total", reason="age") == 1
    finally:
        await node.sequencer.stop()
