"""engine.pricing against exact Fraction/Decimal versions of mechanics §3 and oracle §6–§8."""

from __future__ import annotations

import decimal
import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.pricing import (
    DARK_MAX_LEV,
    DECAY_MAX_ERROR_E18,
    DECAY_ONE,
    DECAY_ZERO_TAUS,
    EMA_MAX_SAMPLE_TICKS,
    EMA_MAX_WEIGHT,
    EMA_ONE,
    EMA_WEIGHT_PER_TAU,
    EXP_NEG_BYTE_E18,
    EXP_NEG_WHOLE_E18,
    INTERNAL_TAU_NS,
    MARK_EMA_TAU_NS,
    MAX_RESETS,
    MAX_TAU_NS,
    OI_CAP_DARK_PPB,
    PPB,
    PREIPO_EMA_TAU_NS,
    REANCHOR_THRESHOLD_PPB,
    REOPEN_DONE_PPB,
    REOPEN_SNAP_PPB,
    REOPEN_STEP_PPB,
    band_ticks,
    book_price_ticks,
    clamp_ticks,
    dark_max_leverage,
    dark_oi_cap_atoms,
    decay_e18,
    ema_ticks,
    ema_update,
    impact_price_difference_ticks,
    internal_beta_e18,
    internal_step_ticks,
    mark_price_ticks,
    preipo_mark_ticks,
    preipo_oracle_ticks,
    reanchor,
    reanchor_reach_ticks,
    reopen_converged,
    reopen_snaps,
    reopen_step_ticks,
)

INT64_MAX = (1 << 63) - 1
S = 1_000_000_000  # ns per second
PRICE_MAX = (1 << 40) - 1
FIVE_PCT = 50_000_000  # ppb


# --- the slow, obvious versions --------------------------------------------------------

_CTX = decimal.Context(prec=90)


def exact_exp_neg(num: int, den: int) -> Fraction:
    """``e^(−num/den)`` to 80-odd digits, as a Fraction."""
    return Fraction(_CTX.exp(_CTX.minus(_CTX.divide(decimal.Decimal(num), decimal.Decimal(den)))))


def trunc(x: Fraction) -> int:
    return math.floor(x) if x >= 0 else math.ceil(x)


def clamp(x, lo, hi):
    return max(lo, min(hi, x))


def naive_ema(samples: list[tuple[int, int]], tau: int) -> Fraction:
    """The spec's ``num ← num·e^(−t/τ) + s·t, den ← den·e^(−t/τ) + t``, to 90 digits."""
    num = den = decimal.Decimal(0)
    for sample, dt in samples:
        d = _CTX.exp(_CTX.minus(_CTX.divide(decimal.Decimal(dt), decimal.Decimal(tau))))
        num = _CTX.add(_CTX.multiply(num, d), decimal.Decimal(sample * dt))
        den = _CTX.add(_CTX.multiply(den, d), decimal.Decimal(dt))
    return Fraction(_CTX.divide(num, den))


def naive_book(bid: int, ask: int, last: int, oracle: int) -> int:
    present = sorted(p for p in (bid, ask, last) if p > 0)
    if len(present) == 2:
        mean = Fraction(sum(present), 2)
        return math.ceil(mean) if oracle > mean else math.floor(mean)
    return present[len(present) // 2] if present else 0


def naive_mark(oracle: int, basis: int, bid: int, ask: int, last: int) -> int:
    book = naive_book(bid, ask, last, oracle)
    return oracle if book == 0 else sorted([oracle, oracle + basis, book])[1]


def naive_band(ref: int, band_ppb: int) -> tuple[int, int]:
    b = Fraction(band_ppb, PPB)
    return math.ceil(ref * (1 - b)), math.floor(ref * (1 + b))


def naive_reanchor(s, ref, band_ppb, thr_ppb, up, down, max_resets):
    low, high = naive_band(ref, band_ppb)
    if high == ref:
        return ref, up, down
    thr = Fraction(thr_ppb, PPB)
    if s >= ref + thr * (high - ref) and up < max_resets:
        return high, up + 1, down
    if s <= ref - thr * (ref - low) and down < max_resets:
        return low, up, down + 1
    return ref, up, down


def run_ema(steps, tau) -> tuple[int, int]:
    ema, weight = 0, 0
    for sample, dt in steps:
        ema, weight = ema_update(ema, weight, sample, dt, tau)
    return int(ema), int(weight)  # plain ints also when the kernels run as Python


# --- decay -----------------------------------------------------------------------------


def test_tables_are_correctly_rounded():
    for n, value in enumerate(EXP_NEG_WHOLE_E18):
        assert value == round(exact_exp_neg(n, 1) * DECAY_ONE)
    for k in range(8):
        for c in (0, 1, 2, 127, 128, 255):
            assert EXP_NEG_BYTE_E18[k, c] == round(exact_exp_neg(c, 256 ** (k + 1)) * DECAY_ONE)
    # and the decimal module agrees with the platform's libm to double precision
    for c in range(256):
        assert math.isclose(EXP_NEG_BYTE_E18[0, c] / DECAY_ONE, math.exp(-c / 256), rel_tol=1e-15)


@pytest.mark.parametrize(
    "dt, tau, expected",
    [
        (0, 150 * S, DECAY_ONE),
        (-5, 150 * S, DECAY_ONE),  # time never runs backwards: no decay
        (150 * S, 150 * S, 367_879_441_171_442_322),  # e^−1 = 0.367879441171442321595…
        (1, 10, 904_837_418_035_959_571),  # e^−0.1 = 0.904837418035959573164…
        (43 * 7, 7, 0),  # e^−43 < 2.2e-19
        (43 * 7 - 1, 7, 0),  # e^−42.857… < 2.5e-19
        (INT64_MAX, MAX_TAU_NS, 0),
        (1, MAX_TAU_NS, 999_999_999_999_999_972),  # e^(−2^−55) = 1 − 2.776e-17
    ],
    ids=["zero", "negative", "one_tau", "tenth", "cutoff", "before_cutoff", "int64_max", "tiny"],
)
def test_decay_worked_examples(dt, tau, expected):
    assert decay_e18(dt, tau) == expected


taus = st.one_of(
    st.integers(1, MAX_TAU_NS), st.integers(1, 10**4), st.sampled_from([MARK_EMA_TAU_NS, INTERNAL_TAU_NS])
)


@given(st.data(), taus)
def test_decay_is_within_its_stated_error(data, tau):
    dt = data.draw(st.one_of(st.integers(0, 44 * tau), st.integers(0, tau), st.integers(0, 10**4)))
    exact = exact_exp_neg(dt, tau) * DECAY_ONE
    d = int(decay_e18(dt, tau))
    assert 0 <= d <= DECAY_ONE
    assert abs(d - exact) <= DECAY_MAX_ERROR_E18


# --- EMA -------------------------------------------------------------------------------


def test_ema_first_sample_sets_it_and_weighs_its_interval():
    ema, weight = ema_update(0, 0, 10_000, S, MARK_EMA_TAU_NS)
    assert (ema, weight) == (10_000 * EMA_ONE, EMA_WEIGHT_PER_TAU // 150)  # ⌊2^26/150⌋ = 447,392
    assert ema_ticks(ema) == 10_000


def test_ema_two_samples_one_tau_apart():
    # 10,000 held for τ, then 20,000 for τ: (10,000·e^−1 + 20,000)/(e^−1 + 1) = 17,310.5857…
    tau = MARK_EMA_TAU_NS
    ema, weight = run_ema([(10_000, tau), (20_000, tau)], tau)
    exact = naive_ema([(10_000, tau), (20_000, tau)], tau)
    assert math.floor(exact * 10_000) == 173_105_857
    assert abs(Fraction(ema, EMA_ONE) - exact) < Fraction(1, 10_000)
    assert ema_ticks(ema) == 17_311
    e_minus_1 = Fraction(367_879_441_171_442_322, DECAY_ONE)  # decay_e18(τ, τ)
    assert weight == EMA_WEIGHT_PER_TAU + round(EMA_WEIGHT_PER_TAU * e_minus_1)


def test_ema_forgets_everything_after_43_tau():
    tau = 150 * S
    ema, weight = run_ema([(10_000, S), (20_000, 43 * tau)], tau)
    assert (ema, weight) == (20_000 * EMA_ONE, 43 * EMA_WEIGHT_PER_TAU)
    ema, weight = run_ema([(10_000, S), (20_000, INT64_MAX)], tau)
    assert (ema, weight) == (20_000 * EMA_ONE, 43 * EMA_WEIGHT_PER_TAU)


def test_ema_steady_state_and_extremes():
    # one sample a second for an hour: the weight settles near τ and the value is exact
    ema, weight = 0, 0
    for _ in range(3_600):
        ema, weight = ema_update(ema, weight, -PRICE_MAX, S, MARK_EMA_TAU_NS)
    assert ema == -PRICE_MAX * EMA_ONE
    # the weight settles where rounding den·d to nearest stops moving it: within ½/(1 − d) of
    # the exact steady state w/(1 − d) ≈ τ + ½ s (i.e. within 1.2e-6 of it, relatively)
    d = exact_exp_neg(1, 150)
    assert abs(int(weight) - (EMA_WEIGHT_PER_TAU // 150) / (1 - d)) <= 1 / (2 * (1 - d)) + 1
    # the largest weight, then the widest swings: nothing overflows and the bounds hold
    ema, weight = EMA_MAX_SAMPLE_TICKS * EMA_ONE, EMA_MAX_WEIGHT
    for sample in (-EMA_MAX_SAMPLE_TICKS, EMA_MAX_SAMPLE_TICKS) * 3:
        ema, weight = ema_update(ema, weight, sample, 1, 1 << 24)
        assert weight <= EMA_MAX_WEIGHT and abs(ema) <= EMA_MAX_SAMPLE_TICKS * EMA_ONE


def test_ema_rounds_to_nearest_halves_away_from_zero():
    half = EMA_ONE // 2
    assert [ema_ticks(x) for x in (half - 1, half, -half + 1, -half, 3 * EMA_ONE)] == [0, 1, 0, -1, 3]


samples = st.one_of(st.integers(-EMA_MAX_SAMPLE_TICKS, EMA_MAX_SAMPLE_TICKS), st.integers(9_000, 11_000))


@given(taus, st.lists(st.tuples(samples, st.integers(0, 1 << 62)), min_size=1, max_size=20))
def test_ema_stays_in_range_and_bounds(tau, steps):
    ema, weight = 0, 0
    seen = []
    for sample, dt in steps:
        ema, weight = ema_update(ema, weight, sample, dt % (50 * tau + 1), tau)
        assert 0 <= weight <= EMA_MAX_WEIGHT
        if weight:
            seen.append(sample)
            assert min(seen) <= ema_ticks(ema) <= max(seen)
            assert min(seen) * EMA_ONE <= ema <= max(seen) * EMA_ONE


@given(taus, st.lists(st.tuples(samples, st.integers(0, 1 << 62)), min_size=1, max_size=20))
def test_ema_is_odd(tau, steps):
    steps = [(s, dt % (50 * tau + 1)) for s, dt in steps]
    ema, weight = run_ema(steps, tau)
    assert run_ema([(-s, dt) for s, dt in steps], tau) == (-ema, weight)


@given(
    st.sampled_from([MARK_EMA_TAU_NS, PREIPO_EMA_TAU_NS, 1 << 30]),
    st.lists(st.tuples(samples, st.integers(1 << 10, 1 << 16)), min_size=1, max_size=12),
)
def test_ema_matches_the_spec_formula(tau, steps):
    """With every interval at least τ/1024 (weights ≥ 2^16 units), each step's weights are
    within 2^-16 relative of the exact ones: the value is within spread·n·2^-14 + 1/2^16."""
    steps = [(s, tau * k // (1 << 20)) for s, k in steps]  # dt in [τ/1024, τ/16]
    ema, _ = run_ema(steps, tau)
    exact = naive_ema(steps, tau)
    spread = max(s for s, _ in steps) - min(s for s, _ in steps)
    bound = Fraction(spread * len(steps), 1 << 14) + Fraction(1, 1 << 16)
    assert abs(Fraction(ema, EMA_ONE) - exact) <= bound


# --- mark ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "oracle, basis, bid, ask, last, expected",
    [
        (10_000, 0, 0, 0, 0, 10_000),  # no book: the oracle
        (10_000, 500, 0, 0, 0, 10_000),  # no book: the basis alone does not move it
        (10_000, 0, 10_010, 10_020, 10_100, 10_000),  # median(10,000, 10,000, 10,020)
        (10_000, 15, 10_010, 10_020, 10_100, 10_015),  # median(10,000, 10,015, 10,020)
        (10_000, 40, 10_010, 10_020, 10_100, 10_020),  # the book's median of three
        (10_000, 40, 10_010, 10_021, 0, 10_015),  # mid 10,015.5 rounded toward the oracle
        (10_100, -40, 10_010, 10_021, 0, 10_060),  # median(10,100, 10,060, 10,016)
        (10_100, 0, 10_010, 10_021, 0, 10_100),
        (10_020, -4, 10_010, 10_021, 0, 10_016),  # mid 10,015.5 → 10,016 (oracle above)
        (10_000, -500, 0, 0, 9_000, 9_500),  # only a last trade
        (10_000, 0, 9_990, 0, 0, 10_000),  # one side only
    ],
)
def test_mark_worked_examples(oracle, basis, bid, ask, last, expected):
    assert mark_price_ticks(oracle, basis, bid, ask, last) == expected


prices = st.one_of(st.integers(1, PRICE_MAX), st.integers(9_900, 10_100))
book_px = st.one_of(st.just(0), prices)


@given(prices, st.integers(-PRICE_MAX // 2, PRICE_MAX // 2), book_px, book_px, book_px)
def test_mark_is_the_median_of_its_inputs(oracle, basis, bid, ask, last):
    mark = mark_price_ticks(oracle, basis, bid, ask, last)
    assert mark == naive_mark(oracle, basis, bid, ask, last)
    book = [p for p in (bid, ask, last) if p > 0]
    inputs = [oracle, oracle + basis, *book] if book else [oracle]
    assert min(inputs) <= mark <= max(inputs)
    if book:
        trio = [oracle, oracle + basis, book_price_ticks(bid, ask, last, oracle)]
        assert mark in trio and sum(x <= mark for x in trio) >= 2 and sum(x >= mark for x in trio) >= 2
        assert min(book) <= trio[2] <= max(book)


def test_clamp():
    assert [clamp_ticks(p, 9_500, 10_500) for p in (9_000, 10_000, 11_000)] == [9_500, 10_000, 10_500]


# --- discovery band and re-anchoring: the oil example of oracle §6 --------------------


def test_oil_example_levels():
    # ±5%, threshold 90%, close 100.00 with a tick of 0.01
    assert band_ticks(10_000, FIVE_PCT) == (9_500, 10_500)
    assert reanchor_reach_ticks(10_000, FIVE_PCT, REANCHOR_THRESHOLD_PPB) == 450  # trigger 104.50
    assert band_ticks(10_500, FIVE_PCT) == (9_975, 11_025)  # 99.75–110.25
    assert reanchor_reach_ticks(10_500, FIVE_PCT, REANCHOR_THRESHOLD_PPB) == 473  # 109.725 → 109.73
    # level 2: 104.7375 rounds up to 104.74, 115.7625 rounds down to 115.76
    assert band_ticks(11_025, FIVE_PCT) == (10_474, 11_576)
    # downward: 95.00 → band 90.25–99.75, trigger 90.725 → 90.72; then 90.25 → 85.74–94.76
    assert band_ticks(9_500, FIVE_PCT) == (9_025, 9_975)
    assert 9_500 - reanchor_reach_ticks(9_500, FIVE_PCT, REANCHOR_THRESHOLD_PPB) == 9_072
    assert band_ticks(9_025, FIVE_PCT) == (8_574, 9_476)


@pytest.mark.parametrize(
    "s, ref, up, down, expected",
    [
        (10_449, 10_000, 0, 0, (10_000, 0, 0)),
        (10_450, 10_000, 0, 0, (10_500, 1, 0)),  # 90% of the way to 105.00
        (10_972, 10_500, 1, 0, (10_500, 1, 0)),  # 109.72 < 109.725
        (10_973, 10_500, 1, 0, (11_025, 2, 0)),
        (11_576, 11_025, 2, 0, (11_025, 2, 0)),  # hard cap: no third reset
        (10_474, 11_025, 2, 0, (10_474, 2, 1)),  # still one reset left downward
        (9_550, 10_000, 0, 0, (9_500, 0, 1)),
        (9_551, 10_000, 0, 0, (10_000, 0, 0)),
        (9_072, 9_500, 0, 1, (9_025, 0, 2)),
        (9_073, 9_500, 0, 1, (9_500, 0, 1)),
    ],
)
def test_oil_example_reanchoring(s, ref, up, down, expected):
    assert reanchor(s, ref, FIVE_PCT, REANCHOR_THRESHOLD_PPB, up, down, MAX_RESETS) == expected


def drive_dark(book_bid: int, book_ask: int, updates: int, dt: int = 60 * S):
    """The dark loop of oracle §6 on the oil market: step, then re-anchor, then the new band."""
    s, ref, up, down = 10_000, 10_000, 0, 0
    refs, path = [ref], [s]
    for _ in range(updates):
        low, high = band_ticks(ref, FIVE_PCT)
        s = internal_step_ticks(s, book_bid, book_ask, dt, INTERNAL_TAU_NS, low, high)
        assert low <= s <= high
        ref, up, down = reanchor(s, ref, FIVE_PCT, REANCHOR_THRESHOLD_PPB, up, down, MAX_RESETS)
        if ref != refs[-1]:
            refs.append(ref)
        path.append(s)
    return s, refs, path, (up, down)


def test_oil_book_far_above_climbs_through_both_resets_to_the_hard_cap():
    s, refs, path, resets = drive_dark(20_000, 20_010, 300)
    assert refs == [10_000, 10_500, 11_025]
    assert resets == (2, 0)
    assert path == sorted(path)  # only ever up, toward the book
    assert path.index(11_576) < 100 and path[-1] == 11_576  # reached the cap and stays there
    assert Fraction(11_576 - 10_000, 10_000) == Fraction(1_576, 10_000)  # +15.76%


def test_oil_book_far_below_falls_through_both_resets_to_the_hard_cap():
    s, refs, path, resets = drive_dark(1_000, 1_010, 300)
    assert refs == [10_000, 9_500, 9_025]
    assert resets == (0, 2)
    assert path == sorted(path, reverse=True)
    assert s == 8_574  # −14.26%


@given(prices, st.integers(0, PPB - 1))
def test_band_is_exact_and_never_widens(ref, band_ppb):
    low, high = band_ticks(ref, band_ppb)
    assert (low, high) == naive_band(ref, band_ppb)
    assert 1 <= low <= ref <= high and high - ref == ref - low
    assert low >= ref * (1 - Fraction(band_ppb, PPB)) and high <= ref * (1 + Fraction(band_ppb, PPB))


@given(
    prices,
    st.data(),
    st.one_of(st.integers(0, PPB - 1), st.sampled_from([FIVE_PCT, 100_000_000])),
    st.one_of(st.integers(1, PPB), st.just(REANCHOR_THRESHOLD_PPB)),
    st.integers(0, 3),
    st.integers(0, 3),
)
def test_reanchor_is_exact(ref, data, band_ppb, thr, up, down):
    low, high = naive_band(ref, band_ppb)
    s = data.draw(st.integers(low, high))
    got = reanchor(s, ref, band_ppb, thr, up, down, MAX_RESETS)
    assert got == naive_reanchor(s, ref, band_ppb, thr, up, down, MAX_RESETS)
    if got[0] != ref and band_ppb <= thr:  # then the price stays inside the new band
        new_low, new_high = band_ticks(got[0], band_ppb)
        assert new_low <= s <= new_high


# --- internal price step ---------------------------------------------------------------


@pytest.mark.parametrize(
    "s, bid, ask, dt, expected",
    [
        (10_000, 11_000, 11_010, 360 * S, 10_095),  # 1 000·(1 − e^−0.1) = 95.16 → 95
        (10_000, 11_000, 11_010, 7_200 * S, 10_095),  # Δt capped at τ/10
        (10_000, 8_990, 9_000, 360 * S, 9_905),  # toward the ask, rounded toward S
        (10_000, 9_990, 10_010, 360 * S, 10_000),  # book straddles S: IPD = 0
        (10_000, 11_000, 0, 360 * S, 10_095),  # no ask depth: only the bid counts
        (10_000, 0, 0, 360 * S, 10_000),  # no book at all
        (10_000, 11_000, 11_010, 0, 10_000),  # no time: β = 1
        (10_000, 11_000, 11_010, S, 10_000),  # 1 000·(1 − e^(−1/3600)) = 0.28 → 0
        (10_000, 20_000, 20_010, 360 * S, 10_500),  # 951 clamped to the band edge
    ],
)
def test_internal_step_worked_examples(s, bid, ask, dt, expected):
    assert internal_step_ticks(s, bid, ask, dt, INTERNAL_TAU_NS, 9_500, 10_500) == expected


@given(
    prices,
    book_px,
    book_px,
    st.one_of(st.integers(0, INTERNAL_TAU_NS), st.integers(0, 10 * S)),
    st.one_of(st.just(INTERNAL_TAU_NS), taus),
    st.data(),
)
def test_internal_step_is_exact_and_never_overshoots(s, bid, ask, dt, tau, data):
    low = data.draw(st.integers(1, s))
    high = data.draw(st.integers(s, PRICE_MAX))
    beta = int(internal_beta_e18(dt, tau))
    assert abs(beta - exact_beta(dt, tau)) <= DECAY_MAX_ERROR_E18
    ipd = impact_price_difference_ticks(s, bid, ask)
    nxt = internal_step_ticks(s, bid, ask, dt, tau, low, high)
    assert nxt == clamp(s + trunc(ipd * Fraction(DECAY_ONE - beta, DECAY_ONE)), low, high)
    assert low <= nxt <= high
    assert min(s, s + ipd) <= nxt <= max(s, s + ipd)  # toward the book, never past it


def exact_beta(dt: int, tau: int) -> Fraction:
    x = min(Fraction(dt), Fraction(tau, 10))
    return exact_exp_neg(x.numerator, x.denominator * tau) * DECAY_ONE


# --- reopen ----------------------------------------------------------------------------


def test_reopen_worked_examples():
    # snap: |E/S − 1| ≤ 1%, inclusive
    assert reopen_snaps(10_000, 10_100, REOPEN_SNAP_PPB) and reopen_snaps(10_000, 9_900, REOPEN_SNAP_PPB)
    assert not reopen_snaps(10_000, 10_101, REOPEN_SNAP_PPB)
    # converged: |S/E − 1| < 0.1%, strict
    assert not reopen_converged(9_990, 10_000, REOPEN_DONE_PPB)
    assert reopen_converged(9_991, 10_000, REOPEN_DONE_PPB)
    assert reopen_converged(10_000, 10_000, REOPEN_DONE_PPB)
    # an 8% gap: 50 bps of S per update, rounded down
    path = [10_000]
    while not reopen_converged(path[-1], 10_800, REOPEN_DONE_PPB):
        path.append(reopen_step_ticks(path[-1], 10_800, REOPEN_STEP_PPB))
    assert path[:4] == [10_000, 10_050, 10_100, 10_150]  # 10,050·0.5% = 50.25 → 50
    assert path[4:6] == [10_200, 10_251]  # 10,200·0.5% = 51
    assert path[-2:] == [10_771, 10_800]  # 0.27% away: still a step, which lands on E
    assert len(path) - 1 == 16
    assert reopen_step_ticks(100, 90, REOPEN_STEP_PPB) == 99  # below 200 ticks: one tick at least


@given(prices, prices, st.one_of(st.integers(0, PPB), st.sampled_from([REOPEN_STEP_PPB, REOPEN_SNAP_PPB])))
def test_reopen_predicates_are_exact(s, e, ratio):
    gap = Fraction(abs(e - s))
    assert reopen_snaps(s, e, ratio) == (gap / s <= Fraction(ratio, PPB))
    assert reopen_converged(s, e, ratio) == (gap / e < Fraction(ratio, PPB))


@given(st.one_of(st.integers(1, PRICE_MAX), st.integers(1, 1_000)), st.floats(0.8, 1.25))
def test_reopen_converges_monotonically_in_bounded_steps(s, ratio):
    e = max(1, int(s * ratio))
    dist = abs(e - s)
    updates = 0
    while s != e:
        nxt = reopen_step_ticks(s, e, REOPEN_STEP_PPB)
        move = abs(nxt - s)
        assert move >= 1 and (move * PPB <= s * REOPEN_STEP_PPB or move == 1)  # ≤ 50 bps of S
        assert abs(e - nxt) == dist - move  # toward E, never past it
        s, dist, updates = nxt, dist - move, updates + 1
        assert updates <= 2_000
    assert reopen_converged(s, e, REOPEN_DONE_PPB)


# --- pre-IPO and dark limits -----------------------------------------------------------


def test_preipo_caps():
    assert preipo_oracle_ticks(5_000, 1_000) == 4_000
    assert preipo_oracle_ticks(3_999, 1_000) == 3_999
    assert preipo_mark_ticks(1_600, 500) == 1_500
    assert preipo_mark_ticks(1_400, 500) == 1_400
    assert preipo_mark_ticks(1_600, 0) == 1_600  # no EMA yet: no cap


def test_preipo_oracle_is_the_8h_ema_of_the_minutely_mark():
    # a day (3τ) of minutely marks at 500.00, then 8 h (τ) at 600.00; in continuous time
    # (500·(1 − e^−3)·e^−1 + 600·(1 − e^−1)) / (1 − e^−4) = 564.39
    steps = [(50_000, 60 * S)] * 1_440 + [(60_000, 60 * S)] * 480
    ema, _ = run_ema(steps, PREIPO_EMA_TAU_NS)
    exact = naive_ema(steps, PREIPO_EMA_TAU_NS)
    assert math.floor(exact * 100) == 5_643_914
    assert abs(Fraction(ema, EMA_ONE) - exact) < Fraction(1, 1_000) and ema_ticks(ema) == 56_439
    assert preipo_oracle_ticks(ema_ticks(ema), 10_000) == 40_000  # 4 × a 100.00 reference


def test_dark_limits():
    assert dark_max_leverage(10, DARK_MAX_LEV) == 5 and dark_max_leverage(3, DARK_MAX_LEV) == 3
    assert dark_oi_cap_atoms(1_000_001, OI_CAP_DARK_PPB) == 250_000  # 250,000.25 rounded down
    assert dark_oi_cap_atoms(INT64_MAX, PPB) == INT64_MAX
    assert dark_oi_cap_atoms(INT64_MAX, OI_CAP_DARK_PPB) == INT64_MAX // 4


@given(st.integers(0, INT64_MAX), st.integers(0, PPB))
def test_dark_oi_cap_is_exact_rounded_down(cap, ppb):
    assert dark_oi_cap_atoms(cap, ppb) == cap * ppb // PPB


def test_defaults_locked():
    assert (MARK_EMA_TAU_NS, INTERNAL_TAU_NS, PREIPO_EMA_TAU_NS) == (150 * S, 3_600 * S, 28_800 * S)
    assert (REANCHOR_THRESHOLD_PPB, MAX_RESETS) == (900_000_000, 2)
    assert (REOPEN_SNAP_PPB, REOPEN_STEP_PPB, REOPEN_DONE_PPB) == (10_000_000, 5_000_000, 1_000_000)
    assert (DARK_MAX_LEV, OI_CAP_DARK_PPB, DECAY_ZERO_TAUS) == (5, 250_000_000, 43)
