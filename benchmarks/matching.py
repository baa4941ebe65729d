"""The matching benchmark: seeded workloads through ``Engine`` in batches, checked against
the reference engine.

Run ``python -m benchmarks.matching`` (or ``afterhours bench``); ``--help`` lists the options.

Method
------
For each mix (``benchmarks/workload.py`` documents them):

1. The numba kernels are compiled (or loaded from numba's cache) on a throw-away engine
   first; that time is reported as ``compile_s`` and excluded from every other figure.
2. The workload is generated (untimed, reported as ``generate_s``).
3. A fresh ``Engine`` gets the prefill untimed, then the stream in batches of ``--batch``
   records through ``Engine.apply_count`` (events are written into the engine's buffer but
   not copied out; ``--copy-events`` times ``Engine.apply`` instead). The timed region of a
   batch is exactly the ``apply_count`` call; the batch views are cut beforehand and the
   garbage collector is off, so the harness adds no per-command Python work.
4. Throughput is commands (and events) over the wall time of the whole batch loop.
   Latency is **per batch**: each batch's time divided by its size, i.e. the average cost
   of a command within that batch; p50/p99/p99.9 are over batches. It is not the latency of
   one command on its own (the kernel has no clock inside, and a one-command ``apply``
   would measure Python call overhead, not matching).
5. Differential check: the prefill and the first ``--reference-commands`` stream commands
   go through a fresh ``Engine`` and a ``ReferenceEngine``; the event arrays must be equal
   (``np.array_equal``; the FILL events are also compared on their own) and so must
   ``state_hash()``. Both are timed on the same prefix and
   the ratio is reported.

With margin checks (``core-margin``)
------------------------------------
The exchange-core stream once more, on engines with ``EngineConfig(risk=True)``: accounts,
positions, fees and the pre-trade margin check of every place and amend. Before the
prefill, untimed, each of the mix's accounts deposits ``workload.MARGIN_DEPOSIT`` and an
``OracleUpdate`` per market sets the oracle price and the mark (``workload.margin_setup``);
the stream's SetMark commands still move the mark. Steps 3–5 are as above (the reference
engine runs with risk on too). One more untimed pass, with every event copied out, counts
the risk engine's events and rejects by code (so a stream rejected for margin would show),
and ends with ``check_invariants()`` (conservation of money, open interest, order
exposure); the timed runs must emit exactly as many events as that pass.

The exit status is 1 if any check fails (reference mismatch, the timed engine emitting
a different number of events than the generation engine did, or broken invariants).

Known limitations
-----------------
* On a busy machine the figures are noisy (a descheduled batch shows up in p99): use
  ``--repeat`` to keep the fastest of several runs, and compare ``repeats_commands_per_s``.
* Per-batch latency hides the spread inside a batch; smaller ``--batch`` resolves more at
  the cost of more Python call overhead per command.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from typing import Sequence

import numba
import numpy as np

from benchmarks import workload
from engine.book import C_NPOS
from engine.codes import EventKind, Reject
from engine.engine import Engine
from engine.reference import ReferenceEngine
from engine.spec import EngineConfig

DEFAULT_COMMANDS = 1_000_000
DEFAULT_BATCH = 4_096
DEFAULT_REFERENCE_COMMANDS = 50_000
QUICK_COMMANDS = 100_000
QUICK_REFERENCE_COMMANDS = 10_000
PERCENTILES = (50.0, 99.0, 99.9)
_EVENT_KINDS = {int(k) for k in EventKind}
LATENCY_METHOD = "per-batch average per command (batch wall time / batch size), percentiles over batches"
MARGIN_RUN = "core-margin"  # the exchange-core mix on a risk engine (margin checks on)
MIX_CHOICES = {"core": ["core"], "churn": ["churn"], MARGIN_RUN: [MARGIN_RUN], "both": ["core", "churn"],
               "all": ["core", "churn", MARGIN_RUN]}
AUDIT_BATCH = 1 << 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options (shared with ``afterhours bench``)."""
    parser.add_argument("--commands", type=int, default=None, metavar="N",
                        help=f"timed commands per mix (default {DEFAULT_COMMANDS:,}; {QUICK_COMMANDS:,} with --quick)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, metavar="B",
                        help=f"records per Engine.apply_count call (default {DEFAULT_BATCH})")
    parser.add_argument("--mix", choices=tuple(MIX_CHOICES), default="all",
                        help="exchange-core mix, churn mix, exchange-core with accounts and margin checks "
                             f"({MARGIN_RUN}), core and churn (both), or all three (default all)")
    parser.add_argument("--reference-commands", type=int, default=None, metavar="N",
                        help="stream commands also run through the reference engine and compared "
                             f"(default {DEFAULT_REFERENCE_COMMANDS:,}; {QUICK_REFERENCE_COMMANDS:,} with --quick; 0 skips)")
    parser.add_argument("--repeat", type=int, default=1, metavar="R",
                        help="time the stream R times, each on a fresh engine, and report the fastest (default 1)")
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.add_argument("--copy-events", action="store_true",
                        help="time Engine.apply (events copied out) instead of Engine.apply_count")
    parser.add_argument("--quick", action="store_true",
                        help=f"short demo run: {QUICK_COMMANDS:,} commands, {QUICK_REFERENCE_COMMANDS:,} checked")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults that depend on ``--quick``; reject nonsense."""
    if args.commands is None:
        args.commands = QUICK_COMMANDS if args.quick else DEFAULT_COMMANDS
    if args.reference_commands is None:
        args.reference_commands = QUICK_REFERENCE_COMMANDS if args.quick else DEFAULT_REFERENCE_COMMANDS
    if args.commands < 1 or args.batch < 1 or args.repeat < 1 or args.reference_commands < 0:
        raise SystemExit("--commands, --batch and --repeat must be >= 1, --reference-commands >= 0")
    args.reference_commands = min(args.reference_commands, args.commands)
    return args


# ---------------------------------------------------------------------------- steps


def warm_up() -> float:
    """Seconds to compile (or load from cache) the kernels, on throw-away engines (one
    without and one with risk, so no path of either is compiled inside a timed region)."""
    started = time.perf_counter()
    sample = workload.build(workload.CORE, 100)
    for config, setup in ((EngineConfig(), None), (EngineConfig(risk=True), workload.margin_setup(workload.CORE))):
        engine = Engine(list(workload.MARKETS), config)
        if setup is not None:
            engine.apply(setup)
        engine.apply(sample.prefill)
        engine.apply_count(sample.stream)
        engine.state_hash()
    return time.perf_counter() - started


def fresh_engine(wl: workload.Workload, margin: bool) -> Engine:
    """A new engine with the workload's prefill applied (after the margin setup, with risk on)."""
    if not margin:
        engine = Engine(wl.specs)
    else:
        engine = Engine(wl.specs, EngineConfig(risk=True))
        engine.apply_count(workload.margin_setup(wl.mix))
    engine.apply_count(wl.prefill)
    return engine


def time_stream(wl: workload.Workload, batch: int, copy_events: bool, margin: bool = False) -> dict:
    """Prefill untimed, then the stream in batches; per-batch times in ns."""
    engine = fresh_engine(wl, margin)
    stream = wl.stream
    batches = [stream[i:i + batch] for i in range(0, len(stream), batch)]
    sizes = np.array([len(b) for b in batches], dtype=np.int64)
    times = np.empty(len(batches), dtype=np.int64)
    step = (lambda b: len(engine.apply(b))) if copy_events else engine.apply_count
    events = 0
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        loop_start = clock()
        for j, b in enumerate(batches):
            t0 = clock()
            n = step(b)
            times[j] = clock() - t0
            events += n
        wall_ns = clock() - loop_start
    finally:
        if gc_was_enabled:
            gc.enable()
    per_cmd = times / sizes
    return {
        "commands": int(len(stream)),
        "events": int(events),
        "events_expected": int(wl.events),
        "batches": int(len(batches)),
        "wall_s": wall_ns / 1e9,
        "commands_per_s": len(stream) / (wall_ns / 1e9),
        "events_per_s": events / (wall_ns / 1e9),
        "ns_per_command": {f"p{p:g}": float(np.percentile(per_cmd, p)) for p in PERCENTILES}
        | {"mean": float(times.sum() / sizes.sum()), "max": float(per_cmd.max())},
    }


def check_reference(wl: workload.Workload, n: int, margin: bool = False) -> dict:
    """Prefill + the first ``n`` stream commands through both engines; compare and time.
    With ``margin``, both have risk on and get the margin setup first."""
    if n == 0:
        return {"commands": 0, "checked": False}
    prefix = np.ascontiguousarray(wl.stream[:n])
    config = EngineConfig(risk=margin)
    fast, slow = Engine(wl.specs, config), ReferenceEngine(wl.specs, config)
    prefill = np.concatenate([workload.margin_setup(wl.mix), wl.prefill]) if margin else wl.prefill
    pre_fast, pre_slow = fast.apply(prefill), slow.apply(prefill)
    t0 = time.perf_counter()
    ev_fast = fast.apply(prefix)
    t1 = time.perf_counter()
    ev_slow = slow.apply(prefix)
    t2 = time.perf_counter()
    same_events = np.array_equal(pre_fast, pre_slow) and np.array_equal(ev_fast, ev_slow)
    same_hash = fast.state_hash() == slow.state_hash()
    is_fill = int(EventKind.FILL)
    same_fills = np.array_equal(ev_fast[ev_fast["kind"] == is_fill], ev_slow[ev_slow["kind"] == is_fill])
    out = {
        "commands": n,
        "checked": True,
        "events_equal": bool(same_events),
        "fills_equal": bool(same_fills),
        "hash_equal": bool(same_hash),
        "engine_s": t1 - t0,
        "reference_s": t2 - t1,
        "reference_commands_per_s": n / (t2 - t1),
        "speed_ratio": (t2 - t1) / (t1 - t0),
    }
    if not same_events:
        out["first_difference"] = first_difference(pre_fast, pre_slow, "prefill") or \
            first_difference(ev_fast, ev_slow, "stream")
        out["fields_differing"] = fields_differing(np.concatenate([pre_fast, ev_fast]),
                                                   np.concatenate([pre_slow, ev_slow]))
    return out


def fields_differing(a: np.ndarray, b: np.ndarray) -> dict:
    """For equal-length event arrays: per field, how many events differ and of which kinds."""
    if len(a) != len(b):
        return {}
    out = {}
    for name in a.dtype.names:
        bad = a[name] != b[name]
        if bad.any():
            kinds = sorted({EventKind(int(k)).name for k in np.unique(a["kind"][bad]) if k in _EVENT_KINDS})
            out[name] = {"events": int(bad.sum()), "kinds": kinds}
    return out


def first_difference(a: np.ndarray, b: np.ndarray, where: str) -> dict | None:
    """The first event at which two event arrays differ (for a bug report)."""
    m = min(len(a), len(b))
    bad = np.flatnonzero(a[:m] != b[:m])
    if len(bad):
        i = int(bad[0])
        return {"where": where, "index": i, "engine": _event_dict(a[i]), "reference": _event_dict(b[i])}
    if len(a) != len(b):
        return {"where": where, "index": min(len(a), len(b)), "engine_events": len(a), "reference_events": len(b)}
    return None


def _event_dict(e: np.void) -> dict:
    return {name: int(e[name]) for name in e.dtype.names}


def audit_margin_run(wl: workload.Workload) -> dict:
    """The margin run once, untimed, with its events copied out: events by kind, rejects by
    code, the risk state at the end, and whether ``check_invariants()`` holds."""
    engine = fresh_engine(wl, margin=True)
    kinds = np.zeros(workload.N_EVENT_KINDS, dtype=np.int64)
    rejects: dict[int, int] = {}
    for i in range(0, len(wl.stream), AUDIT_BATCH):
        ev = engine.apply(wl.stream[i:i + AUDIT_BATCH])
        kinds += np.bincount(ev["kind"], minlength=workload.N_EVENT_KINDS)[:workload.N_EVENT_KINDS]
        for code, cnt in zip(*np.unique(ev["code"][ev["kind"] == int(EventKind.REJECTED)], return_counts=True)):
            rejects[int(code)] = rejects.get(int(code), 0) + int(cnt)
    try:
        engine.check_invariants()
        invariants = "hold"
    except AssertionError as exc:
        invariants = f"BROKEN: {exc}"
    accounts = range(wl.mix.n_accounts)
    return {
        "accounts": wl.mix.n_accounts,
        "deposit_atoms_each": int(workload.margin_setup(wl.mix)["size"][0]),
        "events": int(kinds.sum()),
        "event_kinds": {k.name.lower(): int(kinds[int(k)]) for k in EventKind},
        "rejects": {Reject(c).name: cnt for c, cnt in sorted(rejects.items())},
        "insufficient_margin_share": rejects.get(int(Reject.INSUFFICIENT_MARGIN), 0) / max(len(wl.stream), 1),
        "open_positions": int(engine.ctr[C_NPOS]),
        "fees_atoms": engine.fees(),
        "min_margin_ratio": min((engine.equity(a) / engine.initial_margin(a) for a in accounts
                                 if engine.initial_margin(a) > 0), default=None),
        "invariants": invariants,
    }


def run_mix(name: str, args: argparse.Namespace) -> dict:
    margin = name == MARGIN_RUN
    mix = workload.CORE if margin else workload.MIXES[name]
    wl = workload.build(mix, args.commands, seed=args.seed)
    audit = audit_margin_run(wl) if margin else None
    runs = [time_stream(wl, args.batch, args.copy_events, margin) for _ in range(args.repeat)]
    timed = min(runs, key=lambda r: r["wall_s"])
    timed["repeats_commands_per_s"] = [r["commands_per_s"] for r in runs]
    if audit is not None:
        timed["events_expected"] = audit["events"]
    ref = check_reference(wl, args.reference_commands, margin)
    ok = timed["events"] == timed["events_expected"] and (not ref["checked"] or (ref["events_equal"] and ref["hash_equal"]))
    out = {"mix": name, "ok": bool(ok), "workload": wl.stats, "timed": timed, "reference": ref}
    if audit is not None:
        out["ok"] = bool(ok and audit["invariants"] == "hold")
        out["margin"] = audit
    return out


def environment() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "cpu": cpu, "cpus": os.cpu_count(), "threads_used": 1, "load_average_1m": _load_average()}


def _load_average() -> float | None:
    """Other work on the machine skews the figures; the table shows the 1-minute load."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def run(args: argparse.Namespace) -> dict:
    args = resolve(args)
    env = environment()
    if not args.json:
        print("loading the numba kernels (the first run on a machine compiles them: about a minute)…",
              file=sys.stderr, flush=True)
    compile_s = warm_up()
    results = [run_mix(name, args) for name in MIX_CHOICES[args.mix]]
    return {
        "benchmark": "matching",
        "seed": args.seed,
        "batch": args.batch,
        "repeat": args.repeat,
        "timed_call": "Engine.apply" if args.copy_events else "Engine.apply_count",
        "latency_method": LATENCY_METHOD,
        "compile_s": compile_s,
        "environment": env,
        "ok": all(r["ok"] for r in results),
        "mixes": {r["mix"]: r for r in results},
    }


# ---------------------------------------------------------------------------- output


def render(result: dict) -> str:
    env = result["environment"]
    lines = [
        f"afterhours matching benchmark — seed {result['seed']}, batch {result['batch']}, "
        f"{result['timed_call']}, 1 thread" + (f", fastest of {result['repeat']} runs" if result["repeat"] > 1 else ""),
        f"{env['cpu']} ({env['cpus']} CPUs, load {env['load_average_1m']} at start); "
        f"python {env['python']}, numpy {env['numpy']}, numba {env['numba']}",
        f"compile / cache load: {result['compile_s']:.2f} s (excluded)",
        "",
        f"{'mix':<11} {'commands':>10} {'resting':>13} {'Mcmd/s':>7} {'Mev/s':>6} "
        f"{'p50 ns':>7} {'p99 ns':>7} {'p99.9 ns':>8} {'reference check':>24}",
    ]
    for r in result["mixes"].values():
        t, ref, rest = r["timed"], r["reference"], r["workload"]["resting"]
        lat = t["ns_per_command"]
        lines.append(
            f"{r['mix']:<11} {t['commands']:>10,} {rest['min']:>5,}–{rest['max']:<7,} "
            f"{t['commands_per_s'] / 1e6:>7.2f} {t['events_per_s'] / 1e6:>6.2f} "
            f"{lat['p50']:>7.1f} {lat['p99']:>7.1f} {lat['p99.9']:>8.1f} {_ref_cell(ref):>24}"
        )
    lines += ["", f"latency: {result['latency_method']}."]
    for r in result["mixes"].values():
        lines += _details(r)
    lines.append("")
    lines.append("all checks passed" if result["ok"] else "CHECK FAILED (see above; --json shows the first difference)")
    return "\n".join(lines)


def _ref_cell(ref: dict) -> str:
    if not ref["checked"]:
        return "skipped"
    verdict = "same" if ref["events_equal"] and ref["hash_equal"] else "MISMATCH"
    return f"{verdict} ({ref['commands']:,}), {ref['speed_ratio']:.0f}× slower"


def _details(r: dict) -> list[str]:
    w, t, ref = r["workload"], r["timed"], r["reference"]
    share = " ".join(f"{k} {v:.1%}" for k, v in w["share"].items())
    margin = r.get("margin")
    ev = margin["event_kinds"] if margin else w["events"]
    reject_counts = margin["rejects"] if margin else w["rejects"]
    rejects = ", ".join(f"{k} {v:,} ({v / w['commands']:.2%})" for k, v in reject_counts.items()) or "none"
    stp = "" if margin else f" ({w['stp_cancels']:,} by STP)"
    lines = [
        "",
        f"{r['mix']}: {share}; generated in {w['generate_s']:.2f} s; resting mean {w['resting']['mean']:,}",
        f"  {t['events']:,} events in {t['wall_s']:.3f} s over {t['batches']} batches: {ev['fill']:,} fills, "
        f"{ev['cancelled']:,} cancels{stp}, {ev['amended']:,} amends; rejects: {rejects}",
    ]
    if margin:
        ratio = margin["min_margin_ratio"]
        lines.append(
            f"  risk on: {margin['accounts']} accounts with {margin['deposit_atoms_each'] / 1e6:,.0f} USD each; "
            f"INSUFFICIENT_MARGIN {margin['insufficient_margin_share']:.2%} of commands; at the end "
            f"{margin['open_positions']} open positions, fees {margin['fees_atoms'] / 1e6:,.2f} USD, lowest "
            f"equity / initial margin {'n/a' if ratio is None else f'{ratio:,.0f}'}; invariants {margin['invariants']}")
    if len(t["repeats_commands_per_s"]) > 1:
        runs = ", ".join(f"{x / 1e6:.2f}" for x in t["repeats_commands_per_s"])
        lines.append(f"  Mcmd/s of each run: {runs}")
    if t["events"] != t["events_expected"]:
        lines.append(f"  EVENT COUNT MISMATCH: timed {t['events']:,}, generation {t['events_expected']:,}")
    if ref["checked"]:
        lines.append(f"  reference engine: {ref['reference_commands_per_s']:,.0f} commands/s; events equal: "
                     f"{ref['events_equal']}, fills equal: {ref['fills_equal']}, state_hash equal: {ref['hash_equal']}")
        if "first_difference" in ref:
            lines.append(f"  first difference: {ref['first_difference']}")
            lines.append(f"  differing fields: {ref['fields_differing']}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.matching", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return report(parser.parse_args(argv))


def report(args: argparse.Namespace) -> int:
    """Run and print (table or JSON); the exit status says whether every check passed."""
    result = run(args)
    print(json.dumps(result) if args.json else render(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
