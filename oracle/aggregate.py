"""Aggregation of source quotes into one external price per market per update (spec §3).

Pure and deterministic: ``aggregate(quotes, session, now_ns, state, params)`` returns the
result and the next ``AggState``; it reads no clock and keeps no hidden state.

Layout (one function per step of spec/oracle.md §3):
  1 ``normalise``        mantissa·10^expo (× split multiplier) → integers in 1e-18 USD (``_e18``);
                         one quote per source (the newest); ``is_invalid`` for the bad ones
  2 ``max_age_ns``       staleness limit by session: regular 5 s, pre/post 30 s, overnight 60 s
  3 ``outlier_flags``    > 5% from the median, or MAD z-score 0.6745·|x−m|/MAD > 3.5
                         (MAD floored at 1 bp of m); both tests in exact integer arithmetic
  4 ``vote_conf_e18``    conf, or max(spread/2, 2 bp·p) when a source has none; then
                         ``oracle.votes.three_vote`` (Pyth's weighted median)
  5 quorum               distinct voting sources ≥ ``min_sources`` (regular 2, otherwise 1)
  6 ``clamp_step``       at most ``max_step`` (1%) from the last published price
  7 ``breaker_flags``    a move above 10% within 60 s, or conf/price above 2%

Invariants:
  * Without a clamp, a published price lies within [min, max] of the voting quotes' prices
    (fewer than half the votes can lie outside it); it does not depend on input order.
  * No floats: thresholds are integer ppm; every comparison is exact; the only roundings are
    documented where they happen (normalising a finer-than-1e-18 or split-adjusted value, the
    even-count median, the clamp bounds).
  * An update in a closed state publishes nothing (``MARKET_CLOSED``): the oracle never
    invents a price when the outside world is silent.

Known limitations:
  * ``BREAKER`` is set on the updates whose own condition trips it; the "until 5 clean
    updates" latch of the spec belongs to the engine, which sees every flag in the journal.
  * The clamp applies only when the last published price is at most ``clamp_max_gap_ns``
    (60 s) old. After a longer silence (a weekend, a halt) the first price is published as it
    is, flagged ``AFTER_GAP``: the gap is the engine's reopen logic's to handle (spec §7),
    and an oracle creeping 1% per second would hide it from that logic.
  * Per-source timestamp monotonicity (a source going back in time) needs per-source memory
    and is the service's to check; here a quote is only refused for being from the future.
"""

from __future__ import annotations

from bisect import bisect_left
from enum import IntFlag
from fractions import Fraction
from operator import itemgetter
from typing import Iterable, Mapping

import msgspec

from oracle.quote import SourceQuote
from oracle.session import NS_PER_SECOND, Session
from oracle.votes import median_x2, three_vote

PRICE_EXPO = -18
PPM = 1_000_000


class AggFlag(IntFlag):
    """What happened in one update. Stable bit numbers; append only."""

    NONE = 0
    INVALID_DROPPED = 1 << 0  # price ≤ 0, conf ≥ price, crossed or non-positive book, weight ≤ 0
    FUTURE_DROPPED = 1 << 1  # ts_source more than max_future_ns ahead of now
    STALE_DROPPED = 1 << 2  # older than the session's max_age
    OUTLIER_DROPPED = 1 << 3  # more than outlier_ppm from the median
    MAD_DROPPED = 1 << 4  # MAD z-score above the limit
    DEFAULT_CONF = 1 << 5  # a voting source had no conf: max(spread/2, 2 bp) used
    LOW_QUORUM = 1 << 6  # fewer voting sources than min_sources: no external price
    CLAMPED = 1 << 7  # the raw aggregate moved more than max_step; published the bound
    AFTER_GAP = 1 << 8  # last published price older than clamp_max_gap_ns: not clamped
    BREAKER = 1 << 9  # the circuit breaker tripped on this update
    BREAKER_MOVE = 1 << 10  # ... because of a move above breaker_move_ppm within the window
    BREAKER_CONF = 1 << 11  # ... because conf/price is above breaker_conf_ppm
    MARKET_CLOSED = 1 << 12  # the session expects no external price; quotes ignored


class AggParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per-market aggregation settings; the defaults are spec/oracle.md §3 (a test locks them)."""

    max_age_regular_ns: int = 5 * NS_PER_SECOND
    max_age_extended_ns: int = 30 * NS_PER_SECOND
    max_age_overnight_ns: int = 60 * NS_PER_SECOND
    max_future_ns: int = 2 * NS_PER_SECOND
    min_sources_regular: int = 2
    min_sources_extended: int = 1  # pre, post and overnight
    outlier_ppm: int = 50_000  # 5%
    mad_k_e4: int = 6_745  # 0.6745
    mad_z_max_e4: int = 35_000  # 3.5
    mad_floor_ppm: int = 100  # 1 bp of the median
    default_conf_ppm: int = 200  # 2 bp of the price
    max_step_ppm: int = 10_000  # 1% per update
    clamp_max_gap_ns: int = 60 * NS_PER_SECOND
    breaker_move_ppm: int = 100_000  # 10% ...
    breaker_window_ns: int = 60 * NS_PER_SECOND  # ... within 60 s
    breaker_conf_ppm: int = 20_000  # conf/price above 2%


DEFAULT_PARAMS = AggParams()


class AggState(msgspec.Struct, frozen=True):
    """What one market's aggregation remembers between updates: the last published price and
    the published ``(ts_ns, price_e18)`` pairs still inside the breaker window, oldest first."""

    last_price_e18: int | None = None
    last_ts_ns: int | None = None
    recent: tuple[tuple[int, int], ...] = ()


class Aggregate(msgspec.Struct, frozen=True):
    """One update's outcome. ``price_e18`` None: no external price (see ``flags``).
    ``raw_price_e18``/``p25_e18``/``p75_e18`` are the three-vote model's before the clamp;
    ``used`` the voting sources, sorted; ``newest_source_ts_ns`` the newest ``ts_source_ns``
    of any valid quote, stale or not (the service's ``HALTED`` test reads it)."""

    price_e18: int | None
    conf_e18: int | None
    n_sources: int
    flags: AggFlag
    raw_price_e18: int | None = None
    p25_e18: int | None = None
    p75_e18: int | None = None
    used: tuple[str, ...] = ()
    newest_source_ts_ns: int | None = None


class NormQuote(msgspec.Struct, frozen=True):
    """A quote in 1e-18 units of its currency (USD; a KRW quote is converted by a derived
    source first). ``conf_e18`` 0 when the source gave none, negative if it sent a negative
    one (so that ``is_invalid`` refuses it)."""

    source: str
    price_e18: int
    conf_e18: int
    bid_e18: int | None
    ask_e18: int | None
    ts_source_ns: int
    ts_received_ns: int
    weight: int


def _to_e18(mantissa: int, expo: int, multiplier: Fraction | None, round_up: bool) -> int:
    """``mantissa · 10^expo · multiplier`` in 1e-18 units, rounded down (up if ``round_up``)
    when not exact, which happens only for expo < −18 or a split multiplier."""
    shift = expo - PRICE_EXPO
    if shift >= 0 and multiplier is None:
        return mantissa * 10**shift  # the common case: exact, no Fraction
    value = Fraction(mantissa) * Fraction(10) ** shift * (1 if multiplier is None else multiplier)
    if value.denominator == 1:
        return value.numerator
    return -((-value.numerator) // value.denominator) if round_up else value.numerator // value.denominator


def normalise(quote: SourceQuote, multiplier: Fraction | None = None) -> NormQuote:
    """The quote in 1e-18 USD. ``multiplier`` puts a source on the market's basis (after a
    5:1 split, ``Fraction(1, 5)`` for a source still quoting the old shares; None: 1).
    Price, bid and ask round down, conf rounds up (wider), only when not exact."""

    def side(value: int | None) -> int | None:
        return None if value is None else _to_e18(value, quote.expo, multiplier, False)

    conf = quote.conf or 0
    return NormQuote(
        source=quote.source,
        price_e18=_to_e18(quote.price, quote.expo, multiplier, False),
        conf_e18=_to_e18(conf, quote.expo, multiplier, True) if conf > 0 else min(conf, 0),
        bid_e18=side(quote.bid),
        ask_e18=side(quote.ask),
        ts_source_ns=quote.ts_source_ns,
        ts_received_ns=quote.ts_received_ns,
        weight=quote.weight,
    )


def _recency_key(q: NormQuote) -> tuple:
    none = -(1 << 255)
    return (
        q.ts_source_ns, q.ts_received_ns, q.price_e18, q.conf_e18,
        none if q.bid_e18 is None else q.bid_e18, none if q.ask_e18 is None else q.ask_e18, q.weight,
    )


def newest_per_source(quotes: Iterable[NormQuote]) -> list[NormQuote]:
    """One quote per source: the newest by ``ts_source_ns``, then ``ts_received_ns``, then the
    remaining fields (an explicit total order, so input order never matters); sorted by source."""
    best: dict[str, NormQuote] = {}
    for q in quotes:
        kept = best.get(q.source)
        if kept is None or _recency_key(q) > _recency_key(kept):
            best[q.source] = q
    return [best[name] for name in sorted(best)]


def is_invalid(q: NormQuote) -> bool:
    """Step 1: ``price ≤ 0``, ``conf < 0`` or ``conf ≥ price``, a non-positive bid or ask, a
    crossed book (``bid > ask``; a locked book is fine), or a non-positive weight."""
    if q.price_e18 <= 0 or q.conf_e18 < 0 or q.conf_e18 >= q.price_e18 or q.weight <= 0:
        return True
    if (q.bid_e18 is not None and q.bid_e18 <= 0) or (q.ask_e18 is not None and q.ask_e18 <= 0):
        return True
    return q.bid_e18 is not None and q.ask_e18 is not None and q.bid_e18 > q.ask_e18


def max_age_ns(session: Session, params: AggParams = DEFAULT_PARAMS) -> int | None:
    """Step 2: the staleness limit for ``session``; None in a state without external prices."""
    if session == Session.REGULAR:
        return params.max_age_regular_ns
    if session in (Session.PRE, Session.POST):
        return params.max_age_extended_ns
    if session == Session.OVERNIGHT:
        return params.max_age_overnight_ns
    return None


def min_sources(session: Session, params: AggParams = DEFAULT_PARAMS) -> int:
    """Step 5: quorum, regular 2, pre/post/overnight 1."""
    return params.min_sources_regular if session == Session.REGULAR else params.min_sources_extended


def outlier_flags(prices_e18: list[int], params: AggParams = DEFAULT_PARAMS) -> list[AggFlag]:
    """Step 3, per price: ``OUTLIER_DROPPED`` if ``|x − m| > outlier_ppm·m``, ``MAD_DROPPED``
    if ``0.6745·|x − m| / max(MAD, 1 bp·m) > 3.5``; m and MAD are unweighted medians.

    Exact: with ``m2 = 2m``, ``d = 2|x − m|`` and ``mad4 = 4·MAD`` all integers,
    5% reads ``d·1e6 > ppm·m2`` and the z-score test reads
    ``2e6·k·d > z·max(1e6·mad4, 2·floor_ppm·m2)`` (k, z in 1e-4).
    """
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


def vote_conf_e18(q: NormQuote, params: AggParams = DEFAULT_PARAMS) -> tuple[int, bool]:
    """Step 4: the conf a source votes with, and whether it is a default. A source without
    conf uses ``max(spread/2, default_conf_ppm·price)``, both rounded up (wider)."""
    if q.conf_e18 > 0:
        return q.conf_e18, False
    floor_conf = -((-params.default_conf_ppm * q.price_e18) // PPM)
    if q.bid_e18 is not None and q.ask_e18 is not None:
        return max(-((q.bid_e18 - q.ask_e18) // 2), floor_conf), True
    return floor_conf, True


def clamp_step(raw_e18: int, last_e18: int, max_step_ppm: int) -> int:
    """Step 6: ``raw`` limited to ``last·(1 ± max_step)``; the bounds round toward ``last`` (the
    upper down, the lower up), so a published move never exceeds ``max_step``."""
    high = last_e18 * (PPM + max_step_ppm) // PPM
    low = -((-last_e18 * (PPM - max_step_ppm)) // PPM)
    return min(max(raw_e18, low), high)


def breaker_flags(
    raw_e18: int, conf_e18: int, now_ns: int, recent: tuple[tuple[int, int], ...], params: AggParams
) -> AggFlag:
    """Step 7: ``BREAKER | BREAKER_MOVE`` if ``|raw − p| > breaker_move_ppm·p`` for a price ``p``
    published within ``breaker_window_ns`` (inclusive) before ``now``; ``BREAKER |
    BREAKER_CONF`` if ``conf > breaker_conf_ppm·raw``. Exact integer comparisons."""
    flags = AggFlag.NONE
    window = _trimmed(recent, now_ns, params.breaker_window_ns)
    if window:
        # |raw − p|·PPM − move·p falls as p rises below raw and rises with p above it (for a
        # move under 100%), so the window's lowest and highest prices decide the test exactly.
        tested = (min(window, key=_price)[1], max(window, key=_price)[1])
        if params.breaker_move_ppm >= PPM:
            tested = tuple(price for _, price in window)
        if any(abs(raw_e18 - p) * PPM > params.breaker_move_ppm * p for p in tested):
            flags |= AggFlag.BREAKER | AggFlag.BREAKER_MOVE
    if conf_e18 * PPM > params.breaker_conf_ppm * raw_e18:
        flags |= AggFlag.BREAKER | AggFlag.BREAKER_CONF
    return flags


_price = itemgetter(1)


def _trimmed(recent: tuple[tuple[int, int], ...], now_ns: int, window_ns: int) -> tuple[tuple[int, int], ...]:
    """The entries with ``now − ts ≤ window``; ``recent`` is in publication order, so oldest
    first, and the kept entries are a suffix found by bisection."""
    return recent[bisect_left(recent, (now_ns - window_ns,)):]


def _select(quotes, session, now_ns, params, multipliers):
    """Steps 1–3: the voting quotes, the flags so far, and the newest valid source time."""
    flags = AggFlag.NONE
    normed = newest_per_source(normalise(q, multipliers.get(q.source)) for q in quotes)
    valid = []
    for q in normed:
        if is_invalid(q):
            flags |= AggFlag.INVALID_DROPPED
        elif q.ts_source_ns - now_ns > params.max_future_ns:
            flags |= AggFlag.FUTURE_DROPPED
        else:
            valid.append(q)
    newest = max((q.ts_source_ns for q in valid), default=None)
    limit = max_age_ns(session, params)
    fresh = [q for q in valid if now_ns - q.ts_source_ns <= limit]
    if len(fresh) < len(valid):
        flags |= AggFlag.STALE_DROPPED
    voting = []
    if fresh:
        for q, flag in zip(fresh, outlier_flags([q.price_e18 for q in fresh], params)):
            flags |= flag
            if not flag:
                voting.append(q)
    return voting, flags, newest


def aggregate(
    quotes: Iterable[SourceQuote],
    session: Session,
    now_ns: int,
    state: AggState = AggState(),
    params: AggParams = DEFAULT_PARAMS,
    multipliers: Mapping[str, Fraction] | None = None,
) -> tuple[Aggregate, AggState]:
    """One update for one market at ``now_ns`` (int ns since the epoch), steps 1–7 of spec §3.

    ``session`` is the scheduled state, possibly downgraded by hints (oracle/session.py); pass
    the calendar's open state rather than ``HALTED`` so that returning quotes are seen.
    ``multipliers`` maps a source name to its split multiplier (see ``normalise``).
    Returns the outcome and the state for the next update (unchanged when nothing is
    published, apart from dropping entries that left the breaker window).
    """
    if state.last_ts_ns is not None and now_ns < state.last_ts_ns:
        raise ValueError("now_ns is before the last published update")
    recent = _trimmed(state.recent, now_ns, params.breaker_window_ns)
    quiet = AggState(state.last_price_e18, state.last_ts_ns, recent)
    if max_age_ns(session, params) is None:
        return Aggregate(None, None, 0, AggFlag.MARKET_CLOSED), quiet
    voting, flags, newest = _select(quotes, session, now_ns, params, multipliers or {})
    used = tuple(q.source for q in voting)
    if len(voting) < min_sources(session, params):
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
