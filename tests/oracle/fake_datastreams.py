"""A fake Chainlink Data Streams on loopback: signed REST and websocket (spec/oracle.md §9).

Every request must carry a valid HMAC over the path and query exactly as received
(``request.raw_path``); otherwise 401 with a plain-text body. ``latest`` scripts the answers
to ``GET /api/v1/reports/latest`` per feed id (a JSON body or a ``Reply``); ``sessions``
scripts the websocket connections: a ``Reply`` refuses the upgrade, a list of frames plays
``Text(body)``, ``Binary(body)``, ``Close()`` (the server closes) or ``Live()`` (frames from
``push`` until ``end_live``). A used-up script holds requests open until the test ends.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import NamedTuple

import msgspec
from aiohttp import WSCloseCode, web

from loopback import next_or_release

from oracle.quote import SourceQuote
from oracle.session import Session, is_open
from oracle.sources.chainlink_report import ReportV8, ReportV11, encode_full_report, sign

V8_FEED = "0x0008" + "5f" * 30  # schema v8 (made-up id; the version is what matters)
V11_FEED = "0x000b" + "a1" * 30  # schema v11
V11_FEED_KRX = "0x000b" + "c3" * 30
FEED_SECONDS_VALID = 30 * 86_400

_V11_STATUS = {None: 0, Session.PRE: 1, Session.REGULAR: 2, Session.POST: 3, Session.OVERNIGHT: 4}


class Reply(NamedTuple):
    status: int
    text: str
    headers: dict = {}


class Text(NamedTuple):
    body: bytes


class Binary(NamedTuple):
    body: bytes


class Close(NamedTuple):
    pass


class Live(NamedTuple):
    pass


def v11_report(q: SourceQuote, feed_id: str, observed_s: int) -> ReportV11:
    """The v11 report a Data Streams DON would sign for quote ``q`` (expo −18)."""
    assert q.expo == -18
    status = _V11_STATUS.get(q.session_hint, 5)
    return ReportV11(
        feed_id, observed_s, observed_s, 0, 0, observed_s + FEED_SECONDS_VALID, q.price, q.ts_source_ns,
        q.bid or 0, 10**21, q.ask or 0, 10**21, q.price, status,
    )


def v8_report(q: SourceQuote, feed_id: str, observed_s: int) -> ReportV8:
    """The v8 report for ``q``: marketStatus 2 (open) or 1 (closed), 0 without a hint."""
    status = 0 if q.session_hint is None else (2 if is_open(q.session_hint) else 1)
    return ReportV8(
        feed_id, observed_s, observed_s, 0, 0, observed_s + FEED_SECONDS_VALID, q.ts_source_ns, q.price, status
    )


def envelope(report: ReportV8 | ReportV11, rest: bool = False) -> bytes:
    body = {"feedID": report.feed_id, "fullReport": encode_full_report(report)}
    if rest:
        body["validFromTimestamp"] = report.valid_from_timestamp
        body["observationsTimestamp"] = report.observations_timestamp
    return msgspec.json.encode({"report": body})


class FakeDataStreams:
    def __init__(self, key: str, secret: str):
        self.key, self.secret = key, secret
        self.latest: dict[str, list[Reply | bytes]] = {}
        self.sessions: list[Reply | list] = []
        self.requests: list[tuple[str, bool, str]] = []  # raw path, signature ok, timestamp header
        self.served = {"latest": 0, "ws": 0}
        self._release: asyncio.Event | None = None
        self._live: asyncio.Queue | None = None

    def app(self) -> web.Application:
        self._release = asyncio.Event()
        self._live = asyncio.Queue()
        app = web.Application()
        app.router.add_get("/api/v1/reports/latest", self._latest)
        app.router.add_get("/api/v1/ws", self._ws)
        return app

    def release(self) -> None:
        if self._release is not None:
            self._release.set()

    def push(self, frame) -> None:
        self._live.put_nowait(frame)

    def end_live(self) -> None:
        self._live.put_nowait(None)

    def _verified(self, request: web.Request) -> bool:
        ts = request.headers.get("X-Authorization-Timestamp", "")
        given = request.headers.get("X-Authorization-Signature-SHA256", "")
        ok = (
            request.headers.get("Authorization") == self.key
            and ts.isdigit()
            and hmac.compare_digest(given, sign(request.method, request.raw_path, b"", self.key, self.secret, int(ts)))
        )
        self.requests.append((request.raw_path, ok, ts))
        return ok

    async def _hold(self) -> web.Response:
        await self._release.wait()
        return web.Response(status=503, text="fake Data Streams: script used up")

    async def _latest(self, request: web.Request) -> web.StreamResponse:
        if not self._verified(request):
            return web.Response(status=401, text="unauthorized")
        script = self.latest.get(request.query.get("feedID", ""), [])
        if not script:
            return await self._hold()
        entry = script.pop(0)
        self.served["latest"] += 1
        if isinstance(entry, Reply):
            return web.Response(status=entry.status, text=entry.text, headers=entry.headers)
        return web.Response(body=entry, content_type="application/json")

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if not self._verified(request):
            return web.Response(status=401, text="unauthorized")
        if self.served["ws"] >= len(self.sessions):
            return await self._hold()
        entry = self.sessions[self.served["ws"]]
        self.served["ws"] += 1
        if isinstance(entry, Reply):
            return web.Response(status=entry.status, text=entry.text, headers=entry.headers)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for frame in entry:
            if isinstance(frame, Live):
                while (live := await next_or_release(self._live, self._release)) is not None:
                    if not await self._frame(ws, live):
                        return ws
            elif not await self._frame(ws, frame):
                return ws
        await self._release.wait()
        return ws

    @staticmethod
    async def _frame(ws: web.WebSocketResponse, frame) -> bool:
        if isinstance(frame, Text):
            await ws.send_str(frame.body.decode())
        elif isinstance(frame, Binary):
            await ws.send_bytes(frame.body)
        elif isinstance(frame, Close):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server restart")
            return False
        return True
