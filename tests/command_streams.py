"""Random command streams for the differential tests: Hypothesis strategies of abstract
operations, a resolver that turns them into Structs or raw records while the stream runs,
and a seeded numpy generator of long raw streams.

An abstract operation names order ids indirectly (``("seen", i)``: the i-th order id seen in
an ACCEPTED event so far, modulo their number; ``("live", i)``: the i-th open order) and
prices relative to the market's current mark, so that random streams hit live orders and the
band instead of being rejected at once.
Hostile values (extreme prices and sizes, ids that never existed, malformed batches, unknown
markets and accounts, bad enum values) are mixed in on purpose.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from hypothesis import strategies as st

from engine.codes import CommandKind, EventKind, Tif
from engine.commands import (
    COMMAND_DTYPE,
    Amend,
    Batch,
    Cancel,
    CancelAll,
    Place,
    SetMark,
    Tick,
    pack_cloid,
)
from engine.spec import EngineConfig
from engine_helpers import INT64_MAX, INT64_MIN, NVDA, SMALL_CONFIG, oid, tsla

# TSLA with the largest size cap an engine allows (a full level must fit in int64), so that
# price × size × atoms overflows int64 on hostile sizes.
TSLA_MAX_LOTS = INT64_MAX // SMALL_CONFIG.max_orders
SPECS = [NVDA, tsla(max_order_lots=TSLA_MAX_LOTS)]
CONFIG = EngineConfig(max_orders=24, max_accounts=6)  # small: BOOK_FULL and slot reuse happen
DEFAULT_MARK = {0: 10_000, 1: 5_000}  # ticks, used to centre prices before a market has a mark

CLOIDS = ["a", "b", "c", "k" * 32, "é" * 16]
BAD_CLOIDS = ["", "x" * 33, "a\x00b"]
PRICE_HOSTILE = [0, -1, 1, INT64_MAX, INT64_MIN, 2**40, 2**40 + 1]
SIZE_HOSTILE = [0, -1, 1, INT64_MAX, INT64_MIN, 10**6, 10**6 + 1, 10**7, 10**7 + 1, TSLA_MAX_LOTS]
AMEND_SIZE_HOSTILE = [-1, -1000, -(10**6), INT64_MIN, 1, INT64_MAX, 10**6 + 1, 10**7 + 1]
OID_HOSTILE = [-1, INT64_MAX, INT64_MIN, oid(1, 23), oid(1, 30), oid(500, 3), (1 << 22) - 1, 1 << 22]
MARKS = {
    0: [10_000, 10_100, 10_255, 10_256, 10_300, 9_744, 9_700, 12_000, 1_000, 2**40],
    1: [5_000, 5_050, 4_900, 5_127, 5_129, 4_000, 100, 2**40],
}
MARK_HOSTILE = [0, -1, 2**40 + 1, INT64_MIN]

# ---------------------------------------------------------------------------- strategies


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """Draw from each strategy with the given integer weight (Hypothesis's ``one_of`` is uniform)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(table).flatmap(lambda strategy: strategy)


def often(common: list, rare: list, rare_weight: int = 1, common_weight: int = 19) -> st.SearchStrategy:
    return weighted((common_weight, st.sampled_from(common)), (rare_weight, st.sampled_from(rare)))


markets = often([0, 0, 1], [-1, 2])
accounts = often([0, 1, 2, 3], [5, 6, -1])
sides = st.sampled_from([0, 1])
tifs = often([Tif.GTC, Tif.GTC, Tif.GTC, Tif.IOC, Tif.FOK, Tif.ALO, Tif.MARKET], [5])
stps = often([0, 1, 2], [3])
timestamps = st.integers(0, 200)
near = st.integers(-30, 30).map(lambda d: ("rel", d))
wide = st.integers(-300, 300).map(lambda d: ("rel", d))
prices = weighted(
    (14, near),
    (4, wide),
    (1, st.sampled_from(PRICE_HOSTILE).map(lambda p: ("abs", p))),
    (1, st.sampled_from(["1E30", "NaN", "off_tick"]).map(lambda p: ("dec", p))),
)
# Hypothesis favours small integers, and NVDA needs 100 lots for its $10 minimum at ~$100.
round_lots = st.integers(1, 30).map(lambda k: 100 * k)
sizes = weighted((12, round_lots), (7, st.integers(1, 3_000)), (1, st.sampled_from(SIZE_HOSTILE)))
amend_sizes = weighted((4, st.just(0)), (10, round_lots), (4, st.integers(1, 3_000)),
                       (2, st.sampled_from(AMEND_SIZE_HOSTILE)))
cloids = weighted((12, st.none()), (7, st.sampled_from(CLOIDS)), (1, st.sampled_from(BAD_CLOIDS)))
expiries = weighted((14, st.none()), (5, st.integers(-5, 150).map(lambda d: ("in", d))),
                    (1, st.sampled_from([-1, INT64_MAX]).map(lambda v: ("abs", v))))
order_refs = weighted(
    (7, st.integers(0, 1_000).map(lambda i: ("seen", i))),
    (7, st.integers(0, 1_000).map(lambda i: ("live", i))),
    (3, st.sampled_from(CLOIDS + BAD_CLOIDS[:1]).map(lambda c: ("cloid", c))),
    (2, st.sampled_from(OID_HOSTILE).map(lambda v: ("oid", v))),
    (1, st.just(("none",))),
)
as_raw = st.booleans()


def place_ops_with(markets=markets, accounts=accounts, prices=prices, tifs=tifs) -> st.SearchStrategy:
    return st.tuples(st.just("place"), markets, accounts, sides, tifs, stps, prices, sizes, cloids, expiries,
                     timestamps, as_raw)


place_ops = place_ops_with()
cancel_ops = st.tuples(st.just("cancel"), markets, accounts, order_refs, timestamps, as_raw)
amend_ops = st.tuples(st.just("amend"), markets, accounts, order_refs,
                      weighted((2, st.none()), (2, near), (1, wide)), weighted((1, st.none()), (3, amend_sizes)),
                      timestamps, as_raw)
cancel_all_ops = st.tuples(st.just("cancel_all"), often([None, 0, 1], [2, -2], 1, 4), accounts, as_raw)
set_mark_ops = st.tuples(
    st.just("set_mark"),
    often([0, 1], [2], 1, 9),
    weighted((9, st.sampled_from(["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"])),
             (1, st.sampled_from(MARK_HOSTILE).map(lambda p: ("abs", p)))),
    as_raw,
)
# A tick at a random time, or at the earliest open expiry -1, +0 or +1 (see Resolver._tick_ts).
tick_ops = st.tuples(st.just("tick"), weighted((1, st.integers(0, 260)), (1, st.sampled_from([-1, 0, 0, 1]).map(
    lambda d: ("expiry", d)))), as_raw)
action_ops = weighted((3, place_ops), (1, cancel_ops), (1, amend_ops))
# A batch: its actions, the count written in a raw header relative to len(actions)
# ("exact", "negative", "beyond", "fifty_one"), and stray records put inside a raw batch.
batch_ops = st.tuples(
    st.just("batch"),
    st.lists(action_ops, min_size=0, max_size=6),
    often(["exact"], ["negative", "beyond", "fifty_one"], 1, 4),
    often([None], ["set_mark", "tick", "batch", "kind_0"], 1, 4),
    as_raw,
)
junk_ops = st.tuples(st.just("junk"), st.sampled_from([0, 8, 99, 255]), st.sampled_from([0, 1001, 1014, 3003]))
MARK_BOTH = [("set_mark", 0, "m0", True), ("set_mark", 1, "m0", False)]


def streams_of(operations: st.SearchStrategy, min_size: int = 12, max_size: int = 60) -> st.SearchStrategy:
    """Lists of operations, nine times in ten after a first mark in both markets."""
    prefix = weighted((9, st.just(MARK_BOTH)), (1, st.just([])))
    body = st.lists(operations, min_size=min_size, max_size=max_size)
    return st.tuples(prefix, body).map(lambda pair: [*pair[0], *pair[1]])


operations = weighted((8, place_ops), (3, cancel_ops), (3, amend_ops), (1, cancel_all_ops), (2, set_mark_ops),
                      (2, tick_ops), (2, batch_ops), (1, junk_ops))
streams = streams_of(operations)


# ---------------------------------------------------------------------------- resolution


def _record(kind: int, **fields) -> tuple:
    rec = dict.fromkeys(COMMAND_DTYPE.names, 0)
    rec["kind"] = kind
    rec.update(fields)
    return tuple(rec[name] for name in COMMAND_DTYPE.names)


def _cloid_words(cloid: str | None) -> dict:
    words = pack_cloid(cloid) or (0, 0, 0, 0)  # an invalid cloid cannot be a raw record
    return {f"cloid{k}": w for k, w in enumerate(words)}


class Resolver:
    """Turns abstract operations into commands, using the order ids seen so far and the
    current state of one engine (its marks and its open orders).

    Order references: ``("seen", i)`` the i-th oid seen in an ACCEPTED event (modulo their
    number; many have left the book since); ``("live", i)`` the i-th open order, named by its
    owner in its market; ``("cloid", c)``; ``("oid", v)`` a literal (hostile) oid; ``("none",)``.
    """

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.marks: dict[int, int] = {}
        self.live: list = []

    def observe(self, events: np.ndarray) -> None:
        self.seen += events["oid"][events["kind"] == EventKind.ACCEPTED].tolist()

    def command(self, op: tuple, engine) -> np.ndarray | list:
        """One unit for ``op`` given ``engine``'s state: a record array or a list of one Struct."""
        self.marks = {m: engine.mark(m) for m in range(len(SPECS))}
        self.live = [o for a in range(CONFIG.max_accounts) for o in engine.open_orders(a)]
        kind = op[0]
        if kind == "batch":
            return self._batch(op)
        if kind == "junk":
            return np.array([_record(op[1], pre_reject=op[2], market=1, account=2, oid=3)], dtype=COMMAND_DTYPE)
        if op[-1]:
            return np.array([self._raw(op)], dtype=COMMAND_DTYPE)
        return [self._struct(op)]

    # -------------------------------------------------------------- helpers

    def _ticks(self, price, market: int) -> int:
        if price[0] == "rel":
            return (self.marks.get(market) or DEFAULT_MARK.get(market, 10_000)) + price[1]
        if price[0] == "abs":
            return price[1]
        return INT64_MAX  # a decimal with no integer form

    def _decimal(self, price, market: int) -> Decimal:
        tick = SPECS[market].tick_size if 0 <= market < len(SPECS) else Decimal("0.01")
        if price[0] == "dec":
            return tick * Decimal("1000.5") if price[1] == "off_tick" else Decimal(price[1])
        return tick * self._ticks(price, market)

    @staticmethod
    def _lots_decimal(lots: int, market: int) -> Decimal:
        lot = SPECS[market].lot_size if 0 <= market < len(SPECS) else Decimal("0.001")
        return lot * lots

    def _target(self, ref, market: int, account: int) -> tuple[int, str | None, int, int]:
        """(oid, cloid, market, account) of a cancel or amend."""
        if ref[0] == "seen":
            return (self.seen[ref[1] % len(self.seen)] if self.seen else 0), None, market, account
        if ref[0] == "live" and self.live:
            o = self.live[ref[1] % len(self.live)]
            return o.oid, None, o.market, o.account
        if ref[0] == "cloid":
            return 0, ref[1], market, account
        if ref[0] == "oid":
            return ref[1], None, market, account
        return 0, None, market, account

    @staticmethod
    def _expiry(expiry, ts: int) -> int:
        if expiry is None:
            return 0
        return ts + expiry[1] if expiry[0] == "in" else expiry[1]

    @staticmethod
    def _mark(choice, market: int) -> int:
        if isinstance(choice, tuple):
            return choice[1]
        options = MARKS.get(market, MARKS[0])
        return options[int(choice[1:]) % len(options)]

    # -------------------------------------------------------------- raw records

    def _raw(self, op: tuple) -> tuple:
        kind = op[0]
        if kind == "place":
            _, m, a, side, tif, stp, price, size, cloid, expiry, ts, _ = op
            return _record(CommandKind.PLACE, market=m, account=a, side=side, tif=int(tif), stp=stp,
                           price=self._ticks(price, m), size=size, ts=ts,
                           expires_at=self._expiry(expiry, ts), **_cloid_words(cloid))
        if kind == "cancel":
            _, m, a, ref, ts, _ = op
            oid_value, cloid, m, a = self._target(ref, m, a)
            return _record(CommandKind.CANCEL, market=m, account=a, oid=oid_value, ts=ts, **_cloid_words(cloid))
        if kind == "amend":
            _, m, a, ref, price, size, ts, _ = op
            oid_value, cloid, m, a = self._target(ref, m, a)
            return _record(CommandKind.AMEND, market=m, account=a, oid=oid_value, ts=ts,
                           price=0 if price is None else self._ticks(price, m),
                           size=size or 0, **_cloid_words(cloid))
        if kind == "cancel_all":
            _, m, a, _ = op
            return _record(CommandKind.CANCEL_ALL, market=-1 if m is None else m, account=a)
        if kind == "set_mark":
            _, m, choice, _ = op
            return _record(CommandKind.SET_MARK, market=m, price=self._mark(choice, m))
        if kind == "tick":
            return _record(CommandKind.TICK, ts=self._tick_ts(op[1]))
        raise AssertionError(op)

    def _tick_ts(self, when) -> int:
        if isinstance(when, int):
            return when
        expiries = [o.expires_at_ns for o in self.live if o.expires_at_ns != 0]
        return min(INT64_MAX, (min(expiries) if expiries else 100) + when[1])

    def _batch(self, op: tuple) -> np.ndarray | list:
        _, actions, count, stray, raw = op
        if not raw:
            structs = [self._struct(a) for a in actions]
            if stray == "batch":
                structs.insert(len(structs) // 2, Batch(actions=[]))
            if count == "fifty_one":
                structs = (structs or [Tick(ts_ns=1)]) * 51
            return [Batch(actions=structs[:60], ts_ns=7)]
        recs = [self._raw(a) for a in actions]
        if stray is not None:
            stray_kind = {"set_mark": CommandKind.SET_MARK, "tick": CommandKind.TICK, "batch": CommandKind.BATCH,
                          "kind_0": 0}[stray]
            recs.insert(len(recs) // 2, _record(stray_kind, market=0, price=12_000, size=1, ts=300))
        n = {"exact": len(recs), "negative": -1 - len(recs), "beyond": len(recs) + 1, "fifty_one": 51}[count]
        if count == "fifty_one":
            recs = (recs or [_record(CommandKind.TICK, ts=1)]) * 51
        return np.array([_record(CommandKind.BATCH, size=n, ts=7)] + recs, dtype=COMMAND_DTYPE)

    # -------------------------------------------------------------- Structs

    def _struct(self, op: tuple):
        kind = op[0]
        if kind == "place":
            _, m, a, side, tif, stp, price, size, cloid, expiry, ts, _ = op
            names = {Tif.GTC: "gtc", Tif.IOC: "ioc", Tif.FOK: "fok", Tif.ALO: "alo"}
            common = dict(market=m, account=a, side=("buy", "sell")[side], size=self._lots_decimal(size, m),
                          stp=("expire_maker", "expire_taker", "expire_both", "bogus")[stp], cloid=cloid,
                          expires_at_ns=self._expiry(expiry, ts), ts_ns=ts)
            if tif == Tif.MARKET:
                return Place(order_type="market", **common)
            return Place(price=self._decimal(price, m), tif=names.get(tif, "day"), **common)
        if kind == "cancel":
            _, m, a, ref, ts, _ = op
            oid_value, cloid, m, a = self._target(ref, m, a)
            return Cancel(market=m, account=a, oid=oid_value, cloid=cloid, ts_ns=ts)
        if kind == "amend":
            _, m, a, ref, price, size, ts, _ = op
            oid_value, cloid, m, a = self._target(ref, m, a)
            return Amend(market=m, account=a, oid=oid_value, cloid=cloid,
                         price=None if price is None else self._decimal(price, m),
                         size=None if not size else self._lots_decimal(size, m), ts_ns=ts)
        if kind == "cancel_all":
            return CancelAll(account=op[2], market=op[1])
        if kind == "set_mark":
            _, m, choice, _ = op
            tick = SPECS[m].tick_size if 0 <= m < len(SPECS) else Decimal("0.01")
            return SetMark(market=m, price=tick * self._mark(choice, m))
        if kind == "tick":
            return Tick(ts_ns=self._tick_ts(op[1]))
        raise AssertionError(op)


# ---------------------------------------------------------------------------- seeded long streams


class SeededStream:
    """Raw record units from a numpy generator, for long deterministic streams.

    Every unit is self-contained (a batch header is followed by exactly the records its count
    governs), so a stream cut at unit boundaries means the same in any grouping."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.ts = 0
        self.marks = dict(DEFAULT_MARK)

    def _market(self) -> int:
        r = self.rng.random()
        return 0 if r < 0.68 else 1 if r < 0.97 else int(self.rng.choice([-1, 2]))

    def _account(self) -> int:
        return int(self.rng.integers(0, 6)) if self.rng.random() < 0.98 else int(self.rng.choice([-1, 6, 1 << 20]))

    def _price(self, m: int) -> int:
        if self.rng.random() < 0.01:
            return int(self.rng.choice(PRICE_HOSTILE))
        spread = 40 if self.rng.random() < 0.8 else 300
        return self.marks.get(m, 10_000) + int(self.rng.integers(-spread, spread + 1))

    def _size(self) -> int:
        if self.rng.random() < 0.01:
            return int(self.rng.choice(SIZE_HOSTILE))
        return int(self.rng.integers(1, 3_000))

    def _oid(self, seen: list[int]) -> int:
        r = self.rng.random()
        if seen and r < 0.8:
            return seen[int(self.rng.integers(max(0, len(seen) - 64), len(seen)))]
        return int(self.rng.choice(OID_HOSTILE)) if r < 0.9 else 0

    def _cloid(self) -> dict:
        return _cloid_words(CLOIDS[int(self.rng.integers(0, len(CLOIDS)))] if self.rng.random() < 0.3 else None)

    def _action(self, seen: list[int]) -> tuple:
        self.ts += int(self.rng.integers(0, 3))
        r = self.rng.random()
        m, a = self._market(), self._account()
        if r < 0.62:
            tif = int(self.rng.choice([0, 0, 0, 1, 2, 3, 4])) if self.rng.random() < 0.995 else 5
            expires = self.ts + int(self.rng.integers(-5, 400)) if self.rng.random() < 0.25 else 0
            return _record(CommandKind.PLACE, market=m, account=a, side=int(self.rng.integers(0, 2)), tif=tif,
                           stp=int(self.rng.integers(0, 3)), price=self._price(m), size=self._size(), ts=self.ts,
                           expires_at=expires, **self._cloid())
        kind = CommandKind.CANCEL if r < 0.82 else CommandKind.AMEND
        oid_value = self._oid(seen)
        cloid = self._cloid() if oid_value == 0 else {}
        price = size = 0
        if kind == CommandKind.AMEND:
            price = self._price(m) if self.rng.random() < 0.6 else 0
            size = int(self.rng.integers(1, 3_000)) if self.rng.random() < 0.6 else 0
        return _record(kind, market=m, account=a, oid=oid_value, price=price, size=size, ts=self.ts, **cloid)

    def unit(self, seen: list[int]) -> list[tuple]:
        r = self.rng.random()
        if r < 0.86:
            return [self._action(seen)]
        if r < 0.89:
            # A count of 51 skips the 51 records after it, so exactly 51 follow; a negative
            # count skips none, so its actions run as top-level commands.
            count = int(self.rng.integers(0, 9)) if self.rng.random() < 0.9 else int(self.rng.choice([-1, 51]))
            actions = [self._action(seen) for _ in range(count if count >= 0 else int(self.rng.integers(0, 4)))]
            return [_record(CommandKind.BATCH, size=count, ts=self.ts)] + actions
        if r < 0.94:
            m = int(self.rng.choice([0, 0, 1, 1, 2])) if self.rng.random() < 0.99 else -1
            if self.rng.random() < 0.97 and m in self.marks:
                price = max(1, self.marks[m] + int(self.rng.integers(-400, 401)))
                self.marks[m] = price
            else:
                price = int(self.rng.choice(MARK_HOSTILE))
            return [_record(CommandKind.SET_MARK, market=m, price=price, ts=self.ts)]
        if r < 0.98:
            self.ts += int(self.rng.integers(0, 60))
            return [_record(CommandKind.TICK, ts=self.ts)]
        if r < 0.995:
            return [_record(CommandKind.CANCEL_ALL, market=int(self.rng.choice([-1, 0, 1])), account=self._account())]
        return [_record(int(self.rng.choice([0, 8, 200])), pre_reject=int(self.rng.choice([0, 1011])))]

    def chunk(self, n_units: int, seen: list[int]) -> np.ndarray:
        recs = [rec for _ in range(n_units) for rec in self.unit(seen)]
        return np.array(recs, dtype=COMMAND_DTYPE)
