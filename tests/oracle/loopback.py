"""Helpers for tests that talk to fake upstreams on 127.0.0.1 (an ephemeral port).

``serve(app)`` starts an aiohttp app and yields its base URL; ``wait_until`` polls a
condition on the event loop, bounded in time; ``no_sleep`` is an injectable sleep that
records the delays asked for and returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Callable

from aiohttp import web
from aiohttp.test_utils import TestServer


@contextlib.asynccontextmanager
async def serve(app: web.Application, on_close: Callable[[], None] = lambda: None) -> AsyncIterator[str]:
    server = TestServer(app, host="127.0.0.1", port=None)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        on_close()
        await server.close()


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    """Yield to the loop until ``condition()`` holds; fail after ``timeout_s`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


class NoSleep:
    """An injectable ``sleep`` that records each delay and only yields."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


async def cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def next_or_release(queue: asyncio.Queue, release: asyncio.Event):
    """The next item of ``queue``, or None once ``release`` is set (whichever comes first)."""
    if release.is_set():
        return None
    get = asyncio.ensure_future(queue.get())
    released = asyncio.ensure_future(release.wait())
    done, pending = await asyncio.wait({get, released}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return get.result() if get in done else None
