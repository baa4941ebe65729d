"""Determinism (gateway spec §6.23): the same journal replayed in fresh processes — from a
snapshot, across no snapshot at all, with every clock in ``time`` made to raise — gives one
and the same state hash, equal to the live engine's."""

from __future__ import annotations

import pytest
from crash_harness import Driver
from journal_support import CONFIG, SPECS, batches, clean_hash

from engine.journal import JournaledEngine, list_snapshots


@pytest.fixture(scope="module")
def written(tmp_path_factory, commands):
    directory = tmp_path_factory.mktemp("determinism") / "journal"
    je = JournaledEngine.open(directory, SPECS, CONFIG, hash_every=400, snapshot_every=1_500, keep_snapshots=3)
    for _, recs in batches(commands):
        je.submit(recs, 0)
    live = (je.seq, je.engine.state_hash())
    je.close()
    return directory, live


def replay_in_fresh_process(directory, *flags) -> tuple[int, str, int]:
    driver = Driver("hash", directory, *flags)
    rc = driver.finish()
    assert rc == 0, driver.stderr
    (line,) = driver.lines
    _, seq, state_hash, snapshot_seq = line.split()
    return int(seq), state_hash, int(snapshot_seq)


def test_fresh_processes_from_a_snapshot_and_from_the_start_agree(written, commands):
    directory, (live_seq, live_hash) = written
    newest = list_snapshots(str(directory))[-1][0]

    first = replay_in_fresh_process(directory)
    second = replay_in_fresh_process(directory, "--no-clock")
    full = replay_in_fresh_process(directory, "--no-snapshots")

    assert first == second == (live_seq, live_hash, newest)
    assert full == (live_seq, live_hash, 0)
    assert live_hash == clean_hash(commands, live_seq)
