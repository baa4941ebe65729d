"""The client's local book: snapshot, deltas, sequence gaps and checksum mismatches, and the
one checksum function the server shares.

gateway.md §6 catalogue item checked here (at the book layer):
 16  an injected sequence gap and an injected checksum mismatch: the client detects each,
     resyncs from a fresh snapshot and ends equal to the server's book.
"""

from __future__ import annotations

import random
import zlib
from decimal import Decimal

import pytest

from api import protocol as p
from api.l2book import (
    ChecksumMismatch,
    L2Book,
    NotSynced,
    SequenceGap,
    book_checksum,
    checksum_string,
)

BIDS_3 = [("180.05", "2"), ("180.04", "0.5"), ("180.00", "10.000")]
ASKS_2 = [("180.06", "1"), ("180.10", "0.001")]


class ServerBook:
    """The publisher's side, written plainly: dict of levels, a seq, the shared checksum."""

    def __init__(self, market: str = "NVDA"):
        self.market, self.seq = market, 0
        self.sides: dict[str, dict[Decimal, tuple[str, str]]] = {"bids": {}, "asks": {}}

    def levels(self, side: str) -> list[tuple[str, str]]:
        keys = sorted(self.sides[side], reverse=(side == "bids"))
        return [self.sides[side][k] for k in keys]

    def checksum(self) -> int:
        return book_checksum(self.levels("bids"), self.levels("asks"))

    def snapshot(self) -> p.L2Delta:
        return p.L2Delta(self.market, True, self.seq, None, self.checksum(), 0,
                         self.levels("bids"), self.levels("asks"))

    def delta(self, bids=(), asks=()) -> p.L2Delta:
        for side, changes in (("bids", bids), ("asks", asks)):
            for price, size in changes:
                if Decimal(size) == 0:
                    self.sides[side].pop(Decimal(price), None)
                else:
                    self.sides[side][Decimal(price)] = (price, size)
        prev, self.seq = self.seq, self.seq + 1
        return p.L2Delta(self.market, False, self.seq, prev, self.checksum(), 0, list(bids), list(asks))


def synced_pair() -> tuple[ServerBook, L2Book]:
    server, client = ServerBook(), L2Book("NVDA")
    server.delta(bids=BIDS_3, asks=ASKS_2)
    client.apply(server.snapshot())
    return server, client


def assert_equal(server: ServerBook, client: L2Book) -> None:
    assert client.bids() == server.levels("bids") and client.asks() == server.levels("asks")
    assert client.seq == server.seq


# --------------------------------------------------------------------------- checksum


def test_checksum_string_follows_the_documented_algorithm():
    assert checksum_string([("0.05000", "1.5")], [("0.05005", "0.00000500")]) == "5005500500015"
    assert book_checksum([("0.05000", "1.5")], [("0.05005", "0.00000500")]) == zlib.crc32(b"5005500500015")


def test_checksum_puts_asks_first_and_hashes_the_wire_strings():
    written = "18006" "1" "18010" "1" "18005" "2" "18004" "5" "18000" "10000"  # "0.001" -> "1"
    assert checksum_string(BIDS_3, ASKS_2) == written
    assert book_checksum(BIDS_3, ASKS_2) == zlib.crc32(written.encode())
    assert book_checksum(ASKS_2, BIDS_3) != book_checksum(BIDS_3, ASKS_2)
    assert book_checksum([("180.1", "1")], []) != book_checksum([("180.10", "1")], [])


def test_checksum_covers_the_top_10_levels_only():
    bids = [(f"{100 - n}.00", "1") for n in range(12)]
    base = book_checksum(bids[:10], [])
    assert book_checksum(bids, []) == base
    assert book_checksum(bids[:9] + [("91.00", "2")], []) != base


def test_checksum_of_an_empty_book_is_crc32_of_nothing():
    assert book_checksum([], []) == 0


# --------------------------------------------------------------------------- the book


def test_snapshot_then_deltas_keep_the_client_equal_to_the_server():
    server, client = synced_pair()
    assert_equal(server, client)
    assert client.apply(server.delta(bids=[("180.05", "3"), ("180.04", "0")], asks=[("180.07", "4")]))
    assert_equal(server, client)
    assert client.best_bid() == ("180.05", "3") and client.best_ask() == ("180.06", "1")
    assert client.bids(1) == [("180.05", "3")]


def test_zero_in_any_form_deletes_and_deleting_an_absent_level_is_harmless():
    server, client = synced_pair()
    client.apply(server.delta(bids=[("180.00", "0.000"), ("1.00", "0")]))
    assert ("180.00", "10.000") not in client.bids()
    assert_equal(server, client)


def test_a_level_is_keyed_by_value_and_keeps_the_latest_strings():
    server, client = synced_pair()
    client.apply(server.delta(asks=[("180.1", "0.001")]))  # same price as "180.10"
    assert client.asks() == [("180.06", "1"), ("180.1", "0.001")]


def test_a_sequence_gap_is_detected_and_the_book_refuses_deltas_until_a_snapshot():
    server, client = synced_pair()
    server.delta(bids=[("180.03", "1")])  # lost in transit
    with pytest.raises(SequenceGap) as caught:
        client.apply(server.delta(bids=[("180.02", "1")]))
    assert (caught.value.expected_prev, caught.value.got_prev, caught.value.seq) == (1, 2, 3)
    assert not client.synced
    with pytest.raises(NotSynced):
        client.apply(server.delta(bids=[("180.01", "1")]))
    client.apply(server.snapshot())
    assert_equal(server, client)


def test_a_checksum_mismatch_is_detected():
    server, client = synced_pair()
    good = server.delta(asks=[("180.06", "2")])
    bad = p.L2Delta(good.market, False, good.seq, good.prevSeq, good.checksum ^ 1, good.time, good.bids, good.asks)
    with pytest.raises(ChecksumMismatch) as caught:
        client.apply(bad)
    assert caught.value.expected == good.checksum ^ 1 and caught.value.computed == good.checksum
    assert not client.synced


def test_a_corrupted_level_is_caught_by_the_checksum():
    server, client = synced_pair()
    good = server.delta(asks=[("180.06", "2")])
    wrong = p.L2Delta(good.market, False, good.seq, good.prevSeq, good.checksum, 0, [], [("180.06", "2.5")])
    with pytest.raises(ChecksumMismatch):
        client.apply(wrong)


def test_a_delta_before_any_snapshot_needs_a_resync():
    server, client = ServerBook(), L2Book("NVDA")
    with pytest.raises(NotSynced):
        client.apply(server.delta(bids=[("1", "1")]))


def test_stale_deltas_after_a_resubscription_are_skipped():
    server, client = synced_pair()
    old = server.delta(bids=[("180.03", "1")])
    client.apply(server.snapshot())  # the fresh snapshot already includes `old`
    assert client.apply(old) is False
    assert_equal(server, client)


def test_a_message_for_another_market_is_a_bug():
    server, client = synced_pair()
    with pytest.raises(ValueError):
        client.apply(p.L2Delta("TSLA", True, 1, None, 0, 0, [], []))


def test_wire_messages_decode_and_apply():
    server, client = ServerBook(), L2Book("NVDA")
    server.delta(bids=BIDS_3, asks=ASKS_2)
    for msg in (server.snapshot(), server.delta(bids=[("180.05", "0")])):
        push = p.decode_push(p.encode(p.L2DeltaPush(msg)))
        client.apply(push.data)
    assert_equal(server, client)


def test_random_feed_with_injected_gaps_and_mismatches_resyncs_to_the_server_book():
    rng = random.Random(20240601)
    server, client = ServerBook(), L2Book("NVDA")
    client.apply(server.snapshot())
    resyncs = {"gap": 0, "mismatch": 0}
    for _ in range(600):
        changes = {"bids": [], "asks": []}
        for _ in range(rng.randint(1, 4)):
            side = rng.choice(["bids", "asks"])
            ticks = rng.randint(9_950, 9_999) if side == "bids" else rng.randint(10_000, 10_050)
            size = "0" if rng.random() < 0.3 else f"{rng.randint(1, 5000) / 1000:.3f}"
            changes[side].append((f"{ticks / 100:.2f}", size))
        msg = server.delta(**changes)
        fault = rng.random()
        if fault < 0.03:
            continue  # dropped: the next delta shows a gap
        if fault < 0.06:
            msg = p.L2Delta(msg.market, False, msg.seq, msg.prevSeq, (msg.checksum + 1) % 2**32, 0, msg.bids, msg.asks)
        try:
            client.apply(msg)
        except SequenceGap:
            resyncs["gap"] += 1
            client.apply(server.snapshot())
        except ChecksumMismatch:
            resyncs["mismatch"] += 1
            client.apply(server.snapshot())
        except NotSynced:
            client.apply(server.snapshot())
        assert_equal(server, client)
    assert resyncs["gap"] > 5 and resyncs["mismatch"] > 5
