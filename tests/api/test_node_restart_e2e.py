"""``afterhours node`` killed with SIGKILL in the middle of a stream of orders and started
again on the same port and data directory, with real ``api.client.Client``s that reconnect
by themselves (spec/gateway.md §5.1–5.3; catalogue items 9 and 17 through a real process;
a retried ``cloid``, item 12's promise, across the restart).

The accounts: the demo account (A, ``demo-1``) places the stream; the maker's account (B,
``maker-2``, funded and keyed by a first start with the bots' accounts on, the bots
themselves off) rests the asks A's crossing orders fill against. One pre-IPO market,
``OPENAI``, so nothing but these orders moves the book (no oracle, no bots).

What is checked after the restart:
* every acknowledged command is at or below the sequence number the node recovered;
* the journal holds each order of the stream at most once (the client never re-sends);
* A's ``orderUpdates`` snapshot holds exactly the resting orders the journal holds (every
  acknowledged ``Resting`` among them, same oid), and A's and B's ``positions`` snapshots
  exactly the fills of the journaled crossing orders (every acknowledged ``Filled`` among them);
* ``orderStatus`` by ``cloid`` (signed REST) finds every order placed before the crash:
  open if it rests, filled if it crossed (the durable cloid index, api/cloid_index.py);
* a retried place with a ``cloid`` from before the crash gets its original answer (the same
  oid, ``Resting`` or ``Filled``) and nothing is placed twice (§5.2);
* the local L2 book equals ``GET /v1/book``;
* a signed REST request sent before the crash, replayed after it, is refused (nonce reused).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import random
import re
import signal
import sys
import time
from decimal import Decimal

import aiohttp
import msgspec
import pytest

from api import protocol as p
from api.auth import Signer
from api.client import AckTimeout, Client, ClientConfig, ConnectionLost, NotConnected, place_action
from api.config import MarketConfig, NodeConfig, to_toml
from api.errors import GatewayCode, wire_code
from api.node import Node
from engine.codes import CommandKind
from engine.commands import Deposit, unpack_cloid
from engine.engine import Engine
from engine.journal import Journal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STARTUP_S = 240  # a cold numba cache compiles the engine first
MARKET = "OPENAI"
CONFIG = NodeConfig(port=0, bots=False, oracle=False, max_orders=4096, max_accounts=64, tick_interval_s=0.5,
                    markets=(MarketConfig(MARKET, Decimal("100"), exchange="none", pre_ipo_reference=Decimal("100")),))
CLIENT = dict(network=CONFIG.network, ack_timeout_s=10.0, backoff_initial_s=0.02, backoff_max_s=0.2)
DEMO, MAKER = "demo-1", "maker-2"
MAKER_ASKS = [("100.00", "20"), ("100.10", "20"), ("100.20", "20"), ("100.30", "20"), ("100.40", "20")]
CROSS_PRICE = "100.40"  # an IOC buy at this price fills against B's asks, never rests
STREAM_SIZE = 60
IN_FLIGHT = 10
KILL_AFTER_ACKS = 20


def stream_order(i: int) -> p.Place:
    """Order i of A's stream, size 1: every third an IOC buy that crosses B's asks, the
    others resting bids at 96.00–97.95 or asks at 102.00–103.95 (nothing trades with them)."""
    cloid = f"s-{i}"
    if i % 3 == 0:
        return place_action(MARKET, "buy", "1", CROSS_PRICE, tif="ioc", cloid=cloid)
    step = Decimal(i % 40) / 20
    if i % 3 == 1:
        return place_action(MARKET, "buy", "1", Decimal("96.00") + step, cloid=cloid)
    return place_action(MARKET, "sell", "1", Decimal("102.00") + step, cloid=cloid)


def is_cross(place: p.Place) -> bool:
    return place.tif == "ioc"


# ---------------------------------------------------------------------------- the node process


class NodeProcess:
    """One ``afterhours node`` process; its output is read as it comes, into ``lines``."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.lines: list[str] = []
        self.eof = False
        self._new = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, data_dir: str, config: str, port: int) -> NodeProcess:
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "api.cli", "node", "--port", str(port), "--data-dir", data_dir, "--config", config,
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        return cls(proc)

    async def _read(self) -> None:
        async for raw in self.proc.stdout:
            async with self._new:
                self.lines.append(raw.decode(errors="replace"))
                self._new.notify_all()
        async with self._new:
            self.eof = True
            self._new.notify_all()

    async def wait_for(self, pattern: str, timeout_s: float = STARTUP_S) -> re.Match:
        try:
            async with asyncio.timeout(timeout_s):
                async with self._new:
                    while True:
                        for line in self.lines:
                            if found := re.search(pattern, line):
                                return found
                        if self.eof:
                            break
                        await self._new.wait()
        except TimeoutError:
            pass
        pytest.fail(f"the node did not print {pattern!r}; it printed:\n{''.join(self.lines)}")

    async def started(self) -> int:
        """The port, once the node serves."""
        return int((await self.wait_for(r"REST\s+http://127\.0\.0\.1:(\d+)/v1")).group(1))

    def kill_9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    async def wait_exit(self, timeout_s: float = 60) -> int:
        async with asyncio.timeout(timeout_s):
            code = await self.proc.wait()
            await self._reader
        return code


# ---------------------------------------------------------------------------- the stream


class Stream:
    """A's orders ``stream_order(0..STREAM_SIZE)``, ``IN_FLIGHT`` posts at a time; once
    ``KILL_AFTER_ACKS`` are answered, ``on_kill()`` and nothing more is sent. ``acked`` maps a
    cloid to its answer's ``(seq, status)``; ``unknown`` holds the cloids whose posts got no
    answer (``ConnectionLost``): in the journal or not."""

    def __init__(self, client: Client, on_kill) -> None:
        self.client, self.on_kill = client, on_kill
        self.todo = collections.deque(stream_order(i) for i in range(STREAM_SIZE))
        self.acked: dict[str, tuple[int, p.ActionStatus]] = {}
        self.unknown: set[str] = set()
        self.killed = False

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(IN_FLIGHT)))
        assert self.killed

    async def _worker(self) -> None:
        while self.todo and not self.killed:
            place = self.todo.popleft()
            try:
                ok = await self.client.post(place)
            except (ConnectionLost, AckTimeout, NotConnected):
                self.unknown.add(place.cloid)
                continue
            self.acked[place.cloid] = (ok.seq, ok.statuses[0])
            if len(self.acked) >= KILL_AFTER_ACKS and not self.killed:
                self.killed = True
                self.on_kill()


# ---------------------------------------------------------------------------- helpers


def bootstrap(data_dir: str) -> None:
    """A first start, in process, with the bots' accounts opened (funded and keyed) but no
    bot running: B's key is then in the data directory for the processes to serve."""

    async def run() -> None:
        node = Node(msgspec.structs.replace(CONFIG, data_dir=data_dir, bots=True), bots=lambda node: [],
                    out=lambda text: None)
        await node.start()
        await node.stop()

    asyncio.run(run())


def signer(data_dir: str, key_id: str) -> Signer:
    with open(os.path.join(data_dir, "keys", f"{key_id}.key")) as f:
        return Signer.parse(f.read())


async def eventually(predicate, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


class Snapshots:
    """The snapshot pushes of a channel, kept from ``armed`` on (the ones after a restart)."""

    def __init__(self, client: Client, channel: str):
        self.armed = False
        self.seen: list = []
        client.on(channel, lambda data: self.seen.append(data) if self.armed and data.isSnapshot else None)

    def arm(self) -> None:
        self.armed = True

    async def first(self):
        await eventually(lambda: self.seen)
        return self.seen[0]


def journaled_places(data_dir: str, account: int, through_seq: int) -> list[tuple[int, str]]:
    """``(seq, cloid)`` of every place of ``account`` with a cloid in the journal, up to
    ``through_seq``. Read with the node stopped."""
    journal = Journal.open(os.path.join(data_dir, "journal"), read_only=True)
    try:
        out = []
        for frame in journal.batches(journal.first_seq - 1):
            for k, rec in enumerate(Journal.records_of(frame)):
                seq = frame.first_seq + k
                if seq <= through_seq and rec["kind"] == CommandKind.PLACE and rec["account"] == account:
                    cloid = unpack_cloid([rec["cloid0"], rec["cloid1"], rec["cloid2"], rec["cloid3"]])
                    if cloid is not None:
                        out.append((seq, cloid))
        return out
    finally:
        journal.close()


async def order_status(http: aiohttp.ClientSession, port: int, signer: Signer, cloid: str,
                       nonce: int) -> p.OrderUpdate | None:
    """``POST /v1/query`` ``orderStatus`` by ``cloid``: what a client that lost an answer asks."""
    query = p.OrderStatusQuery(cloid=cloid)
    body = p.encode(p.SignedQuery(query, signer.key_id, nonce, signer.sign(CONFIG.network, nonce, query)))
    async with http.post(f"http://127.0.0.1:{port}/v1/query", data=body) as resp:
        assert resp.status == 200, await resp.text()
        return msgspec.json.decode(await resp.read(), type=p.OrderStatus).order


@pytest.fixture(scope="module", autouse=True)
def warm_kernels() -> None:
    """Load (or compile) the engine's kernels here first, so the processes find them in
    numba's on-disk cache."""
    engine = Engine(CONFIG.market_specs(), CONFIG.engine_config())
    engine.apply([Deposit(account=1, amount=1)])
    engine.state_hash()


# ---------------------------------------------------------------------------- the test


@pytest.mark.asyncio
async def test_a_kill_9_mid_stream_loses_no_acknowledged_order_and_clients_resume(tmp_path):
    data_dir, config = str(tmp_path / "data"), tmp_path / "node.toml"
    config.write_text(to_toml(CONFIG))
    await asyncio.to_thread(bootstrap, data_dir)
    demo, maker = signer(data_dir, DEMO), signer(data_dir, MAKER)
    account_a = CONFIG.demo_account
    nodes: list[NodeProcess] = []
    try:
        nodes.append(await NodeProcess.start(data_dir, str(config), 0))
        port = await nodes[0].started()
        url = f"ws://127.0.0.1:{port}/ws"
        async with Client(ClientConfig(url, **CLIENT), demo, rng=random.Random(1)) as a, \
                Client(ClientConfig(url, **CLIENT), maker, rng=random.Random(2)) as b, \
                aiohttp.ClientSession() as http:
            # Arrange: B's asks; A's subscriptions and book; two orders retried before the crash.
            for price, qty in MAKER_ASKS:
                assert isinstance(await b.place(MARKET, "sell", qty, price, tif="alo"), p.Resting)
            snaps = {(c, ch): Snapshots(client, ch) for c, client in (("a", a), ("b", b))
                     for ch in ("orderUpdates", "positions")}
            for client in (a, b):
                await client.subscribe(p.OrderUpdatesSub())
                await client.subscribe(p.PositionsSub())
            book = await a.book(MARKET)
            warm_rest = place_action(MARKET, "buy", "1", "95.00", cloid="warm-rest")
            warm_cross = place_action(MARKET, "buy", "1", CROSS_PRICE, tif="ioc", cloid="warm-cross")
            first = {w.cloid: (await a.post(w)).statuses[0] for w in (warm_rest, warm_cross)}
            assert isinstance(first["warm-rest"], p.Resting) and isinstance(first["warm-cross"], p.Filled)
            for w in (warm_rest, warm_cross):  # the same session: the original answer again (§5.2)
                assert (await a.post(w)).statuses[0] == first[w.cloid]
            rest_body = p.encode(demo.signed_action(
                CONFIG.network, place_action(MARKET, "sell", "1", "104.50", cloid="rest-1"),
                int(time.time() * 1000) + a.clock_offset_ms))
            async with http.post(f"http://127.0.0.1:{port}/v1/action", data=rest_body) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["statuses"][0]["status"] == "resting"

            # Act: the stream, IN_FLIGHT at a time; SIGKILL once KILL_AFTER_ACKS are answered.
            def kill() -> None:  # the snapshots kept from now on are the ones after the restart
                for snap in snaps.values():
                    snap.arm()
                nodes[0].kill_9()

            stream = Stream(a, on_kill=kill)
            await stream.run()
            assert await nodes[0].wait_exit() == -signal.SIGKILL
            acked, unknown = stream.acked, stream.unknown
            assert stream.todo, "the stream was over before the kill"
            assert all(not isinstance(s, p.Rejected) for _, s in acked.values()), acked

            nodes.append(await NodeProcess.start(data_dir, str(config), port))
            resumed = await nodes[1].wait_for(r"resumed from the journal at seq (\d+)")
            recovered_seq = int(resumed.group(1))
            assert await nodes[1].started() == port
            await eventually(lambda: a.connections == 2 and a.connected.is_set()
                             and b.connections == 2 and b.connected.is_set())

            # Assert: every acknowledged command survived.
            assert max(seq for seq, _ in acked.values()) <= recovered_seq
            orders_a = await snaps["a", "orderUpdates"].first()
            positions_a = await snaps["a", "positions"].first()
            positions_b = await snaps["b", "positions"].first()
            open_a = {o.cloid: o for o in orders_a.orders}
            for cloid, (_, status) in acked.items():
                if isinstance(status, p.Resting):
                    assert open_a[cloid].oid == status.oid and open_a[cloid].status == "open"
            assert open_a["warm-rest"].oid == first["warm-rest"].oid and "rest-1" in open_a

            # Act: look up by cloid what was placed before the crash; then retry the warm orders.
            nonces = itertools.count(int(time.time() * 1000) + a.clock_offset_ms)
            looked_up = {c: await order_status(http, port, demo, c, next(nonces))
                         for c in sorted(unknown) + ["warm-rest", "warm-cross"]}

            retried_rest = (await a.post(warm_rest)).statuses[0]
            retried_cross = await a.post(warm_cross)

            # A replayed signed REST request from before the crash is refused.
            async with http.post(f"http://127.0.0.1:{port}/v1/action", data=rest_body) as resp:
                assert resp.status == 401
                assert (await resp.json())["code"] == wire_code(GatewayCode.NONCE_REUSED)

            # The local book equals GET /v1/book once it has the last change.
            await book.wait_seq(retried_cross.seq, timeout=30)
            rest_book = await a.get_book(MARKET)
            assert book.synced and (book.bids(), book.asks()) == (rest_book.bids, rest_book.asks)
            assert book.bids() and book.asks()
        stopped = nodes[1]
        stopped.proc.send_signal(signal.SIGTERM)
        assert await stopped.wait_exit() == 0, "".join(stopped.lines)
    finally:
        for node in nodes:
            if node.proc.returncode is None:
                node.kill_9()
                await node.wait_exit()

    # Assert: what the journal holds before the restart, against the snapshots after it.
    journaled = journaled_places(data_dir, account_a, recovered_seq)
    cloids = [c for _, c in journaled if c.startswith("s-")]
    assert len(cloids) == len(set(cloids)), "an order of the stream was applied twice"
    assert set(acked) <= set(cloids) <= set(acked) | unknown
    stream = {w.cloid: w for w in map(stream_order, range(STREAM_SIZE))}
    resting = {c for c in cloids if not is_cross(stream[c])}
    crosses = {c for c in cloids if is_cross(stream[c])}
    assert set(open_a) == resting | {"warm-rest", "rest-1"}
    position = {pos.market: Decimal(pos.size) for pos in positions_a.positions}[MARKET]
    assert position == len(crosses) + 1  # each crossing order filled 1 (warm-cross is the + 1)
    assert {pos.market: Decimal(pos.size) for pos in positions_b.positions}[MARKET] == -position
    assert all(isinstance(s, p.Filled) and Decimal(s.filledSize) == 1 for c, (_, s) in acked.items() if c in crosses)

    # A lookup by cloid after the restart finds every order placed before the crash: open if
    # it rests, filled if it crossed (spec/gateway.md §5.2; api/cloid_index.py); an unknown
    # post that never reached the journal is not found.
    for cloid, found in looked_up.items():
        if cloid in resting or cloid == "warm-rest":
            assert found is not None and found.status == "open" and found.cloid == cloid, (cloid, found)
        elif cloid in crosses or cloid == "warm-cross":
            assert found is not None and found.status == "filled" and found.cloid == cloid, (cloid, found)
            if cloid == "warm-cross":
                assert found.oid == first["warm-cross"].oid
        else:
            assert found is None, (cloid, found)

    # The retries after the restart get the original answers: the same oids, nothing placed twice.
    assert retried_rest == first["warm-rest"], retried_rest
    assert retried_cross.statuses[0] == first["warm-cross"], retried_cross
    warm_places = [c for _, c in journaled_places(data_dir, account_a, 1 << 62) if c.startswith("warm-")]
    assert sorted(warm_places) == ["warm-cross", "warm-rest"]
