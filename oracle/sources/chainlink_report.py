"""Chainlink Data Streams: request signing and the v8/v11 report layouts (eth-abi).

Layout:
  ``sign``, ``auth_headers``       HMAC-SHA256 over ``"{METHOD} {PATH?QUERY} {sha256_hex(body)}
                                   {KEY} {TS_MS}"``, hex, in ``X-Authorization-Signature-SHA256``
  ``ReportV8``, ``ReportV11``      the decoded blob fields (names as in Chainlink's schemas)
  ``decode_full_report``           ``fullReport`` hex → a report; the schema version is the
                                   first two bytes of the feed id
  ``encode_full_report``           the inverse (fake servers and tests use it)
  ``to_quote``                     report → ``SourceQuote`` (expo −18, ``marketStatus`` hint)

Invariants:
  * ``fullReport`` is ``(bytes32[3] context, bytes blob, bytes32[] rs, bytes32[] ss,
    bytes32 vs)``; the blob starts with ``feedId bytes32, validFromTimestamp uint32,
    observationsTimestamp uint32, nativeFee uint192, linkFee uint192, expiresAt uint32``.
  * Prices are int192 with 18 decimals, kept as they are (expo −18). ``ts_source_ns`` is the
    time the price last changed (v8 ``lastUpdateTimestamp``, v11 ``lastSeenTimestampNs``),
    not the report time, so a frozen price reads as stale while reports keep coming.
  * A v11 ``bid``/``ask`` of 0 means "no book" (None); ``mid = 0`` is passed on, and the
    aggregator drops it as invalid (spec: validate it).

Known limitations:
  * The DON signatures (``rs``/``ss``/``vs``) are not verified here; the channel is
    authenticated by HMAC and TLS. On-chain verification is the verifier contract's job.
  * Only schemas v8 and v11 are decoded (``UnsupportedSchema`` otherwise).
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec
from eth_abi import decode, encode

from oracle.quote import SourceQuote
from oracle.session import Session

PRICE_EXPO = -18
FULL_REPORT_TYPES = ["bytes32[3]", "bytes", "bytes32[]", "bytes32[]", "bytes32"]
_HEADER_TYPES = ["bytes32", "uint32", "uint32", "uint192", "uint192", "uint32"]
V8_TYPES = _HEADER_TYPES + ["uint64", "int192", "uint32"]
V11_TYPES = _HEADER_TYPES + ["int192", "uint64", "int192", "int192", "int192", "int192", "int192", "uint32"]

# marketStatus → session hint (None: no restriction). v8: 0 unknown, 1 closed, 2 open.
V8_STATUS = {0: None, 1: Session.CLOSED_OFF_HOURS, 2: None}
# v11: 0 unknown, 1 pre, 2 regular, 3 post, 4 overnight, 5 closed.
V11_STATUS = {
    0: None, 1: Session.PRE, 2: Session.REGULAR, 3: Session.POST, 4: Session.OVERNIGHT,
    5: Session.CLOSED_OFF_HOURS,
}


class UnsupportedSchema(ValueError):
    """A report whose feed id names a schema other than v8 or v11."""


class ReportV8(msgspec.Struct, frozen=True):
    feed_id: str  # 0x-prefixed hex, 32 bytes
    valid_from_timestamp: int
    observations_timestamp: int
    native_fee: int
    link_fee: int
    expires_at: int
    last_update_timestamp: int  # ns
    mid_price: int
    market_status: int


class ReportV11(msgspec.Struct, frozen=True):
    feed_id: str
    valid_from_timestamp: int
    observations_timestamp: int
    native_fee: int
    link_fee: int
    expires_at: int
    mid: int
    last_seen_timestamp_ns: int
    bid: int
    bid_volume: int
    ask: int
    ask_volume: int
    last_traded_price: int
    market_status: int


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def sign(method: str, path_and_query: str, body: bytes, key: str, secret: str, ts_ms: int) -> str:
    """The hex HMAC-SHA256 of ``"{METHOD} {PATH?QUERY} {sha256_hex(body)} {KEY} {TS}"``."""
    message = f"{method} {path_and_query} {sha256_hex(body)} {key} {ts_ms}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def auth_headers(method: str, path_and_query: str, key: str, secret: str, ts_ms: int, body: bytes = b"") -> dict[str, str]:
    """The three headers of a signed Data Streams request."""
    return {
        "Authorization": key,
        "X-Authorization-Timestamp": str(ts_ms),
        "X-Authorization-Signature-SHA256": sign(method, path_and_query, body, key, secret, ts_ms),
    }


def schema_version(feed_id: str) -> int:
    """The first two bytes of the feed id, big-endian (0x0008… → 8, 0x000b… → 11)."""
    raw = bytes.fromhex(feed_id.removeprefix("0x"))
    if len(raw) != 32:
        raise ValueError("a feed id is 32 bytes")
    return int.from_bytes(raw[:2], "big")


def _hex_bytes(text: str) -> bytes:
    try:
        return bytes.fromhex(text.removeprefix("0x"))
    except ValueError as exc:
        raise ValueError(f"fullReport is not hex: {exc}") from exc


def decode_full_report(full_report: str) -> ReportV8 | ReportV11:
    """Decode a ``fullReport`` (0x-hex). Raises ``ValueError`` (eth-abi's decoding errors
    included) or ``UnsupportedSchema``."""
    try:
        _, blob, _, _, _ = decode(FULL_REPORT_TYPES, _hex_bytes(full_report))
        feed_raw = decode(["bytes32"], blob[:32])[0]
        version = int.from_bytes(feed_raw[:2], "big")
        if version == 8:
            fields = decode(V8_TYPES, blob)
            cls = ReportV8
        elif version == 11:
            fields = decode(V11_TYPES, blob)
            cls = ReportV11
        else:
            raise UnsupportedSchema(f"report schema v{version} is not decoded")
    except UnsupportedSchema:
        raise
    except Exception as exc:  # eth-abi raises its own DecodingError family
        raise ValueError(f"undecodable report: {exc}") from exc
    return cls("0x" + fields[0].hex(), *fields[1:])


def encode_full_report(report: ReportV8 | ReportV11, context: tuple[bytes, bytes, bytes] = (b"\0" * 32,) * 3) -> str:
    """The ``fullReport`` hex of ``report`` with empty signatures (for fakes and tests)."""
    types = V8_TYPES if isinstance(report, ReportV8) else V11_TYPES
    values = list(msgspec.structs.astuple(report))
    values[0] = bytes.fromhex(values[0].removeprefix("0x"))
    blob = encode(types, values)
    return "0x" + encode(FULL_REPORT_TYPES, [list(context), blob, [], [], b"\0" * 32]).hex()


def to_quote(report: ReportV8 | ReportV11, symbol: str, source: str, received_ns: int, weight: int = 1) -> SourceQuote:
    """The report as a quote; an unknown ``marketStatus`` value gives no hint."""
    if isinstance(report, ReportV8):
        return SourceQuote(
            source, symbol, report.mid_price, PRICE_EXPO, report.last_update_timestamp, received_ns,
            session_hint=V8_STATUS.get(report.market_status), weight=weight,
        )
    return SourceQuote(
        source, symbol, report.mid, PRICE_EXPO, report.last_seen_timestamp_ns, received_ns,
        bid=report.bid or None, ask=report.ask or None,
        session_hint=V11_STATUS.get(report.market_status), weight=weight,
    )
