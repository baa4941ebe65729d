"""The oracle benchmark: aggregation and the oracle service, per tick, for many markets.

Run ``python -m benchmarks.oracle`` (``--quick`` for a short run, ``--json`` for one JSON
object, ``--help`` for the options). Target (issue 4): aggregating 500 markets × 5 sources
once a second takes under 5% of one core.

Method
------
Both parts run on virtual time: tick k is the instant ``START + k s`` (Wednesday 2026-05-13
10:00 New York, regular hours), one tick per second. The first ``--warmup`` ticks (default
60, the breaker window, so every market's ``AggState.recent`` is full) run untimed; then
``--ticks`` ticks are timed. Wall time (``perf_counter_ns``) and this thread's CPU time
(``thread_time_ns``) are both taken; a core share is time per tick / 1 s. The garbage
collector stays on: the garbage is the code's own and collecting it is part of its cost.

1. Aggregation. Each tick the quotes of every market are built (untimed), then the timed
   region is exactly ``aggregate(quotes, REGULAR, now, state)`` for every market in turn,
   each market's ``AggState`` carried to the next tick (so the clamp and the breaker window
   do their real work).
2. Service. ``OracleService.run`` on a ``VirtualClock`` with one ``SimulatedSource``
   (``oracle/sources/simulated.py``) polled each tick and a plain synchronous ``submit``.
   The source is wrapped so that its ``poll`` (the upstream's stand-in) is timed apart; the
   service's own cost is from the moment ``poll`` returns to the tick's last ``submit``:
   routing every quote (``on_quote``), ``step`` (calendar, coverage, hints, the silence
   rule, ``aggregate``, conversion to 1e-9 USD) and the submits. The virtual clock's own
   event-loop rounds fall outside it.
3. The engine's per-tick pricing for the same number of markets, from
   ``benchmarks.risk.bench_pricing`` (its module docstring, part 3, has the method): every
   market external (mark and premium sample), then every market dark (closed-hours pricing
   on: the internal step from both impact prices, the re-anchor check, the band clamp), each
   per Tick and per full round (an ``OracleUpdate`` per market, then the Tick); fastest of 3.

Workload (seeded: ``random.Random(seed)``; equal options give equal quotes)
--------------------------------------------------------------------------
Markets ``M0000``… on XNYS (extended hours), start prices uniform in $2–$2,000. Sources
cycle through five styles (a sixth source is ``pyth1``, and so on):

  ``pyth``        expo −5, conf 20–300 ppm, no book, up to 1 s behind
  ``chainlink``   expo −18, no conf, a book 100–400 ppm wide, session hints, up to 1 s behind
  ``chainlink8``  expo −18, neither conf nor book (votes with the 2 bp default), regular
                  hours only, hints, up to 2 s behind
  ``venue``       expo −8, conf 50–800 ppm and a 50–300 ppm book, weight 2, current
  ``derived``     expo −6, conf 100–1,500 ppm (an FX-converted quote), up to 3 s behind

Part 1 builds its quotes itself: a mid price per market moving ±116 ppm a second (uniform,
about 0.4% an hour); each source adds ±50 ppm of its own; ranges are drawn per quote.
A source starts a stale spell with probability 0.1% per tick and then resends its last quote
(old timestamp and all, as Hermes does) for 10–60 ticks, about 3% of quotes; 0.5% of quotes
are outliers (±6–20%), 0.05% have price 0 (Chainlink's overnight ``mid = 0``). Every market
is in ``REGULAR``: the tightest staleness limit, quorum 2, and no early return (a closed
session returns at once, so this is the expensive case).

Part 2 uses the simulator's own paths (``SimMarket`` volatility 4,000 ppm an hour, source
noise 50 ppm, each style's conf and book at the middle of its range) with seeded faults over
the run: per market, with probability 5% a ``Stale`` spell of 10–60 s on one source, 3% an
``Outlier`` of ±6–20% for 1–3 s, 1% a ``Silent`` spell of 30–90 s.

Known limitations
-----------------
* A shared or busy machine inflates wall time (p99 and max show it); compare the CPU column.
* ``SimulatedSource.poll`` recomputes a market's hidden path once per source, about 40
  blake2b hashes a quote; at 500 × 5 it costs far more than the service itself. It stands
  in for network adapters, so it is reported beside the service, not in it.
* One process, one thread, no I/O: a real node adds the sources' network and decoding and
  the engine's side of each ``OracleUpdate``.
* ``--quick`` warms up 10 ticks, not 60, so the breaker window is not yet full and
  aggregation reads a little lower than in steady state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from oracle.aggregate import AggFlag, AggState, aggregate
from oracle.calendar import MarketCalendar, ns_from_datetime, session_at
from oracle.clock import VirtualClock
from oracle.quote import SourceQuote
from oracle.service import FeedSource, MarketFeed, OracleService
from oracle.session import NS_PER_SECOND, Session
from oracle.sources.scenario import Outlier, Scenario, Silent, SimMarket, SimSource, Stale
from oracle.sources.simulated import SimulatedFeed, SimulatedSource
from oracle.update import OracleUpdate, ServiceFlag

DEFAULT_MARKETS = 500
DEFAULT_SOURCES = 5
DEFAULT_TICKS = 120
QUICK_TICKS = 20
DEFAULT_WARMUP = 60  # the breaker window at one tick a second
QUICK_WARMUP = 10
TARGET_CORE_SHARE = 0.05  # issue 4: aggregation under 5% of one core at one tick a second
INTERVAL_NS = NS_PER_SECOND
START_NS = ns_from_datetime(datetime(2026, 5, 13, 10, 0, tzinfo=ZoneInfo("America/New_York")))
XNYS = MarketCalendar("XNYS")
PPM = 1_000_000
MS = 1_000_000
ENGINE_PRICING_TICKS = 200
ENGINE_PRICING_REPEAT = 3

# part 1's fault rates, per quote and tick (see the module docstring)
STALE_START = 0.001
STALE_TICKS = (10, 60)
OUTLIER_P = 0.005
OUTLIER_PPM = (60_000, 200_000)
ZERO_P = 0.0005
MID_STEP_PPM = 116
SOURCE_NOISE_PPM = 50


class Style(NamedTuple):
    """One kind of upstream; ranges are ppm of the price, drawn per quote in part 1."""

    name: str
    expo: int
    conf_ppm: tuple[int, int] | None
    spread_ppm: tuple[int, int] | None
    weight: int
    max_lag_s: int
    regular_only: bool
    hints: bool


STYLES = (
    Style("pyth", -5, (20, 300), None, 1, 1, False, False),
    Style("chainlink", -18, None, (100, 400), 1, 1, False, True),
    Style("chainlink8", -18, None, None, 1, 2, True, True),
    Style("venue", -8, (50, 800), (50, 300), 2, 0, False, False),
    Style("derived", -6, (100, 1_500), None, 1, 3, False, False),
)


def source_styles(n: int) -> list[Style]:
    """``n`` sources cycling through ``STYLES``; the second round is ``pyth1``, …"""
    out = []
    for i in range(n):
        style, round_ = STYLES[i % len(STYLES)], i // len(STYLES)
        out.append(style._replace(name=f"{style.name}{round_}") if round_ else style)
    return out


def symbols(n: int) -> list[str]:
    return [f"M{i:04d}" for i in range(n)]


def _mantissa(value_e9: int, expo: int) -> int:
    """1e-9 USD → a mantissa at ``expo``, rounded down."""
    shift = expo + 9
    return value_e9 // 10**shift if shift >= 0 else value_e9 * 10**-shift


# ---------------------------------------------------------------------------- part 1


class QuoteStream:
    """Part 1's quotes, tick by tick: ``quotes_at(now_ns)`` → one list per market."""

    def __init__(self, markets: int, sources: int, seed: int):
        self.rng = random.Random(seed)
        self.symbols = symbols(markets)
        self.styles = source_styles(sources)
        self.mid_e9 = [self.rng.randint(2_000, 2_000_000) * 10**6 for _ in range(markets)]
        self.stale_left = [[0] * sources for _ in range(markets)]
        self.last: list[list[SourceQuote | None]] = [[None] * sources for _ in range(markets)]

    def quotes_at(self, now_ns: int) -> list[list[SourceQuote]]:
        rng, out = self.rng, []
        for i, symbol in enumerate(self.symbols):
            self.mid_e9[i] += self.mid_e9[i] * rng.randint(-MID_STEP_PPM, MID_STEP_PPM) // PPM
            quotes = []
            for j, style in enumerate(self.styles):
                last, left = self.last[i][j], self.stale_left[i][j]
                if last is not None and (left > 0 or rng.random() < STALE_START):
                    self.stale_left[i][j] = (left or rng.randint(*STALE_TICKS)) - 1  # a spell starts or goes on
                    quotes.append(last)  # frozen: the old quote again, old timestamp and all
                    continue
                last = self.last[i][j] = self._fresh(symbol, self.mid_e9[i], style, now_ns)
                quotes.append(last)
            out.append(quotes)
        return out

    def _fresh(self, symbol: str, mid_e9: int, style: Style, now_ns: int) -> SourceQuote:
        rng = self.rng
        ts_ns = now_ns - rng.randint(0, style.max_lag_s) * NS_PER_SECOND
        received_ns = min(now_ns, ts_ns + rng.randint(5, 300) * MS)
        price_e9 = mid_e9 + mid_e9 * rng.randint(-SOURCE_NOISE_PPM, SOURCE_NOISE_PPM) // PPM
        draw = rng.random()
        if draw < OUTLIER_P:
            price_e9 = price_e9 * (PPM + rng.choice((-1, 1)) * rng.randint(*OUTLIER_PPM)) // PPM
        price = 0 if OUTLIER_P <= draw < OUTLIER_P + ZERO_P else _mantissa(price_e9, style.expo)
        conf = bid = ask = None
        if style.conf_ppm is not None and price:
            conf = price * rng.randint(*style.conf_ppm) // PPM + 1
        if style.spread_ppm is not None and price:
            half = price * rng.randint(*style.spread_ppm) // (2 * PPM) + 1
            bid, ask = price - half, price + half
        hint = Session.REGULAR if style.hints else None
        return SourceQuote(style.name, symbol, price, style.expo, ts_ns, received_ns, conf=conf, bid=bid, ask=ask,
                           session_hint=hint, weight=style.weight)


def bench_aggregation(markets: int, sources: int, ticks: int, warmup: int, seed: int) -> dict:
    """Part 1: ``aggregate`` for every market at every tick; per-tick wall and CPU ns."""
    stream = QuoteStream(markets, sources, seed)
    states = [AggState()] * markets
    results: list = [None] * markets
    wall, cpu, flags, generate_ns = [], [], Counter(), 0
    published = 0
    for k in range(warmup + ticks):
        now = START_NS + k * INTERVAL_NS
        g0 = time.perf_counter_ns()
        per_market = stream.quotes_at(now)
        generate_ns += time.perf_counter_ns() - g0
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        for i, quotes in enumerate(per_market):
            results[i], states[i] = aggregate(quotes, Session.REGULAR, now, states[i])
        t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
        if k >= warmup:
            wall.append(t1 - t0)
            cpu.append(c1 - c0)
            published += sum(r.price_e18 is not None for r in results)
            _tally(flags, (int(r.flags) for r in results))
    updates = markets * ticks
    out = _tick_figures(wall, cpu, markets)
    out |= {"calls": updates, "generate_s": generate_ns / 1e9, "published_share": published / updates,
            "flag_shares": _shares(flags, updates), "target_core_share": TARGET_CORE_SHARE,
            "met": out["core_share"] < TARGET_CORE_SHARE}
    return out


# ---------------------------------------------------------------------------- part 2


def service_scenario(markets: int, sources: int, ticks: int, seed: int) -> Scenario:
    """Part 2's simulator: the styles as ``SimSource``s, seeded faults over the run."""
    rng = random.Random(seed)
    sims = tuple(
        SimSource(s.name, expo=s.expo, conf_ppm=None if s.conf_ppm is None else sum(s.conf_ppm) // 2,
                  spread_ppm=None if s.spread_ppm is None else sum(s.spread_ppm) // 2, noise_ppm=SOURCE_NOISE_PPM,
                  weight=s.weight, sessions=frozenset({Session.REGULAR}) if s.regular_only else None, hints=s.hints)
        for s in source_styles(sources)
    )
    sim_markets = tuple(SimMarket(sym, XNYS, rng.randint(2_000, 2_000_000) * 10**6) for sym in symbols(markets))
    faults = []
    for m in sim_markets:
        if rng.random() < 0.05:
            faults.append(Stale(**_fault_window(rng, m.symbol, sims, ticks, (10, 60))))
        if rng.random() < 0.03:
            ppm = rng.choice((-1, 1)) * rng.randint(*OUTLIER_PPM)
            faults.append(Outlier(**_fault_window(rng, m.symbol, sims, ticks, (1, 3)), ppm=ppm))
        if rng.random() < 0.01:
            faults.append(Silent(**_fault_window(rng, m.symbol, sims, ticks, (30, 90))))
    return Scenario(seed=seed, markets=sim_markets, sources=sims, faults=tuple(faults), name="oracle-bench")


def _fault_window(rng: random.Random, symbol: str, sims, ticks: int, length_s: tuple[int, int]) -> dict:
    """A fault's fields: one market, one source, starting at a whole second of the run."""
    start_ns = START_NS + rng.randrange(max(ticks, 1)) * NS_PER_SECOND
    return {"start_ns": start_ns, "end_ns": start_ns + rng.randint(*length_s) * NS_PER_SECOND,
            "symbols": (symbol,), "sources": (rng.choice(sims).name,)}


class TickTimer:
    """Wraps the simulated source and is the service's ``submit``: times the source's
    ``poll`` and, apart from it, the service's work from ``poll``'s return to the tick's last
    update. A tick is closed when the next one polls (or by ``close``)."""

    def __init__(self, source: SimulatedSource, markets: int, warmup: int):
        self.name = source.name
        self.source, self.markets, self.warmup = source, markets, warmup
        self.ticks = 0
        self.updates: list[OracleUpdate] = []
        self.started = self.ended = None
        self.wall, self.cpu, self.poll_wall, self.poll_cpu, self.quotes = [], [], [], [], []
        self.flags, self.published, self.complete = Counter(), 0, True

    def poll(self, now_ns: int) -> list[SourceQuote]:
        self.close()
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        quotes = self.source.poll(now_ns)
        t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
        if self.ticks >= self.warmup:
            self.poll_wall.append(t1 - t0)
            self.poll_cpu.append(c1 - c0)
            self.quotes.append(len(quotes))
        self.started = (t1, c1)
        return quotes

    def submit(self, update: OracleUpdate) -> None:
        self.updates.append(update)
        if len(self.updates) == self.markets:
            self.ended = (time.perf_counter_ns(), time.thread_time_ns())

    def close(self) -> None:
        if self.started is None:
            return
        if self.ended is None:
            self.complete = False
        elif self.ticks >= self.warmup:
            self.wall.append(self.ended[0] - self.started[0])
            self.cpu.append(self.ended[1] - self.started[1])
            self.published += sum(u.price_e9 is not None for u in self.updates)
            _tally(self.flags, (u.flags for u in self.updates))
        self.ticks += 1
        self.updates, self.started, self.ended = [], None, None


def bench_service(markets: int, sources: int, ticks: int, warmup: int, seed: int) -> dict:
    """Part 2: ``OracleService.run`` for ``warmup + ticks`` ticks on a virtual clock."""
    t0 = time.perf_counter()
    session_at(START_NS, XNYS)  # builds and caches the XNYS schedule (exchange_calendars)
    scenario = service_scenario(markets, sources, warmup + ticks, seed)
    styles = {s.name: s for s in scenario.sources}
    feeds = [MarketFeed(i, m.symbol, XNYS, tuple(FeedSource(n, s.quotes_in()) for n, s in styles.items()))
             for i, m in enumerate(scenario.markets)]
    timer = TickTimer(SimulatedSource(SimulatedFeed(scenario)), markets, warmup)
    setup_s = time.perf_counter() - t0
    total = warmup + ticks

    async def drive() -> OracleService:
        clock = VirtualClock(START_NS - INTERVAL_NS // 2)
        svc = OracleService(feeds, timer.submit, poll_sources=[timer], clock=clock, sleep=clock.sleep,
                            interval_ns=INTERVAL_NS)
        task = asyncio.create_task(svc.run(max_ticks=total))
        await clock.advance_to(START_NS + (total - 1) * INTERVAL_NS + INTERVAL_NS // 2)
        await task
        return svc

    t0 = time.perf_counter()
    svc = asyncio.run(drive())
    run_s = time.perf_counter() - t0
    timer.close()
    updates = markets * ticks
    ok = timer.complete and timer.ticks == total and len(timer.wall) == ticks and svc.skipped_ticks == 0
    out = _tick_figures(timer.wall, timer.cpu, markets)
    poll = _tick_figures(timer.poll_wall, timer.poll_cpu, markets)
    out |= {
        "ok": bool(ok), "setup_s": setup_s, "run_s": run_s, "updates": updates, "skipped_ticks": svc.skipped_ticks,
        "quotes_per_tick": sum(timer.quotes) / max(len(timer.quotes), 1), "faults": len(scenario.faults),
        "published_share": timer.published / updates, "flag_shares": _shares(timer.flags, updates),
        "simulated_poll": poll,
        "with_simulated_poll_core_share": out["core_share"] + poll["core_share"],
    }
    return out


# ---------------------------------------------------------------------------- figures


def _tally(counter: Counter, flag_values) -> None:
    for value in flag_values:
        if value:
            counter[value] += 1


def _shares(counter: Counter, updates: int) -> dict:
    """Share of updates carrying each flag, by flag name, in bit order."""
    out = {}
    for flag in [*AggFlag, *ServiceFlag]:
        if flag.value:
            hits = sum(n for value, n in counter.items() if value & flag.value)
            if hits:
                out[flag.name] = hits / updates
    return out


def _percentile(sorted_values: list[int], p: float) -> int:
    """Nearest rank (the smallest value with at least p% of values at or below it)."""
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def _tick_figures(wall_ns: list[int], cpu_ns: list[int], markets: int) -> dict:
    ordered = sorted(wall_ns)
    mean_ns = sum(wall_ns) / len(wall_ns)
    cpu_mean_ns = sum(cpu_ns) / len(cpu_ns)
    return {
        "ticks": len(wall_ns),
        "ms_per_tick": {"mean": mean_ns / MS, "p50": _percentile(ordered, 50) / MS,
                        "p99": _percentile(ordered, 99) / MS, "max": ordered[-1] / MS},
        "cpu_ms_per_tick": cpu_mean_ns / MS,
        "us_per_market": mean_ns / markets / 1e3,
        "cpu_us_per_market": cpu_mean_ns / markets / 1e3,
        "core_share": mean_ns / INTERVAL_NS,
        "cpu_core_share": cpu_mean_ns / INTERVAL_NS,
    }


def environment() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {"python": platform.python_version(), "cpu": cpu, "cpus": os.cpu_count(), "threads_used": 1,
            "load_average_1m": load}


# ---------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--markets", type=int, default=DEFAULT_MARKETS, help=f"markets (default {DEFAULT_MARKETS})")
    parser.add_argument("--sources", type=int, default=DEFAULT_SOURCES,
                        help=f"sources per market, cycling through the styles (default {DEFAULT_SOURCES})")
    parser.add_argument("--ticks", type=int, default=None,
                        help=f"timed ticks of each part (default {DEFAULT_TICKS}; {QUICK_TICKS} with --quick)")
    parser.add_argument("--warmup", type=int, default=None,
                        help=f"untimed ticks first (default {DEFAULT_WARMUP}, the breaker window; "
                             f"{QUICK_WARMUP} with --quick)")
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.add_argument("--quick", action="store_true", help=f"short run: {QUICK_TICKS} ticks after {QUICK_WARMUP}")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    if args.ticks is None:
        args.ticks = QUICK_TICKS if args.quick else DEFAULT_TICKS
    if args.warmup is None:
        args.warmup = QUICK_WARMUP if args.quick else DEFAULT_WARMUP
    if args.markets < 1 or args.sources < 1 or args.ticks < 1 or args.warmup < 0:
        raise SystemExit("--markets, --sources and --ticks must be >= 1, --warmup >= 0")
    return args


def run(args: argparse.Namespace) -> dict:
    args = resolve(args)
    env = environment()
    shape = (args.markets, args.sources, args.ticks, args.warmup, args.seed)
    service = bench_service(*shape)
    pricing = engine_pricing(args.markets, args.seed)
    return {
        "benchmark": "oracle", "markets": args.markets, "sources": args.sources, "ticks": args.ticks,
        "warmup_ticks": args.warmup, "seed": args.seed, "interval_s": INTERVAL_NS / NS_PER_SECOND,
        "environment": env, "aggregation": bench_aggregation(*shape), "service": service,
        "engine_pricing": pricing, "ok": service["ok"] and pricing["external"]["ok"] and pricing["dark"]["ok"],
    }


def engine_pricing(n_markets: int, seed: int) -> dict:
    """Part 3: ``benchmarks.risk.bench_pricing``, external and dark (imported here: numba)."""
    from benchmarks.risk import bench_pricing, warm_up

    compile_s = warm_up()
    runs = [bench_pricing(n_markets, ENGINE_PRICING_TICKS, ENGINE_PRICING_REPEAT, seed, dark=dark)
            for dark in (False, True)]
    return {"compile_s": compile_s, "external": runs[0], "dark": runs[1]}


def _engine_lines(p: dict) -> list[str]:
    out = [f"3. engine pricing per tick, {p['external']['markets']} markets with a 10-level book a side "
           f"(benchmarks.risk part 3; kernels loaded in {p['compile_s']:.1f} s, excluded)"]
    for name in ("external", "dark"):
        x = p[name]
        out.append(f"  {name:<8} {x['us_per_tick']:>8.1f} µs per Tick; with an OracleUpdate per market "
                   f"{x['oracle_round_us']:>8.1f} µs a round = {x['core_share_at_1_tick_per_s']:.3%} of a core"
                   f"{'' if x['ok'] else '  CHECK FAILED: ' + '; '.join(x['problems'])}")
    return out


def _row(name: str, r: dict) -> str:
    t = r["ms_per_tick"]
    return (f"  {name:<30} {r['us_per_market']:>8.1f} {t['mean']:>8.2f} {t['p50']:>7.2f} {t['p99']:>7.2f} "
            f"{t['max']:>7.2f} {r['cpu_ms_per_tick']:>8.2f} {r['core_share']:>7.2%} {r['cpu_core_share']:>7.2%}")


def _flag_line(r: dict) -> str:
    flags = ", ".join(f"{name} {share:.2%}" for name, share in r["flag_shares"].items()) or "none"
    return f"  published {r['published_share']:.2%} of updates; flags: {flags}"


def render(r: dict) -> str:
    env, agg, svc = r["environment"], r["aggregation"], r["service"]
    header = (f"  {'':<30} {'us/mkt':>8} {'ms/tick':>8} {'p50':>7} {'p99':>7} {'max':>7} {'CPU ms':>8} "
              f"{'core':>7} {'CPU core':>8}")
    verdict = "met" if agg["met"] else "MISSED"
    lines = [
        (f"afterhours oracle benchmark — {r['markets']} markets × {r['sources']} sources, {r['ticks']} timed "
         f"ticks after {r['warmup_ticks']} untimed, one tick per {r['interval_s']:g} s of virtual time, "
         f"seed {r['seed']}, 1 thread"),
        f"{env['cpu']} ({env['cpus']} CPUs, load {env['load_average_1m']} at start); python {env['python']}",
        ("wall time per tick (mean, p50, p99, max), CPU time of this thread beside it; "
         "core = share of one core at one tick a second"),
        "",
        "1. aggregation: aggregate() for every market each tick, all in REGULAR (quotes built untimed)",
        header,
        _row("aggregate, all markets", agg),
        _flag_line(agg),
        (f"  target: under {agg['target_core_share']:.0%} of one core — {verdict} ({agg['core_share']:.2%} wall, "
         f"{agg['cpu_core_share']:.2%} CPU); quotes generated in {agg['generate_s']:.1f} s (excluded)"),
        "",
        "2. service: OracleService.run on a virtual clock, one SimulatedSource polled each tick",
        header,
        _row("service (route + step + submit)", svc),
        _row("simulated source poll (apart)", svc["simulated_poll"]),
        _flag_line(svc),
        (f"  {svc['quotes_per_tick']:,.0f} quotes a tick, {svc['faults']} scripted faults; service and poll "
         f"together: {svc['with_simulated_poll_core_share']:.2%} of a core; setup {svc['setup_s']:.1f} s, "
         f"run {svc['run_s']:.1f} s"),
        "",
        *_engine_lines(r["engine_pricing"]),
        "",
        "all checks passed" if r["ok"] else "CHECK FAILED: the service skipped ticks or published an incomplete tick",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.oracle", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result) if args.json else render(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
