"""A real writer process for the crash tests: journal + engine under a seeded load.

    python journal_crash_driver.py write DIR LOAD.npy [--die-at OP:K] [--snapshot-every N]
    python journal_crash_driver.py hash DIR [--no-snapshots] [--no-clock]

``write`` recovers (or creates) the journal in DIR, prints ``ready <seq>``, then submits the
rest of LOAD.npy in batches of ``batch_size_after(seq)`` through ``JournaledEngine`` and
prints ``ack <last seq>`` after each submit returns (flushed at once), and ``done`` at the
end. ``--die-at`` makes the process SIGKILL itself at an exact point: ``write:K`` halfway
through the K-th frame write of this run, ``fsync:K`` right after the K-th frame's fsync
(before the append returns, so before the ack), ``snapshot:K`` after the K-th snapshot's
temp file is written and before it is renamed.

``hash`` recovers read-only and prints ``hash <seq> <state hash> <snapshot seq>``;
``--no-clock`` first replaces every clock in ``time`` with one that raises.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import numpy as np
from journal_support import CONFIG, SPECS, batch_size_after

from engine.commands import COMMAND_DTYPE
from engine.engine import Engine
from engine.journal import FileOps, JournaledEngine, recover
from engine.journal.frames import SEGMENT_HEADER

SEGMENT_BYTES = 48 << 10
HASH_EVERY = 500


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class DyingFileOps(FileOps):
    """Real file operations that SIGKILL the process at one chosen moment."""

    def __init__(self, op: str, k: int):
        self.op, self.k = op, k
        self.frames = self.fsyncs = self.snapshots = 0
        self.last_write_was_frame = False

    def write(self, fd, data) -> None:
        frame = len(data) != SEGMENT_HEADER.size and bytes(memoryview(data)[:4]) == b"AHJR"
        self.last_write_was_frame = frame
        if frame:
            self.frames += 1
            if self.op == "write" and self.frames == self.k:
                half = memoryview(data).cast("B")[: len(data) // 2]
                super().write(fd, half)
                die()
        super().write(fd, data)

    def fsync(self, fd) -> None:
        super().fsync(fd)
        if self.last_write_was_frame:
            self.fsyncs += 1
            if self.op == "fsync" and self.fsyncs == self.k:
                die()

    def replace(self, src, dst) -> None:
        if src.endswith(".ahs.tmp"):
            self.snapshots += 1
            if self.op == "snapshot" and self.snapshots == self.k:
                die()
        super().replace(src, dst)


def warm() -> None:
    """Load the kernels from numba's cache now, so that 'ready' means appending starts at once."""
    engine = Engine(SPECS, CONFIG)
    engine.apply(np.zeros(0, dtype=COMMAND_DTYPE))
    engine.state_hash()


def write(args) -> None:
    commands = np.load(args.load, allow_pickle=False)
    warm()
    ops = DyingFileOps(*args.die_at) if args.die_at else FileOps()
    je = JournaledEngine.open(args.dir, SPECS, CONFIG, segment_bytes=SEGMENT_BYTES, fileops=ops,
                              hash_every=HASH_EVERY, snapshot_every=args.snapshot_every, keep_snapshots=2)
    out = sys.stdout
    out.write(f"ready {je.seq}\n")
    out.flush()
    while je.seq < len(commands):
        batch = commands[je.seq : je.seq + batch_size_after(je.seq)]
        seqs, _ = je.submit(batch, int(batch["ts"][-1]))
        out.write(f"ack {seqs.stop - 1}\n")
        out.flush()
    out.write("done\n")
    out.flush()


def no_clock() -> None:
    import time

    def refuse(*_a, **_k):
        raise AssertionError("replay read the clock")

    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns",
                 "process_time", "process_time_ns", "localtime", "gmtime", "clock_gettime", "clock_gettime_ns"):
        if hasattr(time, name):
            setattr(time, name, refuse)


def hash_(args) -> None:
    if args.no_clock:
        no_clock()
    rec = recover(args.dir, read_only=True, use_snapshots=not args.no_snapshots)
    print(f"hash {rec.seq} {rec.engine.state_hash()} {rec.snapshot_seq}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("dir")
    w.add_argument("load")
    w.add_argument("--die-at", type=lambda s: (s.split(":")[0], int(s.split(":")[1])))
    w.add_argument("--snapshot-every", type=int, default=None)
    h = sub.add_parser("hash")
    h.add_argument("dir")
    h.add_argument("--no-snapshots", action="store_true")
    h.add_argument("--no-clock", action="store_true")
    args = parser.parse_args()
    write(args) if args.cmd == "write" else hash_(args)


if __name__ == "__main__":
    main()
