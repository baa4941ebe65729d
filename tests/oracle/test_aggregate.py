"""Aggregation (spec/oracle.md §3): worked numbers, each step's boundary, and properties."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from oracle.aggregate import (
    DEFAULT_PARAMS,
    AggFlag,
    AggParams,
    AggState,
    aggregate,
    breaker_flags,
    clamp_step,
    max_age_ns,
    min_sources,
    newest_per_source,
    normalise,
    outlier_flags,
)
from oracle.quote import SourceQuote
from oracle.session import NS_PER_SECOND, Session
from oracle.votes import median_x2, three_vote

NS = 1_000_000_000
T0 = 1_780_063_858 * NS  # the Hermes example's publish_time: Fri 2026-05-29 10:10:58 ET, regular
F = AggFlag
S = Session


def usd(text: str) -> int:
    """A decimal USD amount in 1e-18 units (exact)."""
    value = Decimal(text) * 10**18
    assert value == value.to_integral_value()
    return int(value)


def quote(source, price, *, conf=None, bid=None, ask=None, age_s=0, weight=1, expo=-8):
    """A quote from decimal strings at the given expo; ``age_s`` seconds before T0."""

    def m(text):
        return None if text is None else int(Decimal(text).scaleb(-expo))

    ts = T0 - int(Decimal(str(age_s)) * NS)
    return SourceQuote(source, "TSLA", m(price), expo, ts, ts, conf=m(conf), bid=m(bid), ask=m(ask), weight=weight)


def run(quotes, session=S.REGULAR, now=T0, state=AggState(), **kw):
    return aggregate(quotes, session, now, state, **kw)


# --- defaults --------------------------------------------------------------------------------


def test_defaults_are_the_spec_numbers():
    assert msgspec.structs.asdict(DEFAULT_PARAMS) == {
        "max_age_regular_ns": 5 * NS,
        "max_age_extended_ns": 30 * NS,
        "max_age_overnight_ns": 60 * NS,
        "max_future_ns": 2 * NS,
        "min_sources_regular": 2,
        "min_sources_extended": 1,
        "outlier_ppm": 50_000,
        "mad_k_e4": 6_745,
        "mad_z_max_e4": 35_000,
        "mad_floor_ppm": 100,
        "default_conf_ppm": 200,
        "max_step_ppm": 10_000,
        "clamp_max_gap_ns": 60 * NS,
        "breaker_move_ppm": 100_000,
        "breaker_window_ns": 60 * NS,
        "breaker_conf_ppm": 20_000,
    }
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"max_step": 1}, AggParams)


def test_flag_numbers_are_stable():
    assert [(f.name, f.value) for f in AggFlag if f.value] == [
        (name, 1 << i)
        for i, name in enumerate(
            "INVALID_DROPPED FUTURE_DROPPED STALE_DROPPED OUTLIER_DROPPED MAD_DROPPED DEFAULT_CONF "
            "LOW_QUORUM CLAMPED AFTER_GAP BREAKER BREAKER_MOVE BREAKER_CONF MARKET_CLOSED".split()
        )
    ]


# --- step 1: normalisation and validity ------------------------------------------------------


def test_hermes_example_normalises_exactly():
    # spec §9: "price": "43380934", "conf": "30066", "expo": -5
    q = SourceQuote("pyth", "TSLA", int("43380934"), -5, T0, T0, conf=int("30066"))
    n = normalise(q)
    assert (n.price_e18, n.conf_e18) == (usd("433.80934"), usd("0.30066"))


def test_chainlink_18_decimals_are_taken_as_they_are():
    q = SourceQuote("chainlink", "TSLA", 433_809_340_000_000_000_000, -18, T0, T0)
    assert normalise(q).price_e18 == usd("433.80934")


def test_split_multiplier_and_sub_1e18_rounding_directions():
    q = SourceQuote("pyth", "TSLA", 43380934, -5, T0, T0, conf=30066)
    n = normalise(q, Fraction(1, 5))  # 5:1 split, the source still quotes the old shares
    assert (n.price_e18, n.conf_e18) == (usd("86.761868"), usd("0.060132"))
    third = normalise(SourceQuote("x", "TSLA", 100, 0, T0, T0, conf=1), Fraction(1, 3))
    assert third.price_e18 == 33_333_333_333_333_333_333  # 33.3… rounds down
    assert third.conf_e18 == 333_333_333_333_333_334  # 0.3… rounds up (wider)
    fine = normalise(SourceQuote("x", "TSLA", 15, -19, T0, T0, conf=15))
    assert (fine.price_e18, fine.conf_e18) == (1, 2)


@pytest.mark.parametrize(
    ("kwargs", "dropped"),
    [
        ({"price": "0"}, True),  # Chainlink overnight mid = 0
        ({"price": "-1"}, True),
        ({"price": "100", "conf": "100"}, True),  # conf ≥ price
        ({"price": "100", "conf": "99.99999999"}, False),
        ({"price": "100", "bid": "100.02", "ask": "100.01"}, True),  # crossed
        ({"price": "100", "bid": "100.01", "ask": "100.01"}, False),  # locked is fine
        ({"price": "100", "bid": "0", "ask": "100.01"}, True),
        ({"price": "100", "weight": 0}, True),
    ],
)
def test_invalid_quotes_are_dropped_with_a_flag(kwargs, dropped):
    kw = dict(kwargs)
    result, _ = run([quote("a", kw.pop("price"), **kw)], session=S.PRE)
    assert (result.price_e18 is None) == dropped
    assert bool(result.flags & F.INVALID_DROPPED) == dropped


def test_a_quote_from_the_future_is_dropped():
    result, _ = run([quote("a", "100", age_s=-2)], session=S.PRE)
    assert result.price_e18 == usd("100")
    result, _ = run([quote("a", "100", age_s=Decimal("-2.000000001"))], session=S.PRE)
    assert (result.price_e18, result.flags) == (None, F.FUTURE_DROPPED | F.LOW_QUORUM)


def test_one_quote_per_source_the_newest():
    quotes = [quote("a", "100", conf="0.01", age_s=1), quote("a", "120", conf="0.01", age_s=3),
              quote("b", "100.2", conf="0.01", age_s=2)]
    result, _ = run(quotes)
    assert (result.price_e18, result.used) == (usd("100.1"), ("a", "b"))


# --- step 2: staleness by session ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("session", "limit_s"), [(S.REGULAR, 5), (S.PRE, 30), (S.POST, 30), (S.OVERNIGHT, 60)]
)
def test_staleness_limit_by_session(session, limit_s):
    assert max_age_ns(session) == limit_s * NS
    fresh = [quote("a", "100", age_s=limit_s), quote("b", "100", age_s=limit_s)]
    stale = [quote("a", "100", age_s=limit_s), quote("b", "100", age_s=Decimal(limit_s) + Decimal("1e-9"))]
    result, _ = run(fresh, session=session)
    assert (result.n_sources, result.flags) == (2, F.DEFAULT_CONF)
    result, _ = run(stale, session=session)
    assert result.n_sources == 1 and result.flags & F.STALE_DROPPED


def test_hermes_repeating_the_close_after_hours_is_stale_not_a_price():
    closing = T0 + 6 * 3600 * NS  # 16:10 ET; the quote still carries the 10:10 publish_time
    result, state = run([quote("pyth", "433.80934")], session=S.POST, now=closing)
    assert (result.price_e18, result.flags) == (None, F.STALE_DROPPED | F.LOW_QUORUM)
    assert result.newest_source_ts_ns == T0  # what the service's HALTED rule reads
    assert state == AggState()


@pytest.mark.parametrize(
    "session", [S.CLOSED_WEEKEND, S.CLOSED_HOLIDAY, S.CLOSED_OFF_HOURS, S.HALTED, S.INTERNAL_ONLY]
)
def test_closed_states_publish_nothing(session):
    result, _ = run([quote("a", "100"), quote("b", "100")], session=session)
    assert (result.price_e18, result.n_sources, result.flags) == (None, 0, F.MARKET_CLOSED)


# --- step 3: outliers -----------------------------------------------------------------------------


def test_five_percent_from_the_median_is_kept_and_more_is_dropped():
    base = [quote("a", "96"), quote("b", "98"), quote("c", "100"), quote("d", "102")]
    result, _ = run(base + [quote("e", "105")])  # exactly 5%, MAD z = 0.6745·5/2 ≈ 1.69
    assert result.used == ("a", "b", "c", "d", "e")
    result, _ = run(base + [quote("e", "105.00000001")])
    assert result.used == ("a", "b", "c", "d")
    assert result.flags & (F.OUTLIER_DROPPED | F.MAD_DROPPED) == F.OUTLIER_DROPPED


def test_mad_z_score_of_exactly_3_5_is_kept_and_above_is_dropped():
    # m = 10000, MAD = 6.745, a quote 35 away has z = 0.6745·35/6.745 = 3.5 exactly (0.35% < 5%)
    m, mad, unit = usd("10000"), usd("6.745"), 1
    prices = [m - mad, m - mad, m, m + usd("0.001"), m + usd("35")]
    assert outlier_flags(prices) == [F.NONE] * 5
    prices[-1] += unit
    assert outlier_flags(prices) == [F.NONE] * 4 + [F.MAD_DROPPED]


def test_mad_is_floored_at_one_basis_point_of_the_median():
    # identical quotes: MAD 0 -> 1 bp; 5 bp away is z = 3.37 (kept), 5.2 bp is 3.51 (dropped)
    same = [usd("100")] * 4
    assert outlier_flags(same + [usd("100.05")])[-1] == F.NONE
    assert outlier_flags(same + [usd("100.052")])[-1] == F.MAD_DROPPED


def test_two_sources_ten_percent_apart_leave_no_price():
    result, _ = run([quote("a", "100"), quote("b", "111")])
    assert result.price_e18 is None
    assert result.flags & F.OUTLIER_DROPPED and result.flags & F.LOW_QUORUM


# --- step 4: three-vote weighted median -------------------------------------------------------


def test_three_vote_worked_example():
    # votes 99 100 101 | 101 102 103: n = 6, p25 = v[1], p50 = (v[2]+v[3])/2, p75 = v[4]
    assert three_vote([(100, 1, 1), (102, 1, 1)]) == (100, 101, 102, 1)
    # votes sorted 97 100 100 101 102 103 104 105 106 (n = 9): p25 = v[2], p50 = v[4], p75 = v[6]
    assert three_vote([(100, 3, 1), (101, 1, 1), (105, 1, 1)]) == (100, 102, 104, 2)


def test_even_median_rounds_toward_minus_infinity_like_pyth():
    assert three_vote([(1, 0, 1), (2, 0, 1)]) == (1, 1, 2, 1)
    assert median_x2([1, 2]) == 3


def test_weight_counts_as_that_many_identical_sources():
    assert three_vote([(100, 2, 3), (110, 1, 1)]) == three_vote([(100, 2, 1)] * 3 + [(110, 1, 1)])


def test_aggregate_of_the_hermes_example_with_two_publishers():
    quotes = [
        SourceQuote("pyth", "TSLA", 43380934, -5, T0, T0, conf=30066),
        SourceQuote("chainlink", "TSLA", 433_850_000_000_000_000_000, -18, T0 - NS, T0, conf=None,
                    bid=433_800_000_000_000_000_000, ask=433_900_000_000_000_000_000),
    ]
    result, _ = run(quotes)
    # pyth votes 433.80934 ± 0.30066; chainlink has no conf: max(spread/2 = 0.05,
    # 2 bp · 433.85 = 0.08677) = 0.08677, so it votes 433.85 ± 0.08677. Sorted (n = 6):
    #   433.50868, 433.76323, 433.80934, 433.85, 433.93677, 434.11000
    # p25 = v[1], p50 = (v[2] + v[3]) / 2 (exact here), p75 = v[4]; conf = p75 − p50 = 0.1071
    assert result.p25_e18 == usd("433.76323")
    assert result.price_e18 == usd("433.82967")
    assert result.p75_e18 == usd("433.93677")
    assert result.conf_e18 == usd("0.1071")
    assert result.flags == F.DEFAULT_CONF and result.n_sources == 2


@pytest.mark.parametrize(
    ("bid", "ask", "expected_conf"),
    [(None, None, "0.02"), ("99.9", "100.1", "0.1"), ("100", "100.01", "0.02")],
)
def test_default_conf_is_half_spread_or_two_bp(bid, ask, expected_conf):
    result, _ = run([quote("a", "100", bid=bid, ask=ask)], session=S.PRE)
    assert (result.p25_e18, result.flags) == (usd("100") - usd(expected_conf), F.DEFAULT_CONF)


# --- step 5: quorum -------------------------------------------------------------------------------


@pytest.mark.parametrize(("session", "needed"), [(S.REGULAR, 2), (S.PRE, 1), (S.POST, 1), (S.OVERNIGHT, 1)])
def test_quorum_by_session(session, needed):
    assert min_sources(session) == needed
    result, state = run([quote("a", "100", conf="0.01")], session=session)
    if needed == 2:
        assert (result.price_e18, result.flags, state) == (None, F.LOW_QUORUM, AggState())
    else:
        assert (result.price_e18, result.conf_e18, result.flags) == (usd("100"), usd("0.01"), F.NONE)


# --- step 6: per-update clamp -------------------------------------------------------------------


def test_clamp_bounds_round_toward_the_last_price():
    assert clamp_step(2000, 999, 10_000) == 1008  # 999 · 1.01 = 1008.99, rounded down
    assert clamp_step(0, 999, 10_000) == 990  # 999 · 0.99 = 989.01, rounded up
    assert clamp_step(1005, 999, 10_000) == 1005


@pytest.mark.parametrize(("raw", "published", "flag"), [("102", "101", F.CLAMPED), ("98", "99", F.CLAMPED), ("100.5", "100.5", F.NONE)])
def test_clamp_one_percent_per_update(raw, published, flag):
    state = AggState(usd("100"), T0 - NS, ((T0 - NS, usd("100")),))
    result, after = run([quote("a", raw, conf="0.01"), quote("b", raw, conf="0.01")], state=state)
    assert (result.price_e18, result.raw_price_e18, result.flags) == (usd(published), usd(raw), flag)
    assert after == AggState(usd(published), T0, ((T0 - NS, usd("100")), (T0, usd(published))))


def test_no_clamp_after_a_gap_so_the_engine_sees_the_reopen_gap():
    state = AggState(usd("100"), T0 - 61 * NS, ((T0 - 61 * NS, usd("100")),))
    result, after = run([quote("a", "108", conf="0.01"), quote("b", "108", conf="0.01")], state=state)
    assert (result.price_e18, result.flags) == (usd("108"), F.AFTER_GAP)
    assert after.recent == ((T0, usd("108")),)  # the old entry left the breaker window


# --- step 7: circuit breaker ----------------------------------------------------------------------


def test_breaker_on_a_ten_percent_move_within_sixty_seconds():
    state = AggState(usd("109.5"), T0 - NS, ((T0 - 60 * NS, usd("100")), (T0 - NS, usd("109.5"))))
    result, _ = run([quote("a", "110", conf="0.01"), quote("b", "110", conf="0.01")], state=state)
    assert result.flags == F.NONE  # exactly 10% from the price 60 s ago
    result, _ = run([quote("a", "110.00000001", conf="0.01"), quote("b", "110.00000001", conf="0.01")], state=state)
    assert result.flags == F.BREAKER | F.BREAKER_MOVE
    assert result.price_e18 == usd("110.00000001")  # still published: the engine acts on the flag


def test_breaker_ignores_prices_older_than_the_window():
    old = T0 - 60 * NS - 1
    state = AggState(usd("109.5"), T0 - NS, ((old, usd("100")), (T0 - NS, usd("109.5"))))
    result, after = run([quote("a", "110.5", conf="0.01"), quote("b", "110.5", conf="0.01")], state=state)
    assert result.flags == F.NONE
    assert after.recent == ((T0 - NS, usd("109.5")), (T0, usd("110.5")))


def test_breaker_on_confidence_above_two_percent():
    result, _ = run([quote("a", "100", conf="2")], session=S.PRE)
    assert result.flags == F.NONE  # exactly 2%
    result, _ = run([quote("a", "100", conf="2.00000001")], session=S.PRE)
    assert result.flags == F.BREAKER | F.BREAKER_CONF


def test_time_going_backwards_is_a_bug():
    with pytest.raises(ValueError):
        run([quote("a", "100")], session=S.PRE, state=AggState(usd("100"), T0 + 1))


def test_split_adjusted_source_agrees_with_an_adjusted_one():
    quotes = [quote("post_split", "86.761868", conf="0.01"), quote("pre_split", "433.80934", conf="0.05")]
    result, _ = run(quotes, multipliers={"pre_split": Fraction(1, 5)})
    assert (result.price_e18, result.n_sources) == (usd("86.761868"), 2)


# --- properties -----------------------------------------------------------------------------------

SOURCES = "abcdefg"


@st.composite
def quotes_strategy(draw, min_size=0, max_size=7):
    """Quotes around one centre (expo −4): mostly near it and fresh, some far, stale,
    from the future, invalid, duplicated per source or weighted."""
    center = draw(st.integers(10_000, 2_000_000))
    out = []
    for _ in range(draw(st.integers(min_size, max_size))):
        kind = draw(st.sampled_from(["near", "near", "near", "far", "bad"]))
        if kind == "near":
            price = center + center * draw(st.integers(-30_000, 30_000)) // 1_000_000
        elif kind == "far":
            price = draw(st.integers(1, 10 * center))
        else:
            price = draw(st.integers(-10, 0))
        age_ns = draw(st.one_of(st.integers(0, 4 * NS), st.integers(-3 * NS, 10 * NS)))
        out.append(
            SourceQuote(
                source=draw(st.sampled_from(SOURCES)),
                symbol="TSLA",
                price=price,
                expo=-4,
                ts_source_ns=T0 - age_ns,
                ts_received_ns=T0,
                conf=draw(st.one_of(st.none(), st.integers(0, max(price, 1) // 100))),
                weight=draw(st.sampled_from([1, 1, 1, 2, 3, 0])),
            )
        )
    return out


@settings(max_examples=150, deadline=None)
@given(quotes=quotes_strategy(), data=st.data())
def test_result_does_not_depend_on_quote_order(quotes, data):
    shuffled = data.draw(st.permutations(quotes))
    assert run(shuffled) == run(quotes)


@settings(max_examples=150, deadline=None)
@given(quotes=quotes_strategy(min_size=1), session=st.sampled_from([S.REGULAR, S.PRE, S.OVERNIGHT]))
def test_result_lies_inside_the_voting_quotes_range(quotes, session):
    result, _ = run(quotes, session=session)
    if result.price_e18 is None:
        return
    chosen = newest_per_source(normalise(q) for q in quotes)
    voting = {q.source: q.price_e18 for q in chosen if q.source in result.used}
    assert sorted(voting) == list(result.used)
    assert min(voting.values()) <= result.price_e18 <= max(voting.values())
    assert result.p25_e18 <= result.price_e18 <= result.p75_e18


@settings(max_examples=200, deadline=None)
@given(quotes=quotes_strategy(), session=st.sampled_from([S.REGULAR, S.PRE, S.POST, S.OVERNIGHT]))
def test_quorum_decides_whether_there_is_a_price(quotes, session):
    result, state = run(quotes, session=session)
    has_quorum = result.n_sources >= min_sources(session)
    assert (result.price_e18 is not None) == has_quorum
    assert bool(result.flags & F.LOW_QUORUM) == (not has_quorum)
    assert result.n_sources == len(result.used) == len(set(result.used))
    assert (state.last_price_e18 is not None) == has_quorum


@settings(max_examples=200, deadline=None)
@given(
    center=st.integers(1_000_000, 100_000_000),
    offsets_ppm=st.lists(st.integers(-10_000, 10_000), min_size=2, max_size=6),
    confs_ppm=st.data(),
    outlier_ppm=st.integers(-900_000, 9_000_000),
    outlier_conf_ppm=st.integers(0, 50_000),
)
def test_one_outlier_cannot_move_the_result_outside_p25_p75(center, offsets_ppm, confs_ppm, outlier_ppm, outlier_conf_ppm):
    """With ≥ 2 honest sources that all survive the filters, one more source anywhere keeps
    the price within the honest-only aggregate's [p25, p75]."""
    honest = []
    for i, off in enumerate(offsets_ppm):
        conf = confs_ppm.draw(st.integers(0, 5_000))
        honest.append(SourceQuote(f"h{i}", "TSLA", center * (1_000_000 + off), -6, T0, T0, conf=center * conf))
    outlier_price = center * (1_000_000 + outlier_ppm)
    outlier = SourceQuote("x", "TSLA", outlier_price, -6, T0, T0, conf=min(center * outlier_conf_ppm, outlier_price - 1))
    alone, _ = run(honest, session=S.PRE)
    assume(len(alone.used) == len(honest))
    joined, _ = run(honest + [outlier], session=S.PRE)
    assume(set(alone.used) <= set(joined.used))
    assert alone.p25_e18 <= joined.price_e18 <= alone.p75_e18


@settings(max_examples=150, deadline=None)
@given(
    last=st.integers(1, 10**24),
    raw=st.integers(1, 10**24),
    gap_ns=st.integers(0, 60 * NS),
)
def test_a_published_price_moves_at_most_max_step(last, raw, gap_ns):
    state = AggState(last, T0 - gap_ns, ())
    q = [SourceQuote(s, "TSLA", raw, -18, T0, T0, conf=raw // 1000 or None) for s in "ab"]
    result, _ = run(q, state=state)
    assume(result.price_e18 is not None)
    assert abs(result.price_e18 - last) * 1_000_000 <= DEFAULT_PARAMS.max_step_ppm * last
    assert bool(result.flags & F.CLAMPED) == (result.price_e18 != raw)


def _price_model_core(votes: list[int]) -> tuple[int, int, int]:
    """pyth-client's price_model_core on an explicit vote list, transcribed literally."""
    v = sorted(votes)
    n = len(v)
    p25 = v[n >> 2]
    p50 = v[n >> 1] if n & 1 else (v[(n >> 1) - 1] + v[n >> 1]) // 2
    return p25, p50, v[n - 1 - (n >> 2)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-10**6, 10**6), st.integers(0, 10**4), st.integers(1, 4)), min_size=1, max_size=8))
def test_three_vote_equals_pyth_on_the_expanded_votes(triples):
    expanded = [v for p, c, w in triples for _ in range(w) for v in (p - c, p, p + c)]
    p25, p50, p75, conf = three_vote(triples)
    assert (p25, p50, p75) == _price_model_core(expanded)
    assert conf == max(p50 - p25, p75 - p50)


@given(
    raw=st.integers(1, 10**24),
    ages_and_prices=st.lists(st.tuples(st.integers(0, 120), st.integers(1, 10**24)), max_size=12),
    move_ppm=st.integers(1, 2_000_000),
)
def test_breaker_by_the_window_extremes_equals_testing_every_price(raw, ages_and_prices, move_ppm):
    """breaker_flags tests only the window's lowest and highest price; that must trip exactly
    when some price inside the window is more than move_ppm away (spec step 7, literally)."""
    params = AggParams(breaker_move_ppm=move_ppm)
    now_ns = 200 * NS_PER_SECOND
    ordered = sorted(ages_and_prices, key=lambda item: -item[0])  # publication order: oldest first
    recent = tuple((now_ns - age * NS_PER_SECOND, price) for age, price in ordered)
    literal = any(
        now_ns - ts <= params.breaker_window_ns and abs(raw - p) * 1_000_000 > move_ppm * p for ts, p in recent
    )
    assert bool(breaker_flags(raw, 0, now_ns, recent, params) & AggFlag.BREAKER_MOVE) == literal
