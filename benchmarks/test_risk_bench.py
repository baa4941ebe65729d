"""A smoke test of the risk benchmark and of the matching benchmark's run with margin checks
(not part of ``make test``; run with
``.venv/bin/python -m pytest benchmarks/test_risk_bench.py -p no:cacheprovider``)."""

from __future__ import annotations

import json

from benchmarks import matching, risk, workload
from engine.engine import Engine
from engine.spec import EngineConfig

TINY = ["--accounts", "1000,2001", "--positions-per-account", "3", "--markets", "4", "--ticks", "3",
        "--repeat", "2", "--json"]


def test_risk_main_prints_one_json_object_with_sane_figures(capsys):
    assert risk.main(TINY) == 0
    result = json.loads(capsys.readouterr().out)

    assert {"benchmark", "seed", "repeat", "compile_s", "environment", "settlement", "margin_scan", "pricing",
            "ok"} <= result.keys()
    assert result["ok"] is True
    settle = result["settlement"]
    assert settle["positions_per_account"] == 3 and settle["met"] is None  # 1M accounts not measured
    assert [r["accounts"] for r in settle["runs"]] == [1000, 2001]
    for r in settle["runs"]:
        pairs = r["accounts"] // 2
        assert r["positions"] == 2 * pairs * 3
        assert r["events"] == r["positions"] + 4  # a FUNDING per position, a FUNDING_RATE per market
        assert r["invariants"] == "hold" and r["problems"] == []
        assert 0 < r["kernel_ms"] and 0 < r["tick_ms"] < r["apply_ms"]
        assert r["events_per_s"] > 0 and r["read_floor_ms"] > 0 and r["write_floor_ms"] > 0
        assert r["rate_ppb"] != 0
    scans = result["margin_scan"]["runs"]
    assert [s["accounts"] for s in scans] == [1000, 2001]
    for s in scans:
        assert s["ok"] and s["problems"] == [] and s["ms"] > 0 and s["cold_ms"] > 0 and s["equity_only_ms"] > 0
        assert [m["move_ppm"] for m in s["moves"]] == [10_000, 20_000] and all(m["scans"] == 5 for m in s["moves"])
        # equity is at least 3% of the gross above MM: a 1% move (2% needed) re-evaluates nobody
        assert s["moves"][0]["evaluated"] == 0 <= s["moves"][1]["evaluated"] <= s["accounts"]
        assert s["below_mm"] == 0 and s["equity_atoms"] > s["mm_atoms"] > 0  # nobody liquidatable
    pricing = result["pricing"]
    assert (pricing["markets"], pricing["ticks"]) == (4, 3) and pricing["ok"]
    assert 0 < pricing["us_per_tick"] and 0 < pricing["oracle_round_us"]
    assert pricing["one_call_per_tick_us_p50"] > 0


def test_settlement_state_is_consistent():
    engine = risk.settlement_engine(101, 2, seed=3)
    assert risk.numpy_checks(engine) == []
    engine.check_invariants()
    assert engine.acc[100]["npos"] == 0  # an odd account out holds nothing
    assert engine.acc[-1]["collateral"] == 0  # the insurance fund starts empty


def test_margin_run_is_rarely_rejected_for_margin(capsys):
    # the reference engine's agreement is tests/test_risk_differential.py's business; here the run itself
    args = ["--mix", matching.MARGIN_RUN, "--commands", "20000", "--reference-commands", "0", "--json"]
    assert matching.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    run = result["mixes"][matching.MARGIN_RUN]
    assert run["ok"] and run["timed"]["commands_per_s"] > 0
    margin = run["margin"]
    assert margin["invariants"] == "hold"
    assert margin["insufficient_margin_share"] < 0.001
    assert margin["rejects"].get("POSITION_LIMIT", 0) == 0
    assert margin["open_positions"] > 0 and margin["fees_atoms"] > 0
    assert run["timed"]["events"] == margin["events"]
    # margin checks that never bind leave the events of the engine without risk
    assert margin["events"] == workload.build(workload.CORE, 20_000, seed=1).events


def test_margin_setup_funds_every_account_and_sets_the_marks():
    wl = workload.build(workload.CORE, 100)
    engine = Engine(wl.specs, EngineConfig(risk=True))
    engine.apply(workload.margin_setup(wl.mix))
    assert all(engine.collateral(a) == 100_000_000_000_000 for a in range(wl.mix.n_accounts))
    for m, mark in enumerate(workload.START_MARK_TICKS):
        assert engine.oracle(m) == engine.mark(m) == mark
    assert workload.margin_setup(wl.mix)["ts"][-1] < wl.prefill["ts"][0]
