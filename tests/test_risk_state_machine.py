"""A Hypothesis state machine over the risk layer: the numba ``Engine`` and the pure-Python
``ReferenceEngine``, both with ``risk=True``, are driven side by side through random
deposits, withdrawals, leverage changes, margin-mode changes and isolated margin moves
(accounts 2 and 3 start isolated in one market each), orders of every time in force (GTC, IOC, FOK, ALO,
market), cancels, amends, oracle moves (±30% jumps included) and ticks that cross 5 s sample
and hour settlement boundaries, so that funding is settled and accounts are liquidated.

The markets, the strategies of abstract operations and their resolution into command records
come from ``test_risk_differential`` (``RiskResolver``); cancels and amends also name orders
from a bundle of the order ids seen in ACCEPTED events, and the accounts come from a bundle.
Three rules steer the streams to the risk paths: ``trade`` (a resting order and one against it,
large enough for margin to bind), ``squeeze`` (withdraw all an account may, then move the
oracle against its position in steps, ticking after each, until it is liquidated) and ``gap``
(the same, in one jump past bankruptcy).

After every rule, for each command it applied:

* both engines gave identical events, and identical ``state_hash()``, account and market
  queries (``check_both``, ``compare_queries``); both keep their internal invariants;
* conservation from the public queries, to the atom:
  ``Σ collateral + insurance fund + Σ isolated margin + fees − Σ position cost = deposits −
  withdrawals``
  (the cost basis is money that left the collateral into open positions; the insurance fund's
  backstop positions count like any other);
* per market, long lots = short lots over all positions (the fund's included);
* funding: a Tick settles iff it reaches the next hour boundary, then each market gives one
  FUNDING event per position open before the tick (ascending account) with the credit
  ``⌊−size·oracle·atl·rate / 10⁹⌋``, and one FUNDING_RATE event whose remainder is
  ``−Σ credits ≥ 0``: the positions never receive more than they pay, and the rest goes to the
  insurance fund; with no liquidation in that tick, every balance (collateral plus isolated
  margin) moves by exactly its credits
  and the fund by the remainders too. The sum is over every position, the fund's included:
  when the fund holds a backstop position it pays (or receives) like a trader, and then the
  traders alone may net receive what the fund pays.

A last test runs the machine with a fixed seed and asserts that over a few hundred steps the
streams reach funding settlements and liquidations (on the book, by the backstop, with
auto-deleveraging, and the fund's work-off), so that the machine cannot quietly stop exercising
them. ``AFTERHOURS_FUZZ_SCALE`` multiplies the
number of examples.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import numpy as np
from command_streams import _record, weighted
from hypothesis import Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from test_differential import assert_same_events
from test_risk_differential import (
    FUZZ,
    RISK,
    SCALE,
    SECOND,
    SETUP,
    SPECS,
    RiskResolver,
    as_struct,
    check_both,
    cloids,
    compare_queries,
    deposit_amounts,
    expiries,
    leverages,
    margin_amounts,
    margin_modes,
    markets,
    offsets,
    oracle_moves,
    sides,
    size_keys,
    steps,
    stps,
    tick_jumps,
    tifs,
    withdraw_amounts,
)

from engine.codes import CommandKind, EventKind, LiquidationStep, Tif
from engine.commands import COMMAND_DTYPE
from engine.engine import Engine
from engine.funding import PPB, RATE_CAP_1H_PPB
from engine.reference import ReferenceEngine
from engine.settlement import FUNDING_PERIOD_NS

N_ACCOUNTS = RISK.max_accounts
FUND = N_ACCOUNTS  # the insurance fund's row: positions and funding, but no commands
HOLDERS = range(N_ACCOUNTS + 1)  # every row that can hold a position

# Event kinds (and liquidation steps, as ("liquidation", step)) seen by every machine in this
# process, and the steps run; the seeded test below reads them.
TALLY: Counter = Counter()

hostile_accounts = st.sampled_from([N_ACCOUNTS, -1])
cancel_as = weighted((6, st.just("owner")), (1, st.just("other")))
amend_prices = weighted((2, st.none()), (5, st.integers(-20, 20)))
amend_sizes = weighted((2, st.none()), (5, size_keys))
jumps = st.sampled_from([-3000, 3000])  # ±30%
past_the_hour = st.sampled_from([0, 1, 2 * SECOND])
maker_tifs = st.sampled_from([Tif.GTC, Tif.GTC, Tif.ALO])
taker_tifs = st.sampled_from([Tif.IOC, Tif.MARKET, Tif.FOK, Tif.GTC])
squeezes = st.sampled_from([25, 50, 100, 200, 500])  # basis points against the position, per move
pair_sizes = weighted((3, st.integers(100, 240)), (3, st.integers(10, 100)), (1, st.integers(1, 10)))


class Applied(NamedTuple):
    """One command unit applied to both engines, with what the checks need from before it."""

    context: tuple
    unit: np.ndarray
    fast: np.ndarray
    slow: np.ndarray
    sizes: dict  # (holder, market) -> lots, before the command
    balances: list  # collateral per holder (the fund last), before the command
    after: list  # the same, after it
    oracles: list  # per market, after it
    settles: bool  # a Tick that reaches the next hour boundary


class RiskStateMachine(RuleBasedStateMachine):
    accounts = Bundle("accounts")
    orders = Bundle("orders")  # (oid, market, account) of every ACCEPTED event

    def __init__(self) -> None:
        super().__init__()
        self.fast, self.slow = Engine(SPECS, RISK), ReferenceEngine(SPECS, RISK)
        self.resolver = RiskResolver(RISK)
        self.next_hour = 0
        self.applied: list[Applied] = []

    # ------------------------------------------------------------------ driving both engines

    def _apply(self, unit: np.ndarray, context: tuple) -> np.ndarray:
        """Apply one command unit to both engines; the invariants compare what it did."""
        slow = self.slow
        sizes = {(a, m): slow.position(a, m).size_lots for a in HOLDERS for m in range(len(SPECS))}
        balances = self._balances()
        settles = False
        if unit[0]["kind"] == CommandKind.TICK and self.next_hour and int(unit[0]["ts"]) >= self.next_hour:
            settles = True
            self.next_hour = (int(unit[0]["ts"]) // FUNDING_PERIOD_NS + 1) * FUNDING_PERIOD_NS
        slow_events = slow.apply(unit)
        fast_events = self.fast.apply(unit)
        self.resolver.observe(slow_events)
        self.applied.append(Applied(context, unit, fast_events, slow_events, sizes, balances, self._balances(),
                                    [slow.oracle(m) for m in range(len(SPECS))], settles))
        TALLY.update(slow_events["kind"].tolist())
        liquidations = slow_events[slow_events["kind"] == EventKind.LIQUIDATION]
        TALLY.update(("liquidation", int(step)) for step in liquidations["reason"].tolist())
        credits = slow_events[slow_events["kind"] == EventKind.FUNDING]["remaining"]
        TALLY.update(funding_paid=int((credits < 0).sum()), funding_received=int((credits > 0).sum()))
        return slow_events

    def _balances(self) -> list[int]:
        """Each account's collateral plus its isolated margin (funding of an isolated position
        goes to its bucket), then the fund's."""
        return [self.slow.collateral(a) + sum(self.slow.position(a, m).margin_atoms for m in range(len(SPECS)))
                for a in range(N_ACCOUNTS)] + [self.slow.insurance_fund()]

    def _op(self, op: tuple) -> np.ndarray:
        """Resolve an abstract operation (``test_risk_differential`` shapes) and apply it."""
        return self._apply(self.resolver.unit(op, self.slow), op)

    def _raw(self, kind: int, context: tuple, **fields) -> np.ndarray:
        self.resolver.now += fields.pop("step", 0)
        unit = np.array([_record(kind, ts=self.resolver.now, **fields)], dtype=COMMAND_DTYPE)
        return self._apply(unit, context)

    # ------------------------------------------------------------------ rules

    @initialize(target=accounts)
    def setup(self):
        """Both oracles (which start the funding clocks), then money in every account."""
        for op in SETUP:
            self._op(op)
        self.next_hour = (self.resolver.now // FUNDING_PERIOD_NS + 1) * FUNDING_PERIOD_NS
        return multiple(*range(N_ACCOUNTS))

    def _begin(self) -> None:
        self.applied = []
        TALLY["steps"] += 1

    @rule(a=weighted((12, accounts), (1, hostile_accounts)), amount=deposit_amounts, struct=as_struct)
    def deposit(self, a, amount, struct):
        self._begin()
        self._op(("deposit", a, amount, struct))

    @rule(a=weighted((12, accounts), (1, hostile_accounts)), amount=withdraw_amounts, struct=as_struct)
    def withdraw(self, a, amount, struct):
        self._begin()
        self._op(("withdraw", a, amount, struct))

    @rule(a=accounts, m=markets, lev=leverages, struct=as_struct)
    def set_leverage(self, a, m, lev, struct):
        self._begin()
        self._op(("leverage", a, m, lev, struct))

    @rule(a=accounts, m=markets, mode=margin_modes, struct=as_struct)
    def set_margin_mode(self, a, m, mode, struct):
        self._begin()
        self._op(("margin_mode", a, m, mode, struct))

    @rule(a=accounts, m=markets, amount=margin_amounts, struct=as_struct)
    def adjust_margin(self, a, m, amount, struct):
        self._begin()
        self._op(("adjust_margin", a, m, amount, struct))

    @rule(target=orders, m=markets, a=weighted((12, accounts), (1, hostile_accounts)), side=sides, tif=tifs,
          stp=stps, offset=offsets, size=size_keys, expiry=expiries, cloid=cloids,
          step=steps)
    def place(self, m, a, side, tif, stp, offset, size, expiry, cloid, step):
        self._begin()
        events = self._op(("place", m, a, side, tif, stp, offset, size, expiry, cloid, step))
        accepted = events[events["kind"] == EventKind.ACCEPTED]
        return multiple(*((int(e["oid"]), int(e["market"]), int(e["account"])) for e in accepted))

    @rule(target=orders, m=markets, maker=accounts, taker=accounts, side=sides, maker_tif=maker_tifs,
          taker_tif=taker_tifs, offset=st.integers(-3, 3), size=pair_sizes, step=steps)
    def trade(self, m, maker, taker, side, maker_tif, taker_tif, offset, size, step):
        """A resting order and an order against it at its price: up to about $2400 of NVDA or
        $12k of TSLA, large enough for margin to bind (and for a move of a few percent to
        liquidate an account that has withdrawn all it may), if both pass their risk checks."""
        self._begin()
        return multiple(*self._trade(m, maker, taker, side, maker_tif, taker_tif, offset, size, step))

    def _trade(self, m, maker, taker, side, maker_tif, taker_tif, offset, size, step) -> list[tuple[int, int, int]]:
        made = self._op(("place", m, maker, side, maker_tif, 0, offset, size, None, None, step))
        price = self.slow.mark(m) + offset if 0 <= m < len(SPECS) else 0
        placed = made[made["kind"] == EventKind.ACCEPTED]
        if len(placed):
            price = int(placed[0]["price"])
        offset = price - self.resolver._mark(self.slow, m)
        took = self._op(("place", m, taker, 1 - side, taker_tif, 0, offset, size, None, None, 0))
        accepted = np.concatenate([made, took])
        accepted = accepted[accepted["kind"] == EventKind.ACCEPTED]
        return [(int(e["oid"]), int(e["market"]), int(e["account"])) for e in accepted]

    @rule(order=orders, who=cancel_as, step=steps)
    def cancel(self, order, who, step):
        """Cancel an order that was accepted (it may have traded or expired since), by its
        owner or by another account."""
        self._begin()
        oid, m, a = order
        account = a if who == "owner" else (a + 1) % N_ACCOUNTS
        self._raw(CommandKind.CANCEL, ("cancel", order, who), market=m, account=account, oid=oid, step=step)

    @rule(order=orders, offset=amend_prices, size=amend_sizes, step=steps)
    def amend(self, order, offset, size, step):
        """Amend an order that was accepted: a price relative to its own (or to the mark once
        it is gone) and/or a size key (neither: AMEND_NO_CHANGE)."""
        self._begin()
        oid, m, a = order
        current = next((o for o in self.slow.open_orders(a) if o.oid == oid), None)
        price = 0
        if offset is not None:
            price = (current.price_ticks if current else self.slow.mark(m)) + offset
        lots = 0 if size is None else self.resolver._lots(size, m, self.slow, a, current.side if current else 0)
        self._raw(CommandKind.AMEND, ("amend", order, offset, size), market=m, account=a, oid=oid, price=price,
                  size=lots, step=step)

    def _has_open_orders(self) -> bool:
        return any(self.slow.open_orders(a) for a in range(N_ACCOUNTS))

    @precondition(_has_open_orders)
    @rule(i=st.integers(0, 1_000), offset=amend_prices, size=amend_sizes, step=steps)
    def amend_open_order(self, i, offset, size, step):
        """Amend the i-th open order (so that amends keep meeting live orders)."""
        self._begin()
        self._op(("amend", ("live", i), offset, size, step))

    @rule(a=accounts, m=st.sampled_from([None, 0, 1]))
    def cancel_all(self, a, m):
        self._begin()
        self._op(("cancel_all", a, m))

    @rule(m=markets, move=oracle_moves, struct=as_struct, step=steps)
    def oracle(self, m, move, struct, step):
        self._begin()
        self._op(("oracle", m, move, struct, step))

    @rule(m=st.sampled_from([0, 1]), bp=jumps, struct=as_struct)
    def oracle_jump(self, m, bp, struct):
        """±30% at once (NVDA refuses +30% from $100: its max price is $120)."""
        self._begin()
        self._op(("oracle", m, ("bp", bp), struct, 0))

    def _positions(self) -> list[tuple[int, int, int]]:
        """(account, market, lots) of every open position of an account (not the fund)."""
        return [(a, m, size) for a in range(N_ACCOUNTS) for m in range(len(SPECS))
                if (size := self.slow.position(a, m).size_lots) != 0]

    @rule(target=orders, i=st.integers(0, 1_000), lots=pair_sizes, drain=st.sampled_from([True, True, False]),
          bp=squeezes, moves=st.integers(1, 16))
    def squeeze(self, i, lots, drain, bp, moves):
        """Against one account's position (with none open, after a trade of ``lots`` between
        two accounts): maybe withdraw all it may, then move the oracle the wrong way for it
        ``bp`` at a time, with a tick a second after each move (liquidations happen on ticks),
        until the account is liquidated or ``moves`` moves were made. Small steps find equity
        between 2/3 of maintenance and maintenance (a liquidation on the book); large ones go
        past it (the backstop)."""
        self._begin()
        opened = []
        if not self._positions():
            opened = self._trade(i % 2, i % 5, (i + 1) % 5, i // 2 % 2, Tif.GTC, Tif.IOC, 0, lots, 0)
        if not self._positions():
            return multiple(*opened)
        a, m, size = self._positions()[i % len(self._positions())]
        if drain:
            self._op(("withdraw", a, ("limit", 0), False))
        for _ in range(moves):
            self._op(("oracle", m, ("bp", -bp if size > 0 else bp), False, SECOND))
            events = self._op(("tick", ("dt", SECOND)))
            if (events["kind"] == EventKind.LIQUIDATION).any():
                break
        return multiple(*opened)

    @rule(target=orders, i=st.integers(0, 1_000), lots=pair_sizes)
    def gap(self, i, lots):
        """Through bankruptcy at once: one account's position (after a trade of ``lots`` between
        two accounts when none is open), drained to its withdrawal limit, then the oracle 30%
        against it (NVDA's max price, +20%, against a short) and a tick a second later: the
        backstop, and auto-deleveraging for what the fund cannot cover."""
        self._begin()
        opened = []
        if not self._positions():
            opened = self._trade(i % 2, i % 5, (i + 1) % 5, i // 2 % 2, Tif.GTC, Tif.IOC, 0, lots, 0)
        if not self._positions():
            return multiple(*opened)
        a, m, size = self._positions()[i % len(self._positions())]
        self._op(("withdraw", a, ("limit", 0), False))
        move = ("bp", -3000) if size > 0 else ("abs", "max") if m == 0 else ("bp", 3000)
        self._op(("oracle", m, move, False, SECOND))
        self._op(("tick", ("dt", SECOND)))
        return multiple(*opened)

    @rule(jump=tick_jumps)
    def tick(self, jump):
        """A tick a few seconds on, at a 5 s sample boundary ±1 ns, at an hour ±1 ns, minutes
        on, or back in time."""
        self._begin()
        self._op(("tick", jump))

    @rule(d=past_the_hour)
    def tick_past_the_hour(self, d):
        """A tick at (or just after) the next hour boundary: funding settles, then liquidations."""
        self._begin()
        self._op(("tick", ("hour", d)))

    # ------------------------------------------------------------------ invariants

    @invariant()
    def engines_agree(self):
        """Identical events for each command, then identical hash and queries; both engines'
        internal invariants (engine/invariants.py and the reference's own)."""
        for done in self.applied:
            assert_same_events(done.fast, done.slow, (done.context, done.unit.tolist()))
        check_both(self.fast, self.slow, [done.context for done in self.applied])
        compare_queries(self.fast, self.slow)

    @invariant()
    def conservation_from_queries(self):
        for engine in (self.fast, self.slow):
            collateral = sum(engine.collateral(a) for a in range(N_ACCOUNTS)) + engine.insurance_fund()
            margin = sum(engine.position(a, m).margin_atoms for a in HOLDERS for m in range(len(SPECS)))
            cost = sum(engine.position(a, m).cost_atoms for a in HOLDERS for m in range(len(SPECS)))
            deposits, withdrawals = engine.totals()
            assert collateral + margin + engine.fees() - cost == deposits - withdrawals, (
                f"{type(engine).__name__}: collateral {collateral} + isolated margin {margin} + fees "
                f"{engine.fees()} - cost {cost} != deposits {deposits} - withdrawals {withdrawals}")

    @invariant()
    def long_equals_short(self):
        for engine in (self.fast, self.slow):
            for m in range(len(SPECS)):
                sizes = [engine.position(a, m).size_lots for a in HOLDERS]
                longs, shorts = sum(s for s in sizes if s > 0), -sum(s for s in sizes if s < 0)
                assert longs == shorts, f"{type(engine).__name__} market {m}: long {longs} != short {shorts}"

    @invariant()
    def funding_settlements_pay_out_no_more_than_they_take(self):
        for done in self.applied:
            check_funding(done)


def check_funding(done: Applied) -> None:
    """The FUNDING and FUNDING_RATE events of one command against the positions before it."""
    events = done.slow
    funding = events[events["kind"] == EventKind.FUNDING]
    rates = events[events["kind"] == EventKind.FUNDING_RATE]
    if not done.settles:
        assert len(funding) == len(rates) == 0, f"funding outside an hour boundary: {done.context}"
        return
    assert rates["market"].tolist() == list(range(len(SPECS))), f"not every market settled: {done.context}"
    credits = [0] * (N_ACCOUNTS + 1)
    for r in rates:
        m, rate, oracle = int(r["market"]), int(r["oid"]), int(r["price"])
        assert abs(rate) <= RATE_CAP_1H_PPB and oracle == done.oracles[m]
        paid = funding[funding["market"] == m]
        holders = [(a, done.sizes[a, m]) for a in HOLDERS if done.sizes[a, m] != 0]
        assert list(zip(paid["account"].tolist(), paid["size"].tolist())) == holders, (
            f"market {m}: funding paid to {paid[['account', 'size']].tolist()}, positions were {holders}")
        atl = SPECS[m].atoms_per_tick_lot
        total = 0
        for e in paid:
            size, credit = int(e["size"]), int(e["remaining"])
            assert (int(e["oid"]), int(e["price"])) == (rate, oracle), "a payment at another rate or oracle"
            assert credit == (-size * oracle * atl * rate) // PPB, f"market {m} account {e['account']}: {credit}"
            credits[int(e["account"])] += credit
            total += credit
        assert total <= 0, f"market {m}: positions were paid {total} atoms more than they paid"
        assert int(r["remaining"]) == -total, f"market {m}: remainder {r['remaining']}, credits sum to {total}"
        credits[FUND] += -total
    if not (events["kind"] == EventKind.LIQUIDATION).any():
        assert [b - a for a, b in zip(done.balances, done.after)] == credits, "balances moved by other than funding"


# ---------------------------------------------------------------------------- tests

MACHINE = settings(max_examples=60 * SCALE, stateful_step_count=50, **FUZZ)


def test_risk_state_machine(numba_warm):
    run_state_machine_as_test(RiskStateMachine, settings=MACHINE)


def _seeded_machine() -> RiskStateMachine:
    return RiskStateMachine()


SEED, SEEDED_EXAMPLES, SEEDED_STEPS = 4, 20, 30


def test_seeded_run_reaches_funding_and_liquidations(numba_warm):
    """With a fixed seed, over a few hundred steps the machine settles funding with money
    moving both ways, liquidates accounts on the book and by the backstop, deleverages
    counterparties of a bankruptcy and works the fund's positions off through the book. (The
    liquidation fee needs an IOC that fills, which is rarer; it is not required here.)"""
    TALLY.clear()
    run_state_machine_as_test(
        seed(SEED)(_seeded_machine),
        settings=settings(MACHINE, max_examples=SEEDED_EXAMPLES, stateful_step_count=SEEDED_STEPS, database=None,
                          phases=[Phase.generate]),
    )
    assert TALLY["steps"] >= 400, f"only {TALLY['steps']} steps ran"
    reached = {"FILL": TALLY[EventKind.FILL], "FUNDING_RATE": TALLY[EventKind.FUNDING_RATE],
               "FUNDING paid": TALLY["funding_paid"], "FUNDING received": TALLY["funding_received"],
               **{f"LIQUIDATION {step.name}": TALLY["liquidation", int(step)] for step in LiquidationStep
                  if step != LiquidationStep.FEE}}
    missing = [name for name, n in reached.items() if n == 0]
    assert not missing, f"never reached in {TALLY['steps']} steps: {missing} (counts: {reached})"
