"""The reference engine's market modes: docs/modes.md written out plainly, one market at a
time, for the differential tests to hold ``engine.modes`` to.

``ModeRules`` is a mixin of ``engine.reference.ReferenceEngine``; it reads and writes the
mode fields of the reference's ``_Market`` records and emits through the engine's
``_emit``. The closed-hours maths (band, internal step, re-anchoring, reopen steps, pre-IPO
caps, the EMA) is ``engine.pricing``'s, tested on its own against exact decimal arithmetic;
what is re-stated here is when each piece runs.
"""

from __future__ import annotations

from engine.codes import (
    AdminAction,
    EventKind,
    FundingDark,
    MarketMode,
    OracleFlag,
    Reject,
    Side,
)
from engine.modes import (
    BREAKER_CLEAN_UPDATES,
    HALT_ADMIN,
    HALT_BREAKER,
    INTERNAL_AFTER_NS,
    PREIPO_SAMPLE_NS,
    REOPEN_FRESH_NS,
)
from engine.pricing import (
    INTERNAL_TAU_NS,
    MAX_RESETS,
    PREIPO_EMA_TAU_NS,
    REANCHOR_THRESHOLD_PPB,
    REOPEN_DONE_PPB,
    REOPEN_SNAP_PPB,
    REOPEN_STEP_PPB,
    band_ticks,
    ema_ticks,
    ema_update,
    internal_step_ticks,
    preipo_mark_ticks,
    preipo_oracle_ticks,
    reanchor,
    reopen_converged,
    reopen_snaps,
    reopen_step_ticks,
)

DARK = (MarketMode.INTERNAL, MarketMode.REOPENING)  # the dark leverage and OI limits apply
BANDED = (MarketMode.INTERNAL, MarketMode.PRE_IPO)  # the discovery band replaces the mark band


def _clamp(x: int, lo: int, hi: int) -> int:
    return max(lo, min(x, hi))


class ModeRules:
    """Mode transitions and closed-hours pricing of the reference engine."""

    # ------------------------------------------------------------------ helpers

    def _emit_mode(self, m) -> None:
        self._emit(EventKind.MODE, market=m.index, account=-1, oid=m.ref, price=m.oracle, size=m.band_lo,
                   remaining=m.band_hi, reason=m.mode)

    @staticmethod
    def _open_band(m, ref: int) -> None:
        m.ref = ref
        low, high = band_ticks(ref, m.disc_ppb)
        m.band_lo, m.band_hi = int(low), int(high)

    def _go_dark(self, m, ts: int) -> None:
        self._open_band(m, m.oracle)
        m.res_up = m.res_dn = 0
        m.int_ts = ts
        m.fresh_ts = 0
        m.mode = MarketMode.INTERNAL
        self._emit_mode(m)

    def _go_external(self, m) -> None:
        m.oracle = m.ext
        m.res_up = m.res_dn = 0
        m.mode = MarketMode.EXTERNAL
        self._emit_mode(m)

    def _reopen_update(self, m) -> None:
        m.oracle = int(reopen_step_ticks(m.oracle, m.ext, REOPEN_STEP_PPB))
        if reopen_converged(m.oracle, m.ext, REOPEN_DONE_PPB):
            self._go_external(m)

    def _leave_halt(self, m, ts: int) -> None:
        m.halt = m.clean = 0
        if m.pipo_ref:
            m.mode = MarketMode.PRE_IPO
            self._emit_mode(m)
        elif m.oracle == 0:
            m.mode = MarketMode.EXTERNAL
            self._emit_mode(m)
        else:
            self._go_dark(m, ts)

    # ------------------------------------------------------------------ commands

    def _oracle_code(self, cmd) -> int:
        modes = self._config.modes
        if cmd.pre_reject:
            return cmd.pre_reject
        if not 0 <= cmd.market < len(self._markets):
            return Reject.UNKNOWN_MARKET
        m = self._markets[cmd.market]
        flags = cmd.size
        if flags < 0 or flags & ~int(OracleFlag.CLOSED | OracleFlag.BREAKER):
            return Reject.BAD_FIELD
        if cmd.price < 0 or cmd.price > m.max_price or (cmd.price == 0 and not modes):
            return Reject.ORACLE_PRICE_INVALID
        if flags and not modes:
            return Reject.MODES_DISABLED
        if modes and m.mode == MarketMode.PRE_IPO:
            return Reject.ORACLE_NOT_EXTERNAL
        return 0

    def _oracle_mode(self, m, price: int, flags: int, ts: int) -> None:
        """The oracle price under the market's mode after an accepted update (docs/modes.md)."""
        closed = bool(flags & OracleFlag.CLOSED)
        has = price > 0 and not closed
        if has:
            m.ext, m.ext_ts = price, ts
            m.fresh_ts = m.fresh_ts or ts
        else:
            m.fresh_ts = 0
        if flags & OracleFlag.BREAKER:
            m.clean = 0
            if m.mode != MarketMode.HALTED:
                m.halt, m.mode = HALT_BREAKER, MarketMode.HALTED
                self._emit_mode(m)
            return
        if m.mode == MarketMode.HALTED:
            if m.halt == HALT_BREAKER:
                m.clean += 1
                if m.clean >= BREAKER_CLEAN_UPDATES:
                    self._leave_halt(m, ts)
            return
        if m.oracle == 0:
            if has:
                m.oracle = price
            return
        timed_out = closed or ts - m.ext_ts > INTERNAL_AFTER_NS
        if m.mode == MarketMode.EXTERNAL:
            if has:
                m.oracle = price
            elif timed_out:
                self._go_dark(m, ts)
        elif m.mode == MarketMode.INTERNAL:
            if has and ts - m.fresh_ts >= REOPEN_FRESH_NS:
                if reopen_snaps(m.oracle, price, REOPEN_SNAP_PPB):
                    self._go_external(m)
                else:
                    m.mode = MarketMode.REOPENING
                    self._emit_mode(m)
                    self._reopen_update(m)
        elif m.mode == MarketMode.REOPENING:
            if has:
                self._reopen_update(m)
            elif timed_out:
                self._go_dark(m, ts)

    def _market_admin(self, cmd) -> None:
        code = cmd.pre_reject
        if not code and not self._config.modes:
            code = Reject.MODES_DISABLED
        if not code and not 0 <= cmd.market < len(self._markets):
            code = Reject.UNKNOWN_MARKET
        if not code and cmd.size not in tuple(AdminAction):
            code = Reject.BAD_FIELD
        if not code:
            m = self._markets[cmd.market]
            action = AdminAction(cmd.size)
            if action == AdminAction.HALT and not (m.mode == MarketMode.HALTED and m.halt == HALT_ADMIN):
                m.halt, m.clean, m.mode = HALT_ADMIN, 0, MarketMode.HALTED
                return self._emit_mode(m)
            if action == AdminAction.RESUME and m.mode == MarketMode.HALTED:
                return self._leave_halt(m, cmd.ts)
            if action == AdminAction.LIST and m.mode == MarketMode.PRE_IPO:
                m.pipo_ref = 0
                return self._go_dark(m, cmd.ts)
            code = Reject.MODE_TRANSITION_INVALID
        self._emit_reject(code, cmd.market, -1, 0)

    # ------------------------------------------------------------------ the clock and the mark

    def _tick_mode(self, m, ts: int) -> None:
        if m.mode in (MarketMode.EXTERNAL, MarketMode.REOPENING):
            if m.oracle and ts - m.ext_ts > INTERNAL_AFTER_NS:
                self._go_dark(m, ts)
        elif m.mode == MarketMode.INTERNAL:
            if ts > m.int_ts:
                bid = self._impact_price(m, Side.BUY, m.impact_notional)
                ask = self._impact_price(m, Side.SELL, m.impact_notional)
                s = internal_step_ticks(m.oracle, bid, ask, ts - m.int_ts, INTERNAL_TAU_NS, m.band_lo, m.band_hi)
                m.oracle = _clamp(int(s), 1, m.max_price)
                m.int_ts = ts
                ref, up, down = (int(x) for x in reanchor(m.oracle, m.ref, m.disc_ppb, REANCHOR_THRESHOLD_PPB,
                                                          m.res_up, m.res_dn, MAX_RESETS))
                if ref != m.ref:
                    self._open_band(m, ref)
                    m.res_up, m.res_dn = up, down
                    self._emit_mode(m)
        elif m.mode == MarketMode.PRE_IPO and ts >= m.next_min:
            dt = ts - m.pipo_ts if m.pipo_ts else PREIPO_SAMPLE_NS
            fp, w = ema_update(m.pipo_fp, m.pipo_w, m.mark, dt, PREIPO_EMA_TAU_NS)
            m.pipo_fp, m.pipo_w, m.pipo_ts = int(fp), int(w), ts
            m.next_min = (ts // PREIPO_SAMPLE_NS + 1) * PREIPO_SAMPLE_NS
            m.oracle = int(preipo_oracle_ticks(ema_ticks(m.pipo_fp), m.pipo_ref))

    @staticmethod
    def _mode_mark(m, mark: int) -> int:
        if m.mode == MarketMode.INTERNAL:
            mark = _clamp(mark, m.band_lo, m.band_hi)
        elif m.mode == MarketMode.REOPENING and m.mark > 0:
            mark = int(reopen_step_ticks(m.mark, mark, REOPEN_STEP_PPB))
        elif m.mode == MarketMode.PRE_IPO:
            cap = int(ema_ticks(m.pipo_fp)) if m.pipo_w > 0 else 0
            mark = _clamp(int(preipo_mark_ticks(mark, cap)), m.band_lo, m.band_hi)
        return _clamp(mark, 1, m.max_price)

    # ------------------------------------------------------------------ risk under the modes

    @staticmethod
    def _dark_rate(m, rate_ppb: int) -> int:
        if m.mode not in DARK or m.fund_dark == FundingDark.NORMAL:
            return rate_ppb
        if m.fund_dark == FundingDark.SCALED:
            return abs(rate_ppb) // 2 * (1 if rate_ppb >= 0 else -1)
        return 0

    def _liquidation_allowed(self, a: int) -> bool:
        held = [m for m in self._markets if self._position(a, m.index).size != 0 and not self._position(a, m.index).iso]
        if any(m.mode == MarketMode.HALTED for m in held):
            return False
        if not any(m.mode == MarketMode.REOPENING for m in held):
            return True
        equity, mm = self._account(a).collateral, 0
        for m in held:
            p = self._position(a, m.index)
            price = m.ext if m.mode == MarketMode.REOPENING else m.mark
            value = p.size * price * m.atoms_per_tick_lot
            equity += value - p.cost
            mm += m.maintenance_margin(abs(value))
        return equity < mm

    def _iso_liquidation_allowed(self, a: int, m) -> bool:
        """An isolated position below maintenance: never while HALTED; while REOPENING only if
        also below it at the external price."""
        if m.mode == MarketMode.HALTED:
            return False
        if m.mode != MarketMode.REOPENING:
            return True
        p = self._position(a, m.index)
        value = p.size * m.ext * m.atoms_per_tick_lot
        return p.margin + value - p.cost < m.maintenance_margin(abs(value))
