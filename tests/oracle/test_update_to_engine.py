"""``oracle.update.to_engine_command``: the oracle service's update as the engine's command
(docs/modes.md, "Inputs"), and that command's effect on a real engine."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.codes import MarketMode, OracleFlag
from engine.commands import OracleUpdate as EngineOracleUpdate
from engine.reference import ReferenceEngine
from engine.spec import EngineConfig, MarketSpec
from oracle.aggregate import AggFlag
from oracle.session import Session
from oracle.update import OracleUpdate, ServiceFlag, to_engine_command

SPEC = MarketSpec(market_id=0, symbol="NVDA", tick_size=Decimal("0.01"), lot_size=Decimal("0.001"),
                  max_order_lots=10**6)
T = 1_700_000_000_000_000_000


def update(price_e9, session=Session.REGULAR, flags=0) -> OracleUpdate:
    conf = None if price_e9 is None else 1_000_000
    return OracleUpdate(0, T, price_e9, conf, 0 if price_e9 is None else 3, session, int(flags))


@pytest.mark.parametrize("price_e9, expected", [
    (187_123_456_789, Decimal("187.12")),  # 0.3457 of a tick: down
    (187_125_000_000, Decimal("187.12")),  # half a tick: to the even tick
    (187_135_000_000, Decimal("187.14")),
    (187_129_999_999, Decimal("187.13")),
    (4_999_999, None),  # under half a tick: no price
    (5_000_001, Decimal("0.01")),
])
def test_price_goes_to_the_nearest_tick(price_e9, expected):
    assert to_engine_command(update(price_e9), SPEC) == EngineOracleUpdate(0, expected, T, 0)


@pytest.mark.parametrize("session", [Session.CLOSED_WEEKEND, Session.CLOSED_HOLIDAY, Session.CLOSED_OFF_HOURS])
def test_closed_sessions_set_the_closed_flag(session):
    assert to_engine_command(update(None, session), SPEC).flags == OracleFlag.CLOSED


@pytest.mark.parametrize("session", [Session.REGULAR, Session.PRE, Session.POST, Session.OVERNIGHT, Session.HALTED])
def test_open_sessions_do_not(session):
    assert to_engine_command(update(None, session), SPEC).flags == 0


def test_only_the_breaker_of_the_oracle_flags_reaches_the_engine():
    flags = AggFlag.BREAKER | AggFlag.BREAKER_MOVE | AggFlag.CLAMPED | ServiceFlag.SPLIT_APPLIED
    assert to_engine_command(update(100_000_000_000, flags=flags), SPEC).flags == OracleFlag.BREAKER
    assert to_engine_command(update(100_000_000_000, flags=AggFlag.LOW_QUORUM), SPEC).flags == 0


def test_converted_updates_drive_an_engine_dark_and_back():
    engine = ReferenceEngine([SPEC], EngineConfig(max_orders=16, max_accounts=4, risk=True, modes=True))
    second = 1_000_000_000

    def send(price_e9, session, k):
        cmd = to_engine_command(OracleUpdate(0, T + k * second, price_e9, None, 0, session, 0), SPEC)
        engine.apply([cmd])

    send(100_000_000_000, Session.POST, 0)
    send(None, Session.CLOSED_OFF_HOURS, 1)
    assert engine.mode(0).mode == MarketMode.INTERNAL
    for k in range(2, 18):
        send(100_500_000_000, Session.PRE, k)
    assert engine.mode(0).mode == MarketMode.EXTERNAL
    assert engine.oracle(0) == 10_050
