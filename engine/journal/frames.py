"""On-disk formats of the journal: the directory's meta file, segment headers, record frames.

Layout
------
* ``journal.json`` (msgspec JSON, ``JournalMeta``): format version, the market specs, the
  engine config and the ``COMMAND_DTYPE`` layout the records were written with. Written once,
  atomically, when the journal is created; every later open compares it.
* A segment file ``seg-<first seq, 20 digits>.ahj`` starts with a 32-byte header
  ``SEGMENT_HEADER``: magic ``AHJSEG01``, format version (u32), reserved (u32), the sequence
  number of its first command (u64), CRC-32 of the preceding 24 bytes (u32), 4 zero bytes.
* Then record frames, back to back. A frame is a 12-byte ``FRAME`` header — magic ``AHJR``,
  payload length (u32), CRC-32 of (the 4 length bytes + the payload) — and the payload:
  msgpack (msgspec, array-like) ``[first_seq, ts_ns, records, hash_before]`` where
  ``records`` is the raw bytes of ``n`` ``COMMAND_DTYPE`` records (little-endian, as numpy
  lays them out) and ``hash_before`` is nil or the 32 raw bytes of ``Engine.state_hash()``
  *before* the batch is applied (the state after sequence number ``first_seq - 1``).
* One frame is one group commit and one ``Engine.apply`` call (``BATCH`` commands make the
  apply boundary part of the semantics, so replay keeps it; see ``replay.py``).

Checksum: CRC-32 (``zlib.crc32``, ~2.4 GB/s here) detects every burst of up to 32 bits and
any other damage with probability 1 - 2^-32; it guards against torn writes and bit rot, not
against an adversary. The magic lets a scan find frames after a damaged one.

Invariants
----------
* Sequence numbers start at 1 and are contiguous across frames and segments: a frame's
  ``first_seq`` is the previous frame's ``first_seq`` plus its record count.

Known limitations
-----------------
* The record bytes are the in-memory numpy layout: a change of ``COMMAND_DTYPE`` makes old
  journals unreadable (refused by the meta check) until a converter exists. The layout has
  no padding bytes (numpy copies would leave them uninitialised, and frames would differ).
"""

from __future__ import annotations

import struct
import zlib

import msgspec
import numpy as np

from engine.commands import COMMAND_DTYPE
from engine.spec import EngineConfig, MarketSpec

FORMAT_VERSION = 2  # 2: COMMAND_DTYPE gained ``flags`` (reduce-only places), 88 -> 96 bytes
META_NAME = "journal.json"
SEGMENT_PREFIX = "seg-"
SEGMENT_SUFFIX = ".ahj"
SEGMENT_MAGIC = b"AHJSEG01"
SEGMENT_HEADER = struct.Struct("<8sIIQI4x")
FRAME_MAGIC = b"AHJR"
FRAME = struct.Struct("<4sII")
MAX_PAYLOAD = 1 << 30
HASH_BYTES = 32
RECORD_BYTES = COMMAND_DTYPE.itemsize


class JournalMeta(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a journal directory was created for."""

    format: int
    specs: list[MarketSpec]
    config: EngineConfig
    command_dtype: list[list[str]]


class BatchRecord(msgspec.Struct, frozen=True, array_like=True):
    """One frame's payload. ``records`` views the buffer it was decoded from."""

    first_seq: int
    ts_ns: int
    records: memoryview
    hash_before: bytes | None = None


_encode = msgspec.msgpack.Encoder().encode
_decode_batch = msgspec.msgpack.Decoder(BatchRecord).decode
_decode_meta = msgspec.json.Decoder(JournalMeta).decode


def command_layout() -> list[list[str]]:
    """``COMMAND_DTYPE`` as JSON-friendly ``[name, type]`` pairs (padding included)."""
    return [[str(name), str(kind)] for name, kind in np.lib.format.dtype_to_descr(COMMAND_DTYPE)]


def make_meta(specs: list[MarketSpec], config: EngineConfig) -> JournalMeta:
    return JournalMeta(FORMAT_VERSION, list(specs), config, command_layout())


def encode_meta(meta: JournalMeta) -> bytes:
    return msgspec.json.format(msgspec.json.encode(meta), indent=2) + b"\n"


def decode_meta(data: bytes) -> JournalMeta:
    return _decode_meta(data)


def segment_name(first_seq: int) -> str:
    return f"{SEGMENT_PREFIX}{first_seq:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """The first sequence number a segment file name carries; None if it is not one."""
    if not (name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX)):
        return None
    digits = name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]
    return int(digits) if len(digits) == 20 and digits.isdigit() else None


def encode_segment_header(first_seq: int) -> bytes:
    head = SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, first_seq, 0)
    return head[:24] + struct.pack("<I", zlib.crc32(head[:24])) + head[28:]


def decode_segment_header(data) -> tuple[int, str | None]:
    """``(first_seq, None)``, or ``(0, reason)`` when the header is not valid."""
    if len(data) < SEGMENT_HEADER.size:
        return 0, "segment header is incomplete"
    magic, version, _, first_seq, crc = SEGMENT_HEADER.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC:
        return 0, "not a segment file (bad magic)"
    if zlib.crc32(bytes(data[:24])) != crc:
        return 0, "segment header checksum mismatch"
    if version != FORMAT_VERSION:
        return 0, f"segment format version {version}, this build reads {FORMAT_VERSION}"
    return first_seq, None


def encode_frame(first_seq: int, ts_ns: int, records: np.ndarray, hash_before: bytes | None) -> bytes:
    """One frame: header and msgpack payload, ready for a single write."""
    payload = _encode(BatchRecord(first_seq, ts_ns, memoryview(records.view(np.uint8)), hash_before))
    length = len(payload)
    if length > MAX_PAYLOAD:
        raise ValueError(f"batch of {len(records)} records is over the {MAX_PAYLOAD}-byte frame limit")
    crc = zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "little")))
    return FRAME.pack(FRAME_MAGIC, length, crc) + payload


def check_frame(buf, off: int) -> tuple[BatchRecord | None, int, str]:
    """Decode the frame at ``off``: ``(record, end offset, "")`` or ``(None, 0, reason)``.
    Only the frame itself is checked here (magic, bounds, checksum, payload shape)."""
    end = len(buf)
    if off + FRAME.size > end:
        return None, 0, "frame header is incomplete"
    magic, length, crc = FRAME.unpack_from(buf, off)
    if magic != FRAME_MAGIC:
        return None, 0, "bad frame magic"
    stop = off + FRAME.size + length
    if length > MAX_PAYLOAD or stop > end:
        return None, 0, "frame extends past the end of the segment"
    payload = memoryview(buf)[off + FRAME.size : stop]
    if zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "little"))) != crc:
        return None, 0, "frame checksum mismatch"
    try:
        rec = _decode_batch(payload)
    except msgspec.DecodeError as err:
        return None, 0, f"payload does not decode ({err})"
    size = len(rec.records)
    if size == 0 or size % RECORD_BYTES:
        return None, 0, f"payload holds {size} record bytes, not a positive multiple of {RECORD_BYTES}"
    if rec.hash_before is not None and len(rec.hash_before) != HASH_BYTES:
        return None, 0, "recorded state hash has the wrong length"
    return rec, stop, ""


def valid_frame_after(buf, start: int) -> int:
    """The offset of the first complete, checksum-valid frame at or after ``start``; -1 if none.
    Used to tell a torn tail (nothing valid follows) from damage in the middle."""
    pos = start
    while True:
        pos = buf.find(FRAME_MAGIC, pos)
        if pos < 0:
            return -1
        rec, _, _ = check_frame(buf, pos)
        if rec is not None:
            return pos
        pos += 1


def record_count(rec: BatchRecord) -> int:
    return len(rec.records) // RECORD_BYTES
