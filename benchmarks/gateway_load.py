"""Load generators for ``benchmarks/gateway.py``: each runs in its own process, with its own
event loop and raw aiohttp websockets (not ``api.client``, so the generator's own cost stays
small and visible), and returns counts and latencies to the orchestrator through a pipe.

Layout
------
* ``generate(task, conn)``: the process entry; ``task`` is a plain dict (``kind`` says which);
* kinds: ``roundtrip`` (closed loop: each connection keeps ``depth`` posts in flight),
  ``rate`` (open loop at a fixed total rate; latency from the *scheduled* send time, so a
  stall is not hidden by sending less), ``subscribe`` (count frames and delivery latency),
  ``stuck`` (subscribe, then never read again), ``drive`` (a closed-loop writer that makes
  the book change for the subscribers);
* ``OrderFrames``: pre-encoded requests: a place, then the cancel of that order by its
  ``cloid``, alternating, so a book stays the same size however long the run.

Invariants
----------
* Every connection is open (and logged on) before the common start time, which the
  orchestrator sends once every generator has said it is ready; only what completes inside
  ``[start, start + seconds)`` is counted.
* Latencies are microseconds, measured with ``time.perf_counter`` inside one process, except
  delivery latency, which compares the push's ``time`` (ms, the node's clock) with this
  process's wall clock: both are the same host clock, at millisecond resolution.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aiohttp
import msgspec

from api import protocol as p
from api.auth import Signer

MAX_FRAME = 4 * p.MAX_MESSAGE_BYTES


class _Head(msgspec.Struct):
    """Enough of a push to route it: the channel, and the post id or the push time."""

    channel: str
    data: Any = None


_head = msgspec.json.Decoder(_Head).decode


class OrderFrames:
    """Requests for connection ``conn``: place (alo, far from any mark) then cancel it."""

    def __init__(self, market: str, price: str, size: str, conn: int, batch: int = 1):
        self.market, self.price, self.size, self.conn, self.batch = market, price, size, conn, batch
        self.ids = itertools.count(1)

    def _cloid(self, n: int) -> str:
        return f"g{self.conn}-{n}"

    def action(self, post_id: int) -> p.Action:
        if self.batch == 1:
            n = post_id // 2
            if post_id % 2:
                return p.Place(self.market, "sell", self.size, self.price, tif="alo", cloid=self._cloid(n))
            return p.Cancel(self.market, cloid=self._cloid(n - 1))
        half = self.batch // 2  # each batch places half and cancels the previous batch's places
        places = [p.Place(self.market, "sell", self.size, self.price, tif="alo", cloid=self._cloid(post_id * half + i))
                  for i in range(half)]
        cancels = [p.Cancel(self.market, cloid=self._cloid((post_id - 1) * half + i)) for i in range(half)]
        return p.Batch(places + cancels if post_id > 1 else places)

    def next(self) -> tuple[int, str]:
        post_id = next(self.ids)
        return post_id, p.encode(p.Post(post_id, self.action(post_id))).decode()


async def _open(session: aiohttp.ClientSession, task: dict, conn_index: int) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(task["url"], max_msg_size=MAX_FRAME, autoping=True)
    signer_text = task.get("signer")
    if signer_text:
        signer = Signer.parse(signer_text)
        nonce = task["nonce_base"] + conn_index
        await ws.send_str(p.encode(signer.logon(task["network"], nonce)).decode())
        while True:
            head = _head((await ws.receive()).data)
            if head.channel == "logon":
                break
            if head.channel == "error":
                raise RuntimeError(f"logon refused: {head.data}")
    return ws


async def _sleep_until(t_wall: float) -> None:
    await asyncio.sleep(max(0.0, t_wall - time.time()))


async def _roundtrip_conn(ws, frames: OrderFrames, depth: int, start: float, end: float, out: dict) -> None:
    """Keep ``depth`` posts in flight until ``end``; count answers inside the window."""
    sent_at: dict[int, float] = {}
    for _ in range(depth):
        post_id, frame = frames.next()
        sent_at[post_id] = time.perf_counter()
        await ws.send_str(frame)
    while True:
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        head = _head(msg.data)
        if head.channel != "post":
            continue
        now_wall = time.time()
        t0 = sent_at.pop(head.data["id"])
        response = head.data["response"]
        if start <= now_wall < end:
            out["answers"] += 1
            out["lat_us"].append((time.perf_counter() - t0) * 1e6)
            if response.get("type") != "ok":
                out["refused"] += 1
                out.setdefault("refusal", response)
            else:
                out["actions"] += len(response["statuses"])
                out["rejected"] += sum(1 for s in response["statuses"] if s["status"] == "rejected")
        if now_wall >= end:
            if not sent_at:
                break
            continue
        post_id, frame = frames.next()
        sent_at[post_id] = time.perf_counter()
        await ws.send_str(frame)


async def _rate_conns(conns: list, frames: list[OrderFrames], rate: float, start: float, end: float, out: dict) -> None:
    """Open loop: the k-th request is due at ``start + k / rate``; latency counts from then."""
    due_at: dict[tuple[int, int], float] = {}
    perf_start = time.perf_counter() + (start - time.time())

    async def reader(i: int, ws) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            head = _head(msg.data)
            if head.channel == "post":
                t_due = due_at.pop((i, head.data["id"]), None)
                if t_due is not None:
                    out["answers"] += 1
                    out["lat_us"].append((time.perf_counter() - t_due) * 1e6)
                    if head.data["response"].get("type") != "ok":
                        out["refused"] += 1
                        out.setdefault("refusal", head.data["response"])

    readers = [asyncio.ensure_future(reader(i, ws)) for i, ws in enumerate(conns)]
    await _sleep_until(start)
    sent = 0
    total = int(rate * (end - start))
    while sent < total:
        due_now = min(total, int((time.perf_counter() - perf_start) * rate) + 1)
        while sent < due_now:
            i = sent % len(conns)
            post_id, frame = frames[i].next()
            due_at[(i, post_id)] = perf_start + sent / rate
            await conns[i].send_str(frame)
            sent += 1
        await asyncio.sleep(0.0005)
    out["sent"] = sent
    deadline = time.perf_counter() + 5.0
    while due_at and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    out["unanswered"] = len(due_at)
    for r in readers:
        r.cancel()


async def _subscriber(ws, sub: dict, start: float, end: float, out: dict) -> None:
    await ws.send_str(msgspec.json.encode({"method": "subscribe", "subscription": sub}).decode())
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            out["closed"] += 1
            break
        now_wall = time.time()
        if now_wall >= end:
            break
        if now_wall < start:
            continue
        head = _head(msg.data)
        if head.channel in ("subscriptionResponse", "pong"):
            continue
        out["frames"] += 1
        t_ms = head.data.get("time") if isinstance(head.data, dict) else None
        if t_ms is not None:
            out["lat_us"].append(max(0.0, now_wall * 1e3 - t_ms) * 1e3)


async def _run(task: dict, conn=None) -> dict:
    """Open the connections, then (with ``conn``) report ready and receive the start time."""
    kind, seconds = task["kind"], task["seconds"]
    out: dict = {"kind": kind, "answers": 0, "actions": 0, "refused": 0, "rejected": 0, "frames": 0, "closed": 0, "lat_us": []}
    n = task.get("connections", 1)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        conns = [await _open(session, task, i) for i in range(n)]
        if conn is not None:
            conn.send("ready")
            start = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        else:
            start = task["start"]
        end = start + seconds
        frames = [OrderFrames(task.get("market", "NVDA"), task.get("price", "1"), task.get("size", "1"),
                              task.get("conn_base", 0) + i, task.get("batch", 1)) for i in range(n)]
        if kind in ("roundtrip", "drive"):
            await _sleep_until(start)
            await asyncio.gather(*(_roundtrip_conn(ws, f, task.get("depth", 1), start, end, out)
                                   for ws, f in zip(conns, frames)))
        elif kind == "rate":
            await _rate_conns(conns, frames, task["rate"], start, end, out)
        elif kind == "subscribe":
            await asyncio.gather(*(_subscriber(ws, task["subscription"], start, end, out) for ws in conns))
        elif kind == "stuck":
            for ws in conns:
                await ws.send_str(msgspec.json.encode({"method": "subscribe", "subscription": task["subscription"]}).decode())
            await _sleep_until(end)  # and never read: the socket's buffers fill up
            out["closed"] = sum(1 for ws in conns if ws.closed)
        for ws in conns:
            await ws.close()
    return out


def generate(task: dict, conn) -> None:
    """Process entry: run ``task`` and send back its result (or the error as text)."""
    try:
        result = asyncio.run(_run(task, conn))
    except Exception as exc:  # reported by the orchestrator, not swallowed
        result = {"kind": task["kind"], "error": f"{type(exc).__name__}: {exc}"}
    conn.send(result)
    conn.close()
