"""Seeded command streams for the matching benchmark (``COMMAND_DTYPE`` record arrays).

Two mixes, each a *prefill* (applied untimed; builds the resting book) and a timed *stream*:

=========  =====  =====  ======  =====  ========  ==============================
mix        GTC    IOC    cancel  amend  SetMark   resting orders (both markets)
=========  =====  =====  ======  =====  ========  ==============================
``core``   9 %    3 %    6 %     82 %   0.1 %     ~1,500 (exchange-core's mix)
``churn``  50 %   5 %    35 %    10 %   0.1 %     ~10,000
=========  =====  =====  ======  =====  ========  ==============================

(SetMark takes its 0.1 % from the amend share in ``core`` and from the GTC share in
``churn``.)

Layout
------
* Two markets (``MARKETS``): tick 0.01 USD, lot 0.1 share, marks starting at 200.00 and
  120.00 USD; a command picks its market uniformly. 16 accounts, uniform, so a crossing
  order meets one of its own account's orders about one time in sixteen and self-trade
  prevention fires (takers use EXPIRE_MAKER 80 %, EXPIRE_TAKER 10 %, EXPIRE_BOTH 10 %).
* Prices are placed relative to the market's mark at that command. A passive price is
  ``mark ∓ offset`` on the order's own side (bids below, asks above) with
  ``offset ~ Geometric(1 / offset_mean_ticks)``, capped at 400 ticks, so the book is dense
  near the mid and thins out. A share of GTC orders (``gtc_cross_share``) and of amends
  (``amend_cross_share``) are priced 0–2 ticks *through* the mark, so they trade.
  IOC orders are priced 1–19 ticks through the mark and sweep one or more levels.
* Sizes: resting orders 1–100 lots (uniform). IOC size is ``k × U(1, 100)``; ``k`` is a
  per-market feedback gain, set before every chunk from the market's resting count, so
  that the book stays near ``target_resting`` without changing the command mix (below 1,
  ``k`` also scales the crossing shares of GTC orders and amends).
* Amends (exchange-core's "move"): 70 % a new price only, 15 % a new size only, 15 % both;
  the new price follows the passive-price law (or crosses, as above).
* Cancels pick distinct resting orders within a chunk; amends pick among the rest (with
  repeats). Both carry the order's true account and market.
* SetMark moves the mark by ±1 tick, with a pull back towards the start once it has
  drifted more than 1 %, so every generated price stays deep inside the ±10 % band.
* ``ts`` is ``TS0 + 1000 * index`` over prefill then stream (strictly increasing, 1 µs
  apart). No order has an expiry and no client order id is used.

Generation
----------
The engine assigns order ids, so cancels and amends can only name orders that exist.
The stream is generated in chunks (``mix.chunk`` commands); each chunk is applied to a
*generation* ``Engine`` and the chunk after it targets the orders resting at that point,
read straight from the engine's order pool (the layout of ``engine/book.py``). The
generation engine has a small pool (cheap to scan): slots are taken from the top of a LIFO
stack, so while the pool never fills the slots, and hence the oids, are the same as in an
engine of any size. The same records replayed into a fresh engine give the same events, so
``Workload.events`` (the stream's event count) is a free consistency check for the timed
run.

Invariants
----------
* Deterministic: the same (mix, n_commands, seed) gives byte-identical arrays.
* The generation engine never reports BOOK_FULL (checked; it would break the replay).

Known limitations
-----------------
* Orders filled or cancelled earlier in the same chunk are still targeted by later
  cancels/amends: these become UNKNOWN_ORDER rejects (about 0.5 % of commands; the stats
  report the exact share). Where a chunk has more amends than the book has orders left,
  amends repeat orders, which can (rarely) give AMEND_NO_CHANGE.
* No FOK, post-only, market orders, batches, cancel-all, expiries or client order ids: the
  mixes measure the hot path; the test suite covers the rest.
* ``resting_orders`` reads ``Engine.orders`` directly (fields ``live``, ``oid``, …): a
  change of the pool layout in ``engine/book.py`` must be followed here.

With margin checks
------------------
``margin_setup`` gives the records that turn an engine with ``EngineConfig(risk=True)``
into one the same stream can run on: a deposit of ``MARGIN_DEPOSIT`` for each of the mix's
accounts and an ``OracleUpdate`` per market at its starting mark (so the mark is the
oracle's, and the prefill's SetMark leaves it where it is), timestamped just before the
prefill. The stream was generated on an engine without risk; with that deposit no order
needs more margin than its account has, so the risk engine gives the same events (the
matching benchmark counts them and reports every reject code it sees).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from engine.codes import CancelReason, CommandKind, EventKind, Reject, Side, Tif
from engine.commands import COMMAND_DTYPE
from engine.engine import Engine
from engine.spec import EngineConfig, MarketSpec
from engine.units import to_atoms

N_EVENT_KINDS = max(EventKind) + 1

MARKETS = (
    MarketSpec(market_id=0, symbol="AAPL-PERP", tick_size=Decimal("0.01"), lot_size=Decimal("0.1"),
               max_order_lots=100_000),
    MarketSpec(market_id=1, symbol="NVDA-PERP", tick_size=Decimal("0.01"), lot_size=Decimal("0.1"),
               max_order_lots=100_000),
)
START_MARK_TICKS = np.array([20_000, 12_000], dtype=np.int64)
TS0 = 1_700_000_000_000_000_000
TS_STEP_NS = 1_000
MAX_OFFSET_TICKS = 400
MARK_DRIFT_LIMIT_PPM = 10_000  # 1 %: beyond this SetMark steps point back to the start
STP_SHARES = (0.8, 0.1, 0.1)  # EXPIRE_MAKER, EXPIRE_TAKER, EXPIRE_BOTH
AMEND_SHARES = (0.70, 0.15, 0.15)  # price only, size only, both

MARGIN_DEPOSIT = Decimal(100_000_000)  # USD per account for the run with margin checks

# command categories inside the generator (not engine codes)
GTC, IOC, CANCEL, AMEND, MARK = range(5)


@dataclass(frozen=True)
class Mix:
    """One workload mix. The five command shares are of the timed stream and sum to 1."""

    name: str
    gtc: float
    ioc: float
    cancel: float
    amend: float
    set_mark: float
    target_resting: int  # resting orders over both markets (prefill size, steering target)
    offset_mean_ticks: float  # mean distance of a passive price from the mark
    gtc_cross_share: float  # GTC orders priced at or through the mark (at gain >= 1)
    amend_cross_share: float  # amends priced at or through the mark (at gain >= 1)
    n_accounts: int = 16
    chunk: int = 2_000  # commands generated per look at the book

    def shares(self) -> np.ndarray:
        p = np.array([self.gtc, self.ioc, self.cancel, self.amend, self.set_mark])
        if abs(p.sum() - 1.0) > 1e-9:
            raise ValueError(f"mix {self.name} shares sum to {p.sum()}, not 1")
        return p


CORE = Mix("core", gtc=0.09, ioc=0.03, cancel=0.06, amend=0.819, set_mark=0.001,
           target_resting=1_500, offset_mean_ticks=8.0, gtc_cross_share=0.05, amend_cross_share=0.01, chunk=800)
CHURN = Mix("churn", gtc=0.499, ioc=0.05, cancel=0.35, amend=0.10, set_mark=0.001,
            target_resting=10_000, offset_mean_ticks=25.0, gtc_cross_share=0.05, amend_cross_share=0.02,
            chunk=4_000)
MIXES = {"core": CORE, "churn": CHURN}


@dataclass
class Workload:
    """A prefill (untimed) and a stream (timed), with what generating them observed."""

    mix: Mix
    seed: int
    specs: list[MarketSpec]
    prefill: np.ndarray
    stream: np.ndarray
    events: int  # events the stream produced in the generation engine
    stats: dict = field(default_factory=dict)


@dataclass
class _Resting:
    """The resting orders of an engine, as parallel arrays."""

    oid: np.ndarray
    market: np.ndarray
    account: np.ndarray
    side: np.ndarray
    price: np.ndarray
    remaining: np.ndarray

    def __len__(self) -> int:
        return len(self.oid)


def resting_orders(engine: Engine) -> _Resting:
    """Every resting order of ``engine`` (between ``apply`` calls every live slot rests)."""
    pool = engine.orders
    slots = np.flatnonzero(pool["live"])
    rows = pool[slots]
    return _Resting(rows["oid"].copy(), rows["market"].astype(np.int64), rows["account"].astype(np.int64),
                    rows["side"].astype(np.int64), rows["price"].copy(), rows["remaining"].copy())


class _Generator:
    """Stateful generation: marks, IOC gains, the timestamp clock, the generation engine."""

    def __init__(self, mix: Mix, seed: int):
        self.mix = mix
        self.rng = np.random.default_rng(seed)
        self.marks = START_MARK_TICKS.copy()
        self.gain = np.ones(len(MARKETS))
        self.next_index = 0
        pool = max(4096, 1 << int(4 * mix.target_resting).bit_length())
        self.engine = Engine(list(MARKETS), EngineConfig(max_orders=pool))
        self.event_kinds = np.zeros(N_EVENT_KINDS, dtype=np.int64)
        self.reject_codes: dict[int, int] = {}
        self.cancel_reasons = np.zeros(8, dtype=np.int64)
        self.resting_samples: list[int] = []

    # ---------------------------------------------------------------- shared pieces

    def blank(self, n: int) -> np.ndarray:
        rec = np.zeros(n, dtype=COMMAND_DTYPE)
        rec["ts"] = TS0 + TS_STEP_NS * np.arange(self.next_index, self.next_index + n, dtype=np.int64)
        self.next_index += n
        return rec

    def offsets(self, n: int) -> np.ndarray:
        """Passive distances from the mark in ticks, >= 1."""
        off = self.rng.geometric(1.0 / self.mix.offset_mean_ticks, size=n)
        return np.minimum(off, MAX_OFFSET_TICKS).astype(np.int64)

    def crossing(self, n: int, share: np.ndarray, off: np.ndarray) -> np.ndarray:
        """Replace a ``share`` of the offsets by 0..-2 ticks (at or through the mark)."""
        hit = self.rng.random(n) < share
        return np.where(hit, -self.rng.integers(0, 3, size=n), off)

    def priced(self, side: np.ndarray, mark: np.ndarray, off: np.ndarray) -> np.ndarray:
        """Bids at ``mark - off``, asks at ``mark + off``."""
        return np.where(side == int(Side.BUY), mark - off, mark + off)

    def sizes(self, n: int) -> np.ndarray:
        return self.rng.integers(1, 101, size=n, dtype=np.int64)

    def apply(self, rec: np.ndarray) -> int:
        """Apply to the generation engine; record what happened; return the event count."""
        ev = self.engine.apply(rec)
        self.event_kinds += np.bincount(ev["kind"], minlength=N_EVENT_KINDS)[:N_EVENT_KINDS]
        rej = ev["code"][ev["kind"] == int(EventKind.REJECTED)]
        for code, cnt in zip(*np.unique(rej, return_counts=True)):
            self.reject_codes[int(code)] = self.reject_codes.get(int(code), 0) + int(cnt)
        if int(Reject.BOOK_FULL) in self.reject_codes:
            raise AssertionError("generation engine ran out of order slots; enlarge the generation pool")
        reasons = ev["reason"][ev["kind"] == int(EventKind.CANCELLED)]
        self.cancel_reasons += np.bincount(reasons, minlength=8)[:8]
        return len(ev)

    # ---------------------------------------------------------------- prefill

    def prefill(self) -> np.ndarray:
        """A SetMark per market, then ``target_resting`` passive GTC orders."""
        n_markets = len(MARKETS)
        n = self.mix.target_resting
        rec = self.blank(n_markets + n)
        rec["kind"][:n_markets] = int(CommandKind.SET_MARK)
        rec["market"][:n_markets] = np.arange(n_markets)
        rec["price"][:n_markets] = self.marks
        body = rec[n_markets:]
        market = self.rng.integers(0, n_markets, size=n)
        side = self.rng.integers(0, 2, size=n)
        body["kind"] = int(CommandKind.PLACE)
        body["tif"] = int(Tif.GTC)
        body["market"] = market
        body["account"] = self.rng.integers(0, self.mix.n_accounts, size=n)
        body["side"] = side
        body["price"] = self.priced(side, self.marks[market], self.offsets(n))
        body["size"] = self.sizes(n)
        self.apply(rec)
        return rec

    # ---------------------------------------------------------------- stream

    def mark_path(self, cat: np.ndarray, market: np.ndarray) -> np.ndarray:
        """Each command's mark (a SetMark sees its own new mark); advances ``self.marks``."""
        n = len(cat)
        mark_at = np.empty(n, dtype=np.int64)
        for m in range(len(MARKETS)):
            steps = np.zeros(n, dtype=np.int64)
            at = np.flatnonzero((cat == MARK) & (market == m))
            step = self.rng.choice(np.array([-1, 1]), size=len(at))
            drift = (self.marks[m] - START_MARK_TICKS[m]) * 1_000_000 // START_MARK_TICKS[m]
            if drift > MARK_DRIFT_LIMIT_PPM:
                step = -np.abs(step)
            elif drift < -MARK_DRIFT_LIMIT_PPM:
                step = np.abs(step)
            steps[at] = step
            path = self.marks[m] + np.cumsum(steps)
            mine = market == m
            mark_at[mine] = path[mine]
            self.marks[m] = path[-1]
        return mark_at

    def chunk(self, n: int, book: _Resting) -> np.ndarray:
        """``n`` stream commands whose cancels and amends name orders of ``book``."""
        mix = self.mix
        rng = self.rng
        rec = self.blank(n)
        cat = rng.choice(5, size=n, p=mix.shares())
        market = rng.integers(0, len(MARKETS), size=n)
        cancel_at = np.flatnonzero(cat == CANCEL)
        amend_at = np.flatnonzero(cat == AMEND)
        cancel_t, amend_t = self.targets(len(book), len(cancel_at), len(amend_at))
        market[cancel_at] = book.market[cancel_t]
        market[amend_at] = book.market[amend_t]
        mark = self.mark_path(cat, market)
        rec["market"] = market
        rec["account"] = rng.integers(0, mix.n_accounts, size=n)
        self.fill_places(rec, cat, mark)
        rec[cancel_at] = self.fill_cancels(rec[cancel_at], book, cancel_t)
        rec[amend_at] = self.fill_amends(rec[amend_at], book, amend_t, mark[amend_at])
        marks = cat == MARK
        rec["kind"][marks] = int(CommandKind.SET_MARK)
        rec["price"][marks] = mark[marks]
        rec["account"][marks] = 0
        return rec

    def targets(self, n_book: int, n_cancel: int, n_amend: int) -> tuple[np.ndarray, np.ndarray]:
        """Distinct book indices for the cancels, then for the amends while they last (then
        amends repeat orders at random)."""
        if n_book <= n_cancel:
            raise AssertionError(f"the book drained to {n_book} orders; the IOC gain controller failed")
        pick = self.rng.permutation(n_book)
        cancel_t = pick[:n_cancel]
        rest = pick[n_cancel:]
        amend_t = rest[:n_amend]
        if n_amend > len(rest):
            extra = rest[self.rng.integers(0, len(rest), size=n_amend - len(rest))]
            amend_t = np.concatenate([amend_t, extra])
        return cancel_t, amend_t

    def fill_places(self, rec: np.ndarray, cat: np.ndarray, mark: np.ndarray) -> None:
        rng = self.rng
        for which, tif in ((GTC, Tif.GTC), (IOC, Tif.IOC)):
            at = np.flatnonzero(cat == which)
            n = len(at)
            side = rng.integers(0, 2, size=n)
            if which == GTC:
                share = self.mix.gtc_cross_share * np.minimum(self.gain[rec["market"][at]], 1.0)
                off = self.crossing(n, share, self.offsets(n))
                size = self.sizes(n)
            else:
                off = -rng.integers(1, 20, size=n)
                gain = self.gain[rec["market"][at]]
                size = np.maximum(1, np.rint(gain * self.sizes(n))).astype(np.int64)
            sub = rec[at]
            sub["kind"] = int(CommandKind.PLACE)
            sub["tif"] = int(tif)
            sub["side"] = side
            sub["stp"] = rng.choice(3, size=n, p=STP_SHARES)
            sub["price"] = self.priced(side, mark[at], off)
            sub["size"] = size
            rec[at] = sub

    def fill_cancels(self, sub: np.ndarray, book: _Resting, t: np.ndarray) -> np.ndarray:
        sub["kind"] = int(CommandKind.CANCEL)
        sub["account"] = book.account[t]
        sub["oid"] = book.oid[t]
        return sub

    def fill_amends(self, sub: np.ndarray, book: _Resting, t: np.ndarray, mark: np.ndarray) -> np.ndarray:
        rng = self.rng
        n = len(t)
        what = rng.choice(3, size=n, p=AMEND_SHARES)  # 0 price, 1 size, 2 both
        side = book.side[t]
        share = self.mix.amend_cross_share * np.minimum(self.gain[sub["market"]], 1.0)
        off = self.crossing(n, share, self.offsets(n))
        price = self.priced(side, mark, off)
        # a new price equal to the current one would be AMEND_NO_CHANGE: move one tick out
        price = np.where(price == book.price[t], price + np.where(side == int(Side.BUY), -1, 1), price)
        size = self.sizes(n)
        size = np.where(size == book.remaining[t], size % 100 + 1, size)
        sub["kind"] = int(CommandKind.AMEND)
        sub["account"] = book.account[t]
        sub["oid"] = book.oid[t]
        sub["price"] = np.where(what == 1, 0, price)
        sub["size"] = np.where(what == 0, 0, size)
        return sub

    def steer(self, book: _Resting) -> None:
        """Raise a market's aggression gain when its book is above its share of the target,
        lower it when below. The gain scales IOC sizes; below 1 it also scales the shares
        of GTC orders and amends that cross."""
        target = self.mix.target_resting / len(MARKETS)
        for m in range(len(MARKETS)):
            have = int(np.count_nonzero(book.market == m))
            self.gain[m] = float(np.clip(self.gain[m] * np.exp(2.0 * (have - target) / target), 0.05, 50.0))


def build(mix: Mix | str, n_commands: int, seed: int = 1) -> Workload:
    """Generate ``mix``'s prefill and a stream of ``n_commands`` commands (deterministic)."""
    mix = MIXES[mix] if isinstance(mix, str) else mix
    started = time.perf_counter()
    gen = _Generator(mix, seed)
    prefill = gen.prefill()
    gen.event_kinds[:] = 0
    gen.reject_codes.clear()
    gen.cancel_reasons[:] = 0
    parts = []
    events = 0
    left = n_commands
    while left > 0:
        book = resting_orders(gen.engine)
        gen.resting_samples.append(len(book))
        gen.steer(book)
        rec = gen.chunk(min(mix.chunk, left), book)
        events += gen.apply(rec)
        parts.append(rec)
        left -= len(rec)
    stream = np.concatenate(parts) if parts else np.zeros(0, dtype=COMMAND_DTYPE)
    gen.resting_samples.append(len(resting_orders(gen.engine)))
    stats = _stats(gen, stream, time.perf_counter() - started)
    return Workload(mix, seed, list(MARKETS), prefill, stream, events, stats)


def _stats(gen: _Generator, stream: np.ndarray, seconds: float) -> dict:
    n = max(len(stream), 1)
    kinds = {k.name.lower(): int(np.count_nonzero(stream["kind"] == int(k))) for k in CommandKind}
    places = stream["kind"] == int(CommandKind.PLACE)
    samples = np.array(gen.resting_samples)
    return {
        "generate_s": round(seconds, 3),
        "commands": len(stream),
        "share": {
            "gtc": round(float(np.count_nonzero(places & (stream["tif"] == int(Tif.GTC))) / n), 4),
            "ioc": round(float(np.count_nonzero(places & (stream["tif"] == int(Tif.IOC))) / n), 4),
            "cancel": round(kinds["cancel"] / n, 4),
            "amend": round(kinds["amend"] / n, 4),
            "set_mark": round(kinds["set_mark"] / n, 4),
        },
        "resting": {"min": int(samples.min()), "mean": int(samples.mean()), "max": int(samples.max())},
        "events": {k.name.lower(): int(gen.event_kinds[int(k)]) for k in EventKind},
        "rejects": {Reject(c).name: cnt for c, cnt in sorted(gen.reject_codes.items())},
        "stp_cancels": int(gen.cancel_reasons[int(CancelReason.STP_MAKER)] + gen.cancel_reasons[int(CancelReason.STP_TAKER)]),
    }


def margin_setup(mix: Mix, deposit: Decimal = MARGIN_DEPOSIT) -> np.ndarray:
    """Deposits for accounts ``0..mix.n_accounts-1``, then an ``OracleUpdate`` per market at
    its starting mark; timestamps just before the prefill's (``TS0``)."""
    n_markets = len(MARKETS)
    n = mix.n_accounts + n_markets
    rec = np.zeros(n, dtype=COMMAND_DTYPE)
    rec["ts"] = TS0 - TS_STEP_NS * np.arange(n, 0, -1, dtype=np.int64)
    rec["kind"][: mix.n_accounts] = int(CommandKind.DEPOSIT)
    rec["account"][: mix.n_accounts] = np.arange(mix.n_accounts)
    rec["size"][: mix.n_accounts] = to_atoms(deposit)
    rec["kind"][mix.n_accounts :] = int(CommandKind.ORACLE)
    rec["market"][mix.n_accounts :] = np.arange(n_markets)
    rec["price"][mix.n_accounts :] = START_MARK_TICKS
    return rec
