"""A smoke test of the oracle benchmark (not part of ``make test``; run with
``.venv/bin/python -m pytest benchmarks/test_oracle_bench.py -p no:cacheprovider``)."""

from __future__ import annotations

import json

from benchmarks import oracle

TINY = ["--markets", "4", "--sources", "3", "--ticks", "3", "--warmup", "2", "--json"]
TICK_KEYS = {"ticks", "ms_per_tick", "cpu_ms_per_tick", "us_per_market", "cpu_us_per_market", "core_share",
             "cpu_core_share"}


def _assert_tick_figures(part: dict, ticks: int) -> None:
    assert TICK_KEYS <= part.keys()
    assert part["ticks"] == ticks
    assert set(part["ms_per_tick"]) == {"mean", "p50", "p99", "max"}
    assert 0 < part["ms_per_tick"]["p50"] <= part["ms_per_tick"]["max"]
    assert part["us_per_market"] > 0 and part["cpu_us_per_market"] > 0
    assert 0 < part["core_share"] < 1 and 0 < part["cpu_core_share"] < 1


def test_main_prints_one_json_object_with_sane_figures(capsys):
    assert oracle.main(TINY) == 0
    result = json.loads(capsys.readouterr().out)

    assert {"benchmark", "markets", "sources", "ticks", "warmup_ticks", "seed", "environment", "aggregation",
            "service", "engine_pricing", "ok"} <= result.keys()
    assert (result["markets"], result["sources"], result["ticks"], result["warmup_ticks"]) == (4, 3, 3, 2)
    assert result["ok"] is True
    agg, svc = result["aggregation"], result["service"]
    _assert_tick_figures(agg, 3)
    _assert_tick_figures(svc, 3)
    _assert_tick_figures(svc["simulated_poll"], 3)
    assert agg["calls"] == svc["updates"] == 4 * 3
    assert agg["target_core_share"] == 0.05 and isinstance(agg["met"], bool)
    assert 0 < agg["published_share"] <= 1 and 0 < svc["published_share"] <= 1
    assert svc["skipped_ticks"] == 0 and svc["quotes_per_tick"] > 0
    engine = result["engine_pricing"]
    assert engine["external"]["ok"] and engine["dark"]["ok"] and engine["dark"]["dark"] is True
    assert engine["external"]["markets"] == 4 and engine["dark"]["us_per_tick"] > 0


def test_the_workload_is_seeded():
    def first_ticks(seed):
        stream = oracle.QuoteStream(3, 5, seed)
        return [stream.quotes_at(oracle.START_NS + k * oracle.INTERVAL_NS) for k in range(5)]

    assert first_ticks(7) == first_ticks(7)
    assert first_ticks(7) != first_ticks(8)
    assert oracle.service_scenario(50, 5, 100, 7) == oracle.service_scenario(50, 5, 100, 7)
