"""The demo noise taker: market orders of random side and size at random intervals, pulled
back toward flat when its position reaches its limit. Written only against ``api.client``.

Layout
------
* ``TakerParams``: one market's knobs (frozen, defaults locked by a test);
* ``next_order(rng, mark, inventory, params)``: pure; the side and size of the next order;
* ``next_wait_s(rng, params)``: pure; exponential waits (a Poisson stream of orders);
* ``NoiseTaker``: the loop; it sends nothing while the market is halted or has no mark.

Invariants
----------
* Sizes are whole lots, at least one, worth about ``order_usd`` × [0.5, 1.5) at the mark;
  with the position worth ``max_position_usd`` or more long the taker only sells, short it
  only buys.
* Everything random comes from the ``random.Random`` it is given: a seed replays the stream.
"""

from __future__ import annotations

import asyncio
import logging
import random
from decimal import Decimal
from typing import Literal

import msgspec

from api import protocol as p
from api.client import Client, ClientError

log = logging.getLogger("afterhours.bots.taker")


class TakerParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Notionals in USD at the mark; ``mean_interval_s`` between orders."""

    market: str
    lot_size: Decimal
    order_usd: Decimal = Decimal(300)
    max_position_usd: Decimal = Decimal(10_000)
    mean_interval_s: float = 1.0


def next_order(rng: random.Random, mark: Decimal, inventory: Decimal,
               params: TakerParams) -> tuple[Literal["buy", "sell"], Decimal]:
    """Side and size (base units, whole lots, rounded down but at least one lot)."""
    exposure = inventory * mark
    if exposure >= params.max_position_usd:
        side = "sell"
    elif exposure <= -params.max_position_usd:
        side = "buy"
    else:
        side = "buy" if rng.random() < 0.5 else "sell"
    usd = params.order_usd * Decimal(rng.randrange(50, 150)) / 100
    lots = max(1, int(usd / mark / params.lot_size))
    return side, lots * params.lot_size


def next_wait_s(rng: random.Random, params: TakerParams) -> float:
    return rng.expovariate(1.0 / params.mean_interval_s)


class NoiseTaker:
    def __init__(self, client: Client, params: TakerParams, rng: random.Random):
        self.client, self.params, self.rng = client, params, rng
        self.sent = 0
        self.statuses: list[p.ActionStatus] = []

    async def run(self) -> None:
        market = self.params.market
        for sub in (p.MarketSub(market), p.PositionsSub()):
            await self.client.subscribe(sub)
        while True:
            await asyncio.sleep(next_wait_s(self.rng, self.params))
            info = self.client.markets.get(market)
            if info is None or info.mark is None or info.mode == "halted":
                continue
            side, size = next_order(self.rng, Decimal(info.mark), self.client.position_size(market), self.params)
            try:
                status = await self.client.place(market, side, size, order_type="market", tif="ioc")
            except ClientError as exc:
                log.info("%s: order failed: %s", market, exc)
                continue
            self.sent += 1
            self.statuses = (self.statuses + [status])[-100:]
