"""Wire protocol: every message round-trips, the envelopes have gateway.md's shape, and
malformed input is refused with its own code.

gateway.md §6 catalogue items checked here (at the protocol layer):
  1  malformed JSON, a wrong top-level type, an unknown method, unknown fields;
  2  an oversized frame, invalid UTF-8 (the binary-frame code exists; the socket checks it);
  3  prices/sizes as JSON numbers, NaN, Infinity, -0, 1e400, "1e3";
  4  only the codes that need no market spec (a batch over 50, a bad cloid length);
  5  nonces >= 2^63 (and any integer >= 2^53).
"""

from __future__ import annotations

import json

import msgspec
import pytest

from api import protocol as p
from api.errors import GatewayCode, ProtocolError, message_for
from engine.codes import Reject
from oracle.session import Session

G = GatewayCode

# ---------------------------------------------------------------------------- fixtures

PLACE_NVDA_BUY_1_AT_180 = p.Place(market="NVDA", side="buy", size="1", price="180.05", cloid="c-1")
PLACE_TSLA_MARKET_SELL = p.Place(market="TSLA", side="sell", size="0.5", orderType="market", tif="ioc",
                                 stp="expire_both", expiresAt=1_700_000_000_000)
CANCEL_NVDA_OID_7 = p.Cancel(market="NVDA", oid=7)
CANCEL_ALL = p.CancelAll()
AMEND_NVDA_CLOID = p.Amend(market="NVDA", cloid="c-1", size="0.5")
BATCH_OF_THREE = p.Batch(actions=[PLACE_NVDA_BUY_1_AT_180, CANCEL_NVDA_OID_7, AMEND_NVDA_CLOID])
PLACE_NVDA_REDUCE_ONLY = p.Place(market="NVDA", side="sell", size="1", price="181", reduceOnly=True)
STOP_NVDA_SELL_AT_170 = p.PlaceTrigger(market="NVDA", side="sell", triggerPrice="170", size="1")
TP_NVDA_POSITION_LIMIT = p.PlaceTrigger(market="NVDA", side="sell", triggerPrice="200", kind="take_profit",
                                        orderType="limit", price="199.5", triggerOn="last")
CANCEL_TRIGGER_3 = p.CancelTrigger(market="NVDA", tid=3)
SCHEDULE_CANCEL = p.ScheduleCancel(at=1_700_000_060_000)
ACCOUNT_ACTIONS = [p.SetLeverage(market="NVDA", leverage=5), p.SetMarginMode(market="NVDA", mode="isolated"),
                   p.AdjustMargin(market="NVDA", amount="-12.5"), p.Withdraw(amount="100")]

SUBSCRIPTIONS = [
    p.L2BookSub(market="NVDA", depth=5), p.L2DeltaSub(market="NVDA"), p.TradesSub(market="NVDA"),
    p.MarketSub(market="NVDA"), p.LiquidationsSub(), p.OrderUpdatesSub(), p.UserFillsSub(account=3),
    p.UserFundingsSub(), p.PositionsSub(), p.AccountSub(account=3),
]

REQUESTS = [
    *(p.Subscribe(s) for s in SUBSCRIPTIONS),
    p.Unsubscribe(p.TradesSub(market="TSLA")),
    *(p.Post(id=n, action=a) for n, a in enumerate(
        [PLACE_NVDA_BUY_1_AT_180, PLACE_TSLA_MARKET_SELL, CANCEL_NVDA_OID_7, CANCEL_ALL, AMEND_NVDA_CLOID,
         BATCH_OF_THREE, PLACE_NVDA_REDUCE_ONLY, STOP_NVDA_SELL_AT_170, TP_NVDA_POSITION_LIMIT, CANCEL_TRIGGER_3,
         SCHEDULE_CANCEL, p.ScheduleCancel(), *ACCOUNT_ACTIONS])),
    p.Post(id=99, action=CANCEL_ALL, keyId="ak_1", nonce=1_700_000_000_000, expiresAfter=1_700_000_005_000,
           signature="ab" * 64),
    p.Logon(keyId="ak_1", nonce=1_700_000_000_000, signature="cd" * 64),
    p.Ping(),
]

LEVELS = [("180.05", "2"), ("180.04", "0.5")]
PUSHES = [
    p.PostPush(p.PostResult(1, p.PostOk(seq=10, statuses=[
        p.Resting(oid=1, cloid="c-1"), p.Filled(oid=2, filledSize="1", avgPrice="180.05"),
        p.Cancelled(oid=3, reason="ioc_remainder"), p.Amended(oid=4, price="180", size="1"),
        p.CancelledAll(count=5), p.rejected(Reject.PRICE_OFF_TICK, "180.055"), p.TriggerPlaced(tid=3),
        p.TriggerCancelled(tid=3), p.Scheduled(at=1_700_000_060_000), p.Scheduled(at=None),
        p.LeverageSet("NVDA", 5), p.MarginModeSet("NVDA", "isolated"), p.MarginAdjusted("NVDA", "-12.5", "87.5"),
        p.Withdrawn("100", "900")]))),
    p.post_error(2, G.ORDER_RATE_LIMITED, retry_after_ms=20),
    p.PostPush(p.PostResult(3, p.PostError(code=-5107, msg="bad"))),
    p.SubscriptionResponsePush(p.SubscriptionAck("subscribe", p.L2DeltaSub(market="NVDA"))),
    p.LogonPush(p.LogonOk(account=3, keyId="ak_1", scopes=["read", "trade"], expiresAt=None)),
    p.PongPush(p.Pong(time=1_700_000_000_000)),
    p.error_push(G.SLOW_CONSUMER),
    p.error_push(G.UNKNOWN_CHANNEL, "x", method="subscribe", subscription=p.MarketSub(market="X")),
    p.L2BookPush(p.L2Book("NVDA", 5, 1, bids=LEVELS, asks=[("180.06", "1")])),
    p.L2DeltaPush(p.L2Delta("NVDA", True, 5, None, 123, 1, bids=LEVELS, asks=[])),
    p.L2DeltaPush(p.L2Delta("NVDA", False, 6, 5, 0xFFFFFFFF, 2, bids=[("180.05", "0")], asks=[])),
    p.TradesPush(p.Trades("NVDA", 6, False, [p.Trade(1, "180.05", "1", "buy", 2)])),
    p.MarketPush(p.MarketInfo(
        market="NVDA", seq=7, time=3, mode="internal", session="closed_weekend", oracle="180", mark="180.1",
        external=None, band=p.Band("180", "162", "198", 2, 1), predictedFunding="0.0000125",
        lastFunding="-0.00001", nextFundingTime=3_600_000, openInterest="12.5")),
    p.LiquidationsPush(p.Liquidations("NVDA", 8, False, [p.Liquidation("NVDA", "adl", "short", "181", "2", 4)])),
    p.OrderUpdatesPush(p.OrderUpdates(3, 9, True, [
        p.OrderUpdate("NVDA", 1, "buy", "180.05", "1", "1", "open", 5, cloid="c-1")])),
    p.UserFillsPush(p.UserFills(3, 10, False, [
        p.UserFill("NVDA", 1, 2, "sell", "180.05", "1", "-0.018", "maker", 6)])),
    p.UserFundingsPush(p.UserFundings(3, 11, False, [
        p.UserFunding("NVDA", "0.0000125", "-2", "180", "0.0045", 7)])),
    p.PositionsPush(p.Positions(3, 12, True, [
        p.Position("NVDA", "-2", "180", "-0.1", "36", 10, "cross", "205.3"),
        p.Position("TSLA", "1", "250", "0", "25", 10, "isolated", "230", "40")])),
    p.AccountPush(p.AccountState(3, 13, True, "1000", "999.9", "963.9", "36", "18")),
]
SIGNED_ACTION = p.SignedAction(action=BATCH_OF_THREE, keyId="ak_1", nonce=5, signature="ef" * 32)
BOOK = p.BookResponse(seq=5, bids=LEVELS, asks=[])
QUERIES = [p.SignedQuery(query=q, keyId="ak_1", nonce=5, signature="ef" * 32) for q in (
    p.OpenOrdersQuery(), p.OrderStatusQuery(cloid="c-1"), p.PositionsQuery(), p.AccountQuery(), p.FillsQuery())]
ORDER_STATUS = p.OrderStatus(3, 14, p.OrderUpdate("NVDA", 1, "buy", "180.05", "1", "0", "filled", 5, cloid="c-1"))


def _walk(obj, seen: set[type]) -> None:
    if isinstance(obj, msgspec.Struct):
        seen.add(type(obj))
        for name in obj.__struct_fields__:
            _walk(getattr(obj, name), seen)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _walk(item, seen)


# ------------------------------------------------------------------------- round trips


def test_the_samples_cover_every_wire_struct():
    seen: set[type] = set()
    _walk([REQUESTS, PUSHES, SIGNED_ACTION, BOOK, QUERIES, ORDER_STATUS], seen)
    wire = {
        obj for obj in vars(p).values()
        if isinstance(obj, type) and issubclass(obj, msgspec.Struct) and obj.__module__ == p.__name__
    } - {p._Envelope}
    assert wire - seen == set()


@pytest.mark.parametrize("request_msg", REQUESTS, ids=lambda r: type(r).__name__)
def test_every_request_round_trips(request_msg):
    assert p.decode_request(p.encode(request_msg)) == request_msg


@pytest.mark.parametrize("push", PUSHES, ids=lambda m: type(m).__name__)
def test_every_push_round_trips(push):
    assert p.decode_push(p.encode(push)) == push


def test_rest_bodies_round_trip():
    assert p.decode_signed_action(p.encode(SIGNED_ACTION)) == SIGNED_ACTION
    assert p.decode_book(p.encode(BOOK)) == BOOK
    assert json.loads(p.encode(BOOK)) == {"seq": 5, "bids": [["180.05", "2"], ["180.04", "0.5"]], "asks": []}


# ------------------------------------------------------------------------ wire shapes


def test_requests_carry_method_and_post_carries_id_and_action():
    wire = json.loads(p.encode(p.Post(id=7, action=CANCEL_NVDA_OID_7)))
    assert wire["method"] == "post" and wire["id"] == 7
    assert wire["action"] == {"type": "cancel", "market": "NVDA", "oid": 7, "cloid": None}
    assert json.loads(p.encode(p.Subscribe(p.L2DeltaSub(market="NVDA")))) == {
        "method": "subscribe", "subscription": {"type": "l2Delta", "market": "NVDA"}}


def test_pushes_are_channel_and_data_only():
    for push in PUSHES:
        wire = json.loads(p.encode(push))
        assert set(wire) == {"channel", "data"}
    post = json.loads(p.encode(PUSHES[0]))
    assert post["channel"] == "post" and post["data"]["id"] == 1
    assert [s["status"] for s in post["data"]["response"]["statuses"]] == [
        "resting", "filled", "cancelled", "amended", "cancelledAll", "rejected", "triggerPlaced", "triggerCancelled",
        "scheduled", "scheduled", "leverageSet", "marginModeSet", "marginAdjusted", "withdrawn"]


def test_errors_are_negative_codes_with_a_sentence_and_no_null_extras():
    wire = json.loads(p.encode(p.error_push(G.SLOW_CONSUMER)))
    assert wire == {"channel": "error", "data": {"code": -5207, "msg": message_for(G.SLOW_CONSUMER)}}
    assert "slow consumer" in wire["data"]["msg"]
    limited = json.loads(p.encode(p.post_error(2, G.ORDER_RATE_LIMITED, retry_after_ms=20)))
    assert limited["data"]["response"] == {
        "type": "error", "code": -5202, "msg": message_for(5202), "retryAfterMs": 20}


def _first(push_type):
    return next(push for push in PUSHES if type(push) is push_type)


def test_delta_snapshot_and_private_snapshot_flags_are_named_as_in_the_spec():
    delta = json.loads(p.encode(_first(p.L2DeltaPush)))["data"]
    assert {"snapshot", "seq", "prevSeq", "checksum"} <= set(delta)
    private = json.loads(p.encode(_first(p.OrderUpdatesPush)))["data"]
    assert private["isSnapshot"] is True and private["seq"] == 9


def test_prices_and_sizes_are_strings_on_the_wire():
    text = p.encode(_first(p.MarketPush)).decode()
    assert '"oracle":"180"' in text and '"openInterest":"12.5"' in text


def test_session_names_are_the_oracles_sessions_lower_cased():
    assert set(p.SessionName.__args__) == {s.name.lower() for s in Session}


def test_format_decimal_never_writes_an_exponent_or_minus_zero():
    from decimal import Decimal

    assert p.format_decimal(Decimal("1E+3")) == "1000"
    assert p.format_decimal(Decimal("-0.000")) == "0"
    assert p.format_decimal(Decimal("0.00000001")) == "0.00000001"
    assert p.format_decimal(Decimal("-12.50")) == "-12.50"


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: type(q.query).__name__)
def test_every_signed_query_round_trips(query):
    assert p.decode_signed_query(p.encode(query)) == query


def test_an_unknown_query_type_has_its_own_code():
    with pytest.raises(ProtocolError) as caught:
        p.decode_signed_query(b'{"query":{"type":"balances"},"keyId":"k","nonce":1,"signature":"ab"}')
    assert caught.value.code == G.UNKNOWN_QUERY


def test_action_tags_flatten_a_batch_in_order():
    assert p.action_tags(BATCH_OF_THREE) == ["place", "cancel", "amend"]
    assert p.action_tags(CANCEL_ALL) == ["cancelAll"]
    assert p.action_tags(STOP_NVDA_SELL_AT_170) == ["trigger"]
    assert p.action_tags(SCHEDULE_CANCEL) == ["scheduleCancel"]
    assert [p.action_tags(a)[0] for a in ACCOUNT_ACTIONS] == ["setLeverage", "setMarginMode", "adjustMargin", "withdraw"]


# ----------------------------------------------------------------- malformed input

_PLACE = '{"method":"post","id":7,"action":{"type":"place","market":"NVDA","side":"buy","size":%s,"price":"1"}}'

MALFORMED = [
    # item 1
    ("truncated JSON", b'{"method":"ping"', G.MALFORMED_JSON, None),
    ("trailing garbage", b'{"method":"ping"} x', G.MALFORMED_JSON, None),
    ("array at top level", b"[]", G.NOT_AN_OBJECT, None),
    ("number at top level", b"1", G.NOT_AN_OBJECT, None),
    ("unknown method", b'{"method":"hello"}', G.UNKNOWN_METHOD, None),
    ("no method", b'{"id":1}', G.UNKNOWN_METHOD, None),
    ("unknown field", b'{"method":"ping","x":1}', G.UNKNOWN_FIELD, None),
    ("unknown field in an action", b'{"method":"post","id":7,"action":{"type":"cancelAll","foo":1}}',
     G.UNKNOWN_FIELD, 7),
    ("unknown action", b'{"method":"post","id":7,"action":{"type":"withdrawAll"}}', G.UNKNOWN_ACTION, 7),
    ("unknown channel", b'{"method":"subscribe","subscription":{"type":"candles","market":"NVDA"}}',
     G.UNKNOWN_CHANNEL, None),
    ("missing field", b'{"method":"post","id":7,"action":{"type":"cancel"}}', G.MISSING_FIELD, 7),
    ("wrong type", b'{"method":"post","id":"7","action":{"type":"cancelAll"}}', G.WRONG_TYPE, None),
    ("bad enum", b'{"method":"post","id":7,"action":{"type":"place","market":"NVDA","side":"long","size":"1"}}',
     Reject.BAD_FIELD, 7),
    ("bad market symbol", b'{"method":"subscribe","subscription":{"type":"trades","market":"NV DA"}}',
     G.BAD_VALUE, None),
    # item 2
    ("invalid UTF-8", b'{"method":"p\xffing"}', G.INVALID_UTF8, None),
    # item 3
    ("size as a JSON number", (_PLACE % "1.5").encode(), G.BAD_DECIMAL, 7),
    ("size as a JSON integer", (_PLACE % "2").encode(), G.BAD_DECIMAL, 7),
    ("size -0 as a number", (_PLACE % "-0").encode(), G.BAD_DECIMAL, 7),
    ("size 1e400", (_PLACE % "1e400").encode(), G.BAD_DECIMAL, 7),
    ("size NaN", (_PLACE % "NaN").encode(), G.MALFORMED_JSON, None),
    ("size Infinity", (_PLACE % "Infinity").encode(), G.MALFORMED_JSON, None),
    ('size "1e3"', (_PLACE % '"1e3"').encode(), G.BAD_DECIMAL, 7),
    ('size "NaN"', (_PLACE % '"NaN"').encode(), G.BAD_DECIMAL, 7),
    ('size ".5"', (_PLACE % '".5"').encode(), G.BAD_DECIMAL, 7),
    ('size "1."', (_PLACE % '"1."').encode(), G.BAD_DECIMAL, 7),
    ('size "+1"', (_PLACE % '"+1"').encode(), G.BAD_DECIMAL, 7),
    ('size " 1"', (_PLACE % '" 1"').encode(), G.BAD_DECIMAL, 7),
    # item 4 (the parts that need no market spec)
    ("batch of 51", ('{"method":"post","id":7,"action":{"type":"batch","actions":[%s]}}'
                     % ",".join(['{"type":"cancel","market":"NVDA","oid":1}'] * 51)).encode(),
     Reject.BATCH_TOO_LARGE, 7),
    ("nested batch", b'{"method":"post","id":7,"action":{"type":"batch","actions":[{"type":"batch","actions":[]}]}}',
     Reject.BATCH_NESTED, 7),
    ("empty batch", b'{"method":"post","id":7,"action":{"type":"batch","actions":[]}}', G.BAD_VALUE, 7),
    ("withdraw in a batch", b'{"method":"post","id":7,"action":{"type":"batch","actions":[{"type":"withdraw",'
     b'"amount":"1"}]}}', G.NOT_IN_BATCH, 7),
    ("cancelAll in a batch", b'{"method":"post","id":7,"action":{"type":"batch","actions":[{"type":"cancelAll"}]}}',
     G.NOT_IN_BATCH, 7),
    ("scheduleCancel in a batch", b'{"method":"post","id":7,"action":{"type":"batch","actions":'
     b'[{"type":"scheduleCancel","at":0}]}}', G.NOT_IN_BATCH, 7),
    ("cancelTrigger in a batch", b'{"method":"post","id":7,"action":{"type":"batch","actions":'
     b'[{"type":"cancelTrigger","market":"NVDA","tid":1}]}}', G.NOT_IN_BATCH, 7),
    ("trigger in a batch", b'{"method":"post","id":7,"action":{"type":"batch","actions":[{"type":"trigger"}]}}',
     G.NOT_IN_BATCH, 7),
    ("unknown action in a batch", b'{"method":"post","id":7,"action":{"type":"batch","actions":[{"type":"nope"}]}}',
     G.UNKNOWN_ACTION, 7),
    ("bad margin mode", b'{"method":"post","id":7,"action":{"type":"setMarginMode","market":"NVDA","mode":"x"}}',
     Reject.MARGIN_MODE_INVALID, 7),
    ("amount as a JSON number", b'{"method":"post","id":7,"action":{"type":"withdraw","amount":1}}',
     G.BAD_DECIMAL, 7),
    ("cloid of 33 characters", ('{"method":"post","id":7,"action":{"type":"cancel","market":"NVDA","cloid":"%s"}}'
                                % ("x" * 33)).encode(), Reject.CLOID_INVALID, 7),
    # item 5
    ("nonce 2^63", b'{"method":"logon","keyId":"k","nonce":9223372036854775808,"signature":"00"}',
     G.NONCE_OUT_OF_RANGE, None),
    ("nonce 2^53", b'{"method":"logon","keyId":"k","nonce":9007199254740992,"signature":"00"}',
     G.NONCE_OUT_OF_RANGE, None),
    ("signature not hex", b'{"method":"logon","keyId":"k","nonce":1,"signature":"xyz"}', G.SIGNATURE_MALFORMED, None),
    ("negative id", b'{"method":"post","id":-1,"action":{"type":"cancelAll"}}', G.BAD_VALUE, None),
    ("oid 2^64", b'{"method":"post","id":7,"action":{"type":"cancel","market":"NVDA","oid":18446744073709551616}}',
     G.BAD_VALUE, 7),
]


@pytest.mark.parametrize("frame, code, post_id", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_input_is_refused_with_its_code(frame, code, post_id):
    with pytest.raises(ProtocolError) as caught:
        p.decode_request(frame)
    assert int(caught.value.code) == int(code), caught.value.msg
    assert caught.value.post_id == post_id
    assert caught.value.msg.startswith(message_for(code))


def test_a_negative_size_string_passes_the_format_so_the_engine_can_say_not_positive():
    frame = (_PLACE % '"-1"').encode()
    assert p.decode_request(frame).action.size == "-1"


def test_oversized_frames_are_refused_before_parsing():
    big = b'{"method":"ping","pad":"' + b"x" * p.MAX_MESSAGE_BYTES + b'"}'
    with pytest.raises(ProtocolError) as caught:
        p.decode_request(big)
    assert caught.value.code == G.MESSAGE_TOO_LARGE
    with pytest.raises(ProtocolError) as caught:
        p.decode_request(big.decode())
    assert caught.value.code == G.MESSAGE_TOO_LARGE
    with pytest.raises(ProtocolError) as caught:
        p.decode_signed_action(big)
    assert caught.value.code == G.MESSAGE_TOO_LARGE


def test_a_frame_of_exactly_the_limit_is_parsed():
    head, tail = b'{"method":"ping","pad":"', b'"}'
    frame = head + b"x" * (p.MAX_MESSAGE_BYTES - len(head) - len(tail)) + tail
    with pytest.raises(ProtocolError) as caught:  # parsed: refused for the field, not the size
        p.decode_request(frame)
    assert caught.value.code == G.UNKNOWN_FIELD


def test_a_rest_body_must_be_signed():
    body = b'{"action":{"type":"cancelAll"},"nonce":5,"signature":"00"}'
    with pytest.raises(ProtocolError) as caught:
        p.decode_signed_action(body)
    assert caught.value.code == G.MISSING_FIELD and "keyId" in caught.value.msg
