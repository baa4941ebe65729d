"""Impact prices (engine/impact.py) against a slow walk of ``Engine.depth`` in exact fractions,
and the worked example below."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from engine_helpers import NVDA, SMALL_CONFIG, ask, bid
from hypothesis import given
from hypothesis import strategies as st

from engine.codes import EventKind
from engine.commands import SetMark
from engine.engine import Engine
from engine.units import ATOMS_PER_USD

SIX_THOUSAND_USD = 6_000 * ATOMS_PER_USD
BIDS, ASKS = 0, 1


def slow_impact_price(depth: list[tuple[int, int]], atoms_per_tick_lot: int, notional_atoms: int, side: int) -> int:
    """Walk the levels best first; take whole levels while they fall short, then the lots the
    rest needs (rounded up); the exact average, floored for bids and ceiled for asks."""
    need, price_lots, lots = notional_atoms, 0, 0
    for price, qty in depth:
        take = min(qty, math.ceil(Fraction(need, price * atoms_per_tick_lot)))
        price_lots += price * take
        lots += take
        need -= take * price * atoms_per_tick_lot
        if need <= 0:
            average = Fraction(price_lots, lots)
            return math.floor(average) if side == BIDS else math.ceil(average)
    return 0


def engine_with(orders) -> Engine:
    engine = Engine([NVDA], SMALL_CONFIG)
    events = engine.apply([SetMark(market=0, price=Decimal("100.00")), *orders])
    assert int(EventKind.REJECTED) not in set(events["kind"].tolist()), "the test's book must place without rejects"
    return engine


def test_worked_example_impact_ask_for_six_thousand_dollars():
    # 30 shares at 100.00 give $3,000; the other $3,000 at 100.10 is 29.97003 shares, so
    # 29,971 lots of 0.001. Average = (10000·30000 + 10010·29971) / 59971 = 10004.998… -> 10005.
    engine = engine_with([ask(1, "30", "100.00"), ask(2, "50", "100.10")])
    assert engine.impact_price(0, ASKS, SIX_THOUSAND_USD) == 10005


def test_worked_example_impact_bid_is_floored():
    # The mirror image on the bids: 30 shares at 100.00, then 29.97 shares' worth... at 99.90:
    # (10000·30000 + 9990·30031) / 60031 = 9994.997… -> 9994.
    engine = engine_with([bid(1, "30", "100.00"), bid(2, "50", "99.90")])
    assert engine.impact_price(0, BIDS, SIX_THOUSAND_USD) == 9994
    assert slow_impact_price(engine.depth(0, BIDS), NVDA.atoms_per_tick_lot, SIX_THOUSAND_USD, BIDS) == 9994


def test_a_side_without_the_depth_has_no_impact_price():
    engine = engine_with([ask(1, "10", "100.00"), bid(2, "59", "99.00")])
    assert engine.impact_price(0, ASKS, SIX_THOUSAND_USD) == 0  # $1,000 of asks
    assert engine.impact_price(0, BIDS, SIX_THOUSAND_USD) == 0  # $5,841 of bids
    assert engine_with([]).impact_price(0, BIDS, 1) == 0


def test_exactly_enough_depth_fills_at_that_level():
    engine = engine_with([ask(1, "60", "100.00")])
    assert engine.impact_price(0, ASKS, SIX_THOUSAND_USD) == 10000


@pytest.mark.parametrize("notional", [0, -1, (1 << 61) + 1])
def test_an_impact_notional_out_of_range_is_refused(notional):
    with pytest.raises(ValueError):
        engine_with([]).impact_price(0, ASKS, notional)


@given(
    levels=st.lists(st.tuples(st.integers(-200, 200), st.integers(1, 40_000)), min_size=1, max_size=25),
    notional_usd=st.integers(1, 20_000),
)
def test_equals_the_slow_walk_on_random_books(levels, notional_usd):
    orders = [
        (bid if offset < 0 else ask)(1 + i % 5, str(Decimal(lots).scaleb(-3)), str(Decimal(10_000 + offset).scaleb(-2)))
        for i, (offset, lots) in enumerate(levels)
        if offset != 0 and lots * (10_000 + offset) * NVDA.atoms_per_tick_lot >= NVDA.min_notional_atoms
    ]
    engine = engine_with(orders)
    notional = notional_usd * ATOMS_PER_USD
    for side in (BIDS, ASKS):
        expected = slow_impact_price(engine.depth(0, side), NVDA.atoms_per_tick_lot, notional, side)
        assert engine.impact_price(0, side, notional) == expected
