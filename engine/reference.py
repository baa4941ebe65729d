"""The reference engine: slow, obvious, and the oracle for the numba engine.

It implements docs/matching.md and the risk layer (mechanics.md §2–§4) to the letter with
plain Python containers and Python integers, one record at a time, so that a differential
test can hold ``engine.Engine`` to the same events and the same ``state_hash()``.

Layout
    * ``_Market``: the spec's integers, ``mark``, ``base`` and one book per side. A book is a
      ``SortedDict`` price_ticks -> ``_Level`` (a ``deque`` of ``_Order`` in FIFO order plus
      the level's total lots); the best bid is the last key, the best ask the first. Also
      the price state (oracle, last trade, the mark's EMA) and the funding state (premium
      samples of the hour, the clock of the next sample and settlement, the rate, the OI).
    * ``_orders``: oid -> ``_Order`` for every open order (and, while its command runs, the
      taker, which is registered when accepted and forgotten if it does not rest).
    * ``_by_account``: account -> ``SortedSet`` of its open oids (ascending oid = acceptance
      order, which cancel-all and ``open_orders`` use).
    * ``_expiry``: ``SortedList`` of ``(expires_at, oid)`` for open orders with an expiry.
    * ``_free``: the LIFO free-slot stack, bottom first; ``pop()`` takes the top.
    * Risk (``EngineConfig.risk``): ``_accounts`` account -> ``_Account`` (collateral, open
      position count; the insurance fund is account ``max_accounts``, which no command can
      address), ``_positions`` (account, market) -> ``_Position`` (signed size, cost basis,
      leverage, the resting orders' lots and notionals per side, realized PnL, funding, the
      margin mode and an isolated position's margin bucket); both created on first use. The fee account and the deposit/withdrawal totals are
      plain integers. ``_deadlines``: account -> dead-man deadline (ns), only those set.
    * An order's ``flags`` holds ``OrderFlag`` bits (``REDUCE_ONLY``).

Rounding (every figure in atoms; the fast engine splits products to stay inside int64,
this one forms them whole):
    fee ``⌈notional·ppm / 1e6⌉`` (a rebate is negative); reducing a position removes the
    cost ``⌈cost·closing / |size|⌉``; IM ``⌈exposure / lev⌉``; MM the exact tier sum rounded
    up; funding credit ``⌊−size·oracle·atl·rate / 1e9⌋``; premiums, means and rates
    truncated toward zero; an ADL share ``⌈need·lots / lots left⌉``, and the ADL ranking
    keys compared as ``Fraction`` s (the fast engine uses Euclid's steps instead).

Invariants (``check_invariants``, between commands)
    Books are not crossed; a level is non-empty and its total is the sum of its orders'
    remaining, each > 0; every open order sits in exactly one level, inside its market's
    window, and in ``_orders``, its account's set and (iff it has an expiry) ``_expiry``;
    free slots and live slots partition ``range(max_orders)``. Risk: ``Σ collateral + Σ
    isolated margin + fees − Σ cost = deposits − withdrawals``; only an open isolated
    position holds margin; long lots = short lots = OI per market; each
    position's order lots and notionals are the sums over its account's resting orders;
    open-position counts agree; the insurance fund has no open order. Every resting reduce-only
    order's account holds a position on the other side of it; deadlines are positive.

Known limitations
    Orders of magnitude slower than the numba engine; ``state_hash`` and the free stack cost
    O(max_orders), so tests use a small pool. The closed-hours maths of
    ``engine.pricing`` (the EMA step with its table-driven ``exp``, bands, the internal step,
    re-anchoring, reopen steps, pre-IPO caps) is shared with the fast engine rather than
    re-derived; it is tested on its own against exact decimal arithmetic. When each piece
    runs (the modes) is restated in ``engine.reference_modes``.
"""

from __future__ import annotations

import hashlib
from collections import deque, namedtuple
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Iterator, Sequence

import numpy as np
from sortedcontainers import SortedDict, SortedList, SortedSet

from engine.book import SLOT_BITS, SLOT_MASK  # oid = (order_seq << SLOT_BITS) | slot
from engine.codes import (
    MAX_BATCH_ACTIONS,
    MAX_MARK_TICKS,
    CancelReason,
    CommandKind,
    EventKind,
    LiquidationStep,
    MarginMode,
    MarketMode,
    OrderFlag,
    Reject,
    Side,
    Stp,
    Tif,
)
from engine.commands import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    OpenOrder,
    to_records,
    unpack_cloid,
)
from engine.funding import (
    CLAMP_8H_PPB,
    INTEREST_8H_PPB,
    PPB,
    PREMIUM_CAP_PPB,
    RATE_CAP_1H_PPB,
)
from engine.liquidator import LIQ_COOLDOWN_NS, LIQUIDATIONS_PER_TICK, PARTIAL_DIVISOR
from engine.pricing import EMA_ONE, MARK_EMA_TAU_NS, OI_CAP_DARK_PPB, ema_update
from engine.reference_modes import BANDED, DARK, ModeRules
from engine.reference_triggers import TriggerRules
from engine.risk import (
    ACCOUNT_TOTAL_CAP_ATOMS,
    MAX_AMOUNT_ATOMS,
    MAX_COLLATERAL_ATOMS,
    WITHDRAW_NOTIONAL_PPM,
)
from engine.risk_state import (
    MODE_WORDS,
    ModeView,
    PositionView,
    TriggerView,
    initial_mode,
)
from engine.settlement import FUNDING_PERIOD_NS, FUNDING_SAMPLE_NS
from engine.spec import EngineConfig, MarketSpec, validate_markets
from engine.units import INT64_MAX, PPM, to_atoms, to_ppm

NO_CLOID = (0, 0, 0, 0)
HASH_SIDE_END = -1
HASH_ACCOUNT_END = -1
FLAGS_HASH_SHIFT = 8  # an order's flags share its tif word in the state hash
UINT64_SPAN = 1 << 64
BATCH_ACTION_KINDS = (CommandKind.PLACE, CommandKind.CANCEL, CommandKind.AMEND)
EXPIRING_TIFS = (Tif.GTC, Tif.ALO)  # the only tifs that keep ``expires_at``
SIDES = (Side.BUY, Side.SELL)
FUNDING_RATE_SCALE = 8 * PPM  # rate = F8h · multiplier_ppm / (8 · 1e6)

_Cmd = namedtuple("_Cmd", COMMAND_DTYPE.names)


def _as_int64(word: int) -> int:
    """A uint64 cloid word as the int64 with the same bit pattern."""
    return word - UINT64_SPAN if word > INT64_MAX else word


def _opposite(side: int) -> int:
    return Side.SELL if side == Side.BUY else Side.BUY


def _crosses(taker_side: int, taker_price: int, level_price: int) -> bool:
    """A taker at ``taker_price`` can trade with a resting level at ``level_price``."""
    return level_price <= taker_price if taker_side == Side.BUY else level_price >= taker_price


# ---------------------------------------------------------------------------- plain maths


def _ceil_div(num: int, den: int) -> int:
    """⌈num / den⌉ for ``den > 0``."""
    return -((-num) // den)


def _div_trunc(num: int, den: int) -> int:
    """``num / den`` truncated toward zero, ``den > 0``."""
    q = abs(num) // den
    return q if num >= 0 else -q


def _clamp(x: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, x))


def _median3(a: int, b: int, c: int) -> int:
    return sorted((a, b, c))[1]


def _next_boundary(ts: int, period: int) -> int:
    """The first multiple of ``period`` strictly after ``ts``."""
    return (ts // period + 1) * period


def _fee(notional: int, fee_ppm: int) -> int:
    """A charge rounded up, a rebate (negative ppm) rounded down in magnitude: ⌈n·ppm/1e6⌉."""
    return _ceil_div(notional * fee_ppm, PPM)


def _book_price(bid: int, ask: int, last: int, oracle: int) -> int:
    """The median of the available of (bid, ask, last trade), 0 = missing. Of two, their
    mean, with a half tick rounded toward the oracle; of none, 0."""
    present = [p for p in (bid, ask, last) if p > 0]
    if len(present) == 3:
        return _median3(*present)
    if len(present) == 2:
        total = present[0] + present[1]
        if total % 2 == 0:
            return total // 2
        return total // 2 + 1 if 2 * oracle > total else total // 2
    return present[0] if present else 0


def _ema_ticks(ema_fp: int) -> int:
    """An EMA's fixed-point value in ticks, rounded to nearest, halves away from zero."""
    mag = (abs(ema_fp) + EMA_ONE // 2) // EMA_ONE
    return mag if ema_fp >= 0 else -mag


def _premium_ppb(impact_bid: int, impact_ask: int, oracle: int) -> int:
    """[max(impact_bid − oracle, 0) − max(oracle − impact_ask, 0)] / oracle, in ppb, truncated
    toward zero and clamped; an impact price of 0 (no depth) contributes nothing."""
    diff = 0
    if impact_bid > 0:
        diff += max(impact_bid - oracle, 0)
    if impact_ask > 0:
        diff -= max(oracle - impact_ask, 0)
    return _clamp(_div_trunc(diff * PPB, oracle), -PREMIUM_CAP_PPB, PREMIUM_CAP_PPB)


def _funding_rate_ppb(mean_premium: int, multiplier_ppm: int) -> int:
    """rate = multiplier · (P̄ + clamp(r − P̄, ±0.05%)) / 8, truncated toward zero, capped at ±4%."""
    f8h = mean_premium + _clamp(INTEREST_8H_PPB - mean_premium, -CLAMP_8H_PPB, CLAMP_8H_PPB)
    if abs(f8h) * multiplier_ppm > RATE_CAP_1H_PPB * FUNDING_RATE_SCALE:
        return RATE_CAP_1H_PPB if f8h > 0 else -RATE_CAP_1H_PPB
    return _div_trunc(f8h * multiplier_ppm, FUNDING_RATE_SCALE)


def _funding_credit(size: int, oracle: int, atl: int, rate_ppb: int) -> int:
    """A position's funding credit (negative = pays): ⌊−size·oracle·atl·rate / 1e9⌋."""
    return (-size * oracle * atl * rate_ppb) // PPB


@dataclass(slots=True, eq=False)
class _Order:
    oid: int
    market: int
    account: int
    side: int
    price: int
    remaining: int
    tif: int
    stp: int
    expires_at: int
    cloid: tuple[int, int, int, int]
    flags: int = 0  # OrderFlag bits

    @property
    def reduce_only(self) -> bool:
        return bool(self.flags & OrderFlag.REDUCE_ONLY)


@dataclass(slots=True, eq=False)
class _Account:
    collateral: int = 0
    npos: int = 0  # positions with a non-zero size


@dataclass(slots=True, eq=False)
class _Position:
    lev: int
    size: int = 0  # signed lots
    cost: int = 0  # signed entry cost basis: Σ size·price·atl of what is open
    bid_lots: int = 0  # the account's resting bids in the market
    bid_ntl: int = 0  # at their limit prices
    ask_lots: int = 0
    ask_ntl: int = 0
    realized: int = 0
    funding: int = 0
    liq_ts: int = 0  # time of the last book-liquidation step (the 30 s cooldown)
    iso: int = 0  # MarginMode: 0 cross, 1 isolated
    margin: int = 0  # an isolated position's own margin bucket (atoms)

    def is_default(self, default_lev: int) -> bool:
        return (self.size == 0 and self.bid_lots == 0 and self.ask_lots == 0 and self.realized == 0
                and self.funding == 0 and self.lev == default_lev and self.liq_ts == 0)


@dataclass(slots=True, eq=False)
class _Level:
    orders: deque = field(default_factory=deque)
    total: int = 0


@dataclass(slots=True, eq=False)
class _Market:
    index: int
    levels: int  # L, the window width in ticks
    max_order_lots: int
    atoms_per_tick_lot: int
    min_notional_atoms: int
    band_ppm: int
    slippage_ppm: int
    # risk parameters
    max_price: int = 0
    max_pos: int = 0
    maker_ppm: int = 0
    taker_ppm: int = 0
    tier_lower: tuple = (0,)  # atoms; a notional equal to a bound belongs to the upper tier
    tier_lev: tuple = (1,)
    impact_notional: int = 0
    funding_ppm: int = 0
    liq_partial: int = 0  # atoms: above this notional a liquidation takes a fifth at a time
    liq_fee_ppm: int = 0
    # book reference points
    mark: int = 0
    base: int = 0
    books: tuple = field(default_factory=lambda: (SortedDict(), SortedDict()))
    # prices and funding (mechanics.md §3–§4)
    oracle: int = 0
    last_trade: int = 0
    ema_fp: int = 0
    ema_weight: int = 0
    ema_ts: int = 0
    prem_sum: int = 0  # Σ premium samples (ppb) since the last settlement
    prem_n: int = 0
    next_sample: int = 0  # 0 until the first oracle price starts the clock
    next_funding: int = 0
    rate_ppb: int = 0  # the predicted (after a sample) or last settled hourly rate
    oi: int = 0  # open interest: Σ long lots
    oi_cap: int = 0  # atoms at the mark; 0: none
    # closed-hours pricing (engine.reference_modes, docs/modes.md)
    disc_ppb: int = 0
    dark_lev: int = 0
    fund_dark: int = 0
    mode: int = 0
    ext: int = 0
    ext_ts: int = 0
    fresh_ts: int = 0
    ref: int = 0
    band_lo: int = 0
    band_hi: int = 0
    res_up: int = 0
    res_dn: int = 0
    int_ts: int = 0
    halt: int = 0
    clean: int = 0
    pipo_ref: int = 0
    pipo_fp: int = 0
    pipo_w: int = 0
    pipo_ts: int = 0
    next_min: int = 0

    @classmethod
    def from_spec(cls, spec: MarketSpec) -> _Market:
        return cls(
            spec.market_id,
            spec.ladder_levels,
            spec.max_order_lots,
            spec.atoms_per_tick_lot,
            spec.min_notional_atoms,
            spec.band_ppm,
            spec.slippage_ppm,
            max_price=spec.max_price_ticks,
            max_pos=spec.max_position_lots,
            maker_ppm=spec.maker_fee_ppm,
            taker_ppm=spec.taker_fee_ppm,
            tier_lower=tuple(to_atoms(Decimal(lo)) for lo, _ in spec.tiers),
            tier_lev=tuple(int(lev) for _, lev in spec.tiers),
            impact_notional=to_atoms(spec.impact_notional),
            funding_ppm=to_ppm(spec.funding_multiplier),
            liq_partial=to_atoms(spec.partial_liq_notional),
            liq_fee_ppm=to_ppm(spec.liq_fee),
            oi_cap=spec.oi_cap_atoms,
            disc_ppb=spec.dark_band_ppb,
            dark_lev=spec.dark_max_leverage,
            fund_dark=int(spec.funding_dark),
            pipo_ref=spec.pre_ipo_reference_ticks,
        )

    @property
    def default_leverage(self) -> int:
        return self.tier_lev[0]

    def max_leverage(self, notional: int) -> int:
        """The max leverage of the tier holding ``notional``."""
        return [lev for lo, lev in zip(self.tier_lower, self.tier_lev) if notional >= lo][-1]

    def maintenance_margin(self, notional: int) -> int:
        """Σ over the tiers of (the part of the notional inside the tier) / (2·max_lev),
        exactly, rounded up: the continuous-deduction formula of mechanics.md §2."""
        total = Fraction(0)
        bounds = list(self.tier_lower[1:]) + [None]
        for lo, hi, lev in zip(self.tier_lower, bounds, self.tier_lev):
            top = notional if hi is None else min(notional, hi)
            if top > lo:
                total += Fraction(top - lo, 2 * lev)
        return _ceil_div(total.numerator, total.denominator)

    def prices_best_first(self, side: int) -> list[int]:
        book = self.books[side]
        return list(reversed(book.keys())) if side == Side.BUY else list(book.keys())

    def best_price(self, side: int) -> int | None:
        book = self.books[side]
        if not book:
            return None
        return book.peekitem(-1 if side == Side.BUY else 0)[0]

    def total_at(self, side: int, price: int) -> int:
        level = self.books[side].get(price)
        return 0 if level is None else level.total

    def band(self) -> tuple[int, int]:
        """(low, high) in ticks. hw = min(floor(mark·band_ppm / 1e6), L // 4): the floor means
        the band never widens by rounding. While INTERNAL or PRE_IPO the discovery band
        applies instead, within L // 4 of the mark."""
        cap = self.levels // 4
        if self.mode in BANDED:
            return max(1, self.band_lo, self.mark - cap), min(self.band_hi, self.mark + cap)
        hw = min(self.mark * self.band_ppm // PPM, cap)
        return max(1, self.mark - hw), self.mark + hw

    def band_code(self, price: int) -> int:
        low, high = self.band()
        if low <= price <= high:
            return 0
        if self.mode in BANDED and not self.band_lo <= price <= self.band_hi:
            return Reject.PRICE_OUTSIDE_DISCOVERY_BAND
        return Reject.PRICE_OUTSIDE_BAND

    def protection_price(self, side: int) -> int:
        """The limit of a market order: mark ± floor(mark·slippage_ppm / 1e6), clamped to the band."""
        low, high = self.band()
        slip = self.mark * self.slippage_ppm // PPM
        return min(self.mark + slip, high) if side == Side.BUY else max(self.mark - slip, low)

    def centred_base(self) -> int:
        return max(1, self.mark - self.levels // 2)

    def in_window(self, price: int) -> bool:
        return self.base <= price < self.base + self.levels

    def notional_code(self, price: int, size: int) -> int:
        """VALUE_OVERFLOW if price·size·atl would not fit int64 (checked by division, as the
        numba engine must), else NOTIONAL_BELOW_MIN if it is below the minimum, else 0."""
        atl = self.atoms_per_tick_lot
        if price > INT64_MAX // atl or size > INT64_MAX // (price * atl):
            return Reject.VALUE_OVERFLOW
        if price * size * atl < self.min_notional_atoms:
            return Reject.NOTIONAL_BELOW_MIN
        return 0


class ReferenceEngine(ModeRules, TriggerRules):
    """Slow, obviously correct implementation of docs/matching.md and the risk layer (see the
    module docstring)."""

    def __init__(self, specs: list[MarketSpec], config: EngineConfig = EngineConfig()):
        validate_markets(specs, config)
        self._specs = list(specs)
        self._config = config
        self._markets = [_Market.from_spec(s) for s in specs]
        for m, spec in zip(self._markets, specs):
            for name, value in initial_mode(spec, config).items():
                setattr(m, name, value)
        self._order_seq = 0
        self._orders: dict[int, _Order] = {}
        self._by_account: dict[int, SortedSet] = {}
        self._expiry = SortedList()
        self._free = list(range(config.max_orders - 1, -1, -1))
        self._events: list[tuple] = []
        self._cmd = 0
        self._ts = 0
        # risk state
        self._risk = bool(config.risk)
        self._insurance = config.max_accounts  # the insurance fund's account index
        self._accounts: dict[int, _Account] = {}
        self._positions: dict[tuple[int, int], _Position] = {}
        self._deposits = 0
        self._withdrawals = 0
        self._fees = 0
        self._deadlines: dict[int, int] = {}
        self._handlers = {
            CommandKind.PLACE: self._place,
            CommandKind.CANCEL: self._cancel,
            CommandKind.CANCEL_ALL: self._cancel_all,
            CommandKind.AMEND: self._amend,
            CommandKind.SET_MARK: self._set_mark,
            CommandKind.TICK: self._tick,
            CommandKind.DEPOSIT: self._deposit,
            CommandKind.WITHDRAW: self._withdraw,
            CommandKind.SET_LEVERAGE: self._set_leverage,
            CommandKind.ORACLE: self._oracle,
            CommandKind.MARKET_ADMIN: self._market_admin,
            CommandKind.PLACE_TRIGGER: self._place_trigger,
            CommandKind.CANCEL_TRIGGER: self._cancel_trigger,
            CommandKind.SCHEDULE_CANCEL: self._schedule_cancel,
            CommandKind.SET_MARGIN_MODE: self._set_margin_mode,
            CommandKind.ADJUST_MARGIN: self._adjust_margin,
        }
        self._init_triggers()
        self._cmd_fields, self._cmd_type = COMMAND_DTYPE.names, _Cmd

    # ------------------------------------------------------------------ public surface

    def apply(self, batch: np.ndarray | Sequence) -> np.ndarray:
        """Apply command records (or Structs) in order; returns a fresh EVENT_DTYPE array."""
        records = self._as_records(batch)
        cmds = [_Cmd(*values) for values in records.tolist()]
        self._events = []
        i = 0
        while i < len(cmds):
            if cmds[i].kind == CommandKind.BATCH:
                i = self._batch(cmds, i)
            else:
                self._dispatch(i, cmds[i])
                i += 1
        return np.array(self._events, dtype=EVENT_DTYPE)

    def state_hash(self) -> str:
        """BLAKE2b-256 over the canonical little-endian int64 sequence of docs/matching.md,
        followed by the risk state's integers (``engine.risk_state.dump_risk``)."""
        words = [len(self._markets), self._order_seq]
        for m in self._markets:
            words += [m.mark, m.base]
            for side in SIDES:
                for price in m.prices_best_first(side):
                    level = m.books[side][price]
                    words += [price, level.total, len(level.orders)]
                    for o in level.orders:
                        words += [o.oid, o.account, o.remaining, o.tif | o.flags << FLAGS_HASH_SHIFT, o.stp,
                                  o.expires_at]
                        words += [_as_int64(w) for w in o.cloid]
                words.append(HASH_SIDE_END)
        words.append(len(self._free))
        words += self._free
        words += self._risk_words()
        words += self._trigger_words()
        return hashlib.blake2b(np.array(words, dtype="<i8").tobytes(), digest_size=32).hexdigest()

    def _risk_words(self) -> list[int]:
        """The risk part of the state: counters, each market's price and funding state, then
        (risk on) every account that is not empty: ``[account, collateral]``, each position
        that is not in its initial state as ``[market, size, cost, lev, bid lots, bid
        notional, ask lots, ask notional, realized, funding, last liquidation time]``, and ``-1``;
        then, only if some account has a dead-man deadline, their number and ``[account,
        deadline]`` for each in ascending account; then, only if some position is isolated,
        their number and ``[account, market, margin]`` for each, ascending."""
        words = [int(self._risk), self._deposits, self._withdrawals, self._fees]
        for m in self._markets:
            words += [m.oracle, m.last_trade, m.ema_fp, m.ema_weight, m.ema_ts, m.prem_sum, m.prem_n,
                      m.next_sample, m.next_funding, m.rate_ppb, m.oi]
            if self._config.modes:
                words += [int(getattr(m, name)) for name in MODE_WORDS]
        if not self._risk:
            return words
        for a in sorted({*self._accounts, *(a for a, _ in self._positions)}):
            acct = self._accounts.get(a, _Account())
            kept = []
            for m in self._markets:
                p = self._positions.get((a, m.index))
                if p is not None and not p.is_default(m.default_leverage):
                    kept += [m.index, p.size, p.cost, p.lev, p.bid_lots, p.bid_ntl, p.ask_lots, p.ask_ntl,
                             p.realized, p.funding, p.liq_ts]
            if acct.collateral == 0 and acct.npos == 0 and not kept:
                continue
            words += [a, acct.collateral, *kept, HASH_ACCOUNT_END]
        if self._deadlines:
            words.append(len(self._deadlines))
            for a in sorted(self._deadlines):
                words += [a, self._deadlines[a]]
        isolated = sorted(key for key, p in self._positions.items() if p.iso)
        if isolated:
            words.append(len(isolated))
            for a, mi in isolated:
                words += [a, mi, self._positions[(a, mi)].margin]
        return words

    def depth(self, market: int, side: int) -> list[tuple[int, int]]:
        m = self._markets[market]
        return [(price, m.books[side][price].total) for price in m.prices_best_first(side)]

    def open_orders(self, account: int) -> list[OpenOrder]:
        return [self._open_order(self._orders[oid]) for oid in self._by_account.get(account, ())]

    def mark(self, market: int) -> int:
        return self._markets[market].mark

    def oracle(self, market: int) -> int:
        return self._markets[market].oracle

    def liquidation_price(self, account: int, market: int) -> int:
        """Ticks, 0 for none: ``mark − side·avail·2L / (|size|·atl·(2L − side))``, the distance
        floored (toward the mark), with ``avail = equity − MM`` and ``L`` the max leverage of
        the position's tier (engine.liq_price)."""
        m = self._markets[market]
        p = self._position(account, market)
        if p.size == 0:
            return 0
        side = 1 if p.size > 0 else -1
        if p.iso:
            avail = self._iso_equity(account, m) - m.maintenance_margin(self._position_notional(account, m))
        else:
            avail = self._equity(account) - self.maintenance_margin(account)
        two_l = 2 * m.max_leverage(self._position_notional(account, m))
        dist = avail * two_l // (abs(p.size) * m.atoms_per_tick_lot * (two_l - side))
        price = m.mark - side * dist
        return max(price, 0)

    def triggers(self, account: int) -> list[TriggerView]:
        return [TriggerView(t.tid, t.market, t.side, t.trigger, t.price, t.size, t.tif, t.flags)
                for tid, t in sorted(self._triggers.items()) if t.account == account]

    def mode(self, market: int) -> ModeView:
        m = self._markets[market]
        return ModeView(MarketMode(m.mode), m.oracle, m.mark, m.ext, m.ref, m.band_lo, m.band_hi)

    def predicted_rate_ppb(self, market: int) -> int:
        return self._markets[market].rate_ppb

    def impact_price(self, market: int, side: int, impact_notional_atoms: int) -> int:
        """Average price (ticks) to fill ``impact_notional_atoms`` against ``side`` (0 bids,
        1 asks); 0 without that depth."""
        return self._impact_price(self._markets[market], side, impact_notional_atoms)

    def collateral(self, account: int) -> int:
        return self._account(account).collateral

    def insurance_fund(self) -> int:
        return self._account(self._insurance).collateral

    def deadline(self, account: int) -> int:
        """The account's dead-man deadline (ns), 0 if none."""
        return self._deadlines.get(account, 0)

    def fees(self) -> int:
        return self._fees

    def totals(self) -> tuple[int, int]:
        """(deposits, withdrawals) ever, in atoms."""
        return self._deposits, self._withdrawals

    def position(self, account: int, market: int) -> PositionView:
        p = self._position(account, market)
        return PositionView(p.size, p.cost, p.lev, p.realized, p.funding, bool(p.iso), p.margin)

    def equity(self, account: int) -> int:
        """Cross equity (isolated positions excluded)."""
        return self._equity(account)

    def isolated_equity(self, account: int, market: int) -> int:
        """An isolated position's bucket + uPnL at the mark (0 for cross)."""
        m = self._markets[market]
        return self._iso_equity(account, m) if self._position(account, market).iso else 0

    def initial_margin(self, account: int) -> int:
        return self._total_im(account)

    def maintenance_margin(self, account: int) -> int:
        """MM of the cross positions."""
        return sum(m.maintenance_margin(self._position_notional(account, m))
                   for m in self._markets if self._position(account, m.index).size != 0
                   and not self._position(account, m.index).iso)

    def check_invariants(self) -> None:
        seen = self._check_books()
        _require(seen.keys() == self._orders.keys(), "order index differs from the books")
        self._check_slots()
        self._check_accounts()
        expected = sorted((o.expires_at, o.oid) for o in self._orders.values() if o.expires_at != 0)
        _require(list(self._expiry) == expected, "expiry set differs from the open orders")
        self._check_risk()
        self._check_reduce_only_and_deadlines()

    # ------------------------------------------------------------------ dispatch

    def _as_records(self, batch: np.ndarray | Sequence) -> np.ndarray:
        if isinstance(batch, np.ndarray):
            if batch.dtype != COMMAND_DTYPE:
                raise TypeError(f"expected COMMAND_DTYPE records, got {batch.dtype}")
            return batch
        return to_records(list(batch), self._specs)

    def _dispatch(self, i: int, cmd: _Cmd) -> None:
        self._cmd, self._ts = i, cmd.ts
        handler = self._handlers.get(cmd.kind)
        if handler is None:
            self._reject(cmd, Reject.BAD_FIELD)
        else:
            handler(cmd)
        if self._triggers:
            self._run_triggers()

    def _batch(self, cmds: list[_Cmd], i: int) -> int:
        """Run the batch whose header is ``cmds[i]``; returns the index after it."""
        head = cmds[i]
        self._cmd, self._ts = i, head.ts
        left = len(cmds) - i - 1
        n = head.size
        if head.pre_reject != 0:
            self._reject(head, head.pre_reject)
            return i + 1
        if n < 0 or n > MAX_BATCH_ACTIONS or n > left:
            self._reject(head, Reject.BATCH_TOO_LARGE)
            return i + 1 + max(0, min(n, left))
        for j in range(i + 1, i + 1 + n):
            cmd = cmds[j]
            if cmd.kind == CommandKind.BATCH:
                self._cmd, self._ts = j, cmd.ts
                self._reject(cmd, Reject.BATCH_NESTED)
            elif cmd.kind not in BATCH_ACTION_KINDS:
                self._cmd, self._ts = j, cmd.ts
                self._reject(cmd, Reject.BAD_FIELD)
            else:
                self._dispatch(j, cmd)
        return i + 1 + n

    # ------------------------------------------------------------------ commands

    def _place(self, cmd: _Cmd) -> None:
        code = self._id_code(cmd) or self._enum_code(cmd)
        if code:
            return self._reject(cmd, code)
        m = self._markets[cmd.market]
        cmd, code = self._place_size_code(m, cmd)
        if code:
            return self._reject(cmd, code)
        price = m.protection_price(cmd.side) if cmd.tif == Tif.MARKET else cmd.price
        expires_at = cmd.expires_at if cmd.tif in EXPIRING_TIFS else 0
        cloid = (cmd.cloid0, cmd.cloid1, cmd.cloid2, cmd.cloid3)
        code = (
            self._place_price_code(m, cmd, price)
            or self._max_price_code(m, price)
            or m.notional_code(price, cmd.size)
            or self._place_book_code(m, cmd, price, expires_at, cloid)
        )
        if code:
            return self._reject(cmd, code)
        taker = self._accept(cmd, price, expires_at, cloid)
        stopped = self._match(m, taker)
        self._finish_taker(m, taker, stopped)
        self._cancel_stale_reduce_only()

    def _cancel(self, cmd: _Cmd) -> None:
        o, code = self._target(cmd)
        if code:
            return self._reject(cmd, code)
        self._remove(o)
        self._emit_cancelled(o, CancelReason.USER, o.remaining)
        self._emit_level(o.market, o.side, o.price)

    def _cancel_all(self, cmd: _Cmd) -> None:
        code = cmd.pre_reject
        if not code and cmd.market != -1 and not 0 <= cmd.market < len(self._markets):
            code = Reject.UNKNOWN_MARKET
        if not code and not 0 <= cmd.account < self._config.max_accounts:
            code = Reject.UNKNOWN_ACCOUNT
        if code:
            return self._reject(cmd, code)
        for oid in list(self._by_account.get(cmd.account, ())):
            o = self._orders[oid]
            if cmd.market == -1 or o.market == cmd.market:
                self._remove(o)
                self._emit_cancelled(o, CancelReason.CANCEL_ALL, o.remaining)
                self._emit_level(o.market, o.side, o.price)

    def _amend(self, cmd: _Cmd) -> None:
        o, code = self._target(cmd)
        if code:
            return self._reject(cmd, code)
        m = self._markets[o.market]
        new_price = cmd.price or o.price
        new_size = cmd.size or o.remaining
        if o.reduce_only and new_size > 0:  # capped at the position, like a place
            new_size = min(new_size, self._closable(o.account, o.market, o.side))
        in_place = new_price == o.price and new_size < o.remaining
        code = self._amend_code(m, o, new_price, new_size)
        if not code and not in_place and o.tif == Tif.ALO and self._would_cross(m, o.side, new_price):
            code = Reject.POST_ONLY_WOULD_CROSS
        if not code:
            code = self._max_price_code(m, new_price)
        if not code and self._risk:
            # the old order replaced by the new one, judged against the IM with the old in place
            before = self._total_im(o.account)
            self._expo_add(o.account, m, o.side, o.price, -o.remaining)
            code = self._pretrade_code(o.account, m, o.side, new_price, new_size, before, o.remaining,
                                       o.reduce_only)
            self._expo_add(o.account, m, o.side, o.price, o.remaining)
        if code:
            return self._reject(cmd, code)
        if self._risk:
            self._expo_add(o.account, m, o.side, o.price, -o.remaining)
        if in_place:
            self._amend_in_place(m, o, new_size)
            if self._risk:
                self._expo_add(o.account, m, o.side, o.price, o.remaining)
        else:
            self._amend_requeue(m, o, new_price, new_size)

    def _set_mark(self, cmd: _Cmd) -> None:
        code = cmd.pre_reject
        if not code and not 0 <= cmd.market < len(self._markets):
            code = Reject.UNKNOWN_MARKET
        if not code and not 0 < cmd.price <= MAX_MARK_TICKS:
            code = Reject.MARK_INVALID
        if not code and self._risk and cmd.price > self._markets[cmd.market].max_price:
            code = Reject.MARK_INVALID
        if code:
            return self._reject(cmd, code)
        self._move_mark(self._markets[cmd.market], cmd.price)

    def _move_mark(self, m: _Market, mark: int) -> None:
        """Set the mark; on the first one centre the window, later re-centre it (cancelling
        what falls outside) when the band leaves it."""
        first = m.mark == 0
        m.mark = mark
        low, high = m.band()
        if first:
            m.base = m.centred_base()
        elif low < m.base or high >= m.base + m.levels:
            m.base = m.centred_base()
            self._cancel_out_of_window(m)

    def _tick(self, cmd: _Cmd) -> None:
        if cmd.pre_reject:
            return self._reject(cmd, cmd.pre_reject)
        while self._expiry and self._expiry[0][0] <= cmd.ts:
            o = self._orders[self._expiry[0][1]]
            self._remove(o)
            self._emit(EventKind.EXPIRED, market=o.market, account=o.account, oid=o.oid,
                       side=o.side, price=o.price, size=o.remaining)
            self._emit_level(o.market, o.side, o.price)
        self._fire_deadlines(cmd.ts)
        self._tick_prices(cmd.ts)

    def _fire_deadlines(self, ts: int) -> None:
        """Accounts whose dead-man deadline is at or before ``ts``, ascending: clear it and
        cancel every open order of the account in ascending oid (each with its level)."""
        for a in sorted(a for a, at in self._deadlines.items() if at <= ts):
            del self._deadlines[a]
            for oid in list(self._by_account.get(a, ())):
                o = self._orders[oid]
                self._remove(o)
                self._emit_cancelled(o, CancelReason.DEAD_MAN, o.remaining)
                self._emit_level(o.market, o.side, o.price)

    def _schedule_cancel(self, cmd: _Cmd) -> None:
        """Set (a deadline after the command's ts) or clear (0) the account's deadline."""
        at = cmd.expires_at
        code = self._account_code(cmd)
        if not code and (at < 0 or (at != 0 and at <= cmd.ts)):
            code = Reject.DEADLINE_IN_PAST
        if code:
            return self._emit_reject(code, -1, cmd.account, 0)
        if at:
            self._deadlines[cmd.account] = at
        else:
            self._deadlines.pop(cmd.account, None)
        self._emit(EventKind.SCHEDULE, market=-1, account=cmd.account, size=at)

    def _tick_prices(self, ts: int) -> None:
        """Market by market in id order: the mark (a MARK event when it moved), then (risk on)
        the premium sample; then (risk on) the hourly settlement of the markets due."""
        modes = self._config.modes
        for m in self._markets:
            if modes:
                self._tick_mode(m, ts)
                if m.next_sample == 0 and m.mode == MarketMode.PRE_IPO:
                    self._start_funding_clock(m, ts)
            if m.oracle == 0 or m.mode == MarketMode.HALTED:
                continue
            mark = self._next_mark(m, ts)
            if modes:
                mark = self._mode_mark(m, mark)
            if mark != m.mark:
                self._move_mark(m, mark)
                self._emit_mark(m)
            if self._risk:
                self._sample_premium(m, ts)
        if self._risk:
            self._settle_funding(ts)
            self._liquidation_scan(ts)
            self._fund_work_off()

    # ------------------------------------------------------------------ liquidation (docs/risk.md)

    def _liquidation_scan(self, ts: int, market: int = -1) -> None:
        """Accounts in ascending id, read as the scan reaches them: the account's cross check,
        then its isolated positions in market order; at most LIQUIDATIONS_PER_TICK
        liquidations. With ``market`` set (an oracle update moved that market's mark) only
        accounts holding a position there."""
        done = 0
        for a in sorted(self._accounts):
            if done == LIQUIDATIONS_PER_TICK or a >= self._insurance:
                return
            if a not in self._accounts or self._accounts[a].npos == 0:
                continue
            if market >= 0 and self._position(a, market).size == 0:
                continue
            mm = self.maintenance_margin(a)
            if mm > 0 and self._equity(a) < mm and (not self._config.modes or self._liquidation_allowed(a)):
                self._liquidate(a, ts)
                done += 1
                if done == LIQUIDATIONS_PER_TICK:
                    return
            for m in self._markets:
                p = self._position(a, m.index)
                if not p.iso or p.size == 0:
                    continue
                if self._iso_equity(a, m) >= m.maintenance_margin(self._position_notional(a, m)):
                    continue
                if self._config.modes and not self._iso_liquidation_allowed(a, m):
                    continue
                self._liquidate_isolated(a, m, ts)
                done += 1
                if done == LIQUIDATIONS_PER_TICK:
                    return

    def _liquidate(self, a: int, ts: int) -> None:
        """A cross account: its orders in cross markets, its cross positions."""
        for oid in list(self._by_account.get(a, ())):
            o = self._orders[oid]
            if self._position(a, o.market).iso:
                continue
            self._remove(o)
            self._emit_cancelled(o, CancelReason.LIQUIDATION, o.remaining)
            self._emit_level(o.market, o.side, o.price)
        equity, mm = self._equity(a), self.maintenance_margin(a)
        absorbed = True
        if not _below_two_thirds(equity, mm):
            absorbed = self._liquidate_on_book(a, ts)
            equity, mm = self._equity(a), self.maintenance_margin(a)
        if (mm > 0 and (_below_two_thirds(equity, mm) or (equity < mm and not absorbed))) or \
                (mm == 0 and self._account(a).collateral < 0):
            taken, left = self._backstop(a)
            self._auto_deleverage(taken, left)
            self._cancel_stale_reduce_only()  # ADL closes bypass matching

    def _liquidate_on_book(self, a: int, ts: int) -> bool:
        """IOCs at the fillable price, market by market; True if each filled in full."""
        absorbed = True
        for m in self._markets:
            p = self._position(a, m.index)
            if p.size == 0 or p.iso or (p.liq_ts != 0 and ts - p.liq_ts < LIQ_COOLDOWN_NS):
                continue
            equity, mm = self._equity(a), self.maintenance_margin(a)
            if equity >= mm:
                break
            chunk = abs(p.size)
            if self._position_notional(a, m) > m.liq_partial:
                chunk = _ceil_div(chunk, PARTIAL_DIVISOR)
            gap = min(max(mm - equity, 0), mm)
            distance = (3 * gap // 2) // (abs(p.size) * m.atoms_per_tick_lot)
            # the chunk may not lose more than the equity left (several positions: docs/risk.md)
            distance = min(distance, max(equity, 0) // (chunk * m.atoms_per_tick_lot))
            price = m.mark - distance if p.size > 0 else m.mark + distance
            price = min(max(price, 1), m.max_price)
            side = Side.SELL if p.size > 0 else Side.BUY
            filled = self._liquidation_ioc(a, m, side, price, chunk, LiquidationStep.BOOK)
            if filled is None:
                return False
            self._position_to_change(a, m.index).liq_ts = ts
            if filled < chunk:
                absorbed = False
            if filled > 0:
                fee = _ceil_div(filled * m.mark * m.atoms_per_tick_lot * m.liq_fee_ppm, PPM)
                fee = max(min(fee, self._equity(a)), 0)
                if fee > 0:
                    self._account_to_change(a).collateral -= fee
                    self._account_to_change(self._insurance).collateral += fee
                    self._emit(EventKind.LIQUIDATION, market=m.index, account=a, price=m.mark, remaining=fee,
                               reason=LiquidationStep.FEE)
        return absorbed

    def _liquidation_ioc(self, a: int, m: _Market, side: int, price: int, lots: int, step: int) -> int | None:
        """An IOC of account ``a`` (or the fund) that never rests: the LIQUIDATION event of
        ``step`` (oid, side, limit, lots sent, lots filled), then its fills. Returns the lots
        filled, or None when no order slot is free (nothing is done)."""
        if not self._free:
            return None
        slot = self._free.pop()
        self._order_seq += 1
        o = _Order((self._order_seq << SLOT_BITS) | slot, m.index, a, side, price, lots, Tif.IOC,
                   Stp.EXPIRE_MAKER, 0, NO_CLOID)
        self._register(o)
        self._emit(EventKind.LIQUIDATION, market=m.index, account=a, oid=o.oid, side=side, price=price,
                   size=lots, reason=step)
        at = len(self._events) - 1
        stopped = self._match(m, o)
        filled = lots - o.remaining
        self._events[at] = self._events[at][:12] + (filled,) + self._events[at][13:]
        self._finish_taker(m, o, stopped)
        self._cancel_stale_reduce_only()
        return filled

    def _backstop(self, a: int) -> tuple[list[tuple[_Market, int]], int]:
        """The fund takes every position at the mark, then the collateral left. Returns the
        positions taken, ``(market, signed lots)`` in market order, and the collateral left."""
        taken = []
        for m in self._markets:
            size = self._position(a, m.index).size
            if size == 0 or self._position(a, m.index).iso:
                continue
            close = Side.SELL if size > 0 else Side.BUY
            self._apply_fill(a, m, close, abs(size), m.mark, 0)
            self._apply_fill(self._insurance, m, _opposite(close), abs(size), m.mark, 0)
            self._emit(EventKind.LIQUIDATION, market=m.index, account=a, side=close, price=m.mark, size=size,
                       reason=LiquidationStep.BACKSTOP)
            taken.append((m, size))
        acct = self._account_to_change(a)
        left, acct.collateral = acct.collateral, 0
        self._account_to_change(self._insurance).collateral += left
        self._emit(EventKind.LIQUIDATION, market=-1, account=a, remaining=left, reason=LiquidationStep.COLLATERAL)
        return taken, left

    def _liquidate_isolated(self, a: int, m: _Market, ts: int) -> None:
        """One isolated position's waterfall on its bucket alone (engine.liquidator)."""
        for oid in list(self._by_account.get(a, ())):
            o = self._orders[oid]
            if o.market != m.index:
                continue
            self._remove(o)
            self._emit_cancelled(o, CancelReason.LIQUIDATION, o.remaining)
            self._emit_level(o.market, o.side, o.price)
        p = self._position_to_change(a, m.index)
        equity, mm = self._iso_equity(a, m), m.maintenance_margin(self._position_notional(a, m))
        absorbed = True
        if not _below_two_thirds(equity, mm) and (p.liq_ts == 0 or ts - p.liq_ts >= LIQ_COOLDOWN_NS):
            chunk = abs(p.size)
            if self._position_notional(a, m) > m.liq_partial:
                chunk = _ceil_div(chunk, PARTIAL_DIVISOR)
            gap = min(max(mm - equity, 0), mm)
            distance = (3 * gap // 2) // (abs(p.size) * m.atoms_per_tick_lot)
            price = m.mark - distance if p.size > 0 else m.mark + distance
            price = min(max(price, 1), m.max_price)
            side = Side.SELL if p.size > 0 else Side.BUY
            before = self._account(a).collateral
            filled = self._liquidation_ioc(a, m, side, price, chunk, LiquidationStep.BOOK)
            if filled is None:
                absorbed = False
            else:
                p.liq_ts = ts
                absorbed = filled == chunk
                if filled > 0:
                    left = self._iso_equity(a, m) if p.size else self._account(a).collateral - before
                    fee = _ceil_div(filled * m.mark * m.atoms_per_tick_lot * m.liq_fee_ppm, PPM)
                    fee = max(min(fee, left), 0)
                    if fee > 0:
                        if p.size:
                            p.margin -= fee
                        else:
                            self._account_to_change(a).collateral -= fee
                        self._account_to_change(self._insurance).collateral += fee
                        self._emit(EventKind.LIQUIDATION, market=m.index, account=a, price=m.mark, remaining=fee,
                                   reason=LiquidationStep.FEE)
            equity, mm = self._iso_equity(a, m), m.maintenance_margin(self._position_notional(a, m))
        if p.size != 0 and (_below_two_thirds(equity, mm) or (equity < mm and not absorbed)):
            size = p.size
            left = self._iso_equity(a, m)
            close = Side.SELL if size > 0 else Side.BUY
            self._apply_fill(a, m, close, abs(size), m.mark, 0)  # releases the bucket, == left
            self._apply_fill(self._insurance, m, _opposite(close), abs(size), m.mark, 0)
            self._emit(EventKind.LIQUIDATION, market=m.index, account=a, side=close, price=m.mark, size=size,
                       reason=LiquidationStep.BACKSTOP)
            if left >= 0:
                self._account_to_change(a).collateral -= left
                self._account_to_change(self._insurance).collateral += left
            self._emit(EventKind.LIQUIDATION, market=m.index, account=a, remaining=left,
                       reason=LiquidationStep.COLLATERAL)
            self._auto_deleverage([(m, size)], left)
            self._cancel_stale_reduce_only()

    # ------------------------------------------------------------------ auto-deleveraging (docs/risk.md)

    def _auto_deleverage(self, taken: list[tuple[_Market, int]], left: int) -> None:
        """What the fund cannot cover of a bankruptcy, ``need = min(−fund equity, −left)``, is
        collected by closing the positions just taken against ranked counterparties, the
        markets in id order, until nothing is needed or the taken positions are gone."""
        need = min(-self._equity(self._insurance), -left)
        for m, size in taken:
            if need <= 0:
                return
            need = self._deleverage_market(m, size, need)

    def _deleverage_market(self, m: _Market, taken: int, need: int) -> int:
        """Close up to ``|taken|`` lots of the fund's position in ``m`` at the mark against the
        opposite positions in ADL order; each counterparty pays ``⌈need·q / lots left⌉`` for
        its ``q`` lots, at most its equity. Returns what is still needed."""
        fund = self._insurance
        sign = 1 if taken > 0 else -1
        left = min(abs(taken), max(sign * self._position(fund, m.index).size, 0))
        fund_side = Side.SELL if sign > 0 else Side.BUY
        for c in self._adl_order(m, sign):
            if left == 0 or need <= 0:
                break
            p = self._position_to_change(c, m.index)
            q = min(abs(p.size), left)
            paid = min(_ceil_div(need * q, left), max(self._scope_equity(c, m), 0))
            if p.iso:
                p.margin -= paid  # before the close, which may release the bucket
            else:
                self._account_to_change(c).collateral -= paid
            self._account_to_change(fund).collateral += paid
            self._apply_fill(fund, m, fund_side, q, m.mark, 0)
            self._apply_fill(c, m, _opposite(fund_side), q, m.mark, 0)
            need -= paid
            left -= q
            self._emit(EventKind.LIQUIDATION, market=m.index, account=c, side=_opposite(fund_side), price=m.mark,
                       size=-sign * q, remaining=paid, reason=LiquidationStep.ADL)
        return need

    def _adl_order(self, m: _Market, sign: int) -> list[int]:
        """Accounts (not the fund) with a position in ``m`` of sign ``−sign`` and positive
        equity, best first: by ``uPnL of the position / equity`` descending (PnL ratio on the
        mark value × effective leverage), then ascending account."""
        ranked = []
        for (c, mi), p in self._positions.items():
            if mi != m.index or c == self._insurance or p.size * sign >= 0:
                continue
            equity = self._scope_equity(c, m)
            if equity > 0:
                upnl = p.size * m.mark * m.atoms_per_tick_lot - p.cost
                ranked.append((-Fraction(upnl, equity), c))
        return [c for _, c in sorted(ranked)]

    def _scope_equity(self, c: int, m: _Market) -> int:
        """What backs ``c``'s position in ``m``: its isolated equity, or the cross equity."""
        return self._iso_equity(c, m) if self._position(c, m.index).iso else self._equity(c)

    def _fund_work_off(self) -> None:
        """Per market in id order where the fund holds a position (HALTED markets skipped): an
        IOC of a fifth of it (rounded up) at the protection price (mark ∓ the slippage, inside
        the band and ``[1, max_price]``). No free order slot: the rest waits for the next tick."""
        for m in self._markets:
            size = self._position(self._insurance, m.index).size
            if size == 0 or m.mode == MarketMode.HALTED:
                continue
            side = Side.SELL if size > 0 else Side.BUY
            price = min(max(m.protection_price(side), 1), m.max_price)
            lots = _ceil_div(abs(size), PARTIAL_DIVISOR)
            if self._liquidation_ioc(self._insurance, m, side, price, lots, LiquidationStep.FUND_BOOK) is None:
                return

    def _oracle(self, cmd: _Cmd) -> None:
        code = self._oracle_code(cmd)
        if code:
            return self._emit_reject(code, cmd.market, -1, 0)
        m = self._markets[cmd.market]
        old_mark = m.mark
        if self._config.modes:
            self._oracle_mode(m, cmd.price, cmd.size, cmd.ts)
        else:
            m.oracle = cmd.price
        if m.oracle and m.mode != MarketMode.HALTED:
            if m.next_sample == 0:  # the funding clock starts with the first oracle price
                self._start_funding_clock(m, cmd.ts)
            mark = self._next_mark(m, cmd.ts)
            self._move_mark(m, self._mode_mark(m, mark) if self._config.modes else mark)
        self._emit_mark(m)
        if self._risk and m.mark != old_mark:
            self._liquidation_scan(cmd.ts, m.index)

    @staticmethod
    def _start_funding_clock(m: _Market, ts: int) -> None:
        m.next_sample = _next_boundary(ts, FUNDING_SAMPLE_NS)
        m.next_funding = _next_boundary(ts, FUNDING_PERIOD_NS)

    def _deposit(self, cmd: _Cmd) -> None:
        amount = cmd.size
        code = self._account_code(cmd)
        if not code and not (0 < amount <= MAX_AMOUNT_ATOMS
                             and self._account(cmd.account).collateral + amount <= MAX_COLLATERAL_ATOMS
                             and self._deposits + amount <= INT64_MAX):
            code = Reject.AMOUNT_INVALID
        if code:
            return self._emit_reject(code, -1, cmd.account, 0)
        acct = self._account_to_change(cmd.account)
        acct.collateral += amount
        self._deposits += amount
        self._emit(EventKind.BALANCE, market=-1, account=cmd.account, size=amount, remaining=acct.collateral)

    def _withdraw(self, cmd: _Cmd) -> None:
        amount = cmd.size
        code = self._account_code(cmd)
        if not code and not 0 < amount <= MAX_AMOUNT_ATOMS:
            code = Reject.AMOUNT_INVALID
        if not code:
            a = cmd.account
            if amount > self._account(a).collateral or self._equity(a) - amount < self._withdraw_floor(a):
                code = Reject.WITHDRAW_TOO_LARGE
        if code:
            return self._emit_reject(code, -1, cmd.account, 0)
        acct = self._account_to_change(cmd.account)
        acct.collateral -= amount
        self._withdrawals += amount
        self._emit(EventKind.BALANCE, market=-1, account=cmd.account, size=-amount, remaining=acct.collateral)

    def _set_leverage(self, cmd: _Cmd) -> None:
        a, lev = cmd.account, cmd.size
        code = self._account_code(cmd)
        if not code and not 0 <= cmd.market < len(self._markets):
            code = Reject.UNKNOWN_MARKET
        if not code:
            m = self._markets[cmd.market]
            if not 1 <= lev <= m.max_leverage(self._position_notional(a, m)):
                code = Reject.LEVERAGE_INVALID
        if not code:
            p = self._position_to_change(a, cmd.market)
            old, before = p.lev, self._total_im(a)
            p.lev = lev
            after = self._total_im(a)
            if after > before and self._equity(a) < after:
                p.lev = old
                code = Reject.LEVERAGE_NEEDS_MARGIN
        if code:
            return self._emit_reject(code, cmd.market, a, 0)
        self._emit(EventKind.LEVERAGE, market=cmd.market, account=a, size=lev)

    def _set_margin_mode(self, cmd: _Cmd) -> None:
        """Only with no position and no open orders in the market; the same mode is accepted."""
        a, mode = cmd.account, cmd.size
        code = self._account_code(cmd)
        if not code and not 0 <= cmd.market < len(self._markets):
            code = Reject.UNKNOWN_MARKET
        if not code and mode not in (MarginMode.CROSS, MarginMode.ISOLATED):
            code = Reject.MARGIN_MODE_INVALID
        if not code:
            p = self._position(a, cmd.market)
            if p.size or p.bid_lots or p.ask_lots:
                code = Reject.MARGIN_MODE_NOT_FLAT
        if code:
            return self._emit_reject(code, cmd.market, a, 0)
        self._position_to_change(a, cmd.market).iso = mode
        self._emit(EventKind.MARGIN, market=cmd.market, account=a, reason=mode)

    def _adjust_margin(self, cmd: _Cmd) -> None:
        """Add (from cross: ≤ collateral and cross equity − amount ≥ Σ IM) or remove (≤ the
        bucket, and the position's equity − amount ≥ its IM) an open isolated position's margin."""
        a, amount = cmd.account, cmd.size
        code = self._account_code(cmd)
        if not code and not 0 <= cmd.market < len(self._markets):
            code = Reject.UNKNOWN_MARKET
        if not code and not (amount != 0 and abs(amount) <= MAX_AMOUNT_ATOMS):
            code = Reject.MARGIN_AMOUNT_INVALID
        if not code:
            p = self._position(a, cmd.market)
            if not p.iso or p.size == 0:
                code = Reject.NOT_ISOLATED
        if not code and amount > 0:
            if amount > self._account(a).collateral or self._equity(a) - amount < self._total_im(a):
                code = Reject.MARGIN_ADD_TOO_LARGE
        if not code and amount < 0:
            m = self._markets[cmd.market]
            if -amount > p.margin or self._iso_equity(a, m) + amount < self._position_im(a, m):
                code = Reject.MARGIN_REMOVE_TOO_LARGE
        if code:
            return self._emit_reject(code, cmd.market, a, 0)
        p = self._position_to_change(a, cmd.market)
        self._account_to_change(a).collateral -= amount
        p.margin += amount
        self._emit(EventKind.MARGIN, market=cmd.market, account=a, size=amount, remaining=p.margin,
                   reason=MarginMode.ISOLATED)

    # ------------------------------------------------------------------ checks

    def _id_code(self, cmd: _Cmd) -> int:
        """pre_reject, then the market range, then the account range (0 = all fine)."""
        if cmd.pre_reject:
            return cmd.pre_reject
        if not 0 <= cmd.market < len(self._markets):
            return Reject.UNKNOWN_MARKET
        if not 0 <= cmd.account < self._config.max_accounts:
            return Reject.UNKNOWN_ACCOUNT
        return 0

    def _account_code(self, cmd: _Cmd) -> int:
        """Deposit, withdraw, set leverage: pre_reject, risk off, then the account range."""
        if cmd.pre_reject:
            return cmd.pre_reject
        if not self._risk:
            return Reject.RISK_DISABLED
        if not 0 <= cmd.account < self._config.max_accounts:
            return Reject.UNKNOWN_ACCOUNT
        return 0

    def _max_price_code(self, m: _Market, price: int) -> int:
        return Reject.PRICE_ABOVE_MAX if self._risk and price > m.max_price else 0

    @staticmethod
    def _enum_code(cmd: _Cmd) -> int:
        if (cmd.side > Side.SELL or cmd.tif > Tif.MARKET or cmd.stp > Stp.EXPIRE_BOTH
                or cmd.flags & ~int(OrderFlag.REDUCE_ONLY)):
            return Reject.BAD_FIELD
        return 0

    def _place_size_code(self, m: _Market, cmd: _Cmd) -> tuple[_Cmd, int]:
        """Checks 3-4 of PLACE: mark, halt, size. A reduce-only order (risk on) needs a position
        on the other side and is resized to at most that position before the size cap is
        checked; the command returned carries the size every later check reads."""
        if m.mark == 0:
            return cmd, Reject.NO_MARK
        if m.mode == MarketMode.HALTED:
            return cmd, Reject.MARKET_HALTED
        if cmd.size <= 0:
            return cmd, Reject.SIZE_NOT_POSITIVE
        if cmd.flags & OrderFlag.REDUCE_ONLY:
            if not self._risk:
                return cmd, Reject.RISK_DISABLED
            closable = self._closable(cmd.account, m.index, cmd.side)
            if closable == 0:
                return cmd, Reject.REDUCE_ONLY_WOULD_INCREASE
            cmd = cmd._replace(size=min(cmd.size, closable))
        if cmd.size > m.max_order_lots:
            return cmd, Reject.SIZE_ABOVE_MAX
        return cmd, 0

    @staticmethod
    def _place_price_code(m: _Market, cmd: _Cmd, price: int) -> int:
        """Check 5 of PLACE: (limit orders only) the price and its band."""
        if cmd.tif == Tif.MARKET:
            return 0
        if price <= 0:
            return Reject.PRICE_NOT_POSITIVE
        return m.band_code(price)

    def _place_book_code(self, m: _Market, cmd: _Cmd, price: int, expires_at: int, cloid: tuple) -> int:
        """Checks 7-11 of PLACE: expiry, duplicate cloid, post-only, fill-or-kill, (risk on) the
        pre-trade limits and margin, a free slot."""
        if expires_at != 0 and expires_at <= cmd.ts:
            return Reject.EXPIRY_IN_PAST
        if self._has_cloid(cmd.account, cloid):
            return Reject.DUPLICATE_CLOID
        if cmd.tif == Tif.ALO and self._would_cross(m, cmd.side, price):
            return Reject.POST_ONLY_WOULD_CROSS
        if cmd.tif == Tif.FOK and not self._fillable(m, cmd, price):
            return Reject.FOK_NOT_FILLABLE
        if self._risk:
            code = self._pretrade_code(cmd.account, m, cmd.side, price, cmd.size,
                                       reduce_only=bool(cmd.flags & OrderFlag.REDUCE_ONLY))
            if code:
                return code
        if not self._free:
            return Reject.BOOK_FULL
        return 0

    @staticmethod
    def _amend_code(m: _Market, o: _Order, new_price: int, new_size: int) -> int:
        if m.mode == MarketMode.HALTED:
            return Reject.MARKET_HALTED
        if new_size <= 0:
            return Reject.SIZE_NOT_POSITIVE
        if new_price <= 0:
            return Reject.PRICE_NOT_POSITIVE
        if new_price == o.price and new_size == o.remaining:
            return Reject.AMEND_NO_CHANGE
        if new_size > m.max_order_lots:
            return Reject.SIZE_ABOVE_MAX
        if new_price != o.price:
            code = m.band_code(new_price)
            if code:
                return code
        return m.notional_code(new_price, new_size)

    def _has_cloid(self, account: int, cloid: tuple) -> bool:
        if cloid == NO_CLOID:
            return False
        return any(self._orders[oid].cloid == cloid for oid in self._by_account.get(account, ()))

    def _target(self, cmd: _Cmd) -> tuple[_Order | None, int]:
        """CANCEL/AMEND steps 1-3: (order, 0) or (None, the first failing check's code).
        By oid if non-zero, else by a non-zero cloid among the account's open orders
        (neither given: ORDER_ID_MISSING)."""
        code = self._id_code(cmd)
        if code:
            return None, code
        if cmd.oid != 0:
            o = self._orders.get(cmd.oid)
        else:
            cloid = (cmd.cloid0, cmd.cloid1, cmd.cloid2, cmd.cloid3)
            if cloid == NO_CLOID:
                return None, Reject.ORDER_ID_MISSING
            mine = (self._orders[oid] for oid in self._by_account.get(cmd.account, ()))
            o = next((x for x in mine if x.cloid == cloid), None)
        if o is None or o.market != cmd.market:
            return None, Reject.UNKNOWN_ORDER
        if o.account != cmd.account:
            return None, Reject.NOT_ORDER_OWNER
        return o, 0

    @staticmethod
    def _would_cross(m: _Market, side: int, price: int) -> bool:
        best = m.best_price(_opposite(side))
        return best is not None and _crosses(side, price, best)

    def _fillable(self, m: _Market, cmd: _Cmd, price: int) -> bool:
        """FOK: the size other accounts rest at crossing prices, walked as matching would;
        reduce-only orders are left out (a fill of one is capped at its owner's position)."""
        available = 0
        for o in self._crossing_makers(m, cmd.side, price):
            if o.account == cmd.account:
                if cmd.stp == Stp.EXPIRE_MAKER:
                    continue
                break
            if o.reduce_only:  # it may fill less than it shows: not counted
                continue
            available += o.remaining
            if available >= cmd.size:
                return True
        return available >= cmd.size

    @staticmethod
    def _crossing_makers(m: _Market, side: int, price: int) -> Iterator[_Order]:
        opposite = _opposite(side)
        for level_price in m.prices_best_first(opposite):
            if not _crosses(side, price, level_price):
                return
            yield from m.books[opposite][level_price].orders

    # ------------------------------------------------------------------ matching

    def _accept(self, cmd: _Cmd, price: int, expires_at: int, cloid: tuple) -> _Order:
        slot = self._free.pop()
        self._order_seq += 1
        o = _Order((self._order_seq << SLOT_BITS) | slot, cmd.market, cmd.account, cmd.side,
                   price, cmd.size, cmd.tif, cmd.stp, expires_at, cloid, cmd.flags)
        self._register(o)
        self._emit(EventKind.ACCEPTED, market=o.market, account=o.account, oid=o.oid,
                   side=o.side, price=price, size=o.remaining)
        return o

    def _match(self, m: _Market, taker: _Order) -> bool:
        """Trade ``taker`` against the opposite side; True if self-trade prevention stopped it."""
        opposite = _opposite(taker.side)
        while taker.remaining > 0:
            best = m.best_price(opposite)
            if best is None or not _crosses(taker.side, taker.price, best):
                return False
            stopped, touched = self._match_level(m.books[opposite][best], taker, best)
            if touched:
                self._emit_level(m.index, opposite, best)
            if stopped:
                return True
        return False

    def _match_level(self, level: _Level, taker: _Order, price: int) -> tuple[bool, bool]:
        """Walk one level FIFO; returns (stopped by STP, a fill or cancel happened here)."""
        touched = False
        while taker.remaining > 0 and level.orders:
            maker = level.orders[0]
            if maker.account == taker.account:
                if taker.stp == Stp.EXPIRE_TAKER:
                    return True, touched
                self._remove(maker)
                self._emit_cancelled(maker, CancelReason.STP_MAKER, maker.remaining)
                touched = True
                if taker.stp == Stp.EXPIRE_BOTH:
                    return True, touched
                continue
            if maker.reduce_only and self._closable(maker.account, maker.market, maker.side) == 0:
                self._remove(maker)
                self._emit_cancelled(maker, CancelReason.REDUCE_ONLY, maker.remaining)
                touched = True
                continue
            self._fill(level, taker, maker, price)
            touched = True
        return False, touched

    def _fill(self, level: _Level, taker: _Order, maker: _Order, price: int) -> None:
        """One fill; a reduce-only maker fills at most the position it can close."""
        q = min(taker.remaining, maker.remaining)
        if maker.reduce_only:
            q = min(q, self._closable(maker.account, maker.market, maker.side))
        taker.remaining -= q
        maker.remaining -= q
        level.total -= q
        self._emit(EventKind.FILL, market=maker.market, account=taker.account, oid=taker.oid,
                   maker_account=maker.account, maker_oid=maker.oid, side=taker.side,
                   price=price, size=q, remaining=maker.remaining)
        m = self._markets[maker.market]
        m.last_trade = price
        if self._risk:
            notional = q * price * m.atoms_per_tick_lot
            self._apply_fill(taker.account, m, taker.side, q, price, _fee(notional, m.taker_ppm))
            self._apply_fill(maker.account, m, maker.side, q, price, _fee(notional, m.maker_ppm))
            self._expo_add(maker.account, m, maker.side, price, -q)
        if maker.remaining == 0:
            self._remove(maker)

    def _finish_taker(self, m: _Market, o: _Order, stopped: bool) -> None:
        """After matching: cancel (STP / IOC), rest, or leave; a taker that does not rest
        gives its slot back last, after all its command's events."""
        if stopped:
            self._emit_cancelled(o, CancelReason.STP_TAKER, o.remaining)
        elif o.remaining > 0 and o.tif in (Tif.IOC, Tif.MARKET):
            self._emit_cancelled(o, CancelReason.IOC_REMAINDER, o.remaining)
        elif o.remaining > 0:
            _require(o.tif in EXPIRING_TIFS, "a fill-or-kill order was left unfilled")
            if self._risk:
                self._expo_add(o.account, m, o.side, o.price, o.remaining)
            self._level_append(m, o)
            self._emit_level(m.index, o.side, o.price)
            return
        self._forget(o)

    def _amend_in_place(self, m: _Market, o: _Order, new_size: int) -> None:
        m.books[o.side][o.price].total -= o.remaining - new_size
        o.remaining = new_size
        self._emit(EventKind.AMENDED, market=o.market, account=o.account, oid=o.oid,
                   side=o.side, price=o.price, size=new_size, reason=1)
        self._emit_level(m.index, o.side, o.price)

    def _amend_requeue(self, m: _Market, o: _Order, new_price: int, new_size: int) -> None:
        old_price = o.price
        self._level_remove(m, o)
        self._emit(EventKind.AMENDED, market=o.market, account=o.account, oid=o.oid,
                   side=o.side, price=new_price, size=new_size, reason=0)
        self._emit_level(m.index, o.side, old_price)
        o.price, o.remaining = new_price, new_size
        stopped = self._match(m, o)
        self._finish_taker(m, o, stopped)
        self._cancel_stale_reduce_only()

    def _cancel_stale_reduce_only(self) -> None:
        """After a taker's matching: every reduce-only order whose account has no position on
        the other side of it any more is cancelled, by ascending account then oid."""
        stale = sorted((o.account, o.oid) for o in self._orders.values()
                       if o.reduce_only and self._closable(o.account, o.market, o.side) == 0)
        for _, oid in stale:
            o = self._orders[oid]
            self._remove(o)
            self._emit_cancelled(o, CancelReason.REDUCE_ONLY, o.remaining)
            self._emit_level(o.market, o.side, o.price)

    def _cancel_out_of_window(self, m: _Market) -> None:
        """Bids from the highest price down, then asks from the lowest up, FIFO per level."""
        for side in SIDES:
            for price in m.prices_best_first(side):
                if m.in_window(price):
                    continue
                for o in list(m.books[side][price].orders):
                    self._remove(o)
                    self._emit_cancelled(o, CancelReason.OUT_OF_WINDOW, o.remaining)
                self._emit_level(m.index, side, price)

    # ------------------------------------------------------------------ book mutation

    def _register(self, o: _Order) -> None:
        self._orders[o.oid] = o
        self._by_account.setdefault(o.account, SortedSet()).add(o.oid)
        if o.expires_at != 0:
            self._expiry.add((o.expires_at, o.oid))

    def _forget(self, o: _Order) -> None:
        """Drop an order that is out of its level from every index and free its slot."""
        del self._orders[o.oid]
        oids = self._by_account[o.account]
        oids.remove(o.oid)
        if not oids:
            del self._by_account[o.account]
        if o.expires_at != 0:
            self._expiry.remove((o.expires_at, o.oid))
        self._free.append(o.oid & SLOT_MASK)

    def _level_append(self, m: _Market, o: _Order) -> None:
        level = m.books[o.side].setdefault(o.price, _Level())
        level.orders.append(o)
        level.total += o.remaining

    def _level_remove(self, m: _Market, o: _Order) -> None:
        book = m.books[o.side]
        level = book[o.price]
        level.orders.remove(o)
        level.total -= o.remaining
        if not level.orders:
            del book[o.price]

    def _remove(self, o: _Order) -> None:
        """A resting order leaves the book (its remaining is kept for the event)."""
        m = self._markets[o.market]
        if self._risk:
            self._expo_add(o.account, m, o.side, o.price, -o.remaining)
        self._level_remove(m, o)
        self._forget(o)

    # ------------------------------------------------------------------ accounts and margin

    def _account(self, a: int) -> _Account:
        """The account to read (an account never touched reads as empty)."""
        return self._accounts.get(a) or _Account()

    def _account_to_change(self, a: int) -> _Account:
        return self._accounts.setdefault(a, _Account())

    def _position(self, a: int, market: int) -> _Position:
        """The position to read (one never touched reads as empty, at the default leverage)."""
        return self._positions.get((a, market)) or _Position(lev=self._markets[market].default_leverage)

    def _position_to_change(self, a: int, market: int) -> _Position:
        key = (a, market)
        if key not in self._positions:
            self._positions[key] = _Position(lev=self._markets[market].default_leverage)
        return self._positions[key]

    def _expo_add(self, a: int, m: _Market, side: int, price: int, lots: int) -> None:
        """Add ``lots`` (signed) of a resting order at ``price`` to the account's order exposure."""
        p = self._position_to_change(a, m.index)
        notional = lots * price * m.atoms_per_tick_lot
        if side == Side.BUY:
            p.bid_lots += lots
            p.bid_ntl += notional
        else:
            p.ask_lots += lots
            p.ask_ntl += notional

    def _closable(self, a: int, market: int, side: int) -> int:
        """Lots an order on ``side`` can take off the account's position before it reaches
        zero: the position's size when the order is on the other side of it, else 0."""
        size = self._position(a, market).size
        return max(-size, 0) if side == Side.BUY else max(size, 0)

    def _position_notional(self, a: int, m: _Market) -> int:
        return abs(self._position(a, m.index).size) * m.mark * m.atoms_per_tick_lot

    def _market_im(self, a: int, m: _Market) -> int:
        """IM of the account's position and orders in ``m``: the larger of its long exposure
        (long position at mark + bids at max(limit, mark)) and its short exposure (short
        position at mark + asks at min(limit, mark)), over the leverage capped by its tier."""
        p = self._position(a, m.index)
        at_mark = m.mark * m.atoms_per_tick_lot
        long_x = max(p.size, 0) * at_mark + max(p.bid_ntl, p.bid_lots * at_mark)
        short_x = max(-p.size, 0) * at_mark + min(p.ask_ntl, p.ask_lots * at_mark)
        exposure = max(long_x, short_x)
        if exposure == 0:
            return 0
        cap = m.max_leverage(exposure)
        if m.mode in DARK:
            cap = min(cap, m.dark_lev)
        return _ceil_div(exposure, min(p.lev, cap))

    def _total_im(self, a: int) -> int:
        """IM the cross collateral backs: each cross market's IM; an isolated market's IM less
        its position's own (what its orders add)."""
        return sum(self._market_im(a, m) - (self._position_im(a, m) if self._position(a, m.index).iso else 0)
                   for m in self._markets)

    def _effective_lev(self, a: int, m: _Market, notional: int) -> int:
        cap = m.max_leverage(notional)
        if m.mode in DARK:
            cap = min(cap, m.dark_lev)
        return min(self._position(a, m.index).lev, cap)

    def _position_im(self, a: int, m: _Market) -> int:
        """IM of the position alone at the mark, rounded up."""
        notional = self._position_notional(a, m)
        return _ceil_div(notional, self._effective_lev(a, m, notional)) if notional else 0

    def _iso_equity(self, a: int, m: _Market) -> int:
        """An isolated position's bucket + its uPnL at the mark."""
        p = self._position(a, m.index)
        return p.margin + p.size * m.mark * m.atoms_per_tick_lot - p.cost

    def _equity(self, a: int) -> int:
        """Cross equity: collateral + Σ uPnL at the mark of the cross positions."""
        equity = self._account(a).collateral
        for m in self._markets:
            p = self._position(a, m.index)
            if not p.iso:
                equity += p.size * m.mark * m.atoms_per_tick_lot - p.cost
        return equity

    def _within_limits(self, a: int) -> bool:
        """With all its bids (or all its asks) filled, every position stays within the market's
        max position, and Σ of those at the markets' max prices within the account cap."""
        total = 0
        for m in self._markets:
            p = self._position(a, m.index)
            worst = max(p.size + p.bid_lots, p.ask_lots - p.size)
            if worst > m.max_pos:
                return False
            total += worst * m.max_price * m.atoms_per_tick_lot
            if total > ACCOUNT_TOTAL_CAP_ATOMS:
                return False
        return True

    def _pretrade_code(self, a: int, m: _Market, side: int, price: int, lots: int, before: int | None = None,
                       old_lots: int = 0, reduce_only: bool = False) -> int:
        """0 if the account may add ``lots`` at ``price`` (replacing an order of ``old_lots``):
        with the order added the limits hold, more lots than before meet the open-interest
        cap, and if it raises the account's IM (over ``before``, by default the IM now),
        equity covers the new IM. A reduce-only order meets the limits only."""
        if before is None:
            before = self._total_im(a)
        self._expo_add(a, m, side, price, lots)
        code = 0
        if not self._within_limits(a):
            code = Reject.POSITION_LIMIT
        elif reduce_only:
            code = 0
        elif lots > old_lots and self._oi_capped(a, m, side):
            code = Reject.OI_CAP_REACHED
        else:
            after = self._total_im(a)
            if after > before and self._equity(a) < after:
                code = Reject.INSUFFICIENT_MARGIN
        self._expo_add(a, m, side, price, -lots)
        return code

    def _oi_capped(self, a: int, m: _Market, side: int) -> bool:
        """The market's OI at the mark has reached its cap (× OI_CAP_DARK_PPB / 1e9 while dark)
        and the account's orders on ``side`` (this one included) could more than close its
        position."""
        if not m.oi_cap:
            return False
        cap = m.oi_cap * OI_CAP_DARK_PPB // PPB if m.mode in DARK else m.oi_cap
        if m.oi * m.mark * m.atoms_per_tick_lot < cap:
            return False
        p = self._position(a, m.index)
        if side == Side.BUY:
            return not (p.size < 0 and p.bid_lots <= -p.size)
        return not (p.size > 0 and p.ask_lots <= p.size)

    def _withdraw_floor(self, a: int) -> int:
        """max(Σ IM (cross), 10% of the cross positions' notional rounded up)."""
        notional = sum(self._position_notional(a, m) for m in self._markets if not self._position(a, m.index).iso)
        return max(self._total_im(a), _ceil_div(notional * WITHDRAW_NOTIONAL_PPM, PPM))

    def _apply_fill(self, a: int, m: _Market, side: int, lots: int, price: int, fee: int) -> None:
        """One side of a fill. Adding to a position (or opening one) adds ``±lots·price·atl``
        to the cost; reducing removes the cost share ``⌈cost·closing/|size|⌉`` and books
        ``cash − removed`` as realized PnL; a flip closes the whole position first."""
        p, acct = self._position_to_change(a, m.index), self._account_to_change(a)
        sign = 1 if side == Side.BUY else -1
        old = p.size
        value = price * m.atoms_per_tick_lot  # one lot at the fill price
        realized, added = 0, lots
        if old == 0 or (old > 0) == (sign > 0):
            p.cost += sign * lots * value
        else:
            closing = min(lots, abs(old))
            removed = _ceil_div(p.cost * closing, abs(old))
            realized = -sign * closing * value - removed
            p.cost -= removed
            p.realized += realized
            added = lots - closing
            p.cost += sign * added * value
        p.size = old + sign * lots
        if p.iso:
            # the bucket takes the PnL and fee; released when the position closes or flips; lots
            # opened move their IM at the fill price (rounded up) from cross, at most what it holds
            p.margin += realized - fee
            if old != 0 and (p.size == 0 or (old > 0) != (p.size > 0)):
                left, p.margin = p.margin, 0
                if left >= 0:
                    acct.collateral += left
                else:
                    self._account_to_change(self._insurance).collateral += left
            if added > 0:
                im = _ceil_div(added * value, self._effective_lev(a, m, abs(p.size) * value))
                im = min(im, max(acct.collateral, 0))
                acct.collateral -= im
                p.margin += im
        else:
            acct.collateral += realized - fee
        self._fees += fee
        acct.npos += (p.size != 0) - (old != 0)
        m.oi += max(p.size, 0) - max(old, 0)

    # ------------------------------------------------------------------ prices and funding

    def _next_mark(self, m: _Market, ts: int) -> int:
        """Take an EMA sample of ``mid − oracle`` at ``ts`` (both book sides needed, weighted by
        the time since the previous recomputation) and return the new mark, clamped to
        ``[1, max_price]``: median(oracle, oracle + EMA, median(bid, ask, last trade))."""
        bid = m.best_price(Side.BUY) or 0
        ask = m.best_price(Side.SELL) or 0
        if bid and ask and m.ema_ts != 0 and ts > m.ema_ts:
            mid = _book_price(bid, ask, 0, m.oracle)
            ema_fp, weight = ema_update(m.ema_fp, m.ema_weight, mid - m.oracle, ts - m.ema_ts, MARK_EMA_TAU_NS)
            m.ema_fp, m.ema_weight = int(ema_fp), int(weight)
        if ts > m.ema_ts:
            m.ema_ts = ts
        basis = _ema_ticks(m.ema_fp) if m.ema_weight > 0 else 0
        book = _book_price(bid, ask, m.last_trade, m.oracle)
        mark = m.oracle if book == 0 else _median3(m.oracle, m.oracle + basis, book)
        return _clamp(mark, 1, m.max_price)

    def _impact_price(self, m: _Market, side: int, notional: int) -> int:
        """The average price of the whole lots, best level first, that fill ``notional`` against
        ``side``: floored for the bids, ceiled for the asks; 0 if the side is too thin."""
        need = notional
        lots = value = 0
        for price in m.prices_best_first(side):
            per_lot = price * m.atoms_per_tick_lot
            take = min(m.books[side][price].total, _ceil_div(need, per_lot))
            lots += take
            value += take * price
            need -= take * per_lot
            if need <= 0:
                return value // lots if side == Side.BUY else _ceil_div(value, lots)
        return 0

    def _sample_premium(self, m: _Market, ts: int) -> None:
        if ts < m.next_sample:
            return
        impact_bid = self._impact_price(m, Side.BUY, m.impact_notional)
        impact_ask = self._impact_price(m, Side.SELL, m.impact_notional)
        m.prem_sum += _premium_ppb(impact_bid, impact_ask, m.oracle)
        m.prem_n += 1
        m.next_sample = _next_boundary(ts, FUNDING_SAMPLE_NS)
        m.rate_ppb = self._dark_rate(m, _funding_rate_ppb(_div_trunc(m.prem_sum, m.prem_n), m.funding_ppm))

    def _settle_funding(self, ts: int) -> None:
        """Fix the hour's rate of every market whose hour has ended, pay every position in them
        (ascending account, then market), then per market book the rounding remainder to the
        insurance fund."""
        due = [m for m in self._markets if m.next_funding != 0 and m.oracle > 0 and ts >= m.next_funding]
        for m in due:
            mean = _div_trunc(m.prem_sum, m.prem_n) if m.prem_n > 0 else 0
            m.rate_ppb = self._dark_rate(m, _funding_rate_ppb(mean, m.funding_ppm))
            m.prem_sum = m.prem_n = 0
        if not due:
            return
        paid = {m.index: 0 for m in due}
        for a in sorted({a for a, _ in self._positions}):
            for m in due:
                p = self._positions.get((a, m.index))
                if p is None or p.size == 0:
                    continue
                credit = _funding_credit(p.size, m.oracle, m.atoms_per_tick_lot, m.rate_ppb)
                if p.iso:
                    p.margin += credit
                else:
                    self._account_to_change(a).collateral += credit
                p.funding += credit
                paid[m.index] += credit
                self._emit(EventKind.FUNDING, market=m.index, account=a, oid=m.rate_ppb, price=m.oracle,
                           size=p.size, remaining=credit)
        for m in due:
            remainder = -paid[m.index]
            self._account_to_change(self._insurance).collateral += remainder
            m.next_funding = _next_boundary(ts, FUNDING_PERIOD_NS)
            self._emit(EventKind.FUNDING_RATE, market=m.index, account=-1, oid=m.rate_ppb, price=m.oracle,
                       remaining=remainder)

    # ------------------------------------------------------------------ events

    def _emit(self, kind: int, *, side=0, reason=0, code=0, market=0, account=0,
              maker_account=0, oid=0, maker_oid=0, price=0, size=0, remaining=0) -> None:
        self._events.append((kind, side, reason, code, self._cmd, market, account, maker_account,
                             oid, maker_oid, price, size, remaining, self._ts))

    def _reject(self, cmd: _Cmd, code: int) -> None:
        oid = 0 if cmd.kind == CommandKind.PLACE else cmd.oid
        self._emit_reject(code, cmd.market, cmd.account, oid)

    def _emit_reject(self, code: int, market: int, account: int, oid: int) -> None:
        self._emit(EventKind.REJECTED, code=code, market=market, account=account, oid=oid)

    def _emit_mark(self, m: _Market) -> None:
        self._emit(EventKind.MARK, market=m.index, account=-1, price=m.mark, remaining=m.oracle)

    def _emit_cancelled(self, o: _Order, reason: int, size: int) -> None:
        self._emit(EventKind.CANCELLED, market=o.market, account=o.account, oid=o.oid,
                   side=o.side, price=o.price, size=size, reason=reason)

    def _emit_level(self, market: int, side: int, price: int) -> None:
        total = self._markets[market].total_at(side, price)
        self._emit(EventKind.LEVEL, market=market, side=side, price=price, size=total)

    # ------------------------------------------------------------------ introspection

    @staticmethod
    def _open_order(o: _Order) -> OpenOrder:
        return OpenOrder(o.oid, o.market, o.account, o.side, o.price, o.remaining, o.tif, o.stp,
                         o.expires_at, unpack_cloid(o.cloid), o.reduce_only)

    def _check_books(self) -> dict[int, _Order]:
        seen: dict[int, _Order] = {}
        for m in self._markets:
            for side in SIDES:
                for price, level in m.books[side].items():
                    _require(level.orders, "empty level left in a book")
                    total = sum(o.remaining for o in level.orders)
                    _require(level.total == total, "level total != sum of orders")
                    _require(m.in_window(price), "resting price outside the ladder window")
                    for o in level.orders:
                        _require(o.remaining > 0, "non-positive remaining at rest")
                        _require(o.oid not in seen, "order in two places")
                        where = (o.market, o.side, o.price)
                        _require(where == (m.index, side, price), "order filed under the wrong level")
                        _require(self._orders.get(o.oid) is o, "resting order missing from the order index")
                        _require(0 < o.oid >> SLOT_BITS <= self._order_seq, "oid from the future")
                        seen[o.oid] = o
            bid, ask = m.best_price(Side.BUY), m.best_price(Side.SELL)
            _require(bid is None or ask is None or bid < ask, "crossed book at rest")
        return seen

    def _check_slots(self) -> None:
        live = [oid & SLOT_MASK for oid in self._orders]
        _require(len(set(live)) == len(live), "two open orders share a slot")
        _require(len(set(self._free)) == len(self._free), "a slot is free twice")
        _require(not set(live) & set(self._free), "a live slot is also free")
        _require(len(live) + len(self._free) == self._config.max_orders, "free + live slots != all slots")
        _require(all(0 <= s < self._config.max_orders for s in self._free), "free slot out of range")

    def _check_accounts(self) -> None:
        listed = 0
        for account, oids in self._by_account.items():
            _require(len(oids) > 0, "empty account list kept")
            for oid in oids:
                o = self._orders.get(oid)
                _require(o is not None and o.account == account, "account list inconsistent with the book")
            listed += len(oids)
        _require(listed == len(self._orders), "an open order is missing from its account list")

    def _check_reduce_only_and_deadlines(self) -> None:
        for o in self._orders.values():
            _require(not o.reduce_only or self._closable(o.account, o.market, o.side) > 0,
                     f"reduce-only order {o.oid} has no position to reduce")
        _require(self._risk or not self._deadlines, "a dead-man deadline while risk is off")
        _require(all(0 <= a < self._config.max_accounts and at > 0 for a, at in self._deadlines.items()),
                 "a dead-man deadline out of range")

    def _check_risk(self) -> None:
        """Conservation to the atom, long = short = OI, order exposure = the resting orders."""
        if not self._risk:
            _require(not self._accounts and not self._positions and self._fees == 0, "risk state while risk is off")
            _require(all(m.oi == 0 for m in self._markets), "open interest while risk is off")
            return
        collateral = sum(acct.collateral for acct in self._accounts.values())
        margin = sum(p.margin for p in self._positions.values())
        cost = sum(p.cost for p in self._positions.values())
        _require(collateral + margin + self._fees - cost == self._deposits - self._withdrawals,
                 "collateral + margin + fees - cost != deposits - withdrawals")
        for (a, mi), p in self._positions.items():
            _require(p.iso in (MarginMode.CROSS, MarginMode.ISOLATED), f"account {a} market {mi}: bad margin mode")
            _require(p.margin == 0 or (p.iso and p.size != 0), f"account {a} market {mi}: margin without an "
                     "open isolated position")
            _require(a != self._insurance or not p.iso, "the insurance fund has an isolated position")
        for m in self._markets:
            sizes = [p.size for (_, mi), p in self._positions.items() if mi == m.index]
            longs = sum(s for s in sizes if s > 0)
            shorts = -sum(s for s in sizes if s < 0)
            _require(longs == shorts == m.oi, f"market {m.index}: long {longs}, short {shorts}, oi {m.oi}")
        expected: dict[tuple[int, int, int], list[int]] = {}
        for o in self._orders.values():
            lots_ntl = expected.setdefault((o.account, o.market, o.side), [0, 0])
            lots_ntl[0] += o.remaining
            lots_ntl[1] += o.remaining * o.price * self._markets[o.market].atoms_per_tick_lot
        for (a, mi), p in self._positions.items():
            bids = expected.pop((a, mi, Side.BUY), [0, 0])
            asks = expected.pop((a, mi, Side.SELL), [0, 0])
            _require([p.bid_lots, p.bid_ntl] == bids and [p.ask_lots, p.ask_ntl] == asks,
                     f"account {a} market {mi}: order exposure differs from its resting orders")
            _require(p.size != 0 or p.cost == 0, f"account {a} market {mi}: a cost basis without a position")
        _require(not expected, "resting orders missing from their positions' exposure")
        _require(self._insurance not in self._by_account, "the insurance fund has an open order")
        for a, acct in self._accounts.items():
            npos = sum(1 for (b, _), p in self._positions.items() if b == a and p.size != 0)
            _require(acct.npos == npos, f"account {a}: npos {acct.npos}, open positions {npos}")


def _below_two_thirds(equity: int, mm: int) -> bool:
    return 3 * equity < 2 * mm


def _require(condition: object, message: str) -> None:
    """Raise AssertionError for a broken invariant (not ``assert``: it must survive -O)."""
    if not condition:
        raise AssertionError(message)
