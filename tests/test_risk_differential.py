"""Differential tests of the risk layer: the numba ``Engine`` and the ``ReferenceEngine`` must
give identical events and ``state_hash()`` for any stream of deposits, withdrawals, leverage
changes, margin-mode changes and isolated margin moves (accounts 2 and 3 start isolated in one
market each), oracle updates (±30% jumps included), orders of every time in force, cancels, amends
and ticks that cross 5 s sample and hour settlement boundaries; and both must keep their
invariants (conservation to the atom, long = short = OI, order exposure = resting orders).

Two markets, chosen so that random streams reach the risk paths:

* ``NVDA``: tick 0.01, lot 0.0001 (one atom per tick·lot, so no product is a round number;
  an order of 997–29910 lots is $10–$300 at $100), a maker rebate, three margin tiers from $500, max price $120 (so a +30% oracle jump is refused and
  the band reaches prices above max), impact notional $50 (premium samples see real depth).
* ``TSLA``: tick 0.05, lot 1 ($50 a lot at $50), max price $500M so that the largest
  position is 1152 lots (POSITION_LIMIT is reachable), funding multiplier 10 (the 4%/h cap
  is reachable), impact notional $200.

Operations are abstract (order references, prices relative to the mark, time jumps, amounts
one atom either side of a limit, reduce-only orders on the side that closes the position or
the wrong one, dead-man deadlines ahead of the clock, at it or behind it) and are resolved into raw command records against the
reference engine's state as the stream runs; account commands and oracle updates are sometimes
written as Structs and converted. Directed tests at the end walk each limit to the atom
(withdrawal floor, collateral, leverage margin, deposit caps, position limit) through both
engines. ``AFTERHOURS_FUZZ_SCALE=10`` multiplies the example counts.
"""

from __future__ import annotations

import os
from decimal import Decimal

import numpy as np
import pytest
from command_streams import _cloid_words, _record, often, weighted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_differential import assert_same_events

from engine.codes import CancelReason, CommandKind, EventKind, LiquidationStep, OrderFlag, Reject, Tif
from engine.commands import (
    COMMAND_DTYPE,
    AdjustMargin,
    Deposit,
    OracleUpdate,
    ScheduleCancel,
    SetLeverage,
    SetMarginMode,
    Withdraw,
    to_records,
)
from engine.engine import Engine
from engine.reference import ReferenceEngine
from engine.risk import MAX_AMOUNT_ATOMS
from engine.settlement import FUNDING_PERIOD_NS, FUNDING_SAMPLE_NS
from engine.spec import EngineConfig, MarketSpec
from engine.units import ATOMS_PER_USD

SCALE = int(os.environ.get("AFTERHOURS_FUZZ_SCALE", "1"))
FUZZ = dict(deadline=None, report_multiple_bugs=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SPECS = [
    MarketSpec(market_id=0, symbol="NVDA", tick_size=Decimal("0.01"), lot_size=Decimal("0.0001"),
               max_order_lots=10**7, ladder_levels=1024, maker_fee=Decimal("-0.0001"), taker_fee=Decimal("0.0005"),
               tiers=((Decimal(0), 20), (Decimal(500), 10), (Decimal(2000), 4)), max_price=Decimal(120),
               impact_notional=Decimal(50), funding_multiplier=Decimal("0.5")),
    MarketSpec(market_id=1, symbol="TSLA", tick_size=Decimal("0.05"), lot_size=Decimal(1), max_order_lots=2000,
               ladder_levels=1024, tiers=((Decimal(0), 10), (Decimal(10_000), 5)), max_price=Decimal(500_000_000),
               impact_notional=Decimal(200), funding_multiplier=Decimal(10)),
]
RISK = EngineConfig(max_orders=64, max_accounts=6, risk=True)
NO_RISK = EngineConfig(max_orders=64, max_accounts=6, risk=False)
DEFAULT_PRICE = {0: 10_000, 1: 1_000}  # ticks: $100 and $50
LOT_SCALE = {0: 997, 1: 1}  # a size key k is k·scale lots (997: notionals that are not round)
HUGE_LOTS = {0: 10**7, 1: 1_200}
WHALE, RICH = 5, 10_000 * ATOMS_PER_USD  # the one account that may hold more than $10k of deposits
SECOND = 1_000_000_000
START_NS = 10 * FUNDING_PERIOD_NS - 20 * SECOND  # 20 s before an hour ends
USD = ATOMS_PER_USD

# ---------------------------------------------------------------------------- strategies

markets = often([0, 0, 1], [2, -1])
accounts = often([0, 1, 2, 3, 4, 5], [6, -1])
sides = st.sampled_from([0, 1])
tifs = weighted((6, st.just(Tif.GTC)), (2, st.just(Tif.IOC)), (1, st.just(Tif.FOK)), (1, st.just(Tif.ALO)),
                (2, st.just(Tif.MARKET)))
stps = st.sampled_from([0, 1, 2])
offsets = weighted((10, st.integers(-6, 6)), (4, st.integers(-30, 30)), (1, st.integers(-300, 300)),
                   (1, st.sampled_from([-10**6, 10**9])))
size_keys = weighted((10, st.integers(1, 30)), (3, st.integers(30, 200)), (1, st.sampled_from(["huge", 0, -1])),
                     (1, st.sampled_from([-1, 0, 1]).map(lambda d: ("limit", d))))
expiries = weighted((6, st.none()), (2, st.integers(1, 30).map(lambda s: s * SECOND)))
cloids = weighted((8, st.none()), (1, st.sampled_from(["a", "b"])))
steps = weighted((4, st.integers(0, 400_000_000)), (1, st.just(0)))
amounts = weighted((10, st.integers(50, 3_000).map(lambda usd: usd * USD)),
                   (2, st.integers(1, 5 * USD)),
                   (1, st.sampled_from([0, -1, 10**12, 1 << 60, (1 << 60) + 1])))
edges = st.sampled_from([-1, 0, 1])
# up to the collateral cap; the largest withdrawal allowed; all the collateral (each ± an atom)
deposit_amounts = weighted((12, amounts), (1, edges.map(lambda d: ("cap", d))))
withdraw_amounts = weighted((3, amounts), (2, edges.map(lambda d: ("limit", d))), (1, edges.map(lambda d: ("all", d))))
leverages = weighted((6, st.integers(1, 3)), (6, st.integers(4, 25)), (1, st.sampled_from([0, -1, 10**6])))
oracle_moves = weighted((10, st.sampled_from([-200, -50, -10, -1, 0, 1, 10, 50, 200]).map(lambda bp: ("bp", bp))),
                        (2, st.sampled_from([-3000, -1000, 1000, 3000]).map(lambda bp: ("bp", bp))),
                        (1, st.sampled_from([0, -1, "near_max", "max", "above_max"]).map(lambda p: ("abs", p))))
tick_jumps = weighted(
    (3, st.integers(0, 3 * SECOND).map(lambda ns: ("dt", ns))),
    (3, st.sampled_from([-1, 0, 1]).map(lambda d: ("sample", d))),
    (2, st.sampled_from([-1, 0, 1, 2 * SECOND]).map(lambda d: ("hour", d))),
    (1, st.integers(1, 40).map(lambda minutes: ("dt", minutes * 60 * SECOND))),
    (1, st.integers(1, 10 * SECOND).map(lambda ns: ("back", ns))),
)
order_refs = weighted((6, st.integers(0, 1_000).map(lambda i: ("live", i))),
                      (2, st.integers(0, 1_000).map(lambda i: ("seen", i))))
as_struct = st.booleans()

place_ops = st.tuples(st.just("place"), markets, accounts, sides, tifs, stps, offsets, size_keys, expiries, cloids,
                      steps)
cancel_ops = st.tuples(st.just("cancel"), order_refs, steps)
amend_ops = st.tuples(st.just("amend"), order_refs, weighted((2, st.none()), (3, st.integers(-20, 20))),
                      weighted((2, st.none()), (3, size_keys)), steps)
cancel_all_ops = st.tuples(st.just("cancel_all"), accounts, often([None, 0, 1], [2]))
deposit_ops = st.tuples(st.just("deposit"), accounts, deposit_amounts, as_struct)
withdraw_ops = st.tuples(st.just("withdraw"), accounts, withdraw_amounts, as_struct)
leverage_ops = st.tuples(st.just("leverage"), accounts, markets, leverages, as_struct)
oracle_ops = st.tuples(st.just("oracle"), markets, oracle_moves, as_struct, steps)
set_mark_ops = st.tuples(st.just("set_mark"), st.sampled_from([0, 1]), st.integers(-100, 100))
tick_ops = st.tuples(st.just("tick"), tick_jumps)
# reduce-only: the side that closes the account's position (or the wrong one, or a fixed side);
# sizes as for places, or the position ± a lot
reduce_sides = weighted((6, st.just("close")), (1, st.just("wrong")), (1, sides))
reduce_sizes = weighted((2, size_keys), (3, st.sampled_from([-1, 0, 1]).map(lambda d: ("position", d))))
holders = weighted((3, st.just("holder")), (2, accounts))  # "holder": an account with a position in the market
reduce_tifs = weighted((6, st.just(Tif.GTC)), (2, st.just(Tif.IOC)), (1, st.just(Tif.FOK)), (1, st.just(Tif.ALO)),
                       (2, st.just(Tif.MARKET)))
passive_ticks = weighted((4, st.integers(0, 20)), (1, st.integers(-6, -1)))  # away from the mark (< 0: through it)
reduce_ops = st.tuples(st.just("reduce_only"), markets, holders, reduce_sides, reduce_tifs, passive_ticks,
                       reduce_sizes, steps)
# trades around a holder's reduce-only orders: the holder shrinks its position with an ordinary
# IOC, or another account lifts the side the holder's reduce-only orders rest on, for more than
# the position (so a reduce-only maker's fill is capped and the rest swept)
holder_trades = st.tuples(st.just("holder_trade"), markets, st.sampled_from(["shrink", "lift"]), steps)
# a batch in which one account posts an order one tick through the mark and another takes it:
# two positions opened (or changed) at once
open_pairs = st.tuples(st.just(0) | st.just(1), st.permutations(range(5)), sides, size_keys).map(
    lambda t: ("batch", [("place", t[0], t[1][0], t[2], Tif.GTC, 0, 1 if t[2] else -1, t[3], None, None, 0),
                         ("place", t[0], t[1][1], 1 - t[2], Tif.IOC, 0, 1 if t[2] else -1, t[3], None, None, 0)],
                None))
deadlines = weighted((4, st.integers(1, 60).map(lambda s: ("in", s * SECOND))), (2, st.just(("clear", 0))),
                     (1, st.sampled_from([0, -1]).map(lambda d: ("past", d))), (1, st.just(("negative", -1))))
schedule_ops = st.tuples(st.just("schedule"), accounts, deadlines, as_struct)
batch_ops = st.tuples(st.just("batch"), st.lists(weighted((3, place_ops), (1, cancel_ops), (1, amend_ops),
                                                          (1, reduce_ops)),
                                                 max_size=4), often([None], ["deposit", "tick"], 1, 3))

trigger_ops = st.tuples(st.just("trigger"), markets, accounts, sides, weighted((6, st.integers(0, 3)), (1, st.just(4))),
                        st.sampled_from([Tif.MARKET, Tif.GTC, Tif.GTC, Tif.IOC]), st.integers(-60, 60),
                        st.integers(-20, 20), weighted((3, size_keys), (2, st.just("whole"))), steps)
cancel_trigger_ops = st.tuples(st.just("cancel_trigger"), order_refs, steps)
# isolated margin: a mode (2 is no mode), margin in or out (USD amounts, or one atom either side of
# the cross collateral or of the bucket)
margin_modes = weighted((6, st.sampled_from([0, 1])), (1, st.just(2)))
margin_mode_ops = st.tuples(st.just("margin_mode"), accounts, markets, margin_modes, as_struct)
margin_amounts = weighted((6, st.integers(-300, 300).map(lambda usd: usd * USD)),
                          (3, st.sampled_from(["cross", "bucket"]).flatmap(lambda edge: edges.map(lambda d: (edge, d)))),
                          (1, st.sampled_from([0, 1 << 60, -(1 << 60) - 1])))
adjust_margin_ops = st.tuples(st.just("adjust_margin"), accounts, markets, margin_amounts, as_struct)

operations = weighted((16, place_ops), (2, cancel_ops), (5, amend_ops), (1, cancel_all_ops), (3, deposit_ops),
                      (3, withdraw_ops), (3, leverage_ops), (4, oracle_ops), (1, set_mark_ops), (5, tick_ops),
                      (1, batch_ops), (3, trigger_ops), (1, cancel_trigger_ops), (5, reduce_ops), (2, schedule_ops),
                      (3, holder_trades), (2, margin_mode_ops), (2, adjust_margin_ops))
# Both oracles first, then money in the accounts (a lot in the whale's), nine times in ten.
# Account 2 trades NVDA and account 3 TSLA on isolated margin.
SETUP = [("oracle", 0, ("bp", 0), False, 0), ("oracle", 1, ("bp", 0), True, 0),
         *(("deposit", a, 600 * USD, a % 2 == 0) for a in range(5)), ("deposit", WHALE, 10**12, False),
         ("margin_mode", 2, 0, 1, False), ("margin_mode", 3, 1, 1, True)]
streams = st.tuples(weighted((9, st.just(SETUP)), (1, st.just([]))),
                    st.lists(operations, min_size=10, max_size=80)).map(lambda pair: [*pair[0], *pair[1]])
# Dense in reduce-only orders, the trades around them and deadlines, after the usual setup.
focused_reduce_ops = st.tuples(st.just("reduce_only"), st.just(0) | st.just(1), st.just("holder"),
                               weighted((8, st.just("close")), (1, st.just("wrong"))), reduce_tifs, passive_ticks,
                               reduce_sizes, steps)
focused_operations = weighted((4, place_ops), (4, open_pairs), (6, focused_reduce_ops), (5, holder_trades),
                              (2, amend_ops),
                              (1, cancel_ops), (2, schedule_ops), (3, tick_ops), (1, oracle_ops), (1, batch_ops),
                              (1, adjust_margin_ops))
focused_streams = st.lists(focused_operations, min_size=10, max_size=60).map(lambda ops: [*SETUP, *ops])


# ---------------------------------------------------------------------------- resolution


class RiskResolver:
    """Turns abstract operations into command records, given the reference engine's state:
    the clock (``now``, advanced by each operation), marks and oracles, open orders, and the
    order ids seen in ACCEPTED events."""

    def __init__(self, config: EngineConfig, start_ns: int = START_NS) -> None:
        self.risk = config.risk
        self.now = start_ns
        self.seen: list[int] = []

    def observe(self, events: np.ndarray) -> None:
        self.seen += events["oid"][events["kind"] == EventKind.ACCEPTED].tolist()

    def unit(self, op: tuple, engine) -> np.ndarray:
        """The record array of one command unit (one record, or a batch header and its actions;
        ``squeeze``: an oracle update, then a Tick)."""
        if op[0] == "squeeze":
            return np.array(self._squeeze(op, engine), dtype=COMMAND_DTYPE)
        if op[0] == "batch":
            _, actions, stray = op
            recs = [self._record(a, engine) for a in actions]
            if stray == "deposit":
                recs.insert(len(recs) // 2, _record(CommandKind.DEPOSIT, account=1, size=USD, ts=self.now))
            elif stray == "tick":
                recs.insert(len(recs) // 2, _record(CommandKind.TICK, ts=self.now))
            return np.array([_record(CommandKind.BATCH, size=len(recs), ts=self.now)] + recs, dtype=COMMAND_DTYPE)
        if op[0] == "holder_trade":
            return np.array(self._holder_trade(op, engine), dtype=COMMAND_DTYPE)
        if op[0] in ("margin_mode", "adjust_margin") and op[4]:
            return to_records([self._struct(op, engine)], SPECS)
        if op[0] in ("deposit", "withdraw", "leverage", "oracle", "schedule") and op[3 if op[0] != "leverage" else 4]:
            return to_records([self._struct(op, engine)], SPECS)
        return np.array([self._record(op, engine)], dtype=COMMAND_DTYPE)

    # -------------------------------------------------------------- helpers

    def _squeeze(self, op: tuple, engine) -> list[tuple]:
        """Move market ``m``'s oracle ``bp`` basis points against its largest position, then
        tick: small steps like this leave an account between maintenance and two thirds of it,
        the case a liquidation works through the book."""
        _, m, bp = op
        sizes = [engine.position(a, m).size_lots for a in range(RISK.max_accounts)]
        biggest = max(sizes, key=abs)
        base = engine.oracle(m) or DEFAULT_PRICE[m]
        sign = -1 if biggest > 0 else 1
        self.now += SECOND
        price = max(1, base + sign * (base * bp // 10_000))
        return [_record(CommandKind.ORACLE, market=m, price=price, ts=self.now),
                _record(CommandKind.TICK, ts=self.now)]

    def _live(self, engine) -> list:
        return [o for a in range(RISK.max_accounts) for o in engine.open_orders(a)]

    def _lots(self, key, market: int, engine, account: int, side: int) -> int:
        """Lots for a size key; ``("limit", d)``: the order that brings the account's worst
        case in the market (position plus all its orders on ``side`` filled) to the market's
        position limit, plus ``d``."""
        m = market if market in LOT_SCALE else 0
        if key == "huge":
            return HUGE_LOTS[m]
        if isinstance(key, tuple):
            if not self.risk or not 0 <= account < RISK.max_accounts:
                return 1 + key[1]
            sign = 1 if side == 0 else -1
            resting = sum(o.remaining_lots for o in engine.open_orders(account) if o.market == m and o.side == side)
            worst = sign * engine.position(account, m).size_lots + resting
            return SPECS[m].max_position_lots - worst + key[1]
        return key * LOT_SCALE[m]

    @staticmethod
    def _mark(engine, market: int) -> int:
        if not 0 <= market < len(SPECS):
            return DEFAULT_PRICE[0]
        return engine.mark(market) or DEFAULT_PRICE[market]

    @staticmethod
    def _oracle_price(engine, market: int, move) -> int:
        if not 0 <= market < len(SPECS):
            return DEFAULT_PRICE[0]
        if move[0] == "abs":
            top = SPECS[market].max_price_ticks
            return {"near_max": top - 100, "max": top, "above_max": top + 1}.get(move[1], move[1])
        base = engine.oracle(market) or DEFAULT_PRICE[market]
        return max(1, base + base * move[1] // 10_000)

    def _amount(self, engine, account: int, amount) -> int:
        """Atoms of a deposit or withdrawal, or one atom either side of an edge: ``("cap", d)``
        the deposit that fills the collateral to 2^61; ``("all", d)`` the whole collateral;
        ``("limit", d)`` the largest withdrawal allowed, min(collateral, equity − max(IM,
        ⌈10% of position notional⌉))."""
        if not isinstance(amount, tuple):
            return amount
        edge, d = amount
        if not 0 <= account < RISK.max_accounts or not self.risk:
            return 1 + d
        if edge == "cap":
            return (1 << 61) - engine.collateral(account) + d
        if edge == "all":
            return engine.collateral(account) + d
        notional = sum(abs(engine.position(account, m).size_lots) * engine.mark(m) * SPECS[m].atoms_per_tick_lot
                       for m in range(len(SPECS)))
        floor = max(engine.initial_margin(account), -(-notional // 10))
        return min(engine.collateral(account), engine.equity(account) - floor) + d

    def _deposit_amount(self, engine, account: int, amount) -> int:
        """As ``_amount``, but only account 5 may become rich: elsewhere a deposit above $10k
        that would be accepted is $10k (so that margin keeps binding). And a deposit that would
        take the engine's all-time deposit total past 2^62 becomes $1000: the numba engine
        keeps that total in an int64 counter with no bound of its own, so it would wrap after a
        few deposits of 2^60 atoms."""
        atoms = self._amount(engine, account, amount)
        if account != WHALE and RICH < atoms <= MAX_AMOUNT_ATOMS:
            atoms = RICH
        if self.risk and engine.totals()[0] + max(atoms, 0) > 1 << 62:
            return 1_000 * USD
        return atoms

    def _margin_amount(self, engine, account: int, market: int, amount) -> int:
        """Atoms to move into an isolated position (< 0: out of it): a plain amount, or
        ``("cross", d)`` all the cross collateral + d, ``("bucket", d)`` −(the bucket + d)."""
        if not isinstance(amount, tuple):
            return amount
        edge, d = amount
        if not self.risk or not 0 <= account < RISK.max_accounts or not 0 <= market < len(SPECS):
            return 1 + d
        if edge == "cross":
            return engine.collateral(account) + d
        return -(engine.position(account, market).margin_atoms + d)

    def _position_lots(self, engine, account: int, market: int) -> int:
        if not self.risk or not 0 <= account < RISK.max_accounts or not 0 <= market < len(SPECS):
            return 0
        return engine.position(account, market).size_lots

    def _reduce_only(self, op: tuple, engine) -> tuple:
        """A reduce-only place: ``holder`` is the lowest account with a position in the market
        (account 0 without any); ``close`` is the side that reduces the position (a buy when
        flat), ``wrong`` the other; the price is ``away`` ticks from the mark on the passive
        side (a sell above it, a buy below); a ``("position", d)`` size is |position| + d lots
        (one size unit when flat)."""
        _, m, a, side_key, tif, away, size_key, step = op
        self.now += step
        if a == "holder":
            a = self._holder(engine, m)
        size = self._position_lots(engine, a, m)
        if side_key in ("close", "wrong"):
            side = 1 if size > 0 else 0
            side = 1 - side if side_key == "wrong" else side
        else:
            side = side_key
        if isinstance(size_key, tuple) and size_key[0] == "position" and size != 0:
            lots = abs(size) + size_key[1]
        elif isinstance(size_key, tuple) and size_key[0] == "position":
            lots = self._lots(1, m, engine, a, side)
        else:
            lots = self._lots(size_key, m, engine, a, side)
        price = 0 if tif == Tif.MARKET else self._mark(engine, m) + (away if side == 1 else -away)
        return _record(CommandKind.PLACE, market=m, account=a, side=side, tif=int(tif), price=price, size=lots,
                       ts=self.now, flags=int(OrderFlag.REDUCE_ONLY))

    def _holder(self, engine, market: int) -> int:
        """The lowest account with a position in ``market`` (0 if none)."""
        held = [b for b in range(RISK.max_accounts) if self._position_lots(engine, b, market) != 0]
        return held[0] if held else 0

    def _holder_trade(self, op: tuple, engine) -> list[tuple]:
        """Records around the holder's position. ``shrink``: another account bids (offers) half
        the holder's long (short) one tick through the mark and the holder sells (buys) it in
        an IOC; ``lift``: the next account takes the side the holder's reduce-only orders
        rest on, 30 ticks through the mark, for the position and two lots (scaled) more."""
        _, m, what, step = op
        self.now += step
        a = self._holder(engine, m)
        size = self._position_lots(engine, a, m)
        closing = 1 if size > 0 else 0
        mark = self._mark(engine, m)
        if what == "shrink":
            lots = max(1, (abs(size) + 1) // 2)
            price = mark - 1 if closing else mark + 1
            return [_record(CommandKind.PLACE, market=m, account=(a + 2) % 5, side=1 - closing, price=price, size=lots,
                            ts=self.now),
                    _record(CommandKind.PLACE, market=m, account=a, side=closing, tif=int(Tif.IOC), price=price,
                            size=lots, ts=self.now)]
        scale = LOT_SCALE[m] if m in LOT_SCALE else 1
        side = 1 - closing
        return [_record(CommandKind.PLACE, market=m, account=(a + 1) % 5, side=side, tif=int(Tif.IOC),
                        price=mark + (30 if side == 0 else -30), size=abs(size) + 2 * scale, ts=self.now)]

    def _deadline(self, when) -> int:
        """``("in", ns)`` ahead of the clock; ``("past", d)`` the clock + d (0: at it); 0 clears."""
        kind, value = when
        return self.now + value if kind in ("in", "past") else value

    def _tick_ts(self, jump) -> int:
        kind, value = jump
        if kind == "back":
            return self.now - value  # a clock that goes backwards: the engine must cope
        if kind == "dt":
            self.now += value
        elif kind == "sample":
            self.now = (self.now // FUNDING_SAMPLE_NS + 1) * FUNDING_SAMPLE_NS + value
        else:
            self.now = (self.now // FUNDING_PERIOD_NS + 1) * FUNDING_PERIOD_NS + value
        return self.now

    def _target(self, ref, engine) -> tuple[int, int, int]:
        """(oid, market, account) of a cancel or amend."""
        if ref[0] == "live":
            live = self._live(engine)
            if live:
                o = live[ref[1] % len(live)]
                return o.oid, o.market, o.account
        if self.seen:
            return self.seen[ref[1] % len(self.seen)], ref[1] % 2, (ref[1] // 2) % 5
        return 1, 0, 0

    # -------------------------------------------------------------- records

    def _record(self, op: tuple, engine) -> tuple:
        kind = op[0]
        if kind == "place":
            _, m, a, side, tif, stp, offset, size_key, expiry, cloid, step = op
            self.now += step
            price = 0 if tif == Tif.MARKET else self._mark(engine, m) + offset
            return _record(CommandKind.PLACE, market=m, account=a, side=side, tif=int(tif), stp=stp, price=price,
                           size=self._lots(size_key, m, engine, a, side), ts=self.now,
                           expires_at=0 if expiry is None else self.now + expiry, **_cloid_words(cloid))
        if kind == "cancel":
            _, ref, step = op
            self.now += step
            oid, m, a = self._target(ref, engine)
            return _record(CommandKind.CANCEL, market=m, account=a, oid=oid, ts=self.now)
        if kind == "amend":
            _, ref, offset, size_key, step = op
            self.now += step
            oid, m, a = self._target(ref, engine)
            current = next((o for o in self._live(engine) if o.oid == oid), None)
            price = 0
            if offset is not None:
                price = (current.price_ticks if current else self._mark(engine, m)) + offset
            side = current.side if current else 0
            size = 0 if size_key is None else self._lots(size_key, m, engine, a, side)
            return _record(CommandKind.AMEND, market=m, account=a, oid=oid, price=price, size=size, ts=self.now)
        if kind == "cancel_all":
            _, a, m = op
            return _record(CommandKind.CANCEL_ALL, market=-1 if m is None else m, account=a, ts=self.now)
        if kind == "deposit":
            return _record(CommandKind.DEPOSIT, account=op[1], size=self._deposit_amount(engine, op[1], op[2]),
                           ts=self.now)
        if kind == "withdraw":
            return _record(CommandKind.WITHDRAW, account=op[1], size=self._amount(engine, op[1], op[2]),
                           ts=self.now)
        if kind == "leverage":
            return _record(CommandKind.SET_LEVERAGE, account=op[1], market=op[2], size=op[3], ts=self.now)
        if kind == "oracle":
            _, m, move, _, step = op
            self.now += step
            return _record(CommandKind.ORACLE, market=m, price=self._oracle_price(engine, m, move), ts=self.now)
        if kind == "trigger":
            _, m, a, side, flags, tif, offset, limit_offset, size_key, step = op
            self.now += step
            mark = self._mark(engine, m)
            size = 0 if size_key == "whole" else self._lots(size_key, m, engine, a, side)
            price = 0 if tif == Tif.MARKET else max(1, mark + offset + limit_offset)
            return _record(CommandKind.PLACE_TRIGGER, market=m, account=a, side=side, tif=int(tif), stp=flags,
                           oid=max(0, mark + offset), price=price, size=size, ts=self.now)
        if kind == "cancel_trigger":
            _, ref, step = op
            self.now += step
            live = [(t, a) for a in range(RISK.max_accounts) for t in engine.triggers(a)]
            if live and ref[0] == "live":
                t, a = live[ref[1] % len(live)]
                return _record(CommandKind.CANCEL_TRIGGER, market=t.market, account=a, oid=t.tid, ts=self.now)
            return _record(CommandKind.CANCEL_TRIGGER, market=ref[1] % 2, account=ref[1] % 5, oid=ref[1] % 7,
                           ts=self.now)
        if kind == "set_mark":
            _, m, offset = op
            return _record(CommandKind.SET_MARK, market=m, price=max(1, self._mark(engine, m) + offset), ts=self.now)
        if kind == "tick":
            return _record(CommandKind.TICK, ts=self._tick_ts(op[1]))
        if kind == "reduce_only":
            return self._reduce_only(op, engine)
        if kind == "schedule":
            return _record(CommandKind.SCHEDULE_CANCEL, account=op[1], expires_at=self._deadline(op[2]), ts=self.now)
        if kind == "margin_mode":
            return _record(CommandKind.SET_MARGIN_MODE, account=op[1], market=op[2], size=op[3], ts=self.now)
        if kind == "adjust_margin":
            return _record(CommandKind.ADJUST_MARGIN, account=op[1], market=op[2],
                           size=self._margin_amount(engine, op[1], op[2], op[3]), ts=self.now)
        raise AssertionError(op)

    def _struct(self, op: tuple, engine):
        kind = op[0]
        if kind in ("deposit", "withdraw"):
            _, a, amount, _ = op
            if kind == "deposit":
                return Deposit(account=a, amount=Decimal(self._deposit_amount(engine, a, amount)) / USD,
                               ts_ns=self.now)
            return Withdraw(account=a, amount=Decimal(self._amount(engine, a, amount)) / USD, ts_ns=self.now)
        if kind == "leverage":
            _, a, m, lev, _ = op
            return SetLeverage(account=a, market=m, leverage=lev, ts_ns=self.now)
        if kind == "schedule":
            return ScheduleCancel(account=op[1], at_ns=self._deadline(op[2]), ts_ns=self.now)
        if kind == "margin_mode":
            mode = {0: "cross", 1: "isolated"}.get(op[3], "hedged")
            return SetMarginMode(account=op[1], market=op[2], mode=mode, ts_ns=self.now)  # type: ignore[arg-type]
        if kind == "adjust_margin":
            atoms = self._margin_amount(engine, op[1], op[2], op[3])
            return AdjustMargin(account=op[1], market=op[2], amount=Decimal(atoms) / USD, ts_ns=self.now)
        _, m, move, _, step = op
        self.now += step
        tick = SPECS[m].tick_size if 0 <= m < len(SPECS) else Decimal("0.01")
        return OracleUpdate(market=m, price=tick * self._oracle_price(engine, m, move), ts_ns=self.now)


# ---------------------------------------------------------------------------- runners


def check_both(fast: Engine, slow: ReferenceEngine, context: object) -> None:
    assert fast.state_hash() == slow.state_hash(), f"state differs after {context!r}"
    fast.check_invariants()
    slow.check_invariants()


def run_stream(ops: list, config: EngineConfig) -> tuple[Engine, ReferenceEngine, list[np.ndarray]]:
    """Apply ``ops`` one command unit at a time to both engines and compare after each."""
    fast, slow = Engine(SPECS, config), ReferenceEngine(SPECS, config)
    resolver = RiskResolver(config)
    all_events = []
    for step, op in enumerate(ops):
        unit = resolver.unit(op, slow)
        slow_events = slow.apply(unit)
        assert_same_events(fast.apply(unit), slow_events, (step, op, unit.tolist()))
        resolver.observe(slow_events)
        check_both(fast, slow, (step, op))
        if config.risk:
            compare_queries(fast, slow)
        all_events.append(slow_events)
    return fast, slow, all_events


def compare_queries(fast: Engine, slow: ReferenceEngine) -> None:
    for a in range(RISK.max_accounts):
        assert fast.collateral(a) == slow.collateral(a)
        assert fast.equity(a) == slow.equity(a)
        assert fast.initial_margin(a) == slow.initial_margin(a)
        assert fast.maintenance_margin(a) == slow.maintenance_margin(a)
        assert fast.triggers(a) == slow.triggers(a)
        for m in range(len(SPECS)):
            assert fast.position(a, m) == slow.position(a, m)
            assert fast.liquidation_price(a, m) == slow.liquidation_price(a, m)
            assert fast.isolated_equity(a, m) == slow.isolated_equity(a, m)
    for m in range(len(SPECS)):
        assert (fast.mark(m), fast.oracle(m), fast.predicted_rate_ppb(m)) == \
            (slow.mark(m), slow.oracle(m), slow.predicted_rate_ppb(m))
        for side in (0, 1):
            for notional in (1, SPECS[m].impact_notional * USD, 10**12):
                assert fast.impact_price(m, side, int(notional)) == slow.impact_price(m, side, int(notional))
    assert (fast.insurance_fund(), fast.fees(), fast.totals()) == (slow.insurance_fund(), slow.fees(), slow.totals())


@pytest.fixture(autouse=True)
def _warm(numba_warm):
    """Compile before Hypothesis starts timing examples."""


@settings(max_examples=300 * SCALE, **FUZZ)
@given(streams)
def test_risk_streams_give_identical_events_hash_and_invariants(ops):
    run_stream(ops, RISK)


@settings(max_examples=200 * SCALE, **FUZZ)
@given(focused_streams)
def test_reduce_only_and_dead_man_streams_give_identical_events_hash_and_invariants(ops):
    run_stream(ops, RISK)


@settings(max_examples=60 * SCALE, **FUZZ)
@given(streams)
def test_streams_with_risk_off_agree(ops):
    """Risk off: account commands are refused (RISK_DISABLED), oracles still drive the mark,
    fills still record the last trade, and nothing else of the risk layer moves."""
    _, _, events = run_stream(ops, NO_RISK)
    kinds = set(np.concatenate(events)["kind"].tolist()) if events else set()
    assert not kinds & {EventKind.BALANCE, EventKind.LEVERAGE, EventKind.FUNDING, EventKind.FUNDING_RATE,
                        EventKind.SCHEDULE}


# ---------------------------------------------------------------------------- a long seeded stream


def _seeded_op(rng: np.random.Generator) -> tuple:
    """One abstract operation drawn with numpy (the same shapes the strategies draw)."""
    def pick(options, weights=None):
        p = None if weights is None else np.array(weights, dtype=float) / sum(weights)
        return options[int(rng.choice(len(options), p=p))]

    m = pick([0, 1, 2, -1], [60, 38, 1, 1])
    a = pick([0, 1, 2, 3, 4, 5, 6, -1], [20, 20, 20, 20, 15, 10, 1, 1])
    step = int(rng.integers(0, 400_000_000))
    size = pick([int(rng.integers(1, 31)), int(rng.integers(30, 201)), "huge", 0, ("limit", int(rng.integers(-1, 2)))],
                [74, 20, 3, 1, 2])
    ref = (pick(["live", "seen"], [3, 1]), int(rng.integers(0, 1_000)))
    kind = pick(["place", "cancel", "amend", "cancel_all", "deposit", "withdraw", "leverage", "oracle", "set_mark",
                 "tick", "reduce_only", "schedule", "holder_trade", "squeeze"],
                [40, 8, 10, 1, 9, 7, 6, 10, 1, 12, 8, 2, 4, 3])
    if kind == "holder_trade":
        return ("holder_trade", m, pick(["shrink", "lift"]), step)
    if kind == "squeeze":
        return ("squeeze", pick([0, 1]), int(rng.integers(10, 40)))
    if kind == "reduce_only":
        tif = pick([Tif.GTC, Tif.IOC, Tif.FOK, Tif.ALO, Tif.MARKET], [6, 2, 1, 1, 2])
        side = pick(["close", "wrong", 0, 1], [12, 2, 1, 1])
        lots = size if rng.random() < 0.4 else ("position", int(rng.integers(-1, 2)))
        holder = "holder" if rng.random() < 0.6 else a
        away = int(rng.integers(0, 21)) if rng.random() < 0.8 else int(rng.integers(-6, 0))
        return ("reduce_only", m, holder, side, tif, away, lots, step)
    if kind == "schedule":
        when = pick([("in", int(rng.integers(1, 61)) * SECOND), ("clear", 0), ("past", int(rng.integers(-1, 1))),
                     ("negative", -1)], [8, 3, 2, 1])
        return ("schedule", a, when, bool(rng.random() < 0.3))
    if kind == "place":
        tif = pick([Tif.GTC, Tif.IOC, Tif.FOK, Tif.ALO, Tif.MARKET], [6, 2, 1, 1, 2])
        offset = pick([int(rng.integers(-6, 7)), int(rng.integers(-30, 31)), int(rng.integers(-300, 301))], [10, 4, 1])
        expiry = None if rng.random() < 0.7 else int(rng.integers(1, 31)) * SECOND
        return ("place", m, a, int(rng.integers(0, 2)), tif, int(rng.integers(0, 3)), offset, size, expiry,
                pick([None, "a"], [9, 1]), step)
    if kind == "cancel":
        return ("cancel", ref, step)
    if kind == "amend":
        offset = None if rng.random() < 0.4 else int(rng.integers(-20, 21))
        return ("amend", ref, offset, None if rng.random() < 0.4 else size, step)
    if kind == "cancel_all":
        return ("cancel_all", a, pick([None, 0, 1]))
    if kind in ("deposit", "withdraw"):
        amount = pick([int(rng.integers(50, 3_001)) * USD, int(rng.integers(1, 5 * USD)), 10**12, 0, -1, 1 << 60,
                       (1 << 60) + 1], [80, 10, 3, 2, 2, 2, 1])
        edge = pick(["cap", None], [1, 12]) if kind == "deposit" else pick(["limit", "all", None], [3, 1, 4])
        if edge is not None:
            amount = (edge, int(rng.integers(-1, 2)))
        return (kind, a, amount, bool(rng.random() < 0.3))
    if kind == "leverage":
        lev = pick([int(rng.integers(1, 4)), int(rng.integers(4, 26)), 0, 10**6], [9, 9, 1, 1])
        return ("leverage", a, m, lev, bool(rng.random() < 0.3))
    if kind == "oracle":
        bp = pick([-200, -50, -10, -1, 0, 1, 10, 50, 200, -3000, -1000, 1000, 3000],
                  [5, 5, 5, 5, 5, 5, 5, 5, 5, 1, 2, 2, 1])
        move = ("bp", bp) if rng.random() < 0.96 else ("abs", pick([0, -1, "near_max", "max", "above_max"]))
        return ("oracle", m, move, bool(rng.random() < 0.3), step)
    if kind == "set_mark":
        return ("set_mark", pick([0, 1]), int(rng.integers(-100, 101)))
    jump = pick([("dt", int(rng.integers(0, 3 * SECOND))), ("sample", int(rng.integers(-1, 2))),
                 ("hour", pick([-1, 0, 1, 2 * SECOND])), ("dt", int(rng.integers(1, 41)) * 60 * SECOND),
                 ("back", int(rng.integers(1, 10 * SECOND)))], [6, 6, 2, 1, 1])
    return ("tick", jump)


def _seeded_margin_ops(rng: np.random.Generator) -> list[tuple]:
    """One time in 25, a margin-mode or margin-moving operation (from its own generator, so
    that the other operations stay those their seed draws)."""
    if rng.random() >= 0.04:
        return []
    a = int(rng.choice([0, 1, 2, 3, 4, 5, 6], p=[0.15, 0.2, 0.2, 0.2, 0.15, 0.05, 0.05]))
    m = int(rng.choice([0, 1, 2], p=[0.55, 0.4, 0.05]))
    if rng.random() < 0.35:
        return [("margin_mode", a, m, int(rng.choice([0, 1, 2], p=[0.45, 0.5, 0.05])), bool(rng.random() < 0.3))]
    roll = rng.random()
    if roll < 0.6:
        amount = int(rng.integers(-300, 301)) * USD
    elif roll < 0.97:
        amount = (["cross", "bucket"][int(rng.integers(0, 2))], int(rng.integers(-1, 2)))
    else:
        amount = 0
    return [("adjust_margin", a, m, amount, bool(rng.random() < 0.3))]


SEEDED_OPS = 10_000
RISK_CODES = {Reject.AMOUNT_INVALID, Reject.ORACLE_PRICE_INVALID, Reject.PRICE_ABOVE_MAX, Reject.LEVERAGE_INVALID,
              Reject.INSUFFICIENT_MARGIN, Reject.POSITION_LIMIT, Reject.WITHDRAW_TOO_LARGE,
              Reject.LEVERAGE_NEEDS_MARGIN, Reject.DEADLINE_IN_PAST, Reject.REDUCE_ONLY_WOULD_INCREASE,
              Reject.MARGIN_MODE_INVALID, Reject.MARGIN_AMOUNT_INVALID, Reject.MARGIN_MODE_NOT_FLAT,
              Reject.NOT_ISOLATED, Reject.MARGIN_ADD_TOO_LARGE, Reject.MARGIN_REMOVE_TOO_LARGE}


def test_seeded_long_risk_stream_in_batches_of_varying_sizes():
    """Several thousand operations (and, among them, a few hundred margin-mode and isolated
    margin ones), applied in chunks of 1 to 400 units per ``apply`` call (the
    resolver sees the state at the start of each chunk, so some references go stale); the
    stream must reach every risk event and reject and every liquidation step (the book, its fee,
    the backstop, auto-deleveraging, the fund's work-off), and both engines agree throughout."""
    rng, sizes, margin_rng = np.random.default_rng(8), np.random.default_rng(11), np.random.default_rng(7)
    fast, slow = Engine(SPECS, RISK), ReferenceEngine(SPECS, RISK)
    resolver = RiskResolver(RISK)
    pending = list(SETUP)
    done = 0
    events = []
    while done < SEEDED_OPS:
        n = int(sizes.choice([1, 3, 10, 60, 400]))
        ops = pending + [op for _ in range(n) for op in [*_seeded_margin_ops(margin_rng), _seeded_op(rng)]]
        pending = []
        chunk = np.concatenate([resolver.unit(op, slow) for op in ops])
        slow_events = slow.apply(chunk)
        assert_same_events(fast.apply(chunk), slow_events, f"chunk after {done} operations")
        resolver.observe(slow_events)
        check_both(fast, slow, f"chunk after {done} operations")
        compare_queries(fast, slow)
        events.append(slow_events)
        done += len(ops)

    everything = np.concatenate(events)
    kinds = set(everything["kind"].tolist())
    # modes are off here (test_modes_differential); triggers are in the Hypothesis streams and test_triggers
    expected = {int(k) for k in EventKind if k not in (EventKind.MODE, EventKind.TRIGGER)}
    assert expected <= kinds, f"never emitted: {sorted(expected - kinds)}"
    codes = set(everything[everything["kind"] == EventKind.REJECTED]["code"].tolist())
    assert RISK_CODES <= codes, f"never produced: {sorted(Reject(c).name for c in RISK_CODES - codes)}"
    reasons = set(everything[everything["kind"] == EventKind.CANCELLED]["reason"].tolist())
    assert {CancelReason.DEAD_MAN, CancelReason.REDUCE_ONLY} <= reasons, f"cancel reasons seen: {sorted(reasons)}"
    funding = everything[everything["kind"] == EventKind.FUNDING]
    assert (funding["remaining"] > 0).any() and (funding["remaining"] < 0).any(), "funding never flowed both ways"
    steps = set(everything[everything["kind"] == EventKind.LIQUIDATION]["reason"].tolist())
    missing = sorted(step.name for step in LiquidationStep if step not in steps)
    assert not missing, f"liquidation steps never reached: {missing}"


# ---------------------------------------------------------------------------- edges to the atom


class Both:
    """Both engines side by side: every command goes to both, and their events, hashes and
    invariants must agree; ``apply`` returns (kind, code) of each event, from the reference."""

    def __init__(self, config: EngineConfig = RISK) -> None:
        self.fast, self.slow = Engine(SPECS, config), ReferenceEngine(SPECS, config)
        self.ts = START_NS
        self.risk = config.risk

    def apply(self, *commands) -> list[tuple[int, int]]:
        self.ts += SECOND
        recs = np.concatenate([_record_array(c, self.ts) for c in commands])
        slow_events = self.slow.apply(recs)
        assert_same_events(self.fast.apply(recs), slow_events, [c for c in commands])
        check_both(self.fast, self.slow, commands)
        if self.risk:
            compare_queries(self.fast, self.slow)
        return [(int(e["kind"]), int(e["code"])) for e in slow_events]


def _record_array(command, ts: int) -> np.ndarray:
    """A ``(kind, fields)`` pair as a raw record, or a command Struct converted."""
    if not isinstance(command, tuple):
        return to_records([command], SPECS)
    kind, fields = command
    return np.array([_record(kind, ts=ts, **fields)], dtype=COMMAND_DTYPE)


def deposit(a: int, atoms: int) -> tuple:
    return CommandKind.DEPOSIT, dict(account=a, size=atoms)


def withdraw(a: int, atoms: int) -> tuple:
    return CommandKind.WITHDRAW, dict(account=a, size=atoms)


def leverage(a: int, m: int, lev: int) -> tuple:
    return CommandKind.SET_LEVERAGE, dict(account=a, market=m, size=lev)


def oracle(m: int, ticks: int) -> tuple:
    return CommandKind.ORACLE, dict(market=m, price=ticks)


def place(a: int, m: int, side: int, ticks: int, lots: int, tif: int = Tif.GTC) -> tuple:
    return CommandKind.PLACE, dict(market=m, account=a, side=side, tif=int(tif), price=ticks, size=lots)


BALANCE = (int(EventKind.BALANCE), 0)
LEVERAGE = (int(EventKind.LEVERAGE), 0)


def rejected(code: Reject) -> tuple[int, int]:
    return int(EventKind.REJECTED), int(code)


def _long_and_short(both: Both, lots: int) -> None:
    """Account 1 long and account 2 short ``lots`` of NVDA at 100.03, with no orders left."""
    both.apply(oracle(0, 10_003), deposit(1, 2_000 * USD), deposit(2, 2_000 * USD))
    both.apply(place(1, 0, 0, 10_003, lots), place(2, 0, 1, 10_003, lots, Tif.IOC))
    assert both.slow.position(1, 0).size_lots == lots and both.slow.open_orders(1) == []


def test_withdrawal_limit_to_the_atom():
    """Equity − amount ≥ max(IM, ⌈10% of notional⌉) and amount ≤ collateral, each to the atom;
    an odd notional so that the 10% rounds."""
    both = Both()
    _long_and_short(both, 12_345)  # $123.49 at 20×: IM $6.17 < 10% = $12.35
    notional = 12_345 * 10_003
    floor = -(-notional // 10)
    assert floor > both.slow.initial_margin(1) and notional % 10 != 0
    room = both.slow.equity(1) - floor
    assert both.apply(withdraw(1, room + 1)) == [rejected(Reject.WITHDRAW_TOO_LARGE)]
    assert both.apply(withdraw(1, room)) == [BALANCE]
    assert both.slow.equity(1) == floor
    # a profit: equity above the collateral, yet only the collateral can leave
    both.apply(oracle(0, 12_000))
    both.apply(deposit(1, USD))
    collateral = both.slow.collateral(1)
    assert both.slow.equity(1) - collateral > -(-12_345 * 12_000 // 10)
    assert both.apply(withdraw(1, collateral + 1)) == [rejected(Reject.WITHDRAW_TOO_LARGE)]
    assert both.apply(withdraw(1, collateral)) == [BALANCE]


def test_leverage_change_needs_margin_to_the_atom():
    both = Both()
    _long_and_short(both, 20_001)  # $200.01 at mark
    exposure = 20_001 * 10_003
    at_2x = -(-exposure // 2)  # IM at 2× (the tier allows 20×)
    both.apply(withdraw(1, both.slow.equity(1) - at_2x))
    assert both.slow.equity(1) == at_2x
    assert both.apply(leverage(1, 0, 1)) == [rejected(Reject.LEVERAGE_NEEDS_MARGIN)]
    assert both.apply(leverage(1, 0, 2)) == [LEVERAGE]
    assert both.slow.initial_margin(1) == at_2x
    assert both.apply(leverage(1, 0, 20)) == [LEVERAGE]
    both.apply(withdraw(1, 1))
    assert both.apply(leverage(1, 0, 2)) == [rejected(Reject.LEVERAGE_NEEDS_MARGIN)]
    assert both.apply(leverage(1, 0, 21)) == [rejected(Reject.LEVERAGE_INVALID)]


def test_deposit_caps_to_the_atom():
    both = Both()
    assert both.apply(deposit(WHALE, MAX_AMOUNT_ATOMS + 1)) == [rejected(Reject.AMOUNT_INVALID)]
    assert both.apply(deposit(WHALE, MAX_AMOUNT_ATOMS)) == [BALANCE]
    assert both.apply(deposit(WHALE, MAX_AMOUNT_ATOMS - 1)) == [BALANCE]
    assert both.apply(deposit(WHALE, 2)) == [rejected(Reject.AMOUNT_INVALID)]  # past 2^61
    assert both.apply(deposit(WHALE, 1)) == [BALANCE]
    assert both.slow.collateral(WHALE) == 1 << 61
    assert both.apply(deposit(WHALE, 1)) == [rejected(Reject.AMOUNT_INVALID)]
    assert both.apply(withdraw(WHALE, MAX_AMOUNT_ATOMS + 1)) == [rejected(Reject.AMOUNT_INVALID)]
    assert both.apply(deposit(0, 0), withdraw(0, 0), withdraw(0, 1)) == [
        rejected(Reject.AMOUNT_INVALID), rejected(Reject.AMOUNT_INVALID), rejected(Reject.WITHDRAW_TOO_LARGE)]


def test_position_limit_to_the_atom():
    """TSLA's largest position is 1152 lots: a buy to exactly that many is accepted, one more lot
    is POSITION_LIMIT, counting the account's resting bids as filled."""
    both = Both()
    limit = SPECS[1].max_position_lots
    assert limit == 1_152
    both.apply(oracle(1, 1_000), deposit(WHALE, 10**12))
    assert both.apply(place(WHALE, 1, 0, 990, 152))[0] == (int(EventKind.ACCEPTED), 0)
    assert both.apply(place(WHALE, 1, 0, 995, limit - 152 + 1)) == [rejected(Reject.POSITION_LIMIT)]
    assert both.apply(place(WHALE, 1, 0, 995, limit - 152))[0] == (int(EventKind.ACCEPTED), 0)
    # asks count the other way: from long 0, all 1152 lots short is within the limit
    assert both.apply(place(WHALE, 1, 1, 1_010, limit + 1)) == [rejected(Reject.POSITION_LIMIT)]
    assert both.apply(place(WHALE, 1, 1, 1_010, limit))[0] == (int(EventKind.ACCEPTED), 0)


@pytest.mark.parametrize("config", [RISK, NO_RISK], ids=["risk", "no_risk"])
def test_account_and_oracle_commands_rejected_in_conversion_or_with_risk_off(config):
    """Rejects decided while converting Structs (a fraction of an atom, an unknown account or
    market, an off-tick oracle price) and, with risk off, RISK_DISABLED after the pre-reject:
    the same events from both engines, with the fields each command's reject carries."""
    both = Both(config)
    events = both.apply(Deposit(account=1, amount=Decimal("0.0000001")), Withdraw(account=-1, amount=Decimal(1)),
                        SetLeverage(account=1, market=7, leverage=2), SetLeverage(account=1, market=0, leverage=-1),
                        OracleUpdate(market=0, price=Decimal("100.001")), OracleUpdate(market=3, price=Decimal(1)),
                        Deposit(account=1, amount=Decimal(5)), Withdraw(account=7, amount=Decimal(1)),
                        SetLeverage(account=1, market=0, leverage=3), OracleUpdate(market=0, price=Decimal(100)))
    disabled = rejected(Reject.RISK_DISABLED)
    assert events == [rejected(Reject.AMOUNT_INVALID), rejected(Reject.UNKNOWN_ACCOUNT),
                      rejected(Reject.UNKNOWN_MARKET), rejected(Reject.LEVERAGE_INVALID),
                      rejected(Reject.PRICE_OFF_TICK), rejected(Reject.UNKNOWN_MARKET),
                      BALANCE if config.risk else disabled,
                      rejected(Reject.UNKNOWN_ACCOUNT) if config.risk else disabled,
                      LEVERAGE if config.risk else disabled,
                      (int(EventKind.MARK), 0)]


# ---------------------------------------------------------------------------- auto-deleveraging

# (deposit USD, lots, ask offset from 100.00 in ticks) of each short; few values, so that
# shorts alike in every number (equal ADL keys, decided by account id) are common
shorts = st.lists(st.tuples(st.sampled_from([20, 40, 75, 150]), st.sampled_from([1_103, 2_503, 7_919]),
                            st.sampled_from([-150, -1, 0, 97])), min_size=1, max_size=4)


@settings(max_examples=40 * SCALE, **FUZZ)
@given(shorts, st.integers(0, 20 * USD), st.sampled_from([500, 1_500, 3_000]),
       st.lists(st.integers(0, 250), max_size=3), st.integers(1, 4), st.booleans())
def test_gaps_through_bankruptcy_agree_on_adl_order_shares_and_the_work_off(shorts, spare, drop_bp, bid_offsets,
                                                                         ticks, isolated):
    """Accounts 1–4 rest asks (one per short); account 0 takes them all on its initial margin at
    20× plus ``spare``; the oracle falls ``drop_bp``; the whale bids a little below the new mark
    (something for the fund to sell to); then ``ticks`` ticks liquidate account 0, deleverage the
    shorts and work the fund's position off; ``isolated``: account 0's long is isolated (its
    bucket is the IM of its fills). Both engines agree throughout (events, hash, queries);
    afterwards no account holding a position has negative equity."""
    both = Both()
    both.apply(oracle(0, 10_000), deposit(WHALE, 10**6 * USD))
    if isolated:
        both.apply((CommandKind.SET_MARGIN_MODE, dict(account=0, market=0, size=1)))
    total = 0
    for k, (usd, lots, offset) in enumerate(shorts):
        both.apply(deposit(1 + k, usd * USD), place(1 + k, 0, 1, 10_000 + offset, lots))
        total += lots
    limit = 10_256  # the top of the band at 100.00
    both.apply(deposit(0, -(-total * limit // 20) + spare), place(0, 0, 0, limit, total, Tif.IOC))
    assert both.slow.position(0, 0).size_lots == total
    low = 10_000 - drop_bp
    both.apply(oracle(0, low), *(place(WHALE, 0, 0, low - offset, 1_103) for offset in bid_offsets))
    for _ in range(ticks):
        both.apply((CommandKind.TICK, {}))
    for a in range(RISK.max_accounts):
        if both.slow.position(a, 0).size_lots != 0:
            assert both.slow.equity(a) >= 0, f"account {a} holds a position with negative equity"
