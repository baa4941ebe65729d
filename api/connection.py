"""One websocket connection's outbound side: a bounded queue, its writer task, conflation of
book channels, and the closes (slow consumer, policy, idle) (spec/gateway.md §4).

Layout
------
* ``Connection.send(frame, book_key)``: never blocks; appends to the queue or conflates;
* ``Connection.run_writer()``: the only task that writes to the socket;
* ``Connection.close(code, frame)``: the last frame (an error), then a close frame; a peer
  that does not read them within ``close_grace_s`` has its transport aborted.

Conflation
----------
When the queue is full, every queued ``l2Book``/``l2Delta`` frame is dropped and replaced by
one resync marker per subscription, at the end of the queue; later frames of a subscription
with a marker pending are dropped too. When the writer reaches a marker it asks the
publisher for a fresh snapshot (``snapshot(key)``), so the client gets the latest book
(with ``snapshot: true`` and a ``seq``) and can carry on with the next delta. If the queue
is still full after that, the client is a slow consumer: ``{"channel": "error", …}`` with
``SLOW_CONSUMER`` and close 1013.

Invariants
----------
* ``send`` does not await: a stuck client costs the engine and the other clients nothing
  beyond one ``deque.append``.
* After ``close`` starts, nothing more is queued; the writer sends what was queued before,
  then the closing error frame, then the close frame (a slow-consumer close drops the queue).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from typing import Any, Callable, Hashable

from aiohttp import WSMsgType, web

from api import protocol as p
from api.errors import GatewayCode
from api.ratelimit import CLOSE_TRY_AGAIN, ConnectionLimiter, Limits

log = logging.getLogger(__name__)
_ids = itertools.count(1)
_PING = object()


class _Pong(bytes):
    """The payload of a client's ping, queued to be sent back as a pong."""


class Connection:
    """``id`` (unique in the process), ``ws``, ``limiter`` (inbound limits), ``session``
    (after a logon), ``subscriptions`` (normalised keys) and the outbound queue."""

    def __init__(self, ws: web.WebSocketResponse, transport: Any, limits: Limits, now_ns: int, *,
                 snapshot: Callable[[Hashable], bytes | None], close_grace_s: float = 5.0,
                 on_sent: Callable[[int], None] | None = None, on_slow: Callable[[], None] | None = None,
                 on_conflate: Callable[[], None] | None = None):
        self.id = next(_ids)
        self.ws, self._transport = ws, transport
        self.limiter = ConnectionLimiter(limits, now_ns)
        self.max_queue = limits.outbound_queue_max
        self.session = None
        self.subscriptions: set[Hashable] = set()
        self.in_flight_cloids: set[Any] = set()
        self._snapshot = snapshot
        self._grace = close_grace_s
        self._on_sent = on_sent or (lambda n: None)
        self._on_slow = on_slow or (lambda: None)
        self._on_conflate = on_conflate or (lambda: None)
        self._queue: deque[tuple[Any, Hashable | None]] = deque()
        self._resync: set[Hashable] = set()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task | None = None
        self._closer: asyncio.Task | None = None
        self.closing = False
        self.close_code: int | None = None
        self.close_reason = "client"  # who ended it: "client", or the server's reason
        self.conflations = 0

    # ------------------------------------------------------------------ queueing

    def send(self, frame: bytes, book_key: Hashable | None = None) -> None:
        """Queue one encoded frame; ``book_key`` marks a book channel's frame (conflatable)."""
        if self.closing or (book_key is not None and book_key in self._resync):
            return
        if len(self._queue) >= self.max_queue:
            self._conflate()
            if book_key is not None and book_key in self._resync:
                return
            if len(self._queue) >= self.max_queue:
                self._on_slow()
                self.close(CLOSE_TRY_AGAIN, p.encode(p.error_push(GatewayCode.SLOW_CONSUMER,
                                                                  f"{self.max_queue} messages queued")),
                           abort_writer=True, reason="slow_consumer")
                return
        self._queue.append((frame, book_key))
        self._wake.set()

    def send_push(self, push: Any) -> None:
        self.send(p.encode(push))

    def ping(self) -> None:
        """Queue a server ping (control frames go through the writer like the rest)."""
        if not self.closing:
            self._queue.append((_PING, None))
            self._wake.set()

    def pong(self, payload: bytes) -> None:
        """Queue the answer to a client's ping."""
        if not self.closing:
            self._queue.append((_Pong(payload), None))
            self._wake.set()

    def _conflate(self) -> None:
        kept: deque[tuple[Any, Hashable | None]] = deque()
        markers: list[Hashable] = []
        for frame, key in self._queue:
            if key is None:
                kept.append((frame, key))
            elif key not in markers:
                markers.append(key)
        if markers:
            self.conflations += 1
            self._on_conflate()
        for key in markers:
            kept.append((None, key))
            self._resync.add(key)
        self._queue = kept

    @property
    def queued(self) -> int:
        return len(self._queue)

    # ------------------------------------------------------------------ writing

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self.run_writer())

    async def run_writer(self) -> None:
        try:
            while True:
                while not self._queue:
                    if self.closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                frame, key = self._queue.popleft()
                if frame is _PING:
                    await self.ws.ping()
                    continue
                if type(frame) is _Pong:
                    await self.ws.pong(bytes(frame))
                    continue
                if frame is None:
                    self._resync.discard(key)
                    frame = self._snapshot(key) if key in self.subscriptions else None
                    if frame is None:
                        continue
                await self.ws.send_frame(frame, WSMsgType.TEXT)
                self._on_sent(1)
        except (ConnectionError, RuntimeError):
            self.closing = True
        except Exception:  # a bug: say so, and do not leave a connection that never writes
            log.exception("connection %d: writer failed", self.id)
            self.closing = True
            self.abort()

    # ------------------------------------------------------------------ closing

    def close(self, code: int, frame: bytes | None = None, *, abort_writer: bool = False, reason: str = "server") -> None:
        """Send what is queued, then ``frame`` (if any) and a close frame with ``code``;
        idempotent. With ``abort_writer`` the queue is dropped and the frame goes out at
        once, even while the writer is blocked on a full socket (slow consumer)."""
        if self.closing:
            return
        self.closing, self.close_code, self.close_reason = True, code, reason
        self._wake.set()
        if abort_writer or self._writer is None:
            if self._writer is not None:
                self._writer.cancel()
            self._queue.clear()
            self._closer = asyncio.get_running_loop().create_task(self._close_now(code, frame))
        else:
            if frame is not None:
                self._queue.append((frame, None))
            self._closer = asyncio.get_running_loop().create_task(self._close_after_writer(code))

    async def _close_after_writer(self, code: int) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), self._grace)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self._writer.cancel()
        await self._close_now(code, None)

    async def _close_now(self, code: int, frame: bytes | None) -> None:
        try:
            async with asyncio.timeout(self._grace):
                if frame is not None:
                    await self.ws.send_frame(frame, WSMsgType.TEXT)
                await self.ws.close(code=code)
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise
            self.abort()  # the socket's drain future, cancelled with the writer we stopped
        except (TimeoutError, ConnectionError, RuntimeError):
            self.abort()

    def abort(self) -> None:
        """Drop the socket now, unsent bytes included (a closing transport would wait for a
        peer that does not read)."""
        if self._transport is not None:
            self._transport.abort()

    async def finish(self) -> None:
        """Called once the handler's read loop ended: let a close in progress finish (it
        waits for the writer, within the grace), then stop the writer."""
        self.closing = True
        self._wake.set()
        if self._closer is not None and not self._closer.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._closer), 2 * self._grace + 1)
            except (asyncio.TimeoutError, Exception):
                self.abort()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
