"""The gateway: an aiohttp application serving ``/ws``, REST under ``/v1/``, the protocol
schema and Prometheus metrics, over a running ``api.sequencer.Sequencer``.

Layout
------
* ``create_app(sequencer, keys, nonces, specs, limits, ...)`` -> ``web.Application``;
* ``Gateway``: the state every handler shares (``app[GATEWAY]``): markets, authenticator,
  publisher, executor, limiters, metrics, open connections;
* ``api.ws``: the websocket handler; ``api.rest``: the REST handlers;
* background tasks (``cleanup_ctx``): the conflated ``l2Book`` flush (100 ms), liveness
  (server pings, idle and age closes), pruning of idle rate-limit buckets.

Routes
------
``GET /ws`` (websocket), ``POST /v1/action`` (a signed action), ``POST /v1/query`` (a signed
private read), ``GET /v1/book?market=``, ``GET /v1/market?market=``, ``GET /v1/schema``,
``GET /v1/health``, ``GET /metrics``.

Invariants
----------
* The app does not start or stop the sequencer (the node does); it registers one listener,
  removed when the app is cleaned up.
* Every engine read happens on the event loop between batches.
* On shutdown every websocket gets ``SHUTTING_DOWN`` and close 1001.

Known limitations
-----------------
* The fsync-time metric wraps the journal's ``FileOps.fsync`` (the seam fault tests use);
  a journal given a different ``FileOps`` later is not measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Callable, Sequence

import msgspec
from aiohttp import web

from api import protocol as p
from api.actions import Markets
from api.auth import Authenticator, KeyStore, NonceStore
from api.connection import Connection
from api.errors import GatewayCode
from api.executor import Executor
from api.metrics import Metrics, node_metrics
from api.publisher import Publisher
from api.ratelimit import CLOSE_GOING_AWAY, IpLimiter, KeyLimiter, Limits
from engine.spec import MarketSpec


class GatewayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The gateway's own settings (the limits of gateway.md §4 are ``api.ratelimit.Limits``)."""

    network: str = "local"
    max_connections: int = 10_000
    close_grace_s: float = 5.0  # how long a closing peer gets to read its last frames
    l2book_interval_ms: int = 100  # l2Book conflation period
    liveness_interval_ms: int = 500  # how often pings, idle and age are checked
    recent_per_account: int = 100  # userFills / userFundings kept for snapshots
    cloid_cache: int = 10_000  # answers kept for idempotent retries by cloid
    send_buffer_bytes: int | None = None  # SO_SNDBUF of each websocket (None: the kernel's autotuning)

    def __post_init__(self) -> None:
        for name in ("max_connections", "l2book_interval_ms", "liveness_interval_ms", "recent_per_account",
                     "cloid_cache"):
            if getattr(self, name) <= 0:
                raise ValueError(f"GatewayConfig.{name} must be positive")
        if self.close_grace_s <= 0:
            raise ValueError("GatewayConfig.close_grace_s must be positive")


class Gateway:
    """Shared state of one app. See the module docstring."""

    def __init__(self, sequencer, keys: KeyStore, nonces: NonceStore, specs: Sequence[MarketSpec], limits: Limits,
                 config: GatewayConfig, clock_ns: Callable[[], int], session_of=None):
        self.sequencer, self.limits, self.config, self.clock_ns = sequencer, limits, config, clock_ns
        self.markets = Markets(specs)
        self.auth = Authenticator(config.network, keys, nonces)
        self.connections: dict[int, Connection] = {}
        self.metrics: Metrics = node_metrics(lambda: len(self.connections), self._engine_lag_s)
        self.publisher = Publisher(sequencer.engine, self.markets, seq=sequencer.seq,
                                   ts_ns=getattr(sequencer, "last_ts_ns", 0), recent=config.recent_per_account,
                                   session_of=session_of, on_publish=self._published,
                                   cloid_index=getattr(sequencer, "cloids", None))
        self.key_limiter = KeyLimiter(limits)
        self.ip_limiter = IpLimiter(limits)
        self.executor = Executor(sequencer, self.markets, self.key_limiter, clock_ns, lambda: self.publisher.orders,
                                 cache_size=config.cloid_cache, on_reject=self.count_reject,
                                 cloid_index=getattr(sequencer, "cloids", None))
        self._last_batch_wall = time.monotonic()
        sequencer.add_listener(self.on_batch)
        _time_fsync(sequencer, self.metrics)

    def now_ms(self) -> int:
        return self.clock_ns() // 1_000_000

    def on_batch(self, batch) -> None:
        self._last_batch_wall = time.monotonic()
        self.executor.note_batch(batch.first_seq, len(batch.commands))
        self.metrics.observe("afterhours_batch_commands", len(batch.commands))
        self.publisher.on_batch(batch)

    def _engine_lag_s(self) -> float:
        return round(time.monotonic() - self._last_batch_wall, 6)

    def _published(self, channel: str, subscribers: int) -> None:
        self.metrics.inc("afterhours_published_total", channel=channel)

    def count_reject(self, code: int) -> None:
        self.metrics.inc("afterhours_rejects_total", code=-abs(int(code)))

    def new_connection(self, ws: web.WebSocketResponse, transport) -> Connection:
        conn = Connection(ws, transport, self.limits, self.clock_ns(), snapshot=self.publisher.snapshot,
                          close_grace_s=self.config.close_grace_s,
                          on_sent=lambda n: self.metrics.inc("afterhours_messages_out_total", n),
                          on_slow=lambda: self.metrics.inc("afterhours_slow_consumers_total"),
                          on_conflate=lambda: self.metrics.inc("afterhours_conflations_total"))
        self.connections[conn.id] = conn
        self.metrics.inc("afterhours_connections_opened_total")
        conn.start()
        return conn

    def forget(self, conn: Connection) -> None:
        self.publisher.drop(conn)
        self.connections.pop(conn.id, None)

    # ------------------------------------------------------------------ background

    async def flush_l2book_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.l2book_interval_ms / 1000)
            self.publisher.flush_l2book()

    async def liveness_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.liveness_interval_ms / 1000)
            self.check_liveness(self.clock_ns())

    def check_liveness(self, now_ns: int) -> None:
        for conn in list(self.connections.values()):
            refusal = conn.limiter.liveness(now_ns)
            if refusal is not None:
                self.count_reject(refusal.code)
                reason = "idle" if refusal.code == GatewayCode.IDLE_TIMEOUT else "age"
                conn.close(refusal.close, p.encode(p.error_push(refusal.code, refusal.detail)), reason=reason)
            elif conn.limiter.ping_due(now_ns):
                conn.limiter.pinged(now_ns)
                conn.ping()
        if now_ns // 1_000_000_000 % 60 == 0:
            self.key_limiter.prune(now_ns)
            self.ip_limiter.prune(now_ns)

    async def close_all(self) -> None:
        frame = p.encode(p.error_push(GatewayCode.SHUTTING_DOWN))
        conns = list(self.connections.values())
        for conn in conns:
            conn.close(CLOSE_GOING_AWAY, frame, reason="shutdown")
        await asyncio.gather(*(conn.finish() for conn in conns), return_exceptions=True)


def _time_fsync(sequencer, metrics: Metrics) -> None:
    """Record each journal fsync's duration (runs in the sequencer's worker thread)."""
    journal = getattr(getattr(sequencer, "journaled", None), "journal", None)
    ops = getattr(journal, "ops", None)
    if ops is None or getattr(ops, "_afterhours_timed", False):
        return
    fsync = ops.fsync

    def timed_fsync(fd):
        start = time.perf_counter()
        try:
            return fsync(fd)
        finally:
            metrics.observe("afterhours_journal_fsync_seconds", time.perf_counter() - start)

    ops.fsync = timed_fsync
    ops._afterhours_timed = True


GATEWAY = web.AppKey("gateway", Gateway)


def create_app(sequencer, keys: KeyStore, nonces: NonceStore, specs: Sequence[MarketSpec],
               limits: Limits = Limits(), *, config: GatewayConfig = GatewayConfig(),
               clock_ns: Callable[[], int] | None = None, session_of=None) -> web.Application:
    """The gateway app over a started (or soon started) ``sequencer``. ``nonces`` is the
    store the node loaded from its nonce journal; ``clock_ns`` defaults to the sequencer's
    clock (nonce windows, rate limits, liveness); ``session_of(market_id)`` may name a
    market's oracle session for the ``market`` channel."""
    from api import rest, ws

    clock = clock_ns or getattr(sequencer, "clock_ns", time.time_ns)
    gateway = Gateway(sequencer, keys, nonces, specs, limits, config, clock, session_of)
    app = web.Application(client_max_size=limits.max_message_bytes)
    app[GATEWAY] = gateway
    app.router.add_get("/ws", ws.handle)
    rest.add_routes(app)
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_close_connections)
    return app


async def _close_connections(app: web.Application) -> None:
    await app[GATEWAY].close_all()


async def _background(app: web.Application):
    gateway = app[GATEWAY]
    tasks = [asyncio.create_task(gateway.flush_l2book_forever(), name="gateway-l2book"),
             asyncio.create_task(gateway.liveness_forever(), name="gateway-liveness")]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(ValueError):  # already removed (the app was served twice)
        gateway.sequencer.remove_listener(gateway.on_batch)
