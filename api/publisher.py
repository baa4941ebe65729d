"""Engine batches -> channel messages, each encoded once and handed to every subscriber.

Layout
------
* ``Publisher.on_batch(batch)``: the sequencer's listener. It reads the batch's events once,
  updates the book mirrors and the order table, and pushes ``l2Delta``, ``trades``,
  ``liquidations``, ``market`` and the private channels of subscribed accounts;
* ``subscribe`` / ``unsubscribe`` / ``drop``: the fan-out table, keyed by the (normalised)
  wire ``Subscription``; ``subscribe`` returns the snapshot frame to send first;
* ``snapshot(key)``: a fresh snapshot, also used by a connection that conflated its book
  channels; ``flush_l2book()``: the conflated ``l2Book`` channel, called every 100 ms.

Sequencing
----------
Every message of a batch is as of the batch's last engine sequence number ``seq``. An
``l2Delta`` carries ``prevSeq``: the ``seq`` of the previous message that changed that
market's book, which is also the ``seq`` of a snapshot taken since. Trade ids are
``seq_of_command · 2^16 + n`` (the n-th fill of that command), stable across restarts.

Invariants
----------
* A subscriber's ``send`` never blocks and never raises: the publisher does not wait for
  anyone (connection.py owns the queues).
* Everything runs on the event loop between batches, so snapshots, mirrors and engine
  queries agree with the messages already published.
* Private messages are built only for accounts that have a subscriber.

Known limitations
-----------------
* ``order_status`` keeps the last ``recent_orders`` states in memory; by ``cloid`` it falls
  back to the durable ``api.cloid_index`` (the last cloids of each account, across restarts).
* ``userFills``, ``userFundings``, ``trades`` and ``liquidations`` snapshots hold the last
  ``recent`` entries kept in memory since the node started, not the whole history.
"""

from __future__ import annotations

import sys
from collections import OrderedDict, defaultdict, deque
from functools import partial
from typing import Any, Callable, Hashable, Protocol

import numpy as np

from api import feeds
from api import protocol as p
from api.actions import Markets, ns_to_ms, reason_name
from api.book_mirror import BookMirror
from engine.codes import CommandKind, EventKind
from engine.commands import CLOID_MAX_BYTES, COMMAND_DTYPE, unpack_cloid

TRADE_ID_SHIFT = 16
_LITTLE_ENDIAN = sys.byteorder == "little"
_RECORD_BYTES, _CLOID_AT = COMMAND_DTYPE.itemsize, COMMAND_DTYPE.fields["cloid0"][1]
# Event kinds as plain ints: the per-event dispatch below compares ints, not enum members.
_FILL, _ACCEPTED, _CANCELLED, _EXPIRED, _AMENDED, _LEVEL = (int(k) for k in (
    EventKind.FILL, EventKind.ACCEPTED, EventKind.CANCELLED, EventKind.EXPIRED, EventKind.AMENDED, EventKind.LEVEL))
_FUNDING, _FUNDING_RATE, _LIQUIDATION, _MARK, _MODE, _LEVERAGE, _BALANCE, _MARGIN = (int(k) for k in (
    EventKind.FUNDING, EventKind.FUNDING_RATE, EventKind.LIQUIDATION, EventKind.MARK, EventKind.MODE,
    EventKind.LEVERAGE, EventKind.BALANCE, EventKind.MARGIN))


class Subscriber(Protocol):
    id: int

    def send(self, frame: bytes, book_key: Hashable | None = None) -> None: ...


PRIVATE = (p.OrderUpdatesSub, p.UserFillsSub, p.UserFundingsSub, p.PositionsSub, p.AccountSub)
BOOK_KEYS = (p.L2BookSub, p.L2DeltaSub)


class Publisher:
    def __init__(self, engine, markets: Markets, *, seq: int = 0, ts_ns: int = 0, recent: int = 100,
                 recent_orders: int = 20_000,
                 session_of: Callable[[int], str | None] | None = None,
                 on_publish: Callable[[str, int], None] | None = None, cloid_index=None):
        self.engine, self.markets = engine, markets
        self._cloid_index = cloid_index  # api.cloid_index.CloidIndex: closed orders from before a restart
        self.seq, self.ts_ns = seq, ts_ns
        self._session_of = session_of or (lambda m: None)
        self._on_publish = on_publish or (lambda channel, n: None)
        self.books = [BookMirror(partial(markets.price, m), partial(markets.size, m), seq)
                      for m in range(len(markets.specs))]
        self._subs: dict[Hashable, dict[int, Subscriber]] = {}
        self._keys_of: dict[int, set[Hashable]] = defaultdict(set)
        self.orders: dict[int, feeds.OrderInfo] = {}
        self._fills: dict[int, deque] = defaultdict(partial(deque, maxlen=recent))
        self._fundings: dict[int, deque] = defaultdict(partial(deque, maxlen=recent))
        self._trades: dict[int, deque] = defaultdict(partial(deque, maxlen=recent))  # per market
        self._liqs: dict[int | None, deque] = defaultdict(partial(deque, maxlen=recent))  # per market; None: all
        self._last_funding: dict[int, int] = {}
        self._l2_dirty: set[int] = set()
        self._recent: OrderedDict[tuple, tuple] = OrderedDict()  # (account, "oid"|"cloid", id) -> last state
        self._recent_max = recent_orders
        self.reload()

    def reload(self) -> None:
        """Read the books and open orders from the engine (at start, after recovery)."""
        for m, book in enumerate(self.books):
            book.load(self.engine.depth(m, 0), self.engine.depth(m, 1), self.seq)
        self.orders.clear()
        for account in np.flatnonzero(self.engine.acct_head != -1).tolist():
            for o in self.engine.open_orders(account):
                self.orders[o.oid] = feeds.OrderInfo(o.account, o.market, o.side, o.price_ticks, o.remaining_lots,
                                                     o.remaining_lots, o.cloid)

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, sub: Subscriber, key: Hashable) -> bytes | None:
        """Add ``sub`` to ``key`` (idempotent) and return the snapshot to send it first."""
        self._subs.setdefault(key, {})[sub.id] = sub
        self._keys_of[sub.id].add(key)
        return self.snapshot(key)

    def unsubscribe(self, sub: Subscriber, key: Hashable) -> bool:
        subs = self._subs.get(key)
        if not subs or sub.id not in subs:
            return False
        del subs[sub.id]
        if not subs:
            del self._subs[key]
        self._keys_of[sub.id].discard(key)
        return True

    def drop(self, sub: Subscriber) -> None:
        """Remove ``sub`` from every channel (its connection closed)."""
        for key in self._keys_of.pop(sub.id, set()):
            subs = self._subs.get(key)
            if subs is not None:
                subs.pop(sub.id, None)
                if not subs:
                    del self._subs[key]

    def subscriber_count(self, key: Hashable) -> int:
        return len(self._subs.get(key, ()))

    def _has(self, key: Hashable) -> bool:
        return key in self._subs

    def _publish(self, key: Hashable, push: Any, channel: str) -> None:
        subs = self._subs.get(key)
        if not subs:
            return
        frame = p.encode(push)
        book_key = key if isinstance(key, BOOK_KEYS) else None
        for sub in list(subs.values()):
            sub.send(frame, book_key)
        self._on_publish(channel, len(subs))

    # ------------------------------------------------------------------ snapshots

    def snapshot(self, key: Hashable) -> bytes | None:
        push = self.snapshot_push(key)
        return None if push is None else p.encode(push)

    def snapshot_push(self, key: Hashable) -> Any:
        """The snapshot of ``key`` as a push Struct (None for channels without one)."""
        time_ms = ns_to_ms(self.ts_ns)
        match key:
            case p.L2BookSub(market=symbol, depth=depth):
                book = self.books[self.markets.id_of(symbol)]
                return p.L2BookPush(p.L2Book(symbol, book.seq, time_ms, book.bids(depth), book.asks(depth)))
            case p.L2DeltaSub(market=symbol):
                book = self.books[self.markets.id_of(symbol)]
                return p.L2DeltaPush(p.L2Delta(symbol, True, book.seq, None, book.checksum(), time_ms,
                                               book.bids(), book.asks()))
            case p.MarketSub(market=symbol):
                return p.MarketPush(self._market_info(self.markets.id_of(symbol)))
            case p.TradesSub(market=symbol):
                trades = list(self._trades.get(self.markets.id_of(symbol), ()))
                return p.TradesPush(p.Trades(symbol, self.seq, True, trades))
            case p.LiquidationsSub(market=symbol):
                m = None if symbol is None else self.markets.id_of(symbol)
                return p.LiquidationsPush(p.Liquidations(symbol, self.seq, True, list(self._liqs.get(m, ()))))
            case p.OrderUpdatesSub(account=account):
                infos = sorted((oid, o) for oid, o in self.orders.items() if o.account == account)
                updates = [o.update(self.markets, "open", self.ts_ns, oid=oid) for oid, o in infos]
                return p.OrderUpdatesPush(p.OrderUpdates(account, self.seq, True, updates))
            case p.UserFillsSub(account=account):
                return p.UserFillsPush(p.UserFills(account, self.seq, True, list(self._fills.get(account, ()))))
            case p.UserFundingsSub(account=account):
                fundings = list(self._fundings.get(account, ()))
                return p.UserFundingsPush(p.UserFundings(account, self.seq, True, fundings))
            case p.PositionsSub(account=account):
                return p.PositionsPush(p.Positions(account, self.seq, True, self._positions(account, None)))
            case p.AccountSub(account=account):
                return p.AccountPush(feeds.account_state(self.engine, account, self.seq, True))
        return None

    def remember_order(self, oid: int, info: feeds.OrderInfo, status: str, reason: str | None, ts_ns: int) -> None:
        """Keep an order's latest state for ``order_status`` (bounded, oldest forgotten first)."""
        state = (oid, (info.account, info.market, info.side, info.price, info.size, info.remaining, info.cloid,
                       status, reason, ts_ns))
        recent = self._recent
        key = (info.account, "oid", oid)
        if key in recent:
            recent.move_to_end(key)
        recent[key] = state
        if info.cloid:
            key = (info.account, "cloid", info.cloid)
            if key in recent:
                recent.move_to_end(key)
            recent[key] = state
        while len(recent) > self._recent_max:
            recent.popitem(last=False)

    def order_status(self, account: int, oid: int | None, cloid: str | None) -> p.OrderStatus:
        """The last known state of one of ``account``'s orders, by oid or else by cloid."""
        key = (account, "oid", oid) if oid else (account, "cloid", cloid)
        found = self._recent.get(key)
        if found is not None:
            oid, (acct, market, side, price, size, remaining, ocloid, status, reason, ts_ns) = found
            info = feeds.OrderInfo(acct, market, side, price, size, remaining, ocloid)
            return p.OrderStatus(account, self.seq, info.update(self.markets, status, ts_ns, reason, oid))
        for open_oid, info in self.orders.items():
            if info.account == account and (open_oid == oid if oid else info.cloid == cloid):
                return p.OrderStatus(account, self.seq, info.update(self.markets, "open", self.ts_ns, oid=open_oid))
        if not oid and cloid and self._cloid_index is not None:
            kept = self._cloid_index.order(account, cloid)
            if kept is not None:
                oid, info, status, reason, ts_ns = kept
                return p.OrderStatus(account, self.seq, info.update(self.markets, status, ts_ns, reason, oid))
        return p.OrderStatus(account, self.seq, None)

    def _market_info(self, m: int) -> p.MarketInfo:
        return feeds.market_info(self.engine, self.markets, m, self.seq, self.ts_ns, self._last_funding.get(m),
                                 self._session_of(m))

    def _positions(self, account: int, markets: set[int] | None) -> list[p.Position]:
        if not self.engine.config.risk:
            return []
        ids = range(len(self.markets.specs)) if markets is None else sorted(markets)
        sizes = self.engine.pos[account]["size"]
        return [feeds.position(self.engine, self.markets, account, m) for m in ids if markets is not None or sizes[m]]

    def flush_l2book(self) -> None:
        """Publish a top-N snapshot of every market whose book changed, to each depth asked."""
        dirty, self._l2_dirty = self._l2_dirty, set()
        for key in [k for k in self._subs if isinstance(k, p.L2BookSub)]:
            if self.markets.id_of(key.market) in dirty:
                self._publish(key, self.snapshot_push(key), "l2Book")

    # ------------------------------------------------------------------ batches

    def on_batch(self, batch) -> None:
        """The sequencer's listener: ``batch.first_seq``, ``ts_ns``, ``commands``, ``events``."""
        n = len(batch.commands)
        if n == 0:
            return
        self.seq, self.ts_ns = batch.first_seq + n - 1, batch.ts_ns
        _BatchView(self, batch).run(batch.events)


class _BatchView:
    """One batch's pass over its events (kept apart so ``Publisher`` stays a table)."""

    def __init__(self, pub: Publisher, batch):
        self.pub, self.batch = pub, batch
        self.levels: dict[int, dict[tuple[int, int], int]] = defaultdict(dict)
        self.trades: dict[int, list[p.Trade]] = defaultdict(list)
        self.liqs: dict[int, list[p.Liquidation]] = defaultdict(list)
        self.markets_touched: set[int] = set()
        self.orders_touched: dict[int, tuple[feeds.OrderInfo, str, str | None]] = {}
        self.fills: dict[int, list[p.UserFill]] = defaultdict(list)
        self.fundings: dict[int, list[p.UserFunding]] = defaultdict(list)
        self.pos_touched: dict[int, set[int]] = defaultdict(set)
        self.acct_touched: set[int] = set()
        self.fills_per_cmd: dict[int, int] = defaultdict(int)
        self.accepted_cmds: set[int] = set()
        self._places: list[bool] | None = None  # commands that are places with a cloid
        self._accounts: list[int] = []  # each command's account
        self._raw: bytes | None = None  # the commands' bytes

    def run(self, rows: np.ndarray) -> None:
        pub = self.pub
        is_level = rows["kind"] == _LEVEL
        levels = rows[is_level]
        for m, side, price, size in zip(levels["market"].tolist(), levels["side"].tolist(),
                                        levels["price"].tolist(), levels["size"].tolist()):
            self.levels[m][(side, price)] = size  # the last size of each level wins
        for row in (rows[~is_level] if len(levels) else rows).tolist():
            self._event(feeds.Ev._make(row))
        commands = self.batch.commands
        if np.any(commands["kind"] == CommandKind.TICK):  # funding predictions move every tick
            self.markets_touched.update(range(len(pub.markets.specs)))
        oracle = commands["market"][commands["kind"] == CommandKind.ORACLE]
        self.markets_touched.update(m for m in oracle.tolist() if 0 <= m < len(pub.markets.specs))
        self._publish_public()
        self._publish_private()

    def _cloid_of_cmd(self, cmd: int, account: int) -> str | None:
        if self._places is None:
            c = self.batch.commands
            self._places = ((c["kind"] == CommandKind.PLACE)
                            & ((c["cloid0"] | c["cloid1"] | c["cloid2"] | c["cloid3"]) != 0)).tolist()
            self._accounts = c["account"].tolist()
            self._raw = c.tobytes() if _LITTLE_ENDIAN else None
        if not self._places[cmd] or self._accounts[cmd] != account:
            return None
        if self._raw is None:
            rec = self.batch.commands[cmd]
            return unpack_cloid([rec["cloid0"], rec["cloid1"], rec["cloid2"], rec["cloid3"]])
        at = cmd * _RECORD_BYTES + _CLOID_AT  # the four little-endian words are the cloid's bytes
        return self._raw[at : at + CLOID_MAX_BYTES].rstrip(b"\x00").decode("utf-8")

    def _event(self, ev: feeds.Ev) -> None:
        kind, m, account, cmd = ev.kind, ev.market, ev.account, ev.cmd
        pub = self.pub
        if kind == _FILL:
            self._fill(ev, m, cmd)
        elif kind == _ACCEPTED:
            first = cmd not in self.accepted_cmds
            self.accepted_cmds.add(cmd)
            cloid = self._cloid_of_cmd(cmd, account) if first else None
            info = feeds.OrderInfo(account, m, ev.side, ev.price, ev.size, ev.size, cloid)
            pub.orders[ev.oid] = info
            self._order(ev.oid, info, "open")
        elif kind == _CANCELLED or kind == _EXPIRED:
            info = pub.orders.pop(ev.oid, None)
            if info is not None:
                expired = kind == _EXPIRED
                reason = "expired" if expired else reason_name(ev.reason)
                self._order(ev.oid, info, "expired" if expired else "cancelled", reason)
        elif kind == _AMENDED:
            info = pub.orders.get(ev.oid)
            if info is not None:
                info.size += ev.size - info.remaining
                info.price, info.remaining = ev.price, ev.size
                self._order(ev.oid, info, "open")
        elif kind == _FUNDING:
            funding = feeds.user_funding(pub.markets, ev)
            pub._fundings[account].append(funding)
            self.fundings[account].append(funding)
            self.pos_touched[account].add(m)
        elif kind == _FUNDING_RATE:
            pub._last_funding[m] = ev.oid
            self.markets_touched.add(m)
        elif kind == _LIQUIDATION:
            if m < 0:  # COLLATERAL and FEE steps concern the account, not a market
                self.acct_touched.add(account)
                return
            liq = feeds.liquidation(pub.markets, ev)
            if liq is not None:
                self.liqs[m].append(liq)
            self.pos_touched[account].add(m)
            self.markets_touched.add(m)
        elif kind == _MARK or kind == _MODE:
            self.markets_touched.add(m)
        elif kind == _LEVERAGE:
            self.pos_touched[account].add(m)
        elif kind == _BALANCE:
            self.acct_touched.add(account)
        elif kind == _MARGIN:  # a margin mode set, or margin moved between cross and a position
            self.pos_touched[account].add(m)
            self.acct_touched.add(account)

    def _order(self, oid: int, info: feeds.OrderInfo, status: str, reason: str | None = None) -> None:
        """Note an order's new state; the batch's last state of each order is published."""
        self.orders_touched[oid] = (info, status, reason)
        self.acct_touched.add(info.account)

    def _fill(self, ev: feeds.Ev, m: int, cmd: int) -> None:
        pub = self.pub
        n = self.fills_per_cmd[cmd]
        self.fills_per_cmd[cmd] = n + 1
        trade_id = ((self.batch.first_seq + cmd) << TRADE_ID_SHIFT) + n
        self.trades[m].append(feeds.trade(pub.markets, ev, trade_id))
        self.markets_touched.add(m)
        taker_oid, maker_oid = ev.oid, ev.maker_oid
        taker, maker = pub.orders.get(taker_oid), pub.orders.get(maker_oid)
        taker_fill, maker_fill = feeds.user_fills(pub.engine, pub.markets, ev, trade_id,
                                                  taker.cloid if taker else None, maker.cloid if maker else None)
        for account, fill in ((ev.account, taker_fill), (ev.maker_account, maker_fill)):
            pub._fills[account].append(fill)
            self.fills[account].append(fill)
            self.pos_touched[account].add(m)
        size = ev.size
        if taker is not None:
            taker.remaining -= size
            self._order_after_fill(taker_oid, taker)
        if maker is not None:
            maker.remaining = ev.remaining
            self._order_after_fill(maker_oid, maker)

    def _order_after_fill(self, oid: int, info: feeds.OrderInfo) -> None:
        if info.remaining <= 0:
            self.pub.orders.pop(oid, None)
            self._order(oid, info, "filled")
        else:
            self._order(oid, info, "open")

    # ------------------------------------------------------------------ publishing

    def _publish_public(self) -> None:
        pub, seq, time_ms = self.pub, self.pub.seq, ns_to_ms(self.batch.ts_ns)
        for m in sorted(self.levels):
            book = pub.books[m]
            prev = book.seq
            bids, asks = book.apply(self.levels[m], seq)
            pub._l2_dirty.add(m)
            symbol = pub.markets.symbol(m)
            delta = p.L2Delta(symbol, False, seq, prev, book.checksum(), time_ms, bids, asks)
            pub._publish(p.L2DeltaSub(market=symbol), p.L2DeltaPush(delta), "l2Delta")
        for m in sorted(self.trades):
            symbol = pub.markets.symbol(m)
            pub._trades[m].extend(self.trades[m])
            pub._publish(p.TradesSub(market=symbol), p.TradesPush(p.Trades(symbol, seq, False, self.trades[m])),
                         "trades")
        for m in sorted(self.liqs):
            symbol = pub.markets.symbol(m)
            pub._liqs[m].extend(self.liqs[m])
            pub._liqs[None].extend(self.liqs[m])
            push = p.LiquidationsPush(p.Liquidations(symbol, seq, False, self.liqs[m]))
            pub._publish(p.LiquidationsSub(market=symbol), push, "liquidations")
            pub._publish(p.LiquidationsSub(market=None), push, "liquidations")
        for m in sorted(self.markets_touched):
            key = p.MarketSub(market=pub.markets.symbol(m))
            if pub._has(key):
                pub._publish(key, p.MarketPush(pub._market_info(m)), "market")

    def _publish_private(self) -> None:
        pub, seq, ts = self.pub, self.pub.seq, self.batch.ts_ns
        updates: dict[int, list[p.OrderUpdate]] = defaultdict(list)
        watched: dict[int, bool] = {}  # account -> has an orderUpdates subscriber
        for oid in sorted(self.orders_touched):
            info, status, reason = self.orders_touched[oid]
            pub.remember_order(oid, info, status, reason, ts)
            account = info.account
            if account not in watched:
                watched[account] = pub._has(p.OrderUpdatesSub(account=account))
            if watched[account]:
                updates[info.account].append(info.update(pub.markets, status, ts, reason, oid))
        for account in sorted(updates):
            orders = updates[account]
            pub._publish(p.OrderUpdatesSub(account=account), p.OrderUpdatesPush(p.OrderUpdates(account, seq, False, orders)),
                         "orderUpdates")
        for account in sorted(self.fills):
            pub._publish(p.UserFillsSub(account=account), p.UserFillsPush(p.UserFills(account, seq, False, self.fills[account])),
                         "userFills")
        for account in sorted(self.fundings):
            push = p.UserFundingsPush(p.UserFundings(account, seq, False, self.fundings[account]))
            pub._publish(p.UserFundingsSub(account=account), push, "userFundings")
        if not pub.engine.config.risk:
            return
        marks = {m for m in self.markets_touched}
        for key in [k for k in pub._subs if isinstance(k, (p.PositionsSub, p.AccountSub))]:
            account = key.account
            held = set(np.flatnonzero(pub.engine.pos[account]["size"]).tolist()) & marks
            changed = self.pos_touched.get(account, set()) | held
            if isinstance(key, p.PositionsSub) and changed:
                positions = pub._positions(account, changed)
                pub._publish(key, p.PositionsPush(p.Positions(account, seq, False, positions)), "positions")
            elif isinstance(key, p.AccountSub) and (changed or account in self.acct_touched):
                pub._publish(key, p.AccountPush(feeds.account_state(pub.engine, account, seq, False)), "account")

