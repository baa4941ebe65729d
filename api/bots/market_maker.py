"""The demo market maker: quotes a ladder around the mark, skewed against its inventory,
wider while the market is dark, nothing while it is halted. Written only against
``api.client``.

Layout
------
* ``MakerParams``: one market's quoting knobs (frozen, defaults locked by a test);
* ``quotes(mark, inventory, mode, params, band)``: pure; the ladder to show now;
* ``MarketMaker``: the loop: read the mark, mode and position the client caches, and when
  the ladder changes replace the resting quotes with one batch (cancels, then places).

Quoting (prices in USD, ``bps`` = 1/10,000)
-------------------------------------------
With ``max_position = max_position_usd / mark`` (shares) and ``size = quote_usd / mark``
rounded up to the lot: ``skew = clamp(inventory / max_position, -1, 1)``;
``centre = mark × (1 − skew × max_skew_bps)``;
level ``i`` sits ``half_spread_bps + i × level_step_bps`` (both × ``dark_widen`` while dark)
from the centre: bids rounded down to the tick, asks up, so a bid never rises and an ask
never falls in rounding; a bid is always below an ask. The bids (asks) together never take
the position past ``+max_position`` (``−max_position``): the last one is cut down to the
lot. While dark, quotes outside the discovery band are left out. Quotes are
post-only (``alo``): a quote that would cross is refused, never taken.

Known limitations
-----------------
* The maker does not watch its own fills between refreshes; it learns its inventory from the
  ``positions`` channel, so a burst of fills can overshoot ``max_position`` by one ladder.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal

import msgspec

from api import protocol as p
from api.client import Client, ClientError, place_action
from engine.codes import MAX_BATCH_ACTIONS

log = logging.getLogger("afterhours.bots.maker")

DARK_MODES = frozenset({"internal", "reopening", "pre_ipo"})
BPS = Decimal(10_000)


class MakerParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``quote_usd`` (each level) and ``max_position_usd`` are notionals at the mark; times
    in seconds."""

    market: str
    tick_size: Decimal
    lot_size: Decimal
    quote_usd: Decimal = Decimal(1_000)
    max_position_usd: Decimal = Decimal(20_000)
    levels: int = 3
    half_spread_bps: Decimal = Decimal(10)
    level_step_bps: Decimal = Decimal(10)
    max_skew_bps: Decimal = Decimal(20)
    dark_widen: Decimal = Decimal(3)
    requote_bps: Decimal = Decimal(2)
    refresh_s: float = 1.0


class Quote(msgspec.Struct, frozen=True):
    side: Literal["buy", "sell"]
    price: Decimal
    size: Decimal


def round_to(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    """``value`` to a whole number of ``step``s, in the given direction."""
    return (value / step).to_integral_value(rounding=rounding) * step


def quotes(mark: Decimal | None, inventory: Decimal, mode: str, params: MakerParams,
           band: tuple[Decimal, Decimal] | None = None) -> list[Quote]:
    """The ladder to show: bids best first, then asks best first (module docstring)."""
    if mark is None or mark <= 0 or mode == "halted":
        return []
    widen = params.dark_widen if mode in DARK_MODES else Decimal(1)
    max_position = params.max_position_usd / mark
    skew = max(Decimal(-1), min(Decimal(1), inventory / max_position))
    centre = mark * (1 - skew * params.max_skew_bps / BPS)
    room = {"buy": max_position - inventory, "sell": max_position + inventory}
    level_size = round_to(params.quote_usd / mark, params.lot_size, ROUND_CEILING)
    out: list[Quote] = []
    for side in ("buy", "sell"):
        shown = Decimal(0)
        for level in range(params.levels):
            offset = (params.half_spread_bps + level * params.level_step_bps) * widen / BPS
            if side == "buy":
                price = round_to(centre * (1 - offset), params.tick_size, ROUND_FLOOR)
            else:
                price = round_to(centre * (1 + offset), params.tick_size, ROUND_CEILING)
            size = min(level_size, round_to(room[side] - shown, params.lot_size, ROUND_FLOOR))
            if size <= 0 or price <= 0:
                break
            if mode in DARK_MODES and band is not None and not band[0] <= price <= band[1]:
                continue
            out.append(Quote(side, price, size))
            shown += size
    return out


def moved(old_mark: Decimal | None, new_mark: Decimal | None, threshold_bps: Decimal) -> bool:
    """True when the mark moved by at least ``threshold_bps`` (or appeared or vanished)."""
    if old_mark is None or new_mark is None:
        return old_mark != new_mark
    return abs(new_mark - old_mark) * BPS >= threshold_bps * old_mark


class MarketMaker:
    """Keeps ``quotes(...)`` resting in one market through ``client``."""

    def __init__(self, client: Client, params: MakerParams):
        self.client, self.params = client, params
        self.resting: list[int] = []  # oids of the quotes shown
        self.shown: list[Quote] = []
        self._basis: tuple[Decimal | None, Decimal, str] | None = None  # mark, inventory, mode quoted at
        self._wake = asyncio.Event()
        self.refreshes = 0

    async def run(self) -> None:
        market = self.params.market
        self.client.on("market", lambda info: info.market == market and self._wake.set())
        self.client.on("positions", lambda _: self._wake.set())
        for sub in (p.MarketSub(market), p.PositionsSub()):
            await self.client.subscribe(sub)
        try:
            while True:
                try:
                    async with asyncio.timeout(self.params.refresh_s):
                        await self._wake.wait()
                except asyncio.TimeoutError:
                    pass
                self._wake.clear()
                try:
                    await self.maybe_requote()
                except ClientError as exc:  # disconnected or refused: try again next round
                    log.info("%s: requote failed: %s", market, exc)
                    self._basis = None
        finally:
            await self._pull()

    def _state(self) -> tuple[Decimal | None, Decimal, str, tuple[Decimal, Decimal] | None]:
        info = self.client.markets.get(self.params.market)
        if info is None:
            return None, Decimal(0), "halted", None
        mark = Decimal(info.mark) if info.mark is not None else None
        band = (Decimal(info.band.low), Decimal(info.band.high)) if info.band is not None else None
        return mark, self.client.position_size(self.params.market), info.mode, band

    async def maybe_requote(self) -> bool:
        """Replace the quotes when the mark moved enough, the mode or the inventory changed."""
        mark, inventory, mode, band = self._state()
        if self._basis is not None:
            old_mark, old_inventory, old_mode = self._basis
            if old_mode == mode and old_inventory == inventory and not moved(old_mark, mark, self.params.requote_bps):
                return False
        wanted = quotes(mark, inventory, mode, self.params, band)
        await self._replace(wanted)
        self._basis = (mark, inventory, mode)
        return True

    async def _replace(self, wanted: list[Quote]) -> None:
        market = self.params.market
        cancels = [p.Cancel(market, oid) for oid in self.resting]
        places = [place_action(market, q.side, q.size, q.price, tif="alo") for q in wanted]
        actions = cancels + places
        self.resting, self.shown = [], []
        if not actions:
            return
        statuses: list[p.ActionStatus] = []
        for start in range(0, len(actions), MAX_BATCH_ACTIONS):
            statuses += await self.client.batch(actions[start:start + MAX_BATCH_ACTIONS])
        for quote, status in zip(wanted, statuses[len(cancels):]):
            if isinstance(status, p.Resting):
                self.resting.append(status.oid)
                self.shown.append(quote)
        self.refreshes += 1

    async def _pull(self) -> None:
        """Leave nothing resting when stopped (best effort: the connection may be gone). A
        cancel-all, since a refresh cut short may have placed quotes it never heard of."""
        if self.client.connected.is_set():
            try:
                await self.client.cancel_all(self.params.market)
            except ClientError:
                pass
