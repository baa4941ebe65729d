"""Market modes and closed-hours pricing in the engine (oracle.md §5–§8, docs/modes.md).

Who sets a market's oracle price, driven only by journaled commands (``OracleUpdate``,
``Tick``, ``MarketAdmin``), so replay reproduces every transition:

* ``EXTERNAL``: the oracle service's price. No external price for more than
  ``INTERNAL_AFTER_NS``, or an update flagged ``CLOSED``, turns the market dark.
* ``INTERNAL`` (dark): on each Tick the price follows the book's impact prices
  (``engine.pricing.internal_step_ticks``) inside the discovery band ``ref·(1 ± B)``, which
  re-anchors at 90% of the way to an edge at most ``MAX_RESETS`` times per direction. The
  mark is clamped to the band, orders outside the band are refused, new exposure gets the
  dark leverage and open-interest limits (``engine.risk``).
* ``REOPENING``: external prices have been back, unbroken, for ``REOPEN_FRESH_NS``. Within
  1% the price snaps to them; otherwise each update moves the oracle (and the mark) at most
  50 bps toward them, until within 0.1%. Accounts are liquidated only if below maintenance at
  both the internal and the external price (``liquidation_allowed``).
* ``PRE_IPO``: no external source. Each minute the mark feeds an 8 h EMA; the oracle is that
  EMA capped at 4× the reference, the mark is capped at 3× it and clamped to the band around
  the reference. ``MarketAdmin(list)`` turns the market dark, so the first external prices
  reopen it.
* ``HALTED``: an admin's halt, or an update flagged ``BREAKER`` (then
  ``BREAKER_CLEAN_UPDATES`` updates without the flag end it). Prices and funding samples are
  frozen, only cancels are accepted, and accounts with a position in the market are not
  liquidated. Leaving a halt goes dark (or back to pre-IPO), so prices come back through the
  reopen.

Every change of mode or band emits a MODE event. All prices are ticks, times ns.
"""

from __future__ import annotations

from numba import njit

from engine.emit import emit
from engine.impact import impact_price_ticks
from engine.kernel_consts import (
    ADMIN_HALT,
    ADMIN_LIST,
    ADMIN_RESUME,
    E_MODE,
    MODE_EXTERNAL,
    MODE_HALTED,
    MODE_INTERNAL,
    MODE_PRE_IPO,
    MODE_REOPENING,
    OF_BREAKER,
    OF_CLOSED,
    R_MODE_TRANSITION,
)
from engine.margin import maintenance_margin_atoms
from engine.pricing import (
    INTERNAL_TAU_NS,
    MAX_RESETS,
    PREIPO_EMA_TAU_NS,
    REANCHOR_THRESHOLD_PPB,
    REOPEN_DONE_PPB,
    REOPEN_SNAP_PPB,
    REOPEN_STEP_PPB,
    band_ticks,
    clamp_ticks,
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

SECOND_NS = 1_000_000_000
INTERNAL_AFTER_NS = 30 * SECOND_NS  # no external price for longer than this: dark
REOPEN_FRESH_NS = 15 * SECOND_NS  # external prices unbroken this long before a reopen
BREAKER_CLEAN_UPDATES = 5
PREIPO_SAMPLE_NS = 60 * SECOND_NS  # the pre-IPO EMA takes the mark once a minute
HALT_ADMIN = 1
HALT_BREAKER = 2


@njit(cache=True, _nrt=False, inline="always")
def is_dark(mkt, m):
    """INTERNAL or REOPENING: the dark leverage and open-interest limits apply."""
    mode = mkt[m]["mode"]
    return mode == MODE_INTERNAL or mode == MODE_REOPENING


@njit(cache=True, _nrt=False, inline="always")
def has_band(mkt, m):
    """INTERNAL or PRE_IPO: the discovery band replaces the price band around the mark."""
    mode = mkt[m]["mode"]
    return mode == MODE_INTERNAL or mode == MODE_PRE_IPO


@njit(cache=True, _nrt=False)
def emit_mode(ev, n, i, ts, mkt, m):
    r = mkt[m]
    return emit(ev, n, E_MODE, i, ts, m, -1, r["ref"], 0, r["oracle"], r["band_lo"], r["band_hi"], 0, r["mode"])


@njit(cache=True, _nrt=False)
def open_band(mkt, m, ref):
    """The discovery band ``ref ∓ ⌊ref·B⌋`` (``engine.pricing.band_ticks``)."""
    low, high = band_ticks(ref, mkt[m]["disc_ppb"])
    mkt[m]["ref"] = ref
    mkt[m]["band_lo"] = low
    mkt[m]["band_hi"] = high


@njit(cache=True, _nrt=False)
def go_dark(ev, n, i, ts, mkt, m):
    """INTERNAL, with a fresh band around the oracle price as it stands."""
    r = mkt[m]
    open_band(mkt, m, r["oracle"])
    r["res_up"] = 0
    r["res_dn"] = 0
    r["int_ts"] = ts
    r["fresh_ts"] = 0
    r["mode"] = MODE_INTERNAL
    return emit_mode(ev, n, i, ts, mkt, m)


@njit(cache=True, _nrt=False)
def go_external(ev, n, i, ts, mkt, m):
    r = mkt[m]
    r["oracle"] = r["ext"]
    r["res_up"] = 0
    r["res_dn"] = 0
    r["mode"] = MODE_EXTERNAL
    return emit_mode(ev, n, i, ts, mkt, m)


@njit(cache=True, _nrt=False)
def reopen_update(ev, n, i, ts, mkt, m):
    """One converging step of the oracle toward the external price; EXTERNAL once within 0.1%."""
    r = mkt[m]
    s = reopen_step_ticks(r["oracle"], r["ext"], REOPEN_STEP_PPB)
    r["oracle"] = s
    if reopen_converged(s, r["ext"], REOPEN_DONE_PPB):
        n = go_external(ev, n, i, ts, mkt, m)
    return n


@njit(cache=True, _nrt=False)
def oracle_update(ev, n, i, ts, mkt, m, price, flags):
    """An accepted OracleUpdate with modes on (``price`` 0: none). Not for PRE_IPO markets."""
    r = mkt[m]
    has = price > 0 and (flags & OF_CLOSED) == 0  # a closed session's price is a repeat
    if has:
        r["ext"] = price
        r["ext_ts"] = ts
        if r["fresh_ts"] == 0:
            r["fresh_ts"] = ts
    else:
        r["fresh_ts"] = 0
    mode = r["mode"]
    if (flags & OF_BREAKER) != 0:
        r["clean"] = 0
        if mode != MODE_HALTED:
            r["halt"] = HALT_BREAKER
            r["mode"] = MODE_HALTED
            n = emit_mode(ev, n, i, ts, mkt, m)
        return n
    if mode == MODE_HALTED:
        if r["halt"] == HALT_BREAKER:
            r["clean"] += 1
            if r["clean"] >= BREAKER_CLEAN_UPDATES:
                n = leave_halt(ev, n, i, ts, mkt, m)
        return n
    if r["oracle"] == 0:  # the market's first price
        if has:
            r["oracle"] = price
        return n
    if mode == MODE_EXTERNAL:
        if has:
            r["oracle"] = price
        elif (flags & OF_CLOSED) != 0 or ts - r["ext_ts"] > INTERNAL_AFTER_NS:
            n = go_dark(ev, n, i, ts, mkt, m)
    elif mode == MODE_INTERNAL:
        if has and ts - r["fresh_ts"] >= REOPEN_FRESH_NS:
            if reopen_snaps(r["oracle"], price, REOPEN_SNAP_PPB):
                n = go_external(ev, n, i, ts, mkt, m)
            else:
                r["mode"] = MODE_REOPENING
                n = emit_mode(ev, n, i, ts, mkt, m)
                n = reopen_update(ev, n, i, ts, mkt, m)
    elif mode == MODE_REOPENING:
        if has:
            n = reopen_update(ev, n, i, ts, mkt, m)
        elif (flags & OF_CLOSED) != 0 or ts - r["ext_ts"] > INTERNAL_AFTER_NS:
            n = go_dark(ev, n, i, ts, mkt, m)
    return n


@njit(cache=True, _nrt=False)
def leave_halt(ev, n, i, ts, mkt, m):
    """End a halt: back to PRE_IPO, to EXTERNAL when there never was a price, else dark
    (so prices come back through the reopen)."""
    r = mkt[m]
    r["halt"] = 0
    r["clean"] = 0
    if r["pipo_ref"] != 0:
        r["mode"] = MODE_PRE_IPO
        return emit_mode(ev, n, i, ts, mkt, m)
    if r["oracle"] == 0:
        r["mode"] = MODE_EXTERNAL
        return emit_mode(ev, n, i, ts, mkt, m)
    return go_dark(ev, n, i, ts, mkt, m)


@njit(cache=True, _nrt=False)
def tick_mode(ev, n, i, ts, mkt, lvl_qty, bits, summ, best, m):
    """The clock's mode work for one market, before its mark: time-outs to dark, the internal
    step and re-anchoring, the pre-IPO minutely sample."""
    r = mkt[m]
    mode = r["mode"]
    if mode == MODE_EXTERNAL or mode == MODE_REOPENING:
        if r["oracle"] != 0 and ts - r["ext_ts"] > INTERNAL_AFTER_NS:
            n = go_dark(ev, n, i, ts, mkt, m)
    elif mode == MODE_INTERNAL:
        dt = ts - r["int_ts"]
        if dt > 0:
            ntl = r["imp_ntl"]
            bid = impact_price_ticks(mkt, lvl_qty, bits, summ, best, m, 0, ntl)
            ask = impact_price_ticks(mkt, lvl_qty, bits, summ, best, m, 1, ntl)
            s = internal_step_ticks(r["oracle"], bid, ask, dt, INTERNAL_TAU_NS, r["band_lo"], r["band_hi"])
            r["oracle"] = clamp_ticks(s, 1, r["max_price"])
            r["int_ts"] = ts
            ref, up, down = reanchor(r["oracle"], r["ref"], r["disc_ppb"], REANCHOR_THRESHOLD_PPB,
                                     r["res_up"], r["res_dn"], MAX_RESETS)
            if ref != r["ref"]:
                open_band(mkt, m, ref)
                r["res_up"] = up
                r["res_dn"] = down
                n = emit_mode(ev, n, i, ts, mkt, m)
    elif mode == MODE_PRE_IPO:
        if ts >= r["next_min"]:
            dt = ts - r["pipo_ts"] if r["pipo_ts"] != 0 else PREIPO_SAMPLE_NS
            fp, w = ema_update(r["pipo_fp"], r["pipo_w"], r["mark"], dt, PREIPO_EMA_TAU_NS)
            r["pipo_fp"] = fp
            r["pipo_w"] = w
            r["pipo_ts"] = ts
            r["next_min"] = (ts // PREIPO_SAMPLE_NS + 1) * PREIPO_SAMPLE_NS
            r["oracle"] = preipo_oracle_ticks(ema_ticks(fp), r["pipo_ref"])
    return n


@njit(cache=True, _nrt=False)
def mode_mark(mkt, m, mark):
    """The mode's limits on a freshly computed mark: the band while INTERNAL, at most 50 bps
    from the current mark while REOPENING, 3× the 8 h EMA and the band while PRE_IPO;
    always within ``[1, max_price]``."""
    r = mkt[m]
    mode = r["mode"]
    if mode == MODE_INTERNAL:
        mark = clamp_ticks(mark, r["band_lo"], r["band_hi"])
    elif mode == MODE_REOPENING and r["mark"] > 0:
        mark = reopen_step_ticks(r["mark"], mark, REOPEN_STEP_PPB)
    elif mode == MODE_PRE_IPO:
        cap = ema_ticks(r["pipo_fp"]) if r["pipo_w"] > 0 else 0
        mark = clamp_ticks(preipo_mark_ticks(mark, cap), r["band_lo"], r["band_hi"])
    return clamp_ticks(mark, 1, r["max_price"])


@njit(cache=True, _nrt=False)
def liquidation_allowed(acc, pos, mkt, a):
    """For an account below maintenance at the mark (cross): False while it holds a cross
    position in a HALTED market, or when it is not also below maintenance with every REOPENING
    market's cross position valued at the external price."""
    alt = False
    for m in range(mkt.shape[0]):
        if pos[a, m]["size"] != 0 and pos[a, m]["iso"] == 0:
            mode = mkt[m]["mode"]
            if mode == MODE_HALTED:
                return False
            if mode == MODE_REOPENING:
                alt = True
    if not alt:
        return True
    eq = acc[a]["collateral"]
    mm = 0
    for m in range(mkt.shape[0]):
        size = pos[a, m]["size"]
        if size == 0 or pos[a, m]["iso"] != 0:
            continue
        price = mkt[m]["ext"] if mkt[m]["mode"] == MODE_REOPENING else mkt[m]["mark"]
        value = size * price * mkt[m]["atl"]
        eq += value - pos[a, m]["cost"]
        mm += maintenance_margin_atoms(value if value >= 0 else -value, mkt[m]["tier_lo"], mkt[m]["tier_lev"])
    return eq < mm


@njit(cache=True, _nrt=False)
def iso_liquidation_allowed(pos, mkt, a, m):
    """The same for an isolated position below maintenance at the mark: never in a HALTED
    market; while REOPENING only if also below maintenance at the external price."""
    mode = mkt[m]["mode"]
    if mode == MODE_HALTED:
        return False
    if mode != MODE_REOPENING:
        return True
    value = pos[a, m]["size"] * mkt[m]["ext"] * mkt[m]["atl"]
    eq = pos[a, m]["margin"] + value - pos[a, m]["cost"]
    return eq < maintenance_margin_atoms(value if value >= 0 else -value, mkt[m]["tier_lo"], mkt[m]["tier_lev"])


@njit(cache=True, _nrt=False)
def admin(ev, n, i, ts, mkt, m, action):
    """A MarketAdmin action (a valid one) on a valid market; returns (n, reject code or 0)."""
    r = mkt[m]
    if action == ADMIN_HALT:
        if r["mode"] == MODE_HALTED and r["halt"] == HALT_ADMIN:
            return n, R_MODE_TRANSITION
        r["halt"] = HALT_ADMIN
        r["clean"] = 0
        r["mode"] = MODE_HALTED
        return emit_mode(ev, n, i, ts, mkt, m), 0
    if action == ADMIN_RESUME:
        if r["mode"] != MODE_HALTED:
            return n, R_MODE_TRANSITION
        return leave_halt(ev, n, i, ts, mkt, m), 0
    if action == ADMIN_LIST:
        if r["mode"] != MODE_PRE_IPO:
            return n, R_MODE_TRANSITION
        r["pipo_ref"] = 0
        return go_dark(ev, n, i, ts, mkt, m), 0
    return n, R_MODE_TRANSITION
