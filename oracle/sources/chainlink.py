"""Chainlink Data Streams: REST latest reports and the websocket, HMAC-signed.

Wire format (spec/oracle.md §9): ``GET /api/v1/reports/latest?feedID=0x…`` answers
``{"report": {"feedID", "validFromTimestamp", "observationsTimestamp", "fullReport"}}``;
the websocket ``/api/v1/ws?feedIDs=a,b`` pushes ``{"report": {"feedID", "fullReport"}}``.
Every request (the websocket's upgrade included) carries ``Authorization``,
``X-Authorization-Timestamp`` and ``X-Authorization-Signature-SHA256`` (see
``chainlink_report.sign``), signed over the exact path and query sent.

Layout:
  ``DataStreamsConfig``   key, secret, URLs, feeds (our symbol → feed id), mode, timeouts
  ``parse_envelope``      one JSON message → (feed id, report) (pure)
  ``DataStreamsSource``   the adapter: ``fetch_latest`` per feed, or ``run(emit)`` on the
                          websocket (or polling), reconnecting with backoff

Invariants:
  * The path and query are built here and sent verbatim (``yarl`` ``encoded=True``), so the
    string signed is the string the server sees; the timestamp comes from the injected clock.
  * A report's feed id must be one we asked for and must equal the id inside its blob.
  * ``marketStatus`` becomes the quote's ``session_hint``; the service may only use it to
    downgrade the calendar's session.

Known limitations:
  * One origin; Data Streams' high-availability mode (several origins, de-duplicated) is not
    implemented.
  * Polling asks one feed per request, in symbol order; fine for a handful of feeds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import aiohttp
import msgspec
from yarl import URL

from oracle.clock import Clock, Sleep
from oracle.sources.base import Backoff, Emit, Retry, SourceHealth, reconnect_forever, retry_after_s
from oracle.sources.chainlink_report import (
    ReportV8,
    ReportV11,
    UnsupportedSchema,
    auth_headers,
    decode_full_report,
    to_quote,
)

LATEST_PATH = "/api/v1/reports/latest"
WS_PATH = "/api/v1/ws"


class DataStreamsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``feeds`` maps our symbol to a 0x-hex feed id."""

    feeds: dict[str, str]
    api_key: str
    api_secret: str
    rest_url: str = "https://api.dataengine.chain.link"
    ws_url: str = "wss://ws.dataengine.chain.link"
    mode: Literal["ws", "poll"] = "ws"
    poll_interval_s: float = 1.0
    request_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0  # a websocket with no message this long is reconnected
    backoff: Backoff = Backoff()
    name: str = "chainlink"
    weight: int = 1


class _Report(msgspec.Struct):
    feedID: str
    fullReport: str
    validFromTimestamp: int = 0
    observationsTimestamp: int = 0


class _Envelope(msgspec.Struct):
    report: _Report


_decode_envelope = msgspec.json.Decoder(_Envelope).decode


class DataStreamsHttpError(Exception):
    def __init__(self, status: int, text: str, retry_after: float = 0.0):
        super().__init__(f"HTTP {status}: {text}")
        self.status, self.text, self.retry_after = status, text, retry_after


def parse_envelope(body: bytes | str) -> tuple[str, ReportV8 | ReportV11]:
    """``(feed id lowercase, decoded report)``. Raises ``ValueError``."""
    try:
        envelope = _decode_envelope(body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a Data Streams report message: {exc}") from exc
    report = decode_full_report(envelope.report.fullReport)
    feed_id = envelope.report.feedID.lower()
    if report.feed_id.lower() != feed_id:
        raise ValueError(f"feedID {feed_id} does not match the report's {report.feed_id}")
    return feed_id, report


class DataStreamsSource:
    """The Data Streams adapter. ``session``: an aiohttp session to share (else its own)."""

    def __init__(
        self,
        config: DataStreamsConfig,
        session: aiohttp.ClientSession | None = None,
        clock: Clock = time.time_ns,
        sleep: Sleep = asyncio.sleep,
    ):
        self.config = config
        self.name = config.name
        self.clock = clock
        self.sleep = sleep
        self.health = SourceHealth()
        self._session = session
        self._symbols = {fid.lower(): sym for sym, fid in config.feeds.items()}

    def _signed(self, base: str, path_and_query: str) -> tuple[URL, dict[str, str]]:
        ts_ms = self.clock() // 1_000_000
        headers = auth_headers("GET", path_and_query, self.config.api_key, self.config.api_secret, ts_ms)
        return URL(base.rstrip("/") + path_and_query, encoded=True), headers

    def _accept(self, body: bytes | str, emit: Emit) -> int:
        try:
            feed_id, report = parse_envelope(body)
        except UnsupportedSchema as exc:
            self.health.error("schema", str(exc)[:200])
            return 0
        except ValueError as exc:
            self.health.error("parse", str(exc)[:200])
            return 0
        symbol = self._symbols.get(feed_id)
        if symbol is None:
            self.health.error("unknown_id", feed_id)
            return 0
        if (report.mid_price if isinstance(report, ReportV8) else report.mid) == 0:
            self.health.errors["zero_price"] += 1  # passed on: the aggregator drops it, flagged
        emit(to_quote(report, symbol, self.name, self.clock(), self.config.weight))
        self.health.quotes += 1
        return 1

    async def fetch_latest(self, session: aiohttp.ClientSession, symbol: str, emit: Emit) -> int:
        """One signed ``/reports/latest`` request for ``symbol``'s feed; emits its quote.
        Raises ``DataStreamsHttpError``, ``aiohttp.ClientError`` or ``asyncio.TimeoutError``."""
        url, headers = self._signed(self.config.rest_url, f"{LATEST_PATH}?feedID={self.config.feeds[symbol]}")
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_s)
        async with session.get(url, headers=headers, timeout=timeout) as resp:
            body = await resp.read()
            if resp.status != 200:
                text = body.decode("utf-8", errors="replace")[:500]
                raise DataStreamsHttpError(resp.status, text, retry_after_s(resp.headers.get("Retry-After")))
            self.health.connects += 1
            return self._accept(body, emit)

    async def run(self, emit: Emit) -> None:
        """Websocket (or poll) forever, reconnecting with backoff; ends only by cancellation."""
        session = self._session or aiohttp.ClientSession()
        try:
            if self.config.mode == "ws":
                await reconnect_forever(
                    lambda: self._ws_once(session, emit), self.config.backoff, self.health, self.sleep
                )
            else:
                await self._poll_forever(session, emit)
        finally:
            if self._session is None:
                await session.close()

    async def _poll_forever(self, session: aiohttp.ClientSession, emit: Emit) -> None:
        retry = Retry(self.config.backoff)
        while True:
            floor, failed = 0.0, False
            for symbol in sorted(self.config.feeds):
                try:
                    await self.fetch_latest(session, symbol, emit)
                except DataStreamsHttpError as exc:
                    self.health.error(f"http_{exc.status}", exc.text[:200])
                    floor, failed = max(floor, exc.retry_after), True
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    self.health.error("connect", repr(exc)[:200])
                    failed = True
            if not failed:
                retry.succeeded()
                await self.sleep(self.config.poll_interval_s)
                continue
            delay = retry.next_delay_s(floor)
            self.health.delays_s.append(delay)
            await self.sleep(delay)

    async def _ws_once(self, session: aiohttp.ClientSession, emit: Emit) -> tuple[bool, float]:
        """One websocket connection until it ends; (delivered a quote?, Retry-After floor)."""
        ids = ",".join(self.config.feeds[s] for s in sorted(self.config.feeds))
        url, headers = self._signed(self.config.ws_url, f"{WS_PATH}?feedIDs={ids}")
        delivered = False
        try:
            async with session.ws_connect(url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=5.0)) as ws:
                self.health.connects += 1
                while True:
                    msg = await ws.receive(timeout=self.config.idle_timeout_s)
                    if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        delivered = self._accept(msg.data, emit) > 0 or delivered
                    elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                        self.health.error("disconnect", f"websocket closed ({ws.close_code})")
                        return delivered, 0.0
                    elif msg.type == aiohttp.WSMsgType.ERROR:
                        self.health.error("disconnect", repr(ws.exception())[:200])
                        return delivered, 0.0
        except aiohttp.WSServerHandshakeError as exc:
            retry_after = retry_after_s(exc.headers.get("Retry-After") if exc.headers else None)
            self.health.error(f"http_{exc.status}", exc.message[:200])
            return False, retry_after
        except asyncio.TimeoutError:
            self.health.error("timeout", f"no message for {self.config.idle_timeout_s} s")
        except aiohttp.ClientError as exc:
            self.health.error("connect", repr(exc)[:200])
        return delivered, 0.0
