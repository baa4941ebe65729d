"""Chainlink Data Streams: signing, v8/v11 decoding, and the adapter against a fake server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import msgspec
import pytest
from eth_abi import encode

from fake_datastreams import (
    V8_FEED,
    V11_FEED,
    Binary,
    Close,
    FakeDataStreams,
    Live,
    Reply,
    Text,
    envelope,
    v8_report,
    v11_report,
)
from loopback import NoSleep, cancel, serve, wait_until
from oracle.quote import SourceQuote
from oracle.session import Session
from oracle.sources.base import Backoff
from oracle.sources.chainlink import DataStreamsConfig, DataStreamsSource, parse_envelope
from oracle.sources.chainlink_report import (
    ReportV8,
    ReportV11,
    UnsupportedSchema,
    auth_headers,
    decode_full_report,
    encode_full_report,
    schema_version,
    to_quote,
)
from oracle.sources.simulated import SimulatedFeed
from sim_cases import NS, REPLAYS

S = Session
KEY, SECRET = "client-id-1", "s3cr3t"
E18 = 10**18
NOW_MS = 1_780_063_858_123
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

REPORT_V8 = ReportV8(V8_FEED, 1_780_063_858, 1_780_063_858, 10**15, 2 * 10**15, 1_782_655_858,
                     1_780_063_857_250_000_000, 433_809_340 * 10**15, 2)
REPORT_V11 = ReportV11(V11_FEED, 1_780_063_858, 1_780_063_858, 0, 0, 1_782_655_858, 433_809_340 * 10**15,
                       1_780_063_857_500_000_000, 433_800_000 * 10**15, 5 * E18, 433_820_000 * 10**15, 7 * E18,
                       433_810_000 * 10**15, 4)


def config(url: str, **kw) -> DataStreamsConfig:
    return DataStreamsConfig(
        feeds={"TSLA": V11_FEED, "NVDA": V8_FEED}, api_key=KEY, api_secret=kw.pop("secret", SECRET),
        rest_url=url, ws_url=url, **kw,
    )


def unreceived(quotes):
    return [msgspec.structs.replace(x, ts_received_ns=0) for x in quotes]


# --- signing and decoding ---------------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_the_spec_string():
    path = f"/api/v1/reports/latest?feedID={V11_FEED}"
    message = f"GET {path} {EMPTY_SHA256} {KEY} {NOW_MS}".encode()
    assert auth_headers("GET", path, KEY, SECRET, NOW_MS) == {
        "Authorization": KEY,
        "X-Authorization-Timestamp": str(NOW_MS),
        "X-Authorization-Signature-SHA256": hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest(),
    }
    assert hashlib.sha256(b"").hexdigest() == EMPTY_SHA256


def test_reports_decode_from_an_independently_built_abi_layout():
    blob = encode(
        ["bytes32", "uint32", "uint32", "uint192", "uint192", "uint32", "int192", "uint64", "int192", "int192",
         "int192", "int192", "int192", "uint32"],
        [bytes.fromhex(V11_FEED[2:]), 1_780_063_858, 1_780_063_858, 0, 0, 1_782_655_858, 433_809_340 * 10**15,
         1_780_063_857_500_000_000, 433_800_000 * 10**15, 5 * E18, 433_820_000 * 10**15, 7 * E18,
         433_810_000 * 10**15, 4],
    )
    full = encode(["bytes32[3]", "bytes", "bytes32[]", "bytes32[]", "bytes32"],
                  [[b"\1" * 32] * 3, blob, [b"\2" * 32], [b"\3" * 32], b"\4" * 32])
    assert decode_full_report("0x" + full.hex()) == REPORT_V11
    assert schema_version(V11_FEED) == 11 and schema_version(V8_FEED) == 8


@pytest.mark.parametrize("report", [REPORT_V8, REPORT_V11], ids=["v8", "v11"])
def test_reports_round_trip_including_negative_and_zero_prices(report):
    assert decode_full_report(encode_full_report(report)) == report
    field = "mid_price" if isinstance(report, ReportV8) else "mid"
    for mid in (-1, 0, 2**191 - 1):
        changed = msgspec.structs.replace(report, **{field: mid})
        assert decode_full_report(encode_full_report(changed)) == changed


def test_unsupported_and_broken_reports_are_refused():
    v3 = msgspec.structs.replace(REPORT_V8, feed_id="0x0003" + "00" * 30)
    with pytest.raises(UnsupportedSchema):
        decode_full_report(encode_full_report(v3))
    for bad in ("0xzz", "0x" + "00" * 31, encode_full_report(REPORT_V11)[:-64]):
        with pytest.raises(ValueError):
            decode_full_report(bad)
    with pytest.raises(ValueError, match="does not match"):
        parse_envelope(msgspec.json.encode({"report": {"feedID": V8_FEED, "fullReport": encode_full_report(REPORT_V11)}}))


def test_v11_becomes_a_quote_with_its_book_and_market_status():
    assert to_quote(REPORT_V11, "TSLA", "chainlink", 5) == SourceQuote(
        "chainlink", "TSLA", 433_809_340 * 10**15, -18, 1_780_063_857_500_000_000, 5,
        bid=433_800_000 * 10**15, ask=433_820_000 * 10**15, session_hint=S.OVERNIGHT,
    )
    no_book = msgspec.structs.replace(REPORT_V11, bid=0, ask=0, mid=0)
    assert (to_quote(no_book, "T", "c", 0).bid, to_quote(no_book, "T", "c", 0).ask, to_quote(no_book, "T", "c", 0).price) == (None, None, 0)
    assert to_quote(REPORT_V8, "NVDA", "chainlink", 5) == SourceQuote(
        "chainlink", "NVDA", 433_809_340 * 10**15, -18, 1_780_063_857_250_000_000, 5, session_hint=None
    )


@pytest.mark.parametrize(
    "version, status, hint",
    [(8, 0, None), (8, 1, S.CLOSED_OFF_HOURS), (8, 2, None), (8, 9, None),
     (11, 0, None), (11, 1, S.PRE), (11, 2, S.REGULAR), (11, 3, S.POST), (11, 4, S.OVERNIGHT),
     (11, 5, S.CLOSED_OFF_HOURS), (11, 6, None)],
)
def test_market_status_table(version, status, hint):
    report = REPORT_V8 if version == 8 else REPORT_V11
    assert to_quote(msgspec.structs.replace(report, market_status=status), "X", "c", 0).session_hint == hint


# --- the adapter against a fake Data Streams ------------------------------------------------------


def test_defaults_are_locked():
    assert msgspec.structs.asdict(DataStreamsConfig(feeds={}, api_key="k", api_secret="s")) == {
        "feeds": {}, "api_key": "k", "api_secret": "s", "rest_url": "https://api.dataengine.chain.link",
        "ws_url": "wss://ws.dataengine.chain.link", "mode": "ws", "poll_interval_s": 1.0,
        "request_timeout_s": 10.0, "idle_timeout_s": 60.0, "backoff": Backoff(), "name": "chainlink", "weight": 1,
    }


def test_rest_polling_is_signed_and_decodes_v8_and_v11():
    fake = FakeDataStreams(KEY, SECRET)
    fake.latest = {
        V8_FEED: [Reply(429, "rate limited", {"Retry-After": "4"}), envelope(REPORT_V8, rest=True)],
        V11_FEED: [Reply(500, "internal error"), envelope(REPORT_V11, rest=True)],
    }

    async def main():
        async with serve(fake.app(), fake.release) as url:
            source = DataStreamsSource(config(url, mode="poll"), clock=lambda: NOW_MS * 1_000_000, sleep=NoSleep())
            got: list[SourceQuote] = []
            task = asyncio.create_task(source.run(got.append))
            await wait_until(lambda: len(got) == 2, what="two reports")
            await cancel(task)
            return source, got

    source, got = asyncio.run(main())
    assert got == [to_quote(REPORT_V8, "NVDA", "chainlink", NOW_MS * 1_000_000),
                   to_quote(REPORT_V11, "TSLA", "chainlink", NOW_MS * 1_000_000)]
    assert dict(source.health.errors) == {"http_429": 1, "http_500": 1}
    assert list(source.health.delays_s) == [4.0]  # one round failed: max(0.5, Retry-After 4)
    assert fake.requests[:2] == [
        (f"/api/v1/reports/latest?feedID={V8_FEED}", True, str(NOW_MS)),
        (f"/api/v1/reports/latest?feedID={V11_FEED}", True, str(NOW_MS)),
    ]


def test_a_wrong_secret_is_refused_with_401():
    fake = FakeDataStreams(KEY, SECRET)

    async def main():
        async with serve(fake.app(), fake.release) as url:
            source = DataStreamsSource(config(url, secret="wrong"), sleep=NoSleep())
            task = asyncio.create_task(source.run(lambda q: None))
            await wait_until(lambda: source.health.errors["http_401"] >= 2, what="two refusals")
            await cancel(task)
            return source

    source = asyncio.run(main())
    assert fake.requests[0] == (f"/api/v1/ws?feedIDs={V8_FEED},{V11_FEED}", False, fake.requests[0][2])
    assert list(source.health.delays_s)[:2] == [0.5, 1.0]


def test_websocket_reconnects_and_passes_zero_prices_and_closed_status_on():
    zero = msgspec.structs.replace(REPORT_V11, mid=0, bid=0, ask=0, market_status=4)
    closed = msgspec.structs.replace(REPORT_V8, market_status=1)
    fake = FakeDataStreams(KEY, SECRET)
    fake.sessions = [
        [Text(envelope(REPORT_V11)), Binary(envelope(REPORT_V8)), Close()],
        Reply(429, "too many connections", {"Retry-After": "5"}),
        [Close()],
        [Text(b'{"report": {"feedID": "0x00"}}'), Text(envelope(zero)), Text(envelope(closed)), Live()],
    ]

    async def main():
        async with serve(fake.app(), fake.release) as url:
            source = DataStreamsSource(config(url), clock=lambda: 42, sleep=NoSleep())
            got: list[SourceQuote] = []
            task = asyncio.create_task(source.run(got.append))
            await wait_until(lambda: len(got) == 4, what="four reports")
            await cancel(task)
            return source, got

    source, got = asyncio.run(main())
    assert got == [to_quote(r, s, "chainlink", 42) for r, s in
                   ((REPORT_V11, "TSLA"), (REPORT_V8, "NVDA"), (zero, "TSLA"), (closed, "NVDA"))]
    assert got[2].price == 0 and got[3].session_hint == S.CLOSED_OFF_HOURS
    # delivered → 0.5; 429 → max(1.0, 5); connected but nothing delivered → 2.0
    assert list(source.health.delays_s) == [0.5, 5.0, 2.0]
    assert dict(source.health.errors) == {"disconnect": 2, "http_429": 1, "parse": 1, "zero_price": 1}
    assert all(ok for _, ok, _ in fake.requests) and len(fake.requests) == 4


def test_a_silent_websocket_is_reconnected_after_the_idle_timeout():
    fake = FakeDataStreams(KEY, SECRET)
    fake.sessions = [[Text(envelope(REPORT_V8)), Live()], [Text(envelope(REPORT_V11)), Live()]]

    async def main():
        async with serve(fake.app(), fake.release) as url:
            source = DataStreamsSource(config(url, idle_timeout_s=0.05), sleep=NoSleep())
            got: list[SourceQuote] = []
            task = asyncio.create_task(source.run(got.append))
            await wait_until(lambda: len(got) == 2, what="the report after the reconnect")
            await cancel(task)
            return source, got

    source, got = asyncio.run(main())
    assert [q.symbol for q in got] == ["NVDA", "TSLA"]
    assert source.health.errors["timeout"] == 1 and list(source.health.delays_s)[0] == 0.5


@pytest.mark.parametrize("name", sorted(REPLAYS))
def test_replay_scenarios_come_through_the_websocket(name):
    scenario, start, end = REPLAYS[name]
    tape = list(SimulatedFeed(scenario).tape(start, end))
    sent = [x for _, quotes in tape for x in quotes if x.source.startswith("chainlink")]
    fake = FakeDataStreams(KEY, SECRET)
    fake.sessions = [[Live()]]

    async def main():
        async with serve(fake.app(), fake.release) as url:
            source = DataStreamsSource(config(url, name="chainlink"), sleep=NoSleep())
            got: list[SourceQuote] = []
            task = asyncio.create_task(source.run(got.append))
            for t, quotes in tape:
                for x in quotes:
                    if x.source == "chainlink":
                        fake.push(Text(envelope(v11_report(x, V11_FEED, t // NS))))
                    elif x.source == "chainlink8":
                        fake.push(Binary(envelope(v8_report(x, V8_FEED, t // NS))))
            await wait_until(lambda: len(got) == len(sent), what=f"{len(sent)} reports")
            await cancel(task)
            return got

    got = unreceived(asyncio.run(main()))
    for quote, echo in zip(sent, got):
        if quote.source == "chainlink":  # v11 keeps everything a quote has
            assert echo == msgspec.structs.replace(quote, ts_received_ns=0)
        else:  # v8 has no book, and says only open (no hint) or closed
            hint = None if quote.session_hint in (S.REGULAR, S.PRE, S.POST, S.OVERNIGHT) else S.CLOSED_OFF_HOURS
            assert echo == SourceQuote("chainlink", "NVDA", quote.price, -18, quote.ts_source_ns, 0, session_hint=hint)
    assert len(got) == len(sent)
