"""The reference engine's trigger orders: docs/triggers.md written out plainly, for the
differential tests to hold ``engine.triggers`` to.

``TriggerRules`` is a mixin of ``engine.reference.ReferenceEngine``: live triggers in a dict
by id, fired after every dispatched command (``_run_triggers``) by re-entering ``_place``
with a command made from the trigger.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.codes import (
    MAX_MARK_TICKS,
    CommandKind,
    EventKind,
    Reject,
    Tif,
    TriggerStep,
)

TAKE_PROFIT = 1
ON_LAST = 2


@dataclass
class _Trigger:
    tid: int
    account: int
    market: int
    side: int
    tif: int
    flags: int
    trigger: int
    price: int
    size: int  # 0: the whole position at trigger time


def _closes(size: int, side: int) -> bool:
    return size < 0 if side == 0 else size > 0


class TriggerRules:
    """Trigger placement, cancellation and firing of the reference engine."""

    def _init_triggers(self) -> None:
        self._triggers: dict[int, _Trigger] = {}
        self._trigger_seq = 0

    def _emit_trigger(self, t: _Trigger, step: TriggerStep, size: int) -> None:
        self._emit(EventKind.TRIGGER, market=t.market, account=t.account, oid=t.tid, side=t.side, price=t.trigger,
                   size=size, reason=step)

    def _place_trigger_code(self, cmd) -> int:
        code = self._id_code(cmd)
        if code:
            return code
        if cmd.side > 1 or cmd.tif not in (Tif.MARKET, Tif.GTC) or cmd.stp > 3:
            return Reject.BAD_FIELD
        if not 0 < cmd.oid <= MAX_MARK_TICKS:
            return Reject.TRIGGER_PRICE_INVALID
        if cmd.tif == Tif.GTC and cmd.price <= 0:
            return Reject.PRICE_NOT_POSITIVE
        if cmd.tif == Tif.MARKET and cmd.price != 0:
            return Reject.MARKET_ORDER_WITH_PRICE
        if cmd.size < 0:
            return Reject.SIZE_NOT_POSITIVE
        if cmd.size > self._markets[cmd.market].max_order_lots:
            return Reject.SIZE_ABOVE_MAX
        if cmd.size == 0:
            if not self._risk:
                return Reject.RISK_DISABLED
            if not _closes(self._position(cmd.account, cmd.market).size, cmd.side):
                return Reject.TRIGGER_NEEDS_POSITION
        if len(self._triggers) >= self._config.max_triggers:
            return Reject.TRIGGER_BOOK_FULL
        return 0

    def _place_trigger(self, cmd) -> None:
        code = self._place_trigger_code(cmd)
        if code:
            return self._emit_reject(code, cmd.market, cmd.account, 0)
        self._trigger_seq += 1
        t = _Trigger(self._trigger_seq, cmd.account, cmd.market, cmd.side, cmd.tif, cmd.stp, cmd.oid, cmd.price,
                     cmd.size)
        self._triggers[t.tid] = t
        self._emit_trigger(t, TriggerStep.PLACED, t.size)

    def _cancel_trigger(self, cmd) -> None:
        code = cmd.pre_reject
        if not code and not 0 <= cmd.market < len(self._markets):
            code = Reject.UNKNOWN_MARKET
        if not code and not 0 <= cmd.account < self._config.max_accounts:
            code = Reject.UNKNOWN_ACCOUNT
        t = self._triggers.get(cmd.oid)
        if not code and (t is None or t.market != cmd.market):
            code = Reject.UNKNOWN_TRIGGER
        if not code and t.account != cmd.account:
            code = Reject.NOT_ORDER_OWNER
        if code:
            return self._emit_reject(code, cmd.market, cmd.account, cmd.oid)
        del self._triggers[t.tid]
        self._emit_trigger(t, TriggerStep.CANCELLED, t.size)

    def _reached(self, t: _Trigger) -> bool:
        m = self._markets[t.market]
        ref = m.last_trade if t.flags & ON_LAST else m.mark
        if ref <= 0:
            return False
        rising = t.side == 0 if not t.flags & TAKE_PROFIT else t.side == 1  # fires at or above
        return ref >= t.trigger if rising else ref <= t.trigger

    def _run_triggers(self) -> None:
        """Lowest id first, one at a time: cancel a position TP/SL without a position to close,
        fire a reached trigger (its order enters as a Place), until none acts."""
        while self._triggers:
            acting = None
            for tid in sorted(self._triggers):
                t = self._triggers[tid]
                whole_gone = t.size == 0 and not _closes(self._position(t.account, t.market).size, t.side)
                if whole_gone or self._reached(t):
                    acting = (t, not whole_gone)
                    break
            if acting is None:
                return
            t, fire = acting
            del self._triggers[t.tid]
            if not fire:
                self._emit_trigger(t, TriggerStep.POSITION_CLOSED, t.size)
                continue
            lots = t.size or abs(self._position(t.account, t.market).size)
            self._emit_trigger(t, TriggerStep.FIRED, lots)
            fields = dict.fromkeys(self._cmd_fields, 0)
            fields.update(kind=CommandKind.PLACE, side=t.side, tif=t.tif, market=t.market, account=t.account,
                          price=t.price, size=lots, ts=self._ts)
            self._place(self._cmd_type(**fields))

    def _trigger_words(self) -> list[int]:
        if self._trigger_seq == 0:
            return []
        words = [self._trigger_seq]
        for tid in sorted(self._triggers):
            t = self._triggers[tid]
            words += [t.tid, t.account, t.market, t.side, t.tif, t.flags, t.trigger, t.price, t.size]
        return words
