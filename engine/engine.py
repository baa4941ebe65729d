"""``Engine``: owns the arrays, runs ``apply(batch) -> events``, and proves its state.

The engine is a pure state machine: time comes in the commands, nothing here reads a
clock, a socket, a file or a random source. One ``apply`` call runs one compiled loop
over the whole batch (``engine.matching.apply_kernel``); the only Python work per call
is the conversion of Structs (if given), and copying the events out.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
from numba import njit

from engine.book import (
    CERT_EPOCHS,
    C_BATCH_LEFT,
    C_DEPOSITS,
    C_EP_MOVE,
    C_EPOCH,
    C_FEES,
    C_FREE_TOP,
    C_LIVE,
    C_MODES,
    C_ORDER_SEQ,
    C_RISK,
    C_TRIG_SEQ,
    C_WITHDRAWALS,
    MARKET_DTYPE,
    N_COUNTERS,
    ORDER_DTYPE,
)
from engine.codes import MarketMode, OrderFlag
from engine.commands import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    OpenOrder,
    to_records,
    unpack_cloid,
)
from engine.impact import MAX_IMPACT_NOTIONAL_ATOMS, impact_price_ticks
from engine.kernel import apply_kernel
from engine.liq_price import position_liquidation_price
from engine.risk import ACCOUNT_DTYPE, POSITION_DTYPE, equity_atoms, iso_equity_atoms, total_im, total_mm
from engine.risk_state import (
    ModeView,
    PositionView,
    TriggerView,
    dump_risk,
    initial_mode,
    set_risk_fields,
)
from engine.spec import EngineConfig, MarketSpec, validate_markets
from engine.triggers import TRIGGER_DTYPE, dump_triggers

ORDER_HASH_FIELDS = 10  # oid, account, remaining, tif + 256·flags, stp, expires_at, cloid0..3
FLAGS_HASH_SHIFT = 8  # an order's flags share the tif word: 0 for an ordinary order


@njit(cache=True)
def dump_state(orders, mkt, lvl_qty, lvl_head, best, free, ctr):
    """The canonical int64 sequence that ``state_hash`` digests (docs/matching.md)."""
    nm = mkt.shape[0]
    size = 3 + nm * 4 + ctr[C_LIVE] * (3 + ORDER_HASH_FIELDS) + ctr[C_FREE_TOP]
    out = np.empty(size, dtype=np.int64)
    k = 0
    out[k] = nm
    out[k + 1] = ctr[C_ORDER_SEQ]
    k += 2
    for m in range(nm):
        out[k] = mkt[m]["mark"]
        out[k + 1] = mkt[m]["base"]
        k += 2
        levels = mkt[m]["levels"]
        for side in range(2):
            off = mkt[m]["lvl_off"] + side * levels
            if best[m, side] >= 0:
                step = -1 if side == 0 else 1
                idx = best[m, side]
                while 0 <= idx < levels:
                    s = lvl_head[off + idx]
                    if s != -1:
                        cnt = 0
                        t = s
                        while t != -1:
                            cnt += 1
                            t = orders[t]["next"]
                        out[k] = mkt[m]["base"] + idx
                        out[k + 1] = lvl_qty[off + idx]
                        out[k + 2] = cnt
                        k += 3
                        while s != -1:
                            o = orders[s]
                            out[k] = o["oid"]
                            out[k + 1] = o["account"]
                            out[k + 2] = o["remaining"]
                            out[k + 3] = np.int64(o["tif"]) | (np.int64(o["flags"]) << FLAGS_HASH_SHIFT)
                            out[k + 4] = o["stp"]
                            out[k + 5] = o["expires_at"]
                            out[k + 6] = np.int64(o["cloid0"])
                            out[k + 7] = np.int64(o["cloid1"])
                            out[k + 8] = np.int64(o["cloid2"])
                            out[k + 9] = np.int64(o["cloid3"])
                            k += ORDER_HASH_FIELDS
                            s = o["next"]
                    idx += step
            out[k] = -1
            k += 1
    top = ctr[C_FREE_TOP]
    out[k] = top
    k += 1
    for j in range(top):
        out[k] = free[j]
        k += 1
    return out[:k]


_EVENT_BYTES = np.dtype((np.void, EVENT_DTYPE.itemsize))


def copy_events(buffer: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` events as a new array (copied as raw bytes: ~20× faster than a
    field-by-field copy of the structured dtype)."""
    return buffer[:n].view(_EVENT_BYTES).copy().view(EVENT_DTYPE)


def digest(values: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(values, dtype="<i8").tobytes(), digest_size=32).hexdigest()


class Engine:
    """The numba matching engine. See docs/matching.md for the exact rules."""

    def __init__(self, specs: Sequence[MarketSpec], config: EngineConfig = EngineConfig()):
        specs = list(specs)
        validate_markets(specs, config)
        self.specs = specs
        self.config = config
        nm = len(specs)
        self.mkt = np.zeros(nm, dtype=MARKET_DTYPE)
        lvl_off = bit_off = sum_off = 0
        for m, spec in enumerate(specs):
            levels = spec.ladder_levels
            nwords = levels // 64
            nsum = max(1, nwords // 64)
            rec = self.mkt[m]
            rec["levels"] = levels
            rec["lvl_off"] = lvl_off
            rec["bit_off"] = bit_off
            rec["nwords"] = nwords
            rec["sum_off"] = sum_off
            rec["nsum"] = nsum
            rec["atl"] = spec.atoms_per_tick_lot
            rec["min_notional"] = spec.min_notional_atoms
            rec["max_order_lots"] = spec.max_order_lots
            rec["band_ppm"] = spec.band_ppm
            rec["slip_ppm"] = spec.slippage_ppm
            set_risk_fields(rec, spec)
            for name, value in initial_mode(spec, config).items():
                rec[name] = value
            lvl_off += 2 * levels
            bit_off += 2 * nwords
            sum_off += 2 * nsum
        self.lvl_qty = np.zeros(lvl_off, dtype=np.int64)
        self.lvl_head = np.full(lvl_off, -1, dtype=np.int32)
        self.lvl_tail = np.full(lvl_off, -1, dtype=np.int32)
        self.bits = np.zeros(bit_off, dtype=np.uint64)
        self.summ = np.zeros(sum_off, dtype=np.uint64)
        self.best = np.full((nm, 2), -1, dtype=np.int64)
        self.count = np.zeros((nm, 2), dtype=np.int64)
        cap = config.max_orders
        self.orders = np.zeros(cap, dtype=ORDER_DTYPE)
        self.orders["heap_pos"] = -1
        self.acct_head = np.full(config.max_accounts, -1, dtype=np.int32)
        self.acct_tail = np.full(config.max_accounts, -1, dtype=np.int32)
        self.acct_count = np.zeros(config.max_accounts, dtype=np.int64)
        self.free = np.arange(cap - 1, -1, -1, dtype=np.int32)
        self.heap = np.zeros(cap, dtype=np.int32)
        self.ctr = np.zeros(N_COUNTERS, dtype=np.int64)
        self.ctr[C_FREE_TOP] = cap
        self.ctr[C_RISK] = int(config.risk)
        self.ctr[C_MODES] = int(config.modes)
        # the last account record is the insurance fund (no command can address it)
        self.acc = np.zeros(config.max_accounts + 1 if config.risk else 1, dtype=ACCOUNT_DTYPE)
        self.pos = np.zeros((len(self.acc), nm), dtype=POSITION_DTYPE)
        for m, spec in enumerate(specs):
            self.pos[:, m]["lev"] = spec.tiers[0][1]
        self.trig = np.zeros(config.max_triggers, dtype=TRIGGER_DTYPE)
        self._scratch = np.zeros(1, dtype=COMMAND_DTYPE)  # the order a firing trigger places
        self._ev = np.zeros(1 << 16, dtype=EVENT_DTYPE)

    def _state(self) -> tuple:
        return (self.orders, self.mkt, self.lvl_qty, self.lvl_head, self.lvl_tail, self.bits, self.summ,
                self.best, self.count, self.acct_head, self.acct_tail, self.acct_count, self.free, self.heap,
                self.ctr, self.acc, self.pos, self.trig, self._scratch)

    # ------------------------------------------------------------------------ commands

    def records(self, batch) -> np.ndarray:
        if isinstance(batch, np.ndarray):
            if batch.dtype != COMMAND_DTYPE:
                raise TypeError("command records must have engine.commands.COMMAND_DTYPE")
            # numba types a read-only array differently and would compile every kernel again
            return batch if batch.flags.writeable and batch.flags.c_contiguous else np.array(batch)
        return to_records(list(batch), self.specs)

    def apply(self, batch) -> np.ndarray:
        """Apply a batch (record array or list of command Structs); return its events."""
        cmds = self.records(batch)
        self.ctr[C_BATCH_LEFT] = 0
        state = self._state()
        chunks = []
        i = 0
        while True:
            i, n, need = apply_kernel(cmds, i, self._ev, *state)
            chunks.append(copy_events(self._ev, n))
            if i >= len(cmds):
                break
            if need > len(self._ev):
                self._ev = np.zeros(max(need, 2 * len(self._ev)), dtype=EVENT_DTYPE)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def apply_count(self, cmds: np.ndarray) -> int:
        """Apply records and return only the number of events (benchmarks: no copy-out)."""
        self.ctr[C_BATCH_LEFT] = 0
        state = self._state()
        total = i = 0
        while True:
            i, n, need = apply_kernel(cmds, i, self._ev, *state)
            total += n
            if i >= len(cmds):
                return total
            if need > len(self._ev):
                self._ev = np.zeros(max(need, 2 * len(self._ev)), dtype=EVENT_DTYPE)

    # ------------------------------------------------------------------------ reading

    def state_hash(self) -> str:
        book = dump_state(self.orders, self.mkt, self.lvl_qty, self.lvl_head, self.best, self.free, self.ctr)
        parts = [book, dump_risk(self.mkt, self.ctr, self.acc, self.pos)]
        if self.ctr[C_TRIG_SEQ] != 0:  # an engine that never had a trigger hashes as before
            parts.append(dump_triggers(self.trig, self.ctr))
        return digest(np.concatenate(parts))

    # ------------------------------------------------------------------------ accounts

    def collateral(self, account: int) -> int:
        return int(self.acc[account]["collateral"])

    def insurance_fund(self) -> int:
        return int(self.acc[-1]["collateral"])

    def deadline(self, account: int) -> int:
        """The account's dead-man deadline (ns), 0 if none (always 0 with risk off)."""
        return int(self.acc[account]["dms_at"]) if self.config.risk else 0

    def fees(self) -> int:
        return int(self.ctr[C_FEES])

    def totals(self) -> tuple[int, int]:
        """(deposits, withdrawals) ever, in atoms."""
        return int(self.ctr[C_DEPOSITS]), int(self.ctr[C_WITHDRAWALS])

    def position(self, account: int, market: int) -> PositionView:
        p = self.pos[account, market]
        return PositionView(int(p["size"]), int(p["cost"]), int(p["lev"]), int(p["realized"]), int(p["funding"]),
                            bool(p["iso"]), int(p["margin"]))

    def equity(self, account: int) -> int:
        """Cross equity: collateral + the cross positions' uPnL (isolated ones excluded)."""
        return int(equity_atoms(self.acc, self.pos, self.mkt, account))

    def isolated_equity(self, account: int, market: int) -> int:
        """An isolated position's equity: its margin bucket + its uPnL at the mark (0 for cross)."""
        if not self.pos[account, market]["iso"]:
            return 0
        return int(iso_equity_atoms(self.pos, self.mkt, account, market))

    def initial_margin(self, account: int) -> int:
        return int(total_im(self.pos, self.mkt, account))

    def maintenance_margin(self, account: int) -> int:
        return int(total_mm(self.pos, self.mkt, account))

    def triggers(self, account: int) -> list[TriggerView]:
        """The account's live triggers, in ascending id."""
        live = [t for t in self.trig if t["live"] and t["account"] == account]
        return [TriggerView(int(t["tid"]), int(t["market"]), int(t["side"]), int(t["trigger"]), int(t["price"]),
                            int(t["size"]), int(t["tif"]), int(t["flags"])) for t in sorted(live, key=lambda t: t["tid"])]

    def liquidation_price(self, account: int, market: int) -> int:
        """The position's published liquidation price in ticks, 0 for none (engine.liq_price)."""
        return int(position_liquidation_price(self.acc, self.pos, self.mkt, account, market))

    def oracle(self, market: int) -> int:
        return int(self.mkt[market]["oracle"])

    def mode(self, market: int) -> ModeView:
        r = self.mkt[market]
        return ModeView(MarketMode(int(r["mode"])), int(r["oracle"]), int(r["mark"]), int(r["ext"]), int(r["ref"]),
                        int(r["band_lo"]), int(r["band_hi"]))

    def predicted_rate_ppb(self, market: int) -> int:
        return int(self.mkt[market]["rate_ppb"])

    def impact_price(self, market: int, side: int, impact_notional_atoms: int) -> int:
        """Average price (ticks) to fill ``impact_notional_atoms`` against ``side`` (0 bids,
        1 asks); 0 without that depth. See ``engine.impact``."""
        if not 1 <= impact_notional_atoms <= MAX_IMPACT_NOTIONAL_ATOMS:
            raise ValueError(f"impact notional must lie in [1, {MAX_IMPACT_NOTIONAL_ATOMS}] atoms")
        return int(impact_price_ticks(self.mkt, self.lvl_qty, self.bits, self.summ, self.best, market, side,
                                      impact_notional_atoms))

    def mark(self, market: int) -> int:
        return int(self.mkt[market]["mark"])

    def _level_indices(self, market: int, side: int) -> list[int]:
        rec = self.mkt[market]
        off = int(rec["lvl_off"]) + side * int(rec["levels"])
        occupied = np.flatnonzero(self.lvl_head[off : off + int(rec["levels"])] != -1)
        return [int(i) for i in (occupied[::-1] if side == 0 else occupied)]

    def _level_orders(self, market: int, side: int, idx: int) -> list[int]:
        rec = self.mkt[market]
        s = int(self.lvl_head[int(rec["lvl_off"]) + side * int(rec["levels"]) + idx])
        out = []
        while s != -1:
            out.append(s)
            s = int(self.orders[s]["next"])
        return out

    def depth(self, market: int, side: int) -> list[tuple[int, int]]:
        rec = self.mkt[market]
        off = int(rec["lvl_off"]) + side * int(rec["levels"])
        return [(int(rec["base"]) + i, int(self.lvl_qty[off + i])) for i in self._level_indices(market, side)]

    def _open_order(self, slot: int) -> OpenOrder:
        o = self.orders[slot]
        return OpenOrder(
            int(o["oid"]), int(o["market"]), int(o["account"]), int(o["side"]), int(o["price"]),
            int(o["remaining"]), int(o["tif"]), int(o["stp"]), int(o["expires_at"]),
            unpack_cloid([o["cloid0"], o["cloid1"], o["cloid2"], o["cloid3"]]),
            bool(int(o["flags"]) & OrderFlag.REDUCE_ONLY),
        )

    def open_orders(self, account: int) -> list[OpenOrder]:
        out = []
        s = int(self.acct_head[account])
        while s != -1:
            out.append(self._open_order(s))
            s = int(self.orders[s]["anext"])
        return out

    def check_invariants(self) -> None:
        from engine.invariants import check_engine

        check_engine(self)

    def forget_certificates(self) -> None:
        """Void every margin certificate and epoch (engine.certificates), so the next scan
        evaluates every account. For code that writes prices or balances into the arrays
        directly (white-box tests, benchmarks); commands keep certificates sound themselves.
        Changes no event and no ``state_hash``."""
        self.acc["c_ep"] = 0
        self.acc["c_slack"] = 0
        self.acc["c_gross"] = 0
        self.mkt["ep_mark"] = 0
        self.ctr[C_EPOCH] = 0
        self.ctr[C_EP_MOVE:C_EP_MOVE + CERT_EPOCHS] = 0

    # ------------------------------------------------------------------------ snapshots

    def export_state(self) -> dict[str, np.ndarray]:
        """The complete state: a copy of every public array attribute (books, order pool,
        accounts, free stack, heap, counters). Private attributes (``_ev``) are scratch
        buffers and are left out; ``Engine.restore`` is the inverse."""
        out = {}
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray) and not name.startswith("_"):
                copy = np.empty(value.shape, dtype=value.dtype)
                copy.reshape(-1).view(np.uint8)[:] = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
                out[name] = copy
        return out

    @classmethod
    def restore(cls, specs: Sequence[MarketSpec], config: EngineConfig, arrays: dict[str, np.ndarray]) -> Engine:
        """An engine in the state ``export_state`` returned. ``arrays`` must have exactly the
        names, shapes and dtypes of an engine built with ``specs`` and ``config``; anything
        else raises ValueError. The arrays are copied in (byte for byte)."""
        engine = cls(specs, config)
        mine = {n: v for n, v in vars(engine).items() if isinstance(v, np.ndarray) and not n.startswith("_")}
        missing, extra = sorted(set(mine) - set(arrays)), sorted(set(arrays) - set(mine))
        if missing or extra:
            raise ValueError(f"state arrays do not match this engine: missing {missing}, unexpected {extra}")
        for name, dst in mine.items():
            src = arrays[name]
            if not isinstance(src, np.ndarray) or src.shape != dst.shape or src.dtype != dst.dtype:
                got = (src.shape, src.dtype) if isinstance(src, np.ndarray) else type(src).__name__
                raise ValueError(f"state array {name!r}: expected shape {dst.shape} dtype {dst.dtype}, got {got}")
        for name, dst in mine.items():
            dst.reshape(-1).view(np.uint8)[:] = np.ascontiguousarray(arrays[name]).reshape(-1).view(np.uint8)
        return engine
