"""The write side: journal, then apply, with a state hash every N commands and snapshots.

Layout
------
``JournaledEngine`` pairs an ``Engine`` with its ``Journal``. ``submit(records, ts_ns)``
appends the batch (one frame, one fsync), applies it as one ``Engine.apply`` call, and
returns the sequence numbers and events; the caller may acknowledge once it returns. When
at least ``hash_every`` commands have been applied since the last recorded hash, the next
frame carries ``state_hash()`` of the state before it. ``snapshot()`` writes a snapshot at
the current sequence number, then prunes: keeps ``keep_snapshots`` snapshots and removes
journal segments wholly before the oldest kept one. ``snapshot_every`` (commands) takes
snapshots automatically between batches.

Invariants
----------
* The engine only ever applies what the journal has fsynced; a failed append
  (``JournalFailed``) leaves the engine untouched and every later ``submit`` fails too.
* Snapshots are taken between frames, so every snapshot sits on a frame boundary.

Known limitations
-----------------
* Snapshots are written synchronously on the caller's thread (``Engine.export_state``
  copies, so a background writer is possible later).
* A failed snapshot write raises OSError but leaves journal and engine usable.
"""

from __future__ import annotations

import os

import numpy as np

from engine.engine import Engine
from engine.journal import snapshot
from engine.journal.errors import JournalNotFound
from engine.journal.fileops import FileOps
from engine.journal.replay import EventSink, Recovered, recover
from engine.journal.segments import DEFAULT_SEGMENT_BYTES, Journal
from engine.spec import EngineConfig, MarketSpec

DEFAULT_HASH_EVERY = 1_000_000
DEFAULT_KEEP_SNAPSHOTS = 2


class JournaledEngine:
    """An engine whose every batch is journaled before it is applied. See module docstring."""

    def __init__(self, engine: Engine, journal: Journal, *, hash_every: int = DEFAULT_HASH_EVERY,
                 snapshot_every: int | None = None, keep_snapshots: int = DEFAULT_KEEP_SNAPSHOTS):
        if journal.specs != list(engine.specs) or journal.config != engine.config:
            raise ValueError("the engine's specs and config differ from the journal's")
        self.engine = engine
        self.journal = journal
        self.seq = journal.last_seq
        self.hash_every = hash_every
        self.snapshot_every = snapshot_every
        self.keep_snapshots = keep_snapshots
        self.recovered: Recovered | None = None
        self._since_hash = 0
        self._since_snapshot = 0

    @classmethod
    def open(cls, directory: str, specs: list[MarketSpec], config: EngineConfig | None = None, *,
             segment_bytes: int = DEFAULT_SEGMENT_BYTES, fileops: FileOps | None = None,
             on_events: EventSink | None = None, **options) -> JournaledEngine:
        """Recover the engine from ``directory``, or create a new journal there. A journal
        of other specs or config is refused (``JournalMismatch``). ``on_events(first_seq,
        records, events)`` gets the events of the commands replayed after the snapshot."""
        ops = fileops or FileOps()
        config = config or EngineConfig()
        try:
            rec = recover(directory, list(specs), config, segment_bytes=segment_bytes, fileops=ops,
                          on_events=on_events)
        except JournalNotFound:
            journal = Journal.open(directory, specs, config, create=True, segment_bytes=segment_bytes, fileops=ops)
            return cls(Engine(specs, config), journal, **options)
        out = cls(rec.engine, rec.journal, **options)
        out.recovered = rec
        return out

    def submit(self, records: np.ndarray, ts_ns: int) -> tuple[range, np.ndarray]:
        """Journal ``records`` (fsynced), apply them, return (sequence numbers, events)."""
        hash_before = None
        if self._since_hash >= self.hash_every:
            hash_before = self.engine.state_hash()
        seqs = self.journal.append(records, ts_ns, hash_before)
        if hash_before is not None:
            self._since_hash = 0
        events = self.engine.apply(records)
        self.seq = seqs.stop - 1
        self._since_hash += len(records)
        self._since_snapshot += len(records)
        if self.snapshot_every is not None and self._since_snapshot >= self.snapshot_every:
            self.snapshot()
        return seqs, events

    def snapshot(self) -> str:
        """Write a snapshot at the current sequence number and prune by policy."""
        path = snapshot.write_snapshot(self.journal.directory, self.engine, self.seq, fileops=self.journal.ops)
        self._since_snapshot = 0
        self.prune()
        return path

    def prune(self) -> list[str]:
        """Keep the newest ``keep_snapshots`` snapshots; drop segments wholly before the oldest."""
        removed, oldest = snapshot.prune_snapshots(self.journal.directory, self.keep_snapshots,
                                                   fileops=self.journal.ops)
        if oldest is not None:
            removed += self.journal.drop_segments_through(oldest)
        return removed

    def close(self) -> None:
        self.journal.close()

    @property
    def directory(self) -> str:
        return os.fspath(self.journal.directory)
