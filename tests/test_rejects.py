"""One row per way to reach each reject code, against both engines (docs/matching.md).

Every row arranges a book, applies one command (a Struct, or one raw record unit), expects
exactly one ``Rejected`` event and an unchanged ``state_hash()``. Rows named
``*_beats_*`` pin the order of the checks where a command fails more than one.

The default book (``BOOK``) at NVDA mark 100.00 (band [9744, 10256]):
ALICE bids 2 @ 99.00 with cloid "a1" (``A1``), BOB asks 1 @ 101.00 with cloid "b1" (``B1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pytest
from engine_helpers import (
    ALICE,
    BOB,
    BUY,
    CAROL,
    INT64_MAX,
    INT64_MIN,
    NVDA,
    SELL,
    SHARE,
    SMALL_CONFIG,
    TSLA,
    apply_checked,
    arrange,
    ask,
    bid,
    market_order,
    nvda,
    oid,
    record,
    records,
)

from engine.codes import MESSAGES, CancelReason, CommandKind, OracleFlag, Reject, message
from engine.commands import (
    Accepted,
    AdjustMargin,
    Amend,
    Amended,
    Batch,
    Cancel,
    CancelAll,
    Cancelled,
    CancelTrigger,
    Command,
    Deposit,
    Level,
    MarketAdmin,
    OracleUpdate,
    Place,
    PlaceTrigger,
    Rejected,
    ScheduleCancel,
    SetLeverage,
    SetMarginMode,
    SetMark,
    Tick,
    Withdraw,
    events_to_structs,
)
from engine.spec import EngineConfig, MarketSpec

R = Reject
RISK = EngineConfig(max_orders=256, max_accounts=64, risk=True)
FUNDED = [Deposit(account=ALICE, amount=Decimal(1_000_000))]
MODES = EngineConfig(max_orders=256, max_accounts=64, risk=True, modes=True)
LIVE = [OracleUpdate(market=0, price=Decimal(100)), *FUNDED, Deposit(account=BOB, amount=Decimal(1_000))]
DARK = OracleUpdate(market=0, price=None, flags=int(OracleFlag.CLOSED))
A1, B1 = oid(1, 0), oid(2, 1)
BOOK = [bid(ALICE, "2", "99.00", cloid="a1"), ask(BOB, "1", "101.00", cloid="b1")]
# Tick 1, lot 10: 1e7 atoms per tick·lot, so any price above INT64_MAX // 1e7 = 922_337_203_685
# ticks overflows; its mark is 2^40 ticks, the largest allowed.
# The largest size cap an engine of SMALL_CONFIG accepts (a full level must fit in int64).
LARGEST_LOTS = INT64_MAX // SMALL_CONFIG.max_orders
HUGE = MarketSpec(market_id=0, symbol="HUGE", tick_size=Decimal(1), lot_size=Decimal(10),
                  max_order_lots=LARGEST_LOTS, ladder_levels=1024)
WIDE = nvda(max_order_lots=LARGEST_LOTS)  # NVDA with the largest size cap: the notional overflows first
LARGEST_SIZE = Decimal(LARGEST_LOTS).scaleb(-3)  # LARGEST_LOTS lots of 0.001, as a decimal size


def raw(kind: CommandKind, **fields) -> np.ndarray:
    return record(kind, **fields)


def raw_place(**fields) -> np.ndarray:
    defaults = dict(market=0, account=ALICE, side=BUY, price=9800, size=SHARE)
    defaults.update(fields)
    return record(CommandKind.PLACE, **defaults)


@dataclass(frozen=True)
class Row:
    act: list[Command] | np.ndarray
    code: Reject
    market: int = 0
    account: int = ALICE
    oid: int = 0
    cmd: int = 0
    setup: list[Command] = field(default_factory=lambda: list(BOOK))
    specs: tuple = (NVDA,)
    marks: dict = field(default_factory=lambda: {0: "100.00"})
    config: EngineConfig = SMALL_CONFIG


def row(id_: str, act, code: Reject, **kw):
    return pytest.param(Row(act if isinstance(act, np.ndarray) else list(act), code, **kw), id=id_)


ROWS = [
    # ------------------------------------------------------------------ 1001-1002 off tick / lot
    row("place_price_off_tick", [bid(ALICE, "1", "99.005")], R.PRICE_OFF_TICK),
    row("amend_price_off_tick", [Amend(market=0, account=ALICE, oid=A1, price=Decimal("99.001"))],
        R.PRICE_OFF_TICK, oid=A1),
    row("set_mark_off_tick", [SetMark(market=0, price=Decimal("100.001"))], R.PRICE_OFF_TICK, account=0),
    row("place_size_off_lot", [bid(ALICE, "1.0005", "99.00")], R.SIZE_OFF_LOT),
    row("amend_size_off_lot", [Amend(market=0, account=ALICE, oid=A1, size=Decimal("0.0001"))],
        R.SIZE_OFF_LOT, oid=A1),
    # ------------------------------------------------------------------ 1003-1005 size and notional
    row("place_size_zero", [bid(ALICE, "0", "99.00")], R.SIZE_NOT_POSITIVE),
    row("place_size_negative", [bid(ALICE, "-1", "99.00")], R.SIZE_NOT_POSITIVE),
    row("raw_place_size_zero", raw_place(size=0), R.SIZE_NOT_POSITIVE),
    row("raw_place_size_int64_min", raw_place(size=INT64_MIN), R.SIZE_NOT_POSITIVE),
    row("amend_size_zero", [Amend(market=0, account=ALICE, oid=A1, size=Decimal(0))], R.SIZE_NOT_POSITIVE, oid=A1),
    row("amend_size_negative", [Amend(market=0, account=ALICE, oid=A1, size=Decimal(-1))],
        R.SIZE_NOT_POSITIVE, oid=A1),
    row("place_size_one_lot_above_max", [bid(ALICE, "10000.001", "99.00")], R.SIZE_ABOVE_MAX),
    row("raw_place_size_int64_max", raw_place(size=INT64_MAX), R.SIZE_ABOVE_MAX),
    row("amend_size_above_max", [Amend(market=0, account=ALICE, oid=A1, size=Decimal("10001"))],
        R.SIZE_ABOVE_MAX, oid=A1),
    row("place_notional_9.90_usd", [bid(ALICE, "0.099", "100.00")], R.NOTIONAL_BELOW_MIN),
    row("market_order_notional_at_protection_price", [market_order(ALICE, "buy", "0.097")], R.NOTIONAL_BELOW_MIN),
    row("amend_size_down_below_min_notional", [Amend(market=0, account=ALICE, oid=A1, size=Decimal("0.09"))],
        R.NOTIONAL_BELOW_MIN, oid=A1),
    # ------------------------------------------------------------------ 1006-1007 price
    row("place_price_zero", [bid(ALICE, "1", "0")], R.PRICE_NOT_POSITIVE),
    row("place_price_negative", [bid(ALICE, "1", "-1.00")], R.PRICE_NOT_POSITIVE),
    row("raw_place_price_int64_min", raw_place(price=INT64_MIN), R.PRICE_NOT_POSITIVE),
    row("amend_price_zero", [Amend(market=0, account=ALICE, oid=A1, price=Decimal(0))], R.PRICE_NOT_POSITIVE, oid=A1),
    row("amend_price_negative", [Amend(market=0, account=ALICE, oid=A1, price=Decimal("-0.01"))],
        R.PRICE_NOT_POSITIVE, oid=A1),
    row("place_one_tick_above_band", [bid(ALICE, "1", "102.57")], R.PRICE_OUTSIDE_BAND),
    row("place_one_tick_below_band", [ask(ALICE, "1", "97.43")], R.PRICE_OUTSIDE_BAND),
    row("raw_place_price_int64_max", raw_place(price=INT64_MAX), R.PRICE_OUTSIDE_BAND),
    row("place_price_int64_max_ticks_as_decimal", [bid(ALICE, "1", str(Decimal(INT64_MAX).scaleb(-2)))],
        R.PRICE_OUTSIDE_BAND),
    row("amend_price_above_band", [Amend(market=0, account=ALICE, oid=A1, price=Decimal("102.57"))],
        R.PRICE_OUTSIDE_BAND, oid=A1),
    row("raw_amend_price_negative", raw(CommandKind.AMEND, market=0, account=ALICE, oid=A1, price=-5),
        R.PRICE_NOT_POSITIVE, oid=A1),
    row("raw_amend_size_negative", raw(CommandKind.AMEND, market=0, account=ALICE, oid=A1, size=-5),
        R.SIZE_NOT_POSITIVE, oid=A1),
    # ------------------------------------------------------------------ 1008 overflow
    row("place_price_beyond_int64_as_decimal", [bid(ALICE, "1", "1E30")], R.VALUE_OVERFLOW),
    row("place_price_2_pow_63_ticks", [bid(ALICE, "1", str(Decimal(2**63).scaleb(-2)))], R.VALUE_OVERFLOW),
    row("place_size_beyond_int64_as_decimal", [bid(ALICE, "1E30", "99.00")], R.VALUE_OVERFLOW),
    row("place_price_nan", [bid(ALICE, "1", "NaN")], R.VALUE_OVERFLOW),
    row("place_size_infinity", [bid(ALICE, "Infinity", "99.00")], R.VALUE_OVERFLOW),
    row("place_ts_beyond_int64", [bid(ALICE, "1", "99.00", ts_ns=2**63)], R.VALUE_OVERFLOW),
    row("place_expiry_negative", [bid(ALICE, "1", "99.00", expires_at_ns=-1)], R.VALUE_OVERFLOW),
    row("tick_ts_negative", [Tick(ts_ns=-1)], R.VALUE_OVERFLOW, account=0),
    row("notional_price_times_atl_overflows", [Place(market=0, account=ALICE, side="buy", size=Decimal(10),
                                                     price=Decimal(2**40))],
        R.VALUE_OVERFLOW, specs=(HUGE,), marks={0: str(2**40)}, setup=[]),
    row("raw_notional_price_times_atl_overflows", raw_place(price=2**40, size=1), R.VALUE_OVERFLOW,
        specs=(HUGE,), marks={0: str(2**40)}, setup=[]),
    row("notional_ticks_lots_atoms_overflow", [bid(ALICE, str(LARGEST_SIZE), "99.00")], R.VALUE_OVERFLOW,
        specs=(WIDE,)),
    row("raw_notional_one_lot_past_int64", raw_place(price=9900, size=INT64_MAX // 99_000 + 1), R.VALUE_OVERFLOW,
        specs=(WIDE,)),
    row("market_order_notional_overflow", [market_order(ALICE, "buy", str(LARGEST_SIZE))], R.VALUE_OVERFLOW,
        specs=(WIDE,)),
    row("amend_notional_overflow", [Amend(market=0, account=ALICE, oid=A1, size=LARGEST_SIZE)],
        R.VALUE_OVERFLOW, oid=A1, specs=(WIDE,)),
    # ------------------------------------------------------------------ 1009-1011 ids and fields
    row("place_market_out_of_range", [bid(ALICE, "1", "99.00", market=5)], R.UNKNOWN_MARKET, market=5),
    row("place_market_negative", [bid(ALICE, "1", "99.00", market=-1)], R.UNKNOWN_MARKET, market=-1),
    row("place_market_beyond_int32", [bid(ALICE, "1", "99.00", market=2**40)], R.UNKNOWN_MARKET, market=-1),
    row("raw_place_market_1_of_1", raw_place(market=1), R.UNKNOWN_MARKET, market=1),
    row("raw_place_market_negative", raw_place(market=-7), R.UNKNOWN_MARKET, market=-7),
    row("cancel_market_out_of_range", [Cancel(market=3, account=ALICE, oid=A1)], R.UNKNOWN_MARKET, market=3, oid=A1),
    row("amend_market_out_of_range", [Amend(market=3, account=ALICE, oid=A1, size=Decimal(1))],
        R.UNKNOWN_MARKET, market=3, oid=A1),
    row("cancel_all_market_out_of_range", [CancelAll(account=ALICE, market=2)], R.UNKNOWN_MARKET, market=2),
    row("raw_cancel_all_market_minus_two", raw(CommandKind.CANCEL_ALL, market=-2, account=ALICE),
        R.UNKNOWN_MARKET, market=-2),
    row("set_mark_market_out_of_range", [SetMark(market=1, price=Decimal(100))], R.UNKNOWN_MARKET,
        market=1, account=0),
    row("place_account_at_max_accounts", [bid(64, "1", "99.00")], R.UNKNOWN_ACCOUNT, account=64),
    row("raw_place_account_negative", raw_place(account=-1), R.UNKNOWN_ACCOUNT, account=-1),
    row("place_account_negative_struct", [bid(-1, "1", "99.00")], R.UNKNOWN_ACCOUNT, account=0),
    row("place_account_bool", [bid(True, "1", "99.00")], R.UNKNOWN_ACCOUNT, account=0),  # type: ignore[arg-type]
    row("cancel_account_at_max_accounts", [Cancel(market=0, account=64, oid=A1)], R.UNKNOWN_ACCOUNT,
        account=64, oid=A1),
    row("cancel_all_account_at_max_accounts", [CancelAll(account=64)], R.UNKNOWN_ACCOUNT, market=-1, account=64),
    row("place_side_unknown", [Place(market=0, account=ALICE, side="hold", size=Decimal(1),  # type: ignore[arg-type]
                                     price=Decimal(99))], R.BAD_FIELD),
    row("place_tif_unknown", [bid(ALICE, "1", "99.00", tif="day")], R.BAD_FIELD),
    row("place_stp_unknown", [bid(ALICE, "1", "99.00", stp="none")], R.BAD_FIELD),
    row("place_order_type_unknown", [bid(ALICE, "1", "99.00", order_type="stop")], R.BAD_FIELD),
    row("place_size_not_a_number", [Place(market=0, account=ALICE, side="buy", size="abc",  # type: ignore[arg-type]
                                          price=Decimal(99))], R.BAD_FIELD),
    row("place_size_float", [Place(market=0, account=ALICE, side="buy", size=1.5,  # type: ignore[arg-type]
                                   price=Decimal(99))], R.BAD_FIELD),
    row("raw_place_side_2", raw_place(side=2), R.BAD_FIELD),
    row("raw_place_tif_5", raw_place(tif=5), R.BAD_FIELD),
    row("raw_place_stp_3", raw_place(stp=3), R.BAD_FIELD),
    row("raw_kind_0", raw(0, market=9, account=9, oid=9), R.BAD_FIELD, market=9, account=9, oid=9),
    row("raw_kind_255", raw(255), R.BAD_FIELD, account=0),
    row("batch_holding_a_cancel_all", [Batch(actions=[CancelAll(account=ALICE)])],  # type: ignore[list-item]
        R.BAD_FIELD, cmd=1, market=-1),
    row("raw_batch_holding_a_set_mark", records(raw(CommandKind.BATCH, size=1),
                                                raw(CommandKind.SET_MARK, market=0, price=20_000)),
        R.BAD_FIELD, cmd=1, account=0),
    # ------------------------------------------------------------------ 1012-1014 expiry and cloid
    row("gtc_expiry_equal_to_ts", [bid(ALICE, "1", "98.00", expires_at_ns=10, ts_ns=10)], R.EXPIRY_IN_PAST),
    row("alo_expiry_before_ts", [bid(ALICE, "1", "98.00", tif="alo", expires_at_ns=5, ts_ns=10)],
        R.EXPIRY_IN_PAST),
    row("raw_gtc_expiry_negative", raw_place(expires_at=-1), R.EXPIRY_IN_PAST),
    row("cloid_already_open", [bid(ALICE, "1", "98.00", cloid="a1")], R.DUPLICATE_CLOID),
    row("cloid_open_in_another_market", [bid(ALICE, "1", "249.00", market=1, cloid="a1")], R.DUPLICATE_CLOID,
        market=1, specs=(NVDA, TSLA), marks={0: "100.00", 1: "250.00"}),
    row("cloid_empty", [bid(ALICE, "1", "98.00", cloid="")], R.CLOID_INVALID),
    row("cloid_33_bytes", [bid(ALICE, "1", "98.00", cloid="x" * 33)], R.CLOID_INVALID),
    row("cloid_with_nul", [bid(ALICE, "1", "98.00", cloid="a\x00b")], R.CLOID_INVALID),
    row("cloid_34_utf8_bytes", [bid(ALICE, "1", "98.00", cloid="é" * 17)], R.CLOID_INVALID),
    row("cancel_cloid_empty", [Cancel(market=0, account=ALICE, cloid="")], R.CLOID_INVALID),
    row("amend_cloid_too_long", [Amend(market=0, account=ALICE, cloid="y" * 40, size=Decimal(1))], R.CLOID_INVALID),
    # ------------------------------------------------------------------ 1015-1016 batches
    row("batch_of_51", [Batch(actions=[bid(ALICE, "1", "98.00")] * 51)], R.BATCH_TOO_LARGE, account=0),
    row("raw_batch_negative_count_alone", raw(CommandKind.BATCH, size=-1, account=ALICE), R.BATCH_TOO_LARGE),
    row("raw_batch_count_beyond_the_records", records(raw(CommandKind.BATCH, size=2), raw_place()),
        R.BATCH_TOO_LARGE, account=0),
    row("raw_batch_count_51_skips_what_follows", records(raw(CommandKind.BATCH, size=51), *[raw_place()] * 51),
        R.BATCH_TOO_LARGE, account=0),
    row("batch_inside_a_batch", [Batch(actions=[Batch(actions=[])])], R.BATCH_NESTED,  # type: ignore[list-item]
        cmd=1, account=0),
    row("raw_batch_header_inside_a_batch", records(raw(CommandKind.BATCH, size=1), raw(CommandKind.BATCH, size=0)),
        R.BATCH_NESTED, cmd=1, account=0),
    # ------------------------------------------------------------------ 1017-1020 shape of the command
    row("limit_without_price", [Place(market=0, account=ALICE, side="buy", size=Decimal(1))], R.PRICE_MISSING),
    row("market_order_with_price", [market_order(ALICE, "buy", "1", price=Decimal("100.00"))],
        R.MARKET_ORDER_WITH_PRICE),
    row("mark_zero", [SetMark(market=0, price=Decimal(0))], R.MARK_INVALID, account=0),
    row("mark_negative", [SetMark(market=0, price=Decimal("-1.00"))], R.MARK_INVALID, account=0),
    row("mark_2_pow_40_plus_one_tick", [SetMark(market=0, price=Decimal(2**40 + 1).scaleb(-2))], R.MARK_INVALID,
        account=0),
    row("raw_mark_int64_min", raw(CommandKind.SET_MARK, market=0, price=INT64_MIN), R.MARK_INVALID, account=0),
    row("cancel_without_any_id", [Cancel(market=0, account=ALICE)], R.ORDER_ID_MISSING),
    row("amend_without_any_id", [Amend(market=0, account=ALICE, size=Decimal(1))], R.ORDER_ID_MISSING),
    row("raw_cancel_oid_and_cloid_zero", raw(CommandKind.CANCEL, market=0, account=ALICE), R.ORDER_ID_MISSING),
    row("raw_amend_oid_and_cloid_zero", raw(CommandKind.AMEND, market=0, account=ALICE, size=5), R.ORDER_ID_MISSING),
    # ------------------------------------------------------------------ 3001-3002 fill-or-kill and post-only
    row("fok_more_than_the_book_holds", [bid(CAROL, "2", "101.00", tif="fok")], R.FOK_NOT_FILLABLE, account=CAROL),
    row("fok_limit_below_the_best_ask", [bid(CAROL, "1", "100.99", tif="fok")], R.FOK_NOT_FILLABLE, account=CAROL),
    row("fok_on_an_empty_side", [ask(CAROL, "1", "97.44", tif="fok")], R.FOK_NOT_FILLABLE, account=CAROL, setup=[]),
    row("fok_own_order_ends_the_walk_under_expire_taker",
        [bid(ALICE, "1", "101.00", tif="fok", stp="expire_taker")], R.FOK_NOT_FILLABLE,
        setup=[*BOOK, ask(ALICE, "1", "100.50")]),
    row("fok_own_order_ends_the_walk_under_expire_both",
        [bid(ALICE, "1", "101.00", tif="fok", stp="expire_both")], R.FOK_NOT_FILLABLE,
        setup=[*BOOK, ask(ALICE, "1", "100.50")]),
    row("alo_buy_at_the_best_ask", [bid(CAROL, "1", "101.00", tif="alo")], R.POST_ONLY_WOULD_CROSS, account=CAROL),
    row("alo_sell_at_the_best_bid", [ask(CAROL, "1", "99.00", tif="alo")], R.POST_ONLY_WOULD_CROSS, account=CAROL),
    row("alo_amend_to_the_best_ask", [Amend(market=0, account=CAROL, oid=oid(3, 2), price=Decimal("101.00"))],
        R.POST_ONLY_WOULD_CROSS, account=CAROL, oid=oid(3, 2), setup=[*BOOK, bid(CAROL, "1", "98.00", tif="alo")]),
    row("alo_sell_amend_down_to_the_best_bid",
        [Amend(market=0, account=CAROL, oid=oid(3, 2), price=Decimal("99.00"))], R.POST_ONLY_WOULD_CROSS,
        account=CAROL, oid=oid(3, 2), setup=[*BOOK, ask(CAROL, "1", "100.00", tif="alo")]),
    # ------------------------------------------------------------------ 3003-3006 orders and the pool
    row("cancel_oid_never_existed", [Cancel(market=0, account=ALICE, oid=oid(99, 5))], R.UNKNOWN_ORDER,
        oid=oid(99, 5)),
    row("cancel_oid_slot_beyond_the_pool", [Cancel(market=0, account=ALICE, oid=oid(1, 300))], R.UNKNOWN_ORDER,
        oid=oid(1, 300)),
    row("cancel_oid_slot_mask_all_ones", [Cancel(market=0, account=ALICE, oid=(1 << 22) - 1)], R.UNKNOWN_ORDER,
        oid=(1 << 22) - 1),
    row("raw_cancel_oid_minus_one", raw(CommandKind.CANCEL, market=0, account=ALICE, oid=-1), R.UNKNOWN_ORDER,
        oid=-1),
    row("raw_cancel_oid_int64_max", raw(CommandKind.CANCEL, market=0, account=ALICE, oid=INT64_MAX),
        R.UNKNOWN_ORDER, oid=INT64_MAX),
    row("raw_cancel_oid_int64_min", raw(CommandKind.CANCEL, market=0, account=ALICE, oid=INT64_MIN),
        R.UNKNOWN_ORDER, oid=INT64_MIN),
    row("cancel_oid_negative_struct", [Cancel(market=0, account=ALICE, oid=-5)], R.UNKNOWN_ORDER),
    row("cancel_filled_order", [Cancel(market=0, account=ALICE, oid=A1)], R.UNKNOWN_ORDER, oid=A1,
        setup=[*BOOK, ask(CAROL, "2", "99.00", tif="ioc")]),
    row("cancel_cancelled_order", [Cancel(market=0, account=ALICE, oid=A1)], R.UNKNOWN_ORDER, oid=A1,
        setup=[*BOOK, Cancel(market=0, account=ALICE, oid=A1)]),
    row("cancel_stale_oid_whose_slot_was_reused", [Cancel(market=0, account=ALICE, oid=A1)], R.UNKNOWN_ORDER,
        oid=A1, setup=[*BOOK, Cancel(market=0, account=ALICE, oid=A1), bid(ALICE, "1", "98.00")]),
    row("cancel_ioc_taker_that_never_rested", [Cancel(market=0, account=CAROL, oid=oid(3, 2))], R.UNKNOWN_ORDER,
        account=CAROL, oid=oid(3, 2), setup=[*BOOK, bid(CAROL, "1", "100.00", tif="ioc")]),
    row("cancel_expired_order", [Cancel(market=0, account=CAROL, oid=oid(3, 2))], R.UNKNOWN_ORDER,
        account=CAROL, oid=oid(3, 2), setup=[*BOOK, bid(CAROL, "1", "98.00", expires_at_ns=5), Tick(ts_ns=5)]),
    row("cancel_cloid_not_open", [Cancel(market=0, account=ALICE, cloid="zz")], R.UNKNOWN_ORDER),
    row("cancel_another_accounts_cloid", [Cancel(market=0, account=ALICE, cloid="b1")], R.UNKNOWN_ORDER),
    row("cancel_order_of_another_market", [Cancel(market=1, account=ALICE, oid=A1)], R.UNKNOWN_ORDER,
        market=1, oid=A1, specs=(NVDA, TSLA)),
    row("amend_filled_order", [Amend(market=0, account=BOB, oid=B1, size=Decimal("0.5"))], R.UNKNOWN_ORDER,
        account=BOB, oid=B1, setup=[*BOOK, bid(CAROL, "1", "101.00", tif="ioc")]),
    row("amend_oid_never_existed", [Amend(market=0, account=ALICE, oid=oid(7, 7), size=Decimal(1))],
        R.UNKNOWN_ORDER, oid=oid(7, 7)),
    row("cancel_another_accounts_order", [Cancel(market=0, account=BOB, oid=A1)], R.NOT_ORDER_OWNER,
        account=BOB, oid=A1),
    row("amend_another_accounts_order", [Amend(market=0, account=CAROL, oid=B1, size=Decimal("0.5"))],
        R.NOT_ORDER_OWNER, account=CAROL, oid=B1),
    row("amend_same_price_and_size", [Amend(market=0, account=ALICE, oid=A1, price=Decimal("99.00"),
                                            size=Decimal(2))], R.AMEND_NO_CHANGE, oid=A1),
    row("amend_with_no_change_given", [Amend(market=0, account=ALICE, cloid="a1")], R.AMEND_NO_CHANGE),
    row("raw_amend_price_and_size_zero", raw(CommandKind.AMEND, market=0, account=ALICE, oid=A1),
        R.AMEND_NO_CHANGE, oid=A1),
    row("book_full_rejects_even_a_crossing_ioc", [bid(CAROL, "1", "101.00", tif="ioc")], R.BOOK_FULL,
        account=CAROL, config=EngineConfig(max_orders=2, max_accounts=64)),
    row("book_full_gtc", [bid(CAROL, "1", "98.00")], R.BOOK_FULL, account=CAROL,
        config=EngineConfig(max_orders=2, max_accounts=64)),
    # ------------------------------------------------------------------ 4001 market state
    row("place_before_any_mark", [bid(ALICE, "1", "99.00")], R.NO_MARK, setup=[], marks={}),
    row("market_order_before_any_mark", [market_order(ALICE, "sell", "1")], R.NO_MARK, setup=[], marks={}),
    # ------------------------------------------------------------------ risk (EngineConfig.risk on)
    row("deposit_fraction_of_an_atom", [Deposit(account=ALICE, amount=Decimal("0.0000001"))], R.AMOUNT_INVALID,
        market=-1, config=RISK, setup=[]),
    row("deposit_zero", [Deposit(account=ALICE, amount=Decimal(0))], R.AMOUNT_INVALID, market=-1, config=RISK,
        setup=[]),
    row("deposit_past_the_balance_cap", [Deposit(account=ALICE, amount=Decimal(2**60) / 10**6)],
        R.AMOUNT_INVALID, market=-1, config=RISK, setup=[*FUNDED, Deposit(account=ALICE, amount=Decimal(2**60) / 10**6)]),
    row("withdraw_negative", [Withdraw(account=ALICE, amount=Decimal(-1))], R.AMOUNT_INVALID, market=-1,
        config=RISK, setup=FUNDED),
    row("oracle_above_max_price", [OracleUpdate(market=0, price=Decimal("1000000.01"))], R.ORACLE_PRICE_INVALID,
        account=-1, config=RISK, setup=[]),
    row("oracle_zero", [OracleUpdate(market=0, price=Decimal(0))], R.ORACLE_PRICE_INVALID, account=-1, setup=[]),
    row("set_mark_above_max_price_with_risk_on", [SetMark(market=0, price=Decimal("100.51"))], R.MARK_INVALID,
        account=0, config=RISK, specs=(nvda(max_price=Decimal("100.50")),), setup=[]),
    row("bid_above_max_price", [bid(ALICE, "1", "101.00")], R.PRICE_ABOVE_MAX, config=RISK,
        specs=(nvda(max_price=Decimal("100.50")),), setup=FUNDED),
    row("leverage_above_the_tier", [SetLeverage(account=ALICE, market=0, leverage=11)], R.LEVERAGE_INVALID,
        config=RISK, setup=FUNDED),
    row("leverage_zero", [SetLeverage(account=ALICE, market=0, leverage=0)], R.LEVERAGE_INVALID,
        config=RISK, setup=FUNDED),
    row("schedule_cancel_at_its_own_ts", [ScheduleCancel(account=ALICE, at_ns=5, ts_ns=5)], R.DEADLINE_IN_PAST,
        market=-1, config=RISK, setup=FUNDED),
    row("raw_schedule_cancel_negative_deadline", raw(CommandKind.SCHEDULE_CANCEL, account=ALICE, expires_at=-1),
        R.DEADLINE_IN_PAST, market=-1, config=RISK, setup=FUNDED),
    row("schedule_cancel_without_risk", [ScheduleCancel(account=ALICE, at_ns=5)], R.RISK_DISABLED, market=-1,
        setup=[]),
    row("reduce_only_sell_while_flat", [ask(ALICE, "1", "101.00", reduce_only=True)], R.REDUCE_ONLY_WOULD_INCREASE,
        config=RISK, setup=FUNDED),
    # ALICE long 1 share: a reduce-only buy would add to it
    row("reduce_only_buy_on_a_long", [bid(ALICE, "1", "99.00", reduce_only=True)], R.REDUCE_ONLY_WOULD_INCREASE,
        config=RISK, setup=[*FUNDED, Deposit(account=BOB, amount=Decimal(1_000)), ask(BOB, "1", "100.00"),
                            bid(ALICE, "1", "100.00")]),
    row("reduce_only_beats_size_above_max", [ask(ALICE, "10000.001", "101.00", reduce_only=True)],
        R.REDUCE_ONLY_WOULD_INCREASE, config=RISK, setup=FUNDED),
    row("size_not_positive_beats_reduce_only", [ask(ALICE, "0", "101.00", reduce_only=True)], R.SIZE_NOT_POSITIVE,
        config=RISK, setup=FUNDED),
    row("reduce_only_without_risk", [ask(ALICE, "1", "101.00", reduce_only=True)], R.RISK_DISABLED),
    row("reduce_only_not_a_bool", [ask(ALICE, "1", "101.00", reduce_only=1)], R.BAD_FIELD),  # type: ignore[arg-type]
    row("raw_place_unknown_flag_bit", raw_place(flags=2), R.BAD_FIELD),
    # $100 of collateral; 20 shares at 99.00 need 198.00 at 10×
    row("bid_beyond_available_margin", [bid(ALICE, "20", "99.00")], R.INSUFFICIENT_MARGIN, config=RISK,
        setup=[Deposit(account=ALICE, amount=Decimal(100))]),
    row("amend_up_beyond_available_margin", [Amend(market=0, account=ALICE, oid=A1, size=Decimal(20))],
        R.INSUFFICIENT_MARGIN, oid=A1, config=RISK,
        setup=[Deposit(account=ALICE, amount=Decimal(100)), Deposit(account=BOB, amount=Decimal(100)), *BOOK]),
    # max_price 2^40 ticks: one lot is 1.1e13 atoms, so a position is capped at 2^59 // that = 52,428 lots
    row("bid_beyond_the_position_cap", [bid(ALICE, "52.429", "99.00")], R.POSITION_LIMIT, config=RISK,
        specs=(nvda(max_price=Decimal(2**40) / 100),), setup=FUNDED),
    row("withdraw_more_than_collateral", [Withdraw(account=ALICE, amount=Decimal("1000000.01"))],
        R.WITHDRAW_TOO_LARGE, market=-1, config=RISK, setup=FUNDED),
    row("withdraw_below_initial_margin", [Withdraw(account=ALICE, amount=Decimal("91"))], R.WITHDRAW_TOO_LARGE,
        market=-1, config=RISK, setup=[Deposit(account=ALICE, amount=Decimal(100)), bid(ALICE, "1", "99.00")]),
    # ------------------------------------------------------------------ isolated margin (docs/risk.md)
    row("margin_mode_unknown", [SetMarginMode(account=ALICE, market=0, mode="hedged")], R.MARGIN_MODE_INVALID,  # type: ignore[arg-type]
        config=RISK, setup=FUNDED),
    row("raw_margin_mode_2", raw(CommandKind.SET_MARGIN_MODE, account=ALICE, size=2), R.MARGIN_MODE_INVALID,
        config=RISK, setup=FUNDED),
    row("margin_mode_without_risk", [SetMarginMode(account=ALICE, market=0, mode="isolated")], R.RISK_DISABLED,
        setup=[]),
    row("margin_mode_unknown_market", raw(CommandKind.SET_MARGIN_MODE, market=7, account=ALICE, size=1),
        R.UNKNOWN_MARKET, market=7, config=RISK, setup=FUNDED),
    row("margin_mode_with_an_open_order", [SetMarginMode(account=ALICE, market=0, mode="isolated")],
        R.MARGIN_MODE_NOT_FLAT, config=RISK, setup=[*FUNDED, bid(ALICE, "1", "99.00")]),
    row("margin_mode_with_a_position", [SetMarginMode(account=ALICE, market=0, mode="cross")],
        R.MARGIN_MODE_NOT_FLAT, config=RISK,
        setup=[*FUNDED, Deposit(account=BOB, amount=Decimal(1_000)), SetMarginMode(account=ALICE, market=0,
               mode="isolated"), ask(BOB, "1", "100.00"), bid(ALICE, "1", "100.00")]),
    row("adjust_margin_zero", [AdjustMargin(account=ALICE, market=0, amount=Decimal(0))], R.MARGIN_AMOUNT_INVALID,
        config=RISK, setup=FUNDED),
    row("adjust_margin_fraction_of_an_atom", [AdjustMargin(account=ALICE, market=0, amount=Decimal("-0.0000001"))],
        R.MARGIN_AMOUNT_INVALID, config=RISK, setup=FUNDED),
    row("raw_adjust_margin_below_minus_2_60", raw(CommandKind.ADJUST_MARGIN, account=ALICE, size=-(1 << 60) - 1),
        R.MARGIN_AMOUNT_INVALID, config=RISK, setup=FUNDED),
    row("adjust_margin_of_a_cross_position", [AdjustMargin(account=ALICE, market=0, amount=Decimal(1))],
        R.NOT_ISOLATED, config=RISK,
        setup=[*FUNDED, Deposit(account=BOB, amount=Decimal(1_000)), ask(BOB, "1", "100.00"), bid(ALICE, "1", "100.00")]),
    row("adjust_margin_while_flat", [AdjustMargin(account=ALICE, market=0, amount=Decimal(1))], R.NOT_ISOLATED,
        config=RISK, setup=[*FUNDED, SetMarginMode(account=ALICE, market=0, mode="isolated")]),
    # ALICE: $100, isolated long 1 share at 100.00 (IM $10 in the bucket, fee $0.035): $90 left in cross
    row("add_margin_beyond_the_cross_collateral", [AdjustMargin(account=ALICE, market=0, amount=Decimal("90.01"))],
        R.MARGIN_ADD_TOO_LARGE, config=RISK,
        setup=[Deposit(account=ALICE, amount=Decimal(100)), Deposit(account=BOB, amount=Decimal(1_000)),
               SetMarginMode(account=ALICE, market=0, mode="isolated"), ask(BOB, "1", "100.00"),
               bid(ALICE, "1", "100.00")]),
    # the bucket holds 10.00 − 0.035 = 9.965 against an IM of 10.00: nothing can come out
    row("remove_margin_below_the_initial_margin", [AdjustMargin(account=ALICE, market=0, amount=Decimal("-0.000001"))],
        R.MARGIN_REMOVE_TOO_LARGE, config=RISK,
        setup=[Deposit(account=ALICE, amount=Decimal(100)), Deposit(account=BOB, amount=Decimal(1_000)),
               SetMarginMode(account=ALICE, market=0, mode="isolated"), ask(BOB, "1", "100.00"),
               bid(ALICE, "1", "100.00")]),
    row("lower_leverage_needs_margin", [SetLeverage(account=ALICE, market=0, leverage=5)], R.LEVERAGE_NEEDS_MARGIN,
        config=RISK, setup=[Deposit(account=ALICE, amount=Decimal(300)), bid(ALICE, "20", "99.00")]),
    # OI cap $100: ALICE long 1 share at 100.00 fills it; CAROL (flat) may only reduce
    row("bid_when_the_open_interest_cap_is_reached", [bid(CAROL, "1", "99.00")], R.OI_CAP_REACHED, account=CAROL,
        config=RISK, specs=(nvda(oi_cap=Decimal(100)),),
        setup=[*FUNDED, Deposit(account=BOB, amount=Decimal(1_000)), bid(ALICE, "1", "100.00"),
               ask(BOB, "1", "100.00")]),
    row("deposit_without_risk", [Deposit(account=ALICE, amount=Decimal(1))], R.RISK_DISABLED, market=-1, setup=[]),
    row("risk_disabled_beats_unknown_account", [Deposit(account=99, amount=Decimal(1))], R.RISK_DISABLED,
        market=-1, account=99, setup=[]),
    # ------------------------------------------------------------------ trigger orders
    row("trigger_price_zero", [PlaceTrigger(market=0, account=ALICE, side="buy", trigger_price=Decimal(0),
                                            size=Decimal(1))], R.TRIGGER_PRICE_INVALID),
    row("position_trigger_without_a_position", [PlaceTrigger(market=0, account=ALICE, side="sell",
                                                             trigger_price=Decimal(95))],
        R.TRIGGER_NEEDS_POSITION, config=RISK, setup=FUNDED),
    row("trigger_table_full", [PlaceTrigger(market=0, account=ALICE, side="buy", trigger_price=Decimal(101),
                                            size=Decimal(1))], R.TRIGGER_BOOK_FULL,
        config=EngineConfig(max_orders=256, max_accounts=64, max_triggers=1),
        setup=[*BOOK, PlaceTrigger(market=0, account=BOB, side="buy", trigger_price=Decimal(101), size=Decimal(1))]),
    row("cancel_unknown_trigger", [CancelTrigger(market=0, account=ALICE, tid=1)], R.UNKNOWN_TRIGGER, oid=1),
    row("position_trigger_without_risk", [PlaceTrigger(market=0, account=ALICE, side="sell",
                                                       trigger_price=Decimal(95))], R.RISK_DISABLED),
    row("market_trigger_with_a_price", [PlaceTrigger(market=0, account=ALICE, side="sell", price=Decimal(95),
                                                     trigger_price=Decimal(95), size=Decimal(1))],
        R.MARKET_ORDER_WITH_PRICE),
    # ------------------------------------------------------------------ market modes (EngineConfig.modes on)
    row("place_while_halted", [bid(ALICE, "1", "99.00")], R.MARKET_HALTED, config=MODES, marks={},
        setup=[*LIVE, MarketAdmin(market=0, action="halt")]),
    row("amend_while_halted", [Amend(market=0, account=ALICE, oid=A1, size=Decimal(1))], R.MARKET_HALTED, oid=A1,
        config=MODES, marks={}, setup=[*LIVE, *BOOK, MarketAdmin(market=0, action="halt")]),
    row("halted_beats_size_zero", raw_place(size=0), R.MARKET_HALTED, config=MODES, marks={},
        setup=[*LIVE, MarketAdmin(market=0, action="halt")]),
    # dark at 100.00: discovery band 90.00–110.00; within it, the window's L/4 still bounds a price
    row("bid_below_the_discovery_band", [bid(ALICE, "1", "89.99")], R.PRICE_OUTSIDE_DISCOVERY_BAND, config=MODES,
        marks={}, setup=[*LIVE, DARK]),
    row("dark_bid_inside_the_discovery_band_beyond_the_window", [bid(ALICE, "1", "97.00")], R.PRICE_OUTSIDE_BAND,
        config=MODES, marks={}, setup=[*LIVE, DARK]),
    row("amend_outside_the_discovery_band", [Amend(market=0, account=ALICE, oid=A1, price=Decimal("110.01"))],
        R.PRICE_OUTSIDE_DISCOVERY_BAND, oid=A1, config=MODES, marks={}, setup=[*LIVE, *BOOK, DARK]),
    row("oracle_price_for_a_pre_ipo_market", [OracleUpdate(market=0, price=Decimal("51.00"))],
        R.ORACLE_NOT_EXTERNAL, account=-1, config=MODES, marks={}, setup=[],
        specs=(nvda(pre_ipo_reference=Decimal(50)),)),
    row("resume_a_running_market", [MarketAdmin(market=0, action="resume")], R.MODE_TRANSITION_INVALID,
        account=-1, config=MODES, marks={}, setup=LIVE),
    row("list_a_market_that_is_not_pre_ipo", [MarketAdmin(market=0, action="list")], R.MODE_TRANSITION_INVALID,
        account=-1, config=MODES, marks={}, setup=LIVE),
    row("halt_a_halted_market", [MarketAdmin(market=0, action="halt")], R.MODE_TRANSITION_INVALID,
        account=-1, config=MODES, marks={}, setup=[*LIVE, MarketAdmin(market=0, action="halt")]),
    row("admin_without_modes", [MarketAdmin(market=0, action="halt")], R.MODES_DISABLED, account=-1, config=RISK,
        setup=[]),
    row("oracle_flag_without_modes", [OracleUpdate(market=0, price=Decimal(100), flags=int(OracleFlag.CLOSED))],
        R.MODES_DISABLED, account=-1, config=RISK, setup=[]),
    row("oracle_without_a_price_without_modes", [OracleUpdate(market=0, price=None)], R.ORACLE_PRICE_INVALID,
        account=-1, config=RISK, setup=[]),
    row("oracle_unknown_flag_bit", [OracleUpdate(market=0, price=None, flags=4)], R.BAD_FIELD, account=-1,
        config=MODES, marks={}, setup=[]),
    row("raw_oracle_unknown_flag_bit", raw(CommandKind.ORACLE, market=0, price=10_000, size=4), R.BAD_FIELD,
        account=-1, config=MODES, marks={}, setup=[]),
    row("raw_admin_unknown_action", raw(CommandKind.MARKET_ADMIN, market=0, size=9), R.BAD_FIELD, account=-1,
        config=MODES, marks={}, setup=[]),
    row("admin_unknown_market", [MarketAdmin(market=5, action="halt")], R.UNKNOWN_MARKET, market=5, account=-1,
        config=MODES, marks={}, setup=[]),
    # ------------------------------------------------------------------ a raw pre_reject, per kind
    row("raw_place_pre_reject", raw_place(pre_reject=int(R.PRICE_MISSING)), R.PRICE_MISSING),
    row("raw_cancel_pre_reject", raw(CommandKind.CANCEL, market=0, account=ALICE, oid=A1,
                                     pre_reject=int(R.CLOID_INVALID)), R.CLOID_INVALID, oid=A1),
    row("raw_cancel_all_pre_reject", raw(CommandKind.CANCEL_ALL, market=-1, account=ALICE,
                                         pre_reject=int(R.UNKNOWN_ACCOUNT)), R.UNKNOWN_ACCOUNT, market=-1),
    row("raw_set_mark_pre_reject", raw(CommandKind.SET_MARK, market=0, price=20_000,
                                       pre_reject=int(R.PRICE_OFF_TICK)), R.PRICE_OFF_TICK, account=0),
    row("raw_tick_pre_reject_expires_nothing", raw(CommandKind.TICK, ts=1_000, pre_reject=int(R.VALUE_OVERFLOW)),
        R.VALUE_OVERFLOW, account=0, setup=[*BOOK, bid(CAROL, "1", "98.00", expires_at_ns=5)]),
    # ------------------------------------------------------------------ the order of the checks
    row("pre_reject_beats_unknown_market", raw_place(market=-1, pre_reject=int(R.SIZE_OFF_LOT)), R.SIZE_OFF_LOT,
        market=-1),
    row("unknown_market_beats_unknown_account", raw_place(market=4, account=-3), R.UNKNOWN_MARKET,
        market=4, account=-3),
    row("unknown_account_beats_bad_field", raw_place(account=99, side=7), R.UNKNOWN_ACCOUNT, account=99),
    row("bad_field_beats_no_mark", raw_place(tif=9), R.BAD_FIELD, setup=[], marks={}),
    row("no_mark_beats_size_not_positive", raw_place(size=0), R.NO_MARK, setup=[], marks={}),
    row("size_beats_price", raw_place(size=-1, price=-1), R.SIZE_NOT_POSITIVE),
    row("size_above_max_beats_price_outside_band", raw_place(size=10**7 + 1, price=1), R.SIZE_ABOVE_MAX),
    row("price_outside_band_beats_notional", raw_place(size=1, price=20_000), R.PRICE_OUTSIDE_BAND),
    row("notional_beats_expiry", raw_place(size=1, expires_at=1, ts=5), R.NOTIONAL_BELOW_MIN),
    row("expiry_beats_duplicate_cloid", [bid(ALICE, "1", "98.00", cloid="a1", expires_at_ns=3, ts_ns=3)],
        R.EXPIRY_IN_PAST),
    row("duplicate_cloid_beats_post_only", [bid(ALICE, "1", "101.00", tif="alo", cloid="a1")], R.DUPLICATE_CLOID),
    row("fok_beats_book_full", [bid(CAROL, "5", "101.00", tif="fok")], R.FOK_NOT_FILLABLE, account=CAROL,
        config=EngineConfig(max_orders=2, max_accounts=64)),
    row("market_checked_before_missing_id", raw(CommandKind.CANCEL, market=9, account=ALICE), R.UNKNOWN_MARKET,
        market=9),
    row("not_owner_beats_no_change", [Amend(market=0, account=BOB, oid=A1)], R.NOT_ORDER_OWNER, account=BOB, oid=A1),
    row("amend_size_above_max_beats_band", [Amend(market=0, account=ALICE, oid=A1, price=Decimal("200.00"),
                                                  size=Decimal("10001"))], R.SIZE_ABOVE_MAX, oid=A1),
    row("amend_band_beats_notional", [Amend(market=0, account=ALICE, oid=A1, price=Decimal("200.00"),
                                            size=Decimal("0.001"))], R.PRICE_OUTSIDE_BAND, oid=A1),
    # Mark 102.55 moves the band to [9999, 10511] without re-centring: A1 at 9900 is outside it.
    # A same-price amend skips the band check, so the notional check is the one that fails.
    row("amend_at_a_price_now_outside_the_band_skips_the_band_check",
        [Amend(market=0, account=ALICE, oid=A1, size=Decimal("0.05"))], R.NOTIONAL_BELOW_MIN, oid=A1,
        setup=[*BOOK, SetMark(market=0, price=Decimal("102.55"))]),
]


@pytest.mark.parametrize("case", ROWS)
def test_reject(make_engine, case: Row):
    engine = make_engine(specs=case.specs, config=case.config, marks=case.marks)
    arrange(engine, case.setup)
    before = engine.state_hash()

    events = engine.apply(case.act)

    assert events_to_structs(events) == [Rejected(case.cmd, case.market, case.account, case.oid, case.code)]
    assert engine.state_hash() == before
    engine.check_invariants()


def test_every_reject_code_has_a_row():
    covered = {p.values[0].code for p in ROWS}
    assert covered == set(Reject)


def test_every_reject_has_a_sentence():
    assert set(MESSAGES) == set(Reject)
    for code in Reject:
        text = message(int(code))
        assert text == MESSAGES[code] and text[0].isupper() and text.endswith(".")


def test_message_of_a_number_that_is_not_a_code_raises_key_error():
    with pytest.raises(KeyError):
        message(9999)


def test_codes_are_numbered_by_stage():
    by_stage: dict[int, list[int]] = {}
    for code in Reject:
        by_stage.setdefault(int(code) // 1000, []).append(int(code))

    assert sorted(by_stage) == [1, 2, 3, 4]  # validation, risk, matching, market state (auth is the gateway's)
    for stage, numbers in by_stage.items():
        assert numbers == list(range(stage * 1000 + 1, stage * 1000 + 1 + len(numbers))), f"gap in {stage}xxx"
    assert len({int(c) for c in Reject}) == len(Reject)


def test_codes_keep_their_published_numbers():
    # A number, once published, never changes meaning (codes.py).
    assert (R.PRICE_OFF_TICK, R.VALUE_OVERFLOW, R.ORDER_ID_MISSING) == (1001, 1008, 1020)
    assert (R.FOK_NOT_FILLABLE, R.BOOK_FULL, R.NO_MARK) == (3001, 3006, 4001)


# ---------------------------------------------------------------------------- the accepted side of each edge


@pytest.mark.parametrize(
    "spec, mark, place, size_lots",
    [
        pytest.param(NVDA, "100.00", bid(ALICE, "0.1", "100.00"), 100, id="notional_exactly_10_usd"),
        pytest.param(NVDA, "100.00", bid(ALICE, "10000", "97.44"), 10**7, id="max_size_at_the_band_low"),
        pytest.param(WIDE, "100.00", Place(market=0, account=ALICE, side="buy", price=Decimal("99.00"),
                                           size=Decimal(INT64_MAX // 99_000).scaleb(-3)),
                     INT64_MAX // 99_000, id="largest_notional_that_fits_int64"),
        pytest.param(HUGE, "922337203685", Place(market=0, account=ALICE, side="buy",
                                                    price=Decimal(922_337_203_685), size=Decimal(10)),
                     1, id="price_at_int64_max_over_atl"),
    ],
)
def test_edges_that_are_accepted(make_engine, spec, mark, place, size_lots):
    engine = make_engine(specs=[spec], marks={0: mark})

    events = apply_checked(engine, [place])

    assert isinstance(events[0], Accepted) and events[0].size_lots == size_lots
    assert engine.depth(0, BUY) == [(events[0].price_ticks, size_lots)]


def test_a_pre_rejected_batch_header_is_rejected_alone(nvda_at_100):
    recs = records(raw(CommandKind.BATCH, size=1, pre_reject=int(R.VALUE_OVERFLOW)), raw_place())

    events = events_to_structs(nvda_at_100.apply(recs))

    assert events == [
        Rejected(0, 0, 0, 0, R.VALUE_OVERFLOW),
        Accepted(1, 0, ALICE, oid(1, 0), BUY, 9800, SHARE),
        Level(1, 0, BUY, 9800, SHARE),
    ]


def test_rejects_consume_no_order_id(nvda_at_100):
    arrange(nvda_at_100, [bid(ALICE, "1", "99.00")])
    rejected = apply_checked(nvda_at_100, [bid(ALICE, "1", "300.00"), bid(ALICE, "0", "99.00"),
                                           ask(BOB, "1", "99.00", tif="fok", stp="x")])
    assert [type(e) for e in rejected] == [Rejected] * 3

    events = apply_checked(nvda_at_100, [ask(BOB, "1", "101.00")])

    assert events[0] == Accepted(0, 0, BOB, oid(2, 1), SELL, 10100, SHARE)


def test_a_rejected_cancel_leaves_the_order_cancellable(nvda_at_100):
    arrange(nvda_at_100, BOOK)
    apply_checked(nvda_at_100, [Cancel(market=0, account=BOB, oid=A1)])

    events = apply_checked(nvda_at_100, [Cancel(market=0, account=ALICE, oid=A1)])

    assert events == [Cancelled(0, 0, ALICE, A1, BUY, 9900, 2 * SHARE, CancelReason.USER), Level(0, 0, BUY, 9900, 0)]


def test_amend_size_down_at_a_price_now_outside_the_band_is_accepted(nvda_at_100):
    arrange(nvda_at_100, [*BOOK, SetMark(market=0, price=Decimal("102.55"))])

    events = apply_checked(nvda_at_100, [Amend(market=0, account=ALICE, oid=A1, size=Decimal("1.5"))])

    assert events == [
        Amended(0, 0, ALICE, A1, BUY, 9900, 1500, kept_priority=True),
        Level(0, 0, BUY, 9900, 1500),
    ]
