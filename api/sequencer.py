"""The sequencer: the one task that owns the engine. Queue -> journal (fsync) -> apply -> acks, listeners.

Layout
------
``Sequencer(journaled)`` wraps an open ``engine.journal.JournaledEngine``. Producers put
commands on its queue: the gateway (``submit``, ``submit_many``: awaited until durable),
the oracle service (``submit_oracle``: an ``oracle.update.OracleUpdate``, converted with
``to_engine_command``, not awaited) and its own timer (a ``Tick`` every
``tick_interval_s``). The task then repeats one *group commit*:

1 take every pending command, up to ``max_batch`` records (a command is never split);
2 stamp the batch with one timestamp ``ts = max(clock_ns(), previous ts)``, written into
  every record's ``ts`` field: the engine's time never goes backwards, whatever the host
  clock does, and the journal holds exactly the time the engine saw;
3 if the batch carries nonces: append them to the ``NonceLog`` (one line, one fsync);
4 append the records to the journal as one frame, one fsync (in a worker thread, so the
  event loop keeps taking requests; the engine is not touched meanwhile);
5 apply the records in one ``Engine.apply`` call, on the event loop;
6 release every command's ``Ack`` (its sequence number, the stamp, its own events) and
  call each listener once with the whole ``Batch``.

Nonces
------
The gateway checks a signed request's nonce with ``api.auth.NonceStore`` (in memory), then
passes it along: ``submit(cmd, nonce=(key_id, nonce_ms))``, ``submit_many(cmds, nonce=…)``,
or, for a request that makes no engine command (a websocket logon),
``await record_nonce(key_id, nonce_ms)``. The nonce is fsynced in the same group commit,
*before* the command journal, and before the acknowledgement. ``NonceLog.open`` on the next
start gives the ``NonceState`` to load the gateway's ``NonceStore`` from, so a signed
request replayed after ``kill -9`` and a restart is still refused (gateway.md §3).

Cloids
------
``Sequencer(cloids=index)`` (an ``api.cloid_index.CloidIndex``) makes the index the first
listener, so it has every batch before any answer is released to its caller's task, and
``snapshot()`` saves it (``cloids.state``) before the engine snapshot at the same sequence
number.

Invariants
----------
* Nothing is acknowledged before both fsyncs returned: an ``Ack`` is on disk.
* Commands are applied in queue order; each command's records are contiguous in one frame.
* Listeners see every applied batch once, in sequence order, on the sequencer task; they
  must not block (a publisher enqueues and returns). A listener that raises is logged and
  skipped; the engine and the other listeners go on.
* The sequencer never awaits a client: a caller that went away only leaves a future
  nobody reads.
* After a journal or nonce-log failure (disk full, fsync error) ``healthy`` is False and
  ``degraded_reason`` says why; the failed batch and every later submit raise
  ``SequencerUnavailable`` and nothing more is journaled or applied. A restart recovers.

Known limitations
-----------------
* ``JournaledEngine.snapshot_every`` is not used (the sequencer journals and applies
  itself, to fsync off the event loop); call ``snapshot()``, which runs between batches.
* One stamp per batch: commands in one batch share a timestamp.
* The queue is unbounded; producers bound themselves (the gateway limits in-flight posts
  per connection, the oracle sends one update per market per second).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from api.nonce_log import NonceLogFailed
from engine.commands import COMMAND_DTYPE, EVENT_DTYPE, Tick, to_records
from engine.journal import JournaledEngine, JournalFailed
from oracle.update import OracleUpdate as OracleServiceUpdate
from oracle.update import to_engine_command

log = logging.getLogger(__name__)

Nonce = tuple[str, int]  # (key_id, nonce in ms)


class SequencerUnavailable(Exception):
    """The sequencer accepts no mutating command: stopped, or degraded after a disk failure."""


@dataclass(frozen=True)
class Ack:
    """A durable command: its first journal sequence number, the stamp, its own events."""

    seq: int
    ts_ns: int
    events: np.ndarray


@dataclass(frozen=True)
class Batch:
    """One applied group commit: ``commands[i]`` has sequence number ``first_seq + i``;
    ``events`` are all of the batch's events in order, ``events["cmd"]`` indexing ``commands``."""

    first_seq: int
    ts_ns: int
    commands: np.ndarray
    events: np.ndarray


@dataclass
class _Item:
    records: np.ndarray  # one command (a batch command: its header and actions)
    future: asyncio.Future | None
    nonces: list[Nonce] = field(default_factory=list)


_NO_EVENTS = np.zeros(0, dtype=EVENT_DTYPE)


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    """One fresh record array: the parts' bytes joined (``np.concatenate`` on a structured
    dtype first promotes its fields, which costs more than the copy for small batches)."""
    if not parts:
        return np.zeros(0, dtype=COMMAND_DTYPE)
    if len(parts) == 1:
        return parts[0].copy()
    return np.concatenate([np.ascontiguousarray(part).view(np.uint8) for part in parts]).view(COMMAND_DTYPE)


def last_journaled_ts(journal) -> int:
    """The stamp of the journal's last frame (0 for an empty journal). Reads the last
    segment that holds a frame (a frame never spans segments)."""
    for segment in reversed(journal.segments):
        if segment.first_seq > journal.last_seq:
            continue  # started, no frame yet
        last = 0
        for frame in journal.batches(segment.first_seq - 1):
            last = frame.ts_ns
        return last
    return 0


class Sequencer:
    """See the module docstring."""

    def __init__(self, journaled: JournaledEngine, *, clock_ns: Callable[[], int] = time.time_ns,
                 tick_interval_s: float | None = 1.0, max_batch: int = 4096, nonce_log=None, cloids=None):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.journaled = journaled
        self.clock_ns = clock_ns
        self.tick_interval_s = tick_interval_s
        self.max_batch = max_batch
        self.nonce_log = nonce_log
        self.healthy = True
        self.degraded_reason: str | None = None
        self.batches = 0  # group commits done
        self.oracle_dropped = 0  # oracle updates refused (stopped or degraded)
        self.last_ts_ns = last_journaled_ts(journaled.journal)  # the stamp never goes back, across restarts too
        self.cloids = cloids  # an api.cloid_index.CloidIndex: fed first, saved with each snapshot
        self._listeners: list[Callable[[Batch], None]] = [cloids.on_batch] if cloids is not None else []
        self._queue: collections.deque[_Item] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._timer: asyncio.Task | None = None
        self._accepting = False
        self._since_hash = 0
        self._snapshot_requests: list[asyncio.Future] = []

    # ------------------------------------------------------------------------ reading

    @property
    def engine(self):
        """The engine, for read-only queries on the event loop between batches."""
        return self.journaled.engine

    @property
    def seq(self) -> int:
        """The last applied (and journaled) sequence number."""
        return self.journaled.seq

    @property
    def specs(self):
        return self.journaled.engine.specs

    def now_ns(self) -> int:
        """The sequencer's time now (what the next stamp would be at least): for checks that
        must agree with the engine's clock, such as nonce windows (``now_ns() // 10**6``)."""
        return max(int(self.clock_ns()), self.last_ts_ns)

    def add_listener(self, fn: Callable[[Batch], None]) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[Batch], None]) -> None:
        self._listeners.remove(fn)

    # ------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the sequencer is already started")
        self._wake = asyncio.Event()
        self._accepting = True
        self._task = asyncio.create_task(self._run(), name="sequencer")
        if self.tick_interval_s:
            self._timer = asyncio.create_task(self._tick_timer(), name="sequencer-tick")

    async def stop(self) -> None:
        """Stop taking commands, journal and apply what is queued, close the journal."""
        self._accepting = False
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
            self._timer = None
        if self._task is not None:
            self._wake.set()
            await self._task
            self._task = None
        self._fail_pending(SequencerUnavailable("the sequencer stopped"))
        self.journaled.close()
        if self.nonce_log is not None:
            self.nonce_log.close()

    # ------------------------------------------------------------------------ producers

    async def submit(self, record, *, nonce: Nonce | None = None) -> Ack:
        """Journal and apply one command (a Struct from ``engine.commands`` or its
        ``COMMAND_DTYPE`` record(s)); returns once it is durable and applied."""
        return (await self.submit_many([record], nonce=nonce))[0]

    async def submit_many(self, records: Sequence, *, nonce: Nonce | None = None) -> list[Ack]:
        """Several commands in one batch, in order (a wire batch); one ``Ack`` each."""
        self._check_accepting()
        if nonce is not None and self.nonce_log is None:
            raise ValueError("this sequencer has no nonce log")
        if not len(records):
            if nonce is not None:
                await self.record_nonce(*nonce)
            return []
        loop = asyncio.get_running_loop()
        items = [_Item(self._to_records(r), loop.create_future()) for r in records]
        if nonce is not None:
            items[0].nonces.append((str(nonce[0]), int(nonce[1])))
        self._queue.extend(items)
        self._wake.set()
        if len(items) == 1:  # the common case (one wire post): no gather and its extra future
            return [await items[0].future]
        results = await asyncio.gather(*(it.future for it in items), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return list(results)

    async def record_nonce(self, key_id: str, nonce_ms: int) -> None:
        """Make a nonce durable with no engine command (a logon); returns after its fsync."""
        self._check_accepting()
        if self.nonce_log is None:
            raise ValueError("this sequencer has no nonce log")
        item = _Item(np.zeros(0, dtype=COMMAND_DTYPE), asyncio.get_running_loop().create_future(),
                     [(str(key_id), int(nonce_ms))])
        self._queue.append(item)
        self._wake.set()
        await item.future

    def submit_oracle(self, update) -> None:
        """The oracle service's ``submit``: queue its update as an engine ``OracleUpdate``
        (or any command Struct), without waiting for it. Dropped (and counted) when the
        sequencer is stopped or degraded."""
        if not self._accepting or not self.healthy:
            self.oracle_dropped += 1
            return
        if isinstance(update, OracleServiceUpdate):
            update = to_engine_command(update, self.specs[update.market])
        self._queue.append(_Item(self._to_records(update), None))
        self._wake.set()

    async def snapshot(self) -> str:
        """Write an engine snapshot between two batches (and compact the nonce log)."""
        self._check_accepting()
        future = asyncio.get_running_loop().create_future()
        self._snapshot_requests.append(future)
        self._wake.set()
        return await future

    def _check_accepting(self) -> None:
        if not self.healthy:
            raise SequencerUnavailable(f"the node accepts no actions: {self.degraded_reason}")
        if not self._accepting:
            raise SequencerUnavailable("the sequencer is not running")

    def _to_records(self, record) -> np.ndarray:
        if isinstance(record, np.void):
            record = np.array([record], dtype=COMMAND_DTYPE)
        if isinstance(record, np.ndarray):
            if record.dtype != COMMAND_DTYPE or record.ndim != 1 or len(record) == 0:
                raise TypeError("command records must be a non-empty 1-D COMMAND_DTYPE array")
            return record
        if isinstance(record, OracleServiceUpdate):
            record = to_engine_command(record, self.specs[record.market])
        return to_records([record], self.specs)

    # ------------------------------------------------------------------------ the task

    async def _tick_timer(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval_s)
            if not self._accepting or not self.healthy:
                return
            self._queue.append(_Item(to_records([Tick(ts_ns=0)], self.specs), None))
            self._wake.set()

    async def _run(self) -> None:
        try:
            await self._loop()
        except Exception as err:  # a bug here must not leave callers waiting forever
            log.exception("the sequencer task failed")
            self._degrade((), err)
            self._fail_pending(SequencerUnavailable(f"the node accepts no actions: {self.degraded_reason}"))

    async def _loop(self) -> None:
        while True:
            if not self._queue and not self._snapshot_requests:
                if not self._accepting:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._queue:
                await self._group_commit(self._take())
            if self._snapshot_requests and self.healthy:
                await self._do_snapshots()
            if not self.healthy:
                self._fail_pending(SequencerUnavailable(f"the node accepts no actions: {self.degraded_reason}"))
                return

    def _take(self) -> list[_Item]:
        items = [self._queue.popleft()]
        n = len(items[0].records)
        while self._queue and n + len(self._queue[0].records) <= self.max_batch:
            item = self._queue.popleft()
            n += len(item.records)
            items.append(item)
        return items

    async def _group_commit(self, items: list[_Item]) -> None:
        ts = max(int(self.clock_ns()), self.last_ts_ns)
        self.last_ts_ns = ts
        nonces = [n for it in items for n in it.nonces]
        parts = [it.records for it in items if len(it.records)]
        records = _concat(parts)
        records["ts"] = ts
        je = self.journaled
        hash_before = None
        if len(records) and self._since_hash >= je.hash_every:
            hash_before = je.engine.state_hash()
        try:
            if nonces:
                await asyncio.to_thread(self.nonce_log.append, nonces)
            if len(records):
                seqs = await asyncio.to_thread(je.journal.append, records, ts, hash_before)
        except Exception as err:  # noqa: BLE001 - JournalFailed, the nonce log's OSError: nothing acknowledged
            self._degrade(items, err)
            return
        if not len(records):
            self._release(items, 0, ts, _NO_EVENTS)
            return
        if hash_before is not None:
            self._since_hash = 0
        try:
            events = je.engine.apply(records)
        except Exception as err:  # a bug in the engine: the journal has the batch, the engine may not
            log.exception("engine.apply failed")
            self._degrade(items, err)
            return
        je.seq = seqs.stop - 1
        self._since_hash += len(records)
        self.batches += 1
        self._release(items, seqs.start, ts, events)
        batch = Batch(seqs.start, ts, records, events)
        for fn in list(self._listeners):
            try:
                fn(batch)
            except Exception:  # noqa: BLE001 - one bad listener must not stop the engine
                log.exception("sequencer listener %r failed", fn)

    def _release(self, items: list[_Item], first_seq: int, ts: int, events: np.ndarray) -> None:
        cmd = events["cmd"]
        ordered = len(cmd) < 2 or bool(np.all(cmd[1:] >= cmd[:-1]))
        start = 0
        for it in items:
            stop = start + len(it.records)
            if it.future is not None and not it.future.done():
                if ordered:
                    lo, hi = np.searchsorted(cmd, [start, stop])
                    mine = events[lo:hi]
                else:
                    mine = events[(cmd >= start) & (cmd < stop)]
                it.future.set_result(Ack(first_seq + start if len(it.records) else 0, ts, mine))
            start = stop

    def _degrade(self, items: Iterable[_Item], err: BaseException) -> None:
        self.healthy = False
        durable = isinstance(err, (JournalFailed, NonceLogFailed))  # their messages say what and where
        self.degraded_reason = str(err) if durable else f"{type(err).__name__}: {err}"
        log.error("sequencer degraded: %s", self.degraded_reason)
        exc = SequencerUnavailable(f"the node accepts no actions: {self.degraded_reason}")
        for it in items:
            if it.future is not None and not it.future.done():
                it.future.set_exception(exc)

    def _fail_pending(self, exc: Exception) -> None:
        while self._queue:
            it = self._queue.popleft()
            if it.future is not None and not it.future.done():
                it.future.set_exception(exc)
        for fut in self._snapshot_requests:
            if not fut.done():
                fut.set_exception(exc)
        self._snapshot_requests.clear()

    async def _do_snapshots(self) -> None:
        requests, self._snapshot_requests = self._snapshot_requests, []
        try:
            if self.cloids is not None:  # as of this seq, before the snapshot at it (never behind it)
                await asyncio.to_thread(self.cloids.save)
            path = await asyncio.to_thread(self.journaled.snapshot)
            if self.nonce_log is not None:
                await asyncio.to_thread(self.nonce_log.compact)
        except Exception as err:  # noqa: BLE001 - a failed snapshot leaves journal and engine usable
            log.error("snapshot failed: %s", err)
            for fut in requests:
                if not fut.done():
                    fut.set_exception(err)
            return
        for fut in requests:
            if not fut.done():
                fut.set_result(path)
