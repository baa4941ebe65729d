"""The publisher against an engine directly (no sequencer, no sockets): channel messages from
event arrays, sequencing, book checksums, snapshots, encoded-once fan-out, and account
isolation of the private channels."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pytest

from api import protocol as p
from api.actions import Markets
from api.l2book import L2Book
from api.publisher import Publisher
from engine.commands import Cancel, Deposit, OracleUpdate, Place, Tick, to_records
from engine.engine import Engine
from gateway_harness import ALICE, BOB, CAROL, CONFIG, NVDA, SETUP, SPECS, book_levels, warm_engine

T = 1_780_000_000_000_000_000


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    warm_engine()


@dataclass
class Batch:
    first_seq: int
    ts_ns: int
    commands: np.ndarray
    events: np.ndarray


class Recorder:
    def __init__(self, ident: int):
        self.id = ident
        self.frames: list[tuple[bytes, object]] = []

    def send(self, frame: bytes, book_key=None) -> None:
        self.frames.append((frame, book_key))

    def pushes(self) -> list:
        return [p.decode_push(frame) for frame, _ in self.frames]


class Feed:
    """An engine, a publisher on it, and ``run(commands)`` that applies a batch and publishes it."""

    def __init__(self):
        self.engine = Engine(SPECS, CONFIG)
        self.seq = 0
        self.run(SETUP)
        self.pub = Publisher(self.engine, Markets(SPECS), seq=self.seq, ts_ns=T)

    def run(self, commands) -> Batch:
        records = to_records(commands, SPECS)
        records["ts"] = T + self.seq
        events = self.engine.apply(records)
        batch = Batch(self.seq + 1, T + self.seq, records, events)
        self.seq += len(records)
        if hasattr(self, "pub"):
            self.pub.on_batch(batch)
        return batch


def buy(account, size, price, **kw):
    return Place(market=0, account=account, side="buy", size=Decimal(size), price=Decimal(price), **kw)


def sell(account, size, price, **kw):
    return Place(market=0, account=account, side="sell", size=Decimal(size), price=Decimal(price), **kw)


def test_l2delta_chain_rebuilds_the_engine_book_with_matching_checksums():
    feed = Feed()
    watcher = Recorder(1)
    key = p.L2DeltaSub(market="NVDA")
    snapshot = p.decode_push(feed.pub.subscribe(watcher, key))
    client = L2Book("NVDA")
    client.apply(snapshot.data)
    feed.run([buy(ALICE, "1", "99.00"), buy(ALICE, "2", "99.00"), sell(BOB, "1", "101.00")])
    feed.run([sell(BOB, "2.5", "99.00"), buy(ALICE, "0.25", "98.50", cloid="x")])
    feed.run([Cancel(market=0, account=ALICE, cloid="x")])
    deltas = [push.data for push in watcher.pushes()]
    assert [d.prevSeq for d in deltas] == [snapshot.data.seq] + [d.seq for d in deltas[:-1]]
    for delta in deltas:
        assert client.apply(delta)
    assert client.bids() == book_levels(feed.engine, 0, 0, NVDA)
    assert client.asks() == book_levels(feed.engine, 0, 1, NVDA)
    assert all(book_key == key for _, book_key in watcher.frames)


def test_every_subscriber_gets_the_same_encoded_bytes():
    feed = Feed()
    subs = [Recorder(k) for k in range(3)]
    for sub in subs:
        feed.pub.subscribe(sub, p.TradesSub(market="NVDA"))
    feed.run([sell(BOB, "1", "100.00"), buy(ALICE, "1", "100.00")])
    frames = [sub.frames[0][0] for sub in subs]
    assert all(frame is frames[0] for frame in frames)
    [trades] = [push.data for push in subs[0].pushes()]
    assert [(t.price, t.size, t.side) for t in trades.trades] == [("100.00", "1.000", "buy")]
    assert trades.trades[0].tradeId == (feed.seq << 16)  # the taker is the batch's last command, its first fill


def test_private_channels_reach_only_their_account():
    feed = Feed()
    alice, bob = Recorder(1), Recorder(2)
    for sub in (p.OrderUpdatesSub(account=ALICE), p.UserFillsSub(account=ALICE), p.PositionsSub(account=ALICE)):
        feed.pub.subscribe(alice, sub)
    feed.pub.subscribe(bob, p.AccountSub(account=BOB))
    alice.frames.clear()
    bob.frames.clear()
    feed.run([sell(BOB, "1", "100.00", cloid="bob-1"), buy(ALICE, "0.4", "100.00", cloid="alice-1")])
    pushes = alice.pushes()
    assert {push.data.account for push in pushes} == {ALICE}
    orders = [o for push in pushes if isinstance(push, p.OrderUpdatesPush) for o in push.data.orders]
    assert [(o.cloid, o.status, o.remaining) for o in orders] == [("alice-1", "filled", "0")]
    fills = [f for push in pushes if isinstance(push, p.UserFillsPush) for f in push.data.fills]
    assert [(f.cloid, f.liquidity, f.fee) for f in fills] == [("alice-1", "taker", "0.014")]
    assert {push.data.account for push in bob.pushes()} == {BOB}
    assert isinstance(bob.pushes()[0], p.AccountPush)


def test_snapshots_on_subscribe_reflect_the_state_as_of_seq():
    feed = Feed()
    feed.run([buy(ALICE, "1", "99.00", cloid="rest"), sell(BOB, "0.5", "99.00")])
    alice = Recorder(1)
    orders = p.decode_push(feed.pub.subscribe(alice, p.OrderUpdatesSub(account=ALICE))).data
    assert orders.isSnapshot and orders.seq == feed.seq
    assert [(o.cloid, o.size, o.remaining, o.status) for o in orders.orders] == [("rest", "1.000", "0.500", "open")]
    fills = p.decode_push(feed.pub.subscribe(alice, p.UserFillsSub(account=ALICE))).data
    assert [(f.size, f.liquidity) for f in fills.fills] == [("0.500", "maker")]
    positions = p.decode_push(feed.pub.subscribe(alice, p.PositionsSub(account=ALICE))).data
    assert [(x.market, x.size) for x in positions.positions] == [("NVDA", "0.500")]
    l2 = p.decode_push(feed.pub.subscribe(alice, p.L2BookSub(market="NVDA", depth=1))).data
    assert l2.bids == [("99.00", "0.500")] and l2.asks == []
    market = p.decode_push(feed.pub.subscribe(alice, p.MarketSub(market="NVDA"))).data
    assert (market.oracle, market.openInterest, market.mode) == ("100.00", "0.500", "external")


def test_l2book_is_conflated_to_one_snapshot_per_flush():
    feed = Feed()
    watcher = Recorder(1)
    feed.pub.subscribe(watcher, p.L2BookSub(market="NVDA", depth=5))
    watcher.frames.clear()
    for k in range(5):
        feed.run([buy(ALICE, "1", f"98.{k:02d}")])
    assert watcher.frames == []
    feed.pub.flush_l2book()
    feed.pub.flush_l2book()
    [push] = watcher.pushes()
    assert [price for price, _ in push.data.bids] == ["98.04", "98.03", "98.02", "98.01", "98.00"]


def test_unsubscribe_and_drop_stop_the_fan_out():
    feed = Feed()
    watcher = Recorder(1)
    key = p.TradesSub(market="NVDA")
    feed.pub.subscribe(watcher, key)
    feed.pub.subscribe(watcher, key)  # idempotent
    assert feed.pub.subscriber_count(key) == 1
    assert feed.pub.unsubscribe(watcher, key) and not feed.pub.unsubscribe(watcher, key)
    feed.pub.subscribe(watcher, p.MarketSub(market="NVDA"))
    feed.pub.drop(watcher)
    feed.run([sell(BOB, "1", "100.00"), buy(ALICE, "1", "100.00")])
    assert watcher.frames[1:] == []


def test_a_backstop_liquidation_is_public_and_the_funds_fill_is_a_trade():
    feed = Feed()
    feed.run([Deposit(account=5, amount=Decimal("1000"))])
    feed.run([sell(BOB, "95", "100.00"), buy(5, "95", "100.00")])
    watcher = Recorder(1)
    for key in (p.LiquidationsSub(), p.LiquidationsSub(market="NVDA"), p.TradesSub(market="NVDA")):
        feed.pub.subscribe(watcher, key)
    feed.run([OracleUpdate(market=0, price=Decimal("92.00")), buy(CAROL, "200", "91.50")])
    feed.run([Tick(ts_ns=T + 10)])
    pushes = watcher.pushes()
    liqs = [push.data for push in pushes if isinstance(push, p.LiquidationsPush)]
    assert len(liqs) == 2 and liqs[0] == liqs[1]  # the market's subscribers and the all-markets ones
    assert [(x.kind, x.side, x.price, x.size) for x in liqs[0].events] == [("backstop", "long", "92.00", "95.000")]
    [trades] = [push.data for push in pushes if isinstance(push, p.TradesPush)]
    assert [(t.price, t.size, t.side) for t in trades.trades] == [("91.50", "19.000", "sell")]


def test_late_subscribers_get_the_last_trades_and_liquidations_as_a_snapshot():
    """Subscribing after a liquidation: ``trades`` and ``liquidations`` (the market's and the
    all-markets one) answer with what happened, ``isSnapshot: true``, as of the last batch;
    the next trade comes as an update after it."""
    feed = Feed()
    feed.run([Deposit(account=5, amount=Decimal("1000"))])
    feed.run([sell(BOB, "95", "100.00"), buy(5, "95", "100.00")])
    feed.run([OracleUpdate(market=0, price=Decimal("92.00")), buy(CAROL, "200", "91.50")])
    feed.run([Tick(ts_ns=T + 10)])
    late = Recorder(2)
    trades = p.decode_push(feed.pub.subscribe(late, p.TradesSub(market="NVDA"))).data
    assert trades.isSnapshot and trades.seq == feed.seq
    assert [(t.price, t.size) for t in trades.trades] == [("100.00", "95.000"), ("91.50", "19.000")]
    for key, market in ((p.LiquidationsSub(market="NVDA"), "NVDA"), (p.LiquidationsSub(), None)):
        liqs = p.decode_push(feed.pub.subscribe(late, key)).data
        assert (liqs.market, liqs.isSnapshot, liqs.seq) == (market, True, feed.seq)
        assert [(x.market, x.kind, x.side, x.size) for x in liqs.events] == [("NVDA", "backstop", "long", "95.000")]
    assert p.decode_push(feed.pub.subscribe(late, p.TradesSub(market="TSLA"))).data.trades == []
    feed.run([sell(BOB, "1", "92.00"), buy(ALICE, "1", "92.00")])
    [update] = [push.data for push in late.pushes() if isinstance(push, p.TradesPush)]
    assert not update.isSnapshot and update.seq == feed.seq and len(update.trades) == 1


def test_a_random_stream_keeps_every_channel_equal_to_the_engine():
    """A seeded stream of places, cancels, amends and IOCs by four accounts, in batches: after
    each batch the client book equals the engine's, each account's open orders rebuilt from
    ``orderUpdates`` equal ``Engine.open_orders``, and its positions those on ``positions``."""
    import random

    from engine.commands import Amend

    rng = random.Random(20261130)
    feed = Feed()
    accounts = [ALICE, BOB, CAROL, 5]
    feed.run([Deposit(account=5, amount=Decimal("100000"))])
    book, watcher = L2Book("NVDA"), Recorder(0)
    book.apply(p.decode_push(feed.pub.subscribe(watcher, p.L2DeltaSub(market="NVDA"))).data)
    subs = {a: Recorder(a) for a in accounts}
    opened: dict[int, dict[int, str]] = {}
    sizes: dict[int, dict[str, str]] = {a: {} for a in accounts}
    for a, rec in subs.items():
        opened[a] = {o.oid: o.remaining for o in p.decode_push(feed.pub.subscribe(rec, p.OrderUpdatesSub(account=a))).data.orders}
        feed.pub.subscribe(rec, p.PositionsSub(account=a))
    for _ in range(25):
        commands = []
        for _ in range(rng.randint(1, 8)):
            a = rng.choice(accounts)
            live = feed.engine.open_orders(a)
            roll = rng.random()
            if roll < 0.15 and live:
                commands.append(Cancel(market=0, account=a, oid=rng.choice(live).oid))
            elif roll < 0.25 and live:
                commands.append(Amend(market=0, account=a, oid=rng.choice(live).oid,
                                      size=Decimal(rng.randint(1, 3)) / 2))
            else:
                side = rng.choice(["buy", "sell"])
                price = Decimal(rng.randint(9900, 10100)) / 100
                make = buy if side == "buy" else sell
                commands.append(make(a, str(Decimal(rng.randint(1, 6)) / 4), str(price),
                                     tif=rng.choice(["gtc", "gtc", "ioc"])))
        feed.run(commands)
        for push in watcher.pushes():
            book.apply(push.data)
        watcher.frames.clear()
        assert book.bids() == book_levels(feed.engine, 0, 0, NVDA)
        assert book.asks() == book_levels(feed.engine, 0, 1, NVDA)
        for a, rec in subs.items():
            for push in rec.pushes():
                if isinstance(push, p.OrderUpdatesPush):
                    for o in push.data.orders:
                        if o.status == "open":
                            opened[a][o.oid] = o.remaining
                        else:
                            opened[a].pop(o.oid, None)
                else:
                    sizes[a].update({x.market: x.size for x in push.data.positions})
            rec.frames.clear()
            engine_orders = {o.oid: p.format_decimal(NVDA.lot_size * o.remaining_lots) for o in feed.engine.open_orders(a)}
            assert opened[a] == engine_orders
            assert sizes[a].get("NVDA", "0") == p.format_decimal(NVDA.lot_size * feed.engine.position(a, 0).size_lots)
    assert any(feed.engine.position(a, 0).size_lots for a in accounts)  # the stream did trade
