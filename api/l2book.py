"""A client's local L2 book from the ``l2Delta`` channel, and the book checksum both sides
compute with one function (spec/gateway.md §2).

Checksum (Kraken's v2 algorithm over afterhours' wire strings)
--------------------------------------------------------------
Take the best 10 asks, lowest price first, then the best 10 bids, highest price first.
For each level take its price string and its size string *exactly as published on the
wire*, remove the ``.``, strip leading ``0`` characters, and append price then size to one
ASCII string. The checksum is ``zlib.crc32`` of that string: an unsigned 32-bit integer.
Example: asks ``[("0.05005", "0.00000500")]``, bids ``[("0.05000", "1.5")]`` give the string
``"5005500500015"``. Because the strings are the wire's, the server formats each level once
and both sides hash the same characters; "180.1" and "180.10" hash differently.

Layout
------
* ``book_checksum(bids, asks)``: the one checksum function (server publisher and client);
* ``L2Book``: apply a snapshot, then deltas; ``SequenceGap``, ``ChecksumMismatch`` and
  ``NotSynced`` (all ``ResyncRequired``) tell the client to resubscribe.

Invariants
----------
* A delta is applied only if its ``prevSeq`` equals the ``seq`` last applied; a delta with
  ``seq`` at or below it is stale (from before a resubscription) and is skipped.
* After any ``ResyncRequired`` the book refuses deltas until the next snapshot.
* A level is keyed by its decimal value; its strings are the last ones received.
"""

from __future__ import annotations

import zlib
from decimal import Decimal
from itertools import islice
from typing import Iterable, Sequence

from sortedcontainers import SortedDict

from api.protocol import L2Delta

CHECKSUM_DEPTH = 10
LevelStrs = tuple[str, str]


def _token(text: str) -> str:
    return text.replace(".", "").lstrip("0")


def checksum_string(bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]], depth: int = CHECKSUM_DEPTH) -> str:
    """The string the checksum hashes (module docstring); levels best first."""
    parts = []
    for side in (asks, bids):
        for n, (price, size) in enumerate(side):
            if n == depth:
                break
            parts.append(_token(price) + _token(size))
    return "".join(parts)


def book_checksum(bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]], depth: int = CHECKSUM_DEPTH) -> int:
    """CRC32 of the top ``depth`` levels; ``bids`` highest first, ``asks`` lowest first,
    each level ``(price_str, size_str)`` as on the wire."""
    return zlib.crc32(checksum_string(bids, asks, depth).encode("ascii"))


class ResyncRequired(Exception):
    """The local book can no longer be trusted; resubscribe to get a fresh snapshot."""

    def __init__(self, market: str, detail: str):
        super().__init__(f"{market}: {detail}")
        self.market = market


class SequenceGap(ResyncRequired):
    def __init__(self, market: str, expected_prev: int, got_prev: int | None, seq: int):
        super().__init__(market, f"delta {seq} follows {got_prev}, but the last applied was {expected_prev}")
        self.expected_prev, self.got_prev, self.seq = expected_prev, got_prev, seq


class ChecksumMismatch(ResyncRequired):
    def __init__(self, market: str, seq: int, expected: int, computed: int):
        super().__init__(market, f"checksum after {seq} is {computed}, the server says {expected}")
        self.seq, self.expected, self.computed = seq, expected, computed


class NotSynced(ResyncRequired):
    """A delta arrived before any snapshot, or after a failure and before the new snapshot."""


class L2Book:
    """One market's book as a client sees it. ``apply`` takes ``l2Delta`` payloads."""

    def __init__(self, market: str):
        self.market = market
        self.seq: int | None = None
        self._bids: SortedDict = SortedDict()  # Decimal price -> (price_str, size_str); best = last
        self._asks: SortedDict = SortedDict()  # best = first

    @property
    def synced(self) -> bool:
        return self.seq is not None

    def apply(self, msg: L2Delta) -> bool:
        """Apply a snapshot or a delta; False if it was a stale delta and was skipped.
        Raises ``ResyncRequired`` (and drops the book) on a gap or a checksum mismatch."""
        if msg.market != self.market:
            raise ValueError(f"message for {msg.market} applied to the book of {self.market}")
        if msg.snapshot:
            self._bids.clear()
            self._asks.clear()
        elif self.seq is None:
            raise NotSynced(self.market, f"delta {msg.seq} without a snapshot")
        elif msg.seq <= self.seq:
            return False
        elif msg.prevSeq != self.seq:
            expected, self.seq = self.seq, None
            raise SequenceGap(self.market, expected, msg.prevSeq, msg.seq)
        _update(self._bids, msg.bids)
        _update(self._asks, msg.asks)
        computed = self.checksum()
        if computed != msg.checksum:
            self.seq = None
            raise ChecksumMismatch(self.market, msg.seq, msg.checksum, computed)
        self.seq = msg.seq
        return True

    def bids(self, depth: int | None = None) -> list[LevelStrs]:
        """Best (highest) first, as wire strings."""
        return list(islice(reversed(self._bids.values()), depth))

    def asks(self, depth: int | None = None) -> list[LevelStrs]:
        """Best (lowest) first, as wire strings."""
        return list(islice(self._asks.values(), depth))

    def best_bid(self) -> LevelStrs | None:
        return self._bids.peekitem(-1)[1] if self._bids else None

    def best_ask(self) -> LevelStrs | None:
        return self._asks.peekitem(0)[1] if self._asks else None

    def checksum(self) -> int:
        return book_checksum(self.bids(CHECKSUM_DEPTH), self.asks(CHECKSUM_DEPTH))


def _update(side: SortedDict, levels: Sequence[Sequence[str]]) -> None:
    """Absolute sizes: a size equal to zero deletes the level (absent levels: no-op)."""
    for price, size in levels:
        key = Decimal(price)
        if Decimal(size) == 0:
            side.pop(key, None)
        else:
            side[key] = (price, size)
