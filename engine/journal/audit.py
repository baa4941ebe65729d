"""Read-only replay of a journal directory for people: a summary and the event stream.

Layout
------
``replay_directory(directory)`` opens the journal read-only (a torn tail is reported, not
truncated), starts from the beginning (or, with ``use_snapshots`` or when the journal's
start was pruned, from the newest usable snapshot — at or before the start of the event
range, if one is given) and replays to the end, counting commands and events by kind. Events whose sequence numbers
fall in ``event_range`` go to ``on_events`` as JSON-ready dicts. ``afterhours replay``
(``api/cli.py``) prints the report and writes the events as JSON lines.

Invariants
----------
* Nothing in the directory is modified.
* An event's ``seq`` is the sequence number of the command that produced it.

Known limitations
-----------------
* Events are converted to dicts one by one (Python speed) inside the range only; outside it
  they are only counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import numpy as np

from engine.codes import CommandKind, EventKind
from engine.commands import events_to_structs
from engine.journal.fileops import FileOps
from engine.journal.replay import load_base, replay
from engine.journal.segments import Journal

EventRange = tuple[int, int]  # inclusive sequence numbers


@dataclass
class ReplayReport:
    directory: str
    first_seq: int  # first command replayed (0: none)
    last_seq: int
    state_hash: str
    snapshot_seq: int
    journal_first_seq: int
    segments: int
    torn_bytes: int
    hashes_checked: int
    commands: int
    commands_by_kind: dict[str, int] = field(default_factory=dict)
    events_by_kind: dict[str, int] = field(default_factory=dict)
    refused_snapshots: list[tuple[str, str]] = field(default_factory=list)
    events_exported: int = 0


def _names(enum, counts: np.ndarray) -> dict[str, int]:
    return {k.name.lower(): int(counts[int(k)]) for k in enum if counts[int(k)]}


def event_dicts(first_seq: int, events: np.ndarray, lo: int, hi: int) -> list[dict]:
    """The events of ``events`` (from an apply call starting at ``first_seq``) whose command
    sequence number is in ``[lo, hi]``, as dicts with ``seq`` first and no ``cmd``."""
    seqs = first_seq + events["cmd"].astype(np.int64)
    keep = np.flatnonzero((seqs >= lo) & (seqs <= hi))
    out = []
    for seq, ev in zip(seqs[keep].tolist(), events_to_structs(events[keep])):
        body = msgspec.to_builtins(ev)
        body.pop("cmd", None)
        out.append({"seq": seq, **body})
    return out


def replay_directory(directory: str, *, use_snapshots: bool = False, event_range: EventRange | None = None,
                     on_events: Callable[[list[dict]], None] | None = None,
                     fileops: FileOps | None = None) -> ReplayReport:
    """Replay ``directory`` read-only and report; see the module docstring."""
    with Journal.open(directory, read_only=True, fileops=fileops or FileOps()) as journal:
        before = event_range[0] - 1 if event_range else None
        engine, loaded, refused = load_base(journal, before_seq=before,
                                            use_snapshots=use_snapshots or journal.first_seq > 1)
        start = loaded.seq if loaded else 0
        cmd_counts = np.zeros(256, dtype=np.int64)
        ev_counts = np.zeros(256, dtype=np.int64)
        exported = 0

        def sink(first_seq: int, records: np.ndarray, events: np.ndarray) -> None:
            nonlocal exported
            cmd_counts[:] += np.bincount(records["kind"], minlength=256)
            ev_counts[:] += np.bincount(events["kind"], minlength=256)
            if event_range is not None and on_events is not None:
                lines = event_dicts(first_seq, events, *event_range)
                exported += len(lines)
                if lines:
                    on_events(lines)

        stats = replay(journal, engine, start, on_events=sink)
        return ReplayReport(
            directory=journal.directory, first_seq=stats.first_seq, last_seq=stats.last_seq,
            state_hash=engine.state_hash(), snapshot_seq=start, journal_first_seq=journal.first_seq,
            segments=len(journal.segments), torn_bytes=journal.torn_bytes, hashes_checked=stats.hashes_checked,
            commands=stats.commands, commands_by_kind=_names(CommandKind, cmd_counts),
            events_by_kind=_names(EventKind, ev_counts), refused_snapshots=refused, events_exported=exported,
        )
