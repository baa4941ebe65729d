"""Market specifications and engine sizing: frozen msgspec Structs, validated on creation.

A ``MarketSpec`` is given in decimals (the edge); its integer views (``*_atoms``,
``*_ppm``) are what the kernels use. A spec whose tick × lot is not a whole number of
atoms is refused, because every notional must be an exact integer.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec
import numpy as np

from engine import units
from engine.codes import MAX_MARK_TICKS as MAX_PRICE_TICKS
from engine.codes import FundingDark
from engine.margin import check_tiers

POSITION_NOTIONAL_CAP_ATOMS = 1 << 59  # one position at max_price; an account's sum ≤ 2^62
MAX_POSITION_LOTS = 3_000_000_000  # MAX_POSITION_LOTS² < 2^63

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
    # risk (used when EngineConfig.risk is on; see docs/risk.md)
    maker_fee: Decimal = Decimal("0.0001")
    taker_fee: Decimal = Decimal("0.00035")
    tiers: tuple[tuple[Decimal, int], ...] = ((Decimal(0), 10), (Decimal(5_000_000), 5))
    max_price: Decimal = Decimal(1_000_000)
    impact_notional: Decimal = Decimal(6_000)
    funding_multiplier: Decimal = Decimal("0.5")
    partial_liq_notional: Decimal = Decimal(100_000)
    liq_fee: Decimal = Decimal("0.015")
    oi_cap: Decimal | None = None  # USD of open interest at the mark; None: no cap
    # closed-hours pricing (used when EngineConfig.modes is on; see docs/modes.md)
    dark_band: Decimal | None = None  # discovery band half-width; None: 1 / the first tier's max leverage
    dark_max_leverage: int = 5
    funding_dark: FundingDark = FundingDark.NORMAL
    pre_ipo_reference: Decimal | None = None  # a pre-IPO market's published reference price

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
        self._check_risk()

    def _check_risk(self) -> None:
        if not 0 <= self.taker_fee < 1 or not -self.taker_fee <= self.maker_fee < 1:
            raise ValueError("fees: 0 <= taker_fee < 1 and -taker_fee <= maker_fee < 1 (a rebate never exceeds the taker fee)")
        units.to_ppm(self.maker_fee)
        units.to_ppm(self.taker_fee)
        check_tiers(self.tier_lower_atoms, self.tier_max_lev)
        if self.max_price <= 0:
            raise ValueError("max_price must be positive")
        if self.max_price_ticks > MAX_PRICE_TICKS:
            raise ValueError(f"max_price is more than {MAX_PRICE_TICKS} ticks")
        if self.max_price_ticks * self.atoms_per_tick_lot > POSITION_NOTIONAL_CAP_ATOMS:
            raise ValueError("one lot at max_price is worth more than the position notional cap")
        if not 0 < self.impact_notional or not 0 < self.funding_multiplier <= 10:
            raise ValueError("impact_notional must be positive and funding_multiplier in (0, 10]")
        units.to_atoms(self.impact_notional)
        units.to_ppm(self.funding_multiplier)
        if self.partial_liq_notional < 0 or not 0 <= self.liq_fee < 1:
            raise ValueError("partial_liq_notional must be >= 0 and liq_fee in [0, 1)")
        units.to_atoms(self.partial_liq_notional)
        units.to_ppm(self.liq_fee)
        if self.oi_cap is not None:
            if self.oi_cap <= 0:
                raise ValueError("oi_cap must be positive (or None for no cap)")
            units.to_atoms(self.oi_cap)
        if not 0 < self.dark_band_ppb < 1_000_000_000:
            raise ValueError("dark_band must lie strictly between 0 and 1")
        if self.dark_max_leverage < 1:
            raise ValueError("dark_max_leverage must be at least 1")
        if self.pre_ipo_reference is not None:
            ref = self.pre_ipo_reference_ticks
            if not 0 < ref or 4 * ref > self.max_price_ticks:
                raise ValueError("pre_ipo_reference must be positive and at most max_price / 4 (the oracle cap is 4× it)")

    @property
    def dark_band_ppb(self) -> int:
        """B in ppb: the given band (must be a whole ppb), else ⌊1e9 / first tier's leverage⌋
        (rounded down: a band never widens by rounding)."""
        if self.dark_band is None:
            return 1_000_000_000 // self.tiers[0][1]
        ppb = self.dark_band * 1_000_000_000
        if ppb != ppb.to_integral_value():
            raise ValueError("dark_band must be a whole number of ppb (1e-9)")
        return int(ppb)

    @property
    def pre_ipo_reference_ticks(self) -> int:
        return 0 if self.pre_ipo_reference is None else units.to_ticks(self.pre_ipo_reference, self.tick_size)

    @property
    def oi_cap_atoms(self) -> int:
        return 0 if self.oi_cap is None else units.to_atoms(self.oi_cap)

    @property
    def tier_lower_atoms(self) -> np.ndarray:
        return np.array([units.to_atoms(Decimal(lo)) for lo, _ in self.tiers], dtype=np.int64)

    @property
    def tier_max_lev(self) -> np.ndarray:
        return np.array([lev for _, lev in self.tiers], dtype=np.int64)

    @property
    def max_price_ticks(self) -> int:
        return units.to_ticks(self.max_price, self.tick_size)

    @property
    def max_position_lots(self) -> int:
        """Largest position: its notional at max_price stays within the cap, and its square
        fits int64 (the exact pro-rata cost split of engine/risk.py multiplies two sizes)."""
        return min(MAX_POSITION_LOTS, POSITION_NOTIONAL_CAP_ATOMS // (self.max_price_ticks * self.atoms_per_tick_lot))

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

    @property
    def maker_fee_ppm(self) -> int:
        return units.to_ppm(self.maker_fee)

    @property
    def taker_fee_ppm(self) -> int:
        return units.to_ppm(self.taker_fee)


class EngineConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Sizing of the preallocated arrays. Orders share one pool across markets."""

    max_orders: int = 1 << 20
    max_accounts: int = 1 << 16
    risk: bool = False  # accounts, positions, fees, margin, funding, liquidation (docs/risk.md)
    max_triggers: int = 1 << 10  # stop / take-profit orders waiting for their price (docs/triggers.md)
    modes: bool = False  # closed-hours pricing: market modes, internal pricing, reopen, pre-IPO (docs/modes.md)

    def __post_init__(self) -> None:
        if not 1 <= self.max_orders <= (1 << 22):
            raise ValueError("max_orders must be between 1 and 2^22 (order ids keep 22 slot bits)")
        if not 1 <= self.max_accounts <= (1 << 31) - 1:
            raise ValueError("max_accounts must be between 1 and 2^31 - 1")
        if not 1 <= self.max_triggers <= (1 << 20):
            raise ValueError("max_triggers must be between 1 and 2^20")
        if self.modes and not self.risk:
            raise ValueError("modes needs risk: closed-hours pricing works on the risk layer's oracle and mark")


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
