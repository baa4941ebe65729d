"""A fake Pyth Hermes on loopback that speaks Hermes' wire format (spec/oracle.md §9).

``FakeHermes.latest`` scripts the answers to ``GET /v2/updates/price/latest`` and
``FakeHermes.streams`` the connections to ``GET /v2/updates/price/stream``, one entry per
request, in order. An entry is a ``Reply`` (a plain-text HTTP error, as Hermes sends them),
a JSON body (latest), or a list of frames (stream). Once a script is used up, requests are
held open until the test ends (so a retrying client cannot spin). Frames:
``Data(body)``, ``KeepAlive()``, ``ErrorEvent(text)`` (then the server closes), ``Cut()`` (the
connection drops mid-stream), ``Live()`` (frames come from ``push`` until ``end_live``).
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple, Sequence

import msgspec
from aiohttp import web

from loopback import next_or_release

from oracle.quote import SourceQuote

FEED_IDS = {  # the real Hermes ids (spec/oracle.md §9)
    "AAPL": "49f6b65cb1de6b10eaf75e7c03ca029c306d0357e91b5311b175084a5ad55688",
    "TSLA": "16dad506d7db8da01c87581c87ca897a012a153557d4d578c3b9c9e1bc0632f1",
    "NVDA": "b1073854ed24cbc755dc527418f52b7d271f6cc967bbf8d8129112b18860a593",
    "USDKRW": "e539120487c29b4defdf9a53d337316ea022a2688978a468f9efd847201be7e3",  # made up
}


class Reply(NamedTuple):
    status: int
    text: str
    headers: dict = {}


class Data(NamedTuple):
    body: bytes


class KeepAlive(NamedTuple):
    pass


class ErrorEvent(NamedTuple):
    text: str


class Cut(NamedTuple):
    pass


class Live(NamedTuple):
    pass


def hermes_body(quotes: Sequence[SourceQuote], ids: dict[str, str] = FEED_IDS, metadata: bool = True) -> bytes:
    """A Hermes price-update JSON for ``quotes`` (strings for price and conf, as Hermes)."""
    parsed = []
    for q in quotes:
        price = {"price": str(q.price), "conf": str(q.conf or 0), "expo": q.expo, "publish_time": q.ts_source_ns // 10**9}
        entry = {"id": ids[q.symbol], "price": price, "ema_price": dict(price)}
        if metadata:
            entry["metadata"] = {
                "slot": 293596951, "proof_available_time": price["publish_time"] + 4,
                "prev_publish_time": price["publish_time"] - 1,
            }
        parsed.append(entry)
    binary = {"encoding": "hex", "data": ["504e41550100000003b801000000040d00" + "ab" * 40]}
    return msgspec.json.encode({"binary": binary, "parsed": parsed})


class FakeHermes:
    def __init__(self, api_key: str | None = None):
        self.api_key = api_key
        self.latest: list[Reply | bytes] = []
        self.streams: list[Reply | list] = []
        self.requests: list[tuple[str, tuple[str, ...], str, str | None]] = []  # path, ids, parsed, auth
        self.served = {"latest": 0, "stream": 0}
        self._release: asyncio.Event | None = None
        self._live: asyncio.Queue | None = None

    # -- test side ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        self._release = asyncio.Event()
        self._live = asyncio.Queue()
        app = web.Application()
        app.router.add_get("/v2/updates/price/latest", self._latest)
        app.router.add_get("/v2/updates/price/stream", self._stream)
        return app

    def release(self) -> None:
        """Let held requests finish (call before shutting the server down)."""
        if self._release is not None:
            self._release.set()

    def push(self, frame) -> None:
        self._live.put_nowait(frame)

    def end_live(self) -> None:
        self._live.put_nowait(None)

    # -- server side -------------------------------------------------------------------------

    def _check(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization")
        self.requests.append(
            (request.path, tuple(request.query.getall("ids[]", [])), request.query.get("parsed", ""), auth)
        )
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return web.Response(status=401, text="Unauthorized")
        return None

    @staticmethod
    def _reply(reply: Reply) -> web.Response:
        return web.Response(status=reply.status, text=reply.text, headers=reply.headers)

    async def _hold(self) -> web.Response:
        await self._release.wait()
        return web.Response(status=503, text="fake Hermes: script used up")

    async def _latest(self, request: web.Request) -> web.StreamResponse:
        denied = self._check(request)
        if denied is not None:
            return denied
        if self.served["latest"] >= len(self.latest):
            return await self._hold()
        entry = self.latest[self.served["latest"]]
        self.served["latest"] += 1
        if isinstance(entry, Reply):
            return self._reply(entry)
        return web.Response(body=entry, content_type="application/json")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        denied = self._check(request)
        if denied is not None:
            return denied
        if self.served["stream"] >= len(self.streams):
            return await self._hold()
        entry = self.streams[self.served["stream"]]
        self.served["stream"] += 1
        if isinstance(entry, Reply):
            return self._reply(entry)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for frame in entry:
            if isinstance(frame, Live):
                while (live := await next_or_release(self._live, self._release)) is not None:
                    if not await self._frame(request, resp, live):
                        return resp
            elif not await self._frame(request, resp, frame):
                return resp
        await resp.write_eof()
        return resp

    async def _frame(self, request: web.Request, resp: web.StreamResponse, frame) -> bool:
        """Write one frame; False when the connection is over."""
        if isinstance(frame, Data):
            await resp.write(b"data: " + frame.body + b"\n\n")
        elif isinstance(frame, KeepAlive):
            await resp.write(b":\n\n")
        elif isinstance(frame, ErrorEvent):
            await resp.write(f"event: error\ndata: {frame.text}\n\n".encode())
            await resp.write_eof()
            return False
        elif isinstance(frame, Cut):
            await asyncio.sleep(0.005)  # let the bytes already written leave first
            request.transport.close()
            return False
        return True
