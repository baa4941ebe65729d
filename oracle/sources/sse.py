"""An incremental Server-Sent-Events parser (the WHATWG event-stream format) for Hermes.

Layout: ``SseEvent`` (event type and data), ``SseParser.feed(chunk) -> [SseEvent]``.

Invariants:
  * Bytes may arrive split anywhere (mid-line, mid-UTF-8 character); events come out only
    when their terminating blank line has arrived, in order.
  * ``data:`` lines of one event are joined with ``\\n``; one leading space after the colon is
    dropped; ``event:`` sets the type (default ``message``); lines starting with ``:`` are
    comments (keep-alives), counted in ``comments``; other fields (``id``, ``retry``) are
    ignored; an event with no data is not dispatched.
  * A line longer than ``max_line_bytes`` raises ``SseError`` (a broken or hostile server
    must not grow our memory without bound).

Known limitations:
  * Lines end with ``\\n`` or ``\\r\\n``; a bare ``\\r`` line ending (legal, unused by
    Hermes) is not recognised.
"""

from __future__ import annotations

from typing import NamedTuple


class SseError(ValueError):
    """The byte stream is not an event stream we accept."""


class SseEvent(NamedTuple):
    event: str
    data: str


class SseParser:
    def __init__(self, max_line_bytes: int = 4 << 20):
        self.max_line_bytes = max_line_bytes
        self.comments = 0
        self._pending = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Consume ``chunk``; return the events it completed."""
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > self.max_line_bytes:
            raise SseError(f"an event-stream line exceeds {self.max_line_bytes} bytes")
        out = []
        for raw in lines:
            event = self._line(raw.removesuffix(b"\r").decode("utf-8", errors="replace"))
            if event is not None:
                out.append(event)
        return out

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            event = SseEvent(self._event or "message", "\n".join(self._data)) if self._data else None
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None
