"""The wire protocol (spec/gateway.md §1–2): msgspec Structs, one decoder and one encoder per
direction, the error-code table, the JSON Schema and a Markdown reference built from it.

Layout
------
* scalar wire types: ``DecimalStr`` (prices and sizes), ``WireInt`` (ids, nonces, sequence
  numbers, millisecond times), ``MarketSymbol``, ``ClientOrderId``;
* client -> server: ``Request`` (``method``: subscribe, unsubscribe, post, logon, ping),
  ``Action`` (``type``: place, cancel, cancelAll, amend, batch), ``Subscription`` (``type``:
  one per channel), and ``SignedAction``, the body of a signed REST action;
* server -> client: ``Push`` (``{"channel": …, "data": …}``), with ``PostResult`` holding one
  ``ActionStatus`` per action, in order; ``BookResponse`` for ``GET /v1/book``;
* ``GatewayCode`` (5xxx) beside the engine's ``Reject`` codes: one table, ``error_table()``.
  On the wire a code is negative: reject 1001 is ``-1001``, gateway code 5108 is ``-5108``;
* ``decode_request`` / ``decode_signed_action`` turn any malformed input into a
  ``ProtocolError`` carrying a specific code; ``signed_action_object`` returns the action as
  sent, for its signature (``api.auth``);
* ``schema()`` and ``render_markdown()`` document every wire type from the Structs themselves.

Invariants
----------
* Every price, size and amount is a decimal string matching ``^-?\\d+(\\.\\d+)?$``; a JSON
  number in its place is rejected, never converted. Every id, nonce, sequence number and
  time is an integer in ``[0, 2^53)``; error codes are negative integers.
* Inbound Structs are frozen and forbid unknown fields; a wrong type is an error.
* Outbound Structs accept unknown fields when a client decodes them, so a client keeps
  working when the server adds a field; they never drop or reinterpret known ones.

Known limitations
-----------------
* Duplicate JSON keys are not detected: the last one wins, as in the decoded action and in
  its canonical form for signing alike.
* Mapping a msgspec validation error to a code reads msgspec's message text; the tests pin
  every mapping so a msgspec upgrade that rewords one shows up as a failure.
* Reduce-only orders, triggers and the dead-man switch of mechanics.md §1 have no wire form
  yet; they are additive fields and actions.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import IntEnum
from typing import Annotated, Any, Literal, Union

import msgspec

from engine.codes import MAX_BATCH_ACTIONS, Reject
from engine.codes import MESSAGES as REJECT_MESSAGES

MAX_MESSAGE_BYTES = 64 * 1024
MAX_WIRE_INT = (1 << 53) - 1
DECIMAL_PATTERN = r"^-?\d+(\.\d+)?$"

# --------------------------------------------------------------------------- error codes


class GatewayCode(IntEnum):
    """Gateway codes (5xxx, "auth and limits", mechanics.md §1), beside the engine's
    ``Reject`` codes (1xxx–4xxx). A number, once published, never changes meaning."""

    # 50xx: the message itself
    MALFORMED_JSON = 5001
    INVALID_UTF8 = 5002
    BINARY_FRAME = 5003
    MESSAGE_TOO_LARGE = 5004
    NOT_AN_OBJECT = 5005
    UNKNOWN_METHOD = 5006
    UNKNOWN_FIELD = 5007
    MISSING_FIELD = 5008
    WRONG_TYPE = 5009
    BAD_DECIMAL = 5010
    BAD_VALUE = 5011
    UNKNOWN_ACTION = 5012
    UNKNOWN_CHANNEL = 5013
    # 51xx: authentication and authorisation
    NOT_LOGGED_ON = 5101
    ALREADY_LOGGED_ON = 5102
    SIGNATURE_REQUIRED = 5103
    SIGNATURE_INCOMPLETE = 5104
    UNKNOWN_KEY = 5105
    SIGNATURE_MALFORMED = 5106
    BAD_SIGNATURE = 5107
    KEY_REVOKED = 5108
    KEY_EXPIRED = 5109
    SCOPE_MISSING = 5110
    REQUEST_EXPIRED = 5111
    OTHER_ACCOUNT = 5112
    # 512x: nonces
    NONCE_OUT_OF_RANGE = 5120
    NONCE_TOO_OLD = 5121
    NONCE_TOO_NEW = 5122
    NONCE_EVICTED = 5123
    NONCE_REUSED = 5124
    NONCE_BELOW_KEPT = 5125
    # 52xx: limits and liveness
    RATE_LIMITED = 5201
    ORDER_RATE_LIMITED = 5202
    CANCEL_RATE_LIMITED = 5203
    TOO_MANY_INVALID = 5204
    TOO_MANY_SUBSCRIPTIONS = 5205
    TOO_MANY_IN_FLIGHT = 5206
    SLOW_CONSUMER = 5207
    IDLE_TIMEOUT = 5208
    CONNECTION_TOO_OLD = 5209
    IP_CONNECT_RATE = 5210
    IP_REQUEST_RATE = 5211
    # 59xx: the node
    WRITES_SUSPENDED = 5901
    SHUTTING_DOWN = 5902


GATEWAY_MESSAGES: dict[GatewayCode, str] = {
    GatewayCode.MALFORMED_JSON: "The message is not valid JSON.",
    GatewayCode.INVALID_UTF8: "The message is not valid UTF-8 text.",
    GatewayCode.BINARY_FRAME: "Binary websocket frames are not accepted; send JSON as a text frame.",
    GatewayCode.MESSAGE_TOO_LARGE: "The message is larger than the limit (64 KiB by default).",
    GatewayCode.NOT_AN_OBJECT: "A message must be one JSON object.",
    GatewayCode.UNKNOWN_METHOD: "'method' must be one of subscribe, unsubscribe, post, logon or ping.",
    GatewayCode.UNKNOWN_FIELD: "The message has a field this protocol does not define; unknown fields are rejected, not ignored.",
    GatewayCode.MISSING_FIELD: "A required field is missing.",
    GatewayCode.WRONG_TYPE: "A field has the wrong JSON type.",
    GatewayCode.BAD_DECIMAL: "Prices and sizes must be decimal strings such as \"180.05\": digits with an optional "
    "'-' and fraction, no exponent, never a JSON number.",
    GatewayCode.BAD_VALUE: "A field's value is outside its allowed range or format.",
    GatewayCode.UNKNOWN_ACTION: "The action 'type' must be one of place, cancel, cancelAll, amend or batch.",
    GatewayCode.UNKNOWN_CHANNEL: "The subscription 'type' must be a channel name: l2Book, l2Delta, trades, market, "
    "liquidations, orderUpdates, userFills, userFundings, positions or account.",
    GatewayCode.NOT_LOGGED_ON: "Private channels need a logged-on connection; send a signed logon first.",
    GatewayCode.ALREADY_LOGGED_ON: "This connection is already logged on; open another connection for another key.",
    GatewayCode.SIGNATURE_REQUIRED: "This action must be signed (keyId, nonce, signature), or sent on a logged-on connection.",
    GatewayCode.SIGNATURE_INCOMPLETE: "A signed request needs all of keyId, nonce and signature.",
    GatewayCode.UNKNOWN_KEY: "There is no API key with this keyId.",
    GatewayCode.SIGNATURE_MALFORMED: "The signature must be hex of the right length "
    "(128 characters for Ed25519, 64 for HMAC-SHA256).",
    GatewayCode.BAD_SIGNATURE: "The signature does not match; check the key, the network name, the nonce, "
    "expiresAfter and the canonical JSON of the action. The nonce was not used up.",
    GatewayCode.KEY_REVOKED: "This API key has been revoked.",
    GatewayCode.KEY_EXPIRED: "This API key has expired.",
    GatewayCode.SCOPE_MISSING: "This API key lacks the scope this request needs (read, trade or transfer).",
    GatewayCode.REQUEST_EXPIRED: "The request's expiresAfter time has passed.",
    GatewayCode.OTHER_ACCOUNT: "A connection may act on and subscribe to its own account only.",
    GatewayCode.NONCE_OUT_OF_RANGE: "The nonce must be an integer millisecond timestamp below 2^53.",
    GatewayCode.NONCE_TOO_OLD: "The nonce is more than 30 s behind the server's time; use the current time in ms.",
    GatewayCode.NONCE_TOO_NEW: "The nonce is more than 1 s ahead of the server's time; check your clock.",
    GatewayCode.NONCE_EVICTED: "The nonce is not above this key's highest evicted nonce; use a newer one.",
    GatewayCode.NONCE_REUSED: "This nonce was already used with this key; every signed request needs a new one.",
    GatewayCode.NONCE_BELOW_KEPT: "This key already holds 100 recent nonces and this one is below all of them; use a newer one.",
    GatewayCode.RATE_LIMITED: "Too many messages on this connection; retry after retryAfterMs.",
    GatewayCode.ORDER_RATE_LIMITED: "This key's order budget is spent; retry after retryAfterMs. Cancels have their own budget.",
    GatewayCode.CANCEL_RATE_LIMITED: "This key's cancel budget is spent; retry after retryAfterMs.",
    GatewayCode.TOO_MANY_INVALID: "Too many invalid messages on this connection; it is closed.",
    GatewayCode.TOO_MANY_SUBSCRIPTIONS: "This connection holds the most subscriptions it may (200 by default); unsubscribe first.",
    GatewayCode.TOO_MANY_IN_FLIGHT: "This connection has the most posts awaiting an answer it may (100 by default); wait for answers.",
    GatewayCode.SLOW_CONSUMER: "slow consumer: the connection did not read its messages fast enough and is closed.",
    GatewayCode.IDLE_TIMEOUT: "Nothing was received for too long (60 s by default); the connection is closed. Answer pings or send ping.",
    GatewayCode.CONNECTION_TOO_OLD: "The connection reached its maximum age (24 hours by default); reconnect.",
    GatewayCode.IP_CONNECT_RATE: "Too many new connections from this address; retry after retryAfterMs.",
    GatewayCode.IP_REQUEST_RATE: "Too many REST requests from this address; retry after retryAfterMs.",
    GatewayCode.WRITES_SUSPENDED: "The node cannot persist new actions right now (disk full or fsync failure); "
    "nothing was done. Reads still work.",
    GatewayCode.SHUTTING_DOWN: "The node is shutting down; reconnect later.",
}

STAGES = {1: "validation", 2: "risk", 3: "matching", 4: "market state", 5: "auth and limits"}


def wire_code(code: int) -> int:
    """The number on the wire: the code negated (reject 1001 -> -1001)."""
    return -abs(int(code))


def message_for(code: int) -> str:
    """The sentence for an engine or gateway code (either sign); ``KeyError`` otherwise."""
    number = abs(int(code))
    if number in GatewayCode._value2member_map_:
        return GATEWAY_MESSAGES[GatewayCode(number)]
    if number in Reject._value2member_map_:
        return REJECT_MESSAGES[Reject(number)]
    raise KeyError(code)


class ErrorCodeRow(msgspec.Struct, frozen=True):
    code: int
    name: str
    stage: str
    msg: str


def error_table() -> list[ErrorCodeRow]:
    """Every code a client can see, engine and gateway, by number (codes negative)."""
    members = sorted([*Reject, *GatewayCode], key=int)
    return [ErrorCodeRow(wire_code(m), m.name, STAGES[int(m) // 1000], message_for(m)) for m in members]


class ProtocolError(Exception):
    """A request refused at the protocol layer: ``code`` (positive, as in the tables),
    ``detail`` (what exactly, e.g. msgspec's path), ``post_id`` when known."""

    def __init__(self, code: int, detail: str = "", post_id: int | None = None):
        super().__init__(f"{int(code)}: {detail}")
        self.code = code
        self.detail = detail
        self.post_id = post_id

    @property
    def msg(self) -> str:
        return compose_msg(self.code, self.detail)


def compose_msg(code: int, detail: str | None = None) -> str:
    sentence = message_for(code)
    return f"{sentence} ({detail})" if detail else sentence


# ------------------------------------------------------------------------- scalar types

DecimalStr = Annotated[
    str,
    msgspec.Meta(
        pattern=DECIMAL_PATTERN,
        max_length=64,
        description="decimal string: digits, an optional '-' and an optional fraction; "
        "no exponent, never a JSON number",
    ),
]
WireInt = Annotated[int, msgspec.Meta(ge=0, le=MAX_WIRE_INT)]
TimeMs = Annotated[int, msgspec.Meta(ge=0, le=MAX_WIRE_INT, description="milliseconds since the Unix epoch")]
MarketSymbol = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,31}$", description="market symbol, e.g. NVDA")]
ClientOrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=32, description="client order id: 1 to 32 characters, at most 32 bytes of UTF-8")]
KeyId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="API key id")]
SignatureHex = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F]{1,256}$", description="signature, hex")]
Level = tuple[DecimalStr, DecimalStr]  # (price, size); best first

SideName = Literal["buy", "sell"]
TifName = Literal["gtc", "ioc", "fok", "alo"]
StpName = Literal["expire_maker", "expire_taker", "expire_both"]
ScopeName = Literal["read", "trade", "transfer"]
ModeName = Literal["external", "internal", "reopening", "pre_ipo", "halted"]
SessionName = Literal[
    "regular", "pre", "post", "overnight", "closed_weekend", "closed_holiday", "halted",
    "internal_only", "closed_off_hours",
]  # oracle.session.Session, lower-cased

_IN = dict(frozen=True, forbid_unknown_fields=True)
_OUT = dict(frozen=True)

# ------------------------------------------------------------------------------ actions


class Place(msgspec.Struct, tag="place", tag_field="type", **_IN):
    """A new order. ``orderType: "market"`` is an IOC at the protection price; give no price.
    ``expiresAt`` (ms) makes a good-till-time order."""

    market: MarketSymbol
    side: SideName
    size: DecimalStr
    price: DecimalStr | None = None
    orderType: Literal["limit", "market"] = "limit"
    tif: TifName = "gtc"
    stp: StpName = "expire_maker"
    cloid: ClientOrderId | None = None
    expiresAt: TimeMs | None = None


class Cancel(msgspec.Struct, tag="cancel", tag_field="type", **_IN):
    """Cancel one open order by ``oid`` or, when no oid is given, by ``cloid``."""

    market: MarketSymbol
    oid: WireInt | None = None
    cloid: ClientOrderId | None = None


class CancelAll(msgspec.Struct, tag="cancelAll", tag_field="type", **_IN):
    """Cancel every open order of the account, in one market or (no market) in all."""

    market: MarketSymbol | None = None


class Amend(msgspec.Struct, tag="amend", tag_field="type", **_IN):
    """Change an open order's price and/or size (absent = unchanged). A smaller size at the
    same price keeps queue priority; any other change loses it."""

    market: MarketSymbol
    oid: WireInt | None = None
    cloid: ClientOrderId | None = None
    price: DecimalStr | None = None
    size: DecimalStr | None = None


BatchItem = Union[Place, Cancel, Amend]


class Batch(msgspec.Struct, tag="batch", tag_field="type", **_IN):
    """Up to 50 place/cancel/amend actions; one status per action, in order."""

    actions: Annotated[list[BatchItem], msgspec.Meta(min_length=1, max_length=MAX_BATCH_ACTIONS)]


Action = Union[Place, Cancel, CancelAll, Amend, Batch]

# ------------------------------------------------------------------------ subscriptions


class L2BookSub(msgspec.Struct, tag="l2Book", tag_field="type", **_IN):
    """Conflated top-``depth`` snapshots (at most one per 100 ms)."""

    market: MarketSymbol
    depth: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20


class L2DeltaSub(msgspec.Struct, tag="l2Delta", tag_field="type", **_IN):
    """A sequenced snapshot of the whole book, then deltas with a top-10 checksum."""

    market: MarketSymbol


class TradesSub(msgspec.Struct, tag="trades", tag_field="type", **_IN):
    market: MarketSymbol


class MarketSub(msgspec.Struct, tag="market", tag_field="type", **_IN):
    market: MarketSymbol


class LiquidationsSub(msgspec.Struct, tag="liquidations", tag_field="type", **_IN):
    """Liquidation and ADL events of one market, or (no market) of all."""

    market: MarketSymbol | None = None


class OrderUpdatesSub(msgspec.Struct, tag="orderUpdates", tag_field="type", **_IN):
    """Private. ``account`` may be omitted; if given it must be the logged-on account."""

    account: WireInt | None = None


class UserFillsSub(msgspec.Struct, tag="userFills", tag_field="type", **_IN):
    account: WireInt | None = None


class UserFundingsSub(msgspec.Struct, tag="userFundings", tag_field="type", **_IN):
    account: WireInt | None = None


class PositionsSub(msgspec.Struct, tag="positions", tag_field="type", **_IN):
    account: WireInt | None = None


class AccountSub(msgspec.Struct, tag="account", tag_field="type", **_IN):
    account: WireInt | None = None


Subscription = Union[
    L2BookSub, L2DeltaSub, TradesSub, MarketSub, LiquidationsSub,
    OrderUpdatesSub, UserFillsSub, UserFundingsSub, PositionsSub, AccountSub,
]
PRIVATE_SUBSCRIPTIONS = (OrderUpdatesSub, UserFillsSub, UserFundingsSub, PositionsSub, AccountSub)

# ----------------------------------------------------------------------------- requests


class Subscribe(msgspec.Struct, tag="subscribe", tag_field="method", **_IN):
    """Subscribing twice to the same subscription is harmless (idempotent)."""

    subscription: Subscription


class Unsubscribe(msgspec.Struct, tag="unsubscribe", tag_field="method", **_IN):
    subscription: Subscription


class Post(msgspec.Struct, tag="post", tag_field="method", **_IN):
    """An action with a client ``id``, answered by exactly one ``post`` push. On a logged-on
    connection the signature fields are left out; otherwise all of ``keyId``, ``nonce``
    and ``signature`` are required (``expiresAfter`` is optional)."""

    id: WireInt
    action: Action
    keyId: KeyId | None = None
    nonce: WireInt | None = None
    expiresAfter: TimeMs | None = None
    signature: SignatureHex | None = None


class Logon(msgspec.Struct, tag="logon", tag_field="method", **_IN):
    """Authenticates this connection for the key's account; the signed action is
    ``{"type":"logon"}``."""

    keyId: KeyId
    nonce: WireInt
    signature: SignatureHex
    expiresAfter: TimeMs | None = None


class Ping(msgspec.Struct, tag="ping", tag_field="method", **_IN):
    """Answered by a ``pong`` push carrying the server time."""


Request = Union[Subscribe, Unsubscribe, Post, Logon, Ping]


class SignedAction(msgspec.Struct, **_IN):
    """The body of ``POST /v1/action``: every REST action is signed."""

    action: Action
    keyId: KeyId
    nonce: WireInt
    signature: SignatureHex
    expiresAfter: TimeMs | None = None


# ------------------------------------------------------------------- per-action statuses


class Resting(msgspec.Struct, tag="resting", tag_field="status", **_OUT):
    """The order rests on the book, perhaps after a partial fill."""

    oid: WireInt
    cloid: str | None = None
    filledSize: DecimalStr = "0"
    avgPrice: DecimalStr | None = None


class Filled(msgspec.Struct, tag="filled", tag_field="status", **_OUT):
    """The order filled completely."""

    oid: WireInt
    filledSize: DecimalStr
    avgPrice: DecimalStr
    cloid: str | None = None


class Cancelled(msgspec.Struct, tag="cancelled", tag_field="status", **_OUT):
    """The order is gone without filling completely: cancelled as asked, the unfilled rest
    of an IOC or market order, or expired by self-trade prevention (``reason`` says which:
    ``"user"``, ``"ioc_remainder"``, ``"stp_taker"``, …)."""

    oid: WireInt
    cloid: str | None = None
    filledSize: DecimalStr = "0"
    avgPrice: DecimalStr | None = None
    reason: str = "user"


class Amended(msgspec.Struct, tag="amended", tag_field="status", **_OUT):
    oid: WireInt
    price: DecimalStr
    size: DecimalStr
    cloid: str | None = None


class CancelledAll(msgspec.Struct, tag="cancelledAll", tag_field="status", **_OUT):
    count: WireInt


class Rejected(msgspec.Struct, tag="rejected", tag_field="status", **_OUT):
    """This action was refused; the others of a batch are unaffected."""

    code: int
    msg: str


ActionStatus = Union[Resting, Filled, Cancelled, Amended, CancelledAll, Rejected]


class PostOk(msgspec.Struct, tag="ok", tag_field="type", **_OUT):
    """One status per action, in order; ``seq`` is the engine sequence number of the command."""

    seq: WireInt
    statuses: list[ActionStatus]


class PostError(msgspec.Struct, tag="error", tag_field="type", omit_defaults=True, **_OUT):
    """The whole request was refused (nothing was done)."""

    code: int
    msg: str
    retryAfterMs: WireInt | None = None


PostResponse = Union[PostOk, PostError]


class PostResult(msgspec.Struct, **_OUT):
    id: WireInt
    response: PostResponse


# ------------------------------------------------------------------- channel payloads


class ErrorBody(msgspec.Struct, omit_defaults=True, **_OUT):
    """``code`` is negative; ``method`` and ``subscription`` say which request failed, when
    the error answers one; ``retryAfterMs`` comes with rate limits."""

    code: int
    msg: str
    retryAfterMs: WireInt | None = None
    method: str | None = None
    subscription: Subscription | None = None


class SubscriptionAck(msgspec.Struct, **_OUT):
    method: Literal["subscribe", "unsubscribe"]
    subscription: Subscription


class LogonOk(msgspec.Struct, **_OUT):
    account: WireInt
    keyId: str
    scopes: list[ScopeName]
    expiresAt: TimeMs | None = None


class Pong(msgspec.Struct, **_OUT):
    time: TimeMs


class L2Book(msgspec.Struct, **_OUT):
    """Top-N snapshot; bids best (highest) first, asks best (lowest) first."""

    market: str
    seq: WireInt
    time: TimeMs
    bids: list[Level]
    asks: list[Level]


class L2Delta(msgspec.Struct, **_OUT):
    """``snapshot: true``: the whole book as of ``seq`` (``prevSeq`` null). Otherwise the
    levels that changed since ``prevSeq``, each with its new absolute size ("0" deletes).
    ``checksum``: CRC32 of the top 10 levels after this message (``api.l2book``)."""

    market: str
    snapshot: bool
    seq: WireInt
    prevSeq: WireInt | None
    checksum: Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]
    time: TimeMs
    bids: list[Level]
    asks: list[Level]


class Trade(msgspec.Struct, **_OUT):
    """``side`` is the taker's side."""

    tradeId: WireInt
    price: DecimalStr
    size: DecimalStr
    side: SideName
    time: TimeMs


class Trades(msgspec.Struct, **_OUT):
    market: str
    seq: WireInt
    trades: list[Trade]


class Band(msgspec.Struct, **_OUT):
    """Discovery band while the market is dark (oracle.md §6); resets left per direction."""

    ref: DecimalStr
    low: DecimalStr
    high: DecimalStr
    resetsLeftUp: WireInt
    resetsLeftDown: WireInt


class MarketInfo(msgspec.Struct, **_OUT):
    """Funding rates are fractions per hour (``"0.0000125"`` = 0.00125 %)."""

    market: str
    seq: WireInt
    time: TimeMs
    mode: ModeName
    session: SessionName
    oracle: DecimalStr | None
    mark: DecimalStr | None
    external: DecimalStr | None
    band: Band | None
    predictedFunding: DecimalStr
    lastFunding: DecimalStr | None
    nextFundingTime: TimeMs
    openInterest: DecimalStr


class Liquidation(msgspec.Struct, **_OUT):
    """``kind``: a book liquidation, a backstop take-over by the insurance fund, or ADL.
    ``side`` is the side of the position being closed."""

    kind: Literal["liquidation", "backstop", "adl"]
    side: Literal["long", "short"]
    price: DecimalStr
    size: DecimalStr
    time: TimeMs


class Liquidations(msgspec.Struct, **_OUT):
    market: str
    seq: WireInt
    events: list[Liquidation]


class OrderUpdate(msgspec.Struct, **_OUT):
    """``size`` is the order's current total size, ``remaining`` what is still open."""

    market: str
    oid: WireInt
    side: SideName
    price: DecimalStr | None
    size: DecimalStr
    remaining: DecimalStr
    status: Literal["open", "filled", "cancelled", "expired", "rejected"]
    time: TimeMs
    cloid: str | None = None
    reason: str | None = None


class OrderUpdates(msgspec.Struct, **_OUT):
    account: WireInt
    seq: WireInt
    isSnapshot: bool
    orders: list[OrderUpdate]


class UserFill(msgspec.Struct, **_OUT):
    """``fee`` is charged (negative: a rebate received)."""

    market: str
    tradeId: WireInt
    oid: WireInt
    side: SideName
    price: DecimalStr
    size: DecimalStr
    fee: DecimalStr
    liquidity: Literal["maker", "taker"]
    time: TimeMs
    cloid: str | None = None


class UserFills(msgspec.Struct, **_OUT):
    account: WireInt
    seq: WireInt
    isSnapshot: bool
    fills: list[UserFill]


class UserFunding(msgspec.Struct, **_OUT):
    """``payment`` is credited to the account (negative when the account paid);
    ``positionSize`` is signed (negative = short); ``rate`` per hour."""

    market: str
    rate: DecimalStr
    positionSize: DecimalStr
    oraclePrice: DecimalStr
    payment: DecimalStr
    time: TimeMs


class UserFundings(msgspec.Struct, **_OUT):
    account: WireInt
    seq: WireInt
    isSnapshot: bool
    fundings: list[UserFunding]


class Position(msgspec.Struct, **_OUT):
    """``size`` is signed (negative = short); ``size "0"`` in a delta means closed."""

    market: str
    size: DecimalStr
    entryPrice: DecimalStr
    unrealizedPnl: DecimalStr
    margin: DecimalStr
    leverage: WireInt
    marginMode: Literal["cross", "isolated"]
    liquidationPrice: DecimalStr | None


class Positions(msgspec.Struct, **_OUT):
    account: WireInt
    seq: WireInt
    isSnapshot: bool
    positions: list[Position]


class AccountState(msgspec.Struct, **_OUT):
    """Amounts in USD: ``equity = collateral + uPnL + unsettled funding``;
    ``available = equity − initial margin of positions and open orders``."""

    account: WireInt
    seq: WireInt
    isSnapshot: bool
    collateral: DecimalStr
    equity: DecimalStr
    available: DecimalStr
    initialMargin: DecimalStr
    maintenanceMargin: DecimalStr


# ------------------------------------------------------------------------------ pushes


class PostPush(msgspec.Struct, tag="post", tag_field="channel", **_OUT):
    data: PostResult


class SubscriptionResponsePush(msgspec.Struct, tag="subscriptionResponse", tag_field="channel", **_OUT):
    data: SubscriptionAck


class LogonPush(msgspec.Struct, tag="logon", tag_field="channel", **_OUT):
    data: LogonOk


class PongPush(msgspec.Struct, tag="pong", tag_field="channel", **_OUT):
    data: Pong


class ErrorPush(msgspec.Struct, tag="error", tag_field="channel", **_OUT):
    data: ErrorBody


class L2BookPush(msgspec.Struct, tag="l2Book", tag_field="channel", **_OUT):
    data: L2Book


class L2DeltaPush(msgspec.Struct, tag="l2Delta", tag_field="channel", **_OUT):
    data: L2Delta


class TradesPush(msgspec.Struct, tag="trades", tag_field="channel", **_OUT):
    data: Trades


class MarketPush(msgspec.Struct, tag="market", tag_field="channel", **_OUT):
    data: MarketInfo


class LiquidationsPush(msgspec.Struct, tag="liquidations", tag_field="channel", **_OUT):
    data: Liquidations


class OrderUpdatesPush(msgspec.Struct, tag="orderUpdates", tag_field="channel", **_OUT):
    data: OrderUpdates


class UserFillsPush(msgspec.Struct, tag="userFills", tag_field="channel", **_OUT):
    data: UserFills


class UserFundingsPush(msgspec.Struct, tag="userFundings", tag_field="channel", **_OUT):
    data: UserFundings


class PositionsPush(msgspec.Struct, tag="positions", tag_field="channel", **_OUT):
    data: Positions


class AccountPush(msgspec.Struct, tag="account", tag_field="channel", **_OUT):
    data: AccountState


Push = Union[
    PostPush, SubscriptionResponsePush, LogonPush, PongPush, ErrorPush,
    L2BookPush, L2DeltaPush, TradesPush, MarketPush, LiquidationsPush,
    OrderUpdatesPush, UserFillsPush, UserFundingsPush, PositionsPush, AccountPush,
]


class BookResponse(msgspec.Struct, **_OUT):
    """``GET /v1/book?market=…``: the whole book as of ``seq``, best levels first."""

    seq: WireInt
    bids: list[Level]
    asks: list[Level]


# --------------------------------------------------------------------- encode / decode

_request_decoder = msgspec.json.Decoder(Request)
_signed_action_decoder = msgspec.json.Decoder(SignedAction)
_push_decoder = msgspec.json.Decoder(Push)
_book_decoder = msgspec.json.Decoder(BookResponse)
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()

encode = _encoder.encode


def decode_request(frame: bytes | str, max_bytes: int = MAX_MESSAGE_BYTES) -> Request:
    """One websocket frame -> a ``Request``; any defect -> ``ProtocolError`` with its code
    (and, for a ``post`` whose envelope still names an integer ``id``, that id)."""
    return _decode(_request_decoder, frame, max_bytes)


def decode_signed_action(body: bytes | str, max_bytes: int = MAX_MESSAGE_BYTES) -> SignedAction:
    """A REST action body -> ``SignedAction``; defects -> ``ProtocolError``."""
    return _decode(_signed_action_decoder, body, max_bytes)


def decode_push(frame: bytes | str) -> Push:
    """Client side: one server frame -> a ``Push`` (raises msgspec errors as they are)."""
    return _push_decoder.decode(frame)


def decode_book(body: bytes | str) -> BookResponse:
    return _book_decoder.decode(body)


def signed_action_object(frame: bytes | str) -> Any:
    """The ``action`` member of an already validated frame or body, as plain JSON values
    (dicts, lists, str, int, bool, None): exactly what the client sent, for the signature."""
    return _any_decoder.decode(frame)["action"]


def _decode(decoder: msgspec.json.Decoder, frame: bytes | str, max_bytes: int) -> Any:
    size = len(frame)
    if isinstance(frame, str) and size * 4 > max_bytes:  # a character is at most 4 UTF-8 bytes
        size = len(frame.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError(GatewayCode.MESSAGE_TOO_LARGE, f"{size} bytes; the limit is {max_bytes}")
    try:
        return decoder.decode(frame)
    except msgspec.ValidationError as exc:
        raise _classify_validation(str(exc), frame) from None
    except msgspec.DecodeError as exc:
        raise _classify_decode(str(exc), frame) from None


def _classify_decode(text: str, frame: bytes | str) -> ProtocolError:
    if isinstance(frame, bytes):
        try:
            frame.decode("utf-8")
        except UnicodeDecodeError as exc:
            return ProtocolError(GatewayCode.INVALID_UTF8, f"byte {exc.start}")
    if "UTF-8" in text:
        return ProtocolError(GatewayCode.INVALID_UTF8, text)
    return ProtocolError(GatewayCode.MALFORMED_JSON, text)


_AT = re.compile(r"^(?P<what>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.S)
_DECIMAL_FIELDS = frozenset({"price", "size"})


def _classify_validation(text: str, frame: bytes | str) -> ProtocolError:
    match = _AT.match(text)
    what, path = match["what"], match["path"] or "$"
    parts = [p for p in re.split(r"\.|\[\d+\]", path) if p and p != "$"]
    field = parts[-1] if parts else None
    missing = re.match(r"Object missing required field `(\w+)`", what)
    if missing:
        parts, field = parts + [missing[1]], missing[1]
    code = _code_for(what, parts, field, missing is not None)
    detail = f"{what} - at `{path}`" if match["path"] else what
    return ProtocolError(code, detail, post_id=_maybe_post_id(frame))


def _code_for(what: str, parts: list[str], field: str | None, missing: bool) -> int:
    parent = parts[-2] if len(parts) >= 2 else None
    if what.startswith("Expected `object`") and not parts:
        return GatewayCode.NOT_AN_OBJECT
    if field == "method" and len(parts) == 1:
        return GatewayCode.UNKNOWN_METHOD
    if field == "type" and parent == "subscription":
        return GatewayCode.UNKNOWN_CHANNEL
    if field == "type" and parent in ("action", "actions"):
        if parent == "actions" and "'batch'" in what:
            return Reject.BATCH_NESTED
        return GatewayCode.UNKNOWN_ACTION
    if missing:
        return GatewayCode.MISSING_FIELD
    if what.startswith("Object contains unknown field"):
        return GatewayCode.UNKNOWN_FIELD
    if field in _DECIMAL_FIELDS:
        return GatewayCode.BAD_DECIMAL
    if field == "nonce":
        return GatewayCode.NONCE_OUT_OF_RANGE
    if field == "signature" and "regex" in what:
        return GatewayCode.SIGNATURE_MALFORMED
    if field == "cloid" and "length" in what:
        return Reject.CLOID_INVALID
    if field == "actions" and "length <=" in what:
        return Reject.BATCH_TOO_LARGE
    if what.startswith("Invalid enum value"):
        return Reject.BAD_FIELD
    if re.match(r"Expected `\w+`, got `\w+`$", what):
        return GatewayCode.WRONG_TYPE
    return GatewayCode.BAD_VALUE


class _Envelope(msgspec.Struct):
    """Just enough of a frame to name the post an error answers; other fields are skipped."""

    method: Any = None
    id: Any = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)


def _maybe_post_id(frame: bytes | str) -> int | None:
    """The ``id`` of a post whose envelope is still readable, so its error can name it."""
    try:
        envelope = _envelope_decoder.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    post_id = envelope.id
    if envelope.method == "post" and type(post_id) is int and 0 <= post_id <= MAX_WIRE_INT:
        return post_id
    return None


# ------------------------------------------------------------------------------ helpers


def parse_decimal(text: str) -> Decimal:
    """A validated ``DecimalStr`` as a ``Decimal`` (exact)."""
    return Decimal(text)


def format_decimal(value: Decimal | int) -> str:
    """A decimal as a wire string: plain notation, never an exponent, ``-0`` written ``0``."""
    value = Decimal(value)
    if value == 0:
        return "0"
    text = format(value, "f")
    if not re.fullmatch(DECIMAL_PATTERN, text):
        raise ValueError(f"{value!r} has no wire form")
    return text


def action_tags(action: Action) -> list[str]:
    """The ``type`` of each action a request carries, a batch flattened, in order."""
    items = action.actions if isinstance(action, Batch) else [action]
    return [type(item).__struct_config__.tag for item in items]


def is_private(subscription: Subscription) -> bool:
    return isinstance(subscription, PRIVATE_SUBSCRIPTIONS)




def error_push(
    code: int,
    detail: str | None = None,
    *,
    retry_after_ms: int | None = None,
    method: str | None = None,
    subscription: Subscription | None = None,
) -> ErrorPush:
    """``{"channel": "error", "data": {"code": -NNNN, "msg": …}}``."""
    body = ErrorBody(wire_code(code), compose_msg(code, detail), retry_after_ms, method, subscription)
    return ErrorPush(body)


def post_error(post_id: int, code: int, detail: str | None = None, *, retry_after_ms: int | None = None) -> PostPush:
    """The one answer to a post whose whole request was refused."""
    return PostPush(PostResult(post_id, PostError(wire_code(code), compose_msg(code, detail), retry_after_ms)))


def rejected(code: int, detail: str | None = None) -> Rejected:
    """The status of one refused action inside a post's answer."""
    return Rejected(wire_code(code), compose_msg(code, detail))


# ------------------------------------------------------------------ schema and reference

PROTOCOL_VERSION = 1
_ROOTS = {
    "request": Request,
    "action": Action,
    "subscription": Subscription,
    "signedAction": SignedAction,
    "push": Push,
    "bookResponse": BookResponse,
}


def schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of every wire type: one entry per root union, shared ``$defs``,
    and the error-code table. Served as ``/v1/schema``."""
    roots, components = msgspec.json.schema_components(list(_ROOTS.values()), ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "afterhours wire protocol",
        "version": PROTOCOL_VERSION,
        "roots": dict(zip(_ROOTS, roots)),
        "$defs": components,
        "errors": msgspec.to_builtins(error_table()),
    }


def render_markdown(doc: dict[str, Any] | None = None) -> str:
    """A Markdown protocol reference rendered from ``schema()``: each root union, each type
    with its fields, and the error-code table."""
    doc = doc or schema()
    defs = doc["$defs"]
    lines = [f"# afterhours wire protocol, version {doc['version']}", "", _INTRO, "", *_RULES, ""]
    listed: set[str] = set()
    for root, root_schema in doc["roots"].items():
        names = [ref.rsplit("/", 1)[1] for ref in _refs(root_schema)]
        lines += [f"## {root}", "", f"One of: {', '.join(f'[{n}](#{n.lower()})' for n in names)}.", ""]
        for name in names:
            lines += _render_type(name, defs, listed)
    rest = sorted(set(defs) - listed)
    if rest:
        lines += ["## Shared types", ""]
        for name in rest:
            lines += _render_type(name, defs, listed)
    lines += ["## Error codes", "", "| code | name | stage | message |", "| --- | --- | --- | --- |"]
    lines += [f"| {e['code']} | `{e['name']}` | {e['stage']} | {_cell(e['msg'])} |" for e in doc["errors"]]
    return "\n".join(lines) + "\n"


_INTRO = (
    "JSON over a websocket at `/ws`, one message per text frame; REST under `/v1/`. Client "
    "requests carry `method`; server pushes are `{\"channel\": …, \"data\": …}`. Prices, sizes "
    "and amounts are decimal strings; integers (ids, nonces, sequence numbers, millisecond "
    "times) are below 2^53. Unknown fields and wrong types are rejected. Error codes are "
    "negative; the table is at the end."
)


_RULES = [
    "## Signing",
    "",
    "A signature covers the UTF-8 bytes of `\"\\n\".join([\"AFTERHOURS-SIG-v1\", network, keyId, "
    "str(nonce), str(expiresAfter or 0), sha256_hex(canonical_json(action))])`, where `action` is the "
    "action object exactly as sent (`{\"type\":\"logon\"}` for a logon) and canonical JSON has "
    "sorted keys, `,` and `:` separators, UTF-8 and no floats. Ed25519 keys sign those bytes; HMAC "
    "keys use HMAC-SHA256. Signatures are hex. The nonce is the current time in ms: accepted if "
    "at most 30 s behind and 1 s ahead of the server, unused, above the key's highest evicted "
    "nonce; the server keeps 100 per key.",
    "",
    "## Book checksum",
    "",
    "`checksum` in `l2Delta` is `zlib.crc32` of the string made from the best 10 asks (lowest "
    "first) then the best 10 bids (highest first): for each level, its price string then its "
    "size string as received, each with the `.` removed and leading `0`s stripped. Apply a delta "
    "only if its `prevSeq` is the last `seq` applied; on a gap or a mismatch, resubscribe.",
]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            return [node["$ref"]]
        return [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _render_type(name: str, defs: dict[str, Any], listed: set[str]) -> list[str]:
    if name in listed:
        return []
    listed.add(name)
    spec = defs[name]
    lines = [f"### {name}", ""]
    if spec.get("description"):
        lines += [spec["description"], ""]
    required = set(spec.get("required", ()))
    lines += ["| field | type | required |", "| --- | --- | --- |"]
    for field, field_schema in spec.get("properties", {}).items():
        need = "yes" if field in required else f"no (default `{msgspec.json.encode(field_schema.get('default')).decode()}`)"
        lines.append(f"| `{field}` | {_cell(_type_text(field_schema))} | {need} |")
    return lines + [""]


def _type_text(node: dict[str, Any]) -> str:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in node:
        return " or ".join(_type_text(option) for option in node["anyOf"])
    if "enum" in node:
        return " or ".join(f'`"{value}"`' for value in node["enum"])
    kind = node.get("type")
    if kind == "array":
        if "prefixItems" in node:
            return "[" + ", ".join(_type_text(item) for item in node["prefixItems"]) + "]"
        limit = f", at most {node['maxItems']}" if "maxItems" in node else ""
        return f"array of {_type_text(node['items'])}{limit}"
    if kind == "string" and node.get("pattern") == DECIMAL_PATTERN:
        return "decimal string"
    if kind == "string":
        return "string" + (f" (`{node['pattern']}`)" if "pattern" in node else "")
    if kind == "integer":
        low, high = node.get("minimum"), node.get("maximum")
        return "integer" + (f" in [{low}, {high}]" if low is not None and high is not None else "")
    return str(kind)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
