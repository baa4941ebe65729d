"""Runs one authorised wire action through the sequencer and answers it (spec/gateway.md §1, §5).

Layout
------
``Executor.execute(action, account, key_id, nonce)`` -> ``PostOk`` or ``PostError``:

1 the key's order and cancel budgets (``api.ratelimit.KeyLimiter``): a refused single
  action is a ``PostError`` with ``retryAfterMs``; refused actions of a batch are
  ``Rejected`` statuses and the rest go ahead;
2 a place with a ``cloid`` is idempotent per account: a second request while the first is
  in flight waits for it and gets the same answer, and one after it (within the last
  ``cache_size`` answers, or among the last cloids of the account in the durable
  ``api.cloid_index``, which survives restarts) gets the original answer again (§5.2),
  unless the original was rejected (no order was made, so a retry may try again);
3 the action becomes engine records (``api.records``, the same records as
  ``api.actions.to_records``); a single action the conversion already refused is
  answered at once (nothing journaled); everything else is submitted and answered from
  its own events (``api.actions.statuses``) once it is durable. ``seq`` is 0 when nothing
  was journaled.

Invariants
----------
* A request's nonce is journaled whenever its signature was accepted, with its command or
  alone (``Sequencer.record_nonce``) when no command goes to the engine.
* Nothing is answered ``ok`` before the sequencer acknowledged it (journaled, fsynced).

Known limitations
-----------------
* Across a restart only the durable index answers (the node's: the last
  ``api.cloid_index.DEFAULT_PER_ACCOUNT`` cloids of each account); a retry of an older cloid
  is placed again (or, if its order still rests, refused as ``DUPLICATE_CLOID``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from typing import Callable

from api import actions
from api import protocol as p
from api.errors import GatewayCode, compose_msg, wire_code
from api.ratelimit import KeyLimiter
from api.records import RecordWriter
from api.sequencer import SequencerUnavailable

Nonce = tuple[str, int]
_CANCEL_LIKE = {"cancelTrigger": "cancel", "scheduleCancel": "cancel"}


class Executor:
    def __init__(self, sequencer, markets: actions.Markets, key_limiter: KeyLimiter, clock_ns: Callable[[], int],
                 cloids_of: Callable[[], dict[int, object]], *, cache_size: int = 10_000,
                 on_reject: Callable[[int], None] | None = None, cloid_index=None):
        self.sequencer, self.markets, self.key_limiter = sequencer, markets, key_limiter
        self._records = RecordWriter(markets)
        self.clock_ns = clock_ns
        self._orders = cloids_of
        self._cache: OrderedDict[tuple[int, str], p.PostResponse] = OrderedDict()
        self._in_flight: dict[tuple[int, str], asyncio.Future] = {}
        self._cache_size = cache_size
        self._cloid_index = cloid_index  # api.cloid_index.CloidIndex: answers from before a restart
        self._bounds: deque[tuple[int, int]] = deque(maxlen=1024)  # (first_seq, n) of recent batches
        self._on_reject = on_reject or (lambda code: None)

    def note_batch(self, first_seq: int, n: int) -> None:
        """The sequencer's listener calls this with every batch, so an Ack's events can be
        placed in their batch."""
        self._bounds.append((first_seq, n))

    def _first_cmd(self, seq: int) -> int:
        for first, n in reversed(self._bounds):
            if first <= seq < first + n:
                return seq - first
        raise AssertionError(f"sequence number {seq} is in no recent batch")

    async def execute(self, action: p.Action, account: int, key_id: str, nonce: Nonce | None) -> p.PostResponse:
        """The answer to one authorised action; never raises for a degraded node."""
        try:
            return await self._execute_once(action, account, key_id, nonce)
        except SequencerUnavailable as exc:
            self._on_reject(GatewayCode.WRITES_SUSPENDED)
            return p.PostError(wire_code(GatewayCode.WRITES_SUSPENDED),
                               compose_msg(GatewayCode.WRITES_SUSPENDED, str(exc)))

    async def _execute_once(self, action: p.Action, account: int, key_id: str,
                            nonce: Nonce | None) -> p.PostResponse:
        idem = _idempotency_key(action, account)
        if idem is not None:
            if idem in self._cache:
                await self._journal_nonce(nonce)
                return self._cache[idem]
            kept = self._cloid_index.answer(*idem) if self._cloid_index is not None else None
            if kept is not None:
                await self._journal_nonce(nonce)
                return kept
            if idem in self._in_flight:
                await self._journal_nonce(nonce)
                return await asyncio.shield(self._in_flight[idem])
            future = self._in_flight[idem] = asyncio.get_running_loop().create_future()
            try:
                response = await self._execute(action, account, key_id, nonce)
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning
                raise
            finally:
                del self._in_flight[idem]
            future.set_result(response)
            if isinstance(response, p.PostOk) and not isinstance(response.statuses[0], p.Rejected):
                self._remember(idem, response)  # an order was made: a retry must not make another
            return response
        return await self._execute(action, account, key_id, nonce)

    def _remember(self, idem: tuple[int, str], response: p.PostResponse) -> None:
        self._cache[idem] = response
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _journal_nonce(self, nonce: Nonce | None) -> None:
        if nonce is not None:
            await self.sequencer.record_nonce(*nonce)

    async def _execute(self, action: p.Action, account: int, key_id: str, nonce: Nonce | None) -> p.PostResponse:
        tags = [_CANCEL_LIKE.get(t, t) for t in p.action_tags(action)]
        verdicts = self.key_limiter.admit_actions(key_id, tags, self.clock_ns())
        refused = {k: v for k, v in enumerate(verdicts) if v is not None}
        if refused and not isinstance(action, p.Batch):
            await self._journal_nonce(nonce)
            v = refused[0]
            self._on_reject(v.code)
            return p.PostError(wire_code(v.code), compose_msg(v.code, None), v.retry_after_ms)
        if refused:
            kept = [a for k, a in enumerate(action.actions) if k not in refused]
            if not kept:
                await self._journal_nonce(nonce)
                return p.PostOk(0, [_rate_status(v) for v in verdicts])
            inner = await self._submit(p.Batch(kept), account, nonce)
            if isinstance(inner, p.PostError):
                return inner
            statuses = iter(inner.statuses)
            merged = [_rate_status(v) if v is not None else next(statuses) for v in verdicts]
            return p.PostOk(inner.seq, merged)
        return await self._submit(action, account, nonce)

    async def _submit(self, action: p.Action, account: int, nonce: Nonce | None) -> p.PostResponse:
        records = self._records.records(action, account)
        if len(records) == 1 and records[0]["pre_reject"]:
            await self._journal_nonce(nonce)
            code = int(records[0]["pre_reject"])
            self._on_reject(code)
            return p.PostOk(0, [p.rejected(code)])
        cloids = self._known_cloids(action)
        ack = await self.sequencer.submit(records, nonce=nonce)
        statuses = actions.statuses(action, ack.events, self._first_cmd(ack.seq), self.markets, cloids)
        for status in statuses:
            if isinstance(status, p.Rejected):
                self._on_reject(-status.code)
        return p.PostOk(ack.seq, statuses)

    def _known_cloids(self, action: p.Action) -> dict[int, str]:
        """The cloids of the orders a cancel or amend names by oid, read before it runs."""
        orders = self._orders()
        items = action.actions if isinstance(action, p.Batch) else [action]
        out = {}
        for item in items:
            oid = getattr(item, "oid", None)
            info = orders.get(oid) if oid else None
            if info is not None and info.cloid is not None:
                out[oid] = info.cloid
        return out


def _rate_status(refusal) -> p.Rejected:
    return p.rejected(refusal.code, f"retry after {refusal.retry_after_ms} ms")


def _idempotency_key(action: p.Action, account: int) -> tuple[int, str] | None:
    if isinstance(action, p.Place) and action.cloid is not None:
        return (account, action.cloid)
    return None
