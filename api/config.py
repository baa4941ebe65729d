"""The node's configuration: frozen Structs with defaults, read from TOML, overridden by flags.

Layout
------
* ``MarketConfig``: one market as an operator writes it (symbol, calendar, simulated start
  price, tick and lot, pre-IPO reference); ``market_spec`` and ``market_feed`` turn it into
  the engine's ``MarketSpec`` and the oracle's ``MarketFeed``.
* ``NodeConfig``: the node (address, data directory, clocks, engine sizing, oracle, demo
  account, bots) and its markets, ``DEFAULT_MARKETS`` unless the file gives ``[[markets]]``.
* ``load_config(path, **overrides)``: defaults < the TOML file < explicit overrides (the
  command-line flags). Unknown keys and wrong types are refused with the key's path.
* ``to_toml(config)``: the effective configuration, as a file that loads back to it.

Invariants
----------
* Decimals come from TOML strings or integers ("0.01", 10); a TOML float is accepted only
  when its shortest repr is the intended decimal, so prefer strings for prices.
* A market's engine id is its position in ``markets``: changing the list (or any spec) makes
  an existing journal refuse to open, on purpose (``JournalMismatch``): use another
  ``data_dir``.

Known limitations
-----------------
* US single stocks and the index use the ``XNYS`` calendar: Nasdaq's trading days and
  hours are NYSE's, and afterhours' extended-hours schedule (``oracle.calendar``) is keyed
  by ``XNYS``.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from typing import Any

import msgspec

from engine.spec import EngineConfig, MarketSpec
from oracle.calendar import MarketCalendar
from oracle.service import FeedSource, MarketFeed
from oracle.sources.scenario import Scenario, SimMarket, SimSource

E9 = Decimal(10**9)
PRE_IPO_EXCHANGE = "none"


class MarketConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One market. ``exchange`` is an ``exchange_calendars`` code (``XNYS``, ``XKRX``), or
    ``"none"`` for a pre-IPO market: no external price ever, priced from its own book
    around ``pre_ipo_reference``."""

    symbol: str
    start_price: Decimal  # where the simulated source's price path starts (USD)
    exchange: str = "XNYS"
    extended_hours: bool = True
    tick_size: Decimal = Decimal("0.01")
    lot_size: Decimal = Decimal("0.001")
    max_order_lots: int = 10_000_000
    max_leverage: int = 10
    pre_ipo_reference: Decimal | None = None
    funding_multiplier: Decimal = Decimal("0.5")
    vol_ppm_per_hour: int = 4_000

    def __post_init__(self) -> None:
        if self.start_price <= 0:
            raise ValueError(f"market {self.symbol}: start_price must be positive")
        if self.calendar_exchange is None and self.pre_ipo_reference is None:
            raise ValueError(f"market {self.symbol}: a market with exchange \"none\" needs pre_ipo_reference")

    @property
    def calendar_exchange(self) -> str | None:
        """The calendar's exchange code; None for a pre-IPO market."""
        return None if self.exchange.lower() == PRE_IPO_EXCHANGE else self.exchange

    def calendar(self) -> MarketCalendar:
        return MarketCalendar(self.calendar_exchange, extended=self.extended_hours)


DEFAULT_MARKETS: tuple[MarketConfig, ...] = (
    MarketConfig("NVDA", Decimal("180")),
    MarketConfig("TSLA", Decimal("430")),
    MarketConfig("AAPL", Decimal("230")),
    MarketConfig("NDX100", Decimal("21000"), tick_size=Decimal("0.1"), lot_size=Decimal("0.0001"),
                 max_order_lots=100_000_000),
    MarketConfig("000660", Decimal("150"), exchange="XKRX", max_leverage=5),  # SK Hynix, in USD
    MarketConfig("SPACEX", Decimal("200"), exchange=PRE_IPO_EXCHANGE, max_leverage=3, pre_ipo_reference=Decimal("200"),
                 funding_multiplier=Decimal("0.01")),
)


class NodeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything a node needs; every field has a default (a node runs with no file)."""

    host: str = "127.0.0.1"
    port: int = 8420  # 0: any free port (the address is printed)
    data_dir: str = "./afterhours-data"
    network: str = "local"  # part of every signed payload
    tick_interval_s: float = 1.0  # the sequencer's Tick timer
    max_batch: int = 4096  # records per group commit
    snapshot_interval_s: float = 300.0  # an engine snapshot this often (and at a clean stop)
    max_orders: int = 1 << 16  # resting orders, all markets together
    max_accounts: int = 1 << 10
    oracle: bool = True  # the oracle service with the simulated source
    oracle_seed: int = 20260513
    time_offset_s: float = 0.0  # shift the node's clock (e.g. to a weekend, for a demo)
    demo_account: int = 1
    demo_deposit: Decimal = Decimal("1000000")
    bots: bool = True  # start the demo market-maker and taker bots
    bot_deposit: Decimal = Decimal("10000000")
    markets: tuple[MarketConfig, ...] = DEFAULT_MARKETS

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        if self.tick_interval_s <= 0 or self.snapshot_interval_s <= 0:
            raise ValueError("tick_interval_s and snapshot_interval_s must be positive")
        if self.max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if not self.markets:
            raise ValueError("a node needs at least one market")
        symbols = [m.symbol for m in self.markets]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"market symbols must be unique: {symbols}")
        if not 0 <= self.demo_account < self.max_accounts:
            raise ValueError("demo_account must be below max_accounts")

    def engine_config(self) -> EngineConfig:
        return EngineConfig(max_orders=self.max_orders, max_accounts=self.max_accounts, risk=True, modes=True)

    def market_specs(self) -> list[MarketSpec]:
        return [market_spec(i, m) for i, m in enumerate(self.markets)]


class ConfigError(ValueError):
    """A config file that cannot be read or does not fit ``NodeConfig``."""


def market_spec(market_id: int, m: MarketConfig) -> MarketSpec:
    tiers = ((Decimal(0), m.max_leverage), (Decimal(5_000_000), max(1, m.max_leverage // 2)))
    return MarketSpec(market_id=market_id, symbol=m.symbol, tick_size=m.tick_size, lot_size=m.lot_size,
                      max_order_lots=m.max_order_lots, tiers=tiers, pre_ipo_reference=m.pre_ipo_reference,
                      funding_multiplier=m.funding_multiplier, dark_max_leverage=min(5, m.max_leverage))


SIM_SOURCE = SimSource("simulated", expo=-9, conf_ppm=100)


def market_feed(market_id: int, m: MarketConfig) -> MarketFeed:
    sources = () if m.calendar_exchange is None else (FeedSource(SIM_SOURCE.name, SIM_SOURCE.quotes_in()),)
    return MarketFeed(market_id, m.symbol, m.calendar(), sources)


def scenario(config: NodeConfig) -> Scenario:
    """The simulated source's markets: every market with an exchange."""
    markets = tuple(SimMarket(m.symbol, m.calendar(), int(m.start_price * E9), m.vol_ppm_per_hour)
                    for m in config.markets if m.calendar_exchange is not None)
    return Scenario(seed=config.oracle_seed, markets=markets, sources=(SIM_SOURCE,), name="node")


def load_config(path: str | None = None, **overrides: Any) -> NodeConfig:
    """Defaults, then the TOML file at ``path`` (if any), then ``overrides`` whose value is
    not None (the command line's flags)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as err:
            raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(data, NodeConfig)
    except (msgspec.ValidationError, ValueError) as err:
        where = f"config file {path}" if path else "configuration"
        raise ConfigError(f"{where}: {err}") from None


def to_toml(config: NodeConfig) -> str:
    """``config`` as TOML text (decimals as strings; a None field is left out)."""
    lines = []
    for name in NodeConfig.__struct_fields__:
        if name != "markets":
            lines.append(f"{name} = {_toml_value(getattr(config, name))}")
    for m in config.markets:
        lines += ["", "[[markets]]"]
        for name in MarketConfig.__struct_fields__:
            value = getattr(m, name)
            if value is not None:
                lines.append(f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
