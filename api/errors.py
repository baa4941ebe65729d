"""Error codes and their sentences (spec/gateway.md §1): the gateway's codes beside the
engine's reject codes, one table, and the exception the protocol layer raises.

Layout
------
* ``GatewayCode`` (5xxx, auth and limits) beside ``engine.codes.Reject`` (1xxx–4xxx), with
  ``GATEWAY_MESSAGES``, one sentence per gateway code;
* ``wire_code``, ``message_for`` and ``compose_msg``: the number and the text a client sees;
* ``error_table()``: every code a client can see, by number, with its stage and sentence;
* ``ProtocolError``: a request refused at the protocol layer, carrying its code.

Invariants
----------
* On the wire a code is negative: reject 1001 is ``-1001``, gateway code 5108 is ``-5108``.
  Tables and ``ProtocolError.code`` hold the positive number.
* A number, once published, never changes meaning; every code has exactly one sentence.
* Nothing here knows the wire Structs: the pushes that carry an error are built in
  ``api.protocol`` (``error_push``, ``post_error``, ``rejected``), which imports this module.

Known limitations
-----------------
* Sentences are English only.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

from engine.codes import MESSAGES as REJECT_MESSAGES
from engine.codes import Reject


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
    UNKNOWN_QUERY = 5014
    NOT_IN_BATCH = 5015
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
    TOO_MANY_CONNECTIONS = 5212
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
    GatewayCode.BAD_DECIMAL: "Prices, sizes and amounts must be decimal strings such as \"180.05\": digits with an optional "
    "'-' and fraction, no exponent, never a JSON number.",
    GatewayCode.BAD_VALUE: "A field's value is outside its allowed range or format.",
    GatewayCode.UNKNOWN_ACTION: "The action 'type' must be one of place, cancel, cancelAll, amend, batch, "
    "trigger, cancelTrigger, scheduleCancel, setLeverage, setMarginMode, adjustMargin or withdraw.",
    GatewayCode.UNKNOWN_CHANNEL: "The subscription 'type' must be a channel name: l2Book, l2Delta, trades, market, "
    "liquidations, orderUpdates, userFills, userFundings, positions or account.",
    GatewayCode.UNKNOWN_QUERY: "The query 'type' must be one of openOrders, orderStatus, positions, account or fills.",
    GatewayCode.NOT_IN_BATCH: "A batch holds only place, cancel and amend; send cancelAll, trigger, cancelTrigger, "
    "scheduleCancel, setLeverage, setMarginMode, adjustMargin and withdraw each as an action of its own.",
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
    GatewayCode.TOO_MANY_CONNECTIONS: "The node holds the most websocket connections it may; retry after retryAfterMs.",
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
