"""Snapshots: the complete engine state at a sequence number, written atomically.

Layout
------
``snap-<seq, 20 digits>.ahs`` in the journal directory::

    prefix   "AHSNAPSH" (8 bytes) | format version (u32) | header length (u32)
    header   msgpack SnapshotHeader: seq, specs hash, engine config, state hash,
             arrays [(name, dtype descr, shape, nbytes)], in file order
    body     each array's raw bytes (numpy layout, little-endian), back to back
    trailer  "AHSE" | CRC-32 of everything before the trailer (u32)

No pickle: a dtype travels as its ``numpy.lib.format`` descr and is rebuilt with
``descr_to_dtype``. The specs hash is BLAKE2b-128 of the msgpack-encoded market specs.
Writing goes to ``<name>.tmp``, fsync, rename, fsync of the directory, so a snapshot file
either is complete or does not exist under its final name.

Invariants
----------
* A snapshot at ``seq`` holds the state after applying commands ``1..seq`` exactly; loading
  recomputes ``state_hash()`` and refuses the file unless it equals the recorded one.
* Refusals are specific: ``SnapshotVersionError`` (another format version, checked before
  anything else after the magic), ``SnapshotCorrupt`` (magic, checksum, header, array
  layout, hash), ``SnapshotMismatch`` (other market specs or engine config).
* ``prune_snapshots`` keeps the newest ``keep`` files by sequence number.

Known limitations
-----------------
* The whole state is written each time (no incremental snapshots) and loading reads the file
  into memory once (about the size of the engine's arrays).
* Pruning trusts the kept snapshots' names; a kept snapshot that later turns out corrupt
  makes recovery fall back to an older kept one, or fail if the journal was pruned past it.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass

import msgspec
import numpy as np

from engine.engine import Engine
from engine.journal.errors import (
    SnapshotCorrupt,
    SnapshotMismatch,
    SnapshotVersionError,
)
from engine.journal.fileops import FileOps
from engine.spec import EngineConfig, MarketSpec

SNAPSHOT_VERSION = 4  # 2: orders gained ``flags``, accounts ``dms_at``, positions ``ro_n``; 3: positions ``iso``, ``margin``;
# 4: accounts and markets gained the margin certificates (``c_*``, ``ep_mark``), 32 counters
SNAPSHOT_MAGIC = b"AHSNAPSH"
TRAILER_TAG = b"AHSE"
PREFIX = struct.Struct("<8sII")
TRAILER = struct.Struct("<4sI")
SNAPSHOT_PREFIX = "snap-"
SNAPSHOT_SUFFIX = ".ahs"


class ArrayEntry(msgspec.Struct, frozen=True, array_like=True):
    name: str
    descr: list | str
    shape: list[int]
    nbytes: int


class SnapshotHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    seq: int
    specs_hash: str
    config: EngineConfig
    state_hash: str
    arrays: list[ArrayEntry]


_encode = msgspec.msgpack.Encoder().encode
_decode_header = msgspec.msgpack.Decoder(SnapshotHeader).decode


@dataclass
class LoadedSnapshot:
    engine: Engine
    seq: int
    path: str
    state_hash: str


def specs_hash(specs: list[MarketSpec]) -> str:
    return hashlib.blake2b(_encode(list(specs)), digest_size=16).hexdigest()


def snapshot_name(seq: int) -> str:
    return f"{SNAPSHOT_PREFIX}{seq:020d}{SNAPSHOT_SUFFIX}"


def list_snapshots(directory: str, fileops: FileOps | None = None) -> list[tuple[int, str]]:
    """``(seq, path)`` of every snapshot file in ``directory``, oldest first."""
    out = []
    for name in (fileops or FileOps()).listdir(directory):
        if name.startswith(SNAPSHOT_PREFIX) and name.endswith(SNAPSHOT_SUFFIX):
            digits = name[len(SNAPSHOT_PREFIX) : -len(SNAPSHOT_SUFFIX)]
            if len(digits) == 20 and digits.isdigit():
                out.append((int(digits), os.path.join(directory, name)))
    return out


def _tuples(descr):
    """A descr decoded from msgpack (lists) back into numpy's form (tuples)."""
    if isinstance(descr, str):
        return descr
    out = []
    for field in descr:  # (name, type) or (name, type, shape); a type may itself be a descr
        name, kind, *shape = field
        kind = _tuples(kind) if isinstance(kind, list) else kind
        out.append((name, kind, tuple(shape[0])) if shape else (name, kind))
    return out


def write_snapshot(directory: str, engine: Engine, seq: int, *, fileops: FileOps | None = None) -> str:
    """Write ``engine``'s state as the snapshot at ``seq``; return its path. On an OSError
    the temp file is removed and the error propagates (the journal is not affected)."""
    ops = fileops or FileOps()
    arrays = engine.export_state()
    entries = [ArrayEntry(name, np.lib.format.dtype_to_descr(a.dtype), list(a.shape), a.nbytes)
               for name, a in arrays.items()]
    header = _encode(SnapshotHeader(seq, specs_hash(engine.specs), engine.config, engine.state_hash(), entries))
    path = os.path.join(directory, snapshot_name(seq))
    tmp = path + ".tmp"
    fd = ops.open_new(tmp)
    try:
        crc = 0
        parts = [PREFIX.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, len(header)), header]
        parts += [a.reshape(-1).view(np.uint8) for a in arrays.values()]
        for part in parts:
            ops.write(fd, part)
            crc = zlib.crc32(part, crc)
        ops.write(fd, TRAILER.pack(TRAILER_TAG, crc))
        ops.fsync(fd)
    except BaseException:
        ops.close(fd)
        _remove_quietly(ops, tmp)
        raise
    ops.close(fd)
    ops.replace(tmp, path)
    ops.fsync_dir(directory)
    return path


def read_snapshot(path: str, specs: list[MarketSpec], config: EngineConfig, *,
                  fileops: FileOps | None = None) -> LoadedSnapshot:
    """Load and check one snapshot; raise a ``SnapshotError`` kind saying why it is refused."""
    ops = fileops or FileOps()
    try:
        buf = ops.read_into(path)
    except OSError as err:
        raise SnapshotCorrupt(path, f"cannot be read ({err})") from err
    if len(buf) < PREFIX.size + TRAILER.size:
        raise SnapshotCorrupt(path, f"only {len(buf)} bytes long")
    magic, version, header_len = PREFIX.unpack_from(buf, 0)
    if magic != SNAPSHOT_MAGIC:
        raise SnapshotCorrupt(path, "not a snapshot file (bad magic)")
    if version != SNAPSHOT_VERSION:
        raise SnapshotVersionError(path, f"format version {version}, this build reads version {SNAPSHOT_VERSION}")
    tag, crc = TRAILER.unpack_from(buf, len(buf) - TRAILER.size)
    body = memoryview(buf)[: len(buf) - TRAILER.size]
    if tag != TRAILER_TAG or zlib.crc32(body) != crc:
        raise SnapshotCorrupt(path, "checksum mismatch (truncated or damaged)")
    try:
        header = _decode_header(body[PREFIX.size : PREFIX.size + header_len])
    except (msgspec.DecodeError, ValueError) as err:
        raise SnapshotCorrupt(path, f"header does not decode ({err})") from err
    if header.specs_hash != specs_hash(specs):
        raise SnapshotMismatch(path, "written for other market specs")
    if header.config != config:
        raise SnapshotMismatch(path, f"written with engine config {header.config}, not {config}")
    arrays = _arrays(path, buf, PREFIX.size + header_len, len(body), header.arrays)
    try:
        engine = Engine.restore(specs, config, arrays)
    except ValueError as err:
        raise SnapshotCorrupt(path, str(err)) from err
    got = engine.state_hash()
    if got != header.state_hash:
        raise SnapshotCorrupt(path, f"restored state hash {got} differs from the recorded {header.state_hash}")
    return LoadedSnapshot(engine, header.seq, path, got)


def _arrays(path: str, buf: bytearray, off: int, end: int, entries: list[ArrayEntry]) -> dict[str, np.ndarray]:
    arrays = {}
    for e in entries:
        try:
            dtype = np.lib.format.descr_to_dtype(_tuples(e.descr))
        except (TypeError, ValueError) as err:
            raise SnapshotCorrupt(path, f"array {e.name!r} has an unreadable dtype ({err})") from err
        count = int(np.prod(e.shape, dtype=np.int64))
        if count * dtype.itemsize != e.nbytes or off + e.nbytes > end:
            raise SnapshotCorrupt(path, f"array {e.name!r} does not fit the file")
        arrays[e.name] = np.frombuffer(buf, dtype=dtype, count=count, offset=off).reshape(e.shape)
        off += e.nbytes
    if off != end:
        raise SnapshotCorrupt(path, f"{end - off} unexplained bytes after the arrays")
    return arrays


def prune_snapshots(directory: str, keep: int, *, fileops: FileOps | None = None) -> tuple[list[str], int | None]:
    """Remove all but the newest ``keep`` snapshots. Returns the removed names and the
    sequence number of the oldest kept snapshot (None if there is none)."""
    if keep < 1:
        raise ValueError("keep at least one snapshot")
    ops = fileops or FileOps()
    snaps = list_snapshots(directory, ops)
    doomed, kept = snaps[:-keep], snaps[-keep:]
    for _, path in doomed:
        ops.remove(path)
    if doomed:
        ops.fsync_dir(directory)
    return [os.path.basename(p) for _, p in doomed], (kept[0][0] if kept else None)


def remove_temp_files(directory: str, fileops: FileOps | None = None) -> list[str]:
    """Delete leftovers of interrupted atomic writes (``*.tmp``)."""
    ops = fileops or FileOps()
    gone = [n for n in ops.listdir(directory) if n.endswith(".tmp")]
    for name in gone:
        _remove_quietly(ops, os.path.join(directory, name))
    return gone


def _remove_quietly(ops: FileOps, path: str) -> None:
    try:
        ops.remove(path)
    except OSError:
        pass
