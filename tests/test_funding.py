"""engine.funding against the slow, literal spec formulas on Fractions (mechanics.md §4)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.funding import (
    CLAMP_8H_PPB,
    INTEREST_8H_PPB,
    MAX_PRICE_TICKS,
    PPB,
    PPM,
    PREMIUM_CAP_PPB,
    RATE_CAP_1H_PPB,
    funding_payment_atoms,
    funding_rate_ppb,
    premium_mean_ppb,
    premium_ppb,
)

INT64_MAX = (1 << 63) - 1
USD = 1_000_000  # atoms


# --- the slow, obvious version ---------------------------------------------------------


def trunc(x: Fraction) -> int:
    return math.floor(x) if x >= 0 else math.ceil(x)


def clamp(x, lo, hi):
    return max(lo, min(hi, x))


def naive_premium(bid: int, ask: int, oracle: int) -> Fraction:
    up = max(bid - oracle, 0) if bid > 0 else 0
    down = max(oracle - ask, 0) if ask > 0 else 0
    return Fraction(up - down, oracle)


def naive_rate(mean: Fraction, multiplier: Fraction) -> Fraction:
    r, c = Fraction(1, 10_000), Fraction(5, 10_000)
    f8h = mean + clamp(r - mean, -c, c)
    return clamp(multiplier * f8h / 8, Fraction(-4, 100), Fraction(4, 100))


def naive_payment(size: int, price: int, atl: int, rate: Fraction) -> Fraction:
    """The trader's exact credit in atoms."""
    return -size * price * atl * rate


# --- worked examples -------------------------------------------------------------------


def test_hyperliquid_example():
    # oracle 10,000, impact bid 10,100 -> p = 1%; F8h = 0.95%; hourly 0.11875%
    p = premium_ppb(10_100, 0, 10_000)
    assert p == PPB // 100
    rate = funding_rate_ppb(premium_mean_ppb(720 * p, 720), PPM)
    assert rate == 1_187_500  # 0.11875% in ppb
    # a 10-unit long at 10,000 (tick $1, lot 1 unit: 1e6 atoms per tick-lot) pays $118.75
    assert funding_payment_atoms(10, 10_000, USD, rate) == -118_750_000
    assert funding_payment_atoms(-10, 10_000, USD, rate) == 118_750_000


def test_binance_example():
    # P̄ = 0.0429% -> F8h = 0.0429% + clamp(−0.0329%) = 0.0100%; with multiplier 8 the
    # hourly rate equals F8h, which makes F8h visible
    assert funding_rate_ppb(429_000, 8 * PPM) == 100_000
    assert funding_rate_ppb(429_000, PPM) == 12_500  # 0.01% / 8


def test_constants_locked():
    assert (INTEREST_8H_PPB, CLAMP_8H_PPB, RATE_CAP_1H_PPB) == (100_000, 500_000, 40_000_000)


@pytest.mark.parametrize(
    "bid, ask, oracle, expected_ppb",
    [
        (0, 0, 100, 0),  # no depth either side
        (99, 101, 100, 0),  # book straddles the oracle
        (0, 99, 100, -10_000_000),  # ask below oracle: −1%
        (102, 0, 100, 20_000_000),  # bid above oracle: +2%
        (MAX_PRICE_TICKS, 0, 1, PREMIUM_CAP_PPB),  # clamped sample
        (0, 1, MAX_PRICE_TICKS, -(PPB - 1)),  # ask near zero: just above −100%, truncated
        (4, 0, 3, 333_333_333),  # 1/3 truncated
        (0, 2, 3, -333_333_333),  # −1/3 truncated toward zero
    ],
    ids=["empty", "straddle", "ask_below", "bid_above", "cap", "ask_tiny", "third", "neg_third"],
)
def test_premium_table(bid, ask, oracle, expected_ppb):
    assert premium_ppb(bid, ask, oracle) == expected_ppb


def test_rate_caps_and_extremes():
    assert funding_rate_ppb(10**18, PPM) == RATE_CAP_1H_PPB
    assert funding_rate_ppb(-(10**18), PPM) == -RATE_CAP_1H_PPB
    assert funding_rate_ppb(10**18, INT64_MAX) == RATE_CAP_1H_PPB
    assert funding_rate_ppb(10**18, 0) == 0
    # P̄ = 32.05% -> F8h = 32% -> exactly the cap (F8h·m = 3.2e14); one ppb less is below it
    assert funding_rate_ppb(320_500_000, PPM) == RATE_CAP_1H_PPB
    assert funding_rate_ppb(320_500_008, PPM) == RATE_CAP_1H_PPB
    assert funding_rate_ppb(320_499_992, PPM) == RATE_CAP_1H_PPB - 1


def test_payment_extremes():
    assert funding_payment_atoms(INT64_MAX, 1, 1, PPB) == -INT64_MAX
    assert funding_payment_atoms(-INT64_MAX, 1, 1, PPB) == INT64_MAX
    assert funding_payment_atoms(INT64_MAX, 1, 1, -PPB) == INT64_MAX
    assert funding_payment_atoms(1, 1, 1, 1) == -1  # a payer's fraction of an atom is an atom
    assert funding_payment_atoms(-1, 1, 1, 1) == 0  # a receiver's is nothing
    assert funding_payment_atoms(0, 10, 10, PPB) == 0


# --- properties ------------------------------------------------------------------------

prices = st.one_of(st.integers(1, MAX_PRICE_TICKS), st.integers(1, 100_000))
impact = st.one_of(st.just(0), prices)


@given(impact, impact, prices)
def test_premium_is_exact_truncated_and_clamped(bid, ask, oracle):
    exact = naive_premium(bid, ask, oracle) * PPB
    assert premium_ppb(bid, ask, oracle) == clamp(trunc(exact), -PREMIUM_CAP_PPB, PREMIUM_CAP_PPB)


@given(st.integers(-PREMIUM_CAP_PPB * 720, PREMIUM_CAP_PPB * 720), st.integers(1, 9_000_000))
def test_mean_is_exact_truncated(total, n):
    assert premium_mean_ppb(total, n) == trunc(Fraction(total, n))


@given(
    st.one_of(st.integers(-(10**18), 10**18), st.integers(-(10**8), 10**8)),
    st.one_of(st.integers(0, INT64_MAX), st.integers(0, 10 * PPM)),
)
def test_rate_is_exact_truncated(mean, mult):
    exact = naive_rate(Fraction(mean, PPB), Fraction(mult, PPM)) * PPB
    assert funding_rate_ppb(mean, mult) == trunc(exact)


@st.composite
def positions(draw):
    """(size, price, atl) with |size|·price·atl ≤ INT64_MAX, the validated bound."""
    atl = draw(st.integers(1, 10**6))
    price = draw(st.integers(1, min(MAX_PRICE_TICKS, INT64_MAX // atl)))
    mag = draw(st.integers(0, INT64_MAX // (price * atl)))
    return draw(st.sampled_from([mag, -mag])), price, atl


@given(positions(), st.one_of(st.integers(-PPB, PPB), st.integers(-RATE_CAP_1H_PPB, RATE_CAP_1H_PPB)))
def test_payment_is_credit_rounded_down(pos, rate):
    size, price, atl = pos
    exact = naive_payment(size, price, atl, Fraction(rate, PPB))
    credit = funding_payment_atoms(size, price, atl, rate)
    assert credit == math.floor(exact)
    assert exact - 1 < credit <= exact  # payers pay ≥ exact, receivers get ≤ exact


@given(positions(), st.integers(-RATE_CAP_1H_PPB, RATE_CAP_1H_PPB))
def test_opposite_positions_never_create_money(pos, rate):
    size, price, atl = pos
    total = funding_payment_atoms(size, price, atl, rate) + funding_payment_atoms(-size, price, atl, rate)
    assert total in (0, -1)
