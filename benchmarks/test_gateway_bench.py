"""Smoke checks of the gateway benchmark with minimal sizes (not part of ``make test``; run
with ``.venv/bin/python -m pytest benchmarks/test_gateway_bench.py -p no:cacheprovider``).
They check that the harness counts and frames requests correctly, never how fast anything is."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time

from api import protocol as p
from benchmarks import gateway
from benchmarks.gateway_load import OrderFrames, _run


def test_order_frames_alternate_a_place_and_its_cancel():
    frames = OrderFrames("NVDA", "1000", "1", conn=3)
    actions = [frames.action(i) for i in (1, 2, 3, 4)]
    assert [type(a) for a in actions] == [p.Place, p.Cancel, p.Place, p.Cancel]
    assert actions[0].cloid == actions[1].cloid == "g3-0" and actions[2].cloid == actions[3].cloid == "g3-1"


def test_batches_cancel_the_previous_batch():
    frames = OrderFrames("NVDA", "1000", "1", conn=0, batch=50)
    first, second = frames.action(1), frames.action(2)
    assert len(first.actions) == 25 and len(second.actions) == 50
    assert [a.cloid for a in second.actions[25:]] == [a.cloid for a in first.actions]
    for post_id in (1, 2):
        p.decode_request(p.encode(p.Post(post_id, frames.action(post_id))))  # valid on the wire


def test_percentiles_and_split():
    assert gateway.percentiles([float(x) for x in range(1, 101)]) == {"p50": 51.0, "p99": 100.0, "n": 100}
    assert gateway.percentiles([]) == {"p50": None, "p99": None, "n": 0}
    assert gateway.split(5, 2) == [3, 2] and gateway.split(1, 3) == [1]


def test_round_trips_against_the_echo_server():
    server = gateway.Server(mp.get_context("spawn"), "echo", "unused")
    try:
        result = asyncio.run(_run({"kind": "roundtrip", "url": server.info["url"], "connections": 2, "batch": 50,
                                   "depth": 2, "start": time.time() + 0.2, "seconds": 0.3}))
    finally:
        server.stop()
    assert result["answers"] > 0 and result["refused"] == 0
    assert result["actions"] >= 25 * result["answers"]


def test_a_whole_run_with_minimal_sizes():
    parser = argparse.ArgumentParser()
    gateway.add_arguments(parser)
    args = gateway.resolve(parser.parse_args(["--seconds", "0.5", "--procs", "1", "--connections", "2",
                                              "--subscribers", "3", "--rates", "50"]))
    result = gateway.run(args)
    assert "node_skipped" not in result, result.get("node_skipped")
    for name in ("roundtrip", "batch"):
        assert result[name]["answers"] > 0 and result[name]["refused"] == 0 and result[name]["rejected"] == 0
    assert result["rate"][0]["answers"] == 25 and result["rate"][0]["refused"] == 0
    assert result["fanout"]["frames"] > 0 and set(result["targets"]) == set(gateway.TARGETS)
    assert "targets" in gateway.table(result)
