"""Derived sources: quotes computed from other quotes (spec/oracle.md §2).

Layout:
  ``FxConvert``        a local-currency price ÷ an FX rate (local per USD): a KRX name in USD
  ``IndexFromFuture``  an index implied by its future, ``S = F · e^(−d̄·T)``
  ``derive``           one rule applied to the latest input quotes (pure)
  ``DerivedSource``    the adapter: owns its input sources, keeps their latest quotes, and
                       emits a derived quote whenever an input changes; ``poll`` asks its
                       polled inputs, ``run`` runs its pushed ones

Invariants:
  * Exact integers (``Fraction``) for FX; ``Decimal`` at 50 digits for the exponential, which
    is correctly rounded and so the same on every machine. Price and bid round down, ask and
    conf round up (never narrower than the inputs justify).
  * A derived quote is as old as its oldest input (``ts_source_ns`` = the minimum) and as
    recent in arrival as its newest (``ts_received_ns`` = the maximum), so the aggregator's
    staleness rules see through it.
  * FX: conf is relative and additive, ``conf/p = c₁/p₁ + c₂/p₂`` (a missing conf counts 0;
    both missing: None); ``bid = bid₁ / fx_ask``, ``ask = ask₁ / fx_bid`` (the FX mid when the
    rate has no book). The session hint is the stock's.
  * An input with ``poll`` is polled, never run; an input without it is run as a task.

Known limitations:
  * ``T`` counts a year as 365 days of 86,400 s; ``d̄`` (rate − dividend yield, ppm a year)
    is configuration, not a curve.
  * A rule with no usable input (FX rate ≤ 0, an expired future) emits nothing; the counter
    ``health.errors["bad_input"]`` says so.
"""

from __future__ import annotations

import asyncio
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal
from fractions import Fraction
from typing import Sequence, Union

import msgspec

from oracle.quote import SourceQuote
from oracle.sources.base import Emit, PollSource, PushSource, SourceHealth

PPM = 1_000_000
NS_PER_YEAR = 365 * 86_400 * 1_000_000_000
_EXP_CONTEXT = Context(prec=50)

Key = tuple[str, str]  # (source, symbol)


class FxConvert(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="fx_convert"):
    """``symbol`` in USD = ``price`` (local currency) ÷ ``fx`` (local currency per USD)."""

    symbol: str
    price: Key
    fx: Key
    out_expo: int = -18


class IndexFromFuture(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="index_from_future"):
    """``symbol`` = the future's price × e^(−carry·T), T = (expiry − quote time) in years."""

    symbol: str
    future: Key
    expiry_ns: int
    carry_ppm_per_year: int  # d̄: financing rate minus dividend yield, ppm per year
    out_expo: int = -18


Rule = Union[FxConvert, IndexFromFuture]


def _floor(x: Fraction) -> int:
    return x.numerator // x.denominator


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


def _value(mantissa: int, expo: int) -> Fraction:
    return Fraction(mantissa) * Fraction(10) ** expo


def _fx(rule: FxConvert, p: SourceQuote, fx: SourceQuote, name: str, weight: int) -> SourceQuote | None:
    if fx.price <= 0:
        return None
    unit = Fraction(10) ** -rule.out_expo  # mantissas per unit of value
    rate = _value(fx.price, fx.expo)
    price = _value(p.price, p.expo) / rate * unit
    conf = None
    if p.price > 0 and (p.conf or fx.conf):
        rel = Fraction(p.conf or 0, p.price) + Fraction(fx.conf or 0, fx.price)
        conf = _ceil(price * rel)
    bid = ask = None
    if p.bid is not None and p.ask is not None:
        fx_bid = _value(fx.bid, fx.expo) if fx.bid is not None and fx.bid > 0 else rate
        fx_ask = _value(fx.ask, fx.expo) if fx.ask is not None and fx.ask > 0 else rate
        bid = _floor(_value(p.bid, p.expo) / fx_ask * unit)
        ask = _ceil(_value(p.ask, p.expo) / fx_bid * unit)
    return SourceQuote(
        name, rule.symbol, _floor(price), rule.out_expo, min(p.ts_source_ns, fx.ts_source_ns),
        max(p.ts_received_ns, fx.ts_received_ns), conf=conf, bid=bid, ask=ask,
        session_hint=p.session_hint, weight=weight,
    )


def carry_factor(carry_ppm_per_year: int, years_ns: int) -> Decimal:
    """``e^(−carry·T)`` with T = ``years_ns`` / ``NS_PER_YEAR``, to 50 significant digits."""
    exponent = _EXP_CONTEXT.divide(Decimal(-carry_ppm_per_year * years_ns), Decimal(PPM * NS_PER_YEAR))
    return _EXP_CONTEXT.exp(exponent)


def _scale(mantissa: int | None, factor: Decimal, shift: int, rounding: str) -> int | None:
    if mantissa is None:
        return None
    value = _EXP_CONTEXT.multiply(_EXP_CONTEXT.scaleb(Decimal(mantissa), shift), factor)
    return int(value.to_integral_value(rounding=rounding))


def _index(rule: IndexFromFuture, f: SourceQuote, name: str, weight: int) -> SourceQuote | None:
    remaining_ns = rule.expiry_ns - f.ts_source_ns
    if remaining_ns < 0:
        return None
    factor = carry_factor(rule.carry_ppm_per_year, remaining_ns)
    shift = f.expo - rule.out_expo
    return SourceQuote(
        name, rule.symbol, _scale(f.price, factor, shift, ROUND_FLOOR), rule.out_expo, f.ts_source_ns,
        f.ts_received_ns, conf=_scale(f.conf or None, factor, shift, ROUND_CEILING),
        bid=_scale(f.bid, factor, shift, ROUND_FLOOR), ask=_scale(f.ask, factor, shift, ROUND_CEILING),
        session_hint=f.session_hint, weight=weight,
    )


def inputs_of(rule: Rule) -> tuple[Key, ...]:
    return (rule.price, rule.fx) if isinstance(rule, FxConvert) else (rule.future,)


def derive(rule: Rule, latest: dict[Key, SourceQuote], name: str, weight: int = 1) -> SourceQuote | None:
    """The rule's quote from the latest inputs; None if an input is missing or unusable."""
    if any(key not in latest for key in inputs_of(rule)):
        return None
    if isinstance(rule, FxConvert):
        return _fx(rule, latest[rule.price], latest[rule.fx], name, weight)
    return _index(rule, latest[rule.future], name, weight)


class DerivedSource:
    """Owns ``inputs`` (adapters whose quotes feed ``rules``) and emits the derived quotes."""

    def __init__(self, name: str, rules: Sequence[Rule], inputs: Sequence[object] = (), weight: int = 1):
        self.name = name
        self.rules = tuple(rules)
        self.weight = weight
        self.health = SourceHealth()
        self._polled = [s for s in inputs if isinstance(s, PollSource)]
        self._pushed = [s for s in inputs if not isinstance(s, PollSource)]
        if not all(isinstance(s, PushSource) for s in self._pushed):
            raise TypeError("an input must have poll(now_ns) or run(emit)")
        self._wanted = {key for rule in self.rules for key in inputs_of(rule)}
        self._latest: dict[Key, SourceQuote] = {}

    def offer(self, quote: SourceQuote) -> list[SourceQuote]:
        """Take one input quote; return the derived quotes it changes, in rule order."""
        key = (quote.source, quote.symbol)
        if key not in self._wanted:
            return []
        self._latest[key] = quote
        out = []
        for rule in self.rules:
            if key in inputs_of(rule):
                derived = derive(rule, self._latest, self.name, self.weight)
                if derived is None:
                    if all(k in self._latest for k in inputs_of(rule)):
                        self.health.error("bad_input", f"{rule.symbol}: unusable input {key}")
                    continue
                out.append(derived)
        self.health.quotes += len(out)
        return out

    def poll(self, now_ns: int) -> list[SourceQuote]:
        """Poll the polled inputs and return the derived quotes (the last per symbol)."""
        latest: dict[str, SourceQuote] = {}
        for source in self._polled:
            for quote in source.poll(now_ns):
                for derived in self.offer(quote):
                    latest[derived.symbol] = derived
        return [latest[symbol] for symbol in sorted(latest)]

    async def run(self, emit: Emit) -> None:
        """Run the pushed inputs, emitting derived quotes as they change. Ends by cancellation
        (or at once when every input is polled)."""

        def relay(quote: SourceQuote) -> None:
            for derived in self.offer(quote):
                emit(derived)

        if self._pushed:
            await asyncio.gather(*(source.run(relay) for source in self._pushed))
