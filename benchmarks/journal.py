"""The journal benchmark: group-commit append, replay, snapshot write and load.

Run ``python -m benchmarks.journal`` (``--quick`` for a short run, ``--json`` for one JSON
object, ``--help`` for the options).

Method
------
* Commands: the ``core`` mix of ``benchmarks/workload.py`` (prefill + stream), generated
  untimed. The numba kernels are compiled or loaded from cache first (``compile_s``, excluded).
* Append: for each batch size B, ``Journal.append`` of consecutive B-record slices of the
  stream into a fresh directory (one frame, one write, one fsync each), for at most
  ``--append-seconds`` or the whole stream. commands/s = records / wall time; fsyncs/s =
  appends / wall time; append latency percentiles are per call. The engine is not involved.
* Submit: ``JournaledEngine.submit`` at the default batch size (append + fsync + apply +
  events copied out): what the sequencer will see.
* Replay: the whole stream journaled at batch size B (``--replay-batch``), then
  ``replay(journal, Engine)`` from sequence number 0, timed from opening the journal to the
  last apply (file reads from the page cache, CRC, decode, apply). Beside it, the engine
  alone applying the same frames (``apply_count``), so the journal's own cost shows.
* Snapshot: an engine with ``EngineConfig(max_accounts=A, max_orders=O)`` after the prefill
  and the stream; ``write_snapshot`` (export copy, CRC, write, fsync, rename, directory
  fsync) and ``read_snapshot`` (read, CRC, restore, state-hash check), best of ``--repeat``.

Files go to a temporary directory under ``--dir`` (default: the system temp directory),
removed afterwards. Targets (issue 5): replay >= 2M commands/s (at ``--replay-batch``
frames), a 1M-account snapshot written in < 2 s (the row with 2^20 order slots, the
default ``max_orders``; the 2^22 row is reported beside it), group commit >= 200k
commands/s (the best batch size).

Known limitations
-----------------
* fsync cost is the machine's: a VM disk, a laptop SSD and a server NVMe differ by 10-100x.
* The page cache is warm for replay (the usual case right after a restart of the process,
  not of the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from benchmarks import workload
from engine.engine import Engine
from engine.journal import (
    Journal,
    JournaledEngine,
    read_snapshot,
    replay,
    write_snapshot,
)
from engine.spec import EngineConfig

BATCH_SIZES = (1, 16, 128, 1024, 8192)
SNAPSHOT_SIZES = ((10_000, 1 << 20), (100_000, 1 << 20), (1_000_000, 1 << 20), (1_000_000, 1 << 22))
TARGETS = {"replay_commands_per_s": 2_000_000, "snapshot_1m_write_s": 2.0, "append_commands_per_s": 200_000}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--commands", type=int, default=None, metavar="N",
                        help="stream commands (default 1,000,000; 200,000 with --quick)")
    parser.add_argument("--append-seconds", type=float, default=None, metavar="S",
                        help="time limit per append batch size (default 3; 1 with --quick)")
    parser.add_argument("--replay-batch", type=int, default=1024, metavar="B",
                        help="frame size of the journal that replay reads (default 1024)")
    parser.add_argument("--repeat", type=int, default=None, metavar="R",
                        help="snapshot write/load repeats, best kept (default 3; 1 with --quick)")
    parser.add_argument("--dir", default=None, help="where the temporary journal directories go")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="short run")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def bench_append(wl: workload.Workload, root: str, batch: int, seconds: float) -> dict:
    directory = tempfile.mkdtemp(prefix=f"append-{batch}-", dir=root)
    stream = wl.stream
    lat = []
    with Journal.open(directory, wl.specs, create=True) as journal:
        started = time.perf_counter()
        i = 0
        while i < len(stream) and time.perf_counter() - started < seconds:
            t0 = time.perf_counter_ns()
            journal.append(stream[i:i + batch], 0)
            lat.append(time.perf_counter_ns() - t0)
            i += batch
        wall = time.perf_counter() - started
        n = min(i, len(stream))
    shutil.rmtree(directory)
    lat_us = np.array(lat) / 1e3
    return {"batch": batch, "commands": n, "appends": len(lat), "wall_s": wall, "commands_per_s": n / wall,
            "fsyncs_per_s": len(lat) / wall, "append_us": {"p50": float(np.percentile(lat_us, 50)),
                                                             "p99": float(np.percentile(lat_us, 99))}}


def bench_submit(wl: workload.Workload, root: str, batch: int, seconds: float) -> dict:
    directory = tempfile.mkdtemp(prefix="submit-", dir=root)
    je = JournaledEngine.open(directory, wl.specs)
    je.submit(wl.prefill, 0)
    started = time.perf_counter()
    i = 0
    while i < len(wl.stream) and time.perf_counter() - started < seconds:
        je.submit(wl.stream[i:i + batch], 0)
        i += batch
    wall = time.perf_counter() - started
    je.close()
    shutil.rmtree(directory)
    n = min(i, len(wl.stream))
    return {"batch": batch, "commands": n, "wall_s": wall, "commands_per_s": n / wall}


def bench_replay(wl: workload.Workload, root: str, batch: int) -> dict:
    directory = tempfile.mkdtemp(prefix="replay-", dir=root)
    frames = [wl.prefill] + [wl.stream[i:i + batch] for i in range(0, len(wl.stream), batch)]
    with Journal.open(directory, wl.specs, create=True) as journal:
        for f in frames:
            journal.append(f, 0)
    engine = Engine(wl.specs)
    t0 = time.perf_counter()
    with Journal.open(directory, read_only=True) as journal:
        stats = replay(journal, engine, 0)
    wall = time.perf_counter() - t0
    replay_hash = engine.state_hash()
    plain = Engine(wl.specs)
    copies = [np.ascontiguousarray(f) for f in frames]
    t0 = time.perf_counter()
    for f in copies:
        plain.apply_count(f)
    engine_wall = time.perf_counter() - t0
    size = sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory))
    shutil.rmtree(directory)
    return {"batch": batch, "commands": stats.commands, "frames": stats.frames, "apply_calls": stats.apply_calls,
            "journal_bytes": size, "wall_s": wall, "commands_per_s": stats.commands / wall,
            "engine_only_commands_per_s": stats.commands / engine_wall,
            "hash_equal": replay_hash == plain.state_hash()}


def bench_snapshot(wl: workload.Workload, root: str, accounts: int, orders: int, repeat: int) -> dict:
    directory = tempfile.mkdtemp(prefix="snapshot-", dir=root)
    config = EngineConfig(max_accounts=accounts, max_orders=orders)
    engine = Engine(wl.specs, config)
    engine.apply_count(wl.prefill)
    engine.apply_count(wl.stream)
    writes, loads = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        path = write_snapshot(directory, engine, 1)
        writes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loaded = read_snapshot(path, wl.specs, config)
        loads.append(time.perf_counter() - t0)
        assert loaded.state_hash == engine.state_hash()
        del loaded
    size = os.path.getsize(path)
    shutil.rmtree(directory)
    return {"accounts": accounts, "max_orders": orders, "bytes": size, "write_s": min(writes), "load_s": min(loads),
            "write_mb_per_s": size / min(writes) / 1e6}


def run(args: argparse.Namespace) -> dict:
    n = args.commands or (200_000 if args.quick else 1_000_000)
    seconds = args.append_seconds or (1.0 if args.quick else 3.0)
    repeat = args.repeat or (1 if args.quick else 3)
    t0 = time.perf_counter()
    warm = workload.build(workload.CORE, 100)
    Engine(warm.specs).apply_count(warm.stream)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    wl = workload.build(workload.CORE, n, seed=args.seed)
    generate_s = time.perf_counter() - t0
    root = tempfile.mkdtemp(prefix="afterhours-journal-bench-", dir=args.dir)
    try:
        result = {
            "commands": n, "compile_s": compile_s, "generate_s": generate_s, "dir": root,
            "append": [bench_append(wl, root, b, seconds) for b in BATCH_SIZES],
            "submit": bench_submit(wl, root, 1024, seconds),
            "replay": [bench_replay(wl, root, b) for b in sorted({16, args.replay_batch})],
            "snapshot": [bench_snapshot(wl, root, a, o, repeat) for a, o in SNAPSHOT_SIZES],
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    main_replay = next(r for r in result["replay"] if r["batch"] == args.replay_batch)
    snap_1m = next(s for s in result["snapshot"] if s["accounts"] == 1_000_000)
    got = {
        "replay_commands_per_s": main_replay["commands_per_s"],
        "snapshot_1m_write_s": snap_1m["write_s"],
        "append_commands_per_s": max(a["commands_per_s"] for a in result["append"]),
    }
    result["targets"] = {name: {"value": got[name], "target": want, "met": _met(name, got[name], want)}
                         for name, want in TARGETS.items()}
    return result


def _met(name: str, value: float, target: float) -> bool:
    """Seconds must be at most the target; rates at least."""
    return value <= target if name.endswith("_write_s") else value >= target


def table(r: dict) -> str:
    lines = [(f"journal benchmark: core mix, {r['commands']:,} stream commands "
              f"(compile {r['compile_s']:.1f} s, generate {r['generate_s']:.1f} s, both excluded)"), "",
             "append (group commit: one write + one fsync per batch)",
             f"{'batch':>7} {'commands':>10} {'commands/s':>12} {'fsyncs/s':>10} {'p50 us':>9} {'p99 us':>9}"]
    for a in r["append"]:
        lines.append(f"{a['batch']:>7} {a['commands']:>10,} {a['commands_per_s']:>12,.0f} {a['fsyncs_per_s']:>10,.0f}"
                     f" {a['append_us']['p50']:>9,.0f} {a['append_us']['p99']:>9,.0f}")
    s = r["submit"]
    lines += ["", f"submit (journal + apply), batch {s['batch']}: {s['commands_per_s']:,.0f} commands/s", "",
              "replay (read + CRC + decode + apply, page cache warm)",
              f"{'frame':>7} {'commands':>10} {'apply calls':>12} {'commands/s':>12} {'engine only/s':>14} {'hash ok':>8}"]
    for p in r["replay"]:
        lines.append(f"{p['batch']:>7} {p['commands']:>10,} {p['apply_calls']:>12,} {p['commands_per_s']:>12,.0f}"
                     f" {p['engine_only_commands_per_s']:>14,.0f} {p['hash_equal']!s:>8}")
    lines += ["", "snapshot (write: export + CRC + write + fsync + rename; load: read + CRC + restore + hash check)",
              f"{'accounts':>10} {'max_orders':>11} {'MB':>8} {'write s':>8} {'load s':>8} {'write MB/s':>11}"]
    for p in r["snapshot"]:
        lines.append(f"{p['accounts']:>10,} {p['max_orders']:>11,} {p['bytes'] / 1e6:>8.1f} {p['write_s']:>8.3f}"
                     f" {p['load_s']:>8.3f} {p['write_mb_per_s']:>11,.0f}")
    lines += ["", "targets (issue 5)"]
    for name, t in r["targets"].items():
        lines.append(f"  {name:<24} {t['value']:>14,.3f}  target {t['target']:>12,}  {'met' if t['met'] else 'MISSED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.journal", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, sort_keys=True) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
