"""The time seam of the oracle: a clock is ``() -> int ns``, a sleep is ``async (seconds)``.

Production code takes both as arguments (defaults ``time.time_ns`` and ``asyncio.sleep``)
and never reads the wall clock otherwise, so tests and a stress lab can run on virtual time.

Layout:
  ``Clock``, ``Sleep``   the two callable types
  ``VirtualClock``       a clock plus a sleep on virtual time, and ``advance_to`` to drive it

Invariants:
  * Virtual time only moves inside ``advance_to``, forward, from one sleeper's wake-up time to
    the next in ``(wake_ns, arrival)`` order, so a run is deterministic for a given program.
  * ``advance_to`` is bounded: it wakes at most ``max_wakeups`` sleepers, then raises.

Known limitations:
  * "Every task is blocked" cannot be observed in asyncio; ``advance_to`` lets the other
    tasks run for ``settle_rounds`` loop iterations before each step. That suffices for
    tasks that compute and sleep; a task waiting on real I/O may see time jump past it.
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Awaitable, Callable

NS_PER_SECOND = 1_000_000_000

Clock = Callable[[], int]
Sleep = Callable[[float], Awaitable[None]]


def seconds_to_ns(seconds: float) -> int:
    """Seconds (a float, as ``asyncio.sleep`` takes) to whole ns, rounded to nearest."""
    return round(seconds * NS_PER_SECOND)


class VirtualClock:
    """A clock whose ``sleep`` waits for virtual time, which ``advance_to`` moves."""

    def __init__(self, start_ns: int, settle_rounds: int = 8):
        self.now_ns = start_ns
        self.settle_rounds = settle_rounds
        self._sleepers: list[tuple[int, int, asyncio.Future]] = []
        self._arrivals = 0

    def __call__(self) -> int:
        return self.now_ns

    async def sleep(self, seconds: float) -> None:
        """Wait until virtual time reaches now + ``seconds`` (a zero delay just yields)."""
        delay_ns = seconds_to_ns(seconds)
        if delay_ns <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        self._arrivals += 1
        heapq.heappush(self._sleepers, (self.now_ns + delay_ns, self._arrivals, future))
        await future

    async def settle(self) -> None:
        """Let ready tasks run for ``settle_rounds`` event-loop iterations."""
        for _ in range(self.settle_rounds):
            await asyncio.sleep(0)

    async def advance_to(self, until_ns: int, max_wakeups: int = 1_000_000) -> None:
        """Move virtual time to ``until_ns``, waking every sleeper due on the way, in order."""
        if until_ns < self.now_ns:
            raise ValueError("virtual time only moves forward")
        await self.settle()
        for _ in range(max_wakeups):
            while self._sleepers and self._sleepers[0][2].cancelled():
                heapq.heappop(self._sleepers)
            if not self._sleepers or self._sleepers[0][0] > until_ns:
                self.now_ns = until_ns
                await self.settle()
                return
            wake_ns, _, future = heapq.heappop(self._sleepers)
            self.now_ns = wake_ns
            future.set_result(None)
            await self.settle()
        raise RuntimeError(f"advance_to woke {max_wakeups} sleepers without reaching {until_ns}")
