"""End to end over real sockets: a full trading round trip, two bots that see the same fills,
positions and funding, the book channels against the engine's book, REST reads and actions,
and the wire forms of reduce-only orders, triggers and the dead-man switch."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import pytest_asyncio

from api import protocol as p
from api.ratelimit import Limits
from engine.commands import OracleUpdate, Tick
from gateway_harness import ALICE, BOB, NVDA, Node, book_levels, connect, place, warm_engine

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    warm_engine()


@pytest_asyncio.fixture
async def node(tmp_path):
    # the tests move the clock by an hour (funding): no idle or age closes meanwhile
    node = Node(tmp_path, limits=Limits(idle_timeout_s=10**6, max_connection_age_s=10**7))
    await node.start()
    yield node
    await node.sequencer.stop()


async def test_round_trip_place_rest_fill_and_cancel(node, aiohttp_client):
    alice = await connect(aiohttp_client, node, node.alice)
    bob = await connect(aiohttp_client, node, node.bob)
    for sub in (p.OrderUpdatesSub(), p.UserFillsSub(), p.PositionsSub(), p.AccountSub()):
        await alice.subscribe(sub)
    snapshot = await alice.next("orderUpdates")
    assert snapshot.data.isSnapshot and snapshot.data.orders == [] and snapshot.data.account == ALICE
    assert (await alice.next("account")).data.collateral == "100000"

    rested = await alice.post(place("NVDA", "buy", "2", "99.50", cloid="a-1"))
    assert isinstance(rested, p.PostOk)
    [status] = rested.statuses
    assert isinstance(status, p.Resting) and status.cloid == "a-1" and status.filledSize == "0"
    update = (await alice.next("orderUpdates")).data.orders[0]
    assert (update.oid, update.status, update.price, update.remaining) == (status.oid, "open", "99.50", "2.000")

    taken = await bob.post(place("NVDA", "sell", "0.5", "99.00", tif="ioc"))
    [fill_status] = taken.statuses
    assert isinstance(fill_status, p.Filled)
    assert (fill_status.filledSize, fill_status.avgPrice) == ("0.500", "99.50")
    fills = (await alice.next("userFills", where=lambda push: not push.data.isSnapshot)).data.fills
    assert [(f.side, f.price, f.size, f.liquidity, f.fee) for f in fills] == [("buy", "99.50", "0.500", "maker", "0.004975")]
    positions = (await alice.next("positions", where=lambda push: not push.data.isSnapshot)).data.positions
    assert [(x.market, x.size, x.entryPrice) for x in positions] == [("NVDA", "0.500", "99.50")]

    cancelled = await alice.post(p.Cancel(market="NVDA", oid=status.oid))
    [c] = cancelled.statuses
    assert isinstance(c, p.Cancelled) and c.oid == status.oid and c.cloid == "a-1"
    final = (await alice.next("orderUpdates", where=lambda push: push.data.orders[0].status == "cancelled")).data
    assert final.orders[0].remaining == "1.500"
    assert node.engine.open_orders(ALICE) == []
    assert node.engine.position(ALICE, 0).size_lots == 500 and node.engine.position(BOB, 0).size_lots == -500


async def test_two_bots_see_the_same_fills_positions_and_funding(node, aiohttp_client):
    alice = await connect(aiohttp_client, node, node.alice)
    bob = await connect(aiohttp_client, node, node.bob)
    for ws in (alice, bob):
        for sub in (p.UserFillsSub(), p.PositionsSub(), p.UserFundingsSub()):
            await ws.subscribe(sub)
    for price in ("100.00", "100.01", "100.02"):
        await alice.post(place("NVDA", "sell", "1", price))
    result = await bob.post(place("NVDA", "buy", "3", "100.02"))
    assert isinstance(result.statuses[0], p.Filled) and result.statuses[0].avgPrice == "100.01"

    a_fills = (await alice.next("userFills", where=lambda x: not x.data.isSnapshot)).data.fills
    b_fills = (await bob.next("userFills", where=lambda x: not x.data.isSnapshot)).data.fills
    assert [f.tradeId for f in a_fills] == [f.tradeId for f in b_fills]
    assert [(f.price, f.size) for f in a_fills] == [(f.price, f.size) for f in b_fills]
    assert {f.liquidity for f in a_fills} == {"maker"} and {f.liquidity for f in b_fills} == {"taker"}
    a_pos = (await alice.next("positions", where=lambda x: not x.data.isSnapshot)).data.positions[0]
    b_pos = (await bob.next("positions", where=lambda x: not x.data.isSnapshot)).data.positions[0]
    assert (a_pos.size, b_pos.size) == ("-3.000", "3.000")

    node.clock.advance(hours=1)
    await node.sequencer.submit(Tick(ts_ns=0))
    a_fund = (await alice.next("userFundings", where=lambda x: not x.data.isSnapshot)).data.fundings[0]
    b_fund = (await bob.next("userFundings", where=lambda x: not x.data.isSnapshot)).data.fundings[0]
    assert a_fund.rate == b_fund.rate and a_fund.oraclePrice == b_fund.oraclePrice
    assert (a_fund.positionSize, b_fund.positionSize) == ("-3.000", "3.000")
    paid = Decimal(a_fund.payment) + Decimal(b_fund.payment)
    assert paid <= 0  # payers round up, receivers down: never money from nothing
    assert node.engine.position(ALICE, 0).funding_atoms == int(Decimal(a_fund.payment) * 10**6)


async def test_l2delta_snapshot_then_deltas_track_the_engine_book(node, aiohttp_client):
    from api.l2book import L2Book

    watcher = await connect(aiohttp_client, node)
    alice = await connect(aiohttp_client, node, node.alice)
    bob = await connect(aiohttp_client, node, node.bob)
    await watcher.subscribe(p.L2DeltaSub(market="NVDA"))
    book = L2Book("NVDA")
    snapshot = (await watcher.next("l2Delta")).data
    assert snapshot.snapshot and snapshot.prevSeq is None
    book.apply(snapshot)
    await alice.post(p.Batch([place("NVDA", "buy", "1", f"99.{k:02d}") for k in range(10, 20)]))
    await bob.post(place("NVDA", "sell", "1.5", "99.18"))
    await alice.post(p.CancelAll(market="NVDA"))
    while True:
        delta = (await watcher.next("l2Delta")).data
        assert delta.prevSeq == book.seq
        book.apply(delta)
        if not delta.bids:
            continue
        if book.bids() == [] and book.asks() == []:
            break
    assert book.bids() == book_levels(node.engine, 0, 0, NVDA) == []


async def test_rest_book_action_health_schema_and_metrics(node, aiohttp_client):
    await connect(aiohttp_client, node)
    client = node._client
    body = node.alice.signed_action("local", place("NVDA", "sell", "1", "101.00"), node.nonce())
    resp = await client.post("/v1/action", data=p.encode(body))
    assert resp.status == 200
    answer = json.loads(await resp.read())
    assert answer["type"] == "ok" and answer["statuses"][0]["status"] == "resting"
    book = json.loads(await (await client.get("/v1/book", params={"market": "NVDA"})).read())
    assert book["asks"] == [["101.00", "1.000"]] and book["bids"] == [] and book["seq"] == answer["seq"]
    market = json.loads(await (await client.get("/v1/market", params={"market": "NVDA"})).read())
    assert market["oracle"] == "100.00" and market["mode"] == "external"
    health = json.loads(await (await client.get("/v1/health")).read())
    assert health["status"] == "ok" and health["seq"] == node.sequencer.seq
    schema = json.loads(await (await client.get("/v1/schema")).read())
    assert "Place" in schema["$defs"] and "reduceOnly" in schema["$defs"]["Place"]["properties"]
    metrics = await (await client.get("/metrics")).text()
    for name in ("afterhours_engine_lag_seconds", "afterhours_batch_commands_bucket", "afterhours_journal_fsync_seconds_count",
                 "afterhours_connections ", "afterhours_rejects_total", "afterhours_published_total"):
        assert name in metrics or name.strip() in metrics, name


async def test_reduce_only_triggers_and_the_dead_man_switch_on_the_wire(node, aiohttp_client):
    alice = await connect(aiohttp_client, node, node.alice)
    bob = await connect(aiohttp_client, node, node.bob)
    await alice.subscribe(p.OrderUpdatesSub())
    await bob.post(place("NVDA", "sell", "1", "100.00"))
    await alice.post(place("NVDA", "buy", "1", "100.00"))  # alice is long 1
    grow = await alice.post(place("NVDA", "buy", "1", "99.00", reduceOnly=True))
    assert grow.statuses[0].code == -2006  # REDUCE_ONLY_WOULD_INCREASE
    shrink = await alice.post(place("NVDA", "sell", "0.5", "101.00", reduceOnly=True))
    assert isinstance(shrink.statuses[0], p.Resting)

    stop = await alice.post(p.PlaceTrigger(market="NVDA", side="sell", triggerPrice="98.00"))
    [placed] = stop.statuses
    assert isinstance(placed, p.TriggerPlaced) and [t.tid for t in node.engine.triggers(ALICE)] == [placed.tid]
    gone = await alice.post(p.CancelTrigger(market="NVDA", tid=placed.tid))
    assert gone.statuses == [p.TriggerCancelled(placed.tid)] and node.engine.triggers(ALICE) == []

    deadline_ms = node.clock.ms() + 60_000
    scheduled = await alice.post(p.ScheduleCancel(at=deadline_ms))
    assert scheduled.statuses == [p.Scheduled(deadline_ms)]
    node.clock.advance(seconds=61)
    await node.sequencer.submit(Tick(ts_ns=0))
    fired = await alice.next("orderUpdates", where=lambda x: any(o.reason == "dead_man" for o in x.data.orders))
    assert [o.status for o in fired.data.orders] == ["cancelled"]
    assert node.engine.open_orders(ALICE) == []
    cleared = await alice.post(p.ScheduleCancel())
    assert cleared.statuses == [p.Scheduled(None)]


async def test_market_and_l2book_channels(node, aiohttp_client):
    watcher = await connect(aiohttp_client, node)
    alice = await connect(aiohttp_client, node, node.alice)
    await watcher.subscribe(p.MarketSub(market="TSLA"))
    info = (await watcher.next("market")).data
    assert (info.market, info.oracle, info.mark, info.mode, info.session) == ("TSLA", "250.00", "250.00", "external", "regular")
    await watcher.subscribe(p.L2BookSub(market="TSLA", depth=2))
    assert (await watcher.next("l2Book")).data.bids == []
    await alice.post(p.Batch([place("TSLA", "buy", "1", price) for price in ("249.00", "249.50", "249.95")]))
    top = (await watcher.next("l2Book")).data
    assert top.bids == [("249.95", "1.00"), ("249.50", "1.00")]
    await node.sequencer.submit(OracleUpdate(market=1, price=Decimal("251.00")))
    moved = (await watcher.next("market", where=lambda x: x.data.oracle == "251.00")).data
    assert moved.seq == node.sequencer.seq


async def test_a_degraded_node_refuses_actions_and_says_so(node, aiohttp_client):
    alice = await connect(aiohttp_client, node, node.alice)
    node.sequencer.healthy, node.sequencer.degraded_reason = False, "OSError: [Errno 28] No space left on device"
    before = node.engine.state_hash()
    refused = await alice.post(place("NVDA", "buy", "1", "99.00"))
    assert refused.code == -5901 and "No space left" in refused.msg  # WRITES_SUSPENDED
    health = await node._client.get("/v1/health")
    assert health.status == 503 and (await health.json())["status"] == "degraded"
    assert node.engine.state_hash() == before
    node.sequencer.healthy, node.sequencer.degraded_reason = True, None


async def test_signed_rest_queries_read_the_signers_account_only(node, aiohttp_client):
    alice = await connect(aiohttp_client, node, node.alice)
    client = node._client
    await alice.post(place("NVDA", "buy", "1", "99.00", cloid="keep"))
    await alice.post(place("NVDA", "sell", "1", "101.00", cloid="gone"))
    await alice.post(p.Cancel(market="NVDA", cloid="gone"))

    async def query(signer, q):
        nonce = node.nonce()
        body = p.SignedQuery(q, signer.key_id, nonce, signer.sign("local", nonce, q))
        resp = await client.post("/v1/query", data=p.encode(body))
        return resp.status, json.loads(await resp.read())

    status, orders = await query(node.alice, p.OpenOrdersQuery())
    assert status == 200 and [o["cloid"] for o in orders["orders"]] == ["keep"] and orders["account"] == ALICE
    status, gone = await query(node.alice, p.OrderStatusQuery(cloid="gone"))
    assert gone["order"]["status"] == "cancelled" and gone["order"]["reason"] == "user"
    status, unknown = await query(node.alice, p.OrderStatusQuery(cloid="never"))
    assert status == 200 and unknown["order"] is None
    status, account = await query(node.alice, p.AccountQuery())
    assert account["collateral"] == "100000"
    status, bobs = await query(node.bob, p.OrderStatusQuery(cloid="keep"))
    assert bobs["order"] is None  # alice's order is not bob's to read
    status, read_only = await query(node.reader, p.PositionsQuery())
    assert status == 200 and read_only["positions"] == []
    nonce = node.nonce()
    forged = p.SignedQuery(p.FillsQuery(), "alice", nonce, node.bob.sign("local", nonce, p.FillsQuery()))
    resp = await client.post("/v1/query", data=p.encode(forged))
    assert resp.status == 401 and json.loads(await resp.read())["code"] == -5107
