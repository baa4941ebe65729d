"""The bots' client against a stand-in gateway over a real loopback socket: awaited
acknowledgements, refused and unanswered posts, the self-healing local book, reconnection
with logon and resubscription, the heartbeat.

gateway.md §6 catalogue item checked here (client side; end to end in test_client_e2e.py):
 16  an injected sequence gap and an injected checksum mismatch: the client resyncs by
     itself and ends equal to the server's book.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import msgspec
import pytest
import pytest_asyncio
from aiohttp import web
from client_fake_gateway import NETWORK, REFUSED_MARKET, SILENT_MARKET, FakeGateway

from api import protocol as p
from api.client import (
    AckTimeout,
    Client,
    ClientConfig,
    ConnectionLost,
    PostRefused,
    RequestFailed,
    backoff_delays,
    place_action,
)
from api.auth import Signer

FAST = dict(network=NETWORK, ack_timeout_s=2.0, backoff_initial_s=0.01, backoff_max_s=0.05)


@pytest_asyncio.fixture
async def gateway(aiohttp_server):
    fake = FakeGateway()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("/ws"))
    yield fake
    await fake.drop_all()


@pytest_asyncio.fixture
async def client(gateway):
    async with Client(ClientConfig(gateway.url, **FAST), gateway.signer, rng=random.Random(1)) as c:
        yield c


async def eventually(predicate, timeout: float = 20.0) -> None:
    async def poll():
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


def server_view(gateway: FakeGateway, market: str):
    book = gateway.book(market)
    return book.seq, book.levels("buy"), book.levels("sell")


def local_view(book):
    return book.seq, book.bids(), book.asks()


# ------------------------------------------------------------------ pure parts


def test_config_defaults_are_locked():
    assert msgspec.to_builtins(ClientConfig("ws://h:1/ws")) == {
        "url": "ws://h:1/ws", "network": "local", "ack_timeout_s": 10.0, "heartbeat_interval_s": 10.0,
        "heartbeat_timeout_s": 30.0, "backoff_initial_s": 0.05, "backoff_max_s": 5.0,
        "backoff_multiplier": 2.0, "max_in_flight": 100, "reconnect": True, "sync_clock": True,
    }
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"url": "ws://h:1/ws", "retries": 3}, ClientConfig)


def test_backoff_grows_to_the_cap_with_jitter_in_the_upper_half():
    cfg = ClientConfig("ws://h:1/ws", backoff_initial_s=0.1, backoff_max_s=1.0, backoff_multiplier=2.0)
    delays = list(itertools.islice(backoff_delays(cfg, random.Random(5)), 8))
    bases = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    assert all(base / 2 <= d < base for d, base in zip(delays, bases))


def test_place_action_writes_decimals_as_wire_strings():
    from decimal import Decimal

    action = place_action("NVDA", "buy", Decimal("1.50"), 180, tif="alo", cloid="q1")
    wire = msgspec.json.decode(p.encode(action))
    assert {k: wire[k] for k in ("type", "market", "side", "size", "price", "tif", "cloid")} == {
        "type": "place", "market": "NVDA", "side": "buy", "size": "1.50", "price": "180", "tif": "alo", "cloid": "q1"}


def test_http_base_of_the_websocket_url():
    assert Client(ClientConfig("ws://127.0.0.1:8080/ws")).http_base == "http://127.0.0.1:8080"
    assert Client(ClientConfig("wss://node.example/ws")).http_base == "https://node.example"


# ------------------------------------------------------------------ acknowledgements


@pytest.mark.asyncio
async def test_logon_then_place_cancel_and_batch_each_await_their_own_answer(gateway, client):
    assert client.account == 7 and gateway.logons == 1

    placed = await asyncio.gather(*(client.place("NVDA", "buy", "1", f"{100 + n}", cloid=f"c{n}") for n in range(6)))
    assert [type(s) for s in placed] == [p.Resting] * 6
    assert [s.cloid for s in placed] == [f"c{n}" for n in range(6)]  # each answer matched to its post

    cancelled = await client.cancel("NVDA", placed[0].oid)
    assert cancelled == p.Cancelled(placed[0].oid)
    statuses = await client.batch([p.Cancel("NVDA", placed[1].oid), p.Cancel("NVDA", 999_999),
                                   place_action("NVDA", "sell", "2", "120")])
    assert [type(s) for s in statuses] == [p.Cancelled, p.Rejected, p.Resting]
    assert statuses[1].code == -3003


@pytest.mark.asyncio
async def test_a_refused_post_raises_with_its_code_and_an_unanswered_one_times_out(gateway):
    cfg = ClientConfig(gateway.url, **{**FAST, "ack_timeout_s": 0.2})
    async with Client(cfg, gateway.signer) as client:
        with pytest.raises(PostRefused) as refused:
            await client.place(REFUSED_MARKET, "buy", "1", "1")
        assert refused.value.code == -5901
        with pytest.raises(AckTimeout):
            await client.place(SILENT_MARKET, "buy", "1", "1")
        assert (await client.place("NVDA", "buy", "1", "1")).oid > 0  # the connection is still good


@pytest.mark.asyncio
async def test_a_bad_key_fails_the_logon_with_the_servers_code(gateway):
    stranger = Signer("demo-7", "ed25519", bytes(32))  # right key id, wrong key
    cfg = ClientConfig(gateway.url, **{**FAST, "reconnect": False})
    client = Client(cfg, stranger)
    with pytest.raises(RequestFailed) as failed:
        await client.connect()
    assert failed.value.code == -5107
    await client.close()


# ------------------------------------------------------------------ the local book


async def trade_some(client: Client, market: str, n: int, seed: int) -> None:
    rng = random.Random(seed)
    live: list[int] = []
    for _ in range(n):
        if live and rng.random() < 0.4:
            await client.cancel(market, live.pop(rng.randrange(len(live))))
        else:
            side = rng.choice(["buy", "sell"])
            price = 100 - rng.randrange(1, 15) if side == "buy" else 100 + rng.randrange(1, 15)
            live.append((await client.place(market, side, str(rng.randrange(1, 5)), str(price))).oid)


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", ["gap", "checksum"])
async def test_an_injected_fault_is_healed_by_a_resync_and_the_book_ends_equal(gateway, client, fault):
    book = await client.book("NVDA")
    await trade_some(client, "NVDA", 10, seed=1)
    injected = []

    def inject(push):
        if isinstance(push, p.L2DeltaPush) and not push.data.snapshot and len(injected) < 2:
            injected.append(push.data.seq)
            if fault == "gap":
                return None  # the delta is lost: the next one does not follow on
            return p.L2DeltaPush(msgspec.structs.replace(push.data, checksum=push.data.checksum ^ 1))
        return push

    client.push_filter = inject
    await trade_some(client, "NVDA", 30, seed=2)
    await eventually(lambda: local_view(book) == server_view(gateway, "NVDA"))

    kind = {"gap": "SequenceGap", "checksum": "ChecksumMismatch"}[fault]
    assert len(injected) == 2 and {r.kind for r in book.resyncs} == {kind}  # no resync waited for a timeout
    assert book.snapshots == 1 + len(book.resyncs)
    rest = await client.get_book("NVDA")
    assert (rest.seq, rest.bids, rest.asks) == local_view(book)


@pytest.mark.asyncio
async def test_repeated_gaps_in_two_markets_each_heal(gateway, client):
    books = [await client.book(m) for m in ("NVDA", "TSLA")]
    rng = random.Random(3)

    def drop_some_deltas(push):
        if isinstance(push, p.L2DeltaPush) and not push.data.snapshot and rng.random() < 0.15:
            return None
        return push

    client.push_filter = drop_some_deltas
    await asyncio.gather(trade_some(client, "NVDA", 40, seed=4), trade_some(client, "TSLA", 40, seed=5))
    client.push_filter = None
    for market in ("NVDA", "TSLA"):  # a lost last delta shows only when the next one comes
        await client.place(market, "buy", "1", "50")
    for book in books:
        await eventually(lambda: local_view(book) == server_view(gateway, book.market))
    assert all(book.resyncs for book in books)


# ------------------------------------------------------------------ reconnection


@pytest.mark.asyncio
async def test_reconnect_logs_on_again_resubscribes_and_fails_the_post_in_flight(gateway, client):
    book = await client.book("NVDA")
    await client.subscribe(p.TradesSub("NVDA"))
    await trade_some(client, "NVDA", 5, seed=6)

    lost = asyncio.ensure_future(client.place(SILENT_MARKET, "buy", "1", "1"))
    await asyncio.sleep(0.05)
    await gateway.drop_all()
    with pytest.raises(ConnectionLost):
        await lost
    await eventually(lambda: client.connections == 2 and client.connected.is_set())

    assert gateway.logons == 2
    await trade_some(client, "NVDA", 10, seed=7)  # changes made after the reconnection
    await eventually(lambda: local_view(book) == server_view(gateway, "NVDA"))
    assert [r.kind for r in book.resyncs] == ["reconnect"]


@pytest.mark.asyncio
async def test_the_client_keeps_trying_until_the_server_is_back(unused_tcp_port):
    fake = FakeGateway()
    port = unused_tcp_port
    client = Client(ClientConfig(f"ws://127.0.0.1:{port}/ws", **FAST), fake.signer)
    connecting = asyncio.ensure_future(client.connect(timeout=3.0))
    await asyncio.sleep(0.2)  # several refused attempts
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        await connecting
        assert client.connections == 1 and fake.logons == 1
    finally:
        await client.close()
        await runner.cleanup()


@pytest.mark.asyncio
async def test_heartbeat_pings_and_a_silent_server_is_left_for_a_new_connection(gateway):
    cfg = ClientConfig(gateway.url, **{**FAST, "heartbeat_interval_s": 0.05, "heartbeat_timeout_s": 0.3})
    async with Client(cfg, gateway.signer) as client:
        await eventually(lambda: gateway.pings >= 3)
        gateway.silence_all()
        await eventually(lambda: client.connections >= 2 and client.connected.is_set())


@pytest.mark.asyncio
async def test_a_lost_resync_snapshot_is_asked_for_again(gateway):
    cfg = ClientConfig(gateway.url, **{**FAST, "ack_timeout_s": 0.2})
    async with Client(cfg, gateway.signer) as client:
        book = await client.book("NVDA")
        dropped = []

        def lose_the_first_gap_and_its_snapshot(push):
            if isinstance(push, p.L2DeltaPush) and len(dropped) < 2 and (push.data.snapshot or not dropped):
                dropped.append(push.data.snapshot)
                return None
            return push

        client.push_filter = lose_the_first_gap_and_its_snapshot
        await trade_some(client, "NVDA", 6, seed=8)
        await eventually(lambda: local_view(book) == server_view(gateway, "NVDA"))
        assert dropped == [False, True]
        assert [r.kind for r in book.resyncs] == ["SequenceGap", "timeout"]


@pytest.mark.asyncio
async def test_logon_nonces_follow_the_servers_clock_when_ours_is_off(gateway):
    skewed = lambda: int(time.time() * 1000) - 3_600_000  # noqa: E731 - an hour behind
    async with Client(ClientConfig(gateway.url, **FAST), gateway.signer, clock_ms=skewed) as client:
        assert abs(client.clock_offset_ms - 3_600_000) < 5_000 and gateway.logons == 1
    cfg = ClientConfig(gateway.url, **{**FAST, "sync_clock": False, "reconnect": False})
    with pytest.raises(RequestFailed) as failed:
        await Client(cfg, gateway.signer, clock_ms=skewed).connect()
    assert failed.value.code == -5121  # too old
