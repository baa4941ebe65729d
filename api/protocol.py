"""The wire protocol (spec/gateway.md §1–2): msgspec Structs, one decoder and one encoder per
direction, and the helpers that turn values and errors into wire form.

Layout
------
* scalar wire types: ``DecimalStr`` (prices and sizes), ``WireInt`` (ids, nonces, sequence
  numbers, millisecond times), ``MarketSymbol``, ``ClientOrderId``;
* client -> server: ``Request`` (``method``: subscribe, unsubscribe, post, logon, ping),
  ``Action`` (``type``: place, cancel, cancelAll, amend, batch, trigger, cancelTrigger,
  scheduleCancel, and the account actions setLeverage, setMarginMode, adjustMargin,
  withdraw), ``Subscription`` (``type``:
  one per channel), and ``SignedAction``, the body of a signed REST action;
* server -> client: ``Push`` (``{"channel": …, "data": …}``), with ``PostResult`` holding one
  ``ActionStatus`` per action, in order; ``BookResponse`` for ``GET /v1/book``;
* ``Query`` (``type``: openOrders, orderStatus, positions, account, fills) in a
  ``SignedQuery``, the body of ``POST /v1/query``;
* ``decode_request`` / ``decode_signed_action`` / ``decode_signed_query`` turn any malformed input into an
  ``api.errors.ProtocolError`` carrying a specific code; ``signed_action_object`` returns the
  action as sent, for its signature (``api.auth``);
* ``error_push``, ``post_error`` and ``rejected`` put a code from ``api.errors`` on the wire.
  The code table itself is ``api.errors``; the JSON Schema and the Markdown reference are
  ``api.schema_doc``.

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
* Reduce-only orders (``Place.reduceOnly``), trigger orders (``trigger``, ``cancelTrigger``)
  and the dead-man switch (``scheduleCancel``) are single actions; a ``batch`` holds only
  place, cancel and amend, as the engine's batch does. Any other action inside a batch is
  refused as ``NOT_IN_BATCH``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

import msgspec

from api.errors import GatewayCode, ProtocolError, compose_msg, wire_code
from engine.codes import MAX_BATCH_ACTIONS, Reject

MAX_MESSAGE_BYTES = 64 * 1024
MAX_WIRE_INT = (1 << 53) - 1
DECIMAL_PATTERN = r"^-?\d+(\.\d+)?$"
PROTOCOL_VERSION = 1

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
    reduceOnly: bool = False


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


class PlaceTrigger(msgspec.Struct, tag="trigger", tag_field="type", **_IN):
    """A stop or take-profit order waiting for ``triggerPrice`` (on the mark, or
    ``triggerOn: "last"`` the last trade). A stop buys once the price is at or above it (sells
    at or below); a take-profit the other way. When it fires, a market order (or, with
    ``orderType: "limit"``, a GTC limit at ``price``) enters as a new order. No ``size``: a
    position TP/SL for the whole position at trigger time, cancelled when the position closes."""

    market: MarketSymbol
    side: SideName
    triggerPrice: DecimalStr
    kind: Literal["stop", "take_profit"] = "stop"
    orderType: Literal["market", "limit"] = "market"
    price: DecimalStr | None = None
    size: DecimalStr | None = None
    triggerOn: Literal["mark", "last"] = "mark"


class CancelTrigger(msgspec.Struct, tag="cancelTrigger", tag_field="type", **_IN):
    """Cancel a live trigger order by the ``tid`` its placement returned."""

    market: MarketSymbol
    tid: WireInt


class ScheduleCancel(msgspec.Struct, tag="scheduleCancel", tag_field="type", **_IN):
    """The dead-man switch: at the first clock tick at or after ``at`` (ms) every open order
    of the account is cancelled, unless a later scheduleCancel moves the deadline. ``at``
    absent or 0 clears it."""

    at: TimeMs | None = None


class SetLeverage(msgspec.Struct, tag="setLeverage", tag_field="type", **_IN):
    """The account's leverage in one market: a whole number from 1 to the maximum of the
    position's margin tier (scope ``trade``)."""

    market: MarketSymbol
    leverage: WireInt


class SetMarginMode(msgspec.Struct, tag="setMarginMode", tag_field="type", **_IN):
    """The account's margin mode in one market; only while it has no position and no open
    orders there (scope ``trade``)."""

    market: MarketSymbol
    mode: Literal["cross", "isolated"]


class AdjustMargin(msgspec.Struct, tag="adjustMargin", tag_field="type", **_IN):
    """Move USD between the cross collateral and an open isolated position's margin:
    ``amount`` > 0 adds to the position, < 0 takes back to cross (scope ``trade``)."""

    market: MarketSymbol
    amount: DecimalStr


class Withdraw(msgspec.Struct, tag="withdraw", tag_field="type", **_IN):
    """Take ``amount`` USD of collateral out of the account (scope ``transfer``)."""

    amount: DecimalStr


BatchItem = Union[Place, Cancel, Amend]
ACCOUNT_ACTIONS = (SetLeverage, SetMarginMode, AdjustMargin, Withdraw)  # single actions, never in a batch


class Batch(msgspec.Struct, tag="batch", tag_field="type", **_IN):
    """Up to 50 place/cancel/amend actions; one status per action, in order."""

    actions: Annotated[list[BatchItem], msgspec.Meta(min_length=1, max_length=MAX_BATCH_ACTIONS)]


Action = Union[Place, Cancel, CancelAll, Amend, Batch, PlaceTrigger, CancelTrigger, ScheduleCancel, SetLeverage,
               SetMarginMode, AdjustMargin, Withdraw]

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


# ---------------------------------------------------------------------- signed queries


class OpenOrdersQuery(msgspec.Struct, tag="openOrders", tag_field="type", **_IN):
    """The account's open orders (answered with ``OrderUpdates``, ``isSnapshot: true``)."""


class OrderStatusQuery(msgspec.Struct, tag="orderStatus", tag_field="type", **_IN):
    """One order by ``oid`` or, when no oid is given, by ``cloid``: its last known state,
    also after it filled or was cancelled (a client that timed out learns the outcome)."""

    oid: WireInt | None = None
    cloid: ClientOrderId | None = None


class PositionsQuery(msgspec.Struct, tag="positions", tag_field="type", **_IN):
    """The account's open positions (answered with ``Positions``)."""


class AccountQuery(msgspec.Struct, tag="account", tag_field="type", **_IN):
    """The account's collateral, equity and margins (answered with ``AccountState``)."""


class FillsQuery(msgspec.Struct, tag="fills", tag_field="type", **_IN):
    """The account's recent fills (answered with ``UserFills``)."""


Query = Union[OpenOrdersQuery, OrderStatusQuery, PositionsQuery, AccountQuery, FillsQuery]


class SignedQuery(msgspec.Struct, **_IN):
    """The body of ``POST /v1/query``: a private read, signed like an action (scope ``read``);
    the signature covers ``query`` exactly as sent."""

    query: Query
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


class TriggerPlaced(msgspec.Struct, tag="triggerPlaced", tag_field="status", **_OUT):
    """The trigger order waits; ``tid`` names it for ``cancelTrigger``."""

    tid: WireInt


class TriggerCancelled(msgspec.Struct, tag="triggerCancelled", tag_field="status", **_OUT):
    tid: WireInt


class Scheduled(msgspec.Struct, tag="scheduled", tag_field="status", **_OUT):
    """The dead-man deadline now in force (ms), or null when it was cleared."""

    at: TimeMs | None


class LeverageSet(msgspec.Struct, tag="leverageSet", tag_field="status", **_OUT):
    """The account's leverage in ``market`` is now ``leverage``."""

    market: str
    leverage: WireInt


class MarginModeSet(msgspec.Struct, tag="marginModeSet", tag_field="status", **_OUT):
    market: str
    mode: Literal["cross", "isolated"]


class MarginAdjusted(msgspec.Struct, tag="marginAdjusted", tag_field="status", **_OUT):
    """USD moved into the isolated position's margin (``amount`` < 0: back to cross) and the
    position's isolated ``margin`` after it."""

    market: str
    amount: DecimalStr
    margin: DecimalStr


class Withdrawn(msgspec.Struct, tag="withdrawn", tag_field="status", **_OUT):
    """USD taken out (``amount``, positive) and the account's ``collateral`` after it."""

    amount: DecimalStr
    collateral: DecimalStr


ActionStatus = Union[Resting, Filled, Cancelled, Amended, CancelledAll, Rejected, TriggerPlaced, TriggerCancelled,
                     Scheduled, LeverageSet, MarginModeSet, MarginAdjusted, Withdrawn]


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
    """On subscribe ``isSnapshot: true`` with the market's last trades (up to 100, oldest
    first, since the node started); then every batch's new trades."""

    market: str
    seq: WireInt
    isSnapshot: bool
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

    market: str
    kind: Literal["liquidation", "backstop", "adl"]
    side: Literal["long", "short"]
    price: DecimalStr
    size: DecimalStr
    time: TimeMs


class Liquidations(msgspec.Struct, **_OUT):
    """On subscribe ``isSnapshot: true`` with the last liquidations (up to 100, oldest first,
    since the node started) of the market, or of every market (``market: null``) for the
    all-markets subscription; then each batch's, per market."""

    market: str | None
    seq: WireInt
    isSnapshot: bool
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
    """``size`` is signed (negative = short); ``size "0"`` in a delta means closed (or, with
    a changed ``leverage`` or ``marginMode``, a flat market's settings). ``margin`` is the
    initial margin at ``leverage``; ``isolatedMargin`` the margin held by an isolated
    position (null when cross)."""

    market: str
    size: DecimalStr
    entryPrice: DecimalStr
    unrealizedPnl: DecimalStr
    margin: DecimalStr
    leverage: WireInt
    marginMode: Literal["cross", "isolated"]
    liquidationPrice: DecimalStr | None
    isolatedMargin: DecimalStr | None = None


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


class OrderStatus(msgspec.Struct, **_OUT):
    """The answer to ``orderStatus``: ``order`` is null when no such order is known (never
    placed, or closed long enough ago to be forgotten)."""

    account: WireInt
    seq: WireInt
    order: OrderUpdate | None


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
_signed_query_decoder = msgspec.json.Decoder(SignedQuery)
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


def decode_signed_query(body: bytes | str, max_bytes: int = MAX_MESSAGE_BYTES) -> SignedQuery:
    """A REST query body -> ``SignedQuery``; defects -> ``ProtocolError``."""
    return _decode(_signed_query_decoder, body, max_bytes)


def decode_push(frame: bytes | str) -> Push:
    """Client side: one server frame -> a ``Push`` (raises msgspec errors as they are)."""
    return _push_decoder.decode(frame)


def decode_book(body: bytes | str) -> BookResponse:
    return _book_decoder.decode(body)


def signed_action_object(frame: bytes | str, member: str = "action") -> Any:
    """The ``action`` (or ``query``) member of an already validated frame or body, as plain
    JSON values (dicts, lists, str, int, bool, None): exactly what the client sent, for the
    signature."""
    return _any_decoder.decode(frame)[member]


def _decode(decoder: msgspec.json.Decoder, frame: bytes | str, max_bytes: int) -> Any:
    size = len(frame)
    if isinstance(frame, str) and size * 4 > max_bytes:  # a character is at most 4 UTF-8 bytes
        size = len(frame.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError(GatewayCode.MESSAGE_TOO_LARGE, f"{size} bytes; the limit is {max_bytes}")
    if isinstance(frame, bytes) and not frame.isascii():
        try:  # msgspec does not check the UTF-8 of string contents
            frame.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(GatewayCode.INVALID_UTF8, f"byte {exc.start}") from None
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
_DECIMAL_FIELDS = frozenset({"price", "size", "amount"})
# every action the engine's batch cannot hold (it holds place, cancel and amend)
_SINGLE_ONLY = frozenset(cls.__struct_config__.tag
                         for cls in (*ACCOUNT_ACTIONS, CancelAll, PlaceTrigger, CancelTrigger, ScheduleCancel))
_TAG_IN = re.compile(r"'(\w+)'")


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
    if field == "type" and parent == "query":
        return GatewayCode.UNKNOWN_QUERY
    if field == "type" and parent in ("action", "actions"):
        if parent == "actions" and "'batch'" in what:
            return Reject.BATCH_NESTED
        tag = _TAG_IN.search(what)
        if parent == "actions" and tag is not None and tag[1] in _SINGLE_ONLY:
            return GatewayCode.NOT_IN_BATCH
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
        return Reject.MARGIN_MODE_INVALID if field == "mode" else Reject.BAD_FIELD
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
    tags = []
    for item in items:
        tag = _TAG_OF.get(type(item))
        if tag is None:
            tag = _TAG_OF[type(item)] = type(item).__struct_config__.tag
        tags.append(tag)
    return tags


_TAG_OF: dict[type, str] = {}  # __struct_config__ builds a new config object on every read


def is_private(subscription: Subscription) -> bool:
    return isinstance(subscription, PRIVATE_SUBSCRIPTIONS)


# ------------------------------------------------------------------------ error pushes


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
