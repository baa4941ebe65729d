"""The gateway's limits (spec/gateway.md §4), as pure state machines over an injected clock.

Layout
------
* ``Limits``: every number, frozen, with gateway.md's defaults;
* ``TokenBucket``: exact integer token bucket (tokens counted in billionths);
* ``ConnectionLimiter``: one websocket connection: frame size, inbound messages, invalid
  messages, subscriptions, in-flight posts, idle and age;
* ``KeyLimiter``: order and cancel budgets per API key; ``IpLimiter``: new connections and
  REST requests per client address;
* ``Refusal``: what to tell the client: a code, a retry-after, and a websocket close code
  or HTTP status when the limit ends the connection or the request.

Invariants
----------
* No clock is read here: every call takes ``now_ns``. The same calls give the same answers.
* A refused call consumes nothing. A clock that steps back refills nothing.
* Cancels draw on their own, larger budget, so a bot whose order budget is spent can still
  cancel.

Known limitations
-----------------
* Per-address buckets assume the gateway sees the client's real address (no proxy header
  handling here). The outbound queue bound is enforced by the publisher; only its size
  lives here.
"""

from __future__ import annotations

from typing import Hashable, NamedTuple, Sequence

import msgspec

from api.errors import GatewayCode

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000

# Websocket close codes (RFC 6455) and HTTP statuses the limits end with.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013
HTTP_TOO_LARGE = 413
HTTP_TOO_MANY = 429

CANCEL_TAGS = frozenset({"cancel", "cancelAll"})


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """gateway.md §4. The order and cancel budgets, the ping interval, the queue size and the
    per-address buckets are not numbered in gateway.md; these values are this node's."""

    max_message_bytes: int = 64 * 1024
    messages_per_s: int = 50
    messages_burst: int = 100
    invalid_per_s: int = 2
    invalid_burst: int = 2
    max_subscriptions: int = 200
    max_in_flight_posts: int = 100
    orders_per_s: int = 100
    orders_burst: int = 300
    cancels_per_s: int = 200
    cancels_burst: int = 600
    ping_interval_s: int = 20
    idle_timeout_s: int = 60
    max_connection_age_s: int = 24 * 3600
    outbound_queue_max: int = 1024
    connects_per_ip_per_s: int = 100
    connects_per_ip_burst: int = 500
    rest_per_ip_per_s: int = 50
    rest_per_ip_burst: int = 100

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)}")
        if self.cancels_per_s < self.orders_per_s or self.cancels_burst < self.orders_burst:
            raise ValueError("cancels need a budget at least as large as orders, so a bot can always cancel")


class Refusal(NamedTuple):
    """``code``: why; ``retry_after_ms``: when a retry can succeed (rate limits); ``close``:
    the websocket close code if the connection must end; ``http``: the REST status;
    ``detail``: the limit in numbers, for the error message."""

    code: GatewayCode
    retry_after_ms: int | None = None
    close: int | None = None
    http: int = HTTP_TOO_MANY
    detail: str = ""


class TokenBucket:
    """``rate_per_s`` tokens a second up to ``burst``; starts full. Exact: the level is kept
    in billionths of a token, so refilling ``dt_ns`` adds ``dt_ns × rate_per_s`` of them."""

    __slots__ = ("rate_per_s", "burst", "_level", "_last_ns")

    def __init__(self, rate_per_s: int, burst: int, now_ns: int):
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate_per_s, self.burst = rate_per_s, burst
        self._level = burst * NS_PER_S
        self._last_ns = now_ns

    def _refill(self, now_ns: int) -> None:
        if now_ns > self._last_ns:
            self._level = min(self.burst * NS_PER_S, self._level + (now_ns - self._last_ns) * self.rate_per_s)
            self._last_ns = now_ns

    def try_take(self, now_ns: int, tokens: int = 1) -> int:
        """Take ``tokens``: 0 if done, else the nanoseconds until they will be there
        (rounded up), and nothing is taken."""
        if not 0 < tokens <= self.burst:
            raise ValueError(f"cannot take {tokens} tokens from a bucket of {self.burst}")
        self._refill(now_ns)
        need = tokens * NS_PER_S
        if self._level >= need:
            self._level -= need
            return 0
        return -(-(need - self._level) // self.rate_per_s)

    def tokens(self, now_ns: int) -> int:
        """Whole tokens available now."""
        self._refill(now_ns)
        return self._level // NS_PER_S

    def is_full(self, now_ns: int) -> bool:
        self._refill(now_ns)
        return self._level == self.burst * NS_PER_S


def _retry_ms(wait_ns: int) -> int:
    return max(1, -(-wait_ns // NS_PER_MS))


class ConnectionLimiter:
    """The limits of one websocket connection, opened at ``now_ns``."""

    def __init__(self, limits: Limits, now_ns: int):
        self.limits = limits
        self._messages = TokenBucket(limits.messages_per_s, limits.messages_burst, now_ns)
        self._invalid = TokenBucket(limits.invalid_per_s, limits.invalid_burst, now_ns)
        self._subscriptions: set[Hashable] = set()
        self.in_flight = 0
        self.opened_ns = now_ns
        self.last_inbound_ns = now_ns
        self.last_ping_ns = now_ns

    def check_size(self, n_bytes: int) -> Refusal | None:
        """A frame over the limit: refuse and close 1009 (HTTP 413 for a REST body)."""
        if n_bytes > self.limits.max_message_bytes:
            detail = f"{n_bytes} bytes; the limit is {self.limits.max_message_bytes}"
            return Refusal(GatewayCode.MESSAGE_TOO_LARGE, close=CLOSE_TOO_BIG, http=HTTP_TOO_LARGE, detail=detail)
        return None

    def admit_message(self, now_ns: int) -> Refusal | None:
        """One inbound message (a batch counts once). Any frame proves the client alive."""
        self.last_inbound_ns = max(self.last_inbound_ns, now_ns)
        wait = self._messages.try_take(now_ns)
        if not wait:
            return None
        detail = f"{self.limits.messages_per_s} per second, burst {self.limits.messages_burst}"
        return Refusal(GatewayCode.RATE_LIMITED, _retry_ms(wait), detail=detail)

    def record_invalid(self, now_ns: int) -> Refusal | None:
        """An invalid message was answered with an error; past 2 a second, close 1008."""
        if self._invalid.try_take(now_ns):
            detail = f"more than {self.limits.invalid_burst} invalid, refilling {self.limits.invalid_per_s} per second"
            return Refusal(GatewayCode.TOO_MANY_INVALID, close=CLOSE_POLICY, detail=detail)
        return None

    def add_subscription(self, key: Hashable) -> Refusal | None:
        """Idempotent: subscribing again to what is held is accepted and costs nothing."""
        if key not in self._subscriptions and len(self._subscriptions) >= self.limits.max_subscriptions:
            return Refusal(GatewayCode.TOO_MANY_SUBSCRIPTIONS, detail=f"limit {self.limits.max_subscriptions}")
        self._subscriptions.add(key)
        return None

    def remove_subscription(self, key: Hashable) -> bool:
        """True if it was held; removing one not held is harmless."""
        if key in self._subscriptions:
            self._subscriptions.remove(key)
            return True
        return False

    @property
    def subscription_count(self) -> int:
        return len(self._subscriptions)

    def begin_post(self) -> Refusal | None:
        if self.in_flight >= self.limits.max_in_flight_posts:
            return Refusal(GatewayCode.TOO_MANY_IN_FLIGHT, detail=f"limit {self.limits.max_in_flight_posts}")
        self.in_flight += 1
        return None

    def end_post(self) -> None:
        if self.in_flight <= 0:
            raise AssertionError("end_post without begin_post")
        self.in_flight -= 1

    def ping_due(self, now_ns: int) -> bool:
        return now_ns - self.last_ping_ns >= self.limits.ping_interval_s * NS_PER_S

    def pinged(self, now_ns: int) -> None:
        self.last_ping_ns = max(self.last_ping_ns, now_ns)

    def liveness(self, now_ns: int) -> Refusal | None:
        """Silent for 60 s, or open for 24 h: close (1001, going away)."""
        if now_ns - self.last_inbound_ns >= self.limits.idle_timeout_s * NS_PER_S:
            detail = f"silent for {self.limits.idle_timeout_s} s"
            return Refusal(GatewayCode.IDLE_TIMEOUT, close=CLOSE_GOING_AWAY, detail=detail)
        if now_ns - self.opened_ns >= self.limits.max_connection_age_s * NS_PER_S:
            detail = f"open for {self.limits.max_connection_age_s} s"
            return Refusal(GatewayCode.CONNECTION_TOO_OLD, close=CLOSE_GOING_AWAY, detail=detail)
        return None


class _Budgets(NamedTuple):
    orders: TokenBucket
    cancels: TokenBucket


class KeyLimiter:
    """Order actions per API key: place and amend draw on the order budget, cancel and
    cancelAll on the larger cancel budget; each action of a batch counts."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._budgets: dict[str, _Budgets] = {}

    def _get(self, key_id: str, now_ns: int) -> _Budgets:
        budgets = self._budgets.get(key_id)
        if budgets is None:
            budgets = _Budgets(TokenBucket(self.limits.orders_per_s, self.limits.orders_burst, now_ns),
                               TokenBucket(self.limits.cancels_per_s, self.limits.cancels_burst, now_ns))
            self._budgets[key_id] = budgets
        return budgets

    def admit_actions(self, key_id: str, tags: Sequence[str], now_ns: int) -> list[Refusal | None]:
        """One verdict per action, in order (``tags`` from ``protocol.action_tags``); a
        refused action takes nothing, and later ones are still tried."""
        budgets = self._get(key_id, now_ns)
        verdicts: list[Refusal | None] = []
        for tag in tags:
            is_cancel = tag in CANCEL_TAGS
            wait = (budgets.cancels if is_cancel else budgets.orders).try_take(now_ns)
            code = GatewayCode.CANCEL_RATE_LIMITED if is_cancel else GatewayCode.ORDER_RATE_LIMITED
            verdicts.append(Refusal(code, _retry_ms(wait)) if wait else None)
        return verdicts

    def prune(self, now_ns: int) -> int:
        """Forget keys whose budgets are full again (a full bucket equals a new one)."""
        idle = [k for k, b in self._budgets.items() if b.orders.is_full(now_ns) and b.cancels.is_full(now_ns)]
        for key_id in idle:
            del self._budgets[key_id]
        return len(idle)


class IpLimiter:
    """Per client address: new websocket connections and REST requests."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._connects: dict[str, TokenBucket] = {}
        self._rest: dict[str, TokenBucket] = {}

    def admit_connection(self, ip: str, now_ns: int) -> Refusal | None:
        bucket = self._connects.get(ip)
        if bucket is None:
            bucket = self._connects[ip] = TokenBucket(self.limits.connects_per_ip_per_s,
                                                      self.limits.connects_per_ip_burst, now_ns)
        wait = bucket.try_take(now_ns)
        return Refusal(GatewayCode.IP_CONNECT_RATE, _retry_ms(wait)) if wait else None

    def admit_rest(self, ip: str, now_ns: int) -> Refusal | None:
        bucket = self._rest.get(ip)
        if bucket is None:
            bucket = self._rest[ip] = TokenBucket(self.limits.rest_per_ip_per_s, self.limits.rest_per_ip_burst, now_ns)
        wait = bucket.try_take(now_ns)
        return Refusal(GatewayCode.IP_REQUEST_RATE, _retry_ms(wait)) if wait else None

    def prune(self, now_ns: int) -> int:
        """Forget addresses whose buckets are full again."""
        removed = 0
        for table in (self._connects, self._rest):
            for ip in [ip for ip, bucket in table.items() if bucket.is_full(now_ns)]:
                del table[ip]
                removed += 1
        return removed
