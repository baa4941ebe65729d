"""The node: the composition root that wires the journal, the sequencer, the oracle, keys,
the websocket/REST server and the demo bots into one process.

Layout
------
``Node(config)``; ``await node.start()`` then, in order:

1 opens (or creates) the journal in ``<data_dir>/journal`` and recovers the engine (newest
  usable snapshot + replay), the cloid index (``<data_dir>/cloids.state``, brought up to
  date by the same replay: ``api.cloid_index``) and the nonce journal in ``<data_dir>``
  (``api.nonce_log``);
2 loads the API keys (``<data_dir>/keys.json``, client credentials in ``<data_dir>/keys/``)
  and the ``NonceStore`` (``node.nonces``) from the nonce journal, for the gateway;
3 starts the ``Sequencer`` (its Tick timer runs from now on);
4 opens the demo account on the first start: a key (``api.auth.create_demo_key``) and a
  ``Deposit`` of ``demo_deposit``; with bots on, the maker's and taker's accounts too;
5 starts the oracle service (simulated source, real calendars) feeding the sequencer, in
  the background (``oracle_ready`` is set once the calendars are loaded and it runs); a
  new journal first gets each market's last published price (``_seed_prices``);
6 serves the app ``create_web_app(node)`` makes (``api.gateway.create_app`` when that
  module exists; until then a minimal app with ``GET /v1/health``);
7 starts the bots (``bots(node)``: coroutines; ``default_bots`` runs ``api.bots``), and a
  snapshot every ``snapshot_interval_s``; prints the addresses and how to connect.

``await node.stop()`` stops the bots, the server and the oracle, takes a last snapshot,
drains the sequencer and closes the journal; it prints the final sequence number and
state hash, which the next start prints again as the state it recovered.

Invariants
----------
* The sequencer is the only writer of the engine; everything else reads it on the loop.
* Account opening is idempotent across restarts: an account whose key is already in
  ``keys.json`` is neither funded nor keyed again.
* The node's clock is ``time.time_ns`` shifted by ``time_offset_s``; the sequencer stamps
  monotonically over it, so a negative offset after a run cannot move the engine back.

Known limitations
-----------------
* A crash between a demo ``Deposit`` and the key file it belongs to funds that account
  twice on the next start (demo money only).
* Credentials of the local accounts live in the data directory, readable by its owner only.
* Stamps never go back: after a run with a positive ``time_offset_s``, a restart without it
  keeps stamping the journal's last time until the clock catches up (funding, expiries and
  the oracle's view of the session then disagree until it does).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import logging
import os
import time
from decimal import Decimal
from typing import Callable, Coroutine

import msgspec
from aiohttp import web

from api.auth import (
    SCOPES,
    ApiKey,
    KeyStore,
    NonceStore,
    Signer,
    create_demo_key,
)
from api.actions import Markets
from api.cloid_index import CloidIndex
from api.config import SIM_SOURCE, NodeConfig, market_feed, scenario
from api.nonce_log import NonceLog
from api.sequencer import Sequencer
from engine.commands import Deposit, OracleUpdate
from engine.journal import FileOps, JournaledEngine, JournalMismatch
from oracle.calendar import build_schedule
from oracle.service import OracleService
from oracle.session import Session
from oracle.sources.simulated import SimulatedFeed, SimulatedSource
from oracle.update import OracleUpdate as OracleServiceUpdate

log = logging.getLogger(__name__)

MAKER_ACCOUNT_OFFSET = 1  # the maker trades as demo_account + 1, the taker as demo_account + 2
TAKER_ACCOUNT_OFFSET = 2
NODE_KEY = web.AppKey("node", object)

Bots = Callable[["Node"], list[Coroutine]]


class Node:
    """One exchange node. See the module docstring."""

    def __init__(self, config: NodeConfig | None = None, *, bots: Bots | None = None,
                 app_factory: Callable[[Node], web.Application] | None = None,
                 clock_ns: Callable[[], int] | None = None, out: Callable[[str], None] = print):
        self.config = config or NodeConfig()
        self.specs = self.config.market_specs()
        self.engine_config = self.config.engine_config()
        self.bots = bots if bots is not None else default_bots
        self.app_factory = app_factory or create_web_app
        offset_ns = int(self.config.time_offset_s * 1e9)
        self.clock_ns = clock_ns or (lambda: time.time_ns() + offset_ns)
        self.out = out
        self.data_dir = os.path.abspath(self.config.data_dir)
        self.sequencer: Sequencer | None = None
        self.keys = KeyStore()
        self.signers: dict[str, Signer] = {}
        self.nonces = NonceStore()
        self.sessions: dict[int, Session] = {}  # each market's session as the oracle last reported it
        self.oracle: OracleService | None = None
        self.oracle_ready = asyncio.Event()  # set once the oracle service runs
        self.demo: Signer | None = None
        self.maker: Signer | None = None
        self.taker: Signer | None = None
        self.recovered_seq = 0
        self.recovered_hash = ""
        self.host = self.config.host
        self.port = self.config.port
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self._bot_tasks: list[asyncio.Task] = []
        self._snapshot_seq = 0

    # ------------------------------------------------------------------------ addresses

    @property
    def ws_url(self) -> str:
        return f"ws://{_url_host(self.host)}:{self.port}/ws"

    @property
    def rest_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.port}/v1"

    @property
    def engine(self):
        return self.sequencer.engine

    def key_path(self, key_id: str) -> str:
        return os.path.join(self.data_dir, "keys", f"{key_id}.key")

    # ------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        cfg = self.config
        os.makedirs(self.data_dir, exist_ok=True)
        cloids = CloidIndex.open(self.data_dir, Markets(self.specs))
        try:
            journaled = await asyncio.to_thread(JournaledEngine.open, os.path.join(self.data_dir, "journal"),
                                                self.specs, self.engine_config, on_events=cloids.on_replay)
        except JournalMismatch as err:
            raise JournalMismatch(f"{err}. The markets or engine sizing changed since this data directory was "
                                  "created: start with another --data-dir (or the old configuration)") from None
        self.recovered_seq, self._snapshot_seq = journaled.seq, journaled.seq
        self.recovered_hash = journaled.engine.state_hash()
        if journaled.recovered is not None:
            cloids.check_base(journaled.recovered.snapshot_seq)
        nonce_log = NonceLog.open(self.data_dir)
        self._load_keys()
        self.nonces = NonceStore.load(nonce_log.state())  # the gateway checks nonces with this store
        self.sequencer = Sequencer(journaled, clock_ns=self.clock_ns, tick_interval_s=cfg.tick_interval_s,
                                   max_batch=cfg.max_batch, nonce_log=nonce_log, cloids=cloids)
        await self.sequencer.start()
        self.demo = await self.open_account(cfg.demo_account, cfg.demo_deposit, demo=True)
        if cfg.bots:
            self.maker = await self.open_account(cfg.demo_account + MAKER_ACCOUNT_OFFSET, cfg.bot_deposit, "maker")
            self.taker = await self.open_account(cfg.demo_account + TAKER_ACCOUNT_OFFSET, cfg.bot_deposit, "taker")
        if cfg.oracle:
            self._tasks.append(asyncio.create_task(self._run_oracle(), name="oracle"))
        await self._serve()
        self._tasks.append(asyncio.create_task(self._snapshots(), name="node-snapshots"))
        if cfg.bots:
            self._bot_tasks = [asyncio.create_task(c) for c in self.bots(self)]
        # Everything allocated so far (the engine's arrays, numba's compiled kernels, the
        # calendars) lives as long as the node: move it out of the collector's generations so
        # each collection walks only what the traffic allocates.
        gc.freeze()
        self.out(self.banner())

    async def stop(self) -> None:
        for task in self._bot_tasks + self._tasks:
            task.cancel()
        await asyncio.gather(*self._bot_tasks, *self._tasks, return_exceptions=True)
        self._bot_tasks, self._tasks = [], []
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        seq = self.sequencer
        if seq is None:
            return
        if seq.healthy and seq.seq != self._snapshot_seq:
            with contextlib.suppress(Exception):
                await seq.snapshot()
        await seq.stop()
        self.out(f"afterhours node stopped at seq {seq.seq}, state hash {seq.engine.state_hash()}")

    async def open_account(self, account: int, deposit: Decimal, role: str = "account", *,
                           demo: bool = False) -> Signer:
        """The account's key, created and funded (``Deposit``, durable) the first time."""
        existing = [k for k in self.keys.keys_of(account) if k.key_id in self.signers]
        if existing:
            return self.signers[existing[0].key_id]
        if deposit > 0:
            await self.sequencer.submit(Deposit(account=account, amount=deposit))
        if demo:
            signer = create_demo_key(self.keys, account)
        else:
            signer = self.keys.create_ed25519(account, SCOPES, key_id=f"{role}-{account}")
        self.signers[signer.key_id] = signer
        self._save_keys(signer)
        return signer

    # ------------------------------------------------------------------------ parts

    async def _run_oracle(self) -> None:
        """Build the calendars' schedules off the loop (loading exchange_calendars takes
        seconds), seed a new journal's prices, then run the oracle service until cancelled.
        Pre-IPO markets get no feed: they have no external price until listed."""
        cfg = self.config
        calendars = {m.calendar() for m in cfg.markets if m.calendar_exchange is not None}
        for calendar in sorted(calendars, key=lambda c: (c.exchange, c.extended)):
            await asyncio.to_thread(build_schedule, calendar)
        feed = SimulatedFeed(scenario(cfg))
        if self.recovered_seq == 0:
            await self._seed_prices(feed)
        feeds = [market_feed(i, m) for i, m in enumerate(cfg.markets) if m.calendar_exchange is not None]
        source = SimulatedSource(feed, name=SIM_SOURCE.name, clock=self.clock_ns)
        self.oracle = OracleService(feeds, self._on_oracle_update, poll_sources=[source], clock=self.clock_ns)
        self.oracle_ready.set()
        await self.oracle.run()

    def _on_oracle_update(self, update: OracleServiceUpdate) -> None:
        self.sessions[update.market] = update.session
        self.sequencer.submit_oracle(update)

    def session_of(self, market: int) -> str | None:
        """The market's session as the oracle last reported it, lower-cased (``"regular"``,
        ``"closed_weekend"``, …); ``"internal_only"`` for a pre-IPO market; None before the
        oracle's first update or with the oracle off."""
        if self.config.markets[market].calendar_exchange is None:
            return Session.INTERNAL_ONLY.name.lower()
        session = self.sessions.get(market)
        return None if session is None else session.name.lower()

    async def _seed_prices(self, feed: SimulatedFeed) -> None:
        """A new journal's first external prices: the source's last published price of each
        market (its live price, or its last close while the market is dark), so a node first
        started on a weekend has a reference to price around. Journaled like any command."""
        now = self.clock_ns()
        seeds = []
        for spec, m in zip(self.specs, self.config.markets):
            quote = feed.quote(m.symbol, SIM_SOURCE.name, now) if m.calendar_exchange is not None else None
            if quote is not None and quote.price > 0:
                price = (Decimal(quote.price).scaleb(quote.expo) / spec.tick_size).to_integral_value() * spec.tick_size
                seeds.append(OracleUpdate(market=spec.market_id, price=price))
        if seeds:
            await self.sequencer.submit_many(seeds)

    async def _serve(self) -> None:
        app = self.app_factory(self)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(self.config.snapshot_interval_s)
            seq = self.sequencer
            if seq.healthy and seq.seq != self._snapshot_seq:
                try:
                    await seq.snapshot()
                    self._snapshot_seq = seq.seq
                except Exception as err:  # noqa: BLE001 - a failed snapshot leaves the node running
                    log.error("snapshot failed: %s", err)

    def _load_keys(self) -> None:
        path = os.path.join(self.data_dir, "keys.json")
        if os.path.exists(path):
            with open(path, "rb") as f:
                self.keys = KeyStore.load(msgspec.json.decode(f.read(), type=list[ApiKey]))
        key_dir = os.path.join(self.data_dir, "keys")
        if os.path.isdir(key_dir):
            for name in sorted(os.listdir(key_dir)):
                if name.endswith(".key"):
                    with open(os.path.join(key_dir, name)) as f:
                        signer = Signer.parse(f.read())
                    if self.keys.get(signer.key_id) is not None:
                        self.signers[signer.key_id] = signer

    def _save_keys(self, signer: Signer) -> None:
        ops = FileOps()
        os.makedirs(os.path.join(self.data_dir, "keys"), mode=0o700, exist_ok=True)
        path = self.key_path(signer.key_id)
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            ops.write(fd, (signer.export() + "\n").encode())
            ops.fsync(fd)
        finally:
            ops.close(fd)
        ops.replace(path + ".tmp", path)
        ops.write_atomic(os.path.join(self.data_dir, "keys.json"), msgspec.json.encode(self.keys.export()))

    # ------------------------------------------------------------------------ text

    def banner(self) -> str:
        seq = self.sequencer
        resumed = (f"resumed from the journal at seq {self.recovered_seq}, state hash {self.recovered_hash}"
                   if self.recovered_seq else "new journal")
        markets = ", ".join(s.symbol for s in self.specs)
        key_file = self.key_path(self.demo.key_id)
        first = self.specs[0]
        mark = self.engine.mark(0) * first.tick_size or self.config.markets[0].start_price
        bid = (mark * Decimal("0.98") / first.tick_size).to_integral_value() * first.tick_size
        size = max(first.lot_size, (Decimal(20) / bid / first.lot_size).to_integral_value() * first.lot_size)
        lines = [
            f"afterhours node: {len(self.specs)} markets ({markets}); data in {self.data_dir} ({resumed})",
            f"  websocket  {self.ws_url}",
            f"  REST       {self.rest_url}   (health: {self.rest_url}/health)",
            f"  demo account {self.config.demo_account}, API key {self.demo.key_id} (credential in {key_file})",
            f"  oracle {'simulated source, real calendars' if self.config.oracle else 'off'}; "
            f"bots {'on' if self._bot_tasks else 'off'}; seq {seq.seq}",
            "connect a bot (python, inside asyncio):",
            "  from api.auth import Signer; from api.client import Client, ClientConfig",
            f"  signer = Signer.parse(open({key_file!r}).read())",
            f"  async with Client(ClientConfig({self.ws_url!r}), signer) as c: "
            f"print(await c.place({first.symbol!r}, 'buy', '{size}', '{bid}'))",
        ]
        return "\n".join(lines)

    def health(self) -> dict:
        seq = self.sequencer
        body = {"status": "ok" if seq.healthy else "degraded", "seq": seq.seq, "ts": seq.last_ts_ns}
        if not seq.healthy:
            body["reason"] = seq.degraded_reason
        return body


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# ---------------------------------------------------------------------------- the app and the bots


def create_web_app(node: Node) -> web.Application:
    """The websocket/REST app: the gateway's (``api.gateway.create_app``) when that module
    exists, else ``minimal_app``. Called once the sequencer has started."""
    if importlib.util.find_spec("api.gateway") is None:
        return minimal_app(node)
    from api.gateway import GatewayConfig, create_app

    return create_app(node.sequencer, node.keys, node.nonces, node.specs,
                      config=GatewayConfig(network=node.config.network), clock_ns=node.clock_ns,
                      session_of=node.session_of)


def minimal_app(node: Node) -> web.Application:
    """``GET /v1/health`` only: 200 with the sequencer's state, 503 when degraded."""

    async def health(request: web.Request) -> web.Response:
        body = node.health()
        return web.json_response(body, status=200 if body["status"] == "ok" else 503)

    app = web.Application()
    app[NODE_KEY] = node
    app.router.add_get("/v1/health", health)
    return app


def default_bots(node: Node) -> list[Coroutine]:
    """The demo market maker and taker (``api.bots``), when that package and the gateway exist;
    on a shifted clock they get the node's (``node_clock_ms``)."""
    if importlib.util.find_spec("api.bots") is None or importlib.util.find_spec("api.gateway") is None:
        node.out("demo bots: not available in this build (needs api.bots and api.gateway)")
        return []
    from api.bots import bot_coroutines, bot_markets

    return bot_coroutines(node.ws_url, maker=node.maker, taker=node.taker, markets=bot_markets(node.specs),
                          network=node.config.network, clock_ms=node_clock_ms(node))


def node_clock_ms(node: Node) -> Callable[[], int] | None:
    """The node's clock in ms for its own bots when it runs shifted (``time_offset_s``), so
    their logon nonces fall inside the node's window; None (the wall clock) otherwise."""
    if not node.config.time_offset_s:
        return None
    return lambda: node.clock_ns() // 1_000_000
