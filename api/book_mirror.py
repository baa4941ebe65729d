"""The publisher's copy of one market's book, kept from the engine's ``LEVEL`` events.

Layout
------
``BookMirror`` holds ``price_ticks -> size_lots`` per side, the wire strings of each level,
and ``seq``: the engine sequence number of the last batch that changed the book. ``apply``
takes one batch's level changes and returns the delta's levels; ``snapshot`` and ``top``
read it best first.

Invariants
----------
* The mirror changes only in ``apply``, so a snapshot taken between batches is exactly the
  book the published deltas describe, as of ``seq``; the next delta's ``prevSeq`` is ``seq``.
* Level strings are formatted once, when the level changes, and both the messages and the
  checksum use those same strings.
"""

from __future__ import annotations

from itertools import islice
from typing import Callable, Iterable

from sortedcontainers import SortedDict

from api.l2book import CHECKSUM_DEPTH, book_checksum

BID, ASK = 0, 1
LevelStrs = tuple[str, str]


class BookMirror:
    def __init__(self, price_str: Callable[[int], str], size_str: Callable[[int], str], seq: int = 0):
        self._price_str, self._size_str = price_str, size_str
        self.seq = seq
        self._sides = (SortedDict(), SortedDict())  # ticks -> (price_str, size_str); bids best = last

    def load(self, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]], seq: int) -> None:
        """Replace the whole book (``Engine.depth`` output), as of ``seq``."""
        for side, levels in ((BID, bids), (ASK, asks)):
            book = self._sides[side]
            book.clear()
            for ticks, lots in levels:
                if lots:
                    book[int(ticks)] = (self._price_str(ticks), self._size_str(lots))
        self.seq = seq

    def apply(self, changes: dict[tuple[int, int], int], seq: int) -> tuple[list[LevelStrs], list[LevelStrs]]:
        """Apply ``{(side, price_ticks): new size_lots}`` (0 deletes); returns the changed
        levels as wire strings, (bids, asks), best first."""
        out: tuple[list[tuple[int, LevelStrs]], list[tuple[int, LevelStrs]]] = ([], [])
        for (side, ticks), lots in changes.items():
            book = self._sides[side]
            if lots:
                level = book[ticks] = (self._price_str(ticks), self._size_str(lots))
            else:
                book.pop(ticks, None)
                level = (self._price_str(ticks), "0")
            out[side].append((ticks, level))
        self.seq = seq
        bids = [level for _, level in sorted(out[BID], key=lambda item: -item[0])]
        asks = [level for _, level in sorted(out[ASK], key=lambda item: item[0])]
        return bids, asks

    def bids(self, depth: int | None = None) -> list[LevelStrs]:
        return list(islice(reversed(self._sides[BID].values()), depth))

    def asks(self, depth: int | None = None) -> list[LevelStrs]:
        return list(islice(self._sides[ASK].values(), depth))

    def checksum(self) -> int:
        return book_checksum(self.bids(CHECKSUM_DEPTH), self.asks(CHECKSUM_DEPTH))
