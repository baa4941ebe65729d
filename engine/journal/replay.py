"""Recovery and replay: newest valid snapshot, then the journal after it, hashes checked.

Layout
------
* ``replay(journal, engine, after_seq)`` applies every frame after ``after_seq``. A frame is
  one ``Engine.apply`` call on the live side; replay merges consecutive frames into one call
  (up to ``MAX_GROUP`` records) except after a frame in which some ``BATCH`` record, read as
  a header, could reach past the frame's end (``boundaries``): merging there could change
  what the batch covers. Where a frame recorded ``hash_before`` the pending group is applied
  and ``state_hash()`` compared first (``ReplayDivergence`` on a difference).
* ``recover(directory)`` opens the journal (truncating a torn tail), tries snapshots newest
  first, refusing each unusable one with its reason (corrupt, other version, other specs,
  beyond the journal's end, or older than the journal's first kept segment) and falling
  back to the next older, or to an empty engine when the journal still starts at 1.

Invariants
----------
* Replay reads no clock and no randomness: the same directory gives the same state hash in
  any process, at any time, from any usable snapshot.
* ``recover`` never applies a command twice or skips one: it replays exactly the sequence
  numbers ``snapshot seq + 1 .. journal.last_seq``.

Known limitations
-----------------
* A snapshot must sit on a frame boundary (``JournaledEngine`` only takes them there).
* Frames are read one segment file at a time into memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engine.codes import CommandKind
from engine.commands import COMMAND_DTYPE
from engine.engine import Engine
from engine.journal import frames, snapshot
from engine.journal.errors import RecoveryError, ReplayDivergence, SnapshotError
from engine.journal.fileops import FileOps
from engine.journal.segments import DEFAULT_SEGMENT_BYTES, Journal
from engine.spec import EngineConfig, MarketSpec

MAX_GROUP = 1 << 16
_BATCH = int(CommandKind.BATCH)

EventSink = Callable[[int, np.ndarray, np.ndarray], None]  # (first seq, records, events)


@dataclass
class ReplayStats:
    first_seq: int = 0  # first sequence number replayed (0: none)
    last_seq: int = 0  # the engine's state is after this sequence number
    commands: int = 0
    frames: int = 0
    apply_calls: int = 0
    hashes_checked: int = 0


@dataclass
class Recovered:
    """What ``recover`` rebuilt, and how."""

    engine: Engine
    journal: Journal
    seq: int  # the engine's state is after this sequence number (= journal.last_seq)
    snapshot_seq: int  # 0: replayed from an empty engine
    snapshot_path: str | None
    refused: list[tuple[str, str]] = field(default_factory=list)  # (snapshot file, reason)
    stats: ReplayStats = field(default_factory=ReplayStats)


class _Group:
    """Frames waiting to be applied together: their record bytes and where each frame ends."""

    def __init__(self):
        self.parts: list[memoryview] = []
        self.ends: list[int] = []  # record index one past each frame, within the group
        self.n = 0
        self.first_seq = 0

    def add(self, first_seq: int, raw: memoryview) -> None:
        if not self.parts:
            self.first_seq = first_seq
        self.parts.append(raw)
        self.n += len(raw) // COMMAND_DTYPE.itemsize
        self.ends.append(self.n)

    def take(self) -> tuple[int, list[np.ndarray]]:
        """The group as one writable record array (a read-only one would make numba compile
        the kernels again), cut where ``boundaries`` says; resets the group."""
        cmds = np.frombuffer(bytearray().join(self.parts), dtype=COMMAND_DTYPE)
        cuts = boundaries(cmds, np.array(self.ends, dtype=np.int64))
        first = self.first_seq
        self.parts, self.ends, self.n = [], [], 0
        return first, [cmds[a:b] for a, b in zip([0] + cuts[:-1], cuts)]


def boundaries(cmds: np.ndarray, ends: np.ndarray) -> list[int]:
    """Where apply calls must end (exclusive record indices): after each frame in which some
    BATCH record, read as a header, reaches past the frame's end, and at the very end.
    ``ends`` holds each frame's end index, ascending."""
    at = np.flatnonzero(cmds["kind"] == _BATCH)
    cuts = []
    if len(at):
        frame_end = ends[np.searchsorted(ends, at, side="right")]
        reach = at + 1 + np.maximum(cmds["size"][at], 0)
        cuts = np.unique(frame_end[reach > frame_end]).tolist()
    if not cuts or cuts[-1] != len(cmds):
        cuts.append(len(cmds))
    return cuts


def replay(journal: Journal, engine: Engine, after_seq: int = 0, *, until_seq: int | None = None,
           verify_hashes: bool = True, on_events: EventSink | None = None) -> ReplayStats:
    """Apply the journal's frames after ``after_seq`` (through the frame holding
    ``until_seq``, if given) to ``engine``, which must be in the state after ``after_seq``.
    ``on_events(first_seq, records, events)`` gets each apply call's records and events
    (an event's sequence number is ``first_seq + event["cmd"]``); both arrays are only
    valid during the call."""
    stats = ReplayStats(last_seq=after_seq)
    group = _Group()
    counted = hasattr(engine, "apply_count") and on_events is None

    def flush() -> None:
        if group.n == 0:
            return
        first, calls = group.take()
        for cmds in calls:
            if counted:
                engine.apply_count(cmds)
            else:
                events = engine.apply(cmds)
                if on_events is not None:
                    on_events(first, cmds, events)
            first += len(cmds)
            stats.apply_calls += 1

    for rec in journal.batches(after_seq):
        if until_seq is not None and rec.first_seq > until_seq:
            break
        n = frames.record_count(rec)
        if rec.hash_before is not None and verify_hashes:
            flush()
            got = engine.state_hash()
            if got != rec.hash_before.hex():
                raise ReplayDivergence(rec.first_seq - 1, rec.hash_before.hex(), got)
            stats.hashes_checked += 1
        if group.n + n > MAX_GROUP:
            flush()
        group.add(rec.first_seq, rec.records)
        stats.last_seq = rec.first_seq + n - 1
        stats.commands += n
        stats.frames += 1
    flush()
    stats.first_seq = after_seq + 1 if stats.commands else 0
    return stats


def load_base(journal: Journal, *, before_seq: int | None = None, use_snapshots: bool = True,
              fileops: FileOps | None = None) -> tuple[Engine, snapshot.LoadedSnapshot | None, list[tuple[str, str]]]:
    """The engine to replay onto: the newest usable snapshot (at or below ``before_seq`` if
    given), else an empty engine if the journal still starts at 1. Returns (engine, the
    snapshot used or None, refused snapshots with reasons)."""
    ops = fileops or journal.ops
    specs, config = journal.specs, journal.config
    refused: list[tuple[str, str]] = []
    candidates = snapshot.list_snapshots(journal.directory, ops) if use_snapshots else []
    for seq, path in reversed(candidates):
        name = os.path.basename(path)
        if before_seq is not None and seq > before_seq:
            continue
        if seq > journal.last_seq:
            refused.append((name, f"at sequence number {seq}, beyond the journal's end {journal.last_seq}"))
            continue
        if seq + 1 < journal.first_seq:
            refused.append((name, f"at sequence number {seq}, before the journal's first kept command "
                                  + str(journal.first_seq)))
            continue
        try:
            loaded = snapshot.read_snapshot(path, specs, config, fileops=ops)
        except SnapshotError as err:
            refused.append((name, err.reason))
            continue
        if loaded.seq != seq:
            refused.append((name, f"header says sequence number {loaded.seq}, name says {seq}"))
            continue
        return loaded.engine, loaded, refused
    if journal.first_seq > 1:
        raise RecoveryError(f"{journal.directory}: no usable snapshot and the journal starts at sequence number "
                            f"{journal.first_seq}; refused: {refused}")
    return Engine(specs, config), None, refused


def recover(directory: str, specs: list[MarketSpec] | None = None, config: EngineConfig | None = None, *,
            use_snapshots: bool = True, read_only: bool = False, verify_hashes: bool = True,
            segment_bytes: int = DEFAULT_SEGMENT_BYTES, fileops: FileOps | None = None,
            on_events: EventSink | None = None) -> Recovered:
    """Rebuild the engine from ``directory``: newest usable snapshot, then the journal after it.
    ``specs``/``config``, when given, must be the journal's (``JournalMismatch``). Read-only
    recovery changes no file (a torn tail is skipped, not truncated). ``on_events`` gets the
    replayed commands' events (see ``replay``)."""
    ops = fileops or FileOps()
    journal = Journal.open(directory, specs, config, read_only=read_only, segment_bytes=segment_bytes, fileops=ops)
    try:
        if not read_only:
            snapshot.remove_temp_files(journal.directory, ops)
        engine, loaded, refused = load_base(journal, use_snapshots=use_snapshots, fileops=ops)
        start = loaded.seq if loaded else 0
        stats = replay(journal, engine, start, verify_hashes=verify_hashes, on_events=on_events)
    except BaseException:
        journal.close()
        raise
    if stats.last_seq != journal.last_seq:
        raise AssertionError(f"replay ended at {stats.last_seq}, the journal at {journal.last_seq}")
    return Recovered(engine, journal, journal.last_seq, start, loaded.path if loaded else None, refused, stats)
