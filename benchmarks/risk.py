"""The risk benchmark: the hourly funding settlement, the liquidation scan over every account,
and the per-tick pricing of many markets, on engines with ``EngineConfig(risk=True)``.

Run ``python -m benchmarks.risk`` (``--quick`` for a short run, ``--json`` for one JSON
object, ``--help`` for the options). Targets stated by the project: the settlement of 1M
accounts under 10 ms; the liquidation scan of 1M accounts under 10 ms. The matching benchmark's ``core-margin`` run measures the pre-trade margin
check on the command path (``python -m benchmarks.matching --mix core-margin``).

Method
------
Everything runs on one thread. The numba kernels are compiled (or loaded from numba's
cache) first, on small engines, and that time is reported apart as ``compile_s``. Each
figure is the fastest of ``--repeat`` passes, each on a fresh copy of the state.

1. Funding settlement. For each ``--accounts`` N an engine with N accounts and four markets
   (``SETTLE_MARKETS``; oracle prices 200, 120, 450 and 35 USD, given by ``OracleUpdate``
   one second after an hour boundary, which also starts the funding clock). The positions
   are written straight into the arrays, consistently: accounts ``2j`` and ``2j+1`` hold
   equal and opposite positions (1–2,000 lots) at a common entry price within ±2% of the
   oracle, in ``--positions-per-account`` of the four markets (pair ``j`` in markets
   ``j, j+1, …`` mod 4; which of the two is long alternates), so long lots equal short lots
   per market (``mkt["oi"]``) and the costs (``size·price·atl``) sum to zero; collateral is
   10–30% of the account's notional at the oracle (so equity stays above maintenance
   margin: nobody is liquidatable), all of it counted as deposited; ``npos``
   and ``ctr[C_NPOS]`` count the positions. ``check_invariants()`` runs on this state and
   after a settlement for N up to ``--invariants-up-to`` (its time is reported); cheap
   numpy checks of the same equations run at every N.

   Then one Tick 10 s before the hour, as in a running node, evaluates every account and
   certifies it (``engine.certificates``). The state (``acc``, ``pos``, ``mkt``, ``ctr``) is
   saved; before each pass it is copied back in place. An untimed pass first grows the engine's event buffer. Then three timed
   passes of ``repeat`` each:

   * ``Tick``: one ``Tick`` at the hour boundary through ``Engine.apply_count`` — the
     markets' mark and premium sample, then ``engine.settlement.settle_funding``: one
     FUNDING event per position and one FUNDING_RATE per market, written into the engine's
     buffer, not copied out; then the liquidation scan, which skips every account its
     certificate (lowered by what it paid) still proves safe;
   * ``apply``: the same through ``Engine.apply`` (every event copied out to a new array);
     ``copy-out`` is ``apply − Tick``;
   * ``kernel``: ``settle_funding`` called directly, into a preallocated buffer.

   Events/s is the ``Tick`` pass's events over its time. ``read floor`` is a numba loop that
   only reads every position's size through the same ``[account, market]`` table: no pass
   over the positions in this layout can be faster. ``write floor`` is a numba loop that only
   writes one event record (kind, account, amount) per position into the same buffer: no
   settlement that reports every position in this event record can be faster. The kernel's
   time is about the sum of the two. The last ``apply`` pass is checked: one
   FUNDING event per position, the credits plus the remainders paid to the insurance fund
   sum to zero, total collateral is unchanged.
2. Liquidation scan, on the state of part 1 before settlement, each figure a Tick 10 s
   before the hour through ``Engine.apply_count`` (its other work, four marks and no
   settlement, is negligible):

   * ``cold``: no account has a certificate, so the scan evaluates every account (equity and
     MM at the mark) and certifies it: the cost after ``Engine.forget_certificates``;
   * ``Tick``: the Tick after it, every account certified and the marks unchanged: the
     steady state, and the figure held against the target;
   * ``1% move``/``2% move``: every oracle that far down (four updates, each scanning the
     holders of its market), then the Tick: five scans; ``ev`` counts the accounts whose
     certificate no longer sufficed and which were evaluated again.

   ``exact`` is ``margin_scan`` (below): ``engine.risk.equity_atoms`` and
   ``engine.risk.total_mm`` of every account with a position, no certificates; its sums are
   checked against ``Engine.equity`` / ``Engine.maintenance_margin`` on the first 2,000
   accounts. ``equity only`` is the same loop without ``total_mm``. Checked: the cold scan
   certified every holder and liquidated nobody; the warm one emitted no event.
3. Pricing per tick. ``--markets`` markets (``M0000``…, prices 5–1,000 USD, tick 0.01,
   lot 0.1, 4,096-level ladders), each with an oracle price and a book of ten levels a side
   (each level about 1,500 USD, so the 6,000 USD impact notional walks four or five levels;
   the ask side starts one tick further out, so the mid is off the oracle and the EMA moves).
   Ticks are 5 s apart, so every tick recomputes every mark and takes a premium sample in
   every market; all ``--ticks`` ticks fall inside one funding hour (no settlement).

   * ``ticks``: the ``--ticks`` Tick records in one ``apply_count`` call; µs per tick;
   * ``one call per tick``: the same, one ``apply_count`` call per Tick (the Python call
     included); the median call;
   * ``oracle round``: per tick, an ``OracleUpdate`` for every market (a ±1 tick random
     walk) then the Tick, all in one ``apply_count`` call; µs per round.

   Checked: every market took exactly one sample per tick, and no funding was settled.

4. Liquidation wave. The part 1 state of ``--wave-accounts`` accounts; every oracle moves 2%
   down; 1% of the accounts (drawn, seeded, from all those that lose by the move, so they are
   spread over the ids the scan walks) are given the collateral
   that put them exactly at maintenance before the move, so they are below it after (their
   deposits are counted, so conservation holds). Then Ticks one second apart until no account
   is below maintenance; each Tick is timed whole (marks, samples, the liquidation scan over
   every account, at most ``LIQUIDATIONS_PER_TICK`` liquidations). With no book every
   liquidation ends in the backstop. Checked: exactly the chosen accounts were below
   maintenance, and all of them were liquidated.

Known limitations
-----------------
* On a shared or busy machine the figures are noisy; ``--repeat`` keeps the fastest pass.
* The settlement pass at the smaller N runs on state that the restore copy has just put in
  cache; at 1M accounts the position table does not fit in any cache.
* The positions are synthetic (every pair in the same markets at one entry price); the
  settlement and the scan do the same work per position whatever the values are.
* ``Tick`` is everything the engine does on that Tick: should the clock gain more work per
  account (a liquidation scan), it is in that column; ``kernel`` stays the settlement alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from decimal import Decimal
from typing import Sequence

import numba
import numpy as np
from numba import njit

from engine.book import C_DEPOSITS, C_NPOS
from engine.codes import CommandKind, EventKind, MarketMode, OracleFlag, Side, Tif
from engine.commands import COMMAND_DTYPE, EVENT_DTYPE
from engine.engine import Engine
from engine.liquidator import LIQUIDATIONS_PER_TICK
from engine.risk import equity_atoms, total_mm
from engine.settlement import FUNDING_PERIOD_NS, FUNDING_SAMPLE_NS, settle_funding
from engine.spec import EngineConfig, MarketSpec
from engine.units import to_atoms

DEFAULT_ACCOUNTS = (10_000, 100_000, 1_000_000)
QUICK_ACCOUNTS = (10_000, 100_000)
DEFAULT_POSITIONS = 4
DEFAULT_MARKETS = 500
DEFAULT_TICKS = 500
QUICK_TICKS = 100
MAX_TICKS = (FUNDING_PERIOD_NS - 2 * FUNDING_SAMPLE_NS) // FUNDING_SAMPLE_NS  # all inside one hour
DEFAULT_REPEAT = 3
DEFAULT_INVARIANTS_UP_TO = 1_000_000
TARGET_SETTLE_MS = 10.0  # 1M accounts
TARGET_SCAN_MS = 10.0  # 1M accounts
TARGET_ACCOUNTS = 1_000_000
WAVE_MOVE_PPM = 20_000  # part 4: every oracle 2% down
WAVE_PPM = 10_000  # part 4: 1% of the accounts become liquidatable
WAVE_MAX_TICKS = 100_000
SCAN_CHECK_ACCOUNTS = 2_000
SCAN_BEFORE_HOUR_NS = 10_000_000_000  # part 2's Ticks run 10 s before part 1's hour
SCAN_MOVES_PPM = (10_000, 20_000)  # part 2: every oracle 1% and 2% down
SECOND_NS = 1_000_000_000
HOUR_START = (1_700_000_000 * SECOND_NS // FUNDING_PERIOD_NS + 1) * FUNDING_PERIOD_NS  # an hour boundary
MS = 1e6

# part 1: four markets
SETTLE_PRICES = (Decimal(200), Decimal(120), Decimal(450), Decimal(35))
SETTLE_MARKETS = tuple(
    MarketSpec(market_id=m, symbol=sym, tick_size=Decimal("0.01"), lot_size=Decimal("0.1"), max_order_lots=100_000,
               ladder_levels=1 << 12)
    for m, sym in enumerate(("AAPL-PERP", "NVDA-PERP", "MSFT-PERP", "F-PERP"))
)
MAX_POSITION_LOTS = 2_000
ENTRY_SPREAD_PPM = 20_000  # entry prices within ±2% of the oracle
# collateral as a share of the account's notional at the oracle: with entry prices within 2% of
# the oracle, equity stays above 8% of the notional, over the 5% maintenance margin, so no
# account is liquidatable (a Tick that also scans for liquidations has none to do)
COLLATERAL_PPM = (100_000, 300_000)
SETTLE_MAX_ORDERS = 1 << 10

# part 3: many markets with a book each
PRICING_LEVELS = 10
PRICING_LEVEL_USD = 1_500
PRICING_DEPOSIT = Decimal(1_000_000_000)
BID_ACCOUNT, ASK_ACCOUNT = 1, 2


# ---------------------------------------------------------------------------- kernels


@njit(cache=True, _nrt=False)
def margin_scan(acc, pos, mkt, n_accounts):
    """Equity and maintenance margin of accounts ``0..n_accounts-1`` that hold a position:
    (accounts below maintenance margin, Σ equity, Σ maintenance margin)."""
    below = 0
    eq_sum = 0
    mm_sum = 0
    for a in range(n_accounts):
        if acc[a]["npos"] == 0:
            continue
        eq = equity_atoms(acc, pos, mkt, a)
        mm = total_mm(pos, mkt, a)
        if eq < mm:
            below += 1
        eq_sum += eq
        mm_sum += mm
    return below, eq_sum, mm_sum


@njit(cache=True, _nrt=False)
def equity_scan(acc, pos, mkt, n_accounts):
    """Σ equity of the accounts with a position: ``margin_scan`` without the margin."""
    eq_sum = 0
    for a in range(n_accounts):
        if acc[a]["npos"] != 0:
            eq_sum += equity_atoms(acc, pos, mkt, a)
    return eq_sum


@njit(cache=True, _nrt=False)
def read_positions(acc, pos):
    """Σ |size| over every position of the accounts with one: the cost of only reading them."""
    total = 0
    for a in range(acc.shape[0]):
        if acc[a]["npos"] == 0:
            continue
        for m in range(pos.shape[1]):
            s = pos[a, m]["size"]
            total += s if s > 0 else -s
    return total


@njit(cache=True, _nrt=False)
def write_events(ev, n):
    """Write kind, account and amount of ``n`` event records: the cost of only emitting them."""
    for k in range(n):
        ev[k]["kind"] = 10
        ev[k]["account"] = k
        ev[k]["remaining"] = k
    return n


# ---------------------------------------------------------------------------- records


def records(n: int, kind: CommandKind, ts0: int, step_ns: int = 1) -> np.ndarray:
    rec = np.zeros(n, dtype=COMMAND_DTYPE)
    rec["kind"] = int(kind)
    rec["ts"] = ts0 + step_ns * np.arange(n, dtype=np.int64)
    return rec


def oracle_records(price_ticks: np.ndarray, ts: int) -> np.ndarray:
    rec = records(len(price_ticks), CommandKind.ORACLE, ts)
    rec["market"] = np.arange(len(price_ticks))
    rec["price"] = price_ticks
    return rec


def tick_records(n: int, ts0: int, step_ns: int) -> np.ndarray:
    return records(n, CommandKind.TICK, ts0, step_ns)


def price_ticks(price: Decimal, spec: MarketSpec) -> int:
    return int(price / spec.tick_size)


# ---------------------------------------------------------------------------- part 1: settlement


def settlement_engine(n_accounts: int, per_account: int, seed: int) -> Engine:
    """An engine of ``n_accounts`` accounts holding consistent positions (module docstring)."""
    specs = list(SETTLE_MARKETS)
    nm = len(specs)
    engine = Engine(specs, EngineConfig(max_orders=SETTLE_MAX_ORDERS, max_accounts=n_accounts, risk=True))
    oracle = np.array([price_ticks(p, s) for p, s in zip(SETTLE_PRICES, specs)], dtype=np.int64)
    engine.apply(oracle_records(oracle, HOUR_START + SECOND_NS))
    rng = np.random.default_rng(seed)
    atl = engine.mkt["atl"].copy()
    pairs = n_accounts // 2
    j = np.arange(pairs)
    size = np.zeros((n_accounts, nm), dtype=np.int64)
    cost = np.zeros((n_accounts, nm), dtype=np.int64)
    for t in range(per_account):
        m = (j + t) % nm
        lots = rng.integers(1, MAX_POSITION_LOTS + 1, size=pairs)
        spread = oracle[m] * ENTRY_SPREAD_PPM // 1_000_000
        entry = oracle[m] + rng.integers(-spread, spread + 1)
        sign = np.where((j + m) % 2 == 0, 1, -1)
        for row, s in ((2 * j, sign), (2 * j + 1, -sign)):
            size[row, m] = s * lots
            cost[row, m] = s * lots * entry * atl[m]
    notional = (np.abs(size) * oracle * atl).sum(axis=1)
    share = rng.integers(COLLATERAL_PPM[0], COLLATERAL_PPM[1] + 1, size=n_accounts)
    collateral = notional // 1_000_000 * share
    npos = (size != 0).sum(axis=1)
    engine.pos["size"][:n_accounts] = size
    engine.pos["cost"][:n_accounts] = cost
    engine.acc["collateral"][:n_accounts] = collateral
    engine.acc["npos"][:n_accounts] = npos
    engine.ctr[C_NPOS] = int(npos.sum())
    engine.ctr[C_DEPOSITS] = int(collateral.sum())
    engine.mkt["oi"] = np.where(size > 0, size, 0).sum(axis=0)
    return engine


def numpy_checks(engine: Engine) -> list[str]:
    """The risk equations ``check_invariants`` asserts, in numpy (so cheap at any size)."""
    acc, pos, mkt, ctr = engine.acc, engine.pos, engine.mkt, engine.ctr
    bad = []
    money = int(acc["collateral"].astype(object).sum()) - int(pos["cost"].astype(object).sum())
    if money != int(ctr[C_DEPOSITS]):
        bad.append("conservation")
    size = pos["size"]
    if not (np.where(size > 0, size, 0).sum(axis=0) == mkt["oi"]).all() or not (size.sum(axis=0) == 0).all():
        bad.append("open interest")
    npos = (size != 0).sum(axis=1)
    if not (npos == acc["npos"]).all() or int(npos.sum()) != int(ctr[C_NPOS]):
        bad.append("position counts")
    if (pos["cost"][size == 0] != 0).any():
        bad.append("cost without a position")
    return bad


def check_invariants(engine: Engine, n_accounts: int, up_to: int) -> tuple[str, float | None]:
    if n_accounts > up_to:
        return "skipped", None
    t0 = time.perf_counter()
    try:
        engine.check_invariants()
        verdict = "hold"
    except AssertionError as exc:
        verdict = f"BROKEN: {exc}"
    return verdict, time.perf_counter() - t0


class Saved:
    """The risk arrays of an engine, copied back in place before each pass."""

    NAMES = ("acc", "pos", "mkt", "ctr")

    def __init__(self, engine: Engine):
        self.engine = engine
        self.arrays = {name: getattr(engine, name).copy() for name in self.NAMES}

    def restore(self) -> None:
        for name, saved in self.arrays.items():
            np.copyto(getattr(self.engine, name), saved)


def _fastest(fn, saved: Saved, repeat: int) -> tuple[float, object]:
    """Fastest of ``repeat`` calls of ``fn`` (ns), each after a restore; and the last result."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        saved.restore()
        t0 = time.perf_counter_ns()
        result = fn()
        best = min(best, time.perf_counter_ns() - t0)
    return best, result


def check_settlement(events: np.ndarray, engine: Engine, collateral_before: int, positions: int) -> list[str]:
    bad = []
    funding = events[events["kind"] == int(EventKind.FUNDING)]
    rates = events[events["kind"] == int(EventKind.FUNDING_RATE)]
    if len(funding) != positions:
        bad.append(f"{len(funding)} FUNDING events for {positions} positions")
    if len(rates) != len(engine.specs):
        bad.append(f"{len(rates)} FUNDING_RATE events for {len(engine.specs)} markets")
    credits = int(funding["remaining"].astype(object).sum())
    remainder = int(rates["remaining"].astype(object).sum())
    if credits + remainder != 0:
        bad.append(f"credits {credits} + remainders {remainder} != 0")
    if credits == 0 and positions:
        bad.append("no funding was paid")
    if int(engine.acc["collateral"].astype(object).sum()) != collateral_before:
        bad.append("total collateral (insurance fund included) changed")
    return bad


def bench_settlement(n_accounts: int, per_account: int, repeat: int, seed: int, invariants_up_to: int) -> dict:
    t0 = time.perf_counter()
    engine = settlement_engine(n_accounts, per_account, seed)
    setup_s = time.perf_counter() - t0
    problems = numpy_checks(engine)
    invariants, invariants_s = check_invariants(engine, n_accounts, invariants_up_to)
    positions = int(engine.ctr[C_NPOS])
    ts = int(engine.mkt["next_funding"][0])
    tick = tick_records(1, ts, 0)
    uncertified = Saved(engine)
    # the steady state: a Tick shortly before the hour has certified every account
    engine.apply_count(tick_records(1, ts - SCAN_BEFORE_HOUR_NS, 0))
    saved = Saved(engine)
    collateral_before = int(engine.acc["collateral"].astype(object).sum())

    engine.apply_count(tick)  # untimed: grows the event buffer to fit the settlement
    tick_ns, events = _fastest(lambda: engine.apply_count(tick), saved, repeat)
    apply_ns, copied = _fastest(lambda: engine.apply(tick), saved, repeat)
    problems += check_settlement(copied, engine, collateral_before, positions)
    problems += numpy_checks(engine)
    after, after_s = check_invariants(engine, n_accounts, invariants_up_to)
    rate = int(copied["oid"][copied["kind"] == int(EventKind.FUNDING_RATE)][0])
    del copied
    buffer = np.zeros(positions + 2 * len(engine.specs), dtype=EVENT_DTYPE)
    saved.restore()
    settle_funding(buffer, 0, 0, ts, engine.mkt, engine.acc, engine.pos)  # untimed: the buffer's page faults
    kernel_ns, written = _fastest(lambda: settle_funding(buffer, 0, 0, ts, engine.mkt, engine.acc, engine.pos),
                                  saved, repeat)
    if written != positions + len(engine.specs):
        problems.append(f"the kernel wrote {written} events")
    saved.restore()
    floor_ns = min(_timed(lambda: read_positions(engine.acc, engine.pos)) for _ in range(repeat))
    write_ns = min(_timed(lambda: write_events(buffer, positions)) for _ in range(repeat))
    scan = bench_scan(engine, uncertified, n_accounts, repeat, ts - SCAN_BEFORE_HOUR_NS)
    if invariants != "hold" and invariants != "skipped":
        problems.append(f"before: {invariants}")
    if after != "hold" and after != "skipped":
        problems.append(f"after settlement: {after}")
    return {
        "accounts": n_accounts,
        "positions": positions,
        "setup_s": setup_s,
        "invariants": invariants if invariants == after else f"{invariants}, after settlement {after}",
        "invariants_s": invariants_s,
        "invariants_after_s": after_s,
        "rate_ppb": rate,
        "events": int(events),
        "tick_ms": tick_ns / MS,
        "apply_ms": apply_ns / MS,
        "copy_out_ms": (apply_ns - tick_ns) / MS,
        "kernel_ms": kernel_ns / MS,
        "read_floor_ms": floor_ns / MS,
        "write_floor_ms": write_ns / MS,
        "events_per_s": events / (tick_ns / 1e9),
        "ns_per_position": tick_ns / max(positions, 1),
        "ns_per_account": tick_ns / n_accounts,
        "problems": problems,
        "ok": not problems,
        "scan": scan,
    }


def _timed(fn) -> int:
    t0 = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t0


# ---------------------------------------------------------------------------- part 2: margin scan


def bench_scan(engine: Engine, uncertified: Saved, n_accounts: int, repeat: int, ts: int) -> dict:
    """Part 2 (module docstring): the Tick's liquidation scan from ``uncertified`` (cold) and
    after it (warm), then after every oracle moved 1% and 2%; and ``margin_scan``."""
    acc, pos, mkt = engine.acc, engine.pos, engine.mkt
    best = min(_timed(lambda: margin_scan(acc, pos, mkt, n_accounts)) for _ in range(repeat))
    equity_only = min(_timed(lambda: equity_scan(acc, pos, mkt, n_accounts)) for _ in range(repeat))
    below, eq_sum, mm_sum = margin_scan(acc, pos, mkt, n_accounts)
    k = min(n_accounts, SCAN_CHECK_ACCOUNTS)
    held = [a for a in range(k) if engine.acc[a]["npos"]]
    expect = (sum(1 for a in held if engine.equity(a) < engine.maintenance_margin(a)),
              sum(engine.equity(a) for a in held), sum(engine.maintenance_margin(a) for a in held))
    got = tuple(int(x) for x in margin_scan(acc, pos, mkt, k))
    problems = [] if got == expect else ["margin_scan differs from Engine.equity/maintenance_margin"]

    cold_ns, events = _fastest(lambda: engine.apply_count(tick_records(1, ts, 0)), uncertified, repeat)
    holders = engine.acc["npos"][:n_accounts] != 0
    if events or not (engine.acc["c_ep"][:n_accounts][holders] != 0).all():
        problems.append("the cold scan liquidated or left an account uncertified")
    warm = Saved(engine)
    warm_ns, events = _fastest(lambda: engine.apply_count(tick_records(1, ts + SECOND_NS, 0)), warm, repeat)
    if events:
        problems.append("the warm scan emitted events")
    moves = []
    oracle = engine.mkt["oracle"].copy()
    for move_ppm in SCAN_MOVES_PPM:
        recs = np.concatenate([oracle_records(oracle - oracle * move_ppm // 1_000_000, ts + SECOND_NS),
                               tick_records(1, ts + 2 * SECOND_NS, 0)])
        ns, _ = _fastest(lambda: engine.apply_count(recs), warm, repeat)
        evaluated = int(np.count_nonzero(engine.acc["c_ep"][:n_accounts] != warm.arrays["acc"]["c_ep"][:n_accounts]))
        moves.append({"move_ppm": move_ppm, "ms": ns / MS, "scans": len(recs), "evaluated": evaluated})
    return {
        "accounts": n_accounts,
        "ms": warm_ns / MS,
        "cold_ms": cold_ns / MS,
        "ns_per_account": warm_ns / n_accounts,
        "moves": moves,
        "exact_ms": best / MS,
        "equity_only_ms": equity_only / MS,
        "below_mm": int(below),
        "below_mm_share": below / n_accounts,
        "equity_over_mm": eq_sum / mm_sum if mm_sum else None,
        "equity_atoms": int(eq_sum),
        "mm_atoms": int(mm_sum),
        "checked_accounts": k,
        "problems": problems,
        "ok": not problems,
    }


# ---------------------------------------------------------------------------- part 3: pricing


def pricing_specs(n_markets: int, rng: np.random.Generator) -> tuple[list[MarketSpec], np.ndarray]:
    specs = [MarketSpec(market_id=m, symbol=f"M{m:04d}", tick_size=Decimal("0.01"), lot_size=Decimal("0.1"),
                        max_order_lots=1_000_000, ladder_levels=1 << 12) for m in range(n_markets)]
    oracle = rng.integers(500, 100_001, size=n_markets).astype(np.int64)  # 5–1,000 USD in ticks
    return specs, oracle


def pricing_engine(specs: list[MarketSpec], oracle: np.ndarray, dark: bool = False) -> tuple[Engine, int]:
    """Deposits, an oracle price per market, then ten bid and ten ask levels per market; with
    ``dark``, closed-hours pricing on (``EngineConfig.modes``) and every market then turned
    dark by an update flagged ``CLOSED``. Returns the engine and the timestamp of its last
    setup command."""
    nm = len(specs)
    engine = Engine(specs, EngineConfig(max_orders=1 << 15, max_accounts=4, risk=True, modes=dark))
    ts = HOUR_START + SECOND_NS
    deposits = records(2, CommandKind.DEPOSIT, ts - 10)
    deposits["account"] = [BID_ACCOUNT, ASK_ACCOUNT]
    deposits["size"] = to_atoms(PRICING_DEPOSIT)
    book = records(2 * PRICING_LEVELS * nm, CommandKind.PLACE, ts + 1)
    m = np.repeat(np.arange(nm), 2 * PRICING_LEVELS)
    k = np.tile(np.arange(PRICING_LEVELS), 2 * nm)
    side = np.tile(np.repeat([int(Side.BUY), int(Side.SELL)], PRICING_LEVELS), nm)
    step = np.maximum(1, oracle[m] // 10_000)  # 1 bp a level
    book["market"] = m
    book["side"] = side
    book["tif"] = int(Tif.GTC)
    book["account"] = np.where(side == int(Side.BUY), BID_ACCOUNT, ASK_ACCOUNT)
    book["price"] = np.where(side == int(Side.BUY), oracle[m] - (1 + k) * step, oracle[m] + (2 + k) * step)
    lot_usd = book["price"] * 0.01 * 0.1
    book["size"] = np.ceil(PRICING_LEVEL_USD / lot_usd).astype(np.int64)
    parts = [deposits, oracle_records(oracle, ts), book]
    if dark:
        closed = oracle_records(np.zeros(nm, dtype=np.int64), ts + 2)
        closed["size"] = int(OracleFlag.CLOSED)
        parts.append(closed)
    setup = np.concatenate(parts)
    ev = engine.apply(setup)
    accepted = int(np.count_nonzero(ev["kind"] == int(EventKind.ACCEPTED)))
    if accepted != len(book):
        raise AssertionError(f"pricing setup: {accepted} of {len(book)} orders accepted")
    if dark and not (engine.mkt["mode"] == int(MarketMode.INTERNAL)).all():
        raise AssertionError("pricing setup: a market did not go dark")
    return engine, int(setup["ts"][-1])


def tick_stream(n_ticks: int, ts0: int) -> np.ndarray:
    """Ticks 5 s apart from the first 5 s boundary after ``ts0`` plus one second."""
    first = (ts0 // FUNDING_SAMPLE_NS + 1) * FUNDING_SAMPLE_NS + SECOND_NS
    return tick_records(n_ticks, first, FUNDING_SAMPLE_NS)


def oracle_rounds(ticks: np.ndarray, oracle: np.ndarray, rng: np.random.Generator, dark: bool = False) -> np.ndarray:
    """Per tick, an OracleUpdate for every market (±1 tick random walk; with ``dark`` no price
    and the ``CLOSED`` flag, as the oracle sends at night) a millisecond before it."""
    nm = len(oracle)
    walk = oracle + np.cumsum(rng.choice(np.array([-1, 1]), size=(len(ticks), nm)), axis=0)
    rounds = np.zeros((len(ticks), nm + 1), dtype=COMMAND_DTYPE)
    rounds[:, :nm]["kind"] = int(CommandKind.ORACLE)
    rounds[:, :nm]["market"] = np.arange(nm)
    rounds[:, :nm]["price"] = 0 if dark else walk
    rounds[:, :nm]["size"] = int(OracleFlag.CLOSED) if dark else 0
    rounds[:, :nm]["ts"] = (ticks["ts"] - 1_000_000)[:, None]
    rounds[:, nm] = ticks
    return rounds.reshape(-1)


def bench_pricing(n_markets: int, n_ticks: int, repeat: int, seed: int, dark: bool = False) -> dict:
    """Per-tick pricing of ``n_markets``: external (the mark and the funding sample per market)
    or, with ``dark``, every market INTERNAL (also the internal step from both impact prices
    and the re-anchor check, docs/modes.md)."""
    rng = np.random.default_rng(seed)
    specs, oracle = pricing_specs(n_markets, rng)
    problems: list[str] = []
    t0 = time.perf_counter()
    pricing_engine(specs, oracle, dark)
    setup_s = time.perf_counter() - t0

    batch_ns, single_p50_ns, round_ns = [], [], []
    events = []
    for r in range(repeat):
        engine, last_ts = pricing_engine(specs, oracle, dark)
        ticks = tick_stream(n_ticks, last_ts)
        prem_before = engine.mkt["prem_n"].copy()
        hour = engine.mkt["next_funding"].copy()
        t = time.perf_counter_ns()
        n_events = engine.apply_count(ticks)
        batch_ns.append(time.perf_counter_ns() - t)
        if not (engine.mkt["prem_n"] - prem_before == n_ticks).all():
            problems.append("a market missed a premium sample")
        if not (engine.mkt["next_funding"] == hour).all():
            problems.append("funding was settled during the ticks")
        events.append(n_events)

        engine, last_ts = pricing_engine(specs, oracle, dark)
        ticks = tick_stream(n_ticks, last_ts)
        one = [ticks[i:i + 1] for i in range(n_ticks)]
        calls = np.empty(n_ticks, dtype=np.int64)
        clock = time.perf_counter_ns
        for i, rec in enumerate(one):
            t = clock()
            engine.apply_count(rec)
            calls[i] = clock() - t
        single_p50_ns.append(float(np.median(calls)))

        engine, last_ts = pricing_engine(specs, oracle, dark)
        rounds = oracle_rounds(tick_stream(n_ticks, last_ts), oracle, np.random.default_rng(seed + r), dark)
        hour = engine.mkt["next_funding"].copy()
        t = time.perf_counter_ns()
        round_events = engine.apply_count(rounds)
        round_ns.append(time.perf_counter_ns() - t)
        if not (engine.mkt["next_funding"] == hour).all():
            problems.append("funding was settled during the oracle rounds")
        if dark and not (engine.mkt["mode"] == int(MarketMode.INTERNAL)).all():
            problems.append("a market left INTERNAL during the dark rounds")
        if round_events < n_ticks * n_markets:
            problems.append(f"the oracle rounds gave {round_events} events, fewer than one MARK per update")
    per_tick = min(batch_ns) / n_ticks
    per_round = min(round_ns) / n_ticks
    return {
        "markets": n_markets,
        "dark": dark,
        "ticks": n_ticks,
        "setup_s": setup_s,
        "us_per_tick": per_tick / 1e3,
        "ns_per_market": per_tick / n_markets,
        "events_per_tick": events[0] / n_ticks,
        "one_call_per_tick_us_p50": min(single_p50_ns) / 1e3,
        "oracle_round_us": per_round / 1e3,
        "ns_per_oracle_update": (per_round - per_tick) / n_markets,
        "core_share_at_1_tick_per_s": per_round / SECOND_NS,
        "problems": problems,
        "ok": not problems,
    }


# ---------------------------------------------------------------------------- part 4: a liquidation wave


@njit(cache=True)
def margin_table(acc, pos, mkt, n_accounts):
    """Per account: (equity − collateral, maintenance margin) at the current marks."""
    upnl = np.zeros(n_accounts, dtype=np.int64)
    mm = np.zeros(n_accounts, dtype=np.int64)
    for a in range(n_accounts):
        if acc[a]["npos"] != 0:
            upnl[a] = equity_atoms(acc, pos, mkt, a) - acc[a]["collateral"]
            mm[a] = total_mm(pos, mkt, a)
    return upnl, mm


def wave_engine(n_accounts: int, seed: int) -> tuple[Engine, np.ndarray, int]:
    """The part 1 state, then every oracle 2% down; 1% of the accounts (drawn from those that
    lose by the move) get the collateral that left them exactly at maintenance before it, so after it
    they are below. Returns the engine, the chosen accounts and the last timestamp."""
    engine = settlement_engine(n_accounts, DEFAULT_POSITIONS, seed)
    acc, pos, mkt = engine.acc, engine.pos, engine.mkt
    upnl_before, mm_before = margin_table(acc, pos, mkt, n_accounts)
    oracle = engine.mkt["oracle"].copy()
    ts = HOUR_START + 2 * SECOND_NS
    engine.apply(oracle_records(oracle - oracle * WAVE_MOVE_PPM // 1_000_000, ts))
    upnl_after, mm_after = margin_table(acc, pos, mkt, n_accounts)
    need_before = mm_before - upnl_before  # collateral that puts equity exactly at MM
    fits = np.flatnonzero(need_before < mm_after - upnl_after)  # ... and below MM after the move
    want = n_accounts * WAVE_PPM // 1_000_000
    if len(fits) < want:
        raise AssertionError("liquidation wave: too few accounts lose by the move")
    chosen = np.sort(np.random.default_rng(seed).choice(fits, size=want, replace=False))
    delta = need_before[chosen] - acc["collateral"][chosen]
    acc["collateral"][chosen] = need_before[chosen]
    acc["c_ep"][chosen] = 0  # written past the engine: their certificates (from the move's scans) are void
    engine.ctr[C_DEPOSITS] += int(delta.sum())
    return engine, chosen, ts


def bench_wave(n_accounts: int, seed: int) -> dict:
    """Ticks one second apart until no account is below maintenance; each Tick runs the whole
    clock (marks, samples, the liquidation scan, ≤ LIQUIDATIONS_PER_TICK liquidations)."""
    engine, chosen, ts = wave_engine(n_accounts, seed)
    problems: list[str] = []
    below_start = int(margin_scan(engine.acc, engine.pos, engine.mkt, n_accounts)[0])
    ticks = 0
    liquidated = 0
    tick_ns = []
    one = tick_records(1, ts, 0)
    while margin_scan(engine.acc, engine.pos, engine.mkt, n_accounts)[0] > 0 and ticks < WAVE_MAX_TICKS:
        ticks += 1
        one["ts"] = ts + ticks * SECOND_NS
        t = time.perf_counter_ns()
        engine.apply_count(one)
        tick_ns.append(time.perf_counter_ns() - t)
    liquidated = int(np.count_nonzero(engine.acc["npos"][chosen] == 0))
    if below_start != len(chosen):
        problems.append(f"{below_start} accounts below maintenance at the start, {len(chosen)} chosen")
    if liquidated != len(chosen):
        problems.append(f"{liquidated} of {len(chosen)} chosen accounts liquidated")
    total = sum(tick_ns)
    return {
        "accounts": n_accounts,
        "liquidatable": len(chosen),
        "ticks": ticks,
        "total_s": total / 1e9,
        "ms_per_tick": total / max(ticks, 1) / MS,
        "liquidations_per_s_of_engine_time": liquidated / (total / 1e9) if total else None,
        "problems": problems,
        "ok": not problems,
    }


# ---------------------------------------------------------------------------- driver


def warm_up() -> float:
    """Seconds to compile (or load from cache) every kernel used here, on small engines."""
    started = time.perf_counter()
    bench_settlement(100, 2, 1, 0, 100)
    bench_pricing(3, 2, 1, 0)
    bench_pricing(3, 2, 1, 0, dark=True)
    bench_wave(1_000, 0)
    return time.perf_counter() - started


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
    return {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "cpu": cpu, "cpus": os.cpu_count(), "threads_used": 1, "load_average_1m": load}


def _accounts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x.replace("_", "")) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of account counts, e.g. 10000,100000") from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError("account counts must be >= 2")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=_accounts, default=None, metavar="N,N,…",
                        help="account counts of parts 1 and 2 (default "
                             f"{','.join(str(n) for n in DEFAULT_ACCOUNTS)}; "
                             f"{','.join(str(n) for n in QUICK_ACCOUNTS)} with --quick)")
    parser.add_argument("--positions-per-account", type=int, default=DEFAULT_POSITIONS, metavar="K",
                        help=f"markets (of 4) each account holds a position in (default {DEFAULT_POSITIONS})")
    parser.add_argument("--markets", type=int, default=DEFAULT_MARKETS,
                        help=f"markets of part 3 (default {DEFAULT_MARKETS})")
    parser.add_argument("--ticks", type=int, default=None,
                        help=f"ticks of part 3 (default {DEFAULT_TICKS}; {QUICK_TICKS} with --quick; "
                             f"at most {MAX_TICKS})")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, metavar="R",
                        help=f"passes per figure, each on a fresh copy; the fastest is kept (default {DEFAULT_REPEAT})")
    parser.add_argument("--invariants-up-to", type=int, default=DEFAULT_INVARIANTS_UP_TO, metavar="N",
                        help="run Engine.check_invariants() on the part 1 engines of at most N accounts "
                             f"(default {DEFAULT_INVARIANTS_UP_TO:,}; 0 never)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the positions and prices (default 1)")
    parser.add_argument("--wave-accounts", type=int, default=None,
                        help="accounts of part 4 (default 1,000,000; 100,000 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help=f"short run: {', '.join(f'{n:,}' for n in QUICK_ACCOUNTS)} accounts, {QUICK_TICKS} ticks")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    if args.accounts is None:
        args.accounts = QUICK_ACCOUNTS if args.quick else DEFAULT_ACCOUNTS
    if args.ticks is None:
        args.ticks = QUICK_TICKS if args.quick else DEFAULT_TICKS
    if args.wave_accounts is None:
        args.wave_accounts = 100_000 if args.quick else TARGET_ACCOUNTS
    if args.wave_accounts < 200:
        raise SystemExit("--wave-accounts must be at least 200 (1% of them are liquidated)")
    if not 1 <= args.positions_per_account <= len(SETTLE_MARKETS):
        raise SystemExit(f"--positions-per-account must lie in 1..{len(SETTLE_MARKETS)}")
    if args.markets < 1 or args.repeat < 1 or not 1 <= args.ticks <= MAX_TICKS:
        raise SystemExit(f"--markets and --repeat must be >= 1, --ticks in 1..{MAX_TICKS}")
    return args


def run(args: argparse.Namespace) -> dict:
    args = resolve(args)
    env = environment()
    if not args.json:
        print("loading the numba kernels (the first run on a machine compiles them: minutes)…",
              file=sys.stderr, flush=True)
    compile_s = warm_up()
    settle = [bench_settlement(n, args.positions_per_account, args.repeat, args.seed, args.invariants_up_to)
              for n in args.accounts]
    scans = [r.pop("scan") for r in settle]
    pricing = bench_pricing(args.markets, args.ticks, args.repeat, args.seed)
    dark = bench_pricing(args.markets, args.ticks, args.repeat, args.seed, dark=True)
    wave = bench_wave(args.wave_accounts, args.seed)
    at_target = next((r for r in settle if r["accounts"] == TARGET_ACCOUNTS), None)
    scan_at_target = next((r for r in scans if r["accounts"] == TARGET_ACCOUNTS), None)
    return {
        "benchmark": "risk",
        "seed": args.seed,
        "repeat": args.repeat,
        "compile_s": compile_s,
        "environment": env,
        "settlement": {
            "markets": len(SETTLE_MARKETS),
            "positions_per_account": args.positions_per_account,
            "target_ms": TARGET_SETTLE_MS,
            "target_accounts": TARGET_ACCOUNTS,
            "met": None if at_target is None else at_target["tick_ms"] < TARGET_SETTLE_MS,
            "runs": settle,
        },
        "margin_scan": {
            "target_ms": TARGET_SCAN_MS,
            "target_accounts": TARGET_ACCOUNTS,
            "met": None if scan_at_target is None else scan_at_target["ms"] < TARGET_SCAN_MS,
            "runs": scans,
        },
        "pricing": pricing,
        "pricing_dark": dark,
        "wave": wave,
        "ok": (all(r["ok"] for r in settle) and all(r["ok"] for r in scans) and pricing["ok"] and dark["ok"]
               and wave["ok"]),
    }


# ---------------------------------------------------------------------------- output


def _verdict(met: bool | None, ms: float | None) -> str:
    if met is None:
        return f"not measured ({TARGET_ACCOUNTS:,} accounts not in --accounts)"
    return f"{'met' if met else 'MISSED'} ({ms:.2f} ms)"


def _growth(runs: list[dict], key: str) -> str | None:
    if len(runs) < 2:
        return None
    steps = [f"×{b['accounts'] / a['accounts']:g} accounts → ×{b[key] / a[key]:.1f} time"
             for a, b in zip(runs, runs[1:])]
    return "  growth: " + "; ".join(steps)


def render(r: dict) -> str:
    env, s, scan = r["environment"], r["settlement"], r["margin_scan"]
    at = next((x for x in s["runs"] if x["accounts"] == TARGET_ACCOUNTS), None)
    scan_at = next((x for x in scan["runs"] if x["accounts"] == TARGET_ACCOUNTS), None)
    lines = [
        f"afterhours risk benchmark — seed {r['seed']}, fastest of {r['repeat']} passes on fresh copies, 1 thread",
        f"{env['cpu']} ({env['cpus']} CPUs, load {env['load_average_1m']} at start); "
        f"python {env['python']}, numpy {env['numpy']}, numba {env['numba']}",
        f"compile / cache load: {r['compile_s']:.2f} s (excluded)",
        "",
        f"1. hourly funding settlement: {s['markets']} markets, positions in {s['positions_per_account']} of them per "
        "account; Tick = one Tick at the hour through Engine.apply_count, apply = Engine.apply (events copied out)",
        f"  {'accounts':>9} {'positions':>10} {'Tick ms':>8} {'kernel ms':>9} {'apply ms':>9} {'copy-out':>9} "
        f"{'Mev/s':>7} {'ns/pos':>7} {'read floor':>10} {'write floor':>11}  invariants",
    ]
    for x in s["runs"]:
        inv = x["invariants"]
        if x["invariants_s"] is not None:
            inv += f" ({x['invariants_s']:.1f} s + {x['invariants_after_s']:.1f} s)"
        lines.append(
            f"  {x['accounts']:>9,} {x['positions']:>10,} {x['tick_ms']:>8.2f} {x['kernel_ms']:>9.2f} "
            f"{x['apply_ms']:>9.2f} {x['copy_out_ms']:>9.2f} {x['events_per_s'] / 1e6:>7.1f} "
            f"{x['ns_per_position']:>7.1f} {x['read_floor_ms']:>10.2f} {x['write_floor_ms']:>11.2f}  {inv}")
        for problem in x["problems"]:
            lines.append(f"    CHECK FAILED: {problem}")
    lines += [
        f"  target: {s['target_accounts']:,} accounts under {s['target_ms']:g} ms (Tick) — "
        f"{_verdict(s['met'], at['tick_ms'] if at else None)}",
        _growth(s["runs"], "tick_ms"),
        f"  rate {s['runs'][0]['rate_ppb']:,} ppb (no premium: the interest term); read floor = a numba loop "
        "reading every position's size; write floor = one that writes one event record per position; "
        "copy-out = apply − Tick",
        "",
        "2. liquidation scan over every account, as the Tick runs it (engine.liquidator, with margin certificates: "
        "engine.certificates)",
        f"  {'accounts':>9} {'Tick ms':>8} {'ns/account':>11} {'cold ms':>8} {'1% move':>18} {'2% move':>18} "
        f"{'exact ms':>9} {'equity only':>12}",
    ]
    for x in scan["runs"]:
        moves = " ".join(f"{m['ms']:>7.2f} ms {m['evaluated']:>7,} ev" for m in x["moves"])
        lines.append(f"  {x['accounts']:>9,} {x['ms']:>8.2f} {x['ns_per_account']:>11.1f} {x['cold_ms']:>8.2f} "
                     f"{moves} {x['exact_ms']:>9.2f} {x['equity_only_ms']:>9.2f} ms")
        for problem in x["problems"]:
            lines.append(f"    CHECK FAILED: {problem}")
    lines += [
        "  Tick = a Tick's scan with every account certified (the steady state: the Tick before certified them); "
        "cold = the same with no certificate (every account evaluated and certified); N% move = every oracle N% down "
        "(one scan per oracle update) then the Tick, with 'ev' the accounts evaluated again; exact = margin_scan, "
        "equity and MM of every account without certificates",
        f"  target: {scan['target_accounts']:,} accounts under {scan['target_ms']:g} ms (Tick) — "
        f"{_verdict(scan['met'], scan_at['ms'] if scan_at else None)}",
        _growth(scan["runs"], "ms"),
        "",
    ]
    for p in (r["pricing"], r["pricing_dark"]):
        what = ("closed-hours pricing on, every market dark (INTERNAL): internal step from both impact prices, "
                "re-anchor check, band clamp, mark, premium sample" if p["dark"] else "mark + premium sample")
        lines += [
            "",
            f"3{'b' if p['dark'] else 'a'}. pricing per tick: {p['markets']} markets with an oracle price and a "
            f"10-level book a side, {p['ticks']} ticks 5 s apart (every tick, every market: {what})",
            f"  ticks in one apply_count call: {p['us_per_tick']:,.1f} µs per tick ({p['ns_per_market']:.0f} ns per "
            f"market; {p['events_per_tick']:.1f} MARK events per tick)",
            f"  one apply_count call per tick: {p['one_call_per_tick_us_p50']:,.1f} µs (median call, Python call "
            "included)",
            f"  oracle round (an OracleUpdate per market{', no price, CLOSED' if p['dark'] else ''}, then the Tick): "
            f"{p['oracle_round_us']:,.1f} µs ({p['ns_per_oracle_update']:.0f} ns per update; "
            f"{p['core_share_at_1_tick_per_s']:.3%} of a core at one round a second)",
        ]
        for problem in p["problems"]:
            lines.append(f"  CHECK FAILED: {problem}")
    w = r["wave"]
    lines += [
        "",
        f"4. liquidation wave: {w['accounts']:,} accounts as in part 1, every oracle 2% down, {w['liquidatable']:,} "
        "accounts (1%) left below maintenance; Ticks 1 s apart until none is",
        f"  {w['ticks']:,} Ticks, {w['total_s']:.2f} s of engine time ({w['ms_per_tick']:.1f} ms per Tick: the full "
        f"scan plus at most {LIQUIDATIONS_PER_TICK} liquidations, all backstopped: no book)",
    ]
    for problem in w["problems"]:
        lines.append(f"  CHECK FAILED: {problem}")
    lines += ["", "all checks passed" if r["ok"] else "CHECK FAILED (see above)"]
    return "\n".join(line for line in lines if line is not None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.risk", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result) if args.json else render(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
