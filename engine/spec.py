"""Market specifications and engine sizing: frozen msgspec Structs, validated on creation.

A ``MarketSpec`` is given in decimals (the edge); its integer views (``*_atoms``,
``*_ppm``) are what the kernels use. A spec whose tick × lot is not a whole number of
atoms is refused, because every notional must be an exact integer.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from engine import units

MAX_LADDER_LEVELS = 1 << 20


class MarketSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One market. ``market_id`` is its index in the engine (0, 1, 2, … in order).

    ``ladder_levels`` is the width in ticks of the dense price window each book side keeps;
    the price band is additionally capped to a quarter of it (see engine/book.py).
    """

    market_id: int
    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    max_order_lots: int
    min_notional: Decimal = Decimal("10")
    band_pct: Decimal = Decimal("0.10")
    max_slippage: Decimal = Decimal("0.05")
    ladder_levels: int = 1 << 16

    def __post_init__(self) -> None:
        if self.market_id < 0:
            raise ValueError("market_id must be >= 0")
        if not self.symbol:
            raise ValueError("symbol must not be empty")
        if self.tick_size <= 0 or self.lot_size <= 0:
            raise ValueError("tick_size and lot_size must be positive")
        units.atoms_per_tick_lot(self.tick_size, self.lot_size)  # raises if not whole atoms
        if not 0 < self.max_order_lots <= units.INT64_MAX:
            raise ValueError("max_order_lots must be positive and fit in int64")
        if self.min_notional < 0:
            raise ValueError("min_notional must be >= 0")
        units.to_atoms(self.min_notional)
        if not 0 < self.band_pct < 1 or not 0 < self.max_slippage < 1:
            raise ValueError("band_pct and max_slippage must lie strictly between 0 and 1")
        units.to_ppm(self.band_pct)
        units.to_ppm(self.max_slippage)
        levels = self.ladder_levels
        if levels < 256 or levels > MAX_LADDER_LEVELS or levels & (levels - 1):
            raise ValueError("ladder_levels must be a power of two between 256 and 2^20")

    @property
    def atoms_per_tick_lot(self) -> int:
        return units.atoms_per_tick_lot(self.tick_size, self.lot_size)

    @property
    def min_notional_atoms(self) -> int:
        return units.to_atoms(self.min_notional)

    @property
    def band_ppm(self) -> int:
        return units.to_ppm(self.band_pct)

    @property
    def slippage_ppm(self) -> int:
        return units.to_ppm(self.max_slippage)


class EngineConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Sizing of the preallocated arrays. Orders share one pool across markets."""

    max_orders: int = 1 << 20
    max_accounts: int = 1 << 16

    def __post_init__(self) -> None:
        if not 1 <= self.max_orders <= (1 << 22):
            raise ValueError("max_orders must be between 1 and 2^22 (order ids keep 22 slot bits)")
        if not 1 <= self.max_accounts <= (1 << 31) - 1:
            raise ValueError("max_accounts must be between 1 and 2^31 - 1")


def validate_markets(specs: list[MarketSpec], config: EngineConfig | None = None) -> None:
    """Market ids must be 0..n-1 in order and symbols unique; with a config, a price level
    filled with every order slot at the maximum size must still fit in int64 lots."""
    for index, spec in enumerate(specs):
        if spec.market_id != index:
            raise ValueError(f"market {spec.symbol!r} has id {spec.market_id}, expected {index}")
    symbols = [s.symbol for s in specs]
    if len(set(symbols)) != len(symbols):
        raise ValueError("market symbols must be unique")
    if config is not None:
        for spec in specs:
            if spec.max_order_lots > units.INT64_MAX // config.max_orders:
                raise ValueError(
                    f"market {spec.symbol!r}: max_order_lots × max_orders exceeds int64, so a level "
                    f"total could overflow; lower max_order_lots to at most {units.INT64_MAX // config.max_orders}"
                )
