"""The bots' client and the demo bots against the real gateway, sequencer, journal and
engine over loopback (``gateway_harness``).

gateway.md §6 catalogue item checked here:
 16  an injected sequence gap and an injected checksum mismatch: the reference client
     resyncs and ends equal to the engine's book.
"""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import msgspec
import pytest
import pytest_asyncio

pytest.importorskip("api.sequencer", reason="the end-to-end tests need the node's sequencer")
from gateway_harness import ALICE, BOB, NETWORK, NVDA, TSLA, Node, book_levels, warm_engine  # noqa: E402

from api import protocol as p  # noqa: E402
from api.bots import BotMarket, bot_coroutines  # noqa: E402
from api.client import Client, ClientConfig, PostRefused, place_action  # noqa: E402

FAST = dict(network=NETWORK, ack_timeout_s=5.0, backoff_initial_s=0.01, backoff_max_s=0.05)


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    warm_engine()


@pytest_asyncio.fixture
async def node(tmp_path, aiohttp_server):
    node = Node(tmp_path)
    await node.start()
    server = await aiohttp_server(node.app)
    node.url = str(server.make_url("/ws"))
    yield node
    await server.close()
    await node.sequencer.stop()


def client_for(node: Node, signer) -> Client:
    return Client(ClientConfig(node.url, **FAST), signer, rng=random.Random(1), clock_ms=node.clock.ms)


async def eventually(predicate, timeout: float = 20.0) -> None:
    async def poll():
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def engine_view(node: Node, spec) -> tuple[list, list]:
    return book_levels(node.engine, spec.market_id, 0, spec), book_levels(node.engine, spec.market_id, 1, spec)


def local_view(book) -> tuple[list, list]:
    return book.bids(), book.asks()


async def churn(client: Client, market: str, n: int, seed: int, mid: int = 100) -> None:
    """Post-only orders around ``mid`` and cancels of some of them, awaited one by one."""
    rng = random.Random(seed)
    live: list[int] = []
    for _ in range(n):
        if live and rng.random() < 0.35:
            await client.cancel(market, live.pop(rng.randrange(len(live))))
            continue
        side = rng.choice(["buy", "sell"])
        ticks = rng.randrange(1, 40)
        price = Decimal(mid) - Decimal(ticks) / 20 if side == "buy" else Decimal(mid) + Decimal(ticks) / 20
        status = await client.place(market, side, Decimal(rng.randrange(2, 20)) / 10, price, tif="alo")
        assert isinstance(status, p.Resting), status
        live.append(status.oid)


@pytest.mark.asyncio
async def test_awaited_acks_for_place_amend_batch_and_cancel(node):
    async with client_for(node, node.alice) as client:
        assert client.account == ALICE
        rested = await client.place("NVDA", "buy", "2", "99.50", cloid="e2e-1")
        assert isinstance(rested, p.Resting) and rested.cloid == "e2e-1"
        amended = await client.amend("NVDA", rested.oid, size="1")
        assert isinstance(amended, p.Amended) and amended.size == "1.000"
        statuses = await client.batch([place_action("NVDA", "sell", "1", "100.50"),
                                       place_action("NVDA", "buy", "1", "99.995"),  # off tick
                                       p.Cancel("NVDA", rested.oid)])
        assert [type(s) for s in statuses] == [p.Resting, p.Rejected, p.Cancelled]
        assert [o.oid for o in node.engine.open_orders(ALICE)] == [statuses[0].oid]
        assert isinstance(await client.cancel_all("NVDA"), p.CancelledAll)
        assert node.engine.open_orders(ALICE) == []


@pytest.mark.asyncio
async def test_a_refused_post_raises_with_the_gateways_code(node):
    async with client_for(node, node.reader) as client:  # a read-only key
        with pytest.raises(PostRefused) as refused:
            await client.place("NVDA", "buy", "1", "99")
        assert refused.value.code < 0


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", ["gap", "checksum"])
async def test_injected_fault_resyncs_and_the_book_ends_equal_to_the_engines(node, fault):
    async with client_for(node, node.alice) as trader, client_for(node, None) as watcher:
        await churn(trader, "NVDA", 8, seed=1)
        book = await watcher.book("NVDA")
        injected: list[int] = []

        def inject(push):
            if isinstance(push, p.L2DeltaPush) and not push.data.snapshot and len(injected) < 2:
                injected.append(push.data.seq)
                if fault == "gap":
                    return None
                return p.L2DeltaPush(msgspec.structs.replace(push.data, checksum=push.data.checksum ^ 0x5A5A))
            return push

        watcher.push_filter = inject
        await churn(trader, "NVDA", 30, seed=2)
        await eventually(lambda: book.synced and local_view(book) == engine_view(node, NVDA))
        kinds = {r.kind for r in book.resyncs}
        assert kinds == {"SequenceGap" if fault == "gap" else "ChecksumMismatch"}
        rest = await watcher.get_book("NVDA")
        assert (rest.bids, rest.asks) == engine_view(node, NVDA)


@pytest.mark.asyncio
async def test_reconnect_logs_on_resubscribes_and_the_book_catches_up(node):
    async with client_for(node, node.alice) as client:
        books = [await client.book("NVDA"), await client.book("TSLA")]
        await client.subscribe(p.OrderUpdatesSub())
        await churn(client, "NVDA", 6, seed=3)
        await client.drop_connection()
        await eventually(lambda: client.connections == 2 and client.connected.is_set())
        await churn(client, "NVDA", 6, seed=4)
        await churn(client, "TSLA", 6, seed=5, mid=250)
        for book, spec in zip(books, (NVDA, TSLA)):
            await eventually(lambda: book.synced and local_view(book) == engine_view(node, spec))
            assert [r.kind for r in book.resyncs] == ["reconnect"]
        await eventually(lambda: sorted(client.orders) == sorted(o.oid for o in node.engine.open_orders(ALICE)))


@pytest.mark.asyncio
async def test_demo_bots_quote_around_the_mark_and_the_taker_trades(node):
    market = BotMarket("NVDA", NVDA.tick_size, NVDA.lot_size, quote_usd=Decimal(500), taker_interval_s=0.05)
    tasks = [asyncio.ensure_future(c) for c in
             bot_coroutines(node.url, maker=node.alice, taker=node.bob, markets=[market], network=NETWORK,
                            clock_ms=node.clock.ms)]
    try:
        await eventually(lambda: len(node.engine.open_orders(ALICE)) >= 5
                         and node.engine.position(BOB, 0).size_lots != 0, timeout=10.0)
        bids, asks = engine_view(node, NVDA)
        assert Decimal(bids[0][0]) < 100 < Decimal(asks[0][0])
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.asyncio
async def test_reduce_only_and_the_dead_man_switch_through_the_client(node):
    async with client_for(node, node.alice) as client:
        refused = await client.place("NVDA", "sell", "1", "100.50", reduce_only=True)  # no position to reduce
        assert isinstance(refused, p.Rejected)
        assert isinstance(await client.place("NVDA", "buy", "1", "99.50"), p.Resting)
        status = await client.schedule_cancel(node.clock.ms() + 60_000)
        assert not isinstance(status, p.Rejected), status
        assert isinstance(await client.schedule_cancel(None), p.ActionStatus)


@pytest.mark.asyncio
async def test_account_actions_through_the_client(node):
    signer = node.keys.create_ed25519(ALICE, ("read", "trade", "transfer"), key_id="alice-transfer",
                                      seed=bytes(range(3, 35)))
    async with client_for(node, signer) as client:
        assert await client.set_leverage("NVDA", 4) == p.LeverageSet("NVDA", 4)
        assert await client.set_margin_mode("TSLA", "isolated") == p.MarginModeSet("TSLA", "isolated")
        assert isinstance(await client.adjust_margin("TSLA", Decimal("1")), p.Rejected)  # flat: nothing to adjust
        assert await client.withdraw(Decimal("250")) == p.Withdrawn("250", "99750")
    assert node.engine.position(ALICE, 0).leverage == 4 and node.engine.position(ALICE, 1).isolated
    assert node.engine.collateral(ALICE) == 99_750 * 10**6
