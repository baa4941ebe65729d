"""The outbound queue of one connection, with a socket stand-in that the test lets through or
holds: frames in order, book channels conflated to one fresh snapshot when the queue is
full, the slow-consumer close when conflation is not enough, and a close after the last
frame."""

from __future__ import annotations

import asyncio

import pytest

from api import protocol as p
from api.connection import Connection
from api.errors import GatewayCode
from api.ratelimit import Limits

pytestmark = pytest.mark.asyncio
BOOK = p.L2DeltaSub(market="NVDA")


class HeldSocket:
    """``send_frame`` waits while ``held``; records every frame and the close code."""

    def __init__(self):
        self.frames: list[bytes] = []
        self.open = asyncio.Event()
        self.open.set()
        self.close_code: int | None = None

    async def send_frame(self, frame: bytes, opcode) -> None:
        await self.open.wait()
        self.frames.append(frame)

    async def ping(self) -> None:
        self.frames.append(b"PING")

    async def close(self, code: int) -> None:
        self.close_code = code


class Transport:
    aborted = False

    def abort(self) -> None:
        self.aborted = True


def make(queue_max: int = 4, snapshot=lambda key: b"SNAPSHOT") -> tuple[Connection, HeldSocket, Transport]:
    sock, transport = HeldSocket(), Transport()
    conn = Connection(sock, transport, Limits(outbound_queue_max=queue_max), 0, snapshot=snapshot, close_grace_s=0.2)
    conn.subscriptions.add(BOOK)
    conn.start()
    return conn, sock, transport


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_frames_go_out_in_order_and_pings_between_them():
    conn, sock, _ = make()
    conn.send(b"a")
    conn.ping()
    conn.send(b"b", BOOK)
    await settle()
    assert sock.frames == [b"a", b"PING", b"b"]


async def test_a_full_queue_conflates_book_frames_into_one_fresh_snapshot():
    asked = []
    conn, sock, _ = make(snapshot=lambda key: asked.append(key) or b"FRESH")
    sock.open.clear()
    conn.send(b"first")
    await settle()  # the writer holds "first" in send_frame
    for k in range(4):
        conn.send(b"delta%d" % k, BOOK)
    conn.send(b"post-answer")  # the queue is full: the deltas collapse into one marker
    conn.send(b"delta-late", BOOK)  # covered by the pending snapshot: dropped
    assert conn.queued == 2 and conn.conflations == 1
    sock.open.set()
    await settle()
    assert sock.frames == [b"first", b"FRESH", b"post-answer"] and asked == [BOOK]
    conn.send(b"delta-next", BOOK)
    await settle()
    assert sock.frames[-1] == b"delta-next"


async def test_a_queue_full_of_other_frames_is_a_slow_consumer():
    conn, sock, transport = make(queue_max=3)
    sock.open.clear()
    for k in range(4):
        conn.send(b"trade%d" % k)
    assert conn.closing and conn.close_code == 1013
    await asyncio.sleep(0.4)  # the peer never reads: its transport is aborted after the grace
    assert transport.aborted
    conn.send(b"more")
    assert conn.queued == 0


async def test_close_sends_its_error_then_the_close_code_and_nothing_after():
    conn, sock, transport = make()
    conn.send(b"a")
    conn.close(1008, p.encode(p.error_push(GatewayCode.TOO_MANY_INVALID)))
    conn.send(b"never")
    await conn.finish()
    assert sock.frames[0] == b"a" and b"never" not in sock.frames
    assert p.decode_push(sock.frames[-1]).data.code == -GatewayCode.TOO_MANY_INVALID
    assert sock.close_code == 1008 and not transport.aborted


async def test_client_pings_are_answered_through_the_queue():
    conn, sock, _ = make()
    pongs = []

    async def pong(payload: bytes) -> None:
        pongs.append(payload)

    sock.pong = pong
    conn.send(b"a")
    conn.pong(b"hello")
    await settle()
    assert sock.frames == [b"a"] and pongs == [b"hello"]
