"""Checks of the benchmark workload generator (not part of ``make test``; run with
``.venv/bin/python -m pytest benchmarks/test_workload.py -p no:cacheprovider``)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import workload
from engine.codes import CommandKind
from engine.engine import Engine

N = 40_000


@pytest.fixture(scope="module", params=["core", "churn"])
def built(request) -> workload.Workload:
    return workload.build(request.param, N, seed=7)


def test_same_seed_same_bytes(built):
    again = workload.build(built.mix, N, seed=7)
    assert again.prefill.tobytes() == built.prefill.tobytes()
    assert again.stream.tobytes() == built.stream.tobytes()


def test_shares_close_to_the_mix(built):
    share = built.stats["share"]
    mix = built.mix
    for name in ("gtc", "ioc", "cancel", "amend"):
        assert share[name] == pytest.approx(getattr(mix, name), abs=0.01), name


def test_book_stays_near_its_target(built):
    resting = built.stats["resting"]
    target = built.mix.target_resting
    assert 0.6 * target <= resting["min"] and resting["max"] <= 1.4 * target


def test_few_stale_targets(built):
    rejects = sum(built.stats["rejects"].values())
    assert rejects / N < 0.02


def test_timestamps_increase(built):
    ts = np.concatenate([built.prefill["ts"], built.stream["ts"]])
    assert (np.diff(ts) > 0).all()


def test_replay_in_a_default_engine_gives_the_same_event_count(built):
    engine = Engine(built.specs)
    engine.apply_count(built.prefill)
    assert engine.apply_count(built.stream) == built.events
    engine.check_invariants()


def test_prices_stay_inside_the_band(built):
    places = built.stream[built.stream["kind"] == CommandKind.PLACE]
    assert not (places["price"] <= 0).any()
    for m, start in enumerate(workload.START_MARK_TICKS):
        prices = places["price"][places["market"] == m]
        assert (np.abs(prices - start) < start // 20).all()  # band is ±10 %, marks drift ≤ ~1 %
