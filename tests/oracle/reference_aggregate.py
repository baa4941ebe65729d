"""The aggregation of spec/oracle.md §3 written step by step for clarity, not speed: the
reference that ``oracle.aggregate.aggregate`` is checked against (test_aggregate_fast.py).

Layout: one function per step, as the spec lists them; ``reference_aggregate`` chains them.

Invariants:
  * Same signature and results as ``oracle.aggregate.aggregate``: the same ``Aggregate`` and
    ``AggState`` values for every input, flags included.
  * Obvious rather than quick: every quote is normalised to a ``NormQuote`` (a ``Fraction``
    whenever the scaling is not a whole power of ten), flags are ``AggFlag`` values from the
    start, the three-vote model expands every weight into that many votes and indexes them
    as pyth-client's ``price_model_core`` does, and the breaker window's extremes are found by
    reading every price.

Known limitations:
  * Imports the data types (``AggFlag``, ``AggParams``, ``AggState``, ``Aggregate``,
    ``NormQuote``) from ``oracle.aggregate``; it checks the functions, not the types.
"""

from __future__ import annotations

from bisect import bisect_left
from fractions import Fraction
from typing import Iterable, Mapping

from oracle.aggregate import DEFAULT_PARAMS, AggFlag, AggParams, AggState, Aggregate, NormQuote
from oracle.quote import SourceQuote
from oracle.session import Session

PRICE_EXPO = -18
PPM = 1_000_000


def to_e18(mantissa: int, expo: int, multiplier: Fraction | None, round_up: bool) -> int:
    """``mantissa · 10^expo · multiplier`` in 1e-18 units, rounded down (up if ``round_up``)."""
    shift = expo - PRICE_EXPO
    if shift >= 0 and multiplier is None:
        return mantissa * 10**shift
    value = Fraction(mantissa) * Fraction(10) ** shift * (1 if multiplier is None else multiplier)
    if value.denominator == 1:
        return value.numerator
    return -((-value.numerator) // value.denominator) if round_up else value.numerator // value.denominator


def normalise(quote: SourceQuote, multiplier: Fraction | None = None) -> NormQuote:
    """Step 1: the quote in 1e-18 USD; price, bid and ask round down, conf rounds up."""

    def side(value: int | None) -> int | None:
        return None if value is None else to_e18(value, quote.expo, multiplier, False)

    conf = quote.conf or 0
    return NormQuote(
        source=quote.source,
        price_e18=to_e18(quote.price, quote.expo, multiplier, False),
        conf_e18=to_e18(conf, quote.expo, multiplier, True) if conf > 0 else min(conf, 0),
        bid_e18=side(quote.bid),
        ask_e18=side(quote.ask),
        ts_source_ns=quote.ts_source_ns,
        ts_received_ns=quote.ts_received_ns,
        weight=quote.weight,
    )


def recency_key(q: NormQuote) -> tuple:
    none = -(1 << 255)
    return (
        q.ts_source_ns, q.ts_received_ns, q.price_e18, q.conf_e18,
        none if q.bid_e18 is None else q.bid_e18, none if q.ask_e18 is None else q.ask_e18, q.weight,
    )


def newest_per_source(quotes: Iterable[NormQuote]) -> list[NormQuote]:
    """One quote per source, the newest by ``recency_key``; sorted by source."""
    best: dict[str, NormQuote] = {}
    for q in quotes:
        kept = best.get(q.source)
        if kept is None or recency_key(q) > recency_key(kept):
            best[q.source] = q
    return [best[name] for name in sorted(best)]


def is_invalid(q: NormQuote) -> bool:
    if q.price_e18 <= 0 or q.conf_e18 < 0 or q.conf_e18 >= q.price_e18 or q.weight <= 0:
        return True
    if (q.bid_e18 is not None and q.bid_e18 <= 0) or (q.ask_e18 is not None and q.ask_e18 <= 0):
        return True
    return q.bid_e18 is not None and q.ask_e18 is not None and q.bid_e18 > q.ask_e18


def max_age_ns(session: Session, params: AggParams) -> int | None:
    """Step 2."""
    return {
        Session.REGULAR: params.max_age_regular_ns,
        Session.PRE: params.max_age_extended_ns,
        Session.POST: params.max_age_extended_ns,
        Session.OVERNIGHT: params.max_age_overnight_ns,
    }.get(session)


def median_x2(values: list[int]) -> int:
    ordered = sorted(values)
    n = len(ordered)
    return 2 * ordered[n // 2] if n % 2 else ordered[n // 2 - 1] + ordered[n // 2]


def outlier_flags(prices_e18: list[int], params: AggParams) -> list[AggFlag]:
    """Step 3, in the integers of ``oracle.aggregate.outlier_flags``' docstring."""
    m2 = median_x2(prices_e18)
    devs = [abs(2 * x - m2) for x in prices_e18]
    mad4 = median_x2(devs)
    mad_term = max(PPM * mad4, 2 * params.mad_floor_ppm * m2)
    flags = []
    for d in devs:
        flag = AggFlag.NONE
        if d * PPM > params.outlier_ppm * m2:
            flag |= AggFlag.OUTLIER_DROPPED
        if 2 * PPM * params.mad_k_e4 * d > params.mad_z_max_e4 * mad_term:
            flag |= AggFlag.MAD_DROPPED
        flags.append(flag)
    return flags


def vote_conf_e18(q: NormQuote, params: AggParams) -> tuple[int, bool]:
    """Step 4's conf: the source's, or max(spread/2, default_conf_ppm·price), rounded up."""
    if q.conf_e18 > 0:
        return q.conf_e18, False
    floor_conf = -((-params.default_conf_ppm * q.price_e18) // PPM)
    if q.bid_e18 is not None and q.ask_e18 is not None:
        return max(-((q.bid_e18 - q.ask_e18) // 2), floor_conf), True
    return floor_conf, True


def three_vote(quotes: list[tuple[int, int, int]]) -> tuple[int, int, int, int]:
    """Step 4: every weight expanded into that many votes, pyth-client's indices."""
    if any(weight <= 0 for _, _, weight in quotes):
        raise ValueError("vote weights must be positive")
    v = sorted(x for price, conf, weight in quotes for _ in range(weight) for x in (price - conf, price, price + conf))
    if not v:
        raise ValueError("three_vote of nothing")
    n = len(v)
    p25, p75 = v[n // 4], v[n - 1 - n // 4]
    p50 = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) // 2
    return p25, p50, p75, max(p50 - p25, p75 - p50)


def clamp_step(raw_e18: int, last_e18: int, max_step_ppm: int) -> int:
    """Step 6."""
    high = last_e18 * (PPM + max_step_ppm) // PPM
    low = -((-last_e18 * (PPM - max_step_ppm)) // PPM)
    return min(max(raw_e18, low), high)


def trimmed(recent: tuple[tuple[int, int], ...], now_ns: int, window_ns: int) -> tuple[tuple[int, int], ...]:
    return recent[bisect_left(recent, (now_ns - window_ns,)):]


def breaker_flags(raw_e18: int, conf_e18: int, now_ns: int, recent, params: AggParams) -> AggFlag:
    """Step 7: for a move under 100% the window's lowest and highest price decide (test_aggregate
    checks that against every price); otherwise every price is tested."""
    flags = AggFlag.NONE
    window = trimmed(recent, now_ns, params.breaker_window_ns)
    if window:
        prices = [price for _, price in window]
        tested = prices if params.breaker_move_ppm >= PPM else [min(prices), max(prices)]
        if any(abs(raw_e18 - p) * PPM > params.breaker_move_ppm * p for p in tested):
            flags |= AggFlag.BREAKER | AggFlag.BREAKER_MOVE
    if conf_e18 * PPM > params.breaker_conf_ppm * raw_e18:
        flags |= AggFlag.BREAKER | AggFlag.BREAKER_CONF
    return flags


def reference_aggregate(
    quotes: Iterable[SourceQuote],
    session: Session,
    now_ns: int,
    state: AggState = AggState(),
    params: AggParams = DEFAULT_PARAMS,
    multipliers: Mapping[str, Fraction] | None = None,
) -> tuple[Aggregate, AggState]:
    """Steps 1–7, one after the other."""
    if state.last_ts_ns is not None and now_ns < state.last_ts_ns:
        raise ValueError("now_ns is before the last published update")
    recent = trimmed(state.recent, now_ns, params.breaker_window_ns)
    quiet = AggState(state.last_price_e18, state.last_ts_ns, recent)
    limit = max_age_ns(session, params)
    if limit is None:
        return Aggregate(None, None, 0, AggFlag.MARKET_CLOSED), quiet
    multipliers = multipliers or {}
    flags = AggFlag.NONE
    chosen = newest_per_source([normalise(q, multipliers.get(q.source)) for q in quotes])
    valid = []
    for q in chosen:
        if is_invalid(q):
            flags |= AggFlag.INVALID_DROPPED
        elif q.ts_source_ns - now_ns > params.max_future_ns:
            flags |= AggFlag.FUTURE_DROPPED
        else:
            valid.append(q)
    newest = max((q.ts_source_ns for q in valid), default=None)
    fresh = [q for q in valid if now_ns - q.ts_source_ns <= limit]
    if len(fresh) < len(valid):
        flags |= AggFlag.STALE_DROPPED
    voting = []
    if fresh:
        for q, flag in zip(fresh, outlier_flags([q.price_e18 for q in fresh], params)):
            flags |= flag
            if not flag:
                voting.append(q)
    used = tuple(q.source for q in voting)
    needed = params.min_sources_regular if session == Session.REGULAR else params.min_sources_extended
    if len(voting) < needed:
        flags |= AggFlag.LOW_QUORUM
        return Aggregate(None, None, len(voting), flags, used=used, newest_source_ts_ns=newest), quiet
    triples = []
    for q in voting:
        conf, defaulted = vote_conf_e18(q, params)
        if defaulted:
            flags |= AggFlag.DEFAULT_CONF
        triples.append((q.price_e18, conf, q.weight))
    p25, raw, p75, conf = three_vote(triples)
    price = raw
    if state.last_price_e18 is not None and state.last_ts_ns is not None:
        if now_ns - state.last_ts_ns <= params.clamp_max_gap_ns:
            price = clamp_step(raw, state.last_price_e18, params.max_step_ppm)
            if price != raw:
                flags |= AggFlag.CLAMPED
        else:
            flags |= AggFlag.AFTER_GAP
    flags |= breaker_flags(raw, conf, now_ns, recent, params)
    result = Aggregate(price, conf, len(voting), flags, raw, p25, p75, used, newest)
    return result, AggState(price, now_ns, recent + ((now_ns, price),))
