"""A small stand-in for the gateway, speaking the real wire protocol over a real socket, so
the client's machinery can be tested without an engine: logon through the real
``Authenticator``, posts answered with resting/cancelled statuses, an ``l2Delta`` feed kept
plainly (one dict of levels per side) with the shared checksum, pings, and switches to
stall answers, go silent, or drop every connection.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import weakref
from decimal import Decimal

from aiohttp import WSMsgType, web

from api import protocol as p
from api.auth import Authenticator, AuthError, KeyStore, NonceStore, create_demo_key
from api.errors import GatewayCode
from api.l2book import book_checksum
from engine.codes import Reject

NETWORK = "local"
ACCOUNT = 7
REFUSED_MARKET = "HALTED"  # posts for it get a whole-request error
SILENT_MARKET = "SILENT"  # posts for it are never answered


class FakeBook:
    """Resting orders by oid, aggregated into levels; a seq bumped by every change."""

    def __init__(self, market: str):
        self.market, self.seq = market, 0
        self.orders: dict[int, tuple[str, Decimal, Decimal]] = {}  # oid -> (side, price, size)

    def _levels(self, side: str) -> dict[Decimal, Decimal]:
        out: dict[Decimal, Decimal] = {}
        for s, price, size in self.orders.values():
            if s == side:
                out[price] = out.get(price, Decimal(0)) + size
        return out

    def levels(self, side: str) -> list[tuple[str, str]]:
        levels = self._levels(side)
        keys = sorted(levels, reverse=(side == "buy"))
        return [(p.format_decimal(k), p.format_decimal(levels[k])) for k in keys]

    def checksum(self) -> int:
        return book_checksum(self.levels("buy"), self.levels("sell"))

    def snapshot(self) -> p.L2Delta:
        return p.L2Delta(self.market, True, self.seq, None, self.checksum(), now_ms(),
                         self.levels("buy"), self.levels("sell"))

    def change(self, mutate) -> p.L2Delta:
        before = {side: self._levels(side) for side in ("buy", "sell")}
        mutate()
        after = {side: self._levels(side) for side in ("buy", "sell")}
        changed = {}
        for side in ("buy", "sell"):
            prices = sorted(set(before[side]) | set(after[side]))
            changed[side] = [(p.format_decimal(px), p.format_decimal(after[side].get(px, Decimal(0))))
                             for px in prices if before[side].get(px) != after[side].get(px)]
        prev, self.seq = self.seq, self.seq + 1
        return p.L2Delta(self.market, False, self.seq, prev, self.checksum(), now_ms(),
                         changed["buy"], changed["sell"])


def now_ms() -> int:
    return int(time.time() * 1000)


class FakeGateway:
    def __init__(self):
        self.keys = KeyStore()
        self.signer = create_demo_key(self.keys, ACCOUNT)
        self.auth = Authenticator(NETWORK, self.keys, NonceStore())
        self.books: dict[str, FakeBook] = {}
        self.oids = itertools.count(1)
        self.sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self.subscribers: dict[str, set[web.WebSocketResponse]] = {}
        self.pings = 0
        self.logons = 0
        self.silenced: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()  # hung connections
        self.connections = 0
        self.market_info: dict[str, p.MarketInfo] = {}
        self.market_subscribers: dict[str, set[web.WebSocketResponse]] = {}
        self.posts: list[p.Post] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ws", self.ws)
        app.router.add_get("/v1/book", self.rest_book)
        return app

    def book(self, market: str) -> FakeBook:
        return self.books.setdefault(market, FakeBook(market))

    def silence_all(self) -> None:
        """The connections open now read on but answer nothing, like a hung server."""
        self.silenced.update(self.sockets)

    async def drop_all(self) -> None:
        for ws in list(self.sockets):
            await ws.close(code=1001, message=b"going away")

    async def rest_book(self, request: web.Request) -> web.Response:
        book = self.book(request.query["market"])
        body = p.BookResponse(book.seq, book.levels("buy"), book.levels("sell"))
        return web.Response(body=p.encode(body), content_type="application/json")

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.add(ws)
        self.connections += 1
        session = None
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT or ws in self.silenced:
                    continue
                msg = p.decode_request(frame.data)
                match msg:
                    case p.Logon():
                        try:
                            session = self.auth.logon(msg, now_ms(), session)
                        except AuthError as exc:
                            await self.send(ws, p.error_push(exc.code, method="logon"))
                            continue
                        self.logons += 1
                        await self.send(ws, p.LogonPush(p.LogonOk(session.account, session.key_id, ["read", "trade"])))
                    case p.Ping():
                        self.pings += 1
                        await self.send(ws, p.PongPush(p.Pong(now_ms())))
                    case p.Subscribe(subscription=sub) | p.Unsubscribe(subscription=sub):
                        await self.on_subscription(ws, msg, sub)
                    case p.Post():
                        if session is None:
                            await self.send(ws, p.post_error(msg.id, GatewayCode.SIGNATURE_REQUIRED))
                        else:
                            await self.on_post(ws, msg)
        finally:
            for subs in self.subscribers.values():
                subs.discard(ws)
        return ws

    async def send(self, ws: web.WebSocketResponse, push) -> None:
        if not ws.closed:
            await ws.send_str(p.encode(push).decode())

    async def on_subscription(self, ws, msg, sub) -> None:
        method = "subscribe" if isinstance(msg, p.Subscribe) else "unsubscribe"
        await self.send(ws, p.SubscriptionResponsePush(p.SubscriptionAck(method, sub)))
        if isinstance(sub, p.MarketSub):
            self.market_subscribers.setdefault(sub.market, set()).add(ws)
            if sub.market in self.market_info:
                await self.send(ws, p.MarketPush(self.market_info[sub.market]))
        if isinstance(sub, p.PositionsSub):
            await self.send(ws, p.PositionsPush(p.Positions(ACCOUNT, 0, True, [])))
        if not isinstance(sub, p.L2DeltaSub):
            return
        subs = self.subscribers.setdefault(sub.market, set())
        if method == "subscribe":
            subs.add(ws)
            await self.send(ws, p.L2DeltaPush(self.book(sub.market).snapshot()))
        else:
            subs.discard(ws)

    async def set_market(self, market: str, mark: str, mode: str = "external") -> None:
        """Publish a ``market`` push with this mark and mode."""
        info = p.MarketInfo(market, 0, now_ms(), mode, "regular", mark, mark, mark, None, "0", None, 0, "0")
        self.market_info[market] = info
        for ws in list(self.market_subscribers.get(market, ())):
            await self.send(ws, p.MarketPush(info))

    def resting(self, market: str) -> list[tuple[str, Decimal, Decimal]]:
        """The orders resting in the market: (side, price, size), bids high to low then asks."""
        orders = self.book(market).orders.values()
        bids = sorted((o for o in orders if o[0] == "buy"), key=lambda o: -o[1])
        return bids + sorted((o for o in orders if o[0] == "sell"), key=lambda o: o[1])

    async def publish(self, delta: p.L2Delta) -> None:
        for ws in list(self.subscribers.get(delta.market, ())):
            await self.send(ws, p.L2DeltaPush(delta))

    async def on_post(self, ws, post: p.Post) -> None:
        items = post.action.actions if isinstance(post.action, p.Batch) else [post.action]
        markets = {getattr(item, "market", None) for item in items}
        if SILENT_MARKET in markets:
            return
        if REFUSED_MARKET in markets:
            await self.send(ws, p.post_error(post.id, GatewayCode.WRITES_SUSPENDED, "test"))
            return
        self.posts.append(post)
        statuses = [await self.apply(item) for item in items]  # applied in arrival order
        answer = p.PostPush(p.PostResult(post.id, p.PostOk(next(self.oids), statuses)))

        async def answer_later() -> None:  # answers come back out of order
            await asyncio.sleep(0.001 * (post.id % 3))
            await self.send(ws, answer)

        asyncio.get_running_loop().create_task(answer_later())

    async def apply(self, item) -> p.ActionStatus:
        book = self.book(item.market)
        match item:
            case p.Place(orderType="market"):
                return p.Filled(next(self.oids), item.size, self.market_info[item.market].mark, item.cloid)
            case p.Place():
                oid = next(self.oids)
                order = (item.side, Decimal(item.price), Decimal(item.size))
                await self.publish(book.change(lambda: book.orders.__setitem__(oid, order)))
                return p.Resting(oid, item.cloid)
            case p.Cancel(oid=oid) if oid in book.orders:
                await self.publish(book.change(lambda: book.orders.pop(oid)))
                return p.Cancelled(oid)
            case p.CancelAll():
                oids = list(book.orders)
                await self.publish(book.change(book.orders.clear))
                return p.CancelledAll(len(oids))
        return p.rejected(Reject.UNKNOWN_ORDER)
