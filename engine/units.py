"""Decimal <-> integer units: the only place in afterhours that converts.

Units inside the engine (see DESIGN.md):

* price: ticks of the market's ``tick_size`` (int64)
* size:  lots of the market's ``lot_size`` (int64)
* money: atoms, 1e-6 USD (int64)
* rates: parts per million (``*_ppm``) for bands and slippage

Conversions from the edge never round: an off-tick price or an off-lot size is an error
with its own reject code, so the caller can tell the user exactly what was wrong.
Conversions back to decimals are exact.
"""

from __future__ import annotations

from decimal import Decimal

from engine.codes import Reject

ATOMS_PER_USD = 1_000_000
PPM = 1_000_000
INT64_MAX = (1 << 63) - 1


class UnitError(ValueError):
    """A decimal that cannot be expressed in engine units; ``code`` says why."""

    def __init__(self, code: Reject, detail: str):
        super().__init__(f"{code.name}: {detail}")
        self.code = code


def atoms_per_tick_lot(tick_size: Decimal, lot_size: Decimal) -> int:
    """Atoms in the notional of one lot at a price of one tick; must be a whole number."""
    value = tick_size * lot_size * ATOMS_PER_USD
    if value <= 0 or value != value.to_integral_value():
        raise ValueError(
            f"tick_size × lot_size = {tick_size * lot_size} USD is not a whole number of atoms (1e-6 USD)"
        )
    return int(value)


def _whole_multiple(value: Decimal, step: Decimal, off_code: Reject, what: str) -> int:
    """``value / step`` as an int64, computed exactly on integers (no decimal context, so
    no rounding at any precision); not a whole number -> ``off_code``."""
    if not value.is_finite():
        raise UnitError(Reject.VALUE_OVERFLOW, f"{what} {value} is not a finite number")
    if value == 0:
        return 0
    # |value / step| >= 10^(adjusted(value) - adjusted(step) - 1): past 10^19 it cannot fit.
    if value.adjusted() - step.adjusted() > 20:
        raise UnitError(Reject.VALUE_OVERFLOW, f"{what} {value} is beyond the int64 range")
    if value.adjusted() < step.adjusted() - 20:
        raise UnitError(off_code, f"{what} {value} is not a multiple of {step}")
    num, den = value.as_integer_ratio()
    step_num, step_den = step.as_integer_ratio()
    units, rest = divmod(num * step_den, den * step_num)
    if rest:
        raise UnitError(off_code, f"{what} {value} is not a multiple of {step}")
    if abs(units) > INT64_MAX:
        raise UnitError(Reject.VALUE_OVERFLOW, f"{what} {value} is beyond the int64 range")
    return units


def to_ticks(price: Decimal, tick_size: Decimal) -> int:
    """Price in ticks; raises ``UnitError(PRICE_OFF_TICK)`` rather than rounding."""
    return _whole_multiple(Decimal(price), tick_size, Reject.PRICE_OFF_TICK, "price")


def to_lots(size: Decimal, lot_size: Decimal) -> int:
    """Size in lots; raises ``UnitError(SIZE_OFF_LOT)`` rather than rounding."""
    return _whole_multiple(Decimal(size), lot_size, Reject.SIZE_OFF_LOT, "size")


def to_atoms(usd: Decimal) -> int:
    """USD in atoms; a fraction of an atom is refused."""
    return _whole_multiple(Decimal(usd), Decimal(1) / ATOMS_PER_USD, Reject.VALUE_OVERFLOW, "amount")


def to_ppm(fraction: Decimal) -> int:
    """A fraction (0.05 for 5%) in parts per million; sub-ppm precision is refused."""
    return _whole_multiple(Decimal(fraction), Decimal(1) / PPM, Reject.VALUE_OVERFLOW, "fraction")


def from_ticks(price_ticks: int, tick_size: Decimal) -> Decimal:
    return tick_size * int(price_ticks)


def from_lots(size_lots: int, lot_size: Decimal) -> Decimal:
    return lot_size * int(size_lots)


def from_atoms(atoms: int) -> Decimal:
    return Decimal(int(atoms)) / ATOMS_PER_USD
