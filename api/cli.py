"""The ``afterhours`` command line.

Subcommands
-----------
* ``afterhours bench [options]`` — the matching benchmark (``python -m benchmarks.matching``),
  with the same options; ``afterhours bench --help`` lists them.
* ``afterhours demo`` — the benchmark's short run (``--quick``: 100,000 commands per mix,
  10,000 checked against the reference engine) and its table. ``make run`` calls this until
  the node exists.

The exit status is the benchmark's: 0 when every check passed, 1 otherwise.
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks import matching

    args = build_parser().parse_args(argv)
    if args.command == "demo":
        bench = argparse.ArgumentParser()
        matching.add_arguments(bench)
        args = bench.parse_args(["--quick"] + (["--json"] if args.json else []))
    return matching.report(args)


if __name__ == "__main__":
    sys.exit(main())
