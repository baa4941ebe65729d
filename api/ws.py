"""The ``/ws`` handler: one read loop per connection, each request answered on the
connection's own queue (spec/gateway.md §1–4).

Layout
------
``handle(request)`` admits the connection (per-address rate, connection cap), then reads
frames: size, rate and validity checks, ``decode_request``, and dispatch with ``match``:
``subscribe`` / ``unsubscribe`` (snapshot first), ``post`` (a task each, at most
``max_in_flight_posts``), ``logon`` (nonce journaled before the answer), ``ping``.

Invariants
----------
* Every refused message gets one error naming its code (a post's error is its ``post``
  answer, with its ``id``); invalid messages beyond 2 a second close the connection (1008).
* A private subscription is keyed by the session's account, so a connection can only ever
  receive its own account's messages.
* Client pings are answered; any frame, pongs included, proves the client alive.

Known limitations
-----------------
* A text frame that is not valid UTF-8 is failed by aiohttp itself with close 1007, as
  RFC 6455 requires, before this handler sees it; over REST the same body gets
  ``INVALID_UTF8``.
"""

from __future__ import annotations

import asyncio
import socket

import msgspec
from aiohttp import WSMsgType, web

from api import protocol as p
from api.auth import AuthError
from api.connection import Connection
from api.errors import GatewayCode, ProtocolError
from api.gateway import GATEWAY, Gateway
from api.protocol import _maybe_post_id
from api.ratelimit import CLOSE_POLICY, Refusal
from api.sequencer import SequencerUnavailable
from engine.codes import Reject


async def handle(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    now = gw.clock_ns()
    refusal = gw.ip_limiter.admit_connection(request.remote or "", now)
    if refusal is not None:
        gw.count_reject(refusal.code)
        return _http_refusal(refusal.code, refusal.retry_after_ms, 429)
    if len(gw.connections) >= gw.config.max_connections:
        gw.count_reject(GatewayCode.TOO_MANY_CONNECTIONS)
        return _http_refusal(GatewayCode.TOO_MANY_CONNECTIONS, 1000, 503, f"limit {gw.config.max_connections}")
    limit = gw.limits.max_message_bytes
    ws = web.WebSocketResponse(autoping=False, max_msg_size=2 * limit + 16, timeout=gw.config.close_grace_s,
                               compress=False)
    await ws.prepare(request)
    _bound_send_buffer(request, gw.config.send_buffer_bytes)
    conn = gw.new_connection(ws, request.transport)
    posts: set[asyncio.Task] = set()
    try:
        async for msg in ws:
            if conn.closing:
                break
            if msg.type == WSMsgType.TEXT:
                _on_text(gw, conn, msg.data, posts)
            elif msg.type == WSMsgType.BINARY:
                conn.limiter.admit_message(gw.clock_ns())
                _invalid(gw, conn, ProtocolError(GatewayCode.BINARY_FRAME, f"{len(msg.data)} bytes"))
            elif msg.type == WSMsgType.PING:
                conn.limiter.last_inbound_ns = max(conn.limiter.last_inbound_ns, gw.clock_ns())
                conn.pong(msg.data)
            elif msg.type == WSMsgType.PONG:
                conn.limiter.last_inbound_ns = max(conn.limiter.last_inbound_ns, gw.clock_ns())
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        gw.forget(conn)
        for task in posts:
            task.cancel()
        await conn.finish()
        gw.metrics.inc("afterhours_connections_closed_total", reason=conn.close_reason)
    return ws


def _bound_send_buffer(request: web.Request, size: int | None) -> None:
    """A fixed kernel send buffer: a client that stops reading fills its queue sooner."""
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if size is not None and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def _http_refusal(code: int, retry_after_ms: int | None, status: int, detail: str | None = None) -> web.Response:
    body = p.ErrorBody(-abs(int(code)), p.compose_msg(code, detail), retry_after_ms)
    headers = {"Retry-After": str(max(1, -(-(retry_after_ms or 1000) // 1000)))}
    return web.Response(body=p.encode(body), status=status, content_type="application/json", headers=headers)


def _byte_size(text: str, limit: int) -> int:
    return len(text) if len(text) * 4 <= limit else len(text.encode("utf-8", "surrogatepass"))


def _on_text(gw: Gateway, conn: Connection, text: str, posts: set[asyncio.Task]) -> None:
    now = gw.clock_ns()
    too_big = conn.limiter.check_size(_byte_size(text, gw.limits.max_message_bytes))
    if too_big is not None:
        gw.count_reject(too_big.code)
        conn.close(too_big.close, p.encode(p.error_push(too_big.code, too_big.detail)), reason="too_large")
        return
    limited = conn.limiter.admit_message(now)
    if limited is not None:
        _refuse(gw, conn, limited, _maybe_post_id(text))
        return
    try:
        request = p.decode_request(text, gw.limits.max_message_bytes)
    except ProtocolError as exc:
        _invalid(gw, conn, exc)
        return
    gw.metrics.inc("afterhours_messages_in_total", method=type(request).__struct_config__.tag)
    match request:
        case p.Subscribe(subscription=sub):
            _subscribe(gw, conn, sub)
        case p.Unsubscribe(subscription=sub):
            _unsubscribe(gw, conn, sub)
        case p.Post():
            _start_post(gw, conn, request, text, posts)
        case p.Logon():
            task = asyncio.get_running_loop().create_task(_logon(gw, conn, request))
            posts.add(task)
            task.add_done_callback(posts.discard)
        case p.Ping():
            conn.send_push(p.PongPush(p.Pong(gw.now_ms())))


def _invalid(gw: Gateway, conn: Connection, exc: ProtocolError) -> None:
    """Answer an invalid message; past the invalid-message budget, close 1008."""
    gw.count_reject(exc.code)
    if exc.post_id is not None:
        conn.send_push(p.post_error(exc.post_id, exc.code, exc.detail))
    else:
        conn.send_push(p.error_push(exc.code, exc.detail))
    over = conn.limiter.record_invalid(gw.clock_ns())
    if over is not None:
        gw.count_reject(over.code)
        conn.close(CLOSE_POLICY, p.encode(p.error_push(over.code, over.detail)), reason="invalid")


def _refuse(gw: Gateway, conn: Connection, refusal: Refusal, post_id: int | None = None, *,
            method: str | None = None, subscription=None) -> None:
    gw.count_reject(refusal.code)
    detail = refusal.detail or None
    if post_id is not None:
        conn.send_push(p.post_error(post_id, refusal.code, detail, retry_after_ms=refusal.retry_after_ms))
    else:
        conn.send_push(p.error_push(refusal.code, detail, retry_after_ms=refusal.retry_after_ms, method=method,
                                    subscription=subscription))


def _error(gw: Gateway, conn: Connection, code: int, detail: str | None, *, method: str, subscription=None) -> None:
    gw.count_reject(code)
    conn.send_push(p.error_push(code, detail, method=method, subscription=subscription))


# ---------------------------------------------------------------------- subscriptions


def _key(gw: Gateway, conn: Connection, sub: p.Subscription, method: str):
    """The normalised subscription key, or None after answering an error."""
    market = getattr(sub, "market", None)
    if market is not None and gw.markets.get(market) is None:
        _error(gw, conn, Reject.UNKNOWN_MARKET, market, method=method, subscription=sub)
        return None
    if not p.is_private(sub):
        return sub
    if method == "subscribe":
        try:
            gw.auth.check_subscription(sub, conn.session, gw.now_ms())
        except AuthError as exc:
            _error(gw, conn, exc.code, exc.detail or None, method=method, subscription=sub)
            return None
    if conn.session is None:
        _error(gw, conn, GatewayCode.NOT_LOGGED_ON, None, method=method, subscription=sub)
        return None
    return msgspec.structs.replace(sub, account=conn.session.account)


def _subscribe(gw: Gateway, conn: Connection, sub: p.Subscription) -> None:
    key = _key(gw, conn, sub, "subscribe")
    if key is None:
        return
    refusal = conn.limiter.add_subscription(key)
    if refusal is not None:
        _refuse(gw, conn, refusal, method="subscribe", subscription=sub)
        return
    conn.subscriptions.add(key)
    conn.send_push(p.SubscriptionResponsePush(p.SubscriptionAck("subscribe", sub)))
    snapshot = gw.publisher.subscribe(conn, key)
    if snapshot is not None:
        conn.send(snapshot, key if isinstance(key, (p.L2BookSub, p.L2DeltaSub)) else None)


def _unsubscribe(gw: Gateway, conn: Connection, sub: p.Subscription) -> None:
    key = _key(gw, conn, sub, "unsubscribe")
    if key is None:
        return
    conn.limiter.remove_subscription(key)
    conn.subscriptions.discard(key)
    gw.publisher.unsubscribe(conn, key)
    conn.send_push(p.SubscriptionResponsePush(p.SubscriptionAck("unsubscribe", sub)))


# ---------------------------------------------------------------------- posts and logons


def _start_post(gw: Gateway, conn: Connection, post: p.Post, frame: str, posts: set[asyncio.Task]) -> None:
    refusal = conn.limiter.begin_post()
    if refusal is not None:
        _refuse(gw, conn, refusal, post.id)
        return
    task = asyncio.get_running_loop().create_task(_post(gw, conn, post, frame))
    posts.add(task)
    task.add_done_callback(posts.discard)


async def _post(gw: Gateway, conn: Connection, post: p.Post, frame: str) -> None:
    start = asyncio.get_running_loop().time()
    try:
        response = await run_post(gw, post, frame, conn.session)
    finally:
        conn.limiter.end_post()
    conn.send_push(p.PostPush(p.PostResult(post.id, response)))
    gw.metrics.observe("afterhours_post_seconds", asyncio.get_running_loop().time() - start)


async def run_post(gw: Gateway, post: p.Post, frame: str, session) -> p.PostResponse:
    """Authorise a post (its session, or its signature) and execute it."""
    try:
        account = gw.auth.authorize_post(post, frame, session, gw.now_ms())
    except AuthError as exc:
        gw.count_reject(exc.code)
        return p.PostError(-int(exc.code), exc.msg)
    if post.signature is not None:
        key_id, nonce = post.keyId, (post.keyId, post.nonce)
    else:
        key_id, nonce = session.key_id, None
    return await gw.executor.execute(post.action, account, key_id, nonce)


async def _logon(gw: Gateway, conn: Connection, msg: p.Logon) -> None:
    try:
        session = gw.auth.logon(msg, gw.now_ms(), conn.session)
    except AuthError as exc:
        _error(gw, conn, exc.code, exc.detail or None, method="logon")
        return
    try:
        await gw.sequencer.record_nonce(msg.keyId, msg.nonce)
    except SequencerUnavailable as exc:
        _error(gw, conn, GatewayCode.WRITES_SUSPENDED, str(exc), method="logon")
        return
    if conn.session is not None:  # a concurrent logon won
        _error(gw, conn, GatewayCode.ALREADY_LOGGED_ON, f"account {conn.session.account}", method="logon")
        return
    conn.session = session
    key = gw.auth.keys.must_get(session.key_id)
    conn.send_push(p.LogonPush(p.LogonOk(session.account, session.key_id, list(key.scopes), key.expires_at_ms or None)))
