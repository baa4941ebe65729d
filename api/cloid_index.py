"""The durable cloid index: per account, the last orders placed with a ``cloid``, their first
answer and their last state, rebuilt after a restart (spec/gateway.md §5.2).

Layout
------
``CloidIndex(markets, per_account)`` is fed every applied batch, in sequence order:
``on_batch`` (a sequencer listener: ``Sequencer(cloids=index)`` registers it first and saves
the index with each snapshot) and ``on_replay`` (``JournaledEngine.open(on_events=...)``:
the commands replayed after the snapshot at start-up). For each order accepted from a
place with a ``cloid`` it keeps an ``Entry``: the command's sequence number, the answer a
single (non-batch) place got (``api.actions`` derives it from the command's own events,
exactly as the executor did), and the order's last state (open, filled, cancelled,
expired), followed through later fills, amends, cancels and expiries.

``save(seq)`` writes ``cloids.state`` atomically (the sequencer does it between two batches,
before the engine snapshot at the same sequence number); ``CloidIndex.open`` reads it, and
the replay after the newest snapshot brings the index up to the journal's end.

Invariants
----------
* An entry is a function of the journal: the same journal gives the same index whether it
  was built live, from the state file plus replay, or by replay alone.
* Replaying commands already in the state file (recovery fell back to an older snapshot)
  is harmless: each command's events overwrite the state they produced before.
* Rejected places make no entry (no order exists; a retry may try again).

Known limitations
-----------------
* Bounded: the last ``per_account`` cloids of each account (by the sequence number of
  their place); an older one is forgotten, and a retry of it is placed again.
* If ``cloids.state`` is missing or behind the snapshot recovery used (deleted, or written
  by an older build), the places between its sequence number and that snapshot are not
  known after the restart; ``open`` logs it.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict

import msgspec
import numpy as np

from api import protocol as p
from api.actions import Markets, _place_status, reason_name
from api.feeds import Ev, OrderInfo
from engine.codes import CommandKind, EventKind
from engine.commands import unpack_cloid
from engine.journal.fileops import FileOps

log = logging.getLogger(__name__)

STATE_NAME = "cloids.state"
DEFAULT_PER_ACCOUNT = 1000
_PLACE, _BATCH = int(CommandKind.PLACE), int(CommandKind.BATCH)
_FILL, _ACCEPTED, _CANCELLED, _EXPIRED, _AMENDED = (int(k) for k in (
    EventKind.FILL, EventKind.ACCEPTED, EventKind.CANCELLED, EventKind.EXPIRED, EventKind.AMENDED))
_TRACKED = np.array([_FILL, _ACCEPTED, _CANCELLED, _EXPIRED, _AMENDED])


class Entry(msgspec.Struct, array_like=True):
    account: int
    cloid: str
    seq: int  # the place's sequence number
    answer: p.PostOk | None  # a single place's answer; None for a place inside a batch
    oid: int
    market: int
    side: int
    price: int  # ticks
    size: int  # lots, filled + open
    remaining: int
    status: str  # open | filled | cancelled | expired
    reason: str | None
    ts_ns: int  # the stamp of its last change


class State(msgspec.Struct):
    seq: int
    entries: list[Entry]


class CloidIndex:
    """See the module docstring."""

    def __init__(self, markets: Markets, per_account: int = DEFAULT_PER_ACCOUNT, directory: str | None = None):
        if per_account <= 0:
            raise ValueError("per_account must be positive")
        self.markets, self.per_account, self.directory = markets, per_account, directory
        self.seq = 0  # the last sequence number the index has seen
        self._by_account: dict[int, OrderedDict[str, Entry]] = {}
        self._open: dict[int, Entry] = {}  # oid -> entry of an open order

    @classmethod
    def open(cls, directory: str, markets: Markets, per_account: int = DEFAULT_PER_ACCOUNT) -> CloidIndex:
        """The index saved in ``directory`` (empty if none); replay brings it up to date."""
        index = cls(markets, per_account, directory)
        path = os.path.join(directory, STATE_NAME)
        if os.path.exists(path):
            with open(path, "rb") as f:
                state = msgspec.json.decode(f.read(), type=State)
            index.seq = state.seq
            for entry in state.entries:
                index._put(entry)
        return index

    def check_base(self, snapshot_seq: int) -> None:
        """Log when the saved index is behind the snapshot recovery starts from."""
        if self.seq < snapshot_seq:
            log.warning("cloid index: %s is at seq %d, behind the snapshot at seq %d; the places between are "
                        "not known for retries", STATE_NAME, self.seq, snapshot_seq)

    # ------------------------------------------------------------------ reading

    def answer(self, account: int, cloid: str) -> p.PostOk | None:
        """The original answer to a single place with this ``cloid``, if still kept."""
        entry = self._by_account.get(account, {}).get(cloid)
        return entry.answer if entry is not None else None

    def order(self, account: int, cloid: str) -> tuple[int, OrderInfo, str, str | None, int] | None:
        """``(oid, info, status, reason, ts_ns)``: the order's last state, if still kept."""
        e = self._by_account.get(account, {}).get(cloid)
        if e is None:
            return None
        return e.oid, OrderInfo(e.account, e.market, e.side, e.price, e.size, e.remaining, e.cloid), e.status, \
            e.reason, e.ts_ns

    def __len__(self) -> int:
        return sum(len(d) for d in self._by_account.values())

    # ------------------------------------------------------------------ feeding

    def on_batch(self, batch) -> None:
        """The sequencer's listener."""
        self.apply(batch.first_seq, batch.commands, batch.events, batch.ts_ns)

    def on_replay(self, first_seq: int, records: np.ndarray, events: np.ndarray) -> None:
        """``replay``'s ``on_events``: the stamp is each record's ``ts``."""
        self.apply(first_seq, records, events, None)

    def apply(self, first_seq: int, records: np.ndarray, events: np.ndarray, ts_ns: int | None) -> None:
        n = len(records)
        if n == 0:
            return
        self.seq = max(self.seq, first_seq + n - 1)
        kinds = records["kind"]
        places = np.flatnonzero((kinds == _PLACE) & ((records["cloid0"] | records["cloid1"] | records["cloid2"]
                                                      | records["cloid3"]) != 0))
        tracked = events[np.isin(events["kind"], _TRACKED)]
        if not len(places) and (not self._open or not len(tracked)):
            return
        in_batch = np.zeros(n, dtype=bool)
        for at in np.flatnonzero(kinds == _BATCH).tolist():
            in_batch[at + 1: at + 1 + max(int(records["size"][at]), 0)] = True
        place_set = set(places.tolist())
        stamps = records["ts"].tolist() if ts_ns is None else None
        by_cmd: dict[int, list[tuple]] = {}
        if len(places):
            for row in events[np.isin(events["cmd"], places)].tolist():
                by_cmd.setdefault(row[4], []).append(row)  # row[4]: cmd
        for row in tracked.tolist():
            ev = Ev._make(row)
            kind, cmd = ev.kind, ev.cmd
            ts = ts_ns if stamps is None else int(stamps[cmd])
            if kind == _ACCEPTED:
                if cmd in place_set and ev.account == int(records["account"][cmd]):
                    place_set.discard(cmd)  # the first ACCEPTED of the command is its order
                    rec = records[cmd]
                    cloid = unpack_cloid([rec["cloid0"], rec["cloid1"], rec["cloid2"], rec["cloid3"]])
                    answer = None
                    if not in_batch[cmd]:
                        answer = p.PostOk(first_seq + cmd, [_place_status(by_cmd[cmd], self.markets, cloid)])
                    entry = Entry(ev.account, cloid, first_seq + cmd, answer, ev.oid, ev.market, ev.side, ev.price,
                                  ev.size, ev.size, "open", None, ts)
                    self._put(entry)
            elif kind == _FILL:
                taker, maker = self._open.get(ev.oid), self._open.get(ev.maker_oid)
                if taker is not None:
                    taker.remaining -= ev.size
                    self._after_fill(taker, ts)
                if maker is not None:
                    maker.remaining = ev.remaining
                    self._after_fill(maker, ts)
            elif kind == _CANCELLED or kind == _EXPIRED:
                entry = self._open.pop(ev.oid, None)
                if entry is not None:
                    expired = kind == _EXPIRED
                    entry.status = "expired" if expired else "cancelled"
                    entry.reason = "expired" if expired else reason_name(ev.reason)
                    entry.ts_ns = ts
            elif kind == _AMENDED:
                entry = self._open.get(ev.oid)
                if entry is not None:
                    entry.size += ev.size - entry.remaining
                    entry.price, entry.remaining, entry.ts_ns = ev.price, ev.size, ts

    def save(self) -> None:
        """Write the index (as of ``self.seq``) to ``cloids.state`` atomically."""
        if self.directory is None:
            return
        entries = [e for d in self._by_account.values() for e in d.values()]
        entries.sort(key=lambda e: e.seq)
        FileOps().write_atomic(os.path.join(self.directory, STATE_NAME),
                               msgspec.json.encode(State(self.seq, entries)))

    # ------------------------------------------------------------------ internals

    def _after_fill(self, entry: Entry, ts: int) -> None:
        entry.ts_ns = ts
        if entry.remaining <= 0:
            self._open.pop(entry.oid, None)
            entry.status = "filled"

    def _put(self, entry: Entry) -> None:
        kept = self._by_account.setdefault(entry.account, OrderedDict())
        old = kept.pop(entry.cloid, None)
        if old is not None and self._open.get(old.oid) is old:
            del self._open[old.oid]
        kept[entry.cloid] = entry
        if entry.status == "open":
            self._open[entry.oid] = entry
        while len(kept) > self.per_account:
            _, gone = kept.popitem(last=False)
            if self._open.get(gone.oid) is gone:
                del self._open[gone.oid]
