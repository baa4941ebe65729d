"""Replay and recovery: recorded state hashes, divergence, apply boundaries of BATCH
commands, events equal to the live ones, and a host clock that steps."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from journal_support import CONFIG, SPECS, batches, clean_hash

from engine.commands import Batch, Place, SetMark, Tick, to_records
from engine.engine import Engine
from engine.journal import Journal, JournaledEngine, ReplayDivergence, recover, replay
from engine.journal.replay import boundaries


def test_a_state_hash_is_recorded_every_n_commands_and_checked_on_replay(tmp_path, commands):
    je = JournaledEngine.open(tmp_path, SPECS, CONFIG, hash_every=700)
    for _, recs in batches(commands):
        je.submit(recs, 0)
    je.close()

    with Journal.open(tmp_path) as journal:
        hashed = [(r.first_seq, r.hash_before.hex()) for r in journal.batches() if r.hash_before is not None]
    assert len(hashed) == len(commands) // 700 or len(hashed) == len(commands) // 700 - 1
    gaps = np.diff([0] + [seq - 1 for seq, _ in hashed])
    assert (gaps >= 700).all() and (gaps < 700 + 48).all()
    for seq, recorded in hashed[:3]:
        assert recorded == clean_hash(commands, seq - 1)
    rec = recover(tmp_path)
    assert rec.stats.hashes_checked == len(hashed)
    rec.journal.close()


def test_a_recorded_hash_that_replay_does_not_reproduce_is_a_divergence(tmp_path, commands):
    bad = "ab" * 32
    with Journal.open(tmp_path, SPECS, CONFIG, create=True) as journal:
        for k, (start, recs) in enumerate(batches(commands[:2000])):
            hash_before = bad if k == 30 else (clean_hash(commands, start) if k == 10 else None)
            journal.append(np.ascontiguousarray(recs), 0, hash_before)
            if k == 30:
                diverged_after = start

    with pytest.raises(ReplayDivergence) as err:
        recover(tmp_path)

    assert err.value.seq == diverged_after
    assert err.value.recorded == bad and err.value.replayed == clean_hash(commands, diverged_after)
    assert f"after sequence number {diverged_after}" in str(err.value)
    rec = recover(tmp_path, verify_hashes=False)
    assert rec.engine.state_hash() == clean_hash(commands, 2000)
    rec.journal.close()


# ---------------------------------------------------------------------------- apply boundaries


def batch_load() -> np.ndarray:
    """Orders, then BATCH commands whose actions the frames below cut in two."""
    def bid(account, price, size="1"):
        return Place(market=0, account=account, side="buy", size=Decimal(size), price=Decimal(price))

    def ask(account, price, size="1"):
        return Place(market=0, account=account, side="sell", size=Decimal(size), price=Decimal(price))

    cmds = [SetMark(market=0, price=Decimal("200.00"), ts_ns=1)]
    cmds += [bid(1, "199.90"), ask(2, "200.10"), bid(3, "199.80", "2")]
    cmds += [Batch(actions=[ask(4, "199.80"), bid(5, "200.20"), ask(6, "200.30")])]
    cmds += [bid(7, "199.70"), Tick(ts_ns=5)]
    cmds += [Batch(actions=[bid(8, "199.60"), ask(9, "200.40")])]
    cmds += [ask(1, "199.90", "3"), Batch(actions=[bid(2, "199.50")])]
    return to_records(cmds, SPECS)


def by_seq(first_seq: int, events: np.ndarray) -> list[tuple]:
    """Events keyed by their command's sequence number instead of the index in an apply call."""
    out = []
    for e in events:
        fields = dict(zip(events.dtype.names, e.item()))
        out.append((first_seq + fields.pop("cmd"), tuple(fields.values())))
    return out


# frames as record counts; each cuts one BATCH header's actions at a frame boundary or not
FRAME_LAYOUTS = {  # frame sizes, and the apply calls replay needs (frames merged where safe)
    "header-alone-at-frame-end": ([5, 3, 2, 1, 2, 2, 1], 4),
    "header-and-one-action": ([6, 3, 2, 2, 3], 3),
    "nothing-cut": ([1, 3, 4, 2, 3, 3], 1),
    "one-frame": ([16], 1),
}


@pytest.mark.parametrize("layout", FRAME_LAYOUTS, ids=list(FRAME_LAYOUTS))
def test_replay_keeps_apply_boundaries_that_batch_commands_depend_on(tmp_path, layout):
    records = batch_load()
    sizes, apply_calls = FRAME_LAYOUTS[layout]
    assert sum(sizes) == len(records)
    je = JournaledEngine.open(tmp_path, SPECS, CONFIG)
    live_events, pos = [], 0
    for n in sizes:
        seqs, events = je.submit(np.ascontiguousarray(records[pos : pos + n]), 0)
        live_events += by_seq(seqs.start, events)
        pos += n
    live = je.engine.state_hash()
    je.close()
    merged_events = by_seq(1, Engine(SPECS, CONFIG).apply(records))

    replayed_events = []

    def sink(first, cmds, events):
        replayed_events.extend(by_seq(first, events))

    engine = Engine(SPECS, CONFIG)
    with Journal.open(tmp_path) as journal:
        stats = replay(journal, engine, on_events=sink)

    assert engine.state_hash() == live
    assert replayed_events == live_events
    # the boundaries really matter where a frame cuts a batch
    assert (replayed_events != merged_events) == (layout not in ("nothing-cut", "one-frame"))
    assert stats.apply_calls == apply_calls


@pytest.mark.parametrize(
    "kinds_sizes, ends, cuts",
    [
        ([(1, 0), (1, 0), (1, 0)], [1, 3], [3]),  # no BATCH: one call
        ([(5, 2), (1, 0), (1, 0), (1, 0)], [3, 4], [4]),  # header at 0 reaches 0+1+2 = 3 <= 3: fits
        ([(5, 3), (1, 0), (1, 0), (1, 0)], [3, 4], [3, 4]),  # 0+1+3 = 4 > 3: cut after the first frame
        ([(1, 0), (5, 99), (1, 0)], [2, 3], [2, 3]),  # an oversized header skips what is left: cut
        ([(5, -4), (1, 0)], [1, 2], [2]),  # a negative count reaches nothing
    ],
)
def test_boundaries_cut_only_after_frames_whose_batch_headers_reach_out(kinds_sizes, ends, cuts):
    cmds = np.zeros(len(kinds_sizes), dtype=batch_load().dtype)
    cmds["kind"] = [k for k, _ in kinds_sizes]
    cmds["size"] = [s for _, s in kinds_sizes]

    assert boundaries(cmds, np.array(ends, dtype=np.int64)) == cuts


# ---------------------------------------------------------------------------- clock


def test_a_stepping_host_clock_changes_nothing(tmp_path, commands):
    """The sequencer's batch timestamps jump back and forth (the host clock stepped); only the
    records' own contents decide the state, so replay matches the live engine."""
    stamps = iter([10**18, 5, 10**18 + 7, 0, 3 * 10**17] * 10_000)
    je = JournaledEngine.open(tmp_path, SPECS, CONFIG, hash_every=300)
    for _, recs in batches(commands):
        je.submit(recs, next(stamps))
    live, last = je.engine.state_hash(), je.seq
    je.close()

    rec = recover(tmp_path)

    assert rec.engine.state_hash() == live == clean_hash(commands, last)
    rec.journal.close()
