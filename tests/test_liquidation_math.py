"""engine.liquidation kernels against exact Fractions (mechanics.md §5): the prices, and the
exact comparison and pro-rata share of auto-deleveraging."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.liquidation import (
    PPB,
    abr_ppb,
    bankruptcy_price_ticks,
    fillable_price_ticks,
    liquidation_price_ticks,
    pro_rata_ceil,
    ratio_cmp,
)
from engine.spec import MAX_POSITION_LOTS

INT64_MAX = (1 << 63) - 1
BOUND = (1 << 62) - 1  # |price|, |equity|, |margin_available| bound of the module
MM_BOUND = 9 * 10**17
USD = 1_000_000  # atoms


# --- the slow, obvious versions --------------------------------------------------------


def toward(exact: Fraction, size: int) -> int:
    """Round a price toward the current price: up for a long, down for a short."""
    return math.ceil(exact) if size > 0 else math.floor(exact)


def naive_bankruptcy(size, mark, equity, atl) -> Fraction:
    return mark - Fraction(equity, size * atl)


def naive_abr(equity, mm) -> Fraction:
    if mm <= 0:
        return Fraction(0)
    return max(Fraction(0), min(Fraction(1), 1 - Fraction(equity, mm)))


def naive_fillable(size, mark, equity, mm, atl) -> Fraction:
    side = 1 if size > 0 else -1
    return mark - side * naive_abr(equity, mm) * Fraction(3, 2) * mm / (abs(size) * atl)


def naive_liq(size, price, avail, atl, max_lev) -> Fraction:
    side = 1 if size > 0 else -1
    l = Fraction(1, 2 * max_lev)
    return price - side * Fraction(avail, abs(size) * atl) / (1 - l * side)


# --- worked examples -------------------------------------------------------------------


def test_dydx_example():
    # long 1 at oracle 50,000 (tick $1, lot 1: 1e6 atoms per tick-lot), MM 600, equity 300
    atl = USD
    assert bankruptcy_price_ticks(1, 50_000, 300 * USD, atl) == 49_700
    assert abr_ppb(300 * USD, 600 * USD) == PPB // 2
    assert fillable_price_ticks(1, 50_000, 300 * USD, 600 * USD, atl) == 49_550


def test_dydx_example_mirrored_short():
    atl = USD
    assert bankruptcy_price_ticks(-1, 50_000, 300 * USD, atl) == 50_300
    assert fillable_price_ticks(-1, 50_000, 300 * USD, 600 * USD, atl) == 50_450


def test_hyperliquid_liquidation_price_example():
    # isolated long 10 at 100.00 with 10× (margin 100), max lev 20 (mmr 2.5%):
    # available = 100 − 25 = 75; liq = 100 − 75/10/0.975 = 92.3077 → 92.31 (tick $0.01)
    atl = 10_000  # $0.01 × 1 unit = 10,000 atoms per tick-lot
    liq = liquidation_price_ticks(10, 10_000, 75 * USD, atl, 20)
    assert liq == 9_231
    exact = naive_liq(10, 10_000, 75 * USD, atl, 20)
    equity = 100 * USD + 10 * (exact - 10_000) * atl
    mm = 10 * exact * atl / 40
    assert equity == mm and round(equity / USD, 2) == Fraction(2308, 100)


@pytest.mark.parametrize(
    "equity, mm, expected",
    [(700, 600, 0), (600, 600, 0), (0, 600, PPB), (-5, 600, PPB), (1, 3, 666_666_666), (5, 0, 0)],
    ids=["above_mm", "at_mm", "zero_equity", "negative", "two_thirds_down", "no_mm"],
)
def test_abr_table(equity, mm, expected):
    assert abr_ppb(equity, mm) == expected


def test_extremes():
    assert bankruptcy_price_ticks(INT64_MAX, BOUND, BOUND, 1) == BOUND - 0
    assert bankruptcy_price_ticks(1, BOUND, -BOUND, 1) == 2 * BOUND
    assert abr_ppb(1, MM_BOUND) == PPB - 1
    assert fillable_price_ticks(1, BOUND, -BOUND, MM_BOUND, 1) == BOUND - 3 * MM_BOUND // 2
    assert liquidation_price_ticks(1, BOUND, BOUND, 1, 1) == BOUND - 2 * BOUND
    assert liquidation_price_ticks(-1, 0, -BOUND, 1, 1) == math.floor(naive_liq(-1, 0, -BOUND, 1, 1))


# --- properties ------------------------------------------------------------------------


@st.composite
def sized(draw):
    """(signed size, atl) with 1 ≤ |size|·atl ≤ INT64_MAX."""
    atl = draw(st.one_of(st.integers(1, 10**6), st.integers(1, INT64_MAX)))
    mag = draw(st.one_of(st.integers(1, INT64_MAX // atl), st.integers(1, min(1000, INT64_MAX // atl))))
    return draw(st.sampled_from([mag, -mag])), atl


money = st.one_of(st.integers(-BOUND, BOUND), st.integers(-(10**12), 10**12))
prices = st.one_of(st.integers(1, BOUND), st.integers(1, 10**7))
mms = st.one_of(st.integers(0, MM_BOUND), st.integers(0, 10**10))


@given(sized(), prices, money)
def test_bankruptcy_rounded_toward_mark_and_solvent(pos, mark, equity):
    size, atl = pos
    p = bankruptcy_price_ticks(size, mark, equity, atl)
    assert p == toward(naive_bankruptcy(size, mark, equity, atl), size)
    assert equity + size * (p - mark) * atl >= 0  # closing at p needs no insurance fund


@given(money, mms)
def test_abr_is_exact_rounded_down(equity, mm):
    assert abr_ppb(equity, mm) == math.floor(naive_abr(equity, mm) * PPB)


@given(sized(), prices, money, mms)
def test_fillable_rounded_toward_mark(pos, mark, equity, mm):
    size, atl = pos
    exact = naive_fillable(size, mark, equity, mm, atl)
    p = fillable_price_ticks(size, mark, equity, mm, atl)
    assert p == toward(exact, size)
    assert (p >= exact) if size > 0 else (p <= exact)  # never beyond the exact limit


@given(sized(), prices, money, st.one_of(st.integers(1, 1000), st.integers(1, 1 << 61)))
def test_liquidation_price_rounded_toward_price(pos, price, avail, max_lev):
    size, atl = pos
    exact = naive_liq(size, price, avail, atl, max_lev)
    assert liquidation_price_ticks(size, price, avail, atl, max_lev) == toward(exact, size)


@given(
    st.integers(1, 10**6).flatmap(lambda m: st.tuples(st.just(m), st.sampled_from([m, -m]))),
    st.integers(1, 10**6),
    st.integers(1, 10**4),
    st.integers(0, 10**12),
    st.integers(1, 100),
)
def test_liquidation_price_is_the_maintenance_crossing(sz, price, atl, avail, max_lev):
    _, size = sz
    l = Fraction(1, 2 * max_lev)
    margin = avail + abs(size) * price * atl * l  # avail = margin − MM(price)

    def excess(p):  # equity − MM at price p
        return margin + size * (p - price) * atl - abs(size) * p * atl * l

    p = liquidation_price_ticks(size, price, avail, atl, max_lev)
    beyond = p - 1 if size > 0 else p + 1
    assert excess(p) >= 0 and excess(beyond) < 0  # never late, and exactly one tick early at most


# --- auto-deleveraging: ranking comparison and shares -----------------------------------


def sign(x) -> int:
    return (x > 0) - (x < 0)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ((90, 130), (116, 216), 1),  # 0.692 > 0.537
        ((3, 9), (1, 3), 0),  # equal keys: the caller breaks the tie by account
        ((0, 5), (0, 7), 0),
        ((1, 10**18), (0, 1), 1),
        ((-1, 10**18), (0, 1), -1),
        ((-2, 3), (-3, 4), 1),  # −0.667 > −0.75
        ((BOUND, BOUND - 1), (BOUND - 1, BOUND - 2), -1),  # 1 + 1/(B−1) < 1 + 1/(B−2)
    ],
)
def test_ratio_cmp_table(a, b, expected):
    assert ratio_cmp(a[0], a[1], b[0], b[1]) == expected
    assert ratio_cmp(b[0], b[1], a[0], a[1]) == -expected


signed_money = st.integers(-BOUND, BOUND)
positive_money = st.integers(1, BOUND)


@given(signed_money, positive_money, signed_money, positive_money)
def test_ratio_cmp_is_exact(na, da, nb, db):
    assert ratio_cmp(na, da, nb, db) == sign(Fraction(na, da) - Fraction(nb, db))


@given(signed_money, positive_money, st.integers(1, 1 << 20))
def test_ratio_cmp_sees_equal_fractions_in_other_terms(num, den, k):
    """``num/den`` against ``(num·k)/(den·k)`` and its neighbours one unit away."""
    if abs(num) * k > BOUND or den * k > BOUND:
        return
    assert ratio_cmp(num, den, num * k, den * k) == 0
    assert ratio_cmp(num, den, num * k + 1, den * k) == -1
    assert ratio_cmp(num, den, num * k - 1, den * k) == 1


lots = st.integers(1, MAX_POSITION_LOTS)


@given(st.integers(0, BOUND), lots, lots)
def test_pro_rata_share_is_the_exact_share_rounded_up(total, part, whole):
    part, whole = min(part, whole), max(part, whole)
    assert pro_rata_ceil(total, part, whole) == math.ceil(Fraction(total * part, whole))


@given(st.integers(0, BOUND), st.lists(st.integers(1, MAX_POSITION_LOTS // 8), min_size=1, max_size=8))
def test_sequential_shares_add_up_to_the_whole_need(need, closes):
    """ADL's shares: each ``⌈need left · q / lots left⌉`` of what is still needed; the last close
    pays exactly the rest, so the sum is the need, and every share is less than one atom above
    its exact part of the original need (what was rounded up before only lowers the rest)."""
    whole = sum(closes)
    left, remaining, paid = need, whole, []
    for q in closes:
        share = pro_rata_ceil(left, q, remaining)
        paid.append(share)
        left -= share
        remaining -= q
    assert sum(paid) == need and left == 0
    assert all(share < Fraction(need * q, whole) + 1 for share, q in zip(paid, closes))
