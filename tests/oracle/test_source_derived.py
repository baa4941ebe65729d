"""Derived sources: FX conversion, an index implied by its future, and the adapter."""

from __future__ import annotations

import asyncio
from decimal import ROUND_FLOOR, Decimal, localcontext

import msgspec
import pytest

from fake_datastreams import V11_FEED_KRX, FakeDataStreams, Live, Text, envelope, v11_report
from fake_hermes import FEED_IDS, Data, FakeHermes, hermes_body
from loopback import NoSleep, cancel, serve, wait_until
from oracle.quote import SourceQuote
from oracle.session import Session
from oracle.sources.chainlink import DataStreamsConfig, DataStreamsSource
from oracle.sources.derived import NS_PER_YEAR, DerivedSource, FxConvert, IndexFromFuture, derive
from oracle.sources.pyth import HermesConfig, HermesSource

NS = 1_000_000_000
E18 = 10**18
T = 1_780_063_858 * NS
HYNIX_KRW = ("chainlink", "000660")
USDKRW = ("pyth", "USDKRW")
FX_RULE = FxConvert("SKHYNIX", price=HYNIX_KRW, fx=USDKRW)
NQ = ("cme", "NQZ6")


def hynix(price_krw: int, ts: int = T, **kw) -> SourceQuote:
    """A KRW price with 18 decimals (Chainlink style)."""
    return SourceQuote("chainlink", "000660", price_krw * E18, -18, ts, ts + 1, **kw)


def usdkrw(price_e5: int, ts: int = T - 2 * NS, **kw) -> SourceQuote:
    """KRW per USD at expo −5 (Pyth style)."""
    return SourceQuote("pyth", "USDKRW", price_e5, -5, ts, ts + 5, **kw)


def latest(*quotes):
    return {(q.source, q.symbol): q for q in quotes}


# --- FX ----------------------------------------------------------------------------------------------


def test_fx_conversion_is_exact_with_relative_conf_and_a_conservative_book():
    stock = hynix(200_000, conf=100 * E18, bid=199_900 * E18, ask=200_100 * E18, session_hint=Session.REGULAR)
    fx = usdkrw(125_000_000, conf=25_000, bid=124_950_000, ask=125_050_000)  # 1250.00 ± 0.25
    out = derive(FX_RULE, latest(stock, fx), "fx", weight=2)
    assert out == SourceQuote(
        "fx", "SKHYNIX",
        160 * E18,  # 200,000 KRW / 1,250 KRW per USD
        -18,
        T - 2 * NS,  # as old as the older input
        T + 1,  # as recent as the later arrival
        conf=112 * 10**15,  # 160 · (100/200,000 + 0.25/1,250) = 160 · 0.0007 = 0.112
        bid=199_900 * E18 * 100_000 // 125_050_000,  # bid ÷ FX ask, rounded down
        ask=-(-200_100 * E18 * 100_000 // 124_950_000),  # ask ÷ FX bid, rounded up
        session_hint=Session.REGULAR,
        weight=2,
    )
    assert out.bid == 159_856_057_576_969_212_315 and out.ask == 160_144_057_623_049_219_688


def test_fx_without_conf_or_book_and_with_an_unusable_rate():
    plain = derive(FX_RULE, latest(hynix(201_500), usdkrw(138_025_000)), "fx")
    assert plain.price == 201_500 * E18 * 100_000 // 138_025_000 and plain.conf is None and plain.bid is None
    assert derive(FX_RULE, latest(hynix(201_500), usdkrw(0)), "fx") is None
    assert derive(FX_RULE, latest(hynix(201_500)), "fx") is None
    zero = derive(FX_RULE, latest(hynix(0), usdkrw(138_025_000, conf=1)), "fx")
    assert (zero.price, zero.conf) == (0, None)  # passed on: the aggregator drops it, flagged


# --- index from its future -------------------------------------------------------------------------


def exact_index(future_e2: int, carry_ppm: int, years: Decimal) -> int:
    with localcontext() as ctx:
        ctx.prec = 80
        value = Decimal(future_e2) / 100 * (Decimal(-carry_ppm) / 1_000_000 * years).exp() * Decimal(10) ** 18
        return int(value.to_integral_value(rounding=ROUND_FLOOR))


def test_index_is_the_future_discounted_by_carry_over_time_to_expiry():
    rule = IndexFromFuture("NDX", future=NQ, expiry_ns=T + NS_PER_YEAR // 4, carry_ppm_per_year=40_000)
    future = SourceQuote("cme", "NQZ6", 2_100_000, -2, T, T, conf=500, bid=2_099_975, ask=2_100_025)
    out = derive(rule, latest(future), "idx")
    assert out.price == exact_index(2_100_000, 40_000, Decimal("0.25")) == 20_791_046_508_732_529_125_052
    assert out.price == 20_791_046_508_732_529_125_052  # 21,000 · e^(−0.01)
    assert out.conf == 4_950_249_168_745_840_268  # 5.00 · e^(−0.01), rounded up
    assert out.bid < out.price < out.ask
    assert (out.expo, out.ts_source_ns, out.symbol) == (-18, T, "NDX")
    no_carry = msgspec.structs.replace(rule, carry_ppm_per_year=0)
    assert derive(no_carry, latest(future), "idx").price == 21_000 * E18
    expired = msgspec.structs.replace(rule, expiry_ns=T - 1)
    assert derive(expired, latest(future), "idx") is None


# --- the adapter ----------------------------------------------------------------------------------------


class Polled:
    name = "polled"

    def __init__(self, quotes):
        self.quotes = quotes

    def poll(self, now_ns: int):
        return [q for q in self.quotes if q.ts_source_ns <= now_ns]


def test_offer_and_poll_emit_on_each_input_change():
    source = DerivedSource("fx", [FX_RULE], inputs=[Polled([hynix(200_000), usdkrw(125_000_000)])])
    assert source.offer(SourceQuote("x", "y", 1, 0, 0, 0)) == []
    assert [q.price for q in source.poll(T)] == [160 * E18]
    assert source.offer(usdkrw(0)) == [] and source.health.errors["bad_input"] == 1
    assert [q.price for q in source.offer(usdkrw(100_000_000))] == [200 * E18]
    with pytest.raises(TypeError):
        DerivedSource("bad", [FX_RULE], inputs=[object()])


def test_a_krx_name_in_usd_from_chainlink_krw_and_hermes_fx_over_the_wire():
    hermes, streams = FakeHermes(), FakeDataStreams("k", "s")
    hermes.streams = [[Data(hermes_body([usdkrw(125_000_000, conf=25_000)])), Live()]]
    krw = hynix(200_000, bid=199_900 * E18, ask=200_100 * E18, session_hint=Session.REGULAR)
    streams.sessions = [[Text(envelope(v11_report(krw, V11_FEED_KRX, T // NS))), Live()]]

    async def main():
        async with serve(hermes.app(), hermes.release) as hurl, serve(streams.app(), streams.release) as curl:
            fx_in = HermesSource(HermesConfig(feeds={"USDKRW": FEED_IDS["USDKRW"]}, base_url=hurl), sleep=NoSleep())
            krw_in = DataStreamsSource(
                DataStreamsConfig(feeds={"000660": V11_FEED_KRX}, api_key="k", api_secret="s", ws_url=curl),
                sleep=NoSleep(),
            )
            source = DerivedSource("krx-usd", [FX_RULE], inputs=[fx_in, krw_in])
            got: list[SourceQuote] = []
            task = asyncio.create_task(source.run(got.append))
            await wait_until(lambda: len(got) == 1, what="the derived quote")
            await cancel(task)
            return got

    (out,) = asyncio.run(main())
    assert (out.source, out.symbol, out.price, out.conf) == ("krx-usd", "SKHYNIX", 160 * E18, 32 * 10**15)
    assert (out.bid, out.ask) == (159_920 * 10**15, 160_080 * 10**15)  # Hermes has no book: the FX mid
    assert out.session_hint == Session.REGULAR
