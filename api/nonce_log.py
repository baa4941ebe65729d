"""The nonce journal: every accepted signed-request nonce, on disk before its request is acknowledged.

Layout
------
A data directory holds ``nonces.state`` (a ``NonceState`` as JSON, written atomically by
``compact``) and ``nonces.log`` (one line per group commit: a JSON list of
``[key_id, nonce_ms]`` pairs, a tab, the CRC32 of the JSON in hex, a newline).
``NonceLog.open`` reads the state, then the log over it, and keeps the result in memory as
the same data ``api.auth.NonceStore`` keeps: per key the highest ``NONCES_KEPT_PER_KEY``
nonces and the highest evicted one. ``append`` writes one line and fsyncs; ``compact``
writes the state file and truncates the log (the node does it with each engine snapshot).

Invariants
----------
* ``append`` returns only after the line is fsynced; the sequencer calls it before it
  appends the batch to the command journal, so a request whose command is on disk always
  has its nonce on disk too (the reverse after a crash only refuses a retry that reuses it).
* Loading is idempotent: a nonce in both the state file and the log (a crash inside
  ``compact``) counts once; the kept/evicted result equals what ``NonceStore.consume``
  built, because consume always keeps the highest ``NONCES_KEPT_PER_KEY`` accepted nonces.
* A torn last line (a crash mid-write) is truncated at open; damage before a valid line is
  an error naming the byte offset.

Known limitations
-----------------
* One writer per directory, like the journal; nothing locks it.
* After a failed write or fsync the log is failed for good (as the journal is).
"""

from __future__ import annotations

import bisect
import errno
import os
import zlib

import msgspec

from api.auth import NONCES_KEPT_PER_KEY, KeyNonces, NonceState
from engine.journal.fileops import FileOps

STATE_NAME = "nonces.state"
LOG_NAME = "nonces.log"

_encode = msgspec.json.Encoder().encode
_decode_entries = msgspec.json.Decoder(list[tuple[str, int]]).decode
_decode_state = msgspec.json.Decoder(NonceState).decode


class NonceLogCorrupt(Exception):
    """A damaged line of ``nonces.log`` that is not its torn tail."""


class NonceLogFailed(OSError):
    """The nonce log could not write or fsync; nothing more is appended (or acknowledged)."""

    def __init__(self, op: str, path: str, cause: OSError):
        code = errno.errorcode.get(cause.errno or 0, str(cause.errno))
        detail = os.strerror(cause.errno) if cause.errno else str(cause)
        self.disk_full = cause.errno in (errno.ENOSPC, errno.EDQUOT)
        what = "disk full" if self.disk_full else "I/O error"
        super().__init__(cause.errno, f"nonce log failed: {what} during {op} of {os.path.basename(path)} "
                                      f"({code}: {detail}); no further commands are accepted")

    def __str__(self) -> str:
        return self.strerror


class NonceLog:
    """An open nonce journal. Use ``NonceLog.open``; see the module docstring."""

    def __init__(self, directory: str, ops: FileOps, kept_per_key: int):
        self.directory = os.path.abspath(directory)
        self.ops = ops
        self.kept_per_key = kept_per_key
        self.failed: NonceLogFailed | None = None
        self.torn_bytes = 0
        self._kept: dict[str, list[int]] = {}
        self._evicted: dict[str, int] = {}
        self._fd: int | None = None

    @classmethod
    def open(cls, directory: str, *, fileops: FileOps | None = None,
             kept_per_key: int = NONCES_KEPT_PER_KEY) -> NonceLog:
        """Load (or create) the nonce journal in ``directory``."""
        ops = fileops or FileOps()
        log = cls(directory, ops, kept_per_key)
        ops.makedirs(log.directory)
        state_path = os.path.join(log.directory, STATE_NAME)
        if os.path.exists(state_path):
            for entry in _decode_state(ops.read(state_path)).keys:
                if entry.highest_evicted >= 0:
                    log._evict(entry.key_id, entry.highest_evicted)
                for nonce in entry.kept:
                    log._add(entry.key_id, nonce)
        log._read_log()
        log._fd = ops.open_append(log.log_path)
        return log

    @property
    def log_path(self) -> str:
        return os.path.join(self.directory, LOG_NAME)

    def state(self) -> NonceState:
        """Every key's nonces as ``api.auth.NonceState`` (for ``NonceStore.load``)."""
        ids = sorted(set(self._kept) | set(self._evicted))
        return NonceState([KeyNonces(k, self._evicted.get(k, -1), list(self._kept.get(k, []))) for k in ids])

    def append(self, entries: list[tuple[str, int]]) -> None:
        """Write ``entries`` as one line and fsync; raises OSError (and stays failed)."""
        if self.failed is not None:
            raise self.failed
        if self._fd is None:
            raise OSError(f"nonce log {self.log_path} is closed")
        payload = _encode([[k, int(n)] for k, n in entries])
        line = payload + b"\t%08x\n" % zlib.crc32(payload)
        for op, call in (("write", lambda: self.ops.write(self._fd, line)), ("fsync", lambda: self.ops.fsync(self._fd))):
            try:
                call()
            except OSError as err:
                self.failed = NonceLogFailed(op, self.log_path, err)
                raise self.failed from err
        for key_id, nonce in entries:
            self._add(key_id, int(nonce))

    def compact(self) -> None:
        """Write the whole state atomically, then empty the log."""
        if self.failed is not None:
            raise self.failed
        self.ops.write_atomic(os.path.join(self.directory, STATE_NAME), _encode(self.state()))
        self.ops.truncate(self.log_path, 0)

    def close(self) -> None:
        if self._fd is not None:
            self.ops.close(self._fd)
            self._fd = None

    # ------------------------------------------------------------------------ internals

    def _read_log(self) -> None:
        if not os.path.exists(self.log_path):
            return
        buf = self.ops.read(self.log_path)
        off = 0
        while off < len(buf):
            end = buf.find(b"\n", off)
            entries = _parse_line(buf[off:end]) if end >= 0 else None
            if entries is None:
                if _valid_line_after(buf, off):
                    raise NonceLogCorrupt(f"{self.log_path}: damaged line at byte offset {off} before valid ones")
                self.torn_bytes = len(buf) - off
                self.ops.truncate(self.log_path, off)
                return
            for key_id, nonce in entries:
                self._add(key_id, nonce)
            off = end + 1

    def _add(self, key_id: str, nonce: int) -> None:
        """Record an accepted nonce as ``NonceStore.consume`` would (idempotent)."""
        if nonce <= self._evicted.get(key_id, -1):
            return
        kept = self._kept.setdefault(key_id, [])
        at = bisect.bisect_left(kept, nonce)
        if at < len(kept) and kept[at] == nonce:
            return
        kept.insert(at, nonce)
        if len(kept) > self.kept_per_key:
            self._evict(key_id, kept.pop(0))

    def _evict(self, key_id: str, nonce: int) -> None:
        self._evicted[key_id] = max(self._evicted.get(key_id, -1), nonce)
        kept = self._kept.get(key_id)
        if kept:
            del kept[: bisect.bisect_right(kept, nonce)]


def _parse_line(line: bytes) -> list[tuple[str, int]] | None:
    payload, sep, crc = line.rpartition(b"\t")
    if not sep or len(crc) != 8:
        return None
    try:
        if int(crc, 16) != zlib.crc32(payload):
            return None
        return _decode_entries(payload)
    except (ValueError, msgspec.DecodeError):
        return None


def _valid_line_after(buf: bytes, off: int) -> bool:
    start = buf.find(b"\n", off)
    while start >= 0:
        end = buf.find(b"\n", start + 1)
        if end < 0:
            return False
        if _parse_line(buf[start + 1:end]) is not None:
            return True
        start = end
    return False
