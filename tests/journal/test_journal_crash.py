"""Crash tests with real processes and real signals (gateway spec §5.3, §6.17).

A driver process (``journal_crash_driver.py``) recovers the journal, then submits a seeded
load through ``JournaledEngine`` and prints each acknowledged sequence number. The test
SIGKILLs it — at random moments, and at exact points (halfway through a frame write; after a
frame's fsync but before the ack; after a snapshot's temp file, before its rename) — then
recovers read-only and checks, exactly:

* every acknowledged command is there (recovered seq >= last ack L);
* nothing else is invented: the recovered seq is L or L + the size of the one batch that was
  in flight (``batch_size_after(L)``), and the journal's records equal the load's, byte for byte;
* the recovered ``state_hash()`` equals a clean replay of the same commands in a fresh engine.

The next driver run recovers the same directory itself (truncating the torn tail) and carries on.
``AFTERHOURS_CRASH_RUNS`` sets the number of random kills (default 12).
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from crash_harness import Driver
from journal_crash_driver import SEGMENT_BYTES
from journal_support import batch_size_after, clean_hash, load

from engine.journal import list_snapshots, recover

RUNS = int(os.environ.get("AFTERHOURS_CRASH_RUNS", "12"))


@pytest.fixture(scope="module")
def crash_load(tmp_path_factory):
    commands = load(120_000, seed=11)
    path = tmp_path_factory.mktemp("load") / "load.npy"
    np.save(path, commands)
    return commands, path


def check_recovered(directory, commands, last_ack: int) -> tuple[int, int]:
    """Recover read-only and check the three promises; return (recovered seq, torn bytes)."""
    rec = recover(directory, read_only=True, segment_bytes=SEGMENT_BYTES)
    try:
        seq = rec.seq
        assert seq >= last_ack, f"acknowledged {last_ack} but recovered only {seq}"
        assert seq in (last_ack, last_ack + batch_size_after(last_ack)), (seq, last_ack)
        first = rec.journal.first_seq
        held = [np.frombuffer(r.records, dtype=commands.dtype) for r in rec.journal.batches(first - 1)]
        held = np.concatenate(held) if held else commands[:0]
        assert held.tobytes() == commands[first - 1 : seq].tobytes()
        assert rec.engine.state_hash() == clean_hash(commands, seq)
        rec.engine.check_invariants()
        return seq, rec.journal.torn_bytes
    finally:
        rec.journal.close()


def test_sigkill_at_random_moments_loses_no_acknowledged_command(tmp_path, crash_load):
    commands, load_path = crash_load
    directory = tmp_path / "journal"
    rng = random.Random(20261129)
    recovered = 0
    torn_seen = 0
    for run in range(RUNS):
        driver = Driver("write", directory, load_path, "--snapshot-every", "400")
        assert driver.wait_ready() == recovered
        driver.kill_after(rng.uniform(0.0, 0.5))
        acks = driver.acks
        assert acks == sorted(acks) and (not acks or acks[0] > recovered)
        last_ack = acks[-1] if acks else recovered
        recovered, torn = check_recovered(directory, commands, last_ack)
        torn_seen += torn > 0
        if driver.done:
            break
    print(f"{RUNS} kills: recovered {recovered} commands, {torn_seen} torn tails, "
          f"snapshots {[s for s, _ in list_snapshots(str(directory))]}")
    assert recovered > 0


@pytest.mark.parametrize(
    "die_at, in_flight_survives",
    [("write:3", False), ("fsync:3", True), ("snapshot:1", True)],
    ids=["halfway-through-a-frame-write", "after-fsync-before-ack", "before-snapshot-rename"],
)
def test_sigkill_at_an_exact_point(tmp_path, crash_load, die_at, in_flight_survives):
    commands, load_path = crash_load
    directory = tmp_path / "journal"

    driver = Driver("write", directory, load_path, "--die-at", die_at, "--snapshot-every", "60")
    driver.wait_ready()
    rc = driver.finish()

    assert rc == -9, driver.stderr
    acks = driver.acks
    last_ack = acks[-1]
    if die_at != "snapshot:1":
        assert len(acks) == 2  # killed inside the third append
    seq, torn = check_recovered(directory, commands, last_ack)
    assert seq == (last_ack + batch_size_after(last_ack) if in_flight_survives else last_ack)
    assert (torn > 0) == (die_at == "write:3")
    if die_at == "snapshot:1":
        assert any(n.endswith(".ahs.tmp") for n in os.listdir(directory))
        assert list_snapshots(str(directory)) == []

    # the writer restarts on the same directory and continues the numbering exactly
    again = Driver("write", directory, load_path)
    assert again.wait_ready() == seq
    while not again.acks and again.proc.poll() is None:
        again.ready.wait(0.01)
    again.kill()
    assert again.acks[0] == seq + batch_size_after(seq)
    assert not any(n.endswith(".tmp") for n in os.listdir(directory))
    check_recovered(directory, commands, again.acks[-1])
