"""``afterhours replay DIR``: the summary, JSON output, event export for a range, errors."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest
from journal_support import CONFIG, SPECS, batches

from api.cli import main
from engine.codes import CommandKind, EventKind
from engine.commands import events_to_structs
from engine.journal import JournaledEngine


@pytest.fixture(scope="module")
def journal_dir(tmp_path_factory, commands):
    """A journal of the load with one snapshot; the live events, each with its sequence number."""
    directory = tmp_path_factory.mktemp("cli") / "journal"
    je = JournaledEngine.open(directory, SPECS, CONFIG, hash_every=1_000)
    live = []
    for start, recs in batches(commands):
        seqs, events = je.submit(recs, 0)
        for seq, event in zip((seqs.start + events["cmd"]).tolist(), events_to_structs(events)):
            body = msgspec.to_builtins(event)
            del body["cmd"]
            live.append({"seq": seq, **body})
        if start < 3000 <= start + len(recs):
            je.snapshot()
    state = (je.seq, je.engine.state_hash())
    je.close()
    return directory, state, live


def test_replay_prints_the_final_sequence_number_hash_and_summary(journal_dir, commands, capsys):
    directory, (seq, state_hash), live = journal_dir

    assert main(["replay", str(directory)]) == 0

    out = capsys.readouterr().out
    assert f"last sequence   {seq}\n" in out
    assert f"state hash      {state_hash}\n" in out
    assert f"replayed        {seq} commands (1..{seq}) from an empty engine" in out
    assert f"place {int(np.count_nonzero(commands['kind'] == CommandKind.PLACE))}" in out
    assert f"fill {sum(e['type'] == 'fill' for e in live)}" in out


def test_replay_json_counts_every_command_and_event_by_kind(journal_dir, commands, capsys):
    directory, (seq, state_hash), live = journal_dir

    assert main(["replay", str(directory), "--json"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert (report["last_seq"], report["state_hash"], report["commands"]) == (seq, state_hash, seq)
    kinds, counts = np.unique(commands["kind"], return_counts=True)
    assert report["commands_by_kind"] == {CommandKind(k).name.lower(): int(c) for k, c in zip(kinds, counts)}
    events = {}
    for e in live:
        events[e["type"]] = events.get(e["type"], 0) + 1
    assert report["events_by_kind"] == events
    assert set(events) <= {k.name.lower() for k in EventKind}
    assert report["hashes_checked"] == seq // 1000 or report["hashes_checked"] == seq // 1000 - 1


def test_replay_from_the_snapshot_gives_the_same_state(journal_dir, capsys):
    directory, (seq, state_hash), _ = journal_dir

    assert main(["replay", str(directory), "--from-snapshot", "--json"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["snapshot_seq"] > 0 and report["commands"] == seq - report["snapshot_seq"]
    assert report["state_hash"] == state_hash


@pytest.mark.parametrize("span", ["2000:2100", "3:3", "5990:", ":40"])
def test_events_for_a_range_are_exported_as_json_lines_equal_to_the_live_ones(journal_dir, tmp_path, span, capsys):
    directory, (seq, _), live = journal_dir
    lo, hi = span.split(":")
    lo, hi = int(lo or 1), int(hi or seq)
    out = tmp_path / "events.jsonl"

    assert main(["replay", str(directory), "--events", span, "--out", str(out)]) == 0

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    expected = [e for e in live if lo <= e["seq"] <= hi]
    assert lines == expected and len(lines) > 0
    assert f"exported        {len(expected)} events" in capsys.readouterr().out


def test_bad_ranges_and_missing_out_are_usage_errors(journal_dir, capsys):
    directory = str(journal_dir[0])
    with pytest.raises(SystemExit):
        main(["replay", directory, "--events", "9:3", "--out", "x"])
    assert main(["replay", directory, "--events", "1:3"]) == 2
    assert "--events needs --out" in capsys.readouterr().err


def test_a_missing_or_empty_directory_is_a_clear_error(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["replay", str(tmp_path)]) == 1
    assert "holds no journal" in capsys.readouterr().err


def test_replay_changes_nothing_in_the_directory(journal_dir):
    directory = journal_dir[0]
    before = {p.name: p.read_bytes() for p in directory.iterdir()}

    assert main(["replay", str(directory), "--from-snapshot"]) == 0

    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
