"""The append-only log: numbering, group commit, segment rolling, torn tails, corruption."""

from __future__ import annotations

import os

import numpy as np
import pytest
from journal_support import CONFIG, SPECS, batches, flip_byte, journal_records

from engine.journal import (
    Journal,
    JournalCorrupt,
    JournalError,
    JournalMismatch,
    JournalNotFound,
    frames,
)
from engine.commands import COMMAND_DTYPE
from engine.spec import EngineConfig


def write_journal(directory, commands, segment_bytes=1 << 30, upto=None) -> list[tuple[int, int]]:
    """Append ``commands[:upto]`` in the standard batches; return (first seq, count) per frame."""
    out = []
    with Journal.open(directory, SPECS, CONFIG, create=True, segment_bytes=segment_bytes) as journal:
        for start, recs in batches(commands[:upto]):
            seqs = journal.append(recs, ts_ns=int(recs["ts"][0]))
            assert seqs == range(start + 1, start + 1 + len(recs))
            out.append((seqs.start, len(recs)))
    return out


def frame_offsets(path: str) -> list[int]:
    """Offsets of the frames of a segment file, by walking the length fields."""
    with open(path, "rb") as f:
        data = f.read()
    off, out = frames.SEGMENT_HEADER.size, []
    while off < len(data):
        out.append(off)
        _, length, _ = frames.FRAME.unpack_from(data, off)
        off += frames.FRAME.size + length
    return out


def segment_paths(directory) -> list[str]:
    return [os.path.join(directory, n) for n in sorted(os.listdir(directory)) if n.endswith(".ahj")]


def test_append_returns_contiguous_sequence_numbers_and_reads_back_byte_identical(tmp_path, commands):
    frames_written = write_journal(tmp_path, commands)

    with Journal.open(tmp_path) as journal:
        assert journal.last_seq == len(commands)
        assert journal.first_seq == 1
        assert [(r.first_seq, len(r.records) // commands.itemsize) for r in journal.batches()] == frames_written
        assert journal_records(journal).tobytes() == commands.tobytes()


def test_reopen_continues_numbering(tmp_path, commands):
    write_journal(tmp_path, commands, upto=100)

    with Journal.open(tmp_path, SPECS, CONFIG) as journal:
        seqs = journal.append(np.ascontiguousarray(commands[100:130]), ts_ns=5)

    assert seqs == range(101, 131)
    with Journal.open(tmp_path) as journal:
        assert journal_records(journal).tobytes() == commands[:130].tobytes()


def test_segments_roll_at_the_size_limit_with_sortable_names(tmp_path, commands):
    write_journal(tmp_path, commands, segment_bytes=16 << 10)

    names = [os.path.basename(p) for p in segment_paths(tmp_path)]
    assert len(names) > 5
    assert names == sorted(names)
    firsts = [frames.parse_segment_name(n) for n in names]
    assert firsts[0] == 1 and firsts == sorted(firsts)
    for path in segment_paths(tmp_path)[:-1]:
        # a segment is closed at the first frame boundary at or past the limit
        assert os.path.getsize(path) >= 16 << 10
        assert os.path.getsize(path) - (16 << 10) < frame_offsets(path)[-1]
    with Journal.open(tmp_path) as journal:
        assert journal_records(journal).tobytes() == commands.tobytes()
        assert [s.first_seq for s in journal.segments] == firsts


def test_batches_after_a_frame_boundary_start_there(tmp_path, commands):
    written = write_journal(tmp_path, commands, segment_bytes=16 << 10)
    first, _ = next(f for f in written[40:] if f[1] > 1)

    with Journal.open(tmp_path) as journal:
        got = journal_records(journal, after_seq=first - 1)
        with pytest.raises(JournalError, match="inside the batch"):
            list(journal.batches(first))

    assert got.tobytes() == commands[first - 1 :].tobytes()


@pytest.mark.parametrize("cut", ["1 byte", "frame header only", "half", "all but 1 byte"])
def test_truncated_last_record_is_a_torn_tail_and_is_truncated(tmp_path, commands, cut):
    written = write_journal(tmp_path, commands, upto=400)
    path = segment_paths(tmp_path)[-1]
    last_off = frame_offsets(path)[-1]
    size = os.path.getsize(path)
    keep = {"1 byte": last_off + 1, "frame header only": last_off + frames.FRAME.size,
            "half": (last_off + size) // 2, "all but 1 byte": size - 1}[cut]
    os.truncate(path, keep)
    acked = written[-1][0] - 1  # the last frame never returned from append

    with Journal.open(tmp_path, SPECS, CONFIG) as journal:
        assert journal.last_seq == acked
        assert journal.torn_bytes == keep - last_off
        assert os.path.getsize(path) == last_off
        seqs = journal.append(np.ascontiguousarray(commands[acked : acked + 3]), ts_ns=1)
    assert seqs == range(acked + 1, acked + 4)
    with Journal.open(tmp_path) as journal:
        assert journal_records(journal).tobytes() == commands[: acked + 3].tobytes()


def test_read_only_open_reports_a_torn_tail_without_truncating(tmp_path, commands):
    written = write_journal(tmp_path, commands, upto=200)
    path = segment_paths(tmp_path)[-1]
    os.truncate(path, os.path.getsize(path) - 7)
    size = os.path.getsize(path)

    with Journal.open(tmp_path, read_only=True) as journal:
        assert journal.last_seq == written[-1][0] - 1
        assert journal.torn_bytes > 0
        with pytest.raises(JournalError, match="read-only"):
            journal.append(np.ascontiguousarray(commands[:1]), 0)
    assert os.path.getsize(path) == size


@pytest.mark.parametrize("where", ["magic", "length", "checksum", "payload"])
def test_flipped_byte_in_the_middle_names_segment_and_offset(tmp_path, commands, where):
    write_journal(tmp_path, commands, upto=600)
    path = segment_paths(tmp_path)[-1]
    target = frame_offsets(path)[5]
    flip_byte(path, target + {"magic": 1, "length": 5, "checksum": 9, "payload": frames.FRAME.size + 40}[where])

    with pytest.raises(JournalCorrupt) as err:
        Journal.open(tmp_path)

    assert err.value.segment == os.path.basename(path)
    assert err.value.offset == target
    assert f"segment {os.path.basename(path)} at byte offset {target}" in str(err.value)
    assert "valid frame follows" in str(err.value)


def test_flipped_byte_in_an_earlier_segment_is_found_when_read(tmp_path, commands):
    write_journal(tmp_path, commands, segment_bytes=16 << 10)
    path = segment_paths(tmp_path)[1]
    target = frame_offsets(path)[3]
    flip_byte(path, target + frames.FRAME.size + 17)

    # only the last segment is scanned at open; this one is checked when read
    with Journal.open(tmp_path) as journal, pytest.raises(JournalCorrupt) as err:
        journal_records(journal)

    assert (err.value.segment, err.value.offset) == (os.path.basename(path), target)
    assert err.value.reason == "frame checksum mismatch"


def test_flipped_byte_in_the_last_frame_is_indistinguishable_from_a_torn_write(tmp_path, commands):
    written = write_journal(tmp_path, commands, upto=300)
    path = segment_paths(tmp_path)[-1]
    last_off = frame_offsets(path)[-1]
    flip_byte(path, last_off + frames.FRAME.size + 3)

    with Journal.open(tmp_path, SPECS, CONFIG) as journal:
        assert journal.last_seq == written[-1][0] - 1
        assert os.path.getsize(path) == last_off


def test_corrupt_segment_header_is_an_error_at_offset_zero(tmp_path, commands):
    write_journal(tmp_path, commands, segment_bytes=16 << 10)
    path = segment_paths(tmp_path)[0]
    flip_byte(path, 17)

    with pytest.raises(JournalCorrupt) as err:
        Journal.open(tmp_path)
    assert (err.value.segment, err.value.offset) == (os.path.basename(path), 0)


def test_a_missing_middle_segment_is_a_gap(tmp_path, commands):
    write_journal(tmp_path, commands, segment_bytes=16 << 10)
    gone = segment_paths(tmp_path)[2]
    os.remove(gone)

    with Journal.open(tmp_path) as journal, pytest.raises(JournalCorrupt, match="previous segment ends at") as err:
        journal_records(journal)
    assert err.value.offset == 0


def test_a_segment_torn_while_being_started_is_removed(tmp_path, commands):
    write_journal(tmp_path, commands, upto=100)
    stray = os.path.join(tmp_path, frames.segment_name(101))
    with open(stray, "wb") as f:
        f.write(frames.encode_segment_header(101)[:10])

    with Journal.open(tmp_path, SPECS, CONFIG) as journal:
        assert journal.last_seq == 100
        assert journal.torn_bytes == 10
        assert not os.path.exists(stray)
        assert journal.append(np.ascontiguousarray(commands[100:101]), 0) == range(101, 102)


def test_missing_directory_is_not_found(tmp_path):
    with pytest.raises(JournalNotFound, match="does not exist"):
        Journal.open(tmp_path / "nope")


def test_empty_directory_is_not_a_journal_until_created(tmp_path, commands):
    with pytest.raises(JournalNotFound, match="no journal.json"):
        Journal.open(tmp_path)

    with Journal.open(tmp_path, SPECS, CONFIG, create=True) as journal:
        assert (journal.first_seq, journal.last_seq) == (1, 0)
        assert list(journal.batches()) == []
    with Journal.open(tmp_path / "new" / "dir", SPECS, CONFIG, create=True) as journal:
        assert journal.append(np.ascontiguousarray(commands[:2]), 0) == range(1, 3)


def test_segments_without_meta_are_refused(tmp_path, commands):
    write_journal(tmp_path, commands, upto=50)
    os.remove(tmp_path / frames.META_NAME)

    with pytest.raises(JournalNotFound, match="refusing to guess"):
        Journal.open(tmp_path, SPECS, CONFIG, create=True)


def test_other_specs_or_config_are_refused(tmp_path, commands):
    write_journal(tmp_path, commands, upto=50)

    with pytest.raises(JournalMismatch, match="other market specs"):
        Journal.open(tmp_path, SPECS[:1], CONFIG)
    with pytest.raises(JournalMismatch, match="engine config"):
        Journal.open(tmp_path, SPECS, EngineConfig(max_orders=1 << 12, max_accounts=1 << 6))
    with Journal.open(tmp_path, SPECS, CONFIG) as journal:
        assert journal.specs == SPECS and journal.config == CONFIG


def test_meta_file_records_specs_config_and_record_layout(tmp_path, commands):
    write_journal(tmp_path, commands, upto=5)

    meta = frames.decode_meta((tmp_path / frames.META_NAME).read_bytes())

    assert meta.specs == SPECS
    assert meta.config == CONFIG
    assert meta.command_dtype == frames.command_layout()
    assert meta.format == frames.FORMAT_VERSION


def test_command_records_have_no_padding_bytes():
    # Frames hold raw record bytes; numpy copies (np.concatenate, say) leave padding bytes
    # uninitialised, so a record with padding would make the same commands journal differently.
    dtype = COMMAND_DTYPE
    assert sum(dtype.fields[name][0].itemsize for name in dtype.names) == dtype.itemsize == 96


def test_a_corrupt_meta_file_is_an_error(tmp_path, commands):
    write_journal(tmp_path, commands, upto=5)
    (tmp_path / frames.META_NAME).write_bytes(b'{"format": 1, "specs": [')

    with pytest.raises(JournalCorrupt, match="journal.json"):
        Journal.open(tmp_path)


def test_append_rejects_what_is_not_a_batch_of_command_records(tmp_path, commands):
    with Journal.open(tmp_path, SPECS, CONFIG, create=True) as journal:
        with pytest.raises(ValueError, match="empty"):
            journal.append(np.ascontiguousarray(commands[:0]), 0)
        with pytest.raises(TypeError):
            journal.append(np.zeros(3, dtype=np.int64), 0)
        assert journal.last_seq == 0
