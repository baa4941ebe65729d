"""``oracle.aggregate.aggregate`` and ``oracle.votes.three_vote`` against the step-by-step
reference (reference_aggregate.py): equal results, flags and states for every input,
single updates and long runs that carry the state (and its window index) along."""

from __future__ import annotations

from bisect import bisect_left
from fractions import Fraction
from itertools import product

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle.aggregate import (
    DEFAULT_PARAMS,
    AggFlag,
    AggParams,
    AggState,
    _extremes_of,
    _from_number,
    _pushed,
    aggregate,
)
from oracle.quote import SourceQuote
from oracle.session import Session
from oracle.votes import EXPAND_MAX_WEIGHT, three_vote
from reference_aggregate import reference_aggregate
from reference_aggregate import three_vote as reference_three_vote

NS = 1_000_000_000
NOW = 1_780_063_858 * NS
SOURCES = "abcde"
EXPOS = [-20, -19, -18, -12, -8, -5, 0, 3]
MULTIPLIERS = [Fraction(1, 5), Fraction(2, 3), Fraction(1), Fraction(7, 2), 3]


def outcome(fn, *args, **kwargs):
    """The result of ``fn``, or the type of what it raised, so both can be compared."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, IndexError) as exc:
        return type(exc)


def assert_same(fast, slow):
    assert fast == slow
    if isinstance(fast, tuple):
        result, state = fast
        assert type(result.flags) is AggFlag
        assert type(state) is AggState


@st.composite
def quote_at(draw, center_e18: int, now_ns: int) -> SourceQuote:
    """A quote near ``center_e18`` (or far, or bad) at one of ``EXPOS``, with or without conf
    and book, fresh, stale or from the future, possibly a repeat of a source."""
    expo = draw(st.sampled_from(EXPOS))
    unit = 10 ** (expo + 18)  # 1e-18 units in one mantissa step (a Fraction below expo −18)
    kind = draw(st.sampled_from(["near", "near", "near", "near", "far", "bad"]))
    if kind == "near":
        value_e18 = center_e18 + center_e18 * draw(st.integers(-80_000, 80_000)) // 1_000_000
    elif kind == "far":
        value_e18 = draw(st.integers(1, 10 * center_e18))
    else:
        value_e18 = draw(st.integers(-3 * center_e18 // 1000, 0))
    price = int(Fraction(value_e18) / unit)
    conf = draw(st.one_of(
        st.none(), st.just(0), st.integers(-5, -1), st.integers(1, max(abs(price) // 50, 1)), st.just(abs(price))
    ))
    bid = ask = None
    if draw(st.booleans()):
        half = draw(st.integers(-max(abs(price) // 1000, 1), max(abs(price) // 100, 1)))  # < 0: crossed
        bid, ask = price - half, price + half
        if draw(st.integers(0, 9)) == 0:
            bid = draw(st.sampled_from([0, -1, None]))
        if draw(st.integers(0, 9)) == 0:
            ask = draw(st.sampled_from([0, price * 100, None]))
    age_ns = draw(st.one_of(st.integers(0, 5 * NS), st.integers(-3 * NS, 70 * NS), st.sampled_from([0, 5 * NS, -2 * NS])))
    return SourceQuote(
        source=draw(st.sampled_from(SOURCES)),
        symbol="TSLA",
        price=price,
        expo=expo,
        ts_source_ns=now_ns - age_ns,
        ts_received_ns=now_ns - draw(st.sampled_from([0, 0, 1, NS])),
        conf=conf,
        bid=bid,
        ask=ask,
        weight=draw(st.sampled_from([1, 1, 1, 2, 3, 0, -1, 40, 1_000])),
    )


@st.composite
def quotes_at(draw, center_e18: int, now_ns: int, max_size: int = 9) -> list[SourceQuote]:
    quotes = draw(st.lists(quote_at(center_e18, now_ns), max_size=max_size))
    if quotes and draw(st.booleans()):  # an exact repeat, or the same source at the same instant
        first = quotes[0]
        quotes.append(first if draw(st.booleans()) else msgspec.structs.replace(first, price=first.price + 1))
    return quotes


multipliers_strategy = st.one_of(
    st.none(), st.just({}), st.dictionaries(st.sampled_from(SOURCES), st.sampled_from(MULTIPLIERS), max_size=3)
)

params_strategy = st.one_of(
    st.just(DEFAULT_PARAMS),
    st.builds(
        AggParams,
        min_sources_regular=st.integers(0, 4),
        min_sources_extended=st.integers(0, 2),
        outlier_ppm=st.sampled_from([50_000, 1_000, 500_000]),
        mad_z_max_e4=st.sampled_from([35_000, 5_000]),
        default_conf_ppm=st.sampled_from([200, 0, 30_000]),
        max_step_ppm=st.sampled_from([10_000, 0, 1_000_000, 1_500_000]),
        clamp_max_gap_ns=st.sampled_from([60 * NS, 0, 3 * NS]),
        breaker_move_ppm=st.sampled_from([100_000, 1_000, 0, 999_999, 1_000_000, 2_000_000]),
        breaker_window_ns=st.sampled_from([60 * NS, 0, 5 * NS]),
        breaker_conf_ppm=st.sampled_from([20_000, 100, 0]),
    ),
)


@st.composite
def state_before(draw, center_e18: int, now_ns: int) -> AggState:
    """A state as a caller might hold it: empty, or built by hand, its ``recent`` oldest first
    or, rarely, in no order at all."""
    if draw(st.booleans()):
        return AggState()
    entries = draw(st.lists(st.tuples(st.integers(0, 130 * NS), st.integers(1, 2 * center_e18)), max_size=24))
    recent = [(now_ns - age, price) for age, price in entries]
    if draw(st.integers(0, 4)):
        recent.sort()
    last_ts = draw(st.one_of(st.none(), st.integers(now_ns - 90 * NS, now_ns)))
    last_price = draw(st.one_of(st.none(), st.integers(1, 2 * center_e18)))
    return AggState(last_price, last_ts, tuple(recent))


@settings(max_examples=250, deadline=None)
@given(
    data=st.data(),
    center_e18=st.integers(10**15, 10**22),
    session=st.sampled_from(list(Session)),
    params=params_strategy,
    multipliers=multipliers_strategy,
)
def test_one_update_equals_the_reference(data, center_e18, session, params, multipliers):
    quotes = data.draw(quotes_at(center_e18, NOW))
    state = data.draw(state_before(center_e18, NOW))
    now_ns = NOW + data.draw(st.sampled_from([0, 0, 0, -NS]))  # sometimes before last_ts_ns
    fast = outcome(aggregate, quotes, session, now_ns, state, params, multipliers)
    slow = outcome(reference_aggregate, quotes, session, now_ns, state, params, multipliers)
    assert_same(fast, slow)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    center_e18=st.integers(10**17, 10**21),
    params=params_strategy,
    steps=st.lists(st.tuples(st.sampled_from([1, 1, 1, 1, 2, 7, 61]), st.integers(-30_000, 30_000)), max_size=90),
)
def test_a_run_of_updates_equals_the_reference(data, center_e18, params, steps):
    """Many updates, each side carrying its own state (the fast one with its window index);
    now and then the state is rebuilt from its fields, as a caller decoding it would."""
    sessions = [Session.REGULAR] * 6 + [Session.PRE, Session.OVERNIGHT, Session.CLOSED_WEEKEND]
    fast_state = slow_state = data.draw(state_before(center_e18, NOW))
    now_ns = NOW
    for seconds, drift_ppm in steps:
        now_ns += seconds * NS
        center_e18 += center_e18 * drift_ppm // 1_000_000
        quotes = data.draw(quotes_at(center_e18, now_ns, max_size=6))
        session = data.draw(st.sampled_from(sessions))
        fast = outcome(aggregate, quotes, session, now_ns, fast_state, params)
        slow = outcome(reference_aggregate, quotes, session, now_ns, slow_state, params)
        assert_same(fast, slow)
        if not isinstance(fast, tuple):
            continue
        fast_state, slow_state = fast[1], slow[1]
        if data.draw(st.integers(0, 19)) == 0:
            fast_state = AggState(fast_state.last_price_e18, fast_state.last_ts_ns, fast_state.recent)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-10**6, 10**6), st.integers(0, 10**4), st.integers(1, 70)), min_size=1, max_size=6))
def test_three_vote_equals_the_expanded_votes_at_every_total_weight(triples):
    """Both of ``three_vote``'s paths (expanded up to ``EXPAND_MAX_WEIGHT``, weighted above)."""
    assert three_vote(triples) == reference_three_vote(triples)


def test_three_vote_paths_meet_at_the_expansion_limit():
    for total in (EXPAND_MAX_WEIGHT - 1, EXPAND_MAX_WEIGHT, EXPAND_MAX_WEIGHT + 1):
        triples = [(100, 3, total - 1), (90, 1, 1)]
        assert three_vote(triples) == reference_three_vote(triples)
    with pytest.raises(ValueError):
        three_vote([])
    with pytest.raises(ValueError):
        three_vote([(1, 0, 1), (2, 0, 0)])


@settings(max_examples=300, deadline=None)
@given(
    prices=st.lists(st.integers(-5, 5), max_size=40),
    cuts=st.lists(st.integers(0, 3), max_size=40),
)
def test_window_index_gives_every_suffix_extremes(prices, cuts):
    """Entries pushed one by one, the front cut now and then: the first low (high) numbered
    inside any suffix is that suffix's lowest (highest) price, ties included."""
    base, lows, highs, kept = 0, (), (), []
    for number, price in enumerate(prices):
        lows, highs = _pushed(lows, highs, number, price)
        kept.append((number, price))
        cut = min(cuts[number] if number < len(cuts) else 0, len(kept))
        kept = kept[cut:]
        base = kept[0][0] if kept else number + 1
        lows, highs = _from_number(lows, base), _from_number(highs, base)
        for start in range(len(kept)):
            suffix = [p for _, p in kept[start:]]
            first = kept[start][0]
            assert _from_number(lows, first)[0][1] == min(suffix)
            assert _from_number(highs, first)[0][1] == max(suffix)


def test_the_window_index_is_invisible_and_used_only_for_its_own_tuple():
    quotes = [SourceQuote(s, "TSLA", 100_00000000, -8, NOW, NOW, conf=1_000_000) for s in "ab"]
    _, state = aggregate(quotes, Session.REGULAR, NOW, AggState(101 * 10**18, NOW - NS, ((NOW - NS, 101 * 10**18),)))
    plain = AggState(state.last_price_e18, state.last_ts_ns, state.recent)
    assert state == plain and hash(state) == hash(plain)
    assert msgspec.json.encode(state) == msgspec.json.encode(plain)
    assert msgspec.structs.asdict(state) == msgspec.structs.asdict(plain)
    assert repr(state) == repr(plain)
    assert state.recent == ((NOW - NS, 101 * 10**18), (NOW, 100 * 10**18))
    assert _extremes_of(state) == (0, ((1, 100 * 10**18),), ((0, 101 * 10**18), (1, 100 * 10**18)))
    # a state without its own index is read afresh, numbered from 0; so is one holding an
    # index made for another tuple
    replaced = msgspec.structs.replace(state, recent=((NOW, 5 * 10**20),))
    assert _extremes_of(replaced) == (0, ((0, 5 * 10**20),), ((0, 5 * 10**20),))
    forged = AggState(state.last_price_e18, state.last_ts_ns, replaced.recent)
    forged.__dict__.update(state.__dict__)
    assert _extremes_of(forged) == _extremes_of(replaced)


def _recent(pattern: str, prices: list[int]) -> tuple[tuple[int, int], ...]:
    """Entries in the breaker window (``n``, 10 s old) or before it (``o``, 100 s), in order."""
    return tuple((NOW - (10 if c == "n" else 100) * NS, p) for c, p in zip(pattern, prices))


def _cuts_twice(pattern: str) -> tuple[int, int] | None:
    """Where the first trim cuts such a ``recent`` and where the second cuts what is left,
    if the second cuts some but not all of it."""
    recent = _recent(pattern, [0] * len(pattern))
    key = (NOW - 60 * NS,)
    first = bisect_left(recent, key)
    second = bisect_left(recent[first:], key)
    return (first, second) if 0 < second < len(recent) - first else None


def test_an_unordered_recent_is_trimmed_twice_like_the_reference():
    """``recent`` out of order (only a caller can build one): the breaker window is what the
    second bisection leaves of the first's, as in the reference. Far prices outside that
    window must not trip the breaker; inside it they do."""
    pattern = next("".join(p) for n in range(2, 9) for p in product("no", repeat=n) if _cuts_twice("".join(p)))
    first, second = _cuts_twice(pattern)
    near, far = 100 * 10**18, 300 * 10**18
    window_start = first + second
    quotes = [SourceQuote(s, "TSLA", 100_00000000, -8, NOW, NOW, conf=1_000_000) for s in "ab"]
    for far_inside in (False, True):
        prices = [(far if far_inside else near) if i >= window_start else far for i in range(len(pattern))]
        state = AggState(None, None, _recent(pattern, prices))
        fast = aggregate(quotes, Session.REGULAR, NOW, state)
        assert_same(fast, reference_aggregate(quotes, Session.REGULAR, NOW, state))
        assert bool(fast[0].flags & AggFlag.BREAKER_MOVE) == far_inside
