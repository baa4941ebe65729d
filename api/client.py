"""The asyncio client bots use (spec/gateway.md): connect, log on, post actions and await
their acknowledgements, subscribe, keep local books, reconnect by itself.

Layout
------
* ``ClientConfig``: every knob, frozen, with defaults (a test locks them);
* ``Client``: ``connect``/``close``; ``place``/``cancel``/``cancel_all``/``amend``/``batch``/
  ``schedule_cancel``, and ``post`` for any other action (each awaits its one answer); ``subscribe``/``unsubscribe``; ``book(market)``
  returns a self-resyncing ``api.client_book.LocalBook``; ``on(channel, callback)`` for every
  other push; small caches of what bots read most (``markets``, ``positions``, ``orders``,
  ``account``);
* ``backoff_delays``: the reconnect schedule, a pure generator;
* errors: ``PostRefused`` (the whole request refused: a code and a sentence),
  ``AckTimeout`` and ``ConnectionLost`` (the outcome is unknown: look the order up by
  ``cloid``), ``RequestFailed`` (a logon or subscription refused).

Invariants
----------
* Every post carries a fresh ``id`` and is answered at most once; a post still waiting when
  the connection drops fails with ``ConnectionLost`` and is never re-sent by the client
  (a retry is the caller's decision, made safe by its ``cloid``).
* After every (re)connection the client logs on again (when it has a signer) and sends every
  subscription it holds, in the order they were first made, before ``connected`` is set.
* A single reader task owns the socket's inbound side; callbacks run inside it, so they must
  not block.
* Timeouts use ``asyncio.timeout``, never ``asyncio.wait_for``: on Python 3.11 a
  ``wait_for`` whose inner wait finishes as the task is cancelled can swallow the
  cancellation, and a bot would never stop.

Known limitations
-----------------
* One connection per ``Client``; a bot that wants more opens more clients.
* Posts are sent on a logged-on session, unsigned; per-action signatures are for REST.
* ``push_filter`` exists so tests can drop or corrupt pushes before they are applied (an
  injected gap or checksum mismatch); it is not for production use.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import deque
from decimal import Decimal
from typing import Any, Callable, Iterator, Literal

import aiohttp
import msgspec

from api import protocol as p
from api.auth import Signer
from api.client_book import LocalBook

log = logging.getLogger("afterhours.client")

Number = Decimal | str | int


class ClientConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``url`` is the websocket endpoint (``ws://host:port/ws``); ``network`` is the name the
    node signs under. Times in seconds."""

    url: str
    network: str = "local"
    ack_timeout_s: float = 10.0
    heartbeat_interval_s: float = 10.0
    heartbeat_timeout_s: float = 30.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 5.0
    backoff_multiplier: float = 2.0
    max_in_flight: int = 100
    reconnect: bool = True
    sync_clock: bool = True


# ---------------------------------------------------------------------------- errors


class ClientError(Exception):
    pass


class PostRefused(ClientError):
    """The whole post was refused; nothing was done. ``code`` is the wire code (negative)."""

    def __init__(self, code: int, msg: str, retry_after_ms: int | None = None):
        super().__init__(f"{code}: {msg}")
        self.code, self.msg, self.retry_after_ms = code, msg, retry_after_ms


class RequestFailed(ClientError):
    """A logon or a subscription was refused with an error push."""

    def __init__(self, code: int, msg: str):
        super().__init__(f"{code}: {msg}")
        self.code, self.msg = code, msg


class AckTimeout(ClientError):
    """No answer in time; the action may or may not have happened (ask by ``cloid``)."""


class ConnectionLost(ClientError):
    """The connection dropped before the answer; the outcome is unknown (ask by ``cloid``)."""


class NotConnected(ClientError):
    pass


def backoff_delays(cfg: ClientConfig, rng: random.Random) -> Iterator[float]:
    """Seconds to wait before reconnect attempt n = 0, 1, …: ``initial × multiplier^n``
    capped at ``max``, each scaled by a jitter factor in [0.5, 1) so a crowd of clients
    does not come back in step."""
    for n in itertools.count():
        base = min(cfg.backoff_max_s, cfg.backoff_initial_s * cfg.backoff_multiplier ** min(n, 64))
        yield base * (0.5 + rng.random() / 2)


def wire_decimal(value: Number) -> str:
    return value if isinstance(value, str) else p.format_decimal(Decimal(value))


# ---------------------------------------------------------------------------- client


class Client:
    """One websocket connection, kept alive. Use as ``async with Client(cfg, signer) as c``."""

    def __init__(self, cfg: ClientConfig, signer: Signer | None = None, *, rng: random.Random | None = None,
                 session: aiohttp.ClientSession | None = None, clock_ms: Callable[[], int] | None = None):
        """``rng`` draws the backoff jitter; ``clock_ms`` (default: the wall clock), shifted by
        the offset a ping measures (``sync_clock``), gives the logon nonces, which the node
        accepts from 30 s behind its clock to 1 s ahead."""
        self.cfg = cfg
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.signer = signer
        self._rng = rng or random.Random()
        self._own_session = session is None
        self._session = session
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._supervisor: asyncio.Task | None = None
        self._closing = False
        self.connected = asyncio.Event()
        self._first_error: BaseException | None = None
        self._ids = itertools.count(1)
        self._posts: dict[int, asyncio.Future] = {}
        self._in_flight = asyncio.Semaphore(cfg.max_in_flight)
        self._sub_waiters: dict[p.Subscription, deque[asyncio.Future]] = {}
        self._logon_waiter: asyncio.Future | None = None
        self._pong_waiters: deque[asyncio.Future] = deque()
        self.clock_offset_ms = 0  # the server's clock minus ours, from the last ping before a logon
        self._subscriptions: dict[p.Subscription, None] = {}  # insertion-ordered set
        self._books: dict[str, LocalBook] = {}
        self._handlers: dict[str, list[Callable[[Any], None]]] = {}
        self.push_filter: Callable[[p.Push], p.Push | None] | None = None
        self.account: int | None = None
        self._last_nonce = 0
        self.last_frame_at = 0.0
        self.connections = 0
        self.errors: deque[p.ErrorBody] = deque(maxlen=100)
        self.markets: dict[str, p.MarketInfo] = {}
        self.positions: dict[str, p.Position] = {}
        self.orders: dict[int, p.OrderUpdate] = {}
        self.account_state: p.AccountState | None = None

    # ----------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, timeout: float | None = None) -> None:
        """Start the connection supervisor and wait until connected, logged on and
        resubscribed. Failed attempts are retried with backoff (unless ``reconnect`` is off,
        when the first failure raises); ``AckTimeout`` if none succeeds in time."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        if self._supervisor is None:
            self._closing = False
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        waiter = asyncio.ensure_future(self.connected.wait())
        done, _ = await asyncio.wait({waiter, self._supervisor}, timeout=timeout or self.cfg.ack_timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            supervisor = self._supervisor
            await self.close()
            if supervisor.done() and not supervisor.cancelled() and supervisor.exception() is not None:
                raise supervisor.exception()  # the first connection error, with reconnect off
            cause = f" (first failure: {self._first_error})" if self._first_error else ""
            raise AckTimeout(f"not connected to {self.cfg.url} within the timeout{cause}")

    async def close(self) -> None:
        self._closing = True
        task, self._supervisor = self._supervisor, None
        if self._ws is not None:
            await self._ws.close()
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        for book in self._books.values():
            await book.aclose()
        self._fail_pending(ConnectionLost("the client was closed"))
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def drop_connection(self) -> None:
        """Close the socket as if the network failed; the supervisor reconnects."""
        if self._ws is not None:
            await self._ws.close()

    async def _supervise(self) -> None:
        delays = backoff_delays(self.cfg, self._rng)
        while not self._closing:
            try:
                await self._run_connection()
                delays = backoff_delays(self.cfg, self._rng)  # it worked: start the schedule afresh
            except Exception as exc:  # any failure of one connection: the next one starts afresh
                if self.connections == 0 and not self.cfg.reconnect:
                    raise
                known = (aiohttp.ClientError, ClientError, asyncio.TimeoutError, OSError)
                log.log(logging.INFO if isinstance(exc, known) else logging.ERROR,
                        "connection to %s failed: %s", self.cfg.url, exc, exc_info=not isinstance(exc, known))
                if self.connections == 0 and self._first_error is None:
                    self._first_error = exc
            if self._closing or not self.cfg.reconnect:
                return
            await asyncio.sleep(next(delays))

    async def _run_connection(self) -> None:
        ws = await self._session.ws_connect(self.cfg.url, max_msg_size=4 * p.MAX_MESSAGE_BYTES, autoping=True)
        self._ws = ws
        self.last_frame_at = time.monotonic()
        reader = asyncio.get_running_loop().create_task(self._read(ws))
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(ws))
        try:
            if self.signer is not None:
                if self.cfg.sync_clock:
                    await self._sync_clock()
                await self._logon()
            for sub in list(self._subscriptions):
                await self._send_subscription(sub, subscribe=True)
            self.connections += 1
            self.connected.set()
            await reader
        finally:
            self.connected.clear()
            self._ws = None
            heartbeat.cancel()
            reader.cancel()
            await ws.close()
            self._fail_pending(ConnectionLost(f"connection to {self.cfg.url} lost"))
            for book in self._books.values():
                book.reset()

    def _fail_pending(self, exc: ClientError) -> None:
        waiters = list(self._posts.values()) + [f for q in self._sub_waiters.values() for f in q]
        if self._logon_waiter is not None:
            waiters.append(self._logon_waiter)
        waiters += self._pong_waiters
        self._pong_waiters.clear()
        self._posts.clear()
        self._sub_waiters.clear()
        self._logon_waiter = None
        for fut in waiters:
            if not fut.done():
                fut.set_exception(exc)

    async def _heartbeat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """A ``ping`` every interval; a connection silent for the timeout is closed."""
        ping = p.encode(p.Ping())
        while True:
            await asyncio.sleep(self.cfg.heartbeat_interval_s)
            if time.monotonic() - self.last_frame_at > self.cfg.heartbeat_timeout_s:
                log.info("no frame from %s for %.1f s; reconnecting", self.cfg.url, self.cfg.heartbeat_timeout_s)
                await ws.close()
                return
            await ws.send_str(ping.decode())

    # ----------------------------------------------------------- sending

    async def _send(self, msg: msgspec.Struct) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise NotConnected(f"not connected to {self.cfg.url}")
        await ws.send_str(p.encode(msg).decode())

    async def _logon(self) -> p.LogonOk:
        fut = asyncio.get_running_loop().create_future()
        self._logon_waiter = fut
        await self._send(self.signer.logon(self.cfg.network, self._next_nonce()))
        ok = await self._await(fut)
        self.account = ok.account
        return ok

    async def _wait_connected(self) -> None:
        if not self.connected.is_set():
            try:
                async with asyncio.timeout(self.cfg.ack_timeout_s):
                    await self.connected.wait()
            except asyncio.TimeoutError:
                raise NotConnected(f"not connected to {self.cfg.url} within {self.cfg.ack_timeout_s} s") from None

    def _next_nonce(self) -> int:
        """The clock in ms, strictly increasing (two logons in one ms get two nonces)."""
        self._last_nonce = max(self._clock_ms() + self.clock_offset_ms, self._last_nonce + 1)
        return self._last_nonce

    async def _sync_clock(self) -> None:
        """Ping and take the server's clock from the pong: offset = server time − the local
        clock at the midpoint of the round trip. Nonces then follow the server's clock, which
        a node may run shifted (a demo on a weekend)."""
        fut = asyncio.get_running_loop().create_future()
        self._pong_waiters.append(fut)
        sent = self._clock_ms()
        await self._send(p.Ping())
        pong = await self._await(fut)
        received = self._clock_ms()
        self.clock_offset_ms = pong.time - (sent + received) // 2

    async def _await(self, fut: asyncio.Future) -> Any:
        try:
            async with asyncio.timeout(self.cfg.ack_timeout_s):
                return await asyncio.shield(fut)
        except asyncio.TimeoutError:
            raise AckTimeout(f"no answer within {self.cfg.ack_timeout_s} s") from None

    async def post(self, action: p.Action) -> p.PostOk:
        """Send one action and await its answer: ``PostOk`` (one status per action) or
        ``PostRefused`` raised."""
        await self._wait_connected()
        async with self._in_flight:
            post_id = next(self._ids)
            fut = asyncio.get_running_loop().create_future()
            self._posts[post_id] = fut
            try:
                await self._send(p.Post(post_id, action))
                response = await self._await(fut)
            finally:
                self._posts.pop(post_id, None)
        if isinstance(response, p.PostError):
            raise PostRefused(response.code, response.msg, response.retryAfterMs)
        return response

    async def place(self, market: str, side: p.SideName, size: Number, price: Number | None = None, *,
                    order_type: str = "limit", tif: p.TifName = "gtc", stp: p.StpName = "expire_maker",
                    cloid: str | None = None, expires_at_ms: int | None = None,
                    reduce_only: bool = False) -> p.ActionStatus:
        action = place_action(market, side, size, price, order_type=order_type, tif=tif, stp=stp,
                              cloid=cloid, expires_at_ms=expires_at_ms, reduce_only=reduce_only)
        return (await self.post(action)).statuses[0]

    async def cancel(self, market: str, oid: int | None = None, *, cloid: str | None = None) -> p.ActionStatus:
        return (await self.post(p.Cancel(market, oid, cloid))).statuses[0]

    async def cancel_all(self, market: str | None = None) -> p.ActionStatus:
        return (await self.post(p.CancelAll(market))).statuses[0]

    async def amend(self, market: str, oid: int | None = None, *, cloid: str | None = None,
                    price: Number | None = None, size: Number | None = None) -> p.ActionStatus:
        action = p.Amend(market, oid, cloid, None if price is None else wire_decimal(price),
                         None if size is None else wire_decimal(size))
        return (await self.post(action)).statuses[0]

    async def schedule_cancel(self, at_ms: int | None) -> p.ActionStatus:
        """The dead-man switch: every open order is cancelled at the first tick at or after
        ``at_ms`` (the node's clock) unless moved again; ``None`` clears it."""
        return (await self.post(p.ScheduleCancel(at_ms))).statuses[0]

    async def set_leverage(self, market: str, leverage: int) -> p.ActionStatus:
        """``LeverageSet`` or ``Rejected`` (scope ``trade``)."""
        return (await self.post(p.SetLeverage(market, leverage))).statuses[0]

    async def set_margin_mode(self, market: str, mode: Literal["cross", "isolated"]) -> p.ActionStatus:
        """``MarginModeSet`` or ``Rejected``; only while flat with no open orders in ``market``."""
        return (await self.post(p.SetMarginMode(market, mode))).statuses[0]

    async def adjust_margin(self, market: str, amount: Number) -> p.ActionStatus:
        """USD into an open isolated position's margin (negative: back to cross):
        ``MarginAdjusted`` or ``Rejected``."""
        return (await self.post(p.AdjustMargin(market, wire_decimal(amount)))).statuses[0]

    async def withdraw(self, amount: Number) -> p.ActionStatus:
        """USD out of the account's collateral: ``Withdrawn`` or ``Rejected``; the key needs
        scope ``transfer``."""
        return (await self.post(p.Withdraw(wire_decimal(amount)))).statuses[0]

    async def batch(self, actions: list[p.BatchItem]) -> list[p.ActionStatus]:
        """Up to 50 place/cancel/amend actions; one status per action, in order."""
        return (await self.post(p.Batch(list(actions)))).statuses

    async def ping(self) -> None:
        await self._send(p.Ping())

    # ----------------------------------------------------------- subscriptions

    async def subscribe(self, sub: p.Subscription) -> None:
        """Subscribe and await the server's confirmation (``RequestFailed`` if refused). The
        subscription is kept across reconnections: while disconnected, or if the connection
        drops before the answer, it returns and the next connection sends it. Subscribing
        twice is harmless."""
        self._subscriptions[sub] = None
        if self.connected.is_set():
            try:
                await self._send_subscription(sub, subscribe=True)
            except (NotConnected, ConnectionLost):
                pass
            except RequestFailed:
                self._subscriptions.pop(sub, None)
                raise

    async def unsubscribe(self, sub: p.Subscription) -> None:
        self._subscriptions.pop(sub, None)
        if self.connected.is_set():
            await self._send_subscription(sub, subscribe=False)

    async def _send_subscription(self, sub: p.Subscription, subscribe: bool) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._sub_waiters.setdefault(sub, deque()).append(fut)
        await self._send(p.Subscribe(sub) if subscribe else p.Unsubscribe(sub))
        await self._await(fut)

    async def book(self, market: str, timeout: float | None = None) -> LocalBook:
        """The market's local book from ``l2Delta``, synced (subscribes if needed)."""
        book = self._books.get(market)
        if book is None:
            book = self._books[market] = LocalBook(market, self._resync_book, self.cfg.ack_timeout_s)
            await self.subscribe(p.L2DeltaSub(market))
        await book.wait_synced(timeout or self.cfg.ack_timeout_s)
        return book

    async def _resync_book(self, market: str) -> None:
        """Unsubscribe and subscribe again on this socket: the server sends a fresh snapshot."""
        sub = p.L2DeltaSub(market)
        try:
            await self._send_subscription(sub, subscribe=False)
            await self._send_subscription(sub, subscribe=True)
        except ClientError as exc:
            log.info("resync of %s deferred to the reconnection: %s", market, exc)

    def on(self, channel: str, callback: Callable[[Any], None]) -> None:
        """Call ``callback(data)`` for every push on ``channel`` (after the caches are updated)."""
        self._handlers.setdefault(channel, []).append(callback)

    # ----------------------------------------------------------- reading

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            self.last_frame_at = time.monotonic()
            if frame.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                continue
            try:
                push = p.decode_push(frame.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("undecodable push from %s: %s", self.cfg.url, exc)
                continue
            if self.push_filter is not None:
                push = self.push_filter(push)
                if push is None:
                    continue
            self._dispatch(push)

    def _dispatch(self, push: p.Push) -> None:
        match push:
            case p.PostPush(data=result):
                fut = self._posts.get(result.id)
                if fut is not None and not fut.done():
                    fut.set_result(result.response)
            case p.SubscriptionResponsePush(data=ack):
                self._resolve_subscription(ack.subscription, None)
            case p.LogonPush(data=ok):
                self._resolve_logon(ok, None)
            case p.PongPush(data=pong):
                if self._pong_waiters:
                    fut = self._pong_waiters.popleft()
                    if not fut.done():
                        fut.set_result(pong)
            case p.ErrorPush(data=err):
                self._on_error(err)
            case p.L2DeltaPush(data=delta):
                book = self._books.get(delta.market)
                if book is not None:
                    book.on_delta(delta)
            case p.MarketPush(data=info):
                self.markets[info.market] = info
            case p.PositionsPush(data=msg):
                self._on_positions(msg)
            case p.OrderUpdatesPush(data=msg):
                self._on_orders(msg)
            case p.AccountPush(data=state):
                self.account_state = state
        for callback in self._handlers.get(push.__struct_config__.tag, ()):
            callback(push.data)

    def _resolve_subscription(self, sub: p.Subscription, exc: BaseException | None) -> None:
        waiters = self._sub_waiters.get(sub)
        if not waiters:
            return
        fut = waiters.popleft()
        if not waiters:
            del self._sub_waiters[sub]
        if not fut.done():
            fut.set_exception(exc) if exc is not None else fut.set_result(None)

    def _resolve_logon(self, ok: p.LogonOk | None, exc: BaseException | None) -> None:
        fut, self._logon_waiter = self._logon_waiter, None
        if fut is not None and not fut.done():
            fut.set_exception(exc) if exc is not None else fut.set_result(ok)

    def _on_error(self, err: p.ErrorBody) -> None:
        self.errors.append(err)
        failure = RequestFailed(err.code, err.msg)
        if err.subscription is not None:
            self._resolve_subscription(err.subscription, failure)
        elif err.method == "logon":
            self._resolve_logon(None, failure)
        else:
            log.warning("error from %s: %s %s", self.cfg.url, err.code, err.msg)

    def _on_positions(self, msg: p.Positions) -> None:
        if msg.isSnapshot:
            self.positions.clear()
        for pos in msg.positions:
            if Decimal(pos.size) == 0:
                self.positions.pop(pos.market, None)
            else:
                self.positions[pos.market] = pos

    def _on_orders(self, msg: p.OrderUpdates) -> None:
        if msg.isSnapshot:
            self.orders.clear()
        for order in msg.orders:
            if order.status == "open":
                self.orders[order.oid] = order
            else:
                self.orders.pop(order.oid, None)

    # ----------------------------------------------------------- helpers

    def position_size(self, market: str) -> Decimal:
        pos = self.positions.get(market)
        return Decimal(pos.size) if pos is not None else Decimal(0)

    @property
    def http_base(self) -> str:
        """``http://host:port`` of the websocket URL, for the REST reads."""
        url = self.cfg.url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
        return url[: url.index("/", url.index("//") + 2)] if url.count("/") > 2 else url

    async def get_book(self, market: str) -> p.BookResponse:
        """``GET /v1/book?market=…``: the whole book as of ``seq``."""
        async with self._session.get(f"{self.http_base}/v1/book", params={"market": market}) as resp:
            resp.raise_for_status()
            return p.decode_book(await resp.read())


def place_action(market: str, side: p.SideName, size: Number, price: Number | None = None, *,
                 order_type: str = "limit", tif: p.TifName = "gtc", stp: p.StpName = "expire_maker",
                 cloid: str | None = None, expires_at_ms: int | None = None, reduce_only: bool = False) -> p.Place:
    """A ``Place`` with decimals written as wire strings."""
    return p.Place(market=market, side=side, size=wire_decimal(size),
                   price=None if price is None else wire_decimal(price), orderType=order_type, tif=tif, stp=stp,
                   cloid=cloid, expiresAt=expires_at_ms, reduceOnly=reduce_only)
