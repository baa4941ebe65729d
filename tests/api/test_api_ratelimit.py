"""Limits and liveness on an injected clock: exact token buckets, connection, key and
address limits.

gateway.md §6 catalogue items checked here (at the limits layer):
  2  an oversized frame or body (close 1009 / HTTP 413);
 13  rate limits exceeded: a specific code with a retry-after; cancels still allowed;
 14  subscription floods and duplicate subscriptions (idempotent);
 15  a silent client (idle close), a reconnect storm of 500 clients in one second from one
     address (admitted; the 501st waits).
"""

from __future__ import annotations

import pytest

from api import errors
from api import protocol as p
from api import ratelimit as rl

G = errors.GatewayCode
S = rl.NS_PER_S
MS = rl.NS_PER_MS
T0 = 1_700_000_000 * S


def test_defaults_are_gateway_mds_table():
    assert rl.Limits() == rl.Limits(
        max_message_bytes=65536, messages_per_s=50, messages_burst=100, invalid_per_s=2, invalid_burst=2,
        max_subscriptions=200, max_in_flight_posts=100, orders_per_s=100, orders_burst=300,
        cancels_per_s=200, cancels_burst=600, ping_interval_s=20, idle_timeout_s=60,
        max_connection_age_s=86_400, outbound_queue_max=1024, connects_per_ip_per_s=100,
        connects_per_ip_burst=500, rest_per_ip_per_s=50, rest_per_ip_burst=100,
    )


@pytest.mark.parametrize("bad", [{"messages_per_s": 0}, {"max_subscriptions": -1}, {"cancels_burst": 10}])
def test_limits_reject_nonsense(bad):
    with pytest.raises(ValueError):
        rl.Limits(**bad)


# ------------------------------------------------------------------------ token bucket


def test_bucket_starts_full_and_refills_exactly():
    bucket = rl.TokenBucket(rate_per_s=50, burst=100, now_ns=T0)
    assert all(bucket.try_take(T0) == 0 for _ in range(100))
    assert bucket.try_take(T0) == 20 * MS  # one token every 20 ms
    assert bucket.try_take(T0 + 20 * MS - 1) == 1
    assert bucket.try_take(T0 + 20 * MS) == 0
    assert bucket.tokens(T0 + 20 * MS + 10 * S) == 100  # capped at the burst


def test_bucket_refused_take_consumes_nothing():
    bucket = rl.TokenBucket(rate_per_s=2, burst=2, now_ns=T0)
    bucket.try_take(T0, 2)
    for _ in range(5):
        assert bucket.try_take(T0 + 100 * MS) > 0
    assert bucket.try_take(T0 + 500 * MS) == 0


def test_bucket_ignores_a_clock_that_steps_back():
    bucket = rl.TokenBucket(rate_per_s=1, burst=1, now_ns=T0)
    bucket.try_take(T0)
    assert bucket.try_take(T0 - 10 * S) > 0
    assert bucket.try_take(T0 + S - 1) == 1  # refills from the latest time seen, not the earlier one
    assert bucket.try_take(T0 + S) == 0


def test_bucket_is_deterministic():
    def run():
        bucket = rl.TokenBucket(7, 3, T0)
        return [bucket.try_take(T0 + n * 37 * MS) for n in range(200)]

    assert run() == run()


# ------------------------------------------------------------------------- connection


def test_frame_size_limit_closes_1009_and_rest_gets_413():
    conn = rl.ConnectionLimiter(rl.Limits(), T0)
    assert conn.check_size(65536) is None
    refusal = conn.check_size(65537)
    assert (refusal.code, refusal.close, refusal.http) == (G.MESSAGE_TOO_LARGE, rl.CLOSE_TOO_BIG, rl.HTTP_TOO_LARGE)


def test_messages_50_per_second_burst_100_with_retry_after():
    conn = rl.ConnectionLimiter(rl.Limits(), T0)
    assert all(conn.admit_message(T0) is None for _ in range(100))  # a batch is one message
    refusal = conn.admit_message(T0)
    assert (refusal.code, refusal.retry_after_ms, refusal.close) == (G.RATE_LIMITED, 20, None)
    assert conn.admit_message(T0 + 20 * MS) is None
    assert sum(conn.admit_message(T0 + S + 20 * MS) is None for _ in range(60)) == 50


def test_invalid_messages_two_a_second_then_close_1008():
    conn = rl.ConnectionLimiter(rl.Limits(), T0)
    assert conn.record_invalid(T0) is None
    assert conn.record_invalid(T0 + 100 * MS) is None
    refusal = conn.record_invalid(T0 + 200 * MS)
    assert (refusal.code, refusal.close) == (G.TOO_MANY_INVALID, rl.CLOSE_POLICY)


def test_invalid_messages_spread_out_are_tolerated():
    conn = rl.ConnectionLimiter(rl.Limits(), T0)
    assert all(conn.record_invalid(T0 + n * 500 * MS) is None for n in range(20))


def test_subscriptions_cap_at_200_and_duplicates_are_free():
    conn = rl.ConnectionLimiter(rl.Limits(), T0)
    subs = [p.TradesSub(market=f"M{n}") for n in range(200)]
    assert all(conn.add_subscription(s) is None for s in subs)
    assert conn.add_subscription(p.TradesSub(market="M0")) is None  # the same again: idempotent
    assert conn.subscription_count == 200
    assert conn.add_subscription(p.TradesSub(market="M200")).code == G.TOO_MANY_SUBSCRIPTIONS
    assert conn.remove_subscription(p.TradesSub(market="M7")) and not conn.remove_subscription(p.TradesSub(market="M7"))
    assert conn.add_subscription(p.TradesSub(market="M200")) is None


def test_in_flight_posts_cap_at_100():
    conn = rl.ConnectionLimiter(rl.Limits(), T0)
    assert all(conn.begin_post() is None for _ in range(100))
    assert conn.begin_post().code == G.TOO_MANY_IN_FLIGHT
    conn.end_post()
    assert conn.begin_post() is None


def test_a_silent_client_is_closed_after_60_s_and_every_connection_after_24_h():
    conn = rl.ConnectionLimiter(rl.Limits(), T0)
    assert conn.liveness(T0 + 60 * S - 1) is None
    assert conn.liveness(T0 + 60 * S).code == G.IDLE_TIMEOUT
    chatty = rl.ConnectionLimiter(rl.Limits(), T0)
    for minute in range(24 * 60):
        chatty.admit_message(T0 + minute * 60 * S)
        assert chatty.liveness(T0 + minute * 60 * S) is None
    chatty.admit_message(T0 + 24 * 3600 * S)
    refusal = chatty.liveness(T0 + 24 * 3600 * S)
    assert (refusal.code, refusal.close) == (G.CONNECTION_TOO_OLD, rl.CLOSE_GOING_AWAY)


def test_server_pings_every_interval():
    conn = rl.ConnectionLimiter(rl.Limits(), T0)
    assert not conn.ping_due(T0 + 19 * S)
    assert conn.ping_due(T0 + 20 * S)
    conn.pinged(T0 + 20 * S)
    assert not conn.ping_due(T0 + 39 * S)


# -------------------------------------------------------------------------- per key


def test_order_budget_spent_cancels_still_allowed():
    keys = rl.KeyLimiter(rl.Limits())
    assert all(v is None for v in keys.admit_actions("k", ["place"] * 300, T0))
    refused = keys.admit_actions("k", ["place", "amend", "cancel", "cancelAll"], T0)
    assert [r.code if r else None for r in refused] == [G.ORDER_RATE_LIMITED, G.ORDER_RATE_LIMITED, None, None]
    assert refused[0].retry_after_ms == 10  # 100 orders/s: one every 10 ms
    assert keys.admit_actions("other", ["place"], T0) == [None]  # per key


def test_each_action_of_a_batch_counts_and_gets_its_own_verdict():
    keys = rl.KeyLimiter(rl.Limits(orders_burst=2, orders_per_s=1, cancels_per_s=1, cancels_burst=2))
    verdicts = keys.admit_actions("k", ["place", "cancel", "place", "place", "cancel"], T0)
    assert [v.code if v else None for v in verdicts] == [None, None, None, G.ORDER_RATE_LIMITED, None]


def test_cancel_budget_is_larger_and_also_limited():
    keys = rl.KeyLimiter(rl.Limits())
    verdicts = keys.admit_actions("k", ["cancel"] * 601, T0)
    assert verdicts[:600] == [None] * 600
    assert verdicts[600].code == G.CANCEL_RATE_LIMITED and verdicts[600].retry_after_ms == 5


def test_key_budgets_are_pruned_once_full_again():
    keys = rl.KeyLimiter(rl.Limits())
    keys.admit_actions("k", ["place"], T0)
    assert keys.prune(T0) == 0
    assert keys.prune(T0 + S) == 1


# ------------------------------------------------------------------------- per address


def test_a_reconnect_storm_of_500_in_one_second_is_admitted_and_the_501st_waits():
    ips = rl.IpLimiter(rl.Limits())
    assert all(ips.admit_connection("10.0.0.1", T0 + n * 2 * MS) is None for n in range(500))
    over = ips.admit_connection("10.0.0.1", T0 + 999 * MS)
    assert over is None  # 100/s refilled about 100 tokens during that second
    while (refusal := ips.admit_connection("10.0.0.1", T0 + 999 * MS)) is None:
        pass
    assert refusal.code == G.IP_CONNECT_RATE and refusal.retry_after_ms >= 1
    assert ips.admit_connection("10.0.0.2", T0 + 999 * MS) is None


def test_rest_requests_per_address():
    ips = rl.IpLimiter(rl.Limits())
    assert all(ips.admit_rest("a", T0) is None for _ in range(100))
    refusal = ips.admit_rest("a", T0)
    assert (refusal.code, refusal.retry_after_ms, refusal.http) == (G.IP_REQUEST_RATE, 20, rl.HTTP_TOO_MANY)
    assert ips.prune(T0) == 0 and ips.prune(T0 + 2 * S) == 1
