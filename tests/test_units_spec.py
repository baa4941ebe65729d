"""The edge of the engine: decimal <-> integer units, market specs and engine sizing, the
Struct -> record conversion (``to_records`` and its ``pre_reject``), and client order ids."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import units
from engine.codes import CommandKind, EventKind, Reject, Side, Stp, Tif
from engine.commands import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    Amend,
    Batch,
    Cancel,
    CancelAll,
    Place,
    SetMark,
    Tick,
    count_records,
    events_to_structs,
    pack_cloid,
    to_records,
    unpack_cloid,
)
from engine.spec import EngineConfig, MarketSpec, validate_markets
from engine_helpers import ALICE, INT64_MAX, NVDA, TSLA, nvda

int64_magnitudes = st.integers(-INT64_MAX, INT64_MAX)
steps = st.sampled_from([Decimal("0.01"), Decimal("0.001"), Decimal("0.05"), Decimal("1"), Decimal("10"),
                         Decimal("0.0001"), Decimal("25")])

# ---------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    "value, step, ticks",
    [
        pytest.param("99.00", "0.01", 9900, id="two_decimals"),
        pytest.param("99.000", "0.01", 9900, id="trailing_zeros"),
        pytest.param("9.9E1", "0.01", 9900, id="exponent_notation"),
        pytest.param("-1.00", "0.01", -100, id="negative_is_not_refused_here"),
        pytest.param("0", "0.05", 0, id="zero"),
        pytest.param("249.95", "0.05", 4999, id="tick_of_five_cents"),
        pytest.param("92233720368547758.07", "0.01", INT64_MAX, id="int64_max_ticks"),
        pytest.param("-92233720368547758.07", "0.01", -INT64_MAX, id="minus_int64_max_ticks"),
    ],
)
def test_to_ticks_exact(value, step, ticks):
    assert units.to_ticks(Decimal(value), Decimal(step)) == ticks


@pytest.mark.parametrize(
    "convert, value, step, code",
    [
        pytest.param(units.to_ticks, "99.005", "0.01", Reject.PRICE_OFF_TICK, id="price_half_a_tick"),
        pytest.param(units.to_ticks, "249.97", "0.05", Reject.PRICE_OFF_TICK, id="price_off_a_five_cent_tick"),
        pytest.param(units.to_lots, "1.0005", "0.001", Reject.SIZE_OFF_LOT, id="size_half_a_lot"),
        pytest.param(units.to_lots, "1E-999999", "0.001", Reject.SIZE_OFF_LOT, id="size_tiny_exponent"),
        pytest.param(units.to_ticks, "92233720368547758.08", "0.01", Reject.VALUE_OVERFLOW, id="one_past_int64"),
        pytest.param(units.to_ticks, "1E30", "0.01", Reject.VALUE_OVERFLOW, id="1e30"),
        pytest.param(units.to_ticks, "NaN", "0.01", Reject.VALUE_OVERFLOW, id="nan"),
        pytest.param(units.to_ticks, "sNaN", "0.01", Reject.VALUE_OVERFLOW, id="signalling_nan"),
        pytest.param(units.to_lots, "Infinity", "0.001", Reject.VALUE_OVERFLOW, id="infinity"),
        pytest.param(units.to_lots, "-Infinity", "0.001", Reject.VALUE_OVERFLOW, id="minus_infinity"),
    ],
)
def test_conversion_refuses_rather_than_rounds(convert, value, step, code):
    with pytest.raises(units.UnitError) as err:
        convert(Decimal(value), Decimal(step))
    assert err.value.code == code
    assert isinstance(err.value, ValueError)


def test_off_tick_by_less_than_the_context_precision_is_still_off_tick():
    with pytest.raises(units.UnitError) as err:
        units.to_ticks(Decimal("100.0000000000000000000000000001"), Decimal("0.01"))
    assert err.value.code == Reject.PRICE_OFF_TICK


def test_an_exponent_beyond_the_decimal_context_is_value_overflow():
    with pytest.raises(units.UnitError) as err:
        units.to_ticks(Decimal("1E+999999"), Decimal("0.01"))
    assert err.value.code == Reject.VALUE_OVERFLOW


@given(int64_magnitudes, steps)
def test_ticks_and_lots_round_trip_exactly(n, step):
    assert units.to_ticks(units.from_ticks(n, step), step) == n
    assert units.to_lots(units.from_lots(n, step), step) == n


@given(int64_magnitudes)
def test_atoms_round_trip_exactly(n):
    assert units.to_atoms(units.from_atoms(n)) == n


def test_money_and_rates():
    assert units.to_atoms(Decimal("10")) == 10_000_000
    assert units.to_atoms(Decimal("0.000001")) == 1
    assert units.from_atoms(1_500_000) == Decimal("1.5")
    assert units.to_ppm(Decimal("0.05")) == 50_000
    assert units.to_ppm(Decimal("0.000001")) == 1
    with pytest.raises(units.UnitError):
        units.to_atoms(Decimal("0.0000001"))  # a tenth of an atom
    with pytest.raises(units.UnitError):
        units.to_ppm(Decimal("0.0000005"))


@pytest.mark.parametrize(
    "tick, lot, atoms",
    [("0.01", "0.001", 10), ("0.05", "0.01", 500), ("1", "10", 10_000_000), ("0.001", "0.001", 1)],
)
def test_atoms_per_tick_lot(tick, lot, atoms):
    assert units.atoms_per_tick_lot(Decimal(tick), Decimal(lot)) == atoms


@pytest.mark.parametrize("tick, lot", [("0.001", "0.0001"), ("0.01", "0.00001"), ("0.03", "0.00005")])
def test_atoms_per_tick_lot_refuses_fractions_of_an_atom(tick, lot):
    with pytest.raises(ValueError, match="whole number of atoms"):
        units.atoms_per_tick_lot(Decimal(tick), Decimal(lot))


# ---------------------------------------------------------------------------- MarketSpec and EngineConfig


def test_market_spec_defaults_are_locked():
    spec = MarketSpec(market_id=0, symbol="X", tick_size=Decimal("0.01"), lot_size=Decimal("0.001"),
                      max_order_lots=1)
    assert (spec.min_notional, spec.band_pct, spec.max_slippage, spec.ladder_levels) == (
        Decimal("10"), Decimal("0.10"), Decimal("0.05"), 1 << 16)
    assert (spec.atoms_per_tick_lot, spec.min_notional_atoms, spec.band_ppm, spec.slippage_ppm) == (
        10, 10_000_000, 100_000, 50_000)
    assert TSLA.atoms_per_tick_lot == 500


def test_engine_config_defaults_are_locked():
    assert EngineConfig() == EngineConfig(max_orders=1 << 20, max_accounts=1 << 16)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(dict(market_id=-1), id="negative_market_id"),
        pytest.param(dict(symbol=""), id="empty_symbol"),
        pytest.param(dict(tick_size=Decimal(0)), id="zero_tick"),
        pytest.param(dict(lot_size=Decimal("-0.001")), id="negative_lot"),
        pytest.param(dict(tick_size=Decimal("0.001"), lot_size=Decimal("0.0001")), id="tick_x_lot_is_a_tenth_atom"),
        pytest.param(dict(max_order_lots=0), id="max_order_lots_zero"),
        pytest.param(dict(max_order_lots=INT64_MAX + 1), id="max_order_lots_beyond_int64"),
        pytest.param(dict(min_notional=Decimal("-1")), id="negative_min_notional"),
        pytest.param(dict(min_notional=Decimal("0.0000001")), id="min_notional_below_one_atom"),
        pytest.param(dict(band_pct=Decimal(0)), id="band_zero"),
        pytest.param(dict(band_pct=Decimal(1)), id="band_one"),
        pytest.param(dict(max_slippage=Decimal("1.5")), id="slippage_above_one"),
        pytest.param(dict(band_pct=Decimal("0.0000001")), id="band_below_one_ppm"),
        pytest.param(dict(ladder_levels=128), id="ladder_below_256"),
        pytest.param(dict(ladder_levels=768), id="ladder_not_a_power_of_two"),
        pytest.param(dict(ladder_levels=1 << 21), id="ladder_above_2_pow_20"),
    ],
)
def test_market_spec_refuses(overrides):
    with pytest.raises(ValueError):
        nvda(**overrides)


def test_market_spec_decoding_rejects_unknown_fields():
    data = msgspec.json.encode(NVDA)
    assert msgspec.json.decode(data, type=MarketSpec) == NVDA
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(data[:-1] + b',"leverage":5}', type=MarketSpec)


@pytest.mark.parametrize(
    "config",
    [dict(max_orders=0), dict(max_orders=(1 << 22) + 1), dict(max_accounts=0), dict(max_accounts=1 << 31)],
    ids=["no_orders", "more_orders_than_slot_bits", "no_accounts", "accounts_beyond_int32"],
)
def test_engine_config_refuses(config):
    with pytest.raises(ValueError):
        EngineConfig(**config)


def test_validate_markets():
    validate_markets([NVDA, TSLA])
    with pytest.raises(ValueError, match="expected 0"):
        validate_markets([TSLA])
    with pytest.raises(ValueError, match="unique"):
        validate_markets([NVDA, nvda(market_id=1)])


# ---------------------------------------------------------------------------- to_records


def one(cmd, specs=(NVDA,)) -> np.void:
    recs = to_records([cmd], list(specs))
    assert recs.dtype == COMMAND_DTYPE and len(recs) == 1
    return recs[0]


def test_a_valid_limit_place_becomes_integers():
    rec = one(Place(market=0, account=ALICE, side="sell", size=Decimal("1.5"), price=Decimal("99.01"),
                    tif="alo", stp="expire_both", cloid="q", expires_at_ns=9, ts_ns=3))

    assert (rec["kind"], rec["side"], rec["tif"], rec["stp"], rec["pre_reject"]) == (
        CommandKind.PLACE, Side.SELL, Tif.ALO, Stp.EXPIRE_BOTH, 0)
    assert (rec["market"], rec["account"], rec["price"], rec["size"], rec["ts"], rec["expires_at"]) == (
        0, ALICE, 9901, 1500, 3, 9)
    assert [int(rec[f"cloid{k}"]) for k in range(4)] == [ord("q"), 0, 0, 0]


def test_a_market_order_has_tif_market_and_no_price():
    rec = one(Place(market=0, account=ALICE, side="buy", size=Decimal(2), order_type="market"))
    assert (rec["tif"], rec["price"], rec["size"], rec["pre_reject"]) == (Tif.MARKET, 0, 2000, 0)


@pytest.mark.parametrize(
    "cmd, code, fields",
    [
        pytest.param(Place(market=0, account=-1, side="buy", size=Decimal(1), price=Decimal("99.005")),
                     Reject.UNKNOWN_ACCOUNT, {"account": 0}, id="first_failure_wins_account_before_price"),
        pytest.param(Place(market=5, account=ALICE, side="buy", size=Decimal("0.0001"), price=Decimal("1")),
                     Reject.UNKNOWN_MARKET, {"market": 5, "size": 0, "price": 0},
                     id="unknown_market_keeps_its_id_and_converts_no_decimal"),
        pytest.param(Place(market=0, account=ALICE, side="buy", size=Decimal(1)), Reject.PRICE_MISSING, {},
                     id="limit_without_price"),
        pytest.param(Place(market=0, account=ALICE, side="buy", size=Decimal(1), price=Decimal(1),
                           order_type="market"), Reject.MARKET_ORDER_WITH_PRICE, {"tif": Tif.MARKET},
                     id="market_with_price"),
        pytest.param(Place(market=0, account=ALICE, side="buy", size=Decimal(1), price=Decimal(99), cloid="x" * 33),
                     Reject.CLOID_INVALID, {}, id="cloid_too_long"),
        pytest.param(Place(market=0, account=ALICE, side="buy", size=Decimal(1), price=Decimal(99), ts_ns=True),
                     Reject.VALUE_OVERFLOW, {"ts": 0}, id="ts_bool_is_not_an_int"),
        pytest.param(Place(market=0, account=ALICE, side="buy", size=Decimal(1), price=Decimal(99), tif="ioc",
                           expires_at_ns=5, ts_ns=10), 0, {"expires_at": 5},
                     id="ioc_expiry_is_carried_for_the_engine_to_ignore"),
        pytest.param(Cancel(market=0, account=ALICE), Reject.ORDER_ID_MISSING, {}, id="cancel_without_ids"),
        pytest.param(Cancel(market=0, account=ALICE, cloid=""), Reject.CLOID_INVALID, {},
                     id="cancel_bad_cloid_before_missing_id"),
        pytest.param(Cancel(market=0, account=ALICE, oid=-3), Reject.UNKNOWN_ORDER, {"oid": 0},
                     id="cancel_negative_oid"),
        pytest.param(Amend(market=0, account=ALICE, oid=7), 0, {"price": 0, "size": 0, "kind": CommandKind.AMEND},
                     id="amend_none_means_unchanged"),
        pytest.param(Amend(market=0, account=ALICE, oid=7, price=Decimal(0)), Reject.PRICE_NOT_POSITIVE, {},
                     id="amend_price_zero"),
        pytest.param(Amend(market=0, account=ALICE, oid=7, size=Decimal("-0.001")), Reject.SIZE_NOT_POSITIVE,
                     {"size": -1}, id="amend_size_negative"),
        pytest.param(CancelAll(account=ALICE), 0, {"market": -1, "kind": CommandKind.CANCEL_ALL},
                     id="cancel_all_markets_is_minus_one"),
        pytest.param(CancelAll(account=ALICE, market=-1), Reject.UNKNOWN_MARKET, {"market": -1},
                     id="cancel_all_explicit_minus_one_is_not_all"),
        pytest.param(SetMark(market=0, price=Decimal("100.001")), Reject.PRICE_OFF_TICK, {}, id="mark_off_tick"),
        pytest.param(SetMark(market=0, price=Decimal("100.00"), ts_ns=4), 0, {"price": 10000, "ts": 4},
                     id="mark_in_ticks"),
        pytest.param(Tick(ts_ns=-1), Reject.VALUE_OVERFLOW, {"kind": CommandKind.TICK}, id="tick_negative_ts"),
    ],
)
def test_to_records_pre_reject(cmd, code, fields):
    rec = one(cmd)
    assert rec["pre_reject"] == code
    for name, value in fields.items():
        assert rec[name] == value, name


def test_a_batch_is_a_header_and_its_actions():
    batch = Batch(actions=[Place(market=0, account=ALICE, side="buy", size=Decimal(1), price=Decimal(99)),
                           Batch(actions=[Tick(ts_ns=1)]),  # type: ignore[list-item]
                           Cancel(market=0, account=ALICE, oid=5)], ts_ns=11)
    commands = [Tick(ts_ns=1), batch, Tick(ts_ns=2)]

    recs = to_records(commands, [NVDA])

    assert count_records(commands) == len(recs) == 6
    assert recs["kind"].tolist() == [CommandKind.TICK, CommandKind.BATCH, CommandKind.PLACE, CommandKind.BATCH,
                                     CommandKind.CANCEL, CommandKind.TICK]
    assert (recs[1]["size"], recs[1]["ts"], recs[1]["pre_reject"]) == (3, 11, 0)
    assert recs[3]["pre_reject"] == Reject.BATCH_NESTED


def test_engines_refuse_records_of_another_dtype(make_engine):
    with pytest.raises(TypeError):
        make_engine().apply(np.zeros(1, dtype=EVENT_DTYPE))


def test_events_to_structs_refuses_an_unknown_kind():
    events = np.zeros(1, dtype=EVENT_DTYPE)
    events["kind"] = 99
    with pytest.raises(AssertionError):
        events_to_structs(events)
    events["kind"] = EventKind.LEVEL
    assert len(events_to_structs(events)) == 1


# ---------------------------------------------------------------------------- client order ids

valid_cloids = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1,
                       max_size=32).filter(lambda s: len(s.encode()) <= 32)


@given(valid_cloids)
def test_cloid_round_trips(cloid):
    words = pack_cloid(cloid)
    assert words is not None and all(0 <= w < 1 << 64 for w in words)
    assert unpack_cloid(words) == cloid


@pytest.mark.parametrize(
    "cloid, words",
    [
        pytest.param(None, (0, 0, 0, 0), id="none_is_all_zero"),
        pytest.param("a", (0x61, 0, 0, 0), id="one_byte"),
        pytest.param("abcdefgh", (0x6867666564636261, 0, 0, 0), id="little_endian_word"),
        pytest.param("abcdefghi", (0x6867666564636261, 0x69, 0, 0), id="ninth_byte_starts_word_two"),
        pytest.param("\xff" * 16, (0xBFC3BFC3BFC3BFC3,) * 4, id="32_utf8_bytes_fill_four_words"),
        pytest.param("é" * 16, (0xA9C3A9C3A9C3A9C3,) * 4, id="sixteen_two_byte_chars"),
    ],
)
def test_cloid_packing(cloid, words):
    assert pack_cloid(cloid) == words


@pytest.mark.parametrize("cloid", ["", "x" * 33, "é" * 17, "a\x00", 7, b"bytes"],
                         ids=["empty", "33_bytes", "34_utf8_bytes", "nul", "int", "bytes"])
def test_invalid_cloids(cloid):
    assert pack_cloid(cloid) is None  # type: ignore[arg-type]


def test_unpack_of_zero_words_is_none():
    assert unpack_cloid((0, 0, 0, 0)) is None
