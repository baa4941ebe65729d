"""Commands in, events out: the engine's only boundary.

Two forms of the same thing:

* frozen, tagged msgspec Structs (``Place``, ``Cancel``, …) in decimals, for people and
  the gateway;
* fixed numpy record dtypes (``COMMAND_DTYPE``, ``EVENT_DTYPE``) in integer units, which
  the kernels read and write. ``to_records`` converts a list of Structs once per batch;
  ``events_to_structs`` turns an event array back into Structs.

Validation that needs decimals (off-tick, off-lot, a bad client order id, a value beyond
int64) happens during conversion and is carried in the record's ``pre_reject`` field, so
the engine still reports it in order as a ``Rejected`` event and both engines agree.

Record conventions: ``price``/``size`` 0 in an amend means "unchanged"; ``oid`` 0 means
"no order id" (then the client order id is used); ``expires_at`` 0 means no expiry (in a
schedule-cancel record: the deadline, 0 = none); ``flags`` holds a place's ``OrderFlag``
bits; a client order id is up to 32 bytes packed little-endian into ``cloid0..3`` (all
zero = none).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, Sequence, Union

import msgspec
import numpy as np

from engine import units
from engine.codes import (
    AdminAction,
    CancelReason,
    CommandKind,
    EventKind,
    LiquidationStep,
    MarginMode,
    MarketMode,
    OracleFlag,
    OrderFlag,
    Reject,
    Side,
    Stp,
    Tif,
    TriggerStep,
)
from engine.spec import MarketSpec

COMMAND_DTYPE = np.dtype(
    [
        ("kind", np.uint8),
        ("side", np.uint8),
        ("tif", np.uint8),
        ("stp", np.uint8),
        ("pre_reject", np.int32),
        ("market", np.int32),
        ("account", np.int32),
        # OrderFlag bits of a place. A whole word keeps the record free of padding bytes, which
        # numpy's structured copies (np.concatenate, say) leave uninitialised, and the journal
        # stores the raw bytes of records.
        ("flags", np.int64),
        ("price", np.int64),
        ("size", np.int64),
        ("oid", np.int64),
        ("ts", np.int64),
        ("expires_at", np.int64),
        ("cloid0", np.uint64),
        ("cloid1", np.uint64),
        ("cloid2", np.uint64),
        ("cloid3", np.uint64),
    ],
    align=True,
)

EVENT_DTYPE = np.dtype(
    [
        ("kind", np.uint8),
        ("side", np.uint8),
        ("reason", np.uint8),
        ("code", np.int32),
        ("cmd", np.int32),
        ("market", np.int32),
        ("account", np.int32),
        ("maker_account", np.int32),
        ("oid", np.int64),
        ("maker_oid", np.int64),
        ("price", np.int64),
        ("size", np.int64),
        ("remaining", np.int64),
        ("ts", np.int64),
    ],
    align=True,
)

INT32_MAX = (1 << 31) - 1
CLOID_MAX_BYTES = 32

SideName = Literal["buy", "sell"]
TifName = Literal["gtc", "ioc", "fok", "alo"]
StpName = Literal["expire_maker", "expire_taker", "expire_both"]
Number = Union[Decimal, int, str]

_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_TIFS = {"gtc": Tif.GTC, "ioc": Tif.IOC, "fok": Tif.FOK, "alo": Tif.ALO}
_STPS = {"expire_maker": Stp.EXPIRE_MAKER, "expire_taker": Stp.EXPIRE_TAKER, "expire_both": Stp.EXPIRE_BOTH}


class Place(msgspec.Struct, tag="place", frozen=True, forbid_unknown_fields=True):
    """A new order. ``order_type="market"`` is an IOC at the protection price; give no price.
    ``reduce_only``: it may only reduce the account's position (risk engines; docs/risk.md)."""

    market: int
    account: int
    side: SideName
    size: Decimal
    price: Decimal | None = None
    order_type: Literal["limit", "market"] = "limit"
    tif: TifName = "gtc"
    stp: StpName = "expire_maker"
    cloid: str | None = None
    expires_at_ns: int = 0
    ts_ns: int = 0
    reduce_only: bool = False


class Cancel(msgspec.Struct, tag="cancel", frozen=True, forbid_unknown_fields=True):
    """Cancel one open order by ``oid`` or, if no oid is given, by ``cloid``."""

    market: int
    account: int
    oid: int = 0
    cloid: str | None = None
    ts_ns: int = 0


class CancelAll(msgspec.Struct, tag="cancel_all", frozen=True, forbid_unknown_fields=True):
    """Cancel every open order of the account, in one market or (``market=None``) all."""

    account: int
    market: int | None = None
    ts_ns: int = 0


class Amend(msgspec.Struct, tag="amend", frozen=True, forbid_unknown_fields=True):
    """Change an open order's price and/or remaining size (None = unchanged).

    A smaller size at the same price keeps queue priority; any other change loses it and
    the order re-enters as if new (it may trade; a post-only order that would cross is
    rejected and left as it was)."""

    market: int
    account: int
    oid: int = 0
    cloid: str | None = None
    price: Decimal | None = None
    size: Decimal | None = None
    ts_ns: int = 0


class SetMark(msgspec.Struct, tag="set_mark", frozen=True, forbid_unknown_fields=True):
    """The market's mark price (until the risk engine computes it): sets the price band
    and the market-order protection price."""

    market: int
    price: Decimal
    ts_ns: int = 0


class Tick(msgspec.Struct, tag="tick", frozen=True, forbid_unknown_fields=True):
    """The clock: expires good-till-time orders whose expiry is at or before ``ts_ns``."""

    ts_ns: int


class Deposit(msgspec.Struct, tag="deposit", frozen=True, forbid_unknown_fields=True):
    """Credit USD collateral to an account (risk engines only)."""

    account: int
    amount: Decimal
    ts_ns: int = 0


class Withdraw(msgspec.Struct, tag="withdraw", frozen=True, forbid_unknown_fields=True):
    """Take USD collateral out; refused if equity would fall below max(Σ IM, 10% of notional)."""

    account: int
    amount: Decimal
    ts_ns: int = 0


class SetLeverage(msgspec.Struct, tag="set_leverage", frozen=True, forbid_unknown_fields=True):
    """The account's leverage in one market (1 to the tier's maximum)."""

    account: int
    market: int
    leverage: int
    ts_ns: int = 0


class OracleUpdate(msgspec.Struct, tag="oracle", frozen=True, forbid_unknown_fields=True):
    """The market's external price, or ``None`` when the oracle has none (closed, no quorum);
    the engine derives its oracle price, mark and mode from it (mechanics.md §3,
    docs/modes.md). ``flags``: ``OracleFlag`` bits (``CLOSED``, ``BREAKER``). A ``None``
    price needs ``EngineConfig.modes``."""

    market: int
    price: Decimal | None
    ts_ns: int = 0
    flags: int = 0


class MarketAdmin(msgspec.Struct, tag="market_admin", frozen=True, forbid_unknown_fields=True):
    """An operator's action on a market (docs/modes.md): ``halt`` (cancels only, prices
    frozen), ``resume``, ``list`` (a pre-IPO market starts taking external prices)."""

    market: int
    action: Literal["halt", "resume", "list"]
    ts_ns: int = 0


class PlaceTrigger(msgspec.Struct, tag="place_trigger", frozen=True, forbid_unknown_fields=True):
    """A stop or take-profit order that waits for ``trigger_price`` (docs/triggers.md): a stop
    buys once the reference price is at or above it (sells at or below), a take-profit buys at
    or below (sells at or above). The reference is the mark, or ``trigger_on="last"`` the last
    trade. When it fires, a market order (or a GTC limit at ``price``) enters as a new order.
    ``size=None`` is a position TP/SL: the whole position at trigger time, cancelled when the
    position closes."""

    market: int
    account: int
    side: SideName
    trigger_price: Decimal
    kind: Literal["stop", "take_profit"] = "stop"
    order_type: Literal["market", "limit"] = "market"
    price: Decimal | None = None
    size: Decimal | None = None
    trigger_on: Literal["mark", "last"] = "mark"
    ts_ns: int = 0


class CancelTrigger(msgspec.Struct, tag="cancel_trigger", frozen=True, forbid_unknown_fields=True):
    market: int
    account: int
    tid: int
    ts_ns: int = 0


class ScheduleCancel(msgspec.Struct, tag="schedule_cancel", frozen=True, forbid_unknown_fields=True):
    """The dead-man switch (risk engines): at the first Tick at or after ``at_ns`` every open
    order of the account is cancelled, unless a later ScheduleCancel moves the deadline;
    ``at_ns=0`` clears it."""

    account: int
    at_ns: int
    ts_ns: int = 0


class SetMarginMode(msgspec.Struct, tag="set_margin_mode", frozen=True, forbid_unknown_fields=True):
    """The account's margin mode in one market, ``"cross"`` or ``"isolated"`` (risk engines);
    only while it has no position and no open orders there (docs/risk.md "Isolated margin")."""

    account: int
    market: int
    mode: Literal["cross", "isolated"]
    ts_ns: int = 0


class AdjustMargin(msgspec.Struct, tag="adjust_margin", frozen=True, forbid_unknown_fields=True):
    """Move USD between the cross collateral and an open isolated position's margin:
    ``amount`` > 0 adds to the position, < 0 takes back to cross."""

    account: int
    market: int
    amount: Decimal
    ts_ns: int = 0


Action = Union[Place, Cancel, Amend]


class Batch(msgspec.Struct, tag="batch", frozen=True, forbid_unknown_fields=True):
    """Up to 50 place/cancel/amend actions; each gets its own status, in order."""

    actions: list[Action]
    ts_ns: int = 0


Command = Union[Place, Cancel, CancelAll, Amend, SetMark, Tick, Batch, Deposit, Withdraw, SetLeverage, OracleUpdate,
                MarketAdmin, PlaceTrigger, CancelTrigger, ScheduleCancel, SetMarginMode, AdjustMargin]


# ---------------------------------------------------------------------------- events


class Accepted(msgspec.Struct, tag="accepted", frozen=True):
    cmd: int
    market: int
    account: int
    oid: int
    side: int
    price_ticks: int
    size_lots: int


class Rejected(msgspec.Struct, tag="rejected", frozen=True):
    cmd: int
    market: int
    account: int
    oid: int
    code: Reject


class Fill(msgspec.Struct, tag="fill", frozen=True):
    cmd: int
    market: int
    taker_account: int
    taker_oid: int
    maker_account: int
    maker_oid: int
    taker_side: int
    price_ticks: int
    size_lots: int
    maker_remaining_lots: int
    ts_ns: int


class Cancelled(msgspec.Struct, tag="cancelled", frozen=True):
    cmd: int
    market: int
    account: int
    oid: int
    side: int
    price_ticks: int
    size_lots: int
    reason: CancelReason


class Expired(msgspec.Struct, tag="expired", frozen=True):
    cmd: int
    market: int
    account: int
    oid: int
    side: int
    price_ticks: int
    size_lots: int


class Amended(msgspec.Struct, tag="amended", frozen=True):
    cmd: int
    market: int
    account: int
    oid: int
    side: int
    price_ticks: int
    size_lots: int
    kept_priority: bool


class Level(msgspec.Struct, tag="level", frozen=True):
    """A book level's new total size (0 = the level is gone)."""

    cmd: int
    market: int
    side: int
    price_ticks: int
    size_lots: int


class Balance(msgspec.Struct, tag="balance", frozen=True):
    """A deposit (amount > 0) or withdrawal (amount < 0) and the collateral after it."""

    cmd: int
    account: int
    amount_atoms: int
    collateral_atoms: int


class Leverage(msgspec.Struct, tag="leverage", frozen=True):
    cmd: int
    market: int
    account: int
    leverage: int


class Margin(msgspec.Struct, tag="margin", frozen=True):
    """A margin mode set (``amount_atoms`` 0) or isolated margin moved: ``amount_atoms`` into
    the position's bucket (< 0: back to cross), ``margin_atoms`` the bucket after."""

    cmd: int
    market: int
    account: int
    mode: MarginMode
    amount_atoms: int
    margin_atoms: int


class Mark(msgspec.Struct, tag="mark", frozen=True):
    cmd: int
    market: int
    mark_ticks: int
    oracle_ticks: int


class Funding(msgspec.Struct, tag="funding", frozen=True):
    """One position's hourly funding: ``credit_atoms`` < 0 means it paid."""

    cmd: int
    market: int
    account: int
    rate_ppb: int
    oracle_ticks: int
    size_lots: int
    credit_atoms: int


class Liquidation(msgspec.Struct, tag="liquidation", frozen=True):
    """One step of a liquidation (``engine.codes.LiquidationStep``): BOOK (an IOC: ``oid``,
    ``side``, limit ``price_ticks``, ``size_lots`` sent, ``amount`` = lots filled), BACKSTOP
    (``size_lots`` = the signed position the fund took at ``price_ticks`` = mark), COLLATERAL
    (``amount`` = atoms handed to the fund, < 0 when the account was bankrupt), FEE (``amount``
    = the liquidation fee in atoms), ADL (``account`` = the counterparty, ``side`` its closing
    side, ``size_lots`` = its signed lots closed at ``price_ticks`` = mark, ``amount`` = atoms
    it paid the fund), FUND_BOOK (the fund's IOC, ``account`` = the fund: as BOOK)."""

    cmd: int
    market: int
    account: int
    step: LiquidationStep
    oid: int
    side: int
    price_ticks: int
    size_lots: int
    amount: int


class FundingRate(msgspec.Struct, tag="funding_rate", frozen=True):
    """A market's hourly settlement: the rate and the rounding remainder the insurance fund got."""

    cmd: int
    market: int
    rate_ppb: int
    oracle_ticks: int
    remainder_atoms: int


class Mode(msgspec.Struct, tag="mode", frozen=True):
    """A market's mode or discovery band changed (docs/modes.md): the band is
    ``band_low_ticks``–``band_high_ticks`` around ``ref_ticks`` (meaningful while dark or
    pre-IPO)."""

    cmd: int
    market: int
    mode: MarketMode
    oracle_ticks: int
    ref_ticks: int
    band_low_ticks: int
    band_high_ticks: int


class Trigger(msgspec.Struct, tag="trigger", frozen=True):
    """A trigger order's life (``engine.codes.TriggerStep``): PLACED, FIRED (``size_lots`` = the
    lots its order places; the order's own events follow), CANCELLED, POSITION_CLOSED."""

    cmd: int
    market: int
    account: int
    tid: int
    step: TriggerStep
    side: int
    trigger_ticks: int
    size_lots: int


class Schedule(msgspec.Struct, tag="schedule", frozen=True):
    """An account's dead-man deadline was set (``at_ns``) or cleared (0)."""

    cmd: int
    account: int
    at_ns: int


Event = Union[Accepted, Rejected, Fill, Cancelled, Expired, Amended, Level, Balance, Leverage, Mark, Funding,
              FundingRate, Liquidation, Mode, Trigger, Schedule, Margin]


class OpenOrder(msgspec.Struct, frozen=True):
    """A resting order as the engines report it (``Engine.open_orders``)."""

    oid: int
    market: int
    account: int
    side: int
    price_ticks: int
    remaining_lots: int
    tif: int
    stp: int
    expires_at_ns: int
    cloid: str | None
    reduce_only: bool = False


def events_to_structs(events: np.ndarray) -> list[Event]:
    """The friendly form of an event array."""
    out: list[Event] = []
    for e in events.tolist():
        kind, side, reason, code, cmd, market, account, maker_account, oid, maker_oid, price, size, remaining, ts = e
        if kind == EventKind.ACCEPTED:
            out.append(Accepted(cmd, market, account, oid, side, price, size))
        elif kind == EventKind.REJECTED:
            out.append(Rejected(cmd, market, account, oid, Reject(code)))
        elif kind == EventKind.FILL:
            out.append(Fill(cmd, market, account, oid, maker_account, maker_oid, side, price, size, remaining, ts))
        elif kind == EventKind.CANCELLED:
            out.append(Cancelled(cmd, market, account, oid, side, price, size, CancelReason(reason)))
        elif kind == EventKind.EXPIRED:
            out.append(Expired(cmd, market, account, oid, side, price, size))
        elif kind == EventKind.AMENDED:
            out.append(Amended(cmd, market, account, oid, side, price, size, bool(reason)))
        elif kind == EventKind.LEVEL:
            out.append(Level(cmd, market, side, price, size))
        elif kind == EventKind.BALANCE:
            out.append(Balance(cmd, account, size, remaining))
        elif kind == EventKind.LEVERAGE:
            out.append(Leverage(cmd, market, account, size))
        elif kind == EventKind.MARK:
            out.append(Mark(cmd, market, price, remaining))
        elif kind == EventKind.FUNDING:
            out.append(Funding(cmd, market, account, oid, price, size, remaining))
        elif kind == EventKind.FUNDING_RATE:
            out.append(FundingRate(cmd, market, oid, price, remaining))
        elif kind == EventKind.LIQUIDATION:
            out.append(Liquidation(cmd, market, account, LiquidationStep(reason), oid, side, price, size, remaining))
        elif kind == EventKind.TRIGGER:
            out.append(Trigger(cmd, market, account, oid, TriggerStep(reason), side, price, size))
        elif kind == EventKind.MODE:
            out.append(Mode(cmd, market, MarketMode(reason), price, oid, size, remaining))
        elif kind == EventKind.SCHEDULE:
            out.append(Schedule(cmd, account, size))
        elif kind == EventKind.MARGIN:
            out.append(Margin(cmd, market, account, MarginMode(reason), size, remaining))
        else:
            raise AssertionError(f"unknown event kind {kind}")
    return out


# ---------------------------------------------------------------------------- conversion


def pack_cloid(cloid: str | None) -> tuple[int, int, int, int] | None:
    """A client order id as four little-endian uint64 words; None if it is invalid."""
    if cloid is None:
        return (0, 0, 0, 0)
    if not isinstance(cloid, str):
        return None
    raw = cloid.encode("utf-8")
    if not 1 <= len(raw) <= CLOID_MAX_BYTES or b"\x00" in raw:
        return None
    raw = raw.ljust(CLOID_MAX_BYTES, b"\x00")
    return tuple(int.from_bytes(raw[i : i + 8], "little") for i in range(0, 32, 8))  # type: ignore[return-value]


def unpack_cloid(words: Sequence[int]) -> str | None:
    raw = b"".join(int(w).to_bytes(8, "little") for w in words).rstrip(b"\x00")
    return raw.decode("utf-8") if raw else None


class _Writer:
    """Fills one record; the first validation failure wins and is kept in ``pre_reject``."""

    def __init__(self, rec: np.void, specs: Sequence[MarketSpec]):
        self.rec = rec
        self.specs = specs

    def fail(self, code: Reject) -> None:
        if self.rec["pre_reject"] == 0:
            self.rec["pre_reject"] = int(code)

    def int_field(self, name: str, value: object, code: Reject, lo: int, hi: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.fail(code)
            return
        self.rec[name] = value

    def market(self, market: object) -> MarketSpec | None:
        """The market's spec; an id the engine does not have is rejected here, because
        its decimals cannot be converted without the spec."""
        if isinstance(market, bool) or not isinstance(market, int) or not 0 <= market < len(self.specs):
            self.rec["market"] = market if isinstance(market, int) and 0 <= market <= INT32_MAX else -1
            self.fail(Reject.UNKNOWN_MARKET)
            return None
        self.rec["market"] = market
        return self.specs[market]

    def decimal_field(self, name: str, value: object, step: Decimal, convert) -> None:
        if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
            self.fail(Reject.BAD_FIELD)
            return
        try:
            number = Decimal(value)
        except ArithmeticError:
            self.fail(Reject.BAD_FIELD)
            return
        try:
            self.rec[name] = convert(number, step)
        except units.UnitError as err:
            self.fail(err.code)

    def cloid(self, cloid: object) -> None:
        words = pack_cloid(cloid)  # type: ignore[arg-type]
        if words is None:
            self.fail(Reject.CLOID_INVALID)
        else:
            for k in range(4):
                self.rec[f"cloid{k}"] = words[k]

    def enum(self, name: str, value: object, table: dict) -> None:
        if value not in table:
            self.fail(Reject.BAD_FIELD)
        else:
            self.rec[name] = int(table[value])


_SINGLE_COMMANDS = (Place, Cancel, CancelAll, Amend, SetMark, Tick, Deposit, Withdraw, SetLeverage, OracleUpdate,
                    MarketAdmin, PlaceTrigger, CancelTrigger, ScheduleCancel, SetMarginMode, AdjustMargin)
_MARGIN_MODES = {"cross": MarginMode.CROSS, "isolated": MarginMode.ISOLATED}
_TRIGGER_FLAGS = {("stop", "mark"): 0, ("take_profit", "mark"): 1, ("stop", "last"): 2, ("take_profit", "last"): 3}
_ADMIN_ACTIONS = {"halt": AdminAction.HALT, "resume": AdminAction.RESUME, "list": AdminAction.LIST}


def _write(cmd: Command, rec: np.void, specs: Sequence[MarketSpec]) -> None:
    if not isinstance(cmd, _SINGLE_COMMANDS):
        raise TypeError(f"not a command: {type(cmd).__name__}")
    w = _Writer(rec, specs)
    w.int_field("ts", cmd.ts_ns, Reject.VALUE_OVERFLOW, 0, units.INT64_MAX)
    if isinstance(cmd, Place):
        rec["kind"] = CommandKind.PLACE
        w.int_field("account", cmd.account, Reject.UNKNOWN_ACCOUNT, 0, INT32_MAX)
        spec = w.market(cmd.market)
        w.enum("side", cmd.side, _SIDES)
        w.enum("tif", cmd.tif, _TIFS)
        w.enum("stp", cmd.stp, _STPS)
        w.cloid(cmd.cloid)
        w.int_field("expires_at", cmd.expires_at_ns, Reject.VALUE_OVERFLOW, 0, units.INT64_MAX)
        if not isinstance(cmd.reduce_only, bool):
            w.fail(Reject.BAD_FIELD)
        elif cmd.reduce_only:
            rec["flags"] = int(OrderFlag.REDUCE_ONLY)
        if cmd.order_type == "market":
            rec["tif"] = Tif.MARKET
            if cmd.price is not None:
                w.fail(Reject.MARKET_ORDER_WITH_PRICE)
        elif cmd.order_type != "limit":
            w.fail(Reject.BAD_FIELD)
        elif cmd.price is None:
            w.fail(Reject.PRICE_MISSING)
        if spec is not None:
            if cmd.price is not None and cmd.order_type == "limit":
                w.decimal_field("price", cmd.price, spec.tick_size, units.to_ticks)
            w.decimal_field("size", cmd.size, spec.lot_size, units.to_lots)
    elif isinstance(cmd, (Cancel, Amend)):
        rec["kind"] = CommandKind.CANCEL if isinstance(cmd, Cancel) else CommandKind.AMEND
        w.int_field("account", cmd.account, Reject.UNKNOWN_ACCOUNT, 0, INT32_MAX)
        spec = w.market(cmd.market)
        w.int_field("oid", cmd.oid, Reject.UNKNOWN_ORDER, 0, units.INT64_MAX)
        w.cloid(cmd.cloid)
        if cmd.oid == 0 and cmd.cloid is None:
            w.fail(Reject.ORDER_ID_MISSING)
        if isinstance(cmd, Amend) and spec is not None:
            if cmd.price is not None:
                w.decimal_field("price", cmd.price, spec.tick_size, units.to_ticks)
                if rec["pre_reject"] == 0 and rec["price"] <= 0:
                    w.fail(Reject.PRICE_NOT_POSITIVE)
            if cmd.size is not None:
                w.decimal_field("size", cmd.size, spec.lot_size, units.to_lots)
                if rec["pre_reject"] == 0 and rec["size"] <= 0:
                    w.fail(Reject.SIZE_NOT_POSITIVE)
    elif isinstance(cmd, CancelAll):
        rec["kind"] = CommandKind.CANCEL_ALL
        w.int_field("account", cmd.account, Reject.UNKNOWN_ACCOUNT, 0, INT32_MAX)
        if cmd.market is None:
            rec["market"] = -1
        else:
            w.market(cmd.market)
    elif isinstance(cmd, SetMark):
        rec["kind"] = CommandKind.SET_MARK
        spec = w.market(cmd.market)
        if spec is not None:
            w.decimal_field("price", cmd.price, spec.tick_size, units.to_ticks)
    elif isinstance(cmd, OracleUpdate):
        rec["kind"] = CommandKind.ORACLE
        spec = w.market(cmd.market)
        if spec is not None and cmd.price is not None:
            w.decimal_field("price", cmd.price, spec.tick_size, units.to_ticks)
            if rec["pre_reject"] == 0 and rec["price"] <= 0:
                w.fail(Reject.ORACLE_PRICE_INVALID)
        w.int_field("size", cmd.flags, Reject.BAD_FIELD, 0, int(OracleFlag.CLOSED | OracleFlag.BREAKER))
    elif isinstance(cmd, PlaceTrigger):
        rec["kind"] = CommandKind.PLACE_TRIGGER
        w.int_field("account", cmd.account, Reject.UNKNOWN_ACCOUNT, 0, INT32_MAX)
        spec = w.market(cmd.market)
        w.enum("side", cmd.side, _SIDES)
        w.enum("stp", (cmd.kind, cmd.trigger_on), _TRIGGER_FLAGS)
        w.enum("tif", cmd.order_type, {"market": Tif.MARKET, "limit": Tif.GTC})
        if cmd.order_type == "market" and cmd.price is not None:
            w.fail(Reject.MARKET_ORDER_WITH_PRICE)
        elif cmd.order_type == "limit" and cmd.price is None:
            w.fail(Reject.PRICE_MISSING)
        if spec is not None:
            w.decimal_field("oid", cmd.trigger_price, spec.tick_size, units.to_ticks)
            if cmd.price is not None and cmd.order_type == "limit":
                w.decimal_field("price", cmd.price, spec.tick_size, units.to_ticks)
            if cmd.size is not None:
                w.decimal_field("size", cmd.size, spec.lot_size, units.to_lots)
                if rec["pre_reject"] == 0 and rec["size"] <= 0:
                    w.fail(Reject.SIZE_NOT_POSITIVE)
    elif isinstance(cmd, CancelTrigger):
        rec["kind"] = CommandKind.CANCEL_TRIGGER
        w.int_field("account", cmd.account, Reject.UNKNOWN_ACCOUNT, 0, INT32_MAX)
        w.market(cmd.market)
        w.int_field("oid", cmd.tid, Reject.UNKNOWN_TRIGGER, 0, units.INT64_MAX)
    elif isinstance(cmd, MarketAdmin):
        rec["kind"] = CommandKind.MARKET_ADMIN
        w.market(cmd.market)
        if cmd.action not in _ADMIN_ACTIONS:
            w.fail(Reject.BAD_FIELD)
        else:
            rec["size"] = int(_ADMIN_ACTIONS[cmd.action])
    elif isinstance(cmd, (Deposit, Withdraw)):
        rec["kind"] = CommandKind.DEPOSIT if isinstance(cmd, Deposit) else CommandKind.WITHDRAW
        w.int_field("account", cmd.account, Reject.UNKNOWN_ACCOUNT, 0, INT32_MAX)
        w.decimal_field("size", cmd.amount, Decimal(1) / units.ATOMS_PER_USD, _to_atoms)
    elif isinstance(cmd, ScheduleCancel):
        rec["kind"] = CommandKind.SCHEDULE_CANCEL
        w.int_field("account", cmd.account, Reject.UNKNOWN_ACCOUNT, 0, INT32_MAX)
        w.int_field("expires_at", cmd.at_ns, Reject.VALUE_OVERFLOW, 0, units.INT64_MAX)
    elif isinstance(cmd, SetMarginMode):
        rec["kind"] = CommandKind.SET_MARGIN_MODE
        w.int_field("account", cmd.account, Reject.UNKNOWN_ACCOUNT, 0, INT32_MAX)
        w.market(cmd.market)
        if isinstance(cmd.mode, str) and cmd.mode in _MARGIN_MODES:
            rec["size"] = int(_MARGIN_MODES[cmd.mode])
        else:
            w.fail(Reject.MARGIN_MODE_INVALID)
    elif isinstance(cmd, AdjustMargin):
        rec["kind"] = CommandKind.ADJUST_MARGIN
        w.int_field("account", cmd.account, Reject.UNKNOWN_ACCOUNT, 0, INT32_MAX)
        w.market(cmd.market)
        w.decimal_field("size", cmd.amount, Decimal(1) / units.ATOMS_PER_USD, _to_signed_atoms)
    elif isinstance(cmd, SetLeverage):
        rec["kind"] = CommandKind.SET_LEVERAGE
        w.int_field("account", cmd.account, Reject.UNKNOWN_ACCOUNT, 0, INT32_MAX)
        w.market(cmd.market)
        w.int_field("size", cmd.leverage, Reject.LEVERAGE_INVALID, 0, units.INT64_MAX)
    else:
        rec["kind"] = CommandKind.TICK


def _to_atoms(amount: Decimal, _step: Decimal) -> int:
    try:
        return units.to_atoms(amount)
    except units.UnitError as err:
        raise units.UnitError(Reject.AMOUNT_INVALID, str(err)) from None


def _to_signed_atoms(amount: Decimal, _step: Decimal) -> int:
    """Atoms of a signed amount; a fraction of an atom or a magnitude past 2^60 is refused."""
    try:
        atoms = units.to_atoms(abs(amount))
    except units.UnitError as err:
        raise units.UnitError(Reject.MARGIN_AMOUNT_INVALID, str(err)) from None
    if atoms > 1 << 60:
        raise units.UnitError(Reject.MARGIN_AMOUNT_INVALID, "amount above 2^60 atoms")
    return -atoms if amount < 0 else atoms


def count_records(commands: Sequence[Command]) -> int:
    return sum(1 + len(c.actions) if isinstance(c, Batch) else 1 for c in commands)


def to_records(commands: Sequence[Command], specs: Sequence[MarketSpec]) -> np.ndarray:
    """Convert Structs to one record array (a batch becomes a header plus its actions)."""
    out = np.zeros(count_records(commands), dtype=COMMAND_DTYPE)
    i = 0
    for cmd in commands:
        if isinstance(cmd, Batch):
            head = out[i]
            head["kind"] = CommandKind.BATCH
            head["size"] = len(cmd.actions)
            _Writer(head, specs).int_field("ts", cmd.ts_ns, Reject.VALUE_OVERFLOW, 0, units.INT64_MAX)
            i += 1
            for action in cmd.actions:
                if isinstance(action, Batch):
                    out[i]["kind"] = CommandKind.BATCH
                    out[i]["pre_reject"] = Reject.BATCH_NESTED
                else:
                    _write(action, out[i], specs)
                i += 1
        else:
            _write(cmd, out[i], specs)
            i += 1
    return out
