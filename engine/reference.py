"""The reference matching engine: slow, obvious, and the oracle for the numba engine.

It implements docs/matching.md to the letter with plain Python containers, one record at a
time, so that a differential test can hold ``engine.Engine`` to the same events and the same
``state_hash()``.

Layout
    * ``_Market``: the spec's integers, ``mark``, ``base`` and one book per side. A book is a
      ``SortedDict`` price_ticks -> ``_Level`` (a ``deque`` of ``_Order`` in FIFO order plus
      the level's total lots); the best bid is the last key, the best ask the first.
    * ``_orders``: oid -> ``_Order`` for every open order (and, while its command runs, the
      taker, which is registered when accepted and forgotten if it does not rest).
    * ``_by_account``: account -> ``SortedSet`` of its open oids (ascending oid = acceptance
      order, which cancel-all and ``open_orders`` use).
    * ``_expiry``: ``SortedList`` of ``(expires_at, oid)`` for open orders with an expiry.
    * ``_free``: the LIFO free-slot stack, bottom first; ``pop()`` takes the top.

Invariants (``check_invariants``, between commands)
    Books are not crossed; a level is non-empty and its total is the sum of its orders'
    remaining, each > 0; every open order sits in exactly one level, inside its market's
    window, and in ``_orders``, its account's set and (iff it has an expiry) ``_expiry``;
    free slots and live slots partition ``range(max_orders)``.

Known limitations
    Orders of magnitude slower than the numba engine; no risk checks (the doc has none);
    ``state_hash`` and the free stack cost O(max_orders), so tests use a small pool.
"""

from __future__ import annotations

import hashlib
from collections import deque, namedtuple
from dataclasses import dataclass, field
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
from engine.spec import EngineConfig, MarketSpec, validate_markets
from engine.units import INT64_MAX, PPM

NO_CLOID = (0, 0, 0, 0)
HASH_SIDE_END = -1
UINT64_SPAN = 1 << 64
BATCH_ACTION_KINDS = (CommandKind.PLACE, CommandKind.CANCEL, CommandKind.AMEND)
EXPIRING_TIFS = (Tif.GTC, Tif.ALO)  # the only tifs that keep ``expires_at``
SIDES = (Side.BUY, Side.SELL)

_Cmd = namedtuple("_Cmd", COMMAND_DTYPE.names)


def _as_int64(word: int) -> int:
    """A uint64 cloid word as the int64 with the same bit pattern."""
    return word - UINT64_SPAN if word > INT64_MAX else word


def _opposite(side: int) -> int:
    return Side.SELL if side == Side.BUY else Side.BUY


def _crosses(taker_side: int, taker_price: int, level_price: int) -> bool:
    """A taker at ``taker_price`` can trade with a resting level at ``level_price``."""
    return level_price <= taker_price if taker_side == Side.BUY else level_price >= taker_price


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
    mark: int = 0
    base: int = 0
    books: tuple = field(default_factory=lambda: (SortedDict(), SortedDict()))

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
        )

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
        the band never widens by rounding."""
        hw = min(self.mark * self.band_ppm // PPM, self.levels // 4)
        return max(1, self.mark - hw), self.mark + hw

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


class ReferenceEngine:
    """Slow, obviously correct implementation of docs/matching.md (see the module docstring)."""

    def __init__(self, specs: list[MarketSpec], config: EngineConfig = EngineConfig()):
        validate_markets(specs, config)
        self._specs = list(specs)
        self._config = config
        self._markets = [_Market.from_spec(s) for s in specs]
        self._order_seq = 0
        self._orders: dict[int, _Order] = {}
        self._by_account: dict[int, SortedSet] = {}
        self._expiry = SortedList()
        self._free = list(range(config.max_orders - 1, -1, -1))
        self._events: list[tuple] = []
        self._cmd = 0
        self._ts = 0
        self._handlers = {
            CommandKind.PLACE: self._place,
            CommandKind.CANCEL: self._cancel,
            CommandKind.CANCEL_ALL: self._cancel_all,
            CommandKind.AMEND: self._amend,
            CommandKind.SET_MARK: self._set_mark,
            CommandKind.TICK: self._tick,
        }

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
        """BLAKE2b-256 over the canonical little-endian int64 sequence of docs/matching.md."""
        words = [len(self._markets), self._order_seq]
        for m in self._markets:
            words += [m.mark, m.base]
            for side in SIDES:
                for price in m.prices_best_first(side):
                    level = m.books[side][price]
                    words += [price, level.total, len(level.orders)]
                    for o in level.orders:
                        words += [o.oid, o.account, o.remaining, o.tif, o.stp, o.expires_at]
                        words += [_as_int64(w) for w in o.cloid]
                words.append(HASH_SIDE_END)
        words.append(len(self._free))
        data = np.array(words, dtype="<i8").tobytes() + np.array(self._free, dtype="<i8").tobytes()
        return hashlib.blake2b(data, digest_size=32).hexdigest()

    def depth(self, market: int, side: int) -> list[tuple[int, int]]:
        m = self._markets[market]
        return [(price, m.books[side][price].total) for price in m.prices_best_first(side)]

    def open_orders(self, account: int) -> list[OpenOrder]:
        return [self._open_order(self._orders[oid]) for oid in self._by_account.get(account, ())]

    def mark(self, market: int) -> int:
        return self._markets[market].mark

    def check_invariants(self) -> None:
        seen = self._check_books()
        _require(seen.keys() == self._orders.keys(), "order index differs from the books")
        self._check_slots()
        self._check_accounts()
        expected = sorted((o.expires_at, o.oid) for o in self._orders.values() if o.expires_at != 0)
        _require(list(self._expiry) == expected, "expiry set differs from the open orders")

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
        price = m.protection_price(cmd.side) if cmd.tif == Tif.MARKET else cmd.price
        expires_at = cmd.expires_at if cmd.tif in EXPIRING_TIFS else 0
        cloid = (cmd.cloid0, cmd.cloid1, cmd.cloid2, cmd.cloid3)
        code = (
            self._place_size_price_code(m, cmd, price)
            or m.notional_code(price, cmd.size)
            or self._place_book_code(m, cmd, price, expires_at, cloid)
        )
        if code:
            return self._reject(cmd, code)
        taker = self._accept(cmd, price, expires_at, cloid)
        stopped = self._match(m, taker)
        self._finish_taker(m, taker, stopped)

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
        code = self._amend_code(m, o, new_price, new_size)
        if code:
            return self._reject(cmd, code)
        if new_price == o.price and new_size < o.remaining:
            self._amend_in_place(m, o, new_size)
        elif o.tif == Tif.ALO and self._would_cross(m, o.side, new_price):
            self._reject(cmd, Reject.POST_ONLY_WOULD_CROSS)
        else:
            self._amend_requeue(m, o, new_price, new_size)

    def _set_mark(self, cmd: _Cmd) -> None:
        code = cmd.pre_reject
        if not code and not 0 <= cmd.market < len(self._markets):
            code = Reject.UNKNOWN_MARKET
        if not code and not 0 < cmd.price <= MAX_MARK_TICKS:
            code = Reject.MARK_INVALID
        if code:
            return self._reject(cmd, code)
        m = self._markets[cmd.market]
        first = m.mark == 0
        m.mark = cmd.price
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

    @staticmethod
    def _enum_code(cmd: _Cmd) -> int:
        if cmd.side > Side.SELL or cmd.tif > Tif.MARKET or cmd.stp > Stp.EXPIRE_BOTH:
            return Reject.BAD_FIELD
        return 0

    @staticmethod
    def _place_size_price_code(m: _Market, cmd: _Cmd, price: int) -> int:
        """Checks 3-5 of PLACE: mark, size, then (limit orders only) price."""
        if m.mark == 0:
            return Reject.NO_MARK
        if cmd.size <= 0:
            return Reject.SIZE_NOT_POSITIVE
        if cmd.size > m.max_order_lots:
            return Reject.SIZE_ABOVE_MAX
        if cmd.tif == Tif.MARKET:
            return 0
        if price <= 0:
            return Reject.PRICE_NOT_POSITIVE
        low, high = m.band()
        return Reject.PRICE_OUTSIDE_BAND if not low <= price <= high else 0

    def _place_book_code(self, m: _Market, cmd: _Cmd, price: int, expires_at: int, cloid: tuple) -> int:
        """Checks 7-11 of PLACE: expiry, duplicate cloid, post-only, fill-or-kill, a free slot."""
        if expires_at != 0 and expires_at <= cmd.ts:
            return Reject.EXPIRY_IN_PAST
        if self._has_cloid(cmd.account, cloid):
            return Reject.DUPLICATE_CLOID
        if cmd.tif == Tif.ALO and self._would_cross(m, cmd.side, price):
            return Reject.POST_ONLY_WOULD_CROSS
        if cmd.tif == Tif.FOK and not self._fillable(m, cmd, price):
            return Reject.FOK_NOT_FILLABLE
        if not self._free:
            return Reject.BOOK_FULL
        return 0

    @staticmethod
    def _amend_code(m: _Market, o: _Order, new_price: int, new_size: int) -> int:
        if new_size <= 0:
            return Reject.SIZE_NOT_POSITIVE
        if new_price <= 0:
            return Reject.PRICE_NOT_POSITIVE
        if new_price == o.price and new_size == o.remaining:
            return Reject.AMEND_NO_CHANGE
        if new_size > m.max_order_lots:
            return Reject.SIZE_ABOVE_MAX
        low, high = m.band()
        if new_price != o.price and not low <= new_price <= high:
            return Reject.PRICE_OUTSIDE_BAND
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
        """FOK: the size other accounts rest at crossing prices, walked as matching would."""
        available = 0
        for o in self._crossing_makers(m, cmd.side, price):
            if o.account == cmd.account:
                if cmd.stp == Stp.EXPIRE_MAKER:
                    continue
                break
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
                   price, cmd.size, cmd.tif, cmd.stp, expires_at, cloid)
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
            self._fill(level, taker, maker, price)
            touched = True
        return False, touched

    def _fill(self, level: _Level, taker: _Order, maker: _Order, price: int) -> None:
        q = min(taker.remaining, maker.remaining)
        taker.remaining -= q
        maker.remaining -= q
        level.total -= q
        self._emit(EventKind.FILL, market=maker.market, account=taker.account, oid=taker.oid,
                   maker_account=maker.account, maker_oid=maker.oid, side=taker.side,
                   price=price, size=q, remaining=maker.remaining)
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
        self._level_remove(self._markets[o.market], o)
        self._forget(o)

    # ------------------------------------------------------------------ events

    def _emit(self, kind: int, *, side=0, reason=0, code=0, market=0, account=0,
              maker_account=0, oid=0, maker_oid=0, price=0, size=0, remaining=0) -> None:
        self._events.append((kind, side, reason, code, self._cmd, market, account, maker_account,
                             oid, maker_oid, price, size, remaining, self._ts))

    def _reject(self, cmd: _Cmd, code: int) -> None:
        oid = 0 if cmd.kind == CommandKind.PLACE else cmd.oid
        self._emit(EventKind.REJECTED, code=code, market=cmd.market, account=cmd.account, oid=oid)

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
                         o.expires_at, unpack_cloid(o.cloid))

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


def _require(condition: object, message: str) -> None:
    """Raise AssertionError for a broken invariant (not ``assert``: it must survive -O)."""
    if not condition:
        raise AssertionError(message)
