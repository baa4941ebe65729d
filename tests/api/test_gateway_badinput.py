"""spec/gateway.md §6, the bad-input catalogue, over real sockets. "Rejected" means a specific
code and sentence, no state change, and the engine's ``state_hash()`` unchanged.

Items here: 1 malformed messages, 2 oversized, binary and non-UTF-8 frames, 3 numbers that
are not decimal strings, 4 off-tick/off-lot/zero/negative/too large/too small, 5 overflow
and nonces ≥ 2^63, 6 unknown and halted markets, 7 bad signatures, 8 nonce replay and the
window, 10 revoked/expired/read-only keys, 11 other accounts, 12 a duplicate cloid in flight,
13 rate limits, 14 subscription floods, 22 self-trade prevention and a cancel racing a fill,
23 a client clock 5 s fast and a host clock that steps back. Items 9, 15 and 16 are in
test_gateway_liveness.py.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import pytest_asyncio
from aiohttp import WSMsgType

from api import protocol as p
from api.errors import GatewayCode as G
from api.ratelimit import Limits
from engine.codes import Reject as R
from engine.commands import MarketAdmin
from engine.journal import replay_directory
from gateway_harness import ALICE, BOB, CAROL, Node, WsClient, place, warm_engine

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    warm_engine()


@pytest_asyncio.fixture
async def node(tmp_path):
    node = Node(tmp_path, limits=Limits(messages_burst=400, messages_per_s=400, invalid_burst=400, invalid_per_s=400))
    await node.start()
    yield node
    await node.sequencer.stop()


@pytest_asyncio.fixture
async def ws(node, aiohttp_client):
    client = await aiohttp_client(node.app)
    node.http = client

    async def connect(signer=None) -> WsClient:
        conn = WsClient(await client.ws_connect("/ws"), node)
        if signer is not None:
            await conn.logon(signer)
        return conn

    return connect


def code(x) -> int:
    return x.code if not isinstance(x, p.PostOk) else x.statuses[0].code


async def test_1_malformed_messages_each_get_their_code(node, ws):
    conn = await ws()
    before = node.engine.state_hash()
    cases = [
        ('{"method": "ping"', G.MALFORMED_JSON),
        ('[1, 2]', G.NOT_AN_OBJECT),
        ('"ping"', G.NOT_AN_OBJECT),
        ('{"method": "fly"}', G.UNKNOWN_METHOD),
        ('{"method": "ping", "extra": 1}', G.UNKNOWN_FIELD),
        ('{"method": "subscribe", "subscription": {"type": "l2Delta", "market": "NVDA", "depth": 5}}', G.UNKNOWN_FIELD),
        ('{"method": "subscribe", "subscription": {"type": "weather"}}', G.UNKNOWN_CHANNEL),
    ]
    for text, expected in cases:
        await conn.send(text)
        err = await conn.error()
        assert err.code == -expected, text
        assert err.msg.startswith(p.compose_msg(expected).split(" (")[0][:30])
    await conn.send('{"method":"post","id":7,"action":{"type":"place","market":"NVDA","side":"buy","size":"1","px":"1"}}')
    answer = (await conn.next("post")).data
    assert answer.id == 7 and answer.response.code == -G.UNKNOWN_FIELD
    assert node.engine.state_hash() == before


async def test_2_oversized_binary_and_invalid_utf8(node, ws):
    before = node.engine.state_hash()
    conn = await ws()
    await conn.ws.send_bytes(b'{"method":"ping"}')
    assert (await conn.error()).code == -G.BINARY_FRAME
    await conn.send('{"method":"ping","pad":"' + "x" * (64 * 1024) + '"}')
    assert (await conn.error()).code == -G.MESSAGE_TOO_LARGE
    assert await conn.closed() == 1009
    conn = await ws()
    await conn.ws._writer.send_frame(b'{"method":"ping","x":"\xff"}', WSMsgType.TEXT)
    assert await conn.closed() == 1007  # RFC 6455: a text frame that is not UTF-8 fails the connection
    resp = await node.http.post("/v1/action", data=b'{"action":"\xff"}')
    assert resp.status == 400 and json.loads(await resp.read())["code"] == -G.INVALID_UTF8
    resp = await node.http.post("/v1/action", data=b"x" * (64 * 1024 + 1))
    assert resp.status == 413 and json.loads(await resp.read())["code"] == -G.MESSAGE_TOO_LARGE
    assert node.engine.state_hash() == before


@pytest.mark.parametrize("size_json, expected", [
    ("1", G.BAD_DECIMAL), ("1.5", G.BAD_DECIMAL), ("-0", G.BAD_DECIMAL), ("1e400", G.BAD_DECIMAL),
    ("NaN", G.MALFORMED_JSON), ("Infinity", G.MALFORMED_JSON),
    ('"NaN"', G.BAD_DECIMAL), ('"Infinity"', G.BAD_DECIMAL), ('"1e3"', G.BAD_DECIMAL), ('" 1"', G.BAD_DECIMAL),
    ('"-0"', R.SIZE_NOT_POSITIVE),
])
async def test_3_sizes_must_be_decimal_strings(node, ws, size_json, expected):
    conn = await ws(node.alice)
    before = node.engine.state_hash()
    await conn.send('{"method":"post","id":3,"action":{"type":"place","market":"NVDA","side":"buy","size":'
                    + size_json + ',"price":"100.00"}}')
    push = await conn.next(("post", "error"))
    got = push.data.response if isinstance(push, p.PostPush) else push.data
    assert code(got) == -expected
    assert node.engine.state_hash() == before


@pytest.mark.parametrize("price, size, expected", [
    ("100.001", "1", R.PRICE_OFF_TICK), ("100.00", "1.0001", R.SIZE_OFF_LOT), ("100.00", "0", R.SIZE_NOT_POSITIVE),
    ("100.00", "-1", R.SIZE_NOT_POSITIVE), ("100.00", "10001", R.SIZE_ABOVE_MAX), ("100.00", "0.001", R.NOTIONAL_BELOW_MIN),
    ("100.00", "99999999999999999999999", R.VALUE_OVERFLOW), ("99999999999999999999999", "1", R.VALUE_OVERFLOW),
    ("0", "1", R.PRICE_NOT_POSITIVE),
])
async def test_4_5_values_are_never_rounded(node, ws, price, size, expected):
    conn = await ws(node.alice)
    before = node.engine.state_hash()
    answer = await conn.post(place("NVDA", "buy", size, price))
    assert isinstance(answer, p.PostOk) and code(answer) == -expected, answer
    assert answer.statuses[0].msg.startswith(p.compose_msg(expected)[:20])
    assert node.engine.state_hash() == before


async def test_5_a_nonce_at_or_above_2_63_is_refused(node, ws):
    conn = await ws()
    post = node.signed(node.alice, p.Cancel(market="NVDA", oid=1), post_id=5)
    text = p.encode(post).decode().replace(f'"nonce":{post.nonce}', f'"nonce":{1 << 63}')
    await conn.send(text)
    assert (await conn.next("post")).data.response.code == -G.NONCE_OUT_OF_RANGE


async def test_6_unknown_and_halted_markets_cancels_still_allowed(node, ws):
    conn = await ws(node.alice)
    before = node.engine.state_hash()
    assert code(await conn.post(place("AAPL", "buy", "1", "100.00"))) == -R.UNKNOWN_MARKET
    await conn.send(p.Subscribe(p.TradesSub(market="AAPL")))
    assert (await conn.error()).code == -R.UNKNOWN_MARKET
    assert node.engine.state_hash() == before
    rested = await conn.post(place("NVDA", "buy", "1", "99.00"))
    await node.sequencer.submit(MarketAdmin(market=0, action="halt"))
    halted = node.engine.state_hash()
    assert code(await conn.post(place("NVDA", "buy", "1", "99.00"))) == -R.MARKET_HALTED
    assert node.engine.state_hash() == halted
    cancelled = await conn.post(p.Cancel(market="NVDA", oid=rested.statuses[0].oid))
    assert isinstance(cancelled.statuses[0], p.Cancelled)


async def test_7_bad_signatures_leave_the_nonce_unused(node, ws):
    conn = await ws()
    action = place("NVDA", "buy", "1", "99.00")
    nonce = node.nonce()
    good = node.signed(node.alice, action, 1, nonce)
    flipped = good.signature[:-1] + ("0" if good.signature[-1] != "0" else "1")
    wrong_key = node.signed(node.bob, action, 1, nonce).signature
    other_net = node.alice.post("testnet", 1, action, nonce).signature
    before = node.engine.state_hash()
    for signature in (flipped, wrong_key, other_net):
        await conn.send(p.Post(1, action, "alice", nonce, None, signature))
        assert (await conn.next("post")).data.response.code == -G.BAD_SIGNATURE
    await conn.send(p.Post(1, action, "carol", nonce, None, "00" * 31))
    assert (await conn.next("post")).data.response.code == -G.SIGNATURE_MALFORMED
    assert node.engine.state_hash() == before
    await conn.send(good)
    assert isinstance((await conn.next("post")).data.response, p.PostOk)


async def test_8_replays_and_the_nonce_window(node, ws):
    conn = await ws()
    action = p.CancelAll(market="NVDA")
    now = node.clock.ms()

    async def send(nonce: int, signer=node.alice) -> p.PostResponse:
        await conn.send(node.signed(signer, action, nonce % 1000, nonce))
        return (await conn.next("post", where=lambda x: x.data.id == nonce % 1000)).data.response

    assert isinstance(await send(now - 1000), p.PostOk)
    assert (await send(now - 1000)).code == -G.NONCE_REUSED
    assert (await send(now - 31_000)).code == -G.NONCE_TOO_OLD
    assert (await send(now + 60_000)).code == -G.NONCE_TOO_NEW
    base = now - 20_000
    for k in range(1, 101):  # carol's (HMAC) key: 100 nonces in flight at once, then a 101st below them
        await conn.send(node.signed(node.carol, action, 5000 + k, base + k))
    answers = [(await conn.next("post", where=lambda x, k=k: x.data.id == 5000 + k)).data.response for k in range(1, 101)]
    assert all(isinstance(a, p.PostOk) for a in answers)
    assert (await send(base, node.carol)).code == -G.NONCE_BELOW_KEPT
    assert isinstance(await send(base + 101, node.carol), p.PostOk)
    assert (await send(base + 1, node.carol)).code == -G.NONCE_EVICTED


async def test_10_revoked_expired_and_read_only_keys(node, ws):
    conn = await ws()
    node.keys.create_ed25519(CAROL, ("read", "trade"), key_id="old", expires_at_ms=node.clock.ms() - 1, seed=bytes(32))
    old = node.keys.get("old")
    from api.auth import Signer

    old_signer = Signer("old", "ed25519", bytes(32))
    assert old.kind == "ed25519"
    for signer, expected in ((node.reader, G.SCOPE_MISSING), (old_signer, G.KEY_EXPIRED)):
        await conn.send(node.signed(signer, place("NVDA", "buy", "1", "99.00"), 9))
        assert (await conn.next("post")).data.response.code == -expected
    node.keys.revoke("bob")
    await conn.send(node.signed(node.bob, place("NVDA", "buy", "1", "99.00"), 9))
    assert (await conn.next("post")).data.response.code == -G.KEY_REVOKED
    reader = await ws(node.reader)
    assert code(await reader.post(place("NVDA", "buy", "1", "99.00"))) == -G.SCOPE_MISSING


async def test_11_other_accounts_are_out_of_reach(node, ws):
    alice = await ws(node.alice)
    bob = await ws(node.bob)
    rested = await bob.post(place("NVDA", "sell", "1", "101.00"))
    before = node.engine.state_hash()
    await alice.send(node.signed(node.bob, p.CancelAll(), 4))
    assert (await alice.next("post")).data.response.code == -G.OTHER_ACCOUNT
    assert code(await alice.post(p.Cancel(market="NVDA", oid=rested.statuses[0].oid))) == -R.NOT_ORDER_OWNER
    await alice.send(p.Subscribe(p.OrderUpdatesSub(account=BOB)))
    assert (await alice.error()).code == -G.OTHER_ACCOUNT
    anonymous = await ws()
    await anonymous.send(p.Subscribe(p.UserFillsSub()))
    assert (await anonymous.error()).code == -G.NOT_LOGGED_ON
    assert code(await anonymous.post(p.CancelAll())) == -G.SIGNATURE_REQUIRED
    assert node.engine.state_hash() == before


async def test_12_a_duplicate_cloid_in_flight_makes_one_order(node, ws):
    alice = await ws(node.alice)
    action = place("NVDA", "buy", "1", "99.00", cloid="once")
    for k in (1, 2):
        await alice.send(p.Post(k, action))
    answers = [(await alice.next("post", where=lambda x, k=k: x.data.id == k)).data.response for k in (1, 2)]
    assert answers[0] == answers[1] and isinstance(answers[0].statuses[0], p.Resting)
    assert len(node.engine.open_orders(ALICE)) == 1
    assert await alice.post(action) == answers[0]  # a later retry: the original answer
    ioc = place("NVDA", "sell", "1", "99.00", tif="ioc", cloid="taker-1")
    bob = await ws(node.bob)
    for k in (1, 2):
        await bob.send(p.Post(k, ioc))
    bob_answers = [(await bob.next("post", where=lambda x, k=k: x.data.id == k)).data.response for k in (1, 2)]
    assert bob_answers[0] == bob_answers[1] and isinstance(bob_answers[0].statuses[0], p.Filled)
    assert node.engine.position(BOB, 0).size_lots == -1000


async def test_13_rate_limits_name_a_retry_and_cancels_still_pass(tmp_path, aiohttp_client):
    node = Node(tmp_path, limits=Limits(orders_per_s=1, orders_burst=2, messages_per_s=1, messages_burst=8))
    await node.start()
    try:
        client = await aiohttp_client(node.app)
        conn = WsClient(await client.ws_connect("/ws"), node)
        await conn.logon(node.alice)
        oids = [(await conn.post(place("NVDA", "buy", "1", f"99.{k:02d}"))).statuses[0].oid for k in (1, 2)]
        before = node.engine.state_hash()
        limited = await conn.post(place("NVDA", "buy", "1", "99.03"))
        assert limited.code == -G.ORDER_RATE_LIMITED and limited.retryAfterMs > 0
        assert node.engine.state_hash() == before
        assert isinstance((await conn.post(p.Cancel(market="NVDA", oid=oids[0]))).statuses[0], p.Cancelled)
        for _ in range(4):
            await conn.send(p.Ping())
        await conn.send(p.Ping())
        err = await conn.error()
        assert err.code == -G.RATE_LIMITED and err.retryAfterMs > 0
    finally:
        await node.sequencer.stop()


async def test_14_subscription_floods_and_duplicates(tmp_path, aiohttp_client):
    node = Node(tmp_path, limits=Limits(max_subscriptions=3))
    await node.start()
    try:
        client = await aiohttp_client(node.app)
        conn = WsClient(await client.ws_connect("/ws"), node)
        for _ in range(3):  # the same subscription three times: one subscription, a snapshot each time
            await conn.subscribe(p.L2DeltaSub(market="NVDA"))
            assert (await conn.next("l2Delta")).data.snapshot
        await conn.subscribe(p.TradesSub(market="NVDA"))
        await conn.subscribe(p.TradesSub(market="TSLA"))
        await conn.send(p.Subscribe(p.MarketSub(market="NVDA")))
        err = await conn.error()
        assert err.code == -G.TOO_MANY_SUBSCRIPTIONS and err.subscription == p.MarketSub(market="NVDA")
        await conn.send(p.Unsubscribe(p.TradesSub(market="TSLA")))
        await conn.next("subscriptionResponse")
        await conn.subscribe(p.MarketSub(market="NVDA"))
        assert node.gateway.publisher.subscriber_count(p.L2DeltaSub(market="NVDA")) == 1
    finally:
        await node.sequencer.stop()


@pytest.mark.parametrize("stp, taker_status, maker_left", [
    ("expire_maker", p.Resting, False), ("expire_taker", p.Cancelled, True), ("expire_both", p.Cancelled, False),
])
async def test_22_self_trade_prevention(node, ws, stp, taker_status, maker_left):
    alice = await ws(node.alice)
    maker = await alice.post(place("NVDA", "sell", "1", "100.00"))
    taker = await alice.post(place("NVDA", "buy", "1", "100.00", stp=stp))
    assert isinstance(taker.statuses[0], taker_status)
    if taker_status is p.Cancelled:
        assert taker.statuses[0].reason == "stp_taker"
    left = [o.oid for o in node.engine.open_orders(ALICE)]
    assert (maker.statuses[0].oid in left) == maker_left
    assert node.engine.position(ALICE, 0).size_lots == 0


async def test_22_a_cancel_racing_a_fill_has_one_outcome(node, ws):
    alice = await ws(node.alice)
    bob = await ws(node.bob)
    oid = (await alice.post(place("NVDA", "sell", "1", "100.00"))).statuses[0].oid
    cancel, take = await asyncio.gather(alice.post(p.Cancel(market="NVDA", oid=oid)),
                                        bob.post(place("NVDA", "buy", "1", "100.00", tif="ioc")))
    cancelled = isinstance(cancel.statuses[0], p.Cancelled)
    filled = isinstance(take.statuses[0], p.Filled)
    assert cancelled != filled
    assert node.engine.position(BOB, 0).size_lots == (1000 if filled else 0)
    assert node.engine.open_orders(ALICE) == []


async def test_23_a_fast_client_clock_and_a_host_clock_stepping_back(node, ws):
    conn = await ws()
    await conn.send(node.signed(node.alice, p.CancelAll(), 1, node.clock.ms() + 5_000))
    err = (await conn.next("post")).data.response
    assert err.code == -G.NONCE_TOO_NEW and "clock" in err.msg
    alice = await ws(node.alice)
    await alice.post(place("NVDA", "buy", "1", "99.00"))
    stamped = node.sequencer.last_ts_ns
    node.clock.advance(seconds=-10)
    await alice.post(place("NVDA", "buy", "1", "98.00"))
    assert node.sequencer.last_ts_ns >= stamped
    live = node.engine.state_hash()
    report = await asyncio.to_thread(replay_directory, f"{node.directory}/journal")
    assert report.state_hash == live


async def test_13_invalid_messages_past_the_budget_close_1008_and_in_flight_posts_are_capped(tmp_path, aiohttp_client):
    node = Node(tmp_path, limits=Limits(max_in_flight_posts=1))
    await node.start()
    try:
        client = await aiohttp_client(node.app)
        conn = WsClient(await client.ws_connect("/ws"), node)
        await conn.logon(node.alice)
        for k in (1, 2):
            await conn.send(p.Post(k, place("NVDA", "buy", "1", "99.00")))
        second = await conn.next("post", where=lambda x: x.data.id == 2)
        assert second.data.response.code == -G.TOO_MANY_IN_FLIGHT
        assert isinstance((await conn.next("post")).data.response, p.PostOk)
        for _ in range(3):
            await conn.send("{nope")
        codes = [(await conn.error()).code for _ in range(4)]
        assert codes == [-G.MALFORMED_JSON] * 3 + [-G.TOO_MANY_INVALID]
        assert await conn.closed() == 1008
    finally:
        await node.sequencer.stop()


async def test_12_a_rejected_place_may_be_retried_with_its_cloid(node, ws):
    alice = await ws(node.alice)
    first = await alice.post(place("NVDA", "buy", "1", "120.00", cloid="again"))  # outside the price band
    assert first.statuses[0].code == -R.PRICE_OUTSIDE_BAND
    second = await alice.post(place("NVDA", "buy", "1", "99.00", cloid="again"))
    assert isinstance(second.statuses[0], p.Resting)


async def test_a_degraded_node_answers_every_post_even_a_cached_retry(node, ws):
    alice = await ws(node.alice)
    kept = await alice.post(place("NVDA", "buy", "1", "99.00", cloid="kept"))
    node.sequencer.healthy, node.sequencer.degraded_reason = False, "JournalFailed: fsync failed"
    try:
        await alice.send(node.signed(node.alice, place("NVDA", "buy", "1", "99.00", cloid="kept"), 8))
        retry = (await alice.next("post")).data.response  # signed: its nonce cannot be journaled
        assert retry.code == -G.WRITES_SUSPENDED
        assert await alice.post(place("NVDA", "buy", "1", "99.00", cloid="kept")) == kept  # session: cached answer
        fresh = await ws()
        await fresh.send(node.logon(node.bob))
        assert (await fresh.error()).code == -G.WRITES_SUSPENDED
    finally:
        node.sequencer.healthy, node.sequencer.degraded_reason = True, None


async def test_4_a_batch_answers_each_action_in_order(node, ws):
    alice = await ws(node.alice)
    answer = await alice.post(p.Batch([
        place("NVDA", "buy", "1", "99.00", cloid="ok-1"), place("NVDA", "buy", "1", "99.005"),
        p.Cancel(market="NVDA", oid=123456), place("TSLA", "sell", "1", "250.05"),
        p.Amend(market="NVDA", cloid="ok-1", size="0.5"),
    ]))
    kinds = [type(s).__name__ for s in answer.statuses]
    assert kinds == ["Resting", "Rejected", "Rejected", "Resting", "Amended"]
    assert [s.code for s in answer.statuses if isinstance(s, p.Rejected)] == [-R.PRICE_OFF_TICK, -R.UNKNOWN_ORDER]
    assert answer.statuses[4].size == "0.500" and answer.statuses[4].cloid == "ok-1"
    assert sorted(o.remaining_lots for o in node.engine.open_orders(ALICE)) == [100, 500]


async def test_6_13_rest_reads_name_unknown_markets_and_rate_limit_per_address(tmp_path, aiohttp_client):
    node = Node(tmp_path, limits=Limits(rest_per_ip_per_s=1, rest_per_ip_burst=3))
    await node.start()
    try:
        client = await aiohttp_client(node.app)
        unknown = await client.get("/v1/book", params={"market": "AAPL"})
        assert unknown.status == 404 and (await unknown.json())["code"] == -R.UNKNOWN_MARKET
        missing = await client.get("/v1/market")
        assert missing.status == 400 and (await missing.json())["code"] == -G.MISSING_FIELD
        assert (await client.get("/v1/book", params={"market": "NVDA"})).status == 200
        limited = await client.get("/v1/book", params={"market": "NVDA"})
        assert limited.status == 429 and (await limited.json())["code"] == -G.IP_REQUEST_RATE
        assert int(limited.headers["Retry-After"]) >= 1
    finally:
        await node.sequencer.stop()
