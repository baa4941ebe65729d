"""The gateway's fast wire -> record conversion (``api.records``) gives the same records, byte
for byte, as the engine's own (``api.actions.to_records``), for every action kind, clean
or pre-rejected."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api import actions
from api import protocol as p
from api.records import RecordWriter
from gateway_harness import SPECS

MARKETS = actions.Markets(SPECS)
WRITER = RecordWriter(MARKETS)
LONG = "x" * 33

PLACES = [
    p.Place("NVDA", "buy", "1.5", "101.25"),
    p.Place("NVDA", "sell", "0.001", "99.99", tif="alo", cloid="c-1"),
    p.Place("TSLA", "buy", "2", "250.05", tif="ioc", stp="expire_both", reduceOnly=True),
    p.Place("TSLA", "sell", "0.01", "250", tif="fok", stp="expire_taker", cloid="é" * 16),
    p.Place("NVDA", "buy", "3", orderType="market"),
    p.Place("NVDA", "buy", "3", "100", orderType="market"),  # a market order with a price
    p.Place("NVDA", "buy", "3"),  # a limit without a price
    p.Place("NVDA", "buy", "3", "100.001"),  # off tick
    p.Place("NVDA", "buy", "0.0001", "100"),  # off lot
    p.Place("NVDA", "buy", "0", "100"),
    p.Place("NVDA", "buy", "-1", "-100"),
    p.Place("NVDA", "buy", "1", "1e30"),  # beyond int64
    p.Place("AAPL", "buy", "1", "100"),  # unknown market
    p.Place("NVDA", "buy", "1", "100", cloid=LONG),
    p.Place("NVDA", "buy", "1", "100", cloid="a\x00b"),
    p.Place("NVDA", "buy", "1", "100", expiresAt=1_780_000_000_000),
    p.Place("NVDA", "buy", "1", "100", expiresAt=-5),
    p.Place("NVDA", "buy", "1", "100", expiresAt=1 << 62),
]
CANCELS = [
    p.Cancel("NVDA", oid=7),
    p.Cancel("NVDA", cloid="c-1"),
    p.Cancel("TSLA", oid=3, cloid="c-2"),
    p.Cancel("NVDA"),  # neither oid nor cloid
    p.Cancel("NVDA", oid=-1),
    p.Cancel("NVDA", oid=1 << 63),
    p.Cancel("AAPL", oid=7),
    p.Cancel("NVDA", cloid=LONG),
]
AMENDS = [
    p.Amend("NVDA", oid=7, price="101"),
    p.Amend("NVDA", cloid="c-1", size="0.5"),
    p.Amend("TSLA", oid=3, price="250.1", size="1.01"),
    p.Amend("NVDA", oid=7),
    p.Amend("NVDA", oid=7, price="0"),
    p.Amend("NVDA", oid=7, size="-1"),
    p.Amend("NVDA", oid=7, price="100.001"),
    p.Amend("NVDA", price="100"),
    p.Amend("AAPL", oid=7, price="100"),
]
OTHERS = [
    p.CancelAll(),
    p.CancelAll("NVDA"),
    p.CancelAll("AAPL"),
    p.PlaceTrigger("NVDA", "sell", "95", size="1"),
    p.PlaceTrigger("NVDA", "buy", "105", kind="take_profit", orderType="limit", price="104", triggerOn="last"),
    p.CancelTrigger("NVDA", 4),
    p.ScheduleCancel(1_780_000_000_000),
    p.ScheduleCancel(None),
    p.SetLeverage("NVDA", 5),
    p.SetLeverage("NVDA", 0),
    p.SetLeverage("AAPL", 5),
    p.SetMarginMode("NVDA", "isolated"),
    p.SetMarginMode("NVDA", "cross"),
    p.AdjustMargin("NVDA", "12.5"),
    p.AdjustMargin("NVDA", "-0.000001"),
    p.AdjustMargin("NVDA", "0.0000001"),
    p.Withdraw("100"),
    p.Withdraw("-1"),
]
ITEMS = PLACES + CANCELS + AMENDS


@pytest.mark.parametrize("action", ITEMS + OTHERS, ids=repr)
def test_each_action_gives_the_engine_conversions_records(action) -> None:
    for account in (1, 0, 2**31 - 1, 2**31, -1):
        fast, slow = WRITER.records(action, account), actions.to_records(action, account, MARKETS)
        assert fast.dtype == slow.dtype
        assert fast.tobytes() == slow.tobytes(), (fast, slow)


def test_a_batch_of_every_item_kind_gives_the_same_records() -> None:
    batch = p.Batch(ITEMS)
    fast, slow = WRITER.records(batch, 3), actions.to_records(batch, 3, MARKETS)
    assert len(fast) == len(ITEMS) + 1
    assert fast.tobytes() == slow.tobytes()
    assert list(fast["pre_reject"]) == list(slow["pre_reject"])


def test_the_conversion_cache_gives_the_same_answer_twice() -> None:
    writer = RecordWriter(MARKETS)
    first = writer.records(p.Batch(PLACES + PLACES), 1)
    assert first[1 : 1 + len(PLACES)].tobytes() == first[1 + len(PLACES) :].tobytes()


decimals = st.one_of(st.decimals(min_value=-10**6, max_value=10**6, places=4, allow_nan=False).map(str),
                     st.sampled_from(["0", "1e3", "1E-3", "0.010", "100.00", "9" * 25]))
cloids = st.one_of(st.none(), st.text(min_size=0, max_size=12), st.sampled_from([LONG, "z" * 32]))
symbols = st.sampled_from(["NVDA", "TSLA", "AAPL"])
places = st.builds(p.Place, symbols, st.sampled_from(["buy", "sell"]), decimals, st.one_of(st.none(), decimals),
                   orderType=st.sampled_from(["limit", "market"]), tif=st.sampled_from(["gtc", "ioc", "fok", "alo"]),
                   stp=st.sampled_from(["expire_maker", "expire_taker", "expire_both"]), cloid=cloids,
                   expiresAt=st.one_of(st.none(), st.integers(-10, 1 << 45)), reduceOnly=st.booleans())
cancels = st.builds(p.Cancel, symbols, oid=st.one_of(st.none(), st.integers(-2, 1 << 64)), cloid=cloids)
amends = st.builds(p.Amend, symbols, oid=st.one_of(st.none(), st.integers(-2, 100)), cloid=cloids,
                   price=st.one_of(st.none(), decimals), size=st.one_of(st.none(), decimals))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(places, cancels, amends), min_size=1, max_size=50))
def test_random_batches_give_the_same_records(items) -> None:
    for action in (p.Batch(items), items[0]):
        assert WRITER.records(action, 5).tobytes() == actions.to_records(action, 5, MARKETS).tobytes()
