"""The ``afterhours`` command line.

Subcommands
-----------
* ``afterhours node [--config FILE] [--host H] [--port P] [--data-dir DIR] [--no-bots] …`` —
  run the exchange node (``api.node``) until SIGINT or SIGTERM; ``make run`` calls this.
  With no file and no flags it uses the defaults of ``api.config.NodeConfig``; a TOML file
  overrides any of them, and flags override the file. ``--print-config`` prints the
  effective configuration as TOML and exits.
* ``afterhours bench [options]`` — the matching benchmark (``python -m benchmarks.matching``),
  with the same options; ``afterhours bench --help`` lists them.
* ``afterhours demo`` — the benchmark's short run (``--quick``: 100,000 commands per mix,
  10,000 checked against the reference engine) and its table.
* ``afterhours replay DIR [--events FROM:TO --out FILE] [--from-snapshot] [--json]`` —
  replay a journal directory read-only (``engine.journal.audit``): the final sequence
  number, the state hash, commands and events by kind; ``--events`` writes the events of
  commands FROM..TO (inclusive) to FILE as JSON lines.

``node`` exits 0 after a clean stop, 2 for a bad configuration, 1 when it cannot start.
The exit status of ``bench`` and ``demo`` is the benchmark's: 0 when every check passed,
1 otherwise. ``replay`` exits 0, or 1 with the journal error on standard error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def build_parser() -> argparse.ArgumentParser:
    from benchmarks import matching

    parser = argparse.ArgumentParser(prog="afterhours", description="afterhours: a perpetual-futures exchange node.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench = sub.add_parser("bench", help="run the matching benchmark (see 'afterhours bench --help')",
                           description=matching.__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    matching.add_arguments(bench)
    demo = sub.add_parser("demo", help="short matching benchmark run with its table (what 'make run' does)",
                          description="Run the matching benchmark's short demo (100,000 commands per mix) "
                                      "and print its table.")
    demo.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    add_replay_parser(sub)
    add_node_parser(sub)
    return parser


def add_node_parser(sub) -> None:
    node = sub.add_parser("node", help="run the exchange node (what 'make run' does)",
                          description="Run an afterhours node: the engine behind its journal, the simulated "
                                      "oracle with real market calendars, the websocket/REST gateway, a demo "
                                      "account and demo bots. Needs no network and no config file. Settings "
                                      "come from the defaults, then --config FILE (TOML, keys as in "
                                      "--print-config), then these flags. Stop with Ctrl-C or SIGTERM.")
    node.add_argument("--config", metavar="FILE", help="a TOML file overriding any default (see --print-config)")
    node.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    node.add_argument("--port", type=int, help="port to listen on; 0 picks a free one (default 8420)")
    node.add_argument("--data-dir", metavar="DIR",
                      help="journal, snapshots, nonces and local keys; a restart resumes from it "
                           "(default ./afterhours-data)")
    node.add_argument("--network", help="network name covered by every signature (default local)")
    node.add_argument("--tick-interval", type=float, metavar="SECONDS",
                      help="the sequencer's clock Tick interval (default 1.0)")
    node.add_argument("--snapshot-interval", type=float, metavar="SECONDS",
                      help="seconds between engine snapshots (default 300)")
    node.add_argument("--time-offset", type=float, metavar="SECONDS",
                      help="shift the node's clock, e.g. into a weekend to see internal pricing (default 0)")
    node.add_argument("--no-bots", action="store_true", help="do not start the demo market maker and taker")
    node.add_argument("--no-oracle", action="store_true", help="do not start the oracle service")
    node.add_argument("--print-config", action="store_true", help="print the effective configuration as TOML and exit")
    node.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                      help="logging level on standard error (default WARNING)")


def run_node(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from api.config import ConfigError, load_config, to_toml
    from api.node import Node

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, host=args.host, port=args.port, data_dir=args.data_dir,
                             network=args.network, tick_interval_s=args.tick_interval,
                             snapshot_interval_s=args.snapshot_interval, time_offset_s=args.time_offset,
                             bots=False if args.no_bots else None, oracle=False if args.no_oracle else None)
    except ConfigError as err:
        print(f"afterhours node: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        sys.stdout.write(to_toml(config))
        return 0

    async def serve() -> int:
        node = Node(config, out=lambda text: print(text, flush=True))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await node.start()
        except Exception as err:  # noqa: BLE001 - report why the node could not start, then clean up
            print(f"afterhours node: cannot start: {err}", file=sys.stderr)
            await node.stop()
            return 1
        await stop.wait()
        await node.stop()
        return 0

    return asyncio.run(serve())


def add_replay_parser(sub) -> None:
    replay = sub.add_parser("replay", help="replay a journal directory and summarise it (read-only)",
                            description="Replay a journal directory without changing it; print the final "
                                        "sequence number, the state hash and commands/events by kind.")
    replay.add_argument("directory", help="the journal directory (holds journal.json and seg-*.ahj)")
    replay.add_argument("--events", metavar="FROM:TO", type=_seq_range,
                        help="export the events of the commands with sequence numbers FROM..TO, inclusive "
                             "(either end may be omitted: '100:', ':500')")
    replay.add_argument("--out", metavar="FILE", help="the JSON-lines file --events writes (required with it)")
    replay.add_argument("--from-snapshot", action="store_true",
                        help="start from the newest usable snapshot instead of the journal's beginning")
    replay.add_argument("--json", action="store_true", help="print one JSON object instead of the text summary")


def _seq_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    try:
        bounds = (int(lo) if lo else 1, int(hi) if hi else (1 << 63) - 1)
    except ValueError:
        bounds = None
    if not sep or bounds is None or bounds[0] < 1 or bounds[0] > bounds[1]:
        raise argparse.ArgumentTypeError(f"expected FROM:TO with 1 <= FROM <= TO, got {text!r}")
    return bounds


def run_replay(args: argparse.Namespace) -> int:
    import contextlib
    import json

    import msgspec

    from engine.journal import JournalError, replay_directory

    if args.events is not None and not args.out:
        print("afterhours replay: --events needs --out FILE", file=sys.stderr)
        return 2
    encode = msgspec.json.Encoder().encode
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(args.out, "wb")) if args.events is not None else None

        def write(lines: list[dict]) -> None:
            out.write(b"".join(encode(line) + b"\n" for line in lines))

        try:
            report = replay_directory(args.directory, use_snapshots=args.from_snapshot, event_range=args.events,
                                      on_events=write if out else None)
        except JournalError as err:
            print(f"afterhours replay: {err}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(msgspec.to_builtins(report), sort_keys=True))
        return 0
    print(f"journal         {report.directory}")
    print(f"last sequence   {report.last_seq}")
    print(f"state hash      {report.state_hash}")
    start = f"snapshot at {report.snapshot_seq}" if report.snapshot_seq else "an empty engine"
    print(f"replayed        {report.commands} commands ({report.first_seq}..{report.last_seq}) from {start}; "
          f"{report.hashes_checked} recorded state hashes checked")
    print(f"segments        {report.segments} (journal starts at {report.journal_first_seq})"
          + (f"; torn tail of {report.torn_bytes} bytes ignored" if report.torn_bytes else ""))
    for name, reason in report.refused_snapshots:
        print(f"refused         {name}: {reason}")
    print("commands        " + ", ".join(f"{k} {v}" for k, v in report.commands_by_kind.items()))
    print("events          " + ", ".join(f"{k} {v}" for k, v in report.events_by_kind.items()))
    if out is not None:
        print(f"exported        {report.events_exported} events to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks import matching

    args = build_parser().parse_args(argv)
    if args.command == "replay":
        return run_replay(args)
    if args.command == "node":
        return run_node(args)
    if args.command == "demo":
        bench = argparse.ArgumentParser()
        matching.add_arguments(bench)
        args = bench.parse_args(["--quick"] + (["--json"] if args.json else []))
    return matching.report(args)


if __name__ == "__main__":
    sys.exit(main())
