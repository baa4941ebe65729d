"""``SourceQuote``: what one upstream says about one symbol, exactly as it said it.

Layout: one frozen Struct; adapters (oracle/sources/) produce it, oracle/aggregate.py
consumes it.

Invariants:
  * Numbers are integers in the upstream's own fixed point: the value is
    ``mantissa · 10**expo`` (Pyth: ``"43380934"`` with expo −5 is 433.80934; Chainlink Data
    Streams: an int192 with 18 decimals has expo −18). ``conf``, ``bid`` and ``ask`` share the
    quote's ``expo``. Nothing here is a float.
  * Times are ints of nanoseconds since the epoch: ``ts_source_ns`` is the upstream's
    publish/observation time (Pyth ``publish_time`` × 1e9), ``ts_received_ns`` ours.

Known limitations:
  * No validation on construction: a zero price, a conf above the price or a crossed book is
    a business outcome the aggregator reports with a flag, so it must be representable.
"""

from __future__ import annotations

import msgspec

from oracle.session import Session


class SourceQuote(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One quote. ``conf`` None or 0 means the source gave none; ``bid``/``ask`` None means
    no book; ``session_hint`` is the source's own view of the session (Chainlink
    ``marketStatus``), None if it has none; ``weight`` is a positive integer vote weight."""

    source: str
    symbol: str
    price: int
    expo: int
    ts_source_ns: int
    ts_received_ns: int
    conf: int | None = None
    bid: int | None = None
    ask: int | None = None
    session_hint: Session | None = None
    weight: int = 1
