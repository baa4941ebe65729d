"""Snapshots: export/restore, the file format's refusals, fallback to an older snapshot, and
pruning of snapshots and segments."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from journal_support import CONFIG, SPECS, batches, clean_hash, flip_byte

from engine.engine import Engine
from engine.journal import (
    JournaledEngine,
    RecoveryError,
    SnapshotCorrupt,
    SnapshotMismatch,
    SnapshotVersionError,
    list_snapshots,
    read_snapshot,
    recover,
    write_snapshot,
)
from engine.journal import snapshot as snap
from engine.spec import EngineConfig


def engine_after(commands, n) -> Engine:
    engine = Engine(SPECS, CONFIG)
    engine.apply(np.ascontiguousarray(commands[:n]))
    return engine


def write_with_snapshots(directory, commands, at: list[int], keep=10, segment_bytes=1 << 30) -> JournaledEngine:
    """Submit the load; snapshot after the frame that reaches each position in ``at``."""
    je = JournaledEngine.open(directory, SPECS, CONFIG, keep_snapshots=keep, segment_bytes=segment_bytes)
    todo = sorted(at)
    for start, recs in batches(commands):
        je.submit(recs, 0)
        if todo and je.seq >= todo[0]:
            je.snapshot()
            todo.pop(0)
    return je


# ---------------------------------------------------------------------------- engine methods


def test_export_and_restore_round_trip_and_continue_identically(commands):
    live = engine_after(commands, 3000)

    restored = Engine.restore(SPECS, CONFIG, live.export_state())

    assert restored.state_hash() == live.state_hash()
    rest = np.ascontiguousarray(commands[3000:])
    assert np.array_equal(restored.apply(rest), live.apply(rest))
    assert restored.state_hash() == live.state_hash()
    restored.check_invariants()


def test_export_state_is_a_copy_of_every_public_array(commands):
    engine = engine_after(commands, 2000)
    state = engine.export_state()

    assert "ctr" in state and "orders" in state and "free" in state and "_ev" not in state
    before = engine.state_hash()
    for arr in state.values():
        arr.reshape(-1).view(np.uint8)[:] = 0xFF
    assert engine.state_hash() == before


@pytest.mark.parametrize("damage", ["missing", "extra", "shape", "dtype"])
def test_restore_refuses_arrays_that_do_not_fit(commands, damage):
    state = engine_after(commands, 100).export_state()
    if damage == "missing":
        del state["heap"]
    elif damage == "extra":
        state["nonces"] = np.zeros(3, dtype=np.int64)
    elif damage == "shape":
        state["free"] = state["free"][:-1]
    else:
        state["ctr"] = state["ctr"].astype(np.int32)

    with pytest.raises(ValueError, match="state array"):
        Engine.restore(SPECS, CONFIG, state)


# ---------------------------------------------------------------------------- file format


def test_snapshot_file_round_trip(tmp_path, commands):
    engine = engine_after(commands, 4000)

    path = write_snapshot(str(tmp_path), engine, 4000)
    loaded = read_snapshot(path, SPECS, CONFIG)

    assert os.path.basename(path) == "snap-00000000000000004000.ahs"
    assert loaded.seq == 4000 and loaded.state_hash == engine.state_hash()
    assert loaded.engine.state_hash() == engine.state_hash()
    assert os.listdir(tmp_path) == [os.path.basename(path)]


@pytest.mark.parametrize("where", ["body", "header", "trailer", "truncated"])
def test_a_corrupt_snapshot_is_refused(tmp_path, commands, where):
    path = write_snapshot(str(tmp_path), engine_after(commands, 500), 500)
    size = os.path.getsize(path)
    if where == "truncated":
        os.truncate(path, size - 1000)
    else:
        flip_byte(path, {"body": size // 2, "header": snap.PREFIX.size + 3, "trailer": size - 2}[where])

    with pytest.raises(SnapshotCorrupt, match="checksum mismatch") as err:
        read_snapshot(path, SPECS, CONFIG)
    assert err.value.path == path and path in str(err.value)


def test_a_snapshot_of_another_version_is_refused(tmp_path, commands):
    path = write_snapshot(str(tmp_path), engine_after(commands, 500), 500)
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<I", snap.SNAPSHOT_VERSION + 1))

    with pytest.raises(SnapshotVersionError, match=f"format version {snap.SNAPSHOT_VERSION + 1}, this build reads"):
        read_snapshot(path, SPECS, CONFIG)


def test_a_snapshot_of_other_specs_or_config_is_refused(tmp_path, commands):
    path = write_snapshot(str(tmp_path), engine_after(commands, 500), 500)

    with pytest.raises(SnapshotMismatch, match="other market specs"):
        read_snapshot(path, SPECS[:1], CONFIG)
    with pytest.raises(SnapshotMismatch, match="engine config"):
        read_snapshot(path, SPECS, EngineConfig(max_orders=CONFIG.max_orders, max_accounts=128))


def test_a_snapshot_that_is_not_one_is_refused(tmp_path):
    path = tmp_path / snap.snapshot_name(3)
    path.write_bytes(b"hello, this is not a snapshot at all")

    with pytest.raises(SnapshotCorrupt, match="bad magic"):
        read_snapshot(str(path), SPECS, CONFIG)


# ---------------------------------------------------------------------------- recovery


def test_recovery_uses_the_newest_snapshot_and_replays_the_rest(tmp_path, commands):
    je = write_with_snapshots(tmp_path, commands, at=[2000, 4000])
    live, last = je.engine.state_hash(), je.seq
    snaps = [s for s, _ in list_snapshots(str(tmp_path))]
    je.close()

    rec = recover(tmp_path)

    assert rec.snapshot_seq == snaps[-1] and rec.refused == []
    assert rec.stats.commands == last - snaps[-1]
    assert rec.engine.state_hash() == live == clean_hash(commands, last)
    rec.journal.close()


@pytest.mark.parametrize("damage", ["corrupt", "other version", "truncated", "garbage"])
def test_recovery_falls_back_to_an_older_snapshot_and_a_longer_replay(tmp_path, commands, damage):
    je = write_with_snapshots(tmp_path, commands, at=[2000, 4000])
    live, last = je.engine.state_hash(), je.seq
    je.close()
    (old_seq, _), (_, newest) = list_snapshots(str(tmp_path))
    if damage == "corrupt":
        flip_byte(newest, os.path.getsize(newest) // 3)
    elif damage == "other version":
        with open(newest, "r+b") as f:
            f.seek(8)
            f.write(struct.pack("<I", 99))
    elif damage == "truncated":
        os.truncate(newest, 100)
    else:
        open(newest, "wb").close()

    rec = recover(tmp_path)

    assert rec.snapshot_seq == old_seq
    assert rec.stats.commands == last - old_seq
    assert [name for name, _ in rec.refused] == [os.path.basename(newest)]
    reason = rec.refused[0][1]
    assert ("format version 99" in reason) if damage == "other version" else ("version" not in reason)
    assert rec.engine.state_hash() == live
    rec.journal.close()


def test_recovery_replays_from_the_start_when_every_snapshot_is_refused(tmp_path, commands):
    je = write_with_snapshots(tmp_path, commands, at=[3000])
    live, last = je.engine.state_hash(), je.seq
    je.close()
    flip_byte(list_snapshots(str(tmp_path))[0][1], 200)

    rec = recover(tmp_path)

    assert rec.snapshot_seq == 0 and rec.stats.commands == last and len(rec.refused) == 1
    assert rec.engine.state_hash() == live
    rec.journal.close()


def test_pruning_keeps_n_snapshots_and_drops_segments_wholly_before_the_oldest(tmp_path, commands):
    je = write_with_snapshots(tmp_path, commands, at=[1000, 2000, 3000, 4000, 5000], keep=2,
                              segment_bytes=16 << 10)
    live, last = je.engine.state_hash(), je.seq
    kept = [s for s, _ in list_snapshots(str(tmp_path))]
    first_kept_segment = je.journal.first_seq
    je.close()

    assert len(kept) == 2
    assert 1 < first_kept_segment <= kept[0] + 1  # the segment holding kept[0] + 1 is still there
    rec = recover(tmp_path)
    assert rec.journal.first_seq == first_kept_segment
    assert rec.engine.state_hash() == live and rec.seq == last
    rec.journal.close()
    # fall back to the older kept snapshot: its replay still has every segment it needs
    flip_byte(list_snapshots(str(tmp_path))[-1][1], 300)
    rec = recover(tmp_path)
    assert rec.snapshot_seq == kept[0] and rec.engine.state_hash() == live
    rec.journal.close()


def test_no_usable_snapshot_and_a_pruned_journal_is_a_recovery_error(tmp_path, commands):
    je = write_with_snapshots(tmp_path, commands, at=[1000, 2000, 3000, 4000, 5000], keep=1,
                              segment_bytes=16 << 10)
    je.close()
    flip_byte(list_snapshots(str(tmp_path))[0][1], 300)

    with pytest.raises(RecoveryError, match="no usable snapshot and the journal starts at"):
        recover(tmp_path)


def test_a_snapshot_beyond_the_journal_end_is_refused(tmp_path, commands):
    je = write_with_snapshots(tmp_path, commands[:3000], at=[])
    live = je.engine.state_hash()
    je.close()
    write_snapshot(str(tmp_path), engine_after(commands, 4000), 4000)

    rec = recover(tmp_path)

    assert rec.snapshot_seq == 0
    assert rec.refused == [(snap.snapshot_name(4000), "at sequence number 4000, beyond the journal's end 3000")]
    assert rec.engine.state_hash() == live
    rec.journal.close()


def test_a_leftover_temp_file_from_an_interrupted_snapshot_is_removed(tmp_path, commands):
    je = write_with_snapshots(tmp_path, commands[:3000], at=[1000])
    je.close()
    leftover = tmp_path / (snap.snapshot_name(2500) + ".tmp")
    leftover.write_bytes(b"half a snapshot")

    rec = recover(tmp_path)

    assert not leftover.exists() and rec.snapshot_seq == list_snapshots(str(tmp_path))[0][0]
    rec.journal.close()
