"""Pyth Hermes: parsing the real JSON, the SSE parser, and the adapter against a fake Hermes."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from fake_hermes import FEED_IDS, Cut, Data, ErrorEvent, FakeHermes, KeepAlive, Live, Reply, hermes_body
from loopback import NoSleep, cancel, serve, wait_until
from oracle.quote import SourceQuote
from oracle.sources.base import Backoff
from oracle.sources.pyth import HermesConfig, HermesParseError, HermesSource, parse_hermes
from oracle.sources.simulated import SimulatedFeed
from oracle.sources.sse import SseError, SseEvent, SseParser
from sim_cases import NS, REPLAYS

TSLA_ID = FEED_IDS["TSLA"]
SPEC_EXAMPLE = b"""{"binary": {"encoding": "hex", "data": ["504e4155"]},
 "parsed": [{"id": "16dad506d7db8da01c87581c87ca897a012a153557d4d578c3b9c9e1bc0632f1",
   "price":     {"price": "43380934", "conf": "30066", "expo": -5, "publish_time": 1780063858},
   "ema_price": {"price": "43748264", "conf": "32142", "expo": -5, "publish_time": 1780063858},
   "metadata":  {"slot": 293596951, "proof_available_time": 1780063862, "prev_publish_time": 1780063857}}]}"""
SYMBOLS = {fid: sym for sym, fid in FEED_IDS.items()}


def config(url: str, **kw) -> HermesConfig:
    return HermesConfig(feeds={"TSLA": TSLA_ID, "AAPL": "0x" + FEED_IDS["AAPL"]}, base_url=url, **kw)


def tsla(price: int, publish_s: int, conf: int = 30_066) -> SourceQuote:
    return SourceQuote("pyth", "TSLA", price, -5, publish_s * NS, 0, conf=conf)


def unreceived(quotes):
    return [msgspec.structs.replace(x, ts_received_ns=0) for x in quotes]


# --- parsing ---------------------------------------------------------------------------------------


def test_the_spec_example_parses_to_integers_at_hermes_expo():
    quotes, unknown = parse_hermes(SPEC_EXAMPLE, SYMBOLS, "pyth", received_ns=7)
    assert unknown == 0
    assert quotes == [SourceQuote("pyth", "TSLA", 43_380_934, -5, 1_780_063_858 * NS, 7, conf=30_066)]


def test_metadata_is_optional_ids_may_be_unknown_and_prices_negative():
    body = b"""{"parsed": [
      {"id": "16DAD506d7db8da01c87581c87ca897a012a153557d4d578c3b9c9e1bc0632f1",
       "price": {"price": "-5", "conf": "0", "expo": -8, "publish_time": 1}},
      {"id": "ff", "price": {"price": "1", "conf": "1", "expo": 0, "publish_time": 2}}]}"""
    quotes, unknown = parse_hermes(body, SYMBOLS, "pyth", received_ns=0, weight=3)
    assert quotes == [SourceQuote("pyth", "TSLA", -5, -8, NS, 0, conf=0, weight=3)]
    assert unknown == 1


@pytest.mark.parametrize(
    "body",
    [
        b"Price ids not found: 16dad5",
        b'{"parsed": [{"id": "16dad5", "price": {"price": 433, "conf": "1", "expo": -5, "publish_time": 1}}]}',
        b'{"parsed": [{"id": "16dad5", "price": {"price": "4.33", "conf": "1", "expo": -5, "publish_time": 1}}]}',
        b'{"parsed": [{"id": "16dad5", "price": {"price": "1_000", "conf": "1", "expo": -5, "publish_time": 1}}]}',
        b'{"parsed": [{"id": "16dad5"}]}',
    ],
    ids=["plain_text", "number_not_string", "decimal_point", "underscore", "no_price"],
)
def test_malformed_updates_raise_a_parse_error(body):
    with pytest.raises(HermesParseError):
        parse_hermes(body.replace(b"16dad5", TSLA_ID.encode()), SYMBOLS, "pyth", 0)


# --- the SSE parser ----------------------------------------------------------------------------------


STREAM = b": keep-alive\n\ndata: {\"a\": 1}\n\n:\r\nevent: error\r\ndata: Slow consumer: disconnected\r\n\r\nid: 7\ndata: x\ndata:y\n\nevent: nothing\n\n"
EVENTS = [SseEvent("message", '{"a": 1}'), SseEvent("error", "Slow consumer: disconnected"), SseEvent("message", "x\ny")]


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_sse_events_do_not_depend_on_where_the_bytes_are_split(cut):
    parser = SseParser()
    assert parser.feed(STREAM[:cut]) + parser.feed(STREAM[cut:]) == EVENTS
    assert parser.comments == 2


def test_sse_refuses_an_endless_line():
    with pytest.raises(SseError):
        SseParser(max_line_bytes=16).feed(b"data: " + b"x" * 32)


# --- the adapter against a fake Hermes --------------------------------------------------------------


def test_defaults_are_locked():
    assert msgspec.structs.asdict(HermesConfig(feeds={})) == {
        "feeds": {}, "base_url": "https://hermes.pyth.network", "api_key": None, "mode": "stream",
        "poll_interval_s": 1.0, "request_timeout_s": 10.0, "idle_timeout_s": 60.0, "backoff": Backoff(),
        "name": "pyth", "weight": 1,
    }
    assert msgspec.structs.asdict(Backoff()) == {"initial_s": 0.5, "factor": 2.0, "max_s": 30.0}
    assert [Backoff().delay_s(n) for n in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_polling_latest_with_bearer_key_429_and_plain_text_404():
    fake = FakeHermes(api_key="secret-key")
    fake.latest = [
        Reply(429, "Too Many Requests", {"Retry-After": "3"}),
        Reply(404, f"Price ids not found: {TSLA_ID}"),
        hermes_body([tsla(43_380_934, 1_780_063_858)]),
        hermes_body([tsla(43_380_990, 1_780_063_859)], metadata=False),
    ]

    async def main():
        async with serve(fake.app(), fake.release) as url:
            sleep = NoSleep()
            source = HermesSource(config(url, api_key="secret-key", mode="poll"), clock=lambda: 99, sleep=sleep)
            got: list[SourceQuote] = []
            task = asyncio.create_task(source.run(got.append))
            await wait_until(lambda: len(got) == 2, what="two quotes")
            await cancel(task)
            return source, sleep, got

    source, sleep, got = asyncio.run(main())
    assert got == [
        SourceQuote("pyth", "TSLA", 43_380_934, -5, 1_780_063_858 * NS, 99, conf=30_066),
        SourceQuote("pyth", "TSLA", 43_380_990, -5, 1_780_063_859 * NS, 99, conf=30_066),
    ]
    assert list(source.health.delays_s) == [3.0, 1.0]  # Retry-After floors the first; then 0.5·2
    assert sleep.delays[:4] == [3.0, 1.0, 1.0, 1.0]  # then the poll interval after each success
    assert dict(source.health.errors) == {"http_429": 1, "http_404": 1}
    assert source.health.last_error == f"http_404: Price ids not found: {TSLA_ID}"
    ids = (FEED_IDS["AAPL"], TSLA_ID)  # in symbol order, without 0x
    assert fake.requests[0] == ("/v2/updates/price/latest", ids, "true", "Bearer secret-key")


def test_a_wrong_key_is_a_401_and_retried():
    fake = FakeHermes(api_key="right")

    async def main():
        async with serve(fake.app(), fake.release) as url:
            source = HermesSource(config(url, api_key="wrong"), sleep=NoSleep())
            task = asyncio.create_task(source.run(lambda q: None))
            await wait_until(lambda: source.health.errors["http_401"] >= 3, what="three 401s")
            await cancel(task)
            return source

    source = asyncio.run(main())
    assert list(source.health.delays_s)[:3] == [0.5, 1.0, 2.0]
    assert source.health.last_error == "http_401: Unauthorized"


def test_stream_reconnects_through_errors_rate_limits_24h_timeouts_and_cuts():
    ticks = [tsla(43_380_900 + i, 1_780_063_858 + i) for i in range(5)]
    fake = FakeHermes()
    fake.streams = [
        [KeepAlive(), Data(hermes_body(ticks[:1])), KeepAlive(), Data(hermes_body(ticks[1:2])),
         ErrorEvent("Slow consumer: disconnected")],
        Reply(429, "Too Many Requests", {"Retry-After": "2"}),
        Reply(404, f"Price ids not found: {TSLA_ID}"),
        [Data(hermes_body(ticks[2:3])), ErrorEvent("Connection timeout reached (24h)")],
        [Data(hermes_body(ticks[3:4])), Cut()],
        [KeepAlive(), Cut()],
        [Data(b"{not json"), Data(hermes_body(ticks[4:5])), Live()],  # then held open
    ]

    async def main():
        async with serve(fake.app(), fake.release) as url:
            source = HermesSource(config(url), sleep=NoSleep())
            got: list[SourceQuote] = []
            task = asyncio.create_task(source.run(got.append))
            await wait_until(lambda: len(got) == 5 and fake.served["stream"] == 7, what="five quotes")
            await cancel(task)
            return source, got

    source, got = asyncio.run(main())
    assert unreceived(got) == ticks
    # delivered → 0.5; 429 → max(1.0, 2); 404 → 2.0; delivered → 0.5; delivered → 0.5; nothing → 1.0
    assert list(source.health.delays_s) == [0.5, 2.0, 2.0, 0.5, 0.5, 1.0]
    assert dict(source.health.errors) == {
        "stream_error": 1, "http_429": 1, "http_404": 1, "stream_timeout_24h": 1, "disconnect": 2, "parse": 1,
    }
    assert source.health.connects == 5 and source.health.quotes == 5


def test_a_silent_stream_is_dropped_after_the_idle_timeout():
    fake = FakeHermes()
    fake.streams = [[Data(hermes_body([tsla(1, 1)])), Live()], [Data(hermes_body([tsla(2, 2)])), Live()]]

    async def main():
        async with serve(fake.app(), fake.release) as url:
            source = HermesSource(config(url, idle_timeout_s=0.05), sleep=NoSleep())
            got: list[SourceQuote] = []
            task = asyncio.create_task(source.run(got.append))
            await wait_until(lambda: len(got) == 2, what="the quote after the reconnect")
            await cancel(task)
            return source, got

    source, got = asyncio.run(main())
    assert [x.price for x in got] == [1, 2]
    assert source.health.errors["timeout"] == 1


@pytest.mark.parametrize("name", sorted(REPLAYS))
def test_replay_scenarios_come_through_the_stream_unchanged(name):
    scenario, start, end = REPLAYS[name]
    tape = list(SimulatedFeed(scenario).tape(start, end))
    expected = [x for _, quotes in tape for x in quotes if x.source == "pyth"]
    fake = FakeHermes()
    fake.streams = [[Live()]]

    async def main():
        async with serve(fake.app(), fake.release) as url:
            source = HermesSource(config(url), sleep=NoSleep())
            got: list[SourceQuote] = []
            task = asyncio.create_task(source.run(got.append))
            for _, quotes in tape:
                fake.push(KeepAlive())
                fake.push(Data(hermes_body([x for x in quotes if x.source == "pyth"])))
            await wait_until(lambda: len(got) == len(expected), what=f"{len(expected)} quotes")
            await cancel(task)
            return got

    assert unreceived(asyncio.run(main())) == unreceived(expected)
