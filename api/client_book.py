"""The client's self-healing local book: an ``api.l2book.L2Book`` that resubscribes by
itself when a delta does not follow on (``prevSeq``) or the checksum disagrees.

Layout
------
* ``LocalBook``: one market's ``l2Delta`` feed as the client applies it; ``on_delta`` is fed
  by the client's reader, ``resubscribe`` is the client's coroutine that unsubscribes and
  subscribes again on the same socket so the server sends a fresh, sequenced snapshot;
* ``ResyncRecord``: why and when (``seq``) a book was thrown away, for tests and logs.

Invariants
----------
* Between a failure and the next snapshot every delta is ignored (it belongs to the feed
  that was abandoned); only a snapshot brings the book back.
* ``synced`` is true only when the book holds a snapshot and every delta after it, each
  checked against its checksum.
* After a reconnect the book is reset and waits for the snapshot the resubscription brings.

Known limitations
-----------------
* Resyncs are not rate-limited beyond one in flight per book: a server that published
  a wrong checksum every time would make the client resubscribe after every delta.
* A lost *last* delta shows only when the next one arrives: the feed has no heartbeat
  sequence number, so a quiet market can show a stale book until it changes.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import msgspec

from api.l2book import L2Book, LevelStrs, ResyncRequired
from api.protocol import L2Delta


class ResyncRecord(msgspec.Struct, frozen=True):
    """``kind`` is the exception's class name (``SequenceGap``, ``ChecksumMismatch``,
    ``NotSynced``) or ``"reconnect"``."""

    kind: str
    detail: str


class LocalBook:
    """One market's book as the client keeps it; read it with ``bids()``/``asks()``."""

    def __init__(self, market: str, resubscribe: Callable[[str], Awaitable[None]], resync_timeout_s: float = 10.0):
        self.market = market
        self.resync_timeout_s = resync_timeout_s
        self._book = L2Book(market)
        self._resubscribe = resubscribe
        self._synced = asyncio.Event()
        self._changed = asyncio.Event()  # set by every snapshot and every failure
        self._faults = 0
        self._resync_task: asyncio.Task | None = None
        self.resyncs: list[ResyncRecord] = []
        self.snapshots = 0
        self.deltas = 0

    # ---------------------------------------------------------------- reading

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    @property
    def seq(self) -> int | None:
        return self._book.seq if self.synced else None

    def bids(self, depth: int | None = None) -> list[LevelStrs]:
        return self._book.bids(depth)

    def asks(self, depth: int | None = None) -> list[LevelStrs]:
        return self._book.asks(depth)

    def best_bid(self) -> LevelStrs | None:
        return self._book.best_bid()

    def best_ask(self) -> LevelStrs | None:
        return self._book.best_ask()

    async def wait_synced(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._synced.wait()

    async def wait_seq(self, seq: int, timeout: float | None = None) -> None:
        """Until the book is synced at ``seq`` or later."""

        async def reached() -> None:
            while not (self.synced and self._book.seq is not None and self._book.seq >= seq):
                await asyncio.sleep(0.005)

        async with asyncio.timeout(timeout):
            await reached()

    # ---------------------------------------------------------------- feeding

    def on_delta(self, msg: L2Delta) -> None:
        """Apply one ``l2Delta`` payload; a failure starts a resync instead of raising."""
        if not msg.snapshot and not self.synced:
            return  # from the feed abandoned by a resync, or before the first snapshot
        try:
            self._book.apply(msg)
        except ResyncRequired as exc:
            self._start_resync(type(exc).__name__, str(exc))
            return
        if msg.snapshot:
            self.snapshots += 1
            self._synced.set()
            self._changed.set()
        else:
            self.deltas += 1

    def reset(self, reason: str = "reconnect") -> None:
        """The connection was lost: wait for the snapshot the resubscription will bring."""
        self._synced.clear()
        self.resyncs.append(ResyncRecord(reason, f"{self.market}: book dropped"))

    def _start_resync(self, kind: str, detail: str) -> None:
        self._synced.clear()
        self._faults += 1
        self._changed.set()
        self.resyncs.append(ResyncRecord(kind, detail))
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.get_running_loop().create_task(self._resync())

    async def _resync(self) -> None:
        """Resubscribe until a snapshot holds: again at once if the fresh book fails too
        before this task sees it, and again after a timeout if no snapshot comes."""
        loop = asyncio.get_running_loop()
        while not self.synced:
            faults = self._faults
            await self._resubscribe(self.market)
            deadline = loop.time() + self.resync_timeout_s
            while not self.synced and self._faults == faults:
                self._changed.clear()
                try:
                    async with asyncio.timeout_at(deadline):
                        await self._changed.wait()
                except asyncio.TimeoutError:
                    self.resyncs.append(ResyncRecord("timeout", f"{self.market}: no snapshot within "
                                                                f"{self.resync_timeout_s} s; asking again"))
                    break

    async def aclose(self) -> None:
        task, self._resync_task = self._resync_task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
