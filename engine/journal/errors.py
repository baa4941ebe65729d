"""The journal's exceptions: one type per way durability can go wrong.

Layout
------
``JournalError`` is the base. Under it: the directory is missing or not a journal
(``JournalNotFound``), belongs to other markets or another record layout
(``JournalMismatch``), holds a corrupt record before its tail (``JournalCorrupt``, naming the
segment and byte offset), or can no longer be written (``JournalFailed``: disk full, an I/O
error, a failed fsync). Snapshots have ``SnapshotError`` and its kinds; recovery has
``RecoveryError`` and ``ReplayDivergence`` (a recorded state hash that replay does not
reproduce).

Invariants
----------
* Every message names the file (and, where it applies, the offset or sequence number) so an
  operator can act on it without a debugger.

Known limitations
-----------------
* ``JournalFailed`` is terminal for the ``Journal`` object that raised it; a new one must be
  opened (which truncates whatever torn tail the failure left).
"""

from __future__ import annotations

import errno as _errno
import os


class JournalError(Exception):
    """Base class of every journal, snapshot and recovery error."""


class JournalNotFound(JournalError):
    """The directory does not exist, or holds no journal (no ``journal.json``)."""


class JournalMismatch(JournalError):
    """The journal was created for other market specs, another engine config or another
    command record layout."""


class JournalCorrupt(JournalError):
    """A record that is not the torn tail of the last segment fails its checks."""

    def __init__(self, segment: str, offset: int, reason: str):
        self.segment = segment
        self.offset = offset
        self.reason = reason
        super().__init__(f"journal corrupt: segment {segment} at byte offset {offset}: {reason}")


class JournalFailed(JournalError):
    """The journal could not write or fsync; nothing more is appended (or acknowledged)."""

    def __init__(self, op: str, segment: str, cause: OSError):
        self.op = op
        self.segment = segment
        self.errno = cause.errno
        self.cause = cause
        self.disk_full = cause.errno in (_errno.ENOSPC, _errno.EDQUOT)
        what = "disk full" if self.disk_full else "I/O error"
        code = _errno.errorcode.get(cause.errno or 0, str(cause.errno))
        detail = os.strerror(cause.errno) if cause.errno else str(cause)
        super().__init__(f"journal failed: {what} during {op} of {segment} ({code}: {detail}); "
                         "no further commands are accepted")


class SnapshotError(JournalError):
    """A snapshot file that cannot be used; ``path`` names it."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"snapshot {path} refused: {reason}")


class SnapshotCorrupt(SnapshotError):
    """Bad magic, checksum, header, array layout, or a state hash that does not match."""


class SnapshotVersionError(SnapshotError):
    """Written by another snapshot format version."""


class SnapshotMismatch(SnapshotError):
    """Written for other market specs or another engine config."""


class RecoveryError(JournalError):
    """No consistent state can be rebuilt from the directory."""


class ReplayDivergence(RecoveryError):
    """Replay reached a recorded state hash and the engine's hash differs."""

    def __init__(self, seq: int, recorded: str, replayed: str):
        self.seq = seq
        self.recorded = recorded
        self.replayed = replayed
        super().__init__(f"replay diverged: after sequence number {seq} the journal recorded state hash "
                         f"{recorded} but replay gives {replayed}")
