"""Demo bots for a local node: a market maker and a noise taker per market, each written
only against ``api.client``, so they double as examples of it.

Layout
------
* ``market_maker``: ``quotes(...)`` (pure) and the ``MarketMaker`` loop;
* ``noise_taker``: ``next_order(...)`` (pure) and the ``NoiseTaker`` loop;
* ``BotMarket`` and ``bot_markets(specs)``: what the bots need to know about a market;
* ``bot_coroutines(url, maker=…, taker=…, markets=…)``: the coroutines a node starts (one
  per role, each with its own connection); ``run_bots(...)`` runs them all until cancelled.

Invariants
----------
* The maker and the taker use different keys (different accounts): self-trade prevention
  would otherwise cancel the very trades the taker exists to make.
* A bot coroutine never returns on a connection error: its client reconnects, resubscribes
  and the bot carries on; cancelling the coroutine stops it and closes its client.
"""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from typing import Callable, Coroutine, Iterable, Sequence

import msgspec

from api.auth import Signer
from api.bots.market_maker import MakerParams, MarketMaker
from api.bots.noise_taker import NoiseTaker, TakerParams
from api.client import Client, ClientConfig

__all__ = ["BotMarket", "bot_markets", "bot_coroutines", "run_bots", "MakerParams", "TakerParams"]


class BotMarket(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One market the bots trade; notionals in USD."""

    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    quote_usd: Decimal = Decimal(1_000)
    maker_max_position_usd: Decimal = Decimal(20_000)
    order_usd: Decimal = Decimal(300)
    taker_max_position_usd: Decimal = Decimal(10_000)
    taker_interval_s: float = 1.0

    def maker(self) -> MakerParams:
        return MakerParams(self.symbol, self.tick_size, self.lot_size, self.quote_usd, self.maker_max_position_usd)

    def taker(self) -> TakerParams:
        return TakerParams(self.symbol, self.lot_size, self.order_usd, self.taker_max_position_usd,
                           self.taker_interval_s)


def bot_markets(specs: Iterable[object]) -> list[BotMarket]:
    """Bot settings from market specs (anything with ``symbol``, ``tick_size``, ``lot_size``,
    e.g. ``engine.spec.MarketSpec``), defaults for the rest."""
    return [BotMarket(s.symbol, s.tick_size, s.lot_size) for s in specs]  # type: ignore[attr-defined]


ClockMs = Callable[[], int] | None


async def _run_makers(cfg: ClientConfig, signer: Signer, markets: Sequence[BotMarket], clock_ms: ClockMs) -> None:
    async with Client(cfg, signer, clock_ms=clock_ms) as client:
        await asyncio.gather(*(MarketMaker(client, m.maker()).run() for m in markets))


async def _run_takers(cfg: ClientConfig, signer: Signer, markets: Sequence[BotMarket], seed: int,
                      clock_ms: ClockMs) -> None:
    async with Client(cfg, signer, clock_ms=clock_ms) as client:
        await asyncio.gather(*(NoiseTaker(client, m.taker(), random.Random(f"{seed}:{m.symbol}")).run()
                               for m in markets))


def bot_coroutines(url: str, *, maker: Signer | None, taker: Signer | None, markets: Sequence[BotMarket],
                   network: str = "local", seed: int = 0, clock_ms: ClockMs = None) -> list[Coroutine]:
    """The coroutines to start: the maker's (if ``maker``) and the taker's (if ``taker``).
    ``url`` is the node's websocket URL (``ws://127.0.0.1:PORT/ws``); each signer is the
    key of its own account; ``clock_ms`` is the node's clock in ms when it is not the wall
    clock (logon nonces must fall inside its window)."""
    cfg = ClientConfig(url, network=network)
    out: list[Coroutine] = []
    if maker is not None:
        out.append(_run_makers(cfg, maker, markets, clock_ms))
    if taker is not None:
        out.append(_run_takers(cfg, taker, markets, seed, clock_ms))
    return out


async def run_bots(url: str, *, maker: Signer | None, taker: Signer | None, markets: Sequence[BotMarket],
                   network: str = "local", seed: int = 0, clock_ms: ClockMs = None) -> None:
    """Run every bot until cancelled."""
    await asyncio.gather(*bot_coroutines(url, maker=maker, taker=taker, markets=markets, network=network, seed=seed,
                                         clock_ms=clock_ms))
