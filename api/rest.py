"""REST under ``/v1/``: the same reads and actions as the websocket, plus health, the protocol
schema and ``/metrics`` (spec/gateway.md §1).

Layout
------
* ``POST /v1/action``: a ``SignedAction`` body (every REST action is signed) -> ``PostOk``
  (200) or ``PostError`` (429 rate limited, 503 writes suspended);
* ``POST /v1/query``: a ``SignedQuery`` (scope ``read``) -> ``OrderUpdates``, ``OrderStatus``,
  ``Positions``, ``AccountState`` or ``UserFills`` of the signing key's account;
* ``GET /v1/book?market=`` -> ``BookResponse`` ``{seq, bids, asks}``, the whole book as of
  ``seq`` (the same ``seq`` the ``l2Delta`` channel uses); ``GET /v1/market?market=`` ->
  ``MarketInfo``;
* ``GET /v1/schema`` (JSON Schema, ``api.schema_doc``), ``GET /v1/health``, ``GET /metrics``.

Invariants
----------
* Every refusal is ``{"code": <negative>, "msg": …}`` with an HTTP status: 400 malformed,
  401 authentication, 403 authorisation, 404 unknown market, 413 too large, 429 rate
  limited (with ``Retry-After``), 503 degraded.
"""

from __future__ import annotations

from aiohttp import web

from api import protocol as p
from api import schema_doc
from api.auth import AuthError
from api.errors import GatewayCode, ProtocolError, compose_msg, wire_code
from api.gateway import GATEWAY, Gateway
from api.sequencer import SequencerUnavailable
from engine.codes import Reject

JSON = "application/json"
_FORBIDDEN = {GatewayCode.KEY_REVOKED, GatewayCode.KEY_EXPIRED, GatewayCode.SCOPE_MISSING, GatewayCode.OTHER_ACCOUNT}
_STATUS_OF_ERROR = {wire_code(GatewayCode.WRITES_SUSPENDED): 503}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/action", post_action)
    app.router.add_post("/v1/query", post_query)
    app.router.add_get("/v1/book", get_book)
    app.router.add_get("/v1/market", get_market)
    app.router.add_get("/v1/schema", get_schema)
    app.router.add_get("/v1/health", get_health)
    app.router.add_get("/metrics", get_metrics)


def error_response(gw: Gateway, code: int, detail: str | None, status: int,
                   retry_after_ms: int | None = None) -> web.Response:
    gw.count_reject(code)
    body = p.ErrorBody(wire_code(code), compose_msg(code, detail), retry_after_ms)
    headers = {"Retry-After": str(max(1, -(-retry_after_ms // 1000)))} if retry_after_ms else None
    return web.Response(body=p.encode(body), status=status, content_type=JSON, headers=headers)


def _ok(gw: Gateway, route: str, body: bytes, status: int = 200) -> web.Response:
    gw.metrics.inc("afterhours_http_requests_total", route=route, status=status)
    return web.Response(body=body, status=status, content_type=JSON)


def _admit(gw: Gateway, request: web.Request) -> web.Response | None:
    refusal = gw.ip_limiter.admit_rest(request.remote or "", gw.clock_ns())
    if refusal is None:
        return None
    return error_response(gw, refusal.code, None, 429, refusal.retry_after_ms)


def _market_id(gw: Gateway, request: web.Request) -> int | web.Response:
    symbol = request.query.get("market")
    if symbol is None:
        return error_response(gw, GatewayCode.MISSING_FIELD, "query parameter 'market'", 400)
    if gw.markets.get(symbol) is None:
        return error_response(gw, Reject.UNKNOWN_MARKET, symbol, 404)
    return gw.markets.id_of(symbol)


async def _signed_body(gw, request: web.Request, decode) -> tuple[object, bytes] | web.Response:
    """Admission, the body within the size limit, and ``decode(body, limit)``: the decoded
    signed request and its bytes, or the error response."""
    refused = _admit(gw, request)
    if refused is not None:
        return refused
    limit = gw.limits.max_message_bytes
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error_response(gw, GatewayCode.MESSAGE_TOO_LARGE, f"the limit is {limit} bytes", 413)
    try:
        return decode(body, limit), body
    except ProtocolError as exc:
        return error_response(gw, exc.code, exc.detail, 413 if exc.code == GatewayCode.MESSAGE_TOO_LARGE else 400)


async def post_action(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    read = await _signed_body(gw, request, p.decode_signed_action)
    if isinstance(read, web.Response):
        return read
    signed, body = read
    try:
        account = gw.auth.authorize_signed_action(signed, body, gw.now_ms())
    except AuthError as exc:
        return error_response(gw, exc.code, exc.detail or None, 403 if exc.code in _FORBIDDEN else 401)
    response = await gw.executor.execute(signed.action, account, signed.keyId, (signed.keyId, signed.nonce))
    status = 200
    if isinstance(response, p.PostError):
        status = _STATUS_OF_ERROR.get(response.code, 429)
    return _ok(gw, "action", p.encode(response), status)


_QUERY_KEYS = {p.OpenOrdersQuery: p.OrderUpdatesSub, p.PositionsQuery: p.PositionsSub, p.AccountQuery: p.AccountSub,
               p.FillsQuery: p.UserFillsSub}


async def post_query(request: web.Request) -> web.Response:
    """A signed private read (scope ``read``): open orders, one order's status, positions,
    the account, recent fills. Its nonce is journaled like an action's."""
    gw = request.app[GATEWAY]
    read = await _signed_body(gw, request, p.decode_signed_query)
    if isinstance(read, web.Response):
        return read
    signed, body = read
    try:
        key = gw.auth.verify(key_id=signed.keyId, nonce=signed.nonce, signature=signed.signature,
                             action=p.signed_action_object(body, "query"), scope="read", now_ms=gw.now_ms(),
                             expires_after_ms=signed.expiresAfter)
    except AuthError as exc:
        return error_response(gw, exc.code, exc.detail or None, 403 if exc.code in _FORBIDDEN else 401)
    try:
        await gw.sequencer.record_nonce(signed.keyId, signed.nonce)
    except SequencerUnavailable as exc:
        return error_response(gw, GatewayCode.WRITES_SUSPENDED, str(exc), 503)
    query = signed.query
    if isinstance(query, p.OrderStatusQuery):
        if query.oid is None and query.cloid is None:
            return error_response(gw, Reject.ORDER_ID_MISSING, None, 400)
        answer = gw.publisher.order_status(key.account, query.oid, query.cloid)
    else:
        answer = gw.publisher.snapshot_push(_QUERY_KEYS[type(query)](account=key.account)).data
    return _ok(gw, "query", p.encode(answer))


async def _market_read(request: web.Request):
    """Admission and the ``market`` query parameter: ``(gateway, market id)`` or the error response."""
    gw = request.app[GATEWAY]
    refused = _admit(gw, request)
    if refused is not None:
        return refused
    m = _market_id(gw, request)
    return m if isinstance(m, web.Response) else (gw, m)


async def get_book(request: web.Request) -> web.Response:
    read = await _market_read(request)
    if isinstance(read, web.Response):
        return read
    gw, m = read
    book = gw.publisher.books[m]
    return _ok(gw, "book", p.encode(p.BookResponse(book.seq, book.bids(), book.asks())))


async def get_market(request: web.Request) -> web.Response:
    read = await _market_read(request)
    if isinstance(read, web.Response):
        return read
    gw, m = read
    return _ok(gw, "market", p.encode(gw.publisher._market_info(m)))


_SCHEMA: bytes | None = None


async def get_schema(request: web.Request) -> web.Response:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = p.encode(schema_doc.schema())
    return _ok(request.app[GATEWAY], "schema", _SCHEMA)


async def get_health(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    healthy = bool(getattr(gw.sequencer, "healthy", True))
    body = {"status": "ok" if healthy else "degraded", "reason": getattr(gw.sequencer, "degraded_reason", None),
            "seq": gw.publisher.seq, "connections": len(gw.connections)}
    return _ok(gw, "health", p.encode(body), 200 if healthy else 503)


async def get_metrics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    return web.Response(text=gw.metrics.render(), content_type="text/plain", charset="utf-8",
                        headers={"X-Prometheus-Format": "0.0.4"})
