"""A gateway over a real sequencer, journal and nonce log in a temporary directory, and a
raw websocket client for the end-to-end tests (tests/api/test_gateway*.py).

People: ALICE (account 1) and BOB (2) trade with Ed25519 keys; READER (3) holds a read-only
key; CAROL (4) trades with an HMAC key. Every account starts with $100,000. NVDA (tick 0.01,
lot 0.001) has its oracle at 100.00, TSLA (tick 0.05, lot 0.01) at 250.00.

The clock is the wall clock shifted to ``T0`` (so rate-limit buckets refill), plus an offset
a test can advance (``clock.advance(hours=1)``) to reach a funding hour.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np

from api import protocol as p
from api.auth import KeyStore, NonceStore, Signer
from api.gateway import GATEWAY, GatewayConfig, create_app
from api.nonce_log import NonceLog
from api.ratelimit import Limits
from api.sequencer import Sequencer
from engine.commands import Deposit, OracleUpdate
from engine.engine import Engine
from engine.journal import JournaledEngine
from engine.spec import EngineConfig, MarketSpec

NETWORK = "local"
T0 = 1_780_000_000_000_000_000
NVDA = MarketSpec(market_id=0, symbol="NVDA", tick_size=Decimal("0.01"), lot_size=Decimal("0.001"),
                  max_order_lots=10_000_000, ladder_levels=1024)
TSLA = MarketSpec(market_id=1, symbol="TSLA", tick_size=Decimal("0.05"), lot_size=Decimal("0.01"),
                  max_order_lots=1_000_000, ladder_levels=512)
SPECS = [NVDA, TSLA]
CONFIG = EngineConfig(max_orders=1 << 12, max_accounts=64, risk=True, modes=True)
ALICE, BOB, READER, CAROL = 1, 2, 3, 4
SETUP = [
    OracleUpdate(market=0, price=Decimal("100.00")),
    OracleUpdate(market=1, price=Decimal("250.00")),
    *[Deposit(account=a, amount=Decimal("100000")) for a in (ALICE, BOB, READER, CAROL)],
]
FAST = GatewayConfig(close_grace_s=0.5, liveness_interval_ms=100, l2book_interval_ms=50)


def warm_engine() -> None:
    """Compile (or load) the kernels outside any test's own time."""
    Engine(SPECS, CONFIG).apply(SETUP)


class Clock:
    def __init__(self) -> None:
        self._start = time.monotonic_ns()
        self.offset_ns = 0

    def __call__(self) -> int:
        return T0 + time.monotonic_ns() - self._start + self.offset_ns

    def ms(self) -> int:
        return self() // 1_000_000

    def advance(self, *, hours: float = 0, seconds: float = 0) -> None:
        self.offset_ns += int((hours * 3600 + seconds) * 1e9)


class Node:
    """The pieces the tests reach into: sequencer, engine, keys, signers, app, clock."""

    def __init__(self, directory, limits: Limits = Limits(), config: GatewayConfig = FAST):
        self.clock = Clock()
        self.directory = str(directory)
        journaled = JournaledEngine.open(f"{self.directory}/journal", SPECS, CONFIG)
        self.nonce_log = NonceLog.open(self.directory)
        self.sequencer = Sequencer(journaled, clock_ns=self.clock, tick_interval_s=None, nonce_log=self.nonce_log)
        self.keys = KeyStore(sealing_key=bytes(32))
        self.alice = self.keys.create_ed25519(ALICE, ("read", "trade"), key_id="alice", seed=bytes(range(32)))
        self.bob = self.keys.create_ed25519(BOB, ("read", "trade"), key_id="bob", seed=bytes(range(1, 33)))
        self.reader = self.keys.create_ed25519(READER, ("read",), key_id="reader", seed=bytes(range(2, 34)))
        self.carol = self.keys.create_hmac(CAROL, ("read", "trade"), key_id="carol", secret=b"carol-secret-0123456789")
        self.limits, self.config = limits, config
        self._nonces = itertools.count()
        self.app = None

    async def start(self, setup: bool = True) -> None:
        await self.sequencer.start()
        if setup:
            await self.sequencer.submit_many(SETUP)
        self.app = create_app(self.sequencer, self.keys, NonceStore.load(self.nonce_log.state()), SPECS,
                              self.limits, config=self.config, clock_ns=self.clock)

    @property
    def engine(self):
        return self.sequencer.engine

    @property
    def gateway(self):
        return self.app[GATEWAY]

    def nonce(self) -> int:
        """A fresh nonce inside the window (the clock in ms, minus 20 s, plus a counter)."""
        return self.clock.ms() - 20_000 + next(self._nonces)

    def signed(self, signer: Signer, action: p.Action, post_id: int | None = None, nonce: int | None = None,
               network: str = NETWORK) -> p.Post:
        return signer.post(network, post_id if post_id is not None else 0, action,
                           nonce if nonce is not None else self.nonce())

    def logon(self, signer: Signer, nonce: int | None = None) -> p.Logon:
        return signer.logon(NETWORK, nonce if nonce is not None else self.nonce())


class WsClient:
    """A raw websocket client: ``send`` a Struct or raw text, ``next(channel)`` the next push
    of that channel (others kept in order for later), ``post`` and wait for its answer."""

    def __init__(self, ws, node: Node):
        self.ws, self.node = ws, node
        self.inbox: list[Any] = []
        self._ids = itertools.count(1)

    async def send(self, msg: Any) -> None:
        if isinstance(msg, (str, bytes)):
            await (self.ws.send_str(msg) if isinstance(msg, str) else self.ws.send_bytes(msg))
        else:
            await self.ws.send_str(p.encode(msg).decode())

    async def _read(self, timeout: float) -> Any:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type.name != "TEXT":
            return msg
        return p.decode_push(msg.data)

    async def next(self, channel: str | tuple[str, ...] | None = None, timeout: float = 5.0,
                   where=lambda push: True) -> Any:
        channels = (channel,) if isinstance(channel, str) else channel
        for k, push in enumerate(self.inbox):
            if (channels is None or _channel(push) in channels) and where(push):
                return self.inbox.pop(k)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise asyncio.TimeoutError(f"no {channel} push within {timeout} s; inbox {self.inbox[-5:]}")
            push = await self._read(left)
            if not isinstance(push, msgspec.Struct):
                raise ConnectionError(f"connection ended: {push}")
            if (channels is None or _channel(push) in channels) and where(push):
                return push
            self.inbox.append(push)

    async def post(self, action: p.Action, signer: Signer | None = None, timeout: float = 10.0) -> p.PostResponse:
        post_id = next(self._ids)
        msg = self.node.signed(signer, action, post_id) if signer is not None else p.Post(post_id, action)
        await self.send(msg)
        push = await self.next("post", timeout, where=lambda push: push.data.id == post_id)
        return push.data.response

    async def logon(self, signer: Signer) -> p.LogonOk:
        await self.send(self.node.logon(signer))
        push = await self.next(("logon", "error"))
        assert isinstance(push, p.LogonPush), push
        return push.data

    async def subscribe(self, sub: p.Subscription) -> Any:
        """Subscribe; the acknowledgement (a snapshot, if the channel has one, follows it)."""
        await self.send(p.Subscribe(sub))
        ack = await self.next(("subscriptionResponse", "error"))
        assert isinstance(ack, p.SubscriptionResponsePush), ack
        return ack

    async def error(self, timeout: float = 5.0) -> p.ErrorBody:
        return (await self.next("error", timeout)).data

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Read until the close; the close code."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            msg = await self.ws.receive(timeout=max(0.01, deadline - asyncio.get_running_loop().time()))
            if msg.type.name in ("CLOSE", "CLOSED", "CLOSING", "ERROR"):
                return self.ws.close_code
            self.inbox.append(p.decode_push(msg.data))


async def connect(aiohttp_client, node: Node, signer: Signer | None = None) -> WsClient:
    """A websocket to the node's app (one test server per node), logged on when ``signer``."""
    client = await aiohttp_client(node.app) if not hasattr(node, "_client") else node._client
    node._client = client
    ws = WsClient(await client.ws_connect("/ws"), node)
    if signer is not None:
        await ws.logon(signer)
    return ws


def _channel(push: Any) -> str:
    return type(push).__struct_config__.tag


def place(market: str, side: str, size: str, price: str | None = None, **kw) -> p.Place:
    return p.Place(market=market, side=side, size=size, price=price, **kw)


def book_levels(engine, market: int, side: int, spec: MarketSpec) -> list[tuple[str, str]]:
    """The engine's book as wire strings, best first."""
    return [(p.format_decimal(spec.tick_size * t), p.format_decimal(spec.lot_size * q))
            for t, q in engine.depth(market, side)]


def positions_of(engine, account: int) -> list[int]:
    return [int(x) for x in np.asarray(engine.pos[account]["size"])]
