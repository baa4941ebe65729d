"""Disk full and fsync failure, injected at the file layer while the real files are used:
the journal fails with a specific error, acknowledges nothing more, and a reopen recovers
exactly what was acknowledged — plus, after a failed fsync, the unacknowledged batch whose
bytes had been written (a process restart still finds them in the page cache)."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from journal_support import CONFIG, SPECS, batches, clean_hash, journal_records

from engine.journal import (
    FileOps,
    Journal,
    JournaledEngine,
    JournalFailed,
    list_snapshots,
    recover,
)


class FaultyOps(FileOps):
    """Real file operations, except that the ``fail_on``-th call of ``op`` on ``what`` raises
    OSError(``error``). ``what`` is "frame" (a journal frame's write, or the fsync right
    after it) or "any" (every call counts). ``partial`` writes the first half of the data
    before raising (a short write)."""

    def __init__(self, op: str, fail_on: int, error: int, partial: bool = False, what: str = "frame"):
        self.op, self.fail_on, self.error, self.partial, self.what = op, fail_on, error, partial, what
        self.calls = {"write": 0, "fsync": 0}
        self.after_frame = False

    def _maybe_fail(self, op: str, fd, data=None) -> None:
        if self.what == "frame" and not (data is not None and bytes(memoryview(data)[:4]) == b"AHJR"
                                         or data is None and self.after_frame):
            return
        self.calls[op] += 1
        if op == self.op and self.calls[op] >= self.fail_on:
            if self.partial and data is not None:
                super().write(fd, memoryview(data).cast("B")[: len(data) // 2])
            raise OSError(self.error, os.strerror(self.error))

    def write(self, fd, data) -> None:
        self.after_frame = bytes(memoryview(data)[:4]) == b"AHJR"
        self._maybe_fail("write", fd, data)
        super().write(fd, data)

    def fsync(self, fd) -> None:
        self._maybe_fail("fsync", fd)
        super().fsync(fd)


def run_until_failure(journal: Journal, commands) -> tuple[int, JournalFailed]:
    acked = journal.last_seq
    for start, recs in batches(commands, start_seq=0):
        try:
            seqs = journal.append(np.ascontiguousarray(recs), 0)
        except JournalFailed as err:
            return acked, err
        acked = seqs.stop - 1
    pytest.fail("no failure was injected")


@pytest.mark.parametrize("partial", [False, True], ids=["nothing-written", "short-write"])
def test_disk_full_on_write_fails_the_journal_and_keeps_what_was_acknowledged(tmp_path, commands, partial):
    ops = FaultyOps("write", fail_on=4, error=errno.ENOSPC, partial=partial)
    journal = Journal.open(tmp_path, SPECS, CONFIG, create=True, fileops=ops)

    acked, err = run_until_failure(journal, commands)

    assert err.disk_full and err.errno == errno.ENOSPC and err.op == "write"
    assert "disk full" in str(err) and "ENOSPC" in str(err) and err.segment in str(err)
    assert journal.failed is err
    assert acked == sum(len(r) for _, r in list(batches(commands))[:3])
    writes = ops.calls["write"]
    with pytest.raises(JournalFailed):
        journal.append(np.ascontiguousarray(commands[:1]), 0)
    assert ops.calls["write"] == writes  # nothing more reaches the file
    journal.close()

    with Journal.open(tmp_path, SPECS, CONFIG) as reopened:
        assert reopened.last_seq == acked
        assert (reopened.torn_bytes > 0) == partial
        assert journal_records(reopened).tobytes() == commands[:acked].tobytes()


def test_fsync_failure_fails_the_journal_and_the_batch_is_not_acknowledged(tmp_path, commands):
    ops = FaultyOps("fsync", fail_on=4, error=errno.EIO)
    journal = Journal.open(tmp_path, SPECS, CONFIG, create=True, fileops=ops)

    acked, err = run_until_failure(journal, commands)

    assert not err.disk_full and err.errno == errno.EIO and err.op == "fsync"
    assert "I/O error" in str(err) and "EIO" in str(err)
    with pytest.raises(JournalFailed):
        journal.append(np.ascontiguousarray(commands[:1]), 0)
    journal.close()
    in_flight = len(list(batches(commands))[3][1])
    with Journal.open(tmp_path, SPECS, CONFIG) as reopened:
        # the failed batch's bytes were written before the fsync failed: after a process
        # restart the page cache still has them, so it is there, unacknowledged
        assert reopened.last_seq == acked + in_flight
        assert journal_records(reopened).tobytes() == commands[: acked + in_flight].tobytes()


def test_disk_full_when_starting_a_segment_fails_the_journal(tmp_path, commands):
    ops = FaultyOps("write", fail_on=10**9, error=errno.ENOSPC, what="any")
    journal = Journal.open(tmp_path, SPECS, CONFIG, create=True, segment_bytes=4096, fileops=ops)
    acked = 0
    for _, recs in batches(commands):
        if journal._active_size >= journal.segment_bytes:  # the next append starts a segment
            ops.fail_on = ops.calls["write"] + 1
            break
        acked = journal.append(np.ascontiguousarray(recs), 0).stop - 1

    with pytest.raises(JournalFailed) as err:
        journal.append(np.ascontiguousarray(commands[acked : acked + 2]), 0)

    assert err.value.op == "start" and err.value.disk_full
    journal.close()
    with Journal.open(tmp_path, SPECS, CONFIG) as reopened:
        assert reopened.last_seq == acked


def test_journaled_engine_applies_nothing_after_a_failed_append(tmp_path, commands):
    ops = FaultyOps("fsync", fail_on=10**9, error=errno.EIO)
    je = JournaledEngine.open(tmp_path, SPECS, CONFIG, fileops=ops)
    done = in_flight = 0
    for i, (start, recs) in enumerate(batches(commands[:1000])):
        if i == 6:
            in_flight = len(recs)
            ops.fail_on = ops.calls["fsync"] + 1
            before = je.engine.state_hash()
            with pytest.raises(JournalFailed):
                je.submit(recs, 0)
            assert je.engine.state_hash() == before
            assert je.seq == done
            with pytest.raises(JournalFailed):
                je.submit(recs, 0)
            break
        je.submit(recs, 0)
        done = start + len(recs)
    je.close()

    rec = recover(tmp_path)
    assert rec.seq == done + in_flight
    assert rec.engine.state_hash() == clean_hash(commands, rec.seq)
    rec.journal.close()


def test_disk_full_while_writing_a_snapshot_leaves_no_file_and_the_journal_working(tmp_path, commands):
    ops = FaultyOps("write", fail_on=10**9, error=errno.ENOSPC, what="any")
    je = JournaledEngine.open(tmp_path, SPECS, CONFIG, fileops=ops)
    for _, recs in batches(commands[:500]):
        je.submit(recs, 0)
    ops.fail_on = ops.calls["write"] + 3  # prefix, header, then the arrays: fail inside the arrays

    with pytest.raises(OSError) as err:
        je.snapshot()

    assert err.value.errno == errno.ENOSPC
    assert list_snapshots(str(tmp_path)) == []
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    ops.fail_on = 10**9
    seqs, _ = je.submit(np.ascontiguousarray(commands[500:510]), 0)
    assert seqs == range(501, 511)
    je.close()
