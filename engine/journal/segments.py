"""The append-only command log: segment files of checksummed frames, group commit, torn tails.

Layout
------
A journal directory holds ``journal.json`` (what it was created for) and segment files
``seg-<first seq>.ahj`` (formats in ``frames.py``); snapshots live beside them
(``snapshot.py``). ``Journal.append(records, ts_ns)`` encodes one frame, writes it with one
``write``, calls ``fsync`` once and only then returns the batch's sequence numbers: the
caller acknowledges after that (group commit). When the active segment has reached
``segment_bytes`` the next append first starts a new segment (header, fsync, fsync of the
directory), so a frame never spans two files.

Opening checks ``journal.json`` against the caller's specs and config, reads the headers of
every segment and scans the last one frame by frame. A damaged frame there with no valid
frame after it is a torn tail (a crash mid-write): it is truncated (or, read-only, ignored).
A damaged frame with a valid one after it, any damage in an earlier segment (found when it
is read), a header that does not match its name, or a gap in the sequence numbers raises
``JournalCorrupt`` naming the segment and byte offset.

Invariants
----------
* Every sequence number returned by ``append`` is in a frame that was fsynced.
* After a write or fsync error the journal is failed (``JournalFailed``) and writes nothing
  more; a fresh ``Journal.open`` is the way back (fsync errors are not retried: after one,
  the page cache no longer says what is on disk).
* Segments are only ever appended to, truncated (torn tail, at open) or removed whole
  (``drop_segments_through``, never the last one).

Known limitations
-----------------
* A damaged *last* frame of the last segment is indistinguishable from a torn write and is
  truncated like one; it can only be a batch whose append had not returned, unless the disk
  itself corrupted fsynced data.
* One writer per directory; nothing locks it (the sequencer is the only writer).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Self

import numpy as np

from engine.commands import COMMAND_DTYPE
from engine.journal import frames
from engine.journal.errors import (
    JournalCorrupt,
    JournalError,
    JournalFailed,
    JournalMismatch,
    JournalNotFound,
)
from engine.journal.fileops import FileOps
from engine.spec import EngineConfig, MarketSpec

DEFAULT_SEGMENT_BYTES = 64 << 20


@dataclass
class Segment:
    name: str
    first_seq: int


class Journal:
    """An open journal directory. Use ``Journal.open``; see the module docstring."""

    def __init__(self, directory: str, meta: frames.JournalMeta, ops: FileOps, segment_bytes: int, read_only: bool):
        self.directory = directory
        self.meta = meta
        self.ops = ops
        self.segment_bytes = segment_bytes
        self.read_only = read_only
        self.segments: list[Segment] = []
        self.last_seq = 0
        self.torn_bytes = 0  # bytes of torn tail found at open (truncated unless read-only)
        self.failed: JournalFailed | None = None
        self._fd: int | None = None
        self._active_size = 0  # bytes of the last segment that hold valid frames
        self._checked: tuple[str, list] | None = None  # the last segment's frames as scanned at open

    # ------------------------------------------------------------------------ opening

    @classmethod
    def open(cls, directory: str, specs: list[MarketSpec] | None = None, config: EngineConfig | None = None, *,
             create: bool = False, read_only: bool = False, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
             fileops: FileOps | None = None) -> Journal:
        """Open (``create=True``: or create) the journal in ``directory``. ``specs`` and
        ``config``, when given, must equal what the journal was created with."""
        ops = fileops or FileOps()
        directory = os.path.abspath(directory)
        meta_path = os.path.join(directory, frames.META_NAME)
        if not os.path.isdir(directory):
            if not create:
                raise JournalNotFound(f"journal directory {directory} does not exist")
            ops.makedirs(directory)
            ops.fsync_dir(os.path.dirname(directory))
        if not os.path.exists(meta_path):
            if not create or specs is None:
                raise JournalNotFound(f"{directory} holds no journal (no {frames.META_NAME})")
            if any(frames.parse_segment_name(n) is not None for n in ops.listdir(directory)):
                raise JournalNotFound(f"{directory} has segment files but no {frames.META_NAME}; refusing to guess")
            ops.write_atomic(meta_path, frames.encode_meta(frames.make_meta(specs, config or EngineConfig())))
        meta = _read_meta(ops, meta_path)
        _check_meta(meta, directory, specs, config)
        journal = cls(directory, meta, ops, segment_bytes, read_only)
        journal._scan()
        return journal

    @property
    def specs(self) -> list[MarketSpec]:
        return list(self.meta.specs)

    @property
    def config(self) -> EngineConfig:
        return self.meta.config

    @property
    def first_seq(self) -> int:
        """The first sequence number the journal still holds (``last_seq + 1`` when empty)."""
        return self.segments[0].first_seq if self.segments else self.last_seq + 1

    def path(self, segment: Segment) -> str:
        return os.path.join(self.directory, segment.name)

    def _scan(self) -> None:
        found = []
        for name in self.ops.listdir(self.directory):
            seq = frames.parse_segment_name(name)
            if seq is not None:
                found.append(Segment(name, seq))
        for seg in found[:-1]:
            with open(self.path(seg), "rb") as f:
                head = f.read(frames.SEGMENT_HEADER.size)
            self._check_header(seg, head)
        self.segments = found
        while self.segments:
            last = self.segments[-1]
            buf = self.ops.read(self.path(last))
            if len(buf) < frames.SEGMENT_HEADER.size:
                # a crash while starting this segment: it holds no frame yet
                self.torn_bytes += len(buf)
                self.segments.pop()
                if not self.read_only:
                    self.ops.remove(self.path(last))
                    self.ops.fsync_dir(self.directory)
                continue
            self._check_header(last, buf)
            end, next_seq, torn_at, found = _scan_frames(buf, last)
            self.last_seq = next_seq - 1
            self._active_size = end
            self._checked = (last.name, found)
            if torn_at >= 0:
                self.torn_bytes += len(buf) - end
                if not self.read_only:
                    self.ops.truncate(self.path(last), end)
            return
        self.last_seq = 0

    def _check_header(self, seg: Segment, data) -> None:
        first_seq, reason = frames.decode_segment_header(data)
        if reason:
            raise JournalCorrupt(seg.name, 0, reason)
        if first_seq != seg.first_seq:
            raise JournalCorrupt(seg.name, 0, f"header says first sequence number {first_seq}, name says {seg.first_seq}")

    # ------------------------------------------------------------------------ writing

    def append(self, records: np.ndarray, ts_ns: int, hash_before: str | bytes | None = None) -> range:
        """Write ``records`` (``COMMAND_DTYPE``) as one frame, fsync once, return their
        sequence numbers. ``hash_before``: ``state_hash()`` of the state before this batch
        (hex or 32 raw bytes), recorded so replay can check it. Raises ``JournalFailed``
        (and stays failed) if the write or the fsync fails."""
        if self.failed is not None:
            raise self.failed
        if self.read_only:
            raise JournalError(f"journal {self.directory} is open read-only")
        if not isinstance(records, np.ndarray) or records.dtype != COMMAND_DTYPE or records.ndim != 1:
            raise TypeError("records must be a 1-D array of engine.commands.COMMAND_DTYPE")
        if len(records) == 0:
            raise ValueError("an empty batch has no sequence numbers")
        if isinstance(hash_before, str):
            hash_before = bytes.fromhex(hash_before)
        first = self.last_seq + 1
        frame = frames.encode_frame(first, int(ts_ns), np.ascontiguousarray(records), hash_before)
        self._checked = None
        if self._fd is None or self._active_size >= self.segment_bytes:
            self._roll(first)
        seg = self.segments[-1].name
        try:
            self.ops.write(self._fd, frame)
        except OSError as err:
            self._fail("write", seg, err)
        try:
            self.ops.fsync(self._fd)
        except OSError as err:
            self._fail("fsync", seg, err)
        self._active_size += len(frame)
        self.last_seq = first + len(records) - 1
        return range(first, self.last_seq + 1)

    def _roll(self, first_seq: int) -> None:
        """Make the segment to append to: reopen the last one, or start a new one."""
        if self._fd is not None:
            self.ops.close(self._fd)
            self._fd = None
        try:
            if self.segments and self._active_size < self.segment_bytes:
                self._fd = self.ops.open_append(self.path(self.segments[-1]))
                return
            seg = Segment(frames.segment_name(first_seq), first_seq)
            self._fd = self.ops.open_new(self.path(seg))
            self.segments.append(seg)
            self.ops.write(self._fd, frames.encode_segment_header(first_seq))
            self.ops.fsync(self._fd)
            self.ops.fsync_dir(self.directory)
            self._active_size = frames.SEGMENT_HEADER.size
        except OSError as err:
            self._fail("start", frames.segment_name(first_seq), err)

    def _fail(self, op: str, segment: str, err: OSError) -> None:
        self.failed = JournalFailed(op, segment, err)
        if self._fd is not None:
            try:
                self.ops.close(self._fd)
            except OSError:
                pass
            self._fd = None
        raise self.failed from err

    def close(self) -> None:
        if self._fd is not None:
            self.ops.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------ reading

    def batches(self, after_seq: int = 0) -> Iterator[frames.BatchRecord]:
        """Every frame holding a sequence number above ``after_seq``, in order, each checked
        (checksum, continuity). ``after_seq`` must be a frame boundary."""
        if after_seq + 1 < self.first_seq:
            raise JournalError(f"the journal starts at sequence number {self.first_seq}; "
                               f"{after_seq + 1} was pruned")
        start = 0
        while start + 1 < len(self.segments) and self.segments[start + 1].first_seq <= after_seq + 1:
            start += 1
        expected = self.segments[start].first_seq if self.segments else after_seq + 1
        for k in range(start, len(self.segments)):
            seg = self.segments[k]
            if seg.first_seq != expected:
                raise JournalCorrupt(seg.name, 0, f"starts at sequence number {seg.first_seq}, "
                                                  f"the previous segment ends at {expected - 1}")
            for off, rec in self._frames_of(seg, k == len(self.segments) - 1):
                if rec.first_seq != expected:
                    raise JournalCorrupt(seg.name, off, f"frame starts at sequence number {rec.first_seq}, "
                                                        f"expected {expected}")
                expected += frames.record_count(rec)
                if expected - 1 > after_seq:
                    if rec.first_seq <= after_seq:
                        raise JournalError(f"sequence number {after_seq} is inside the batch starting at "
                                           f"{rec.first_seq}")
                    yield rec

    def _frames_of(self, seg: Segment, last: bool) -> Iterator[tuple[int, frames.BatchRecord]]:
        """``(offset, frame)`` of each frame of ``seg``, checksums checked."""
        if self._checked is not None and self._checked[0] == seg.name:
            found, self._checked = self._checked[1], None  # scanned at open, not appended to since
            yield from found
            return
        buf = self.ops.read(self.path(seg))
        if last:
            buf = memoryview(buf)[: self._active_size]
        off = frames.SEGMENT_HEADER.size
        while off < len(buf):
            rec, end, reason = frames.check_frame(buf, off)
            if rec is None:
                raise JournalCorrupt(seg.name, off, reason)
            yield off, rec
            off = end

    @staticmethod
    def records_of(rec: frames.BatchRecord) -> np.ndarray:
        """A frame's commands as a new, writable ``COMMAND_DTYPE`` array (a read-only view
        would make numba compile every kernel a second time, for read-only arrays)."""
        return np.frombuffer(bytearray(rec.records), dtype=COMMAND_DTYPE)

    # ------------------------------------------------------------------------ pruning

    def drop_segments_through(self, seq: int) -> list[str]:
        """Remove every segment all of whose commands have sequence numbers <= ``seq``
        (never the last segment). Returns the removed file names."""
        removed = []
        while len(self.segments) > 1 and self.segments[1].first_seq - 1 <= seq:
            seg = self.segments.pop(0)
            self.ops.remove(self.path(seg))
            removed.append(seg.name)
        if removed:
            self.ops.fsync_dir(self.directory)
        return removed


def _read_meta(ops: FileOps, path: str) -> frames.JournalMeta:
    try:
        return frames.decode_meta(ops.read(path))
    except Exception as err:  # msgspec.DecodeError, or a spec that fails validation
        raise JournalCorrupt(frames.META_NAME, 0, f"cannot be read: {err}") from err


def _check_meta(meta: frames.JournalMeta, directory: str, specs, config) -> None:
    if meta.format != frames.FORMAT_VERSION:
        raise JournalMismatch(f"{directory}: journal format {meta.format}, this build reads {frames.FORMAT_VERSION}")
    if meta.command_dtype != frames.command_layout():
        raise JournalMismatch(f"{directory}: written with another COMMAND_DTYPE layout")
    if specs is not None and list(specs) != list(meta.specs):
        raise JournalMismatch(f"{directory}: the journal was created for other market specs "
                              f"({[s.symbol for s in meta.specs]})")
    if config is not None and config != meta.config:
        raise JournalMismatch(f"{directory}: the journal was created with engine config {meta.config}, not {config}")


def _scan_frames(buf, seg: Segment) -> tuple[int, int, int, list]:
    """Walk the last segment's frames: ``(end of the valid frames, next sequence number,
    offset of a torn tail or -1, [(offset, frame)])``. Damage followed by a valid frame is
    corruption, not a torn tail."""
    off = frames.SEGMENT_HEADER.size
    expected = seg.first_seq
    found = []
    while off < len(buf):
        rec, end, reason = frames.check_frame(buf, off)
        if rec is not None and rec.first_seq != expected:
            raise JournalCorrupt(seg.name, off, f"frame starts at sequence number {rec.first_seq}, expected {expected}")
        if rec is None:
            later = frames.valid_frame_after(buf, off + 1)
            if later >= 0:
                raise JournalCorrupt(seg.name, off, f"{reason}; a valid frame follows at offset {later}")
            return off, expected, off, found
        found.append((off, rec))
        expected += frames.record_count(rec)
        off = end
    return off, expected, -1, found
