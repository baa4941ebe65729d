"""What every adapter shares: its two shapes, reconnect backoff, and health counters.

Layout:
  ``Emit``, ``PushSource``, ``PollSource``  a push adapter runs as a task and calls ``emit``
                                            per quote; a poll adapter answers ``poll(now_ns)``
                                            synchronously (the simulator, derived sources)
  ``Backoff``, ``Retry``                    exponential reconnect delays, reset by a success
  ``SourceHealth``                          counters a test or a dashboard can read
  ``retry_after_s``                         an HTTP ``Retry-After`` in seconds, if it is one
  ``reconnect_forever``                     the stream adapters' connect / wait / reconnect loop

Invariants:
  * ``Backoff.delay_s(n) = min(max_s, initial_s · factor^n)`` for the n-th consecutive
    failure (n from 0): deterministic, no jitter.
  * Health counters only grow; ``errors`` keys are short stable kinds (``http_429``,
    ``stream_error``, ``disconnect``, ``parse``, ``connect``, ``timeout``, ``unknown_id``).

Known limitations:
  * No jitter: one node opens a handful of connections, so synchronised retries are not a
    concern; add it here if that changes.
  * ``Retry-After`` as an HTTP date is ignored (the backoff applies instead).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol, Sequence, runtime_checkable

import msgspec

from oracle.clock import Sleep
from oracle.quote import SourceQuote

Emit = Callable[[SourceQuote], None]


@runtime_checkable
class PushSource(Protocol):
    """An upstream that speaks when it wants (a socket, a poll loop): run it as a task."""

    name: str

    async def run(self, emit: Emit) -> None:  # pragma: no cover - a protocol
        ...


@runtime_checkable
class PollSource(Protocol):
    """An upstream that answers at any instant: the service asks it at every tick."""

    name: str

    def poll(self, now_ns: int) -> Sequence[SourceQuote]:  # pragma: no cover - a protocol
        ...


class Backoff(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Reconnect delays in seconds (floats: they go to ``asyncio.sleep``)."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0

    def delay_s(self, failures: int) -> float:
        """The delay before attempt ``failures + 1`` after ``failures`` consecutive failures."""
        return min(self.max_s, self.initial_s * self.factor**failures)


class Retry:
    """Consecutive-failure bookkeeping around a ``Backoff``."""

    def __init__(self, backoff: Backoff):
        self.backoff = backoff
        self.failures = 0

    def succeeded(self) -> None:
        """A connection delivered data: the next delay starts from ``initial_s`` again."""
        self.failures = 0

    def next_delay_s(self, at_least_s: float = 0.0) -> float:
        """The delay before the next attempt (at least ``at_least_s``, e.g. a Retry-After)."""
        delay = max(self.backoff.delay_s(self.failures), at_least_s)
        self.failures += 1
        return delay


@dataclass
class SourceHealth:
    """What an adapter has been through since it started."""

    connects: int = 0  # connections opened, or REST requests answered with a 2xx
    quotes: int = 0  # quotes emitted
    errors: Counter = field(default_factory=Counter)  # kind -> count
    last_error: str = ""
    delays_s: deque = field(default_factory=lambda: deque(maxlen=256))  # recent reconnect delays

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] += 1
        self.last_error = f"{kind}: {detail}" if detail else kind


def retry_after_s(header: str | None) -> float:
    """``Retry-After: <seconds>`` as a float; 0 when absent or not a number of seconds."""
    if header is None:
        return 0.0
    text = header.strip()
    return float(text) if text.isdigit() else 0.0


async def reconnect_forever(
    once: Callable[[], Awaitable[tuple[bool, float]]], backoff: Backoff, health: SourceHealth, sleep: Sleep
) -> None:
    """Run ``once`` (one connection, until it ends) forever. ``once`` returns whether it
    delivered a quote (which resets the backoff) and a floor for the next delay (a
    Retry-After). Every delay is recorded in ``health.delays_s``."""
    retry = Retry(backoff)
    while True:
        delivered, floor_s = await once()
        if delivered:
            retry.succeeded()
        delay = retry.next_delay_s(floor_s)
        health.delays_s.append(delay)
        await sleep(delay)
