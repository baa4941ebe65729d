"""The node's configuration: locked defaults, TOML overrides, flags over the file, refusals."""

from __future__ import annotations

import tomllib
from decimal import Decimal

import pytest

from api.cli import build_parser
from api.config import (
    DEFAULT_MARKETS,
    ConfigError,
    NodeConfig,
    load_config,
    market_feed,
    scenario,
    to_toml,
)
from engine.codes import MarketMode
from engine.engine import Engine


def test_the_defaults_are_locked():
    cfg = load_config()
    assert cfg == NodeConfig()
    assert (cfg.host, cfg.port, cfg.data_dir, cfg.network) == ("127.0.0.1", 8420, "./afterhours-data", "local")
    assert (cfg.tick_interval_s, cfg.max_batch, cfg.snapshot_interval_s) == (1.0, 4096, 300.0)
    assert (cfg.oracle, cfg.bots, cfg.time_offset_s) == (True, True, 0.0)
    assert (cfg.demo_account, cfg.demo_deposit, cfg.bot_deposit) == (1, Decimal("1000000"), Decimal("10000000"))
    assert (cfg.max_orders, cfg.max_accounts, cfg.oracle_seed) == (65536, 1024, 20260513)
    assert [m.symbol for m in cfg.markets] == ["NVDA", "TSLA", "AAPL", "NDX100", "000660", "SPACEX"]
    assert [m.calendar_exchange for m in cfg.markets] == ["XNYS"] * 4 + ["XKRX", None]
    engine = cfg.engine_config()
    assert engine.risk and engine.modes


def test_default_markets_make_valid_specs_feeds_and_a_pre_ipo_market():
    cfg = NodeConfig()
    specs = cfg.market_specs()
    assert [s.market_id for s in specs] == list(range(len(DEFAULT_MARKETS)))
    assert specs[-1].pre_ipo_reference == Decimal("200")
    feeds = [market_feed(i, m) for i, m in enumerate(cfg.markets)]
    assert feeds[-1].sources == () and feeds[0].sources
    assert [m.symbol for m in scenario(cfg).markets] == ["NVDA", "TSLA", "AAPL", "NDX100", "000660"]
    engine = Engine(specs, cfg.engine_config())  # sizes only; no command is applied
    assert engine.mode(5).mode == MarketMode.PRE_IPO


def test_a_toml_file_overrides_defaults_and_flags_override_the_file(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('''
port = 9001
data_dir = "/srv/ah"
bots = false
tick_interval_s = 0.5
demo_deposit = "2500.50"

[[markets]]
symbol = "MSFT"
start_price = "420.10"

[[markets]]
symbol = "OPENAI"
exchange = "none"
start_price = 100
pre_ipo_reference = "100"
''')
    cfg = load_config(str(path), port=None, host="0.0.0.0")
    assert (cfg.port, cfg.host, cfg.data_dir, cfg.bots, cfg.tick_interval_s) == (9001, "0.0.0.0", "/srv/ah", False, 0.5)
    assert cfg.demo_deposit == Decimal("2500.50")
    assert [(m.symbol, m.calendar_exchange) for m in cfg.markets] == [("MSFT", "XNYS"), ("OPENAI", None)]
    assert cfg.oracle is True  # untouched keys keep their defaults
    assert load_config(str(path), port=7000).port == 7000


def test_the_effective_config_round_trips_through_toml():
    cfg = NodeConfig(port=1234, bots=False)
    assert load_config(None, **tomllib.loads(to_toml(cfg))) == cfg


@pytest.mark.parametrize("text, words", [
    ("prot = 1\n", "prot"),
    ("port = \"x\"\n", "port"),
    ("port = 70000\n", "port"),
    ("[[markets]]\nsymbol = \"X\"\nstart_price = \"1\"\nexchange = \"none\"\n", "pre_ipo_reference"),
    ("port = \n", "not valid TOML"),
])
def test_bad_config_files_are_refused_with_the_key(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_config(str(path))


def test_a_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "nope.toml"))


def test_node_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["node", "--help"])
    text = capsys.readouterr().out
    for option in ("--config", "--host", "--port", "--data-dir", "--network", "--tick-interval",
                   "--snapshot-interval", "--time-offset", "--no-bots", "--no-oracle", "--print-config"):
        assert option in text
