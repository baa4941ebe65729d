"""Durability for the engine: the command journal, snapshots, recovery and replay.

This package is the only place in ``engine/`` that touches files.

Layout
------
* ``frames.py``: on-disk formats (meta file, segment header, checksummed frames).
* ``fileops.py``: the file-system calls, behind an object fault tests can rewire.
* ``segments.py``: ``Journal``: append-only segments, group commit, torn-tail handling.
* ``snapshot.py``: atomic, versioned, checksummed snapshots of ``Engine.export_state``.
* ``replay.py``: ``replay`` and ``recover`` (snapshot + journal, state hashes checked).
* ``writer.py``: ``JournaledEngine``: journal then apply, hashes every N, snapshots, pruning.
* ``audit.py``: read-only replay with a summary and event export (``afterhours replay``).

Invariants
----------
* A sequence number returned by ``Journal.append`` is on disk (fsynced).
* Replaying a directory gives the same ``state_hash()`` every time, from any usable snapshot.

Known limitations
-----------------
* One writer process per directory, not enforced by a lock.
"""

from engine.journal.audit import ReplayReport, replay_directory
from engine.journal.errors import (
    JournalCorrupt,
    JournalError,
    JournalFailed,
    JournalMismatch,
    JournalNotFound,
    RecoveryError,
    ReplayDivergence,
    SnapshotCorrupt,
    SnapshotError,
    SnapshotMismatch,
    SnapshotVersionError,
)
from engine.journal.fileops import FileOps
from engine.journal.replay import Recovered, ReplayStats, recover, replay
from engine.journal.segments import Journal
from engine.journal.snapshot import (
    list_snapshots,
    prune_snapshots,
    read_snapshot,
    write_snapshot,
)
from engine.journal.writer import JournaledEngine

__all__ = [
    "FileOps", "Journal", "JournalCorrupt", "JournalError", "JournalFailed", "JournalMismatch", "JournalNotFound",
    "JournaledEngine", "Recovered", "RecoveryError", "ReplayDivergence", "ReplayReport", "ReplayStats",
    "SnapshotCorrupt", "SnapshotError", "SnapshotMismatch", "SnapshotVersionError", "list_snapshots",
    "prune_snapshots", "read_snapshot", "recover", "replay", "replay_directory", "write_snapshot",
]
