"""Pyth Hermes: the REST latest-price endpoint and the Server-Sent-Events stream.

Wire format (spec/oracle.md §9): ``GET /v2/updates/price/latest?ids[]=<hex>&parsed=true``
answers ``{"binary": …, "parsed": [{"id", "price": {"price": "<int>", "conf": "<int>",
"expo": <int>, "publish_time": <unix s>}, "ema_price": …, "metadata": …}]}``;
``GET /v2/updates/price/stream?…`` sends the same JSON as SSE ``data:`` lines, ``:``
keep-alives and ``event: error`` frames, and closes after 24 h. Errors are plain text
(404 ``Price ids not found: …``, 429 when rate limited).

Layout:
  ``HermesConfig``   base URL, bearer key, feeds (our symbol → feed id), mode, timeouts
  ``parse_hermes``   one response body or SSE ``data`` → ``SourceQuote``s (pure)
  ``HermesSource``   the adapter: ``fetch_latest`` once, or ``run(emit)`` streaming or
                     polling, reconnecting with backoff

Invariants:
  * ``price``/``conf`` are kept as the integers Hermes sent with its ``expo``;
    ``ts_source_ns = publish_time · 1e9``. A repeated off-hours price keeps its old
    ``publish_time``: the adapter passes it on, staleness is the aggregator's call.
  * Only ``parsed.price`` is used (not ``ema_price``); ids compare lowercase without ``0x``.
  * A stream that delivered a price resets the backoff; one that failed before any price
    grows it; a 429's ``Retry-After`` is a floor on the delay.

Known limitations:
  * The ``binary`` (Wormhole-signed) payload is not verified: the Hermes operator is trusted.
  * Ids Hermes returns that we did not ask for are dropped and counted (``unknown_id``).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Literal

import aiohttp
import msgspec

from oracle.clock import Clock, Sleep
from oracle.quote import SourceQuote
from oracle.sources.base import Backoff, Emit, Retry, SourceHealth, reconnect_forever, retry_after_s
from oracle.sources.sse import SseError, SseParser

NS_PER_SECOND = 1_000_000_000
LATEST_PATH = "/v2/updates/price/latest"
STREAM_PATH = "/v2/updates/price/stream"
_INTEGER = re.compile(r"-?[0-9]{1,40}")


class HermesConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``feeds`` maps our symbol to a Hermes feed id (hex, ``0x`` optional)."""

    feeds: dict[str, str]
    base_url: str = "https://hermes.pyth.network"
    api_key: str | None = None  # sent as ``Authorization: Bearer <key>``
    mode: Literal["stream", "poll"] = "stream"
    poll_interval_s: float = 1.0
    request_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0  # a stream silent this long (no keep-alive either) is dead
    backoff: Backoff = Backoff()
    name: str = "pyth"
    weight: int = 1


class _Price(msgspec.Struct):
    price: str
    conf: str
    expo: int
    publish_time: int


class _Parsed(msgspec.Struct):
    id: str
    price: _Price


class _Update(msgspec.Struct):
    parsed: list[_Parsed] = []


_decode_update = msgspec.json.Decoder(_Update).decode


class HermesParseError(ValueError):
    """A body that is not a Hermes price update."""


class HermesHttpError(Exception):
    """A non-200 answer; ``text`` is Hermes' plain-text message."""

    def __init__(self, status: int, text: str, retry_after: float = 0.0):
        super().__init__(f"HTTP {status}: {text}")
        self.status, self.text, self.retry_after = status, text, retry_after


def normalise_id(feed_id: str) -> str:
    return feed_id.lower().removeprefix("0x")


def _integer(text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise HermesParseError(f"not a decimal integer: {text[:50]!r}")
    return int(text)


def parse_hermes(
    body: bytes | str, symbols_by_id: dict[str, str], source: str, received_ns: int, weight: int = 1
) -> tuple[list[SourceQuote], int]:
    """The quotes in one Hermes update, in the order sent, and how many entries had an id
    not in ``symbols_by_id`` (normalised ids). Raises ``HermesParseError``."""
    try:
        update = _decode_update(body)
    except msgspec.DecodeError as exc:
        raise HermesParseError(str(exc)) from exc
    quotes, unknown = [], 0
    for entry in update.parsed:
        symbol = symbols_by_id.get(normalise_id(entry.id))
        if symbol is None:
            unknown += 1
            continue
        p = entry.price
        quotes.append(
            SourceQuote(
                source, symbol, _integer(p.price), p.expo, p.publish_time * NS_PER_SECOND, received_ns,
                conf=_integer(p.conf), weight=weight,
            )
        )
    return quotes, unknown


class HermesSource:
    """The Hermes adapter. ``session``: an aiohttp session to share (else it makes one)."""

    def __init__(
        self,
        config: HermesConfig,
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
        self._symbols = {normalise_id(fid): sym for sym, fid in config.feeds.items()}
        self._params = [("ids[]", normalise_id(fid)) for _, fid in sorted(config.feeds.items())]
        self._params.append(("parsed", "true"))

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    def _accept(self, body: bytes | str, emit: Emit) -> int:
        """Parse one update and emit its quotes; count problems. Returns quotes emitted."""
        try:
            quotes, unknown = parse_hermes(body, self._symbols, self.name, self.clock(), self.config.weight)
        except HermesParseError as exc:
            self.health.error("parse", str(exc)[:200])
            return 0
        if unknown:
            self.health.errors["unknown_id"] += unknown
        for q in quotes:
            emit(q)
        self.health.quotes += len(quotes)
        return len(quotes)

    async def fetch_latest(self, session: aiohttp.ClientSession, emit: Emit) -> int:
        """One ``/latest`` request; emits its quotes. Raises ``HermesHttpError``,
        ``aiohttp.ClientError`` or ``asyncio.TimeoutError``."""
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_s)
        async with session.get(
            self._url(LATEST_PATH), params=self._params, headers=self._headers("application/json"), timeout=timeout
        ) as resp:
            body = await resp.read()
            if resp.status != 200:
                text = body.decode("utf-8", errors="replace")[:500]
                raise HermesHttpError(resp.status, text, retry_after_s(resp.headers.get("Retry-After")))
            self.health.connects += 1
            return self._accept(body, emit)

    async def run(self, emit: Emit) -> None:
        """Stream (or poll) forever, reconnecting with backoff. Ends only by cancellation."""
        session = self._session or aiohttp.ClientSession()
        try:
            if self.config.mode == "stream":
                await self._stream_forever(session, emit)
            else:
                await self._poll_forever(session, emit)
        finally:
            if self._session is None:
                await session.close()

    async def _pause(self, delay_s: float) -> None:
        self.health.delays_s.append(delay_s)
        await self.sleep(delay_s)

    async def _poll_forever(self, session: aiohttp.ClientSession, emit: Emit) -> None:
        retry = Retry(self.config.backoff)
        while True:
            try:
                await self.fetch_latest(session, emit)
                retry.succeeded()
                await self.sleep(self.config.poll_interval_s)
                continue
            except HermesHttpError as exc:
                self.health.error(f"http_{exc.status}", exc.text[:200])
                floor = exc.retry_after
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                self.health.error("connect", repr(exc)[:200])
                floor = 0.0
            await self._pause(retry.next_delay_s(floor))

    async def _stream_forever(self, session: aiohttp.ClientSession, emit: Emit) -> None:
        await reconnect_forever(
            lambda: self._stream_once(session, emit), self.config.backoff, self.health, self.sleep
        )

    async def _stream_once(self, session: aiohttp.ClientSession, emit: Emit) -> tuple[bool, float]:
        """One stream connection until it ends; (delivered a price?, Retry-After floor)."""
        delivered = False
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.config.request_timeout_s, sock_read=self.config.idle_timeout_s
        )
        try:
            async with session.get(
                self._url(STREAM_PATH), params=self._params, headers=self._headers("text/event-stream"), timeout=timeout
            ) as resp:
                if resp.status != 200:
                    text = (await resp.read()).decode("utf-8", errors="replace")[:200]
                    self.health.error(f"http_{resp.status}", text)
                    return False, retry_after_s(resp.headers.get("Retry-After"))
                self.health.connects += 1
                parser = SseParser()
                ended_by_error = False
                async for chunk in resp.content.iter_any():
                    for event in parser.feed(chunk):
                        if event.event == "error":
                            ended_by_error = True
                            kind = "stream_timeout_24h" if "Connection timeout reached" in event.data else "stream_error"
                            self.health.error(kind, event.data[:200])
                        elif event.event == "message" and self._accept(event.data, emit):
                            delivered = True
                if not ended_by_error:
                    self.health.error("disconnect", "the server closed the stream")
        except aiohttp.ServerTimeoutError as exc:
            self.health.error("timeout", repr(exc)[:200])
        except SseError as exc:
            self.health.error("parse", str(exc)[:200])
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            self.health.error("disconnect", repr(exc)[:200])
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self.health.error("connect", repr(exc)[:200])
        return delivered, 0.0
