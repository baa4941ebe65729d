"""Aggregation of source quotes into one external price per market per update (spec §3).

Pure and deterministic: ``aggregate(quotes, session, now_ns, state, params)`` returns the
result and the next ``AggState``; it reads no clock and keeps no state of its own (a state it
returns carries, beside its fields, an index of its breaker window's extremes, derived from
``recent`` alone: see "the breaker window's extremes" below).

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
  ``aggregate`` runs these steps on plain tuples (``Row``) and int flags through the same
  helpers the public step functions wrap (``_norm_row``, ``_invalid``, ``_outlier_bits``,
  ``_vote_conf``, ``_breaker_bits``); tests/oracle/reference_aggregate.py is the same
  aggregation written step by step on ``NormQuote`` and ``AggFlag`` values.

Invariants:
  * Without a clamp, a published price lies within [min, max] of the voting quotes' prices
    (fewer than half the votes can lie outside it); it does not depend on input order.
  * No floats: thresholds are integer ppm; every comparison is exact; the only roundings are
    documented where they happen (normalising a finer-than-1e-18 or split-adjusted value, the
    even-count median, the clamp bounds).
  * Results, flags and states equal the step-by-step reference's for every input.
  * An update in a closed state publishes nothing (``MARKET_CLOSED``): the oracle never
    invents a price when the outside world is silent.

Known limitations:
  * ``BREAKER`` is set on the updates whose own condition trips it; the "until 5 clean
    updates" latch of the spec belongs to the engine, which sees every flag in the journal.
  * The clamp applies only when the last published price is at most ``clamp_max_gap_ns``
    (60 s) old. After a longer silence (a weekend, a halt) the first price is published as it
    is, flagged ``AFTER_GAP``: the gap is the engine's reopen logic's to handle (spec §7),
    and an oracle creeping 1% per second would hide it from that logic.
  * The window index lives outside the state's fields, so decoding, ``copy``, ``pickle`` or
    ``msgspec.structs.replace`` drop it: the next update then reads every price of the
    window once (same result, slower) and its state has an index again.
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


class AggState(msgspec.Struct, frozen=True, dict=True):
    """What one market's aggregation remembers between updates: the last published price and
    the published ``(ts_ns, price_e18)`` pairs still inside the breaker window, oldest first.

    A state returned by ``aggregate`` also holds, outside its fields, an index of the lowest
    and highest prices of ``recent`` (see ``_extremes_of``); equality, hashing and encoding
    see only the fields."""

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


# ``aggregate`` builds an update's flags as a plain int (an ``AggFlag`` operation costs a
# microsecond or more, an int's tens of nanoseconds) and makes it one ``AggFlag`` at the end;
# the public step functions return ``AggFlag`` values made from the same ints.
_INVALID = AggFlag.INVALID_DROPPED.value
_FUTURE = AggFlag.FUTURE_DROPPED.value
_STALE = AggFlag.STALE_DROPPED.value
_OUTLIER = AggFlag.OUTLIER_DROPPED.value
_MAD = AggFlag.MAD_DROPPED.value
_DEFAULT_CONF = AggFlag.DEFAULT_CONF.value
_LOW_QUORUM = AggFlag.LOW_QUORUM.value
_CLAMPED = AggFlag.CLAMPED.value
_AFTER_GAP = AggFlag.AFTER_GAP.value
_BREAKER_MOVE = (AggFlag.BREAKER | AggFlag.BREAKER_MOVE).value
_BREAKER_CONF = (AggFlag.BREAKER | AggFlag.BREAKER_CONF).value

# A normalised quote inside ``aggregate``: ``NormQuote``'s fields less the source, in the
# order of the recency key, ``(ts_source_ns, ts_received_ns, price_e18, conf_e18, bid_e18,
# ask_e18, weight)``; the source is the key it is filed under.
Row = tuple[int, int, int, int, int | None, int | None, int]

# ``AggState.recent`` and the breaker window: ``(ts_ns, price_e18)`` pairs, oldest first.
Entries = tuple[tuple[int, int], ...]

_NO_SIDE = -(1 << 255)  # a missing bid or ask in the recency key: below every real one


# ---- step 1: normalisation, one quote per source, validity


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


def _norm_row(quote: SourceQuote, multiplier: Fraction | None) -> Row:
    """``normalise``'s numbers as a ``Row``. Without a multiplier and with ``expo ≥ −18`` each
    value is its mantissa times the same power of ten, computed once (``_to_e18``'s common
    case); otherwise each goes through ``_to_e18``. A conf ≤ 0 is kept as it is."""
    conf = quote.conf or 0
    bid, ask = quote.bid, quote.ask
    shift = quote.expo - PRICE_EXPO
    if shift >= 0 and multiplier is None:
        scale = 10**shift
        return (
            quote.ts_source_ns, quote.ts_received_ns, quote.price * scale, conf * scale if conf > 0 else conf,
            None if bid is None else bid * scale, None if ask is None else ask * scale, quote.weight,
        )
    expo = quote.expo
    return (
        quote.ts_source_ns, quote.ts_received_ns, _to_e18(quote.price, expo, multiplier, False),
        _to_e18(conf, expo, multiplier, True) if conf > 0 else conf,
        None if bid is None else _to_e18(bid, expo, multiplier, False),
        None if ask is None else _to_e18(ask, expo, multiplier, False), quote.weight,
    )


def normalise(quote: SourceQuote, multiplier: Fraction | None = None) -> NormQuote:
    """The quote in 1e-18 USD. ``multiplier`` puts a source on the market's basis (after a
    5:1 split, ``Fraction(1, 5)`` for a source still quoting the old shares; None: 1).
    Price, bid and ask round down, conf rounds up (wider), only when not exact."""
    ts_source_ns, ts_received_ns, price, conf, bid, ask, weight = _norm_row(quote, multiplier)
    return NormQuote(quote.source, price, conf, bid, ask, ts_source_ns, ts_received_ns, weight)


def _row_key(row: Row) -> tuple:
    """The recency order: the row itself, a missing bid or ask ranking below every price."""
    ts_source_ns, ts_received_ns, price, conf, bid, ask, weight = row
    return (
        ts_source_ns, ts_received_ns, price, conf,
        _NO_SIDE if bid is None else bid, _NO_SIDE if ask is None else ask, weight,
    )


def _recency_key(q: NormQuote) -> tuple:
    return _row_key((q.ts_source_ns, q.ts_received_ns, q.price_e18, q.conf_e18, q.bid_e18, q.ask_e18, q.weight))


def newest_per_source(quotes: Iterable[NormQuote]) -> list[NormQuote]:
    """One quote per source: the newest by ``ts_source_ns``, then ``ts_received_ns``, then the
    remaining fields (an explicit total order, so input order never matters); sorted by source."""
    best: dict[str, NormQuote] = {}
    for q in quotes:
        kept = best.get(q.source)
        if kept is None or _recency_key(q) > _recency_key(kept):
            best[q.source] = q
    return [best[name] for name in sorted(best)]


def _newest_rows(quotes: Iterable[SourceQuote], multipliers: Mapping[str, Fraction] | None) -> dict[str, Row]:
    """``newest_per_source`` of the normalised quotes, as rows by source (in no set order).
    A key is built only when a source repeats; of equal keys the first stays, as there."""
    best: dict[str, Row] = {}
    for quote in quotes:
        source = quote.source
        row = _norm_row(quote, multipliers.get(source) if multipliers else None)
        kept = best.get(source)
        if kept is None or _row_key(row) > _row_key(kept):
            best[source] = row
    return best


def _invalid(price_e18: int, conf_e18: int, bid_e18: int | None, ask_e18: int | None, weight: int) -> bool:
    """``is_invalid`` on the numbers themselves."""
    if price_e18 <= 0 or conf_e18 < 0 or conf_e18 >= price_e18 or weight <= 0:
        return True
    if (bid_e18 is not None and bid_e18 <= 0) or (ask_e18 is not None and ask_e18 <= 0):
        return True
    return bid_e18 is not None and ask_e18 is not None and bid_e18 > ask_e18


def is_invalid(q: NormQuote) -> bool:
    """Step 1: ``price ≤ 0``, ``conf < 0`` or ``conf ≥ price``, a non-positive bid or ask, a
    crossed book (``bid > ask``; a locked book is fine), or a non-positive weight."""
    return _invalid(q.price_e18, q.conf_e18, q.bid_e18, q.ask_e18, q.weight)


# ---- steps 2 and 5: staleness limit and quorum by session


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


# ---- step 3: outliers


def _outlier_bits(prices_e18: list[int], params: AggParams) -> list[int]:
    """``outlier_flags`` as ints; each side of both comparisons is one exact integer product,
    the factors that do not depend on the price computed once."""
    m2 = median_x2(prices_e18)
    devs = [abs(2 * x - m2) for x in prices_e18]
    mad_term = max(PPM * median_x2(devs), 2 * params.mad_floor_ppm * m2)
    outlier_bound = params.outlier_ppm * m2
    mad_scale = 2 * PPM * params.mad_k_e4
    mad_bound = params.mad_z_max_e4 * mad_term
    return [(_OUTLIER if d * PPM > outlier_bound else 0) | (_MAD if mad_scale * d > mad_bound else 0) for d in devs]


def outlier_flags(prices_e18: list[int], params: AggParams = DEFAULT_PARAMS) -> list[AggFlag]:
    """Step 3, per price: ``OUTLIER_DROPPED`` if ``|x − m| > outlier_ppm·m``, ``MAD_DROPPED``
    if ``0.6745·|x − m| / max(MAD, 1 bp·m) > 3.5``; m and MAD are unweighted medians.

    Exact: with ``m2 = 2m``, ``d = 2|x − m|`` and ``mad4 = 4·MAD`` all integers,
    5% reads ``d·1e6 > ppm·m2`` and the z-score test reads
    ``2e6·k·d > z·max(1e6·mad4, 2·floor_ppm·m2)`` (k, z in 1e-4).
    """
    return [AggFlag(bits) for bits in _outlier_bits(prices_e18, params)]


# ---- step 4: the conf a source votes with


def _vote_conf(
    price_e18: int, conf_e18: int, bid_e18: int | None, ask_e18: int | None, default_conf_ppm: int
) -> tuple[int, bool]:
    """``vote_conf_e18`` on the numbers themselves."""
    if conf_e18 > 0:
        return conf_e18, False
    floor_conf = -((-default_conf_ppm * price_e18) // PPM)
    if bid_e18 is not None and ask_e18 is not None:
        return max(-((bid_e18 - ask_e18) // 2), floor_conf), True
    return floor_conf, True


def vote_conf_e18(q: NormQuote, params: AggParams = DEFAULT_PARAMS) -> tuple[int, bool]:
    """Step 4: the conf a source votes with, and whether it is a default. A source without
    conf uses ``max(spread/2, default_conf_ppm·price)``, both rounded up (wider)."""
    return _vote_conf(q.price_e18, q.conf_e18, q.bid_e18, q.ask_e18, params.default_conf_ppm)


# ---- step 6: clamp


def clamp_step(raw_e18: int, last_e18: int, max_step_ppm: int) -> int:
    """Step 6: ``raw`` limited to ``last·(1 ± max_step)``; the bounds round toward ``last`` (the
    upper down, the lower up), so a published move never exceeds ``max_step``."""
    high = last_e18 * (PPM + max_step_ppm) // PPM
    low = -((-last_e18 * (PPM - max_step_ppm)) // PPM)
    return min(max(raw_e18, low), high)


# ---- step 7: circuit breaker


def _moves_too_far(raw_e18: int, low_e18: int, high_e18: int, move_ppm: int) -> bool:
    """Whether ``|raw − p| > move_ppm·p`` for ``p`` the window's lowest or highest price.

    ``|raw − p|·PPM − move·p`` falls as p rises below raw and rises with p above it (for a
    move under 100%), so the window's lowest and highest prices decide the test exactly."""
    return abs(raw_e18 - low_e18) * PPM > move_ppm * low_e18 or abs(raw_e18 - high_e18) * PPM > move_ppm * high_e18


def _breaker_bits(
    raw_e18: int, conf_e18: int, window: Entries, params: AggParams, extremes_e18: tuple[int, int] | None = None
) -> int:
    """``breaker_flags`` as an int, on the already trimmed window; ``extremes_e18`` is its
    lowest and highest price when the caller knows them (read from the window otherwise)."""
    bits = 0
    move_ppm = params.breaker_move_ppm
    if window:
        if move_ppm >= PPM:  # the extremes no longer decide: every price is tested
            moved = any(abs(raw_e18 - p) * PPM > move_ppm * p for p in map(_price, window))
        else:
            low, high = extremes_e18 or (min(map(_price, window)), max(map(_price, window)))
            moved = _moves_too_far(raw_e18, low, high, move_ppm)
        if moved:
            bits = _BREAKER_MOVE
    if conf_e18 * PPM > params.breaker_conf_ppm * raw_e18:
        bits |= _BREAKER_CONF
    return bits


def breaker_flags(raw_e18: int, conf_e18: int, now_ns: int, recent: Entries, params: AggParams) -> AggFlag:
    """Step 7: ``BREAKER | BREAKER_MOVE`` if ``|raw − p| > breaker_move_ppm·p`` for a price ``p``
    published within ``breaker_window_ns`` (inclusive) before ``now``; ``BREAKER |
    BREAKER_CONF`` if ``conf > breaker_conf_ppm·raw``. Exact integer comparisons."""
    window = _trimmed(recent, now_ns, params.breaker_window_ns)
    return AggFlag(_breaker_bits(raw_e18, conf_e18, window, params))


_price = itemgetter(1)


def _cut_index(recent: Entries, now_ns: int, window_ns: int) -> int:
    """Where ``_trimmed`` cuts ``recent``."""
    return bisect_left(recent, (now_ns - window_ns,))


def _trimmed(recent: Entries, now_ns: int, window_ns: int) -> Entries:
    """The entries with ``now − ts ≤ window``; ``recent`` is in publication order, so oldest
    first, and the kept entries are a suffix found by bisection."""
    return recent[_cut_index(recent, now_ns, window_ns):]


# ---- the breaker window's extremes, kept beside the state
#
# Reading every price of the window each update (one int object each, scattered over the
# heap) costs more than all the rest of the breaker. So a state that ``aggregate`` returns
# carries an index of them under ``_EXTREMES`` in its ``__dict__``: ``(recent, base, lows,
# highs)``, the entries of ``recent`` being numbered from ``base``. ``lows`` are the
# ``(number, price)`` of the entries strictly lower than every later one, ``highs`` of those
# strictly higher, both oldest first. The lowest price of a suffix of ``recent`` is then the
# price of the first low numbered inside it (the suffix's last lowest entry is a low, and a
# low between the suffix's start and it would be lower still); the highest likewise.
# Appending a price drops, from the end, the lows not below it and the highs not above it,
# so each entry joins and leaves each list once.
# The index is used only for the very tuple it was built from (an identity check), so a
# state made any other way (``AggState(...)``, decoded, ``msgspec.structs.replace``) is read
# in full, and no result depends on whether an index was there.

_EXTREMES = "_window_extremes"


def _extremes_of(state: AggState) -> tuple[int, Entries, Entries]:
    """``(base, lows, highs)`` for ``state.recent``: the state's own index, or a new one."""
    kept = state.__dict__.get(_EXTREMES)
    if kept is not None and kept[0] is state.recent:
        return kept[1], kept[2], kept[3]
    lows: Entries = ()
    highs: Entries = ()
    for number, entry in enumerate(state.recent):
        lows, highs = _pushed(lows, highs, number, _price(entry))
    return 0, lows, highs


def _pushed(lows: Entries, highs: Entries, number: int, price_e18: int) -> tuple[Entries, Entries]:
    """``lows`` and ``highs`` once entry ``number``, at ``price_e18``, follows the others."""
    i = len(lows)
    while i and lows[i - 1][1] >= price_e18:
        i -= 1
    j = len(highs)
    while j and highs[j - 1][1] <= price_e18:
        j -= 1
    entry = ((number, price_e18),)
    return lows[:i] + entry, highs[:j] + entry


def _from_number(entries: Entries, number: int) -> Entries:
    """The ``entries`` numbered ``number`` or later (numbers rise, so a suffix)."""
    i = 0
    while i < len(entries) and entries[i][0] < number:
        i += 1
    return entries[i:]


def _indexed(state: AggState, base: int, lows: Entries, highs: Entries) -> AggState:
    """``state``, just made, with its index attached."""
    state.__dict__[_EXTREMES] = (state.recent, base, lows, highs)
    return state


def _breaker_window(
    recent: Entries, base: int, lows: Entries, highs: Entries, now_ns: int, window_ns: int
) -> tuple[Entries, tuple[int, int] | None]:
    """The breaker's window, ``recent`` trimmed again exactly as ``breaker_flags`` would (a
    no-op for a state ``aggregate`` made), and its lowest and highest price (None if empty)."""
    cut = _cut_index(recent, now_ns, window_ns)
    window = recent[cut:]
    if not window:
        return window, None
    first = base + cut
    return window, (_from_number(lows, first)[0][1], _from_number(highs, first)[0][1])


# ---- the update


def _select(
    quotes: Iterable[SourceQuote],
    now_ns: int,
    max_age: int,
    params: AggParams,
    multipliers: Mapping[str, Fraction] | None,
) -> tuple[tuple[str, ...], list[Row], int, int | None]:
    """Steps 1–3: the voting sources (sorted) and their rows, the flags so far as an int, and
    the newest ``ts_source_ns`` of a valid quote (None if there is none)."""
    best = _newest_rows(quotes, multipliers)
    bits, newest = 0, None
    fresh: list[str] = []
    for source in sorted(best):
        ts_source_ns, _, price, conf, bid, ask, weight = best[source]
        if _invalid(price, conf, bid, ask, weight):
            bits |= _INVALID
        elif ts_source_ns - now_ns > params.max_future_ns:
            bits |= _FUTURE
        else:
            if newest is None or ts_source_ns > newest:
                newest = ts_source_ns
            if now_ns - ts_source_ns <= max_age:
                fresh.append(source)
            else:
                bits |= _STALE
    if not fresh:
        return (), [], bits, newest
    dropped = _outlier_bits([best[source][2] for source in fresh], params)
    if any(dropped):
        for outlier_bits in dropped:
            bits |= outlier_bits
        fresh = [source for source, outlier_bits in zip(fresh, dropped) if not outlier_bits]
    return tuple(fresh), [best[source] for source in fresh], bits, newest


def _vote_triples(rows: list[Row], params: AggParams) -> tuple[list[tuple[int, int, int]], int]:
    """Step 4's ``(price, conf, weight)`` votes, and ``DEFAULT_CONF`` if a source used a default."""
    triples, bits = [], 0
    for _, _, price, conf, bid, ask, weight in rows:
        vote_conf, defaulted = _vote_conf(price, conf, bid, ask, params.default_conf_ppm)
        if defaulted:
            bits = _DEFAULT_CONF
        triples.append((price, vote_conf, weight))
    return triples, bits


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
    window_ns = params.breaker_window_ns
    cut = _cut_index(state.recent, now_ns, window_ns)
    recent = state.recent[cut:]
    base, lows, highs = _extremes_of(state)
    base += cut
    lows, highs = _from_number(lows, base), _from_number(highs, base)
    max_age = max_age_ns(session, params)
    if max_age is None:
        quiet = _indexed(AggState(state.last_price_e18, state.last_ts_ns, recent), base, lows, highs)
        return Aggregate(None, None, 0, AggFlag.MARKET_CLOSED), quiet
    used, rows, bits, newest = _select(quotes, now_ns, max_age, params, multipliers)
    if len(rows) < min_sources(session, params):
        quiet = _indexed(AggState(state.last_price_e18, state.last_ts_ns, recent), base, lows, highs)
        flags = AggFlag(bits | _LOW_QUORUM)
        return Aggregate(None, None, len(rows), flags, used=used, newest_source_ts_ns=newest), quiet
    triples, conf_bits = _vote_triples(rows, params)
    bits |= conf_bits
    p25, raw, p75, conf = three_vote(triples)
    price = raw
    if state.last_price_e18 is not None and state.last_ts_ns is not None:
        if now_ns - state.last_ts_ns <= params.clamp_max_gap_ns:
            price = clamp_step(raw, state.last_price_e18, params.max_step_ppm)
            if price != raw:
                bits |= _CLAMPED
        else:
            bits |= _AFTER_GAP
    window, extremes = _breaker_window(recent, base, lows, highs, now_ns, window_ns)
    bits |= _breaker_bits(raw, conf, window, params, extremes)
    result = Aggregate(price, conf, len(rows), AggFlag(bits), raw, p25, p75, used, newest)
    lows, highs = _pushed(lows, highs, base + len(recent), price)
    return result, _indexed(AggState(price, now_ns, recent + ((now_ns, price),)), base, lows, highs)
