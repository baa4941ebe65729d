"""engine.margin against the slow, literal spec formulas on Fractions (mechanics.md §2)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.margin import (
    MAX_TIER_LEV,
    MAX_TIERS,
    check_tiers,
    initial_margin_atoms,
    maintenance_margin_atoms,
    max_leverage,
    tier_of,
)

INT64_MAX = (1 << 63) - 1
USD = 1_000_000  # atoms

SPEC_LOWER = np.array([0, 20_000_000 * USD], dtype=np.int64)
SPEC_LEV = np.array([10, 5], dtype=np.int64)


# --- the slow, obvious version: the spec's formulas, literally ------------------------


def naive_tier(notional: int, lower: list[int]) -> int:
    return max(k for k, lo in enumerate(lower) if notional >= lo)


def naive_mm(notional: int, lower: list[int], lev: list[int]) -> Fraction:
    mmr = [Fraction(1, 2 * x) for x in lev]
    deduction = [Fraction(0)]
    for n in range(1, len(lower)):
        deduction.append(deduction[n - 1] + lower[n] * (mmr[n] - mmr[n - 1]))
    t = naive_tier(notional, lower)
    return notional * mmr[t] - deduction[t]


# --- strategies ----------------------------------------------------------------------


@st.composite
def tier_tables(draw):
    n = draw(st.integers(1, MAX_TIERS))
    bounds = sorted(draw(st.sets(st.integers(1, INT64_MAX), min_size=n - 1, max_size=n - 1)))
    lev = draw(st.lists(st.integers(1, MAX_TIER_LEV), min_size=n, max_size=n))
    return [0, *bounds], lev


notionals = st.one_of(
    st.integers(0, INT64_MAX),
    st.integers(0, 10**12),
    st.sampled_from([0, 1, INT64_MAX, INT64_MAX - 1]),
)


def arrays(lower, lev):
    return np.array(lower, dtype=np.int64), np.array(lev, dtype=np.int64)


# --- worked examples -----------------------------------------------------------------


@pytest.mark.parametrize(
    "notional_usd, mm_usd",
    [(30_000_000, 2_000_000), (20_000_000, 1_000_000), (10_000_000, 500_000), (0, 0)],
    ids=["30M_in_5x_tier", "20M_at_boundary", "10M_in_10x_tier", "zero"],
)
def test_spec_example_mm(notional_usd, mm_usd):
    mm = maintenance_margin_atoms(notional_usd * USD, SPEC_LOWER, SPEC_LEV)
    assert mm == mm_usd * USD


def test_spec_example_boundary_both_formulas_agree():
    boundary = 20_000_000 * USD
    lower_formula = Fraction(boundary, 2 * 10)  # notional · mmr(0) − 0
    upper_formula = Fraction(boundary, 2 * 5) - boundary * (Fraction(1, 10) - Fraction(1, 20))
    assert lower_formula == upper_formula == 1_000_000 * USD
    assert tier_of(boundary, SPEC_LOWER) == 1
    assert tier_of(boundary - 1, SPEC_LOWER) == 0
    assert max_leverage(boundary, SPEC_LOWER, SPEC_LEV) == 5


def test_initial_margin_examples():
    assert initial_margin_atoms(1_000 * USD, 10) == 100 * USD
    assert initial_margin_atoms(10, 3) == 4  # 3.33… rounds up
    assert initial_margin_atoms(0, 7) == 0
    assert initial_margin_atoms(INT64_MAX, 1) == INT64_MAX
    assert initial_margin_atoms(INT64_MAX, 2) == (INT64_MAX + 1) // 2


def test_mm_extremes_do_not_overflow():
    lower, lev = arrays(
        [0, 1, 10**18, INT64_MAX - 1], [MAX_TIER_LEV, MAX_TIER_LEV - 1, MAX_TIER_LEV - 3, 1]
    )
    for notional in (0, 1, 10**18, INT64_MAX - 1, INT64_MAX):
        exact = naive_mm(notional, lower.tolist(), lev.tolist())
        assert maintenance_margin_atoms(notional, lower, lev) == math.ceil(exact)


# --- properties ----------------------------------------------------------------------


@given(tier_tables(), notionals)
def test_mm_is_exact_value_rounded_up(table, notional):
    lower, lev = table
    exact = naive_mm(notional, lower, lev)
    mm = int(maintenance_margin_atoms(notional, *arrays(lower, lev)))  # np.int64 without JIT
    assert mm == math.ceil(exact)
    assert exact <= mm < exact + 1  # never in the trader's favour, never by a whole atom


@given(tier_tables(), notionals)
def test_tier_of_matches_naive(table, notional):
    lower, lev = table
    t = tier_of(notional, arrays(lower, lev)[0])
    assert t == naive_tier(notional, lower)
    assert max_leverage(notional, *arrays(lower, lev)) == lev[t]


@given(st.integers(0, INT64_MAX), st.integers(1, 10_000))
def test_im_is_exact_value_rounded_up(notional, lev):
    assert initial_margin_atoms(notional, lev) == math.ceil(Fraction(notional, lev))


@given(tier_tables())
def test_valid_tables_pass_check(table):
    check_tiers(*arrays(*table))


@pytest.mark.parametrize(
    "lower, lev",
    [
        ([1, 10], [10, 5]),  # first bound not 0
        ([0, 10, 10], [10, 5, 2]),  # not strictly increasing
        ([0, 10], [10, 0]),  # leverage below 1
        ([0], [MAX_TIER_LEV + 1]),  # leverage above the bound
        ([0, 1, 2, 3, 4], [5, 4, 3, 2, 1]),  # too many tiers
        ([0, 10], [10]),  # length mismatch
    ],
    ids=["first_not_zero", "not_increasing", "lev_zero", "lev_too_big", "five_tiers", "ragged"],
)
def test_invalid_tables_rejected(lower, lev):
    with pytest.raises(ValueError):
        check_tiers(np.array(lower, dtype=np.int64), np.array(lev, dtype=np.int64))
